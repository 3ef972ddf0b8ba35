#include "portcullis/queue/job_table.hh"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

namespace portcullis::queue {

namespace {

constexpr int64_t int64_max = std::numeric_limits<int64_t>::max();
constexpr int64_t int64_min = std::numeric_limits<int64_t>::min();

// Times come from callers and delays from HTTP: saturate rather than overflow.
int64_t add_saturated(int64_t a, int64_t b) {
    int64_t sum = 0;
    if (__builtin_add_overflow(a, b, &sum)) {
        return b > 0 ? int64_max : int64_min;
    }
    return sum;
}

// Two 8-byte loads instead of std::array's memcmp call: this runs on every probe.
bool same_id(const JobId& a, const JobId& b) {
    uint64_t a0;
    uint64_t a1;
    uint64_t b0;
    uint64_t b1;
    std::memcpy(&a0, a.bytes.data(), 8);
    std::memcpy(&a1, a.bytes.data() + 8, 8);
    std::memcpy(&b0, b.bytes.data(), 8);
    std::memcpy(&b1, b.bytes.data() + 8, 8);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
}

// A full avalanche (MurmurHash3's finaliser) over both halves: the bits that vary between ids
// (the counter's low bytes, big-endian) sit at the top of the little-endian words, and the low
// bits pick the slot. Inlined, unlike XXH3 from the shared library. Ids in the table are ours,
// so nobody can choose them to collide.
uint32_t hash_id(const JobId& id) {
    uint64_t hi;
    uint64_t lo;
    std::memcpy(&hi, id.bytes.data(), 8);
    std::memcpy(&lo, id.bytes.data() + 8, 8);
    uint64_t h = lo ^ (hi * 0x9e3779b97f4a7c15);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccd;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53;
    h ^= h >> 33;
    return static_cast<uint32_t>(h);
}

// Min-heaps through std::push_heap/pop_heap, which build max-heaps: order by "later". The index
// breaks ties so that equal times leave in a deterministic order.
template <typename T>
bool later(const T& a, const T& b) {
    return a.at_ns != b.at_ns ? a.at_ns > b.at_ns : a.index > b.index;
}

bool unsettled(JobState s) {
    return s == JobState::queued || s == JobState::leased;
}

// Containers are compacted when stale slots outnumber live ones by this much, so that they
// stay within about twice the live count.
constexpr size_t compaction_slack = 64;

} // namespace

std::string_view state_name(JobState state) {
    switch (state) {
    case JobState::queued:
        return "queued";
    case JobState::leased:
        return "leased";
    case JobState::done:
        return "done";
    case JobState::dead:
        return "dead";
    }
    return "unknown";
}

int64_t retry_backoff_ns(uint16_t attempts) {
    if (attempts == 0) {
        return backoff_base_ns;
    }
    // 2^10 s already exceeds the cap: larger shifts need not be computed.
    unsigned shift = std::min<unsigned>(attempts - 1U, 10);
    return std::min(backoff_base_ns << shift, backoff_cap_ns);
}

void JobTable::RefRing::pop_front() {
    _head = (_head + 1) & (capacity() - 1);
    --_count;
}

void JobTable::RefRing::reserve(size_t n) {
    if (n <= capacity()) {
        return;
    }
    const size_t old = capacity();
    const size_t grown = std::bit_ceil(std::max<size_t>(16, n));
    _slots.extend(grown); // its slots stay where they were, [0, old)
    // A ring that wrapped (its newest refs at the front) is made whole again by moving the
    // shorter of its two runs: the front one past the old end, or the back one to the new end.
    if (_head + _count > old) {
        const size_t front = _head + _count - old; // at [0, front)
        const size_t back = old - _head;           // at [_head, old)
        if (front <= back) {
            std::copy_n(&_slots[0], front, &_slots[old]);
        } else {
            std::copy_n(&_slots[_head], back, &_slots[grown - back]);
            _head = grown - back;
        }
    }
}

JobTable::RefRing& JobTable::RefRing::operator=(const RefRing& other) {
    if (this == &other) {
        return *this;
    }
    base::PageVector<Ref>().swap(_slots);
    _head = 0;
    _count = 0;
    reserve(other._count);
    for (size_t i = 0; i < other._count; ++i) {
        _slots[i] = other.at(i);
    }
    _count = other._count;
    return *this;
}

void JobTable::RefRing::push_back(Ref ref) {
    if (_count == capacity()) {
        reserve(std::max<size_t>(16, capacity() * 2));
    }
    _slots[(_head + _count) & (capacity() - 1)] = ref;
    ++_count;
}

void JobTable::RefRing::rotate_back_to_front(size_t n) {
    n = std::min(n, _count);
    if (n == 0 || n == _count) {
        return;
    }
    const size_t mask = capacity() - 1;
    std::vector<Ref> moved(n);
    for (size_t i = 0; i < n; ++i) {
        moved[i] = _slots[(_head + _count - n + i) & mask];
    }
    // The others shift back by n, newest first, so that none is overwritten before it moves.
    for (size_t i = _count - n; i-- > 0;) {
        _slots[(_head + i + n) & mask] = _slots[(_head + i) & mask];
    }
    for (size_t i = 0; i < n; ++i) {
        _slots[(_head + i) & mask] = moved[i];
    }
}

template <typename F>
void JobTable::RefRing::filter(F&& keep) {
    size_t mask = capacity() - 1;
    size_t kept = 0;
    for (size_t i = 0; i < _count; ++i) {
        Ref ref = _slots[(_head + i) & mask];
        if (keep(ref)) {
            _slots[(_head + kept) & mask] = ref;
            ++kept;
        }
    }
    _count = kept;
}

JobTable::JobTable(std::vector<RouteOptions> routes) {
    _routes.resize(routes.size());
    for (size_t i = 0; i < _routes.size(); ++i) {
        _routes[i].max_attempts = routes[i].max_attempts;
        _routes[i].optional = routes[i].optional;
        _routes[i].ordered = routes[i].ordered;
        _any_ordered = _any_ordered || routes[i].ordered;
    }
}

JobTable::JobTable(const std::vector<uint32_t>& max_attempts_per_route)
    : JobTable([&] {
          std::vector<RouteOptions> routes;
          routes.reserve(max_attempts_per_route.size());
          for (uint32_t max : max_attempts_per_route) {
              routes.push_back({max, false, false});
          }
          return routes;
      }()) {}

uint16_t JobTable::add_route(RouteOptions options) {
    Route& r = _routes.emplace_back();
    r.max_attempts = options.max_attempts;
    r.optional = options.optional;
    r.ordered = options.ordered;
    _any_ordered = _any_ordered || options.ordered;
    return static_cast<uint16_t>(_routes.size() - 1);
}

void JobTable::set_routes(const std::vector<RouteOptions>& options) {
    const size_t n = std::min(options.size(), _routes.size());
    std::vector<bool> flips(_routes.size(), false);
    bool any = false;
    for (size_t r = 0; r < n; ++r) {
        _routes[r].max_attempts = options[r].max_attempts;
        flips[r] = _routes[r].optional != options[r].optional;
        any = any || flips[r];
    }
    if (!any) {
        return;
    }
    // holds_segment() reads the flag: take the jobs of those routes out of their segments'
    // counts under the old value and back in under the new one.
    for (const Entry& e : _entries) {
        if (e.has(flag_in_use) && flips[e.route] && holds_segment(e)) {
            --_segments[e.segment].unsettled;
        }
    }
    for (size_t r = 0; r < n; ++r) {
        _routes[r].optional = options[r].optional;
    }
    for (const Entry& e : _entries) {
        if (e.has(flag_in_use) && flips[e.route] && holds_segment(e)) {
            ++_segments[e.segment].unsettled;
        }
    }
}

RouteOptions JobTable::route_options(uint16_t route) const {
    if (route >= _routes.size()) {
        return {};
    }
    const Route& r = _routes[route];
    return {r.max_attempts, r.optional, r.ordered};
}

void JobTable::jobs_of(const std::vector<bool>& routes, std::vector<JobInfo>& out) const {
    for (uint32_t index = 0; index < _entries.size(); ++index) {
        const Entry& e = _entries[index];
        if (e.has(flag_in_use) && e.route < routes.size() && routes[e.route]) {
            out.push_back(info(index));
        }
    }
}

uint32_t JobTable::find_in(const Index& t, const JobId& id, uint32_t hash) const {
    if (t.empty()) {
        return no_index;
    }
    for (size_t pos = home_in(t, hash);; pos = next_in(t, pos)) {
        const IndexSlot& slot = t[pos];
        if (slot.entry() == no_index) {
            return no_index;
        }
        // The hash first: a probe past another job then costs no read of its entry.
        if (slot.hash == hash && slot.entry() != moved && same_id(_entries[slot.entry()].id, id)) {
            return slot.entry();
        }
    }
}

uint32_t JobTable::find_index(const JobId& id) const {
    const uint32_t hash = hash_id(id);
    const uint32_t index = find_in(_index, id, hash);
    return index != no_index ? index : find_in(_old_index, id, hash);
}

void JobTable::index_place(IndexSlot slot) {
    size_t pos = home_of(slot.hash);
    while (_index[pos].entry() != no_index) {
        pos = next_slot(pos);
    }
    _index[pos] = slot;
}

void JobTable::index_migrate(size_t n) {
    const size_t end = _old_index.size() - _migrated <= n ? _old_index.size() : _migrated + n;
    for (; _migrated < end; ++_migrated) {
        // An empty slot stays empty: it ends the probes that reach it, as before.
        IndexSlot& slot = _old_index[_migrated];
        if (slot.entry() != no_index && slot.entry() != moved) {
            index_place(slot);
            slot.set_entry(moved);
        }
    }
    if (_migrated == _old_index.size()) {
        Index().swap(_old_index);
        _migrated = 0;
    }
}

void JobTable::index_resize(size_t slots) {
    index_migrate(_old_index.size());
    Index old(slots);
    old.swap(_index);
    for (const IndexSlot& slot : old) {
        if (slot.entry() != no_index) {
            index_place(slot);
        }
    }
}

void JobTable::reserve(size_t jobs) {
    if (jobs > _entries.capacity()) {
        _entries.reserve(jobs);
    }
    // Linear probing stays short below 70% load.
    const size_t slots = jobs * 10 / 7 + 1;
    if (slots > _index.size()) {
        index_resize(slots);
    }
}

void JobTable::prefetch(const JobId& id) const {
    if (!_index.empty()) {
        __builtin_prefetch(&_index[home_of(hash_id(id))], 1);
    }
}

void JobTable::reserve(const std::vector<size_t>& more_per_route) {
    size_t more = 0;
    for (size_t r = 0; r < more_per_route.size() && r < _routes.size(); ++r) {
        more += more_per_route[r];
        Route& route = _routes[r];
        route.ready.reserve(route.ready.size() + more_per_route[r]);
    }
    reserve(_count + more);
}

void JobTable::index_insert(uint32_t index) {
    if (!_old_index.empty()) {
        index_migrate(migrate_per_insert);
    } else if ((_count + 1) * 10 > _index.size() * 7) {
        // The old table holds 70% of its size: moving 8 slots per insert empties it after an
        // eighth of its size in inserts, when the new one (twice as large) is under 41% full.
        Index grown(std::max<size_t>(64, _index.size() * 2));
        _old_index.swap(_index);
        _index.swap(grown);
        index_migrate(migrate_per_insert);
    }
    index_place(IndexSlot::of(index, hash_id(_entries[index].id)));
}

void JobTable::index_erase(uint32_t index) {
    const uint32_t hash = hash_id(_entries[index].id);
    size_t hole = home_of(hash);
    while (_index[hole].entry() != index) {
        if (_index[hole].entry() == no_index) {
            // Not moved yet: its old slot becomes one that probes pass.
            size_t pos = home_in(_old_index, hash);
            while (_old_index[pos].entry() != index) {
                pos = next_in(_old_index, pos);
            }
            _old_index[pos].set_entry(moved);
            return;
        }
        hole = next_slot(hole);
    }
    // Backward-shift deletion: no tombstones, so probes never lengthen over time.
    _index[hole] = IndexSlot::of(no_index, 0);
    for (size_t pos = next_slot(hole); _index[pos].entry() != no_index; pos = next_slot(pos)) {
        size_t home = home_of(_index[pos].hash);
        // The slot may move back into the hole unless its home lies cyclically in (hole, pos].
        bool stays = hole <= pos ? (hole < home && home <= pos) : (hole < home || home <= pos);
        if (!stays) {
            _index[hole] = _index[pos];
            _index[pos] = IndexSlot::of(no_index, 0);
            hole = pos;
        }
    }
}

std::optional<uint32_t> JobTable::find_segment(uint32_t shard, uint64_t seq) const {
    auto it = _segment_slots.find({shard, seq});
    if (it == _segment_slots.end()) {
        return std::nullopt;
    }
    return it->second;
}

uint32_t JobTable::segment_slot(uint32_t shard, uint64_t seq) {
    if (_last_segment != no_index && _segments[_last_segment].shard == shard &&
        _segments[_last_segment].seq == seq) {
        return _last_segment;
    }
    uint32_t slot;
    if (auto found = find_segment(shard, seq)) {
        slot = *found;
    } else {
        if (!_free_segments.empty()) {
            slot = _free_segments.back();
            _free_segments.pop_back();
        } else {
            slot = static_cast<uint32_t>(_segments.size());
            _segments.emplace_back();
        }
        _segments[slot] = Segment{shard, seq, 0, 0, 0};
        _segment_slots.emplace(std::make_pair(shard, seq), slot);
    }
    _last_segment = slot;
    return slot;
}

bool JobTable::live(Ref ref) const {
    const Entry& e = _entries[ref.index];
    return e.has(flag_in_use) && e.generation == ref.generation;
}

bool JobTable::live(const Timer& t) const {
    const Entry& e = _entries[t.index];
    return e.has(flag_in_use) && e.generation == t.generation;
}

int64_t JobTable::due_of(uint32_t index) const {
    if (!_entries[index].has(flag_has_due)) {
        return 0;
    }
    return _due.find(index)->second;
}

void JobTable::set_due(uint32_t index, int64_t due_ns) {
    Entry& e = _entries[index];
    if (due_ns != 0) {
        _due[index] = due_ns;
    } else if (e.has(flag_has_due)) {
        _due.erase(index);
    }
    e.set(flag_has_due, due_ns != 0);
}

uint32_t JobTable::chain_of(uint32_t index) const {
    if (!_entries[index].has(flag_chained)) {
        return no_index;
    }
    return _chain_of.find(index)->second;
}

void JobTable::set_chain(uint32_t index, uint32_t chain) {
    Entry& e = _entries[index];
    if (chain != no_index) {
        _chain_of[index] = chain;
    } else if (e.has(flag_chained)) {
        _chain_of.erase(index);
    }
    e.set(flag_chained, chain != no_index);
}

bool JobTable::exhausted(const Entry& e) const {
    uint32_t max = _routes[e.route].max_attempts;
    return max != 0 && e.attempts >= max;
}

void JobTable::push_ready(Route& r, uint32_t index) {
    size_t live_count = r.depth.queued - r.depth.delayed;
    if (r.ready.size() >= 2 * live_count + compaction_slack) {
        r.ready.filter([this](Ref ref) { return live(ref); });
    }
    r.ready.push_back({index, _entries[index].generation});
}

void JobTable::push_timer(std::vector<Timer>& heap, size_t live_count, Timer t) {
    if (heap.size() >= 2 * live_count + compaction_slack) {
        std::erase_if(heap, [this](const Timer& s) { return !live(s); });
        std::make_heap(heap.begin(), heap.end(), later<Timer>);
    }
    heap.push_back(t);
    std::push_heap(heap.begin(), heap.end(), later<Timer>);
}

void JobTable::leave_state(Entry& e, Route& r) {
    switch (e.state) {
    case JobState::queued:
        --r.depth.queued;
        if (e.has(flag_delayed)) {
            --r.depth.delayed;
        }
        break;
    case JobState::leased:
        --r.depth.leased;
        break;
    case JobState::done:
        --r.depth.done;
        break;
    case JobState::dead:
        --r.depth.dead;
        r.dead.erase(e.id);
        break;
    }
    if (holds_segment(e)) {
        --_segments[e.segment].unsettled;
    }
}

bool JobTable::holds_segment(const Entry& e) const {
    // An optional lane's job counts once it has been handed out: only then may its consumer
    // still settle it.
    return unsettled(e.state) && (e.attempts > 0 || !_routes[e.route].optional);
}

void JobTable::enter_queue(Route& r, uint32_t index) {
    Entry& e = _entries[index];
    const int64_t due_ns = due_of(index);
    if (due_ns == 0) {
        push_ready(r, index);
    } else {
        // Even a not-before already past waits in the heap: the next lease() promotes it,
        // which keeps this path free of any notion of "now" (apply() has none).
        e.set(flag_delayed, true);
        ++r.depth.delayed;
        push_timer(r.delayed, r.depth.delayed, {due_ns, index, e.generation});
    }
}

void JobTable::move(uint32_t index, JobState to, uint16_t attempts, int64_t due_ns) {
    Entry& e = _entries[index];
    Route& r = _routes[e.route];
    leave_state(e, r);
    ++e.generation;
    e.state = to;
    e.attempts = attempts;
    set_due(index, due_ns);
    e.set(flag_delayed, false);
    if (holds_segment(e)) {
        ++_segments[e.segment].unsettled;
    }
    switch (to) {
    case JobState::queued:
        ++r.depth.queued;
        if (!e.has(flag_chained) || !held(index)) {
            enter_queue(r, index);
        }
        break;
    case JobState::leased:
        ++r.depth.leased;
        push_timer(r.leases, r.depth.leased, {due_ns, index, e.generation});
        break;
    case JobState::done:
        ++r.depth.done;
        break;
    case JobState::dead:
        ++r.depth.dead;
        r.dead.insert(e.id);
        break;
    }
}

void JobTable::remove_entry(uint32_t index) {
    Entry& e = _entries[index];
    leave_state(e, _routes[e.route]);
    --_segments[e.segment].jobs;
    index_erase(index);
    set_due(index, 0);
    set_chain(index, no_index);
    ++e.generation;
    e.set(flag_in_use, false);
    _free_entries.push_back(index);
    --_count;
}

void JobTable::prune(Route& r) {
    while (!r.ready.empty() && !live(r.ready.front())) {
        r.ready.pop_front();
    }
    for (std::vector<Timer>* heap : {&r.delayed, &r.leases}) {
        while (!heap->empty() && !live(heap->front())) {
            std::pop_heap(heap->begin(), heap->end(), later<Timer>);
            heap->pop_back();
        }
    }
}

JobTable::Undo JobTable::prior(uint32_t index, bool waits) const {
    const Entry& e = _entries[index];
    return {due_of(index), index, e.attempts, e.state, waits, false};
}

void JobTable::record(LedgerOp::Kind kind, uint32_t index, int64_t now_ns, const Undo& before) {
    const Entry& e = _entries[index];
    _pending.push_back({kind, 0, e.attempts, e.id, now_ns, due_of(index)});
    _undo.push_back(before);
    ++_segments[e.segment].unresolved;
    if (e.has(flag_chained)) {
        ++_chain_ops[index];
    }
}

void JobTable::forget_undo(const Undo& u, bool durable) {
    if (u.index == no_index) {
        return;
    }
    const Entry& e = _entries[u.index];
    --_segments[e.segment].unresolved;
    const uint32_t chain = chain_of(u.index);
    if (chain == no_index) {
        return;
    }
    auto it = _chain_ops.find(u.index);
    if (it != _chain_ops.end() && --it->second == 0) {
        _chain_ops.erase(it);
        // Only a settlement in the ledger lets the next job of the sequence go: one that a
        // failed group took with it must be written again first (ops_failed).
        if (durable) {
            advance_chain(chain, false);
        }
    }
}

bool JobTable::chain_has_ops(uint32_t index) const {
    return _chain_ops.contains(index);
}

bool JobTable::held(uint32_t index) const {
    const Chain& c = _chains[chain_of(index)];
    return c.jobs[c.head] != index;
}

uint32_t JobTable::chain_slot(uint16_t route, uint64_t key) {
    auto [it, added] = _chain_slots.try_emplace({route, key}, no_index);
    if (added) {
        if (!_free_chains.empty()) {
            it->second = _free_chains.back();
            _free_chains.pop_back();
        } else {
            it->second = static_cast<uint32_t>(_chains.size());
            _chains.emplace_back();
        }
        Chain& c = _chains[it->second];
        c.route = route;
        c.key = key;
        c.jobs.clear();
        c.head = 0;
    }
    return it->second;
}

void JobTable::advance_chain(uint32_t chain, bool head_changed) {
    Chain& c = _chains[chain];
    while (c.head < c.jobs.size()) {
        const uint32_t index = c.jobs[c.head];
        Entry& e = _entries[index];
        if (unsettled(e.state) || chain_has_ops(index)) {
            if (head_changed && e.state == JobState::queued) {
                enter_queue(_routes[c.route], index); // it was held
            }
            break;
        }
        set_chain(index, no_index);
        ++c.head;
        head_changed = true;
    }
    if (c.head == c.jobs.size()) {
        _chain_slots.erase({c.route, c.key});
        std::vector<uint32_t>().swap(c.jobs);
        c.head = 0;
        _free_chains.push_back(chain);
    } else if (c.head > compaction_slack && c.head * 2 > c.jobs.size()) {
        c.jobs.erase(c.jobs.begin(), c.jobs.begin() + static_cast<std::ptrdiff_t>(c.head));
        c.head = 0;
    }
}

void JobTable::leave_chain_before(uint32_t index) {
    Chain& c = _chains[chain_of(index)];
    for (bool was_head = true; c.jobs[c.head] != index; was_head = false) {
        const uint32_t before = c.jobs[c.head];
        const Entry& b = _entries[before];
        set_chain(before, no_index);
        ++c.head;
        // The head is where its state put it already; the others were held.
        if (!was_head && b.state == JobState::queued) {
            enter_queue(_routes[b.route], before);
        }
    }
}

void JobTable::ops_taken() {
    _pending.clear();
}

void JobTable::ops_durable(size_t count) {
    count = std::min(count, _undo.size() - _pending.size());
    for (size_t i = 0; i < count; ++i) {
        forget_undo(_undo[i], true);
    }
    // Erasing from the front moves only the ops pending since (one group is in flight at a
    // time): no allocation.
    _undo.erase(_undo.begin(), _undo.begin() + static_cast<std::ptrdiff_t>(count));
}

size_t JobTable::ops_failed() {
    const size_t taken = _undo.size() - _pending.size();
    // Oldest first: what to undo. An op whose answer waits is undone, and so is every later op
    // of a job that has one undone, so that what is kept of each job is a prefix of its ops.
    for (Undo& u : _undo) {
        if (u.index == no_index) {
            continue;
        }
        Entry& e = _entries[u.index];
        u.undo = u.waits || e.has(flag_undoing);
        e.set(flag_undoing, e.has(flag_undoing) || u.undo);
    }
    // Newest first: each undone op restores the state its job had before it.
    size_t undone = 0;
    for (size_t i = _undo.size(); i-- > 0;) {
        const Undo& u = _undo[i];
        if (u.index == no_index || !u.undo) {
            continue;
        }
        move(u.index, u.state, u.attempts, u.due_ns);
        prune(_routes[_entries[u.index].route]);
        ++undone;
    }
    // The kept ops that were pending stay pending (and undoable); the taken ones are lost.
    size_t kept = 0;
    std::vector<uint32_t> rewrite; // ordered routes: settled jobs whose settlement was lost
    for (size_t i = 0; i < _undo.size(); ++i) {
        const Undo u = _undo[i];
        if (u.index != no_index) {
            _entries[u.index].set(flag_undoing, false);
        }
        if (i >= taken && !u.undo) {
            _pending[kept] = _pending[i - taken];
            _undo[kept] = u;
            ++kept;
        } else {
            if (!u.undo && u.index != no_index && _entries[u.index].has(flag_chained)) {
                rewrite.push_back(u.index);
            }
            forget_undo(u, false);
        }
    }
    _pending.resize(kept);
    _undo.resize(kept);
    // A kept death by expiry of a sequence's head whose op was lost: the next job may go only
    // once the ledger has it, so it is written again with the next group.
    for (uint32_t index : rewrite) {
        const Entry& e = _entries[index];
        if (e.has(flag_chained) && !unsettled(e.state) && !chain_has_ops(index)) {
            record(e.state == JobState::dead ? LedgerOp::Kind::dead : LedgerOp::Kind::ack, index, 0,
                   prior(index, false));
        }
    }
    return undone;
}

JobInfo JobTable::info(uint32_t index) const {
    const Entry& e = _entries[index];
    const Segment& s = _segments[e.segment];
    return {e.id,
            e.route,
            e.state,
            e.attempts,
            e.id.unix_ms() * 1'000'000,
            due_of(index),
            {s.shard, s.seq, e.offset, e.size}};
}

bool JobTable::add(JobId id, uint16_t route, JobLocation where, uint64_t order_key) {
    if (route >= _routes.size() || where.offset > UINT32_MAX || find_index(id) != no_index) {
        return false;
    }
    uint32_t index;
    if (!_free_entries.empty()) {
        index = _free_entries.back();
        _free_entries.pop_back();
    } else {
        if (_entries.size() >= no_index - 1) {
            return false;
        }
        index = static_cast<uint32_t>(_entries.size());
        _entries.emplace_back();
    }
    uint32_t segment = segment_slot(where.shard, where.segment);
    Entry& e = _entries[index];
    // The generation carries on from the slot's previous job: its stale refs must stay stale.
    uint32_t generation = e.generation + 1;
    e = Entry{id,         static_cast<uint32_t>(where.offset),
              where.size, segment,
              generation, route,
              0,          JobState::queued,
              flag_in_use};
    index_insert(index);
    ++_count;
    ++_segments[segment].jobs;
    if (holds_segment(e)) {
        ++_segments[segment].unsettled;
    }
    Route& r = _routes[route];
    ++r.depth.queued;
    if (r.ordered) {
        const uint32_t chain = chain_slot(route, order_key);
        set_chain(index, chain);
        _chains[chain].jobs.push_back(index);
        if (held(index)) {
            return true;
        }
    }
    push_ready(r, index);
    return true;
}

void JobTable::run_timers(Route& r, int64_t now_ns) {
    for (;;) {
        bool retry_due = !r.delayed.empty() && r.delayed.front().at_ns <= now_ns;
        bool lease_due = !r.leases.empty() && r.leases.front().at_ns <= now_ns;
        if (!retry_due && !lease_due) {
            return;
        }
        // Earliest first, so that jobs join the ready FIFO in the order they became ready.
        bool retry_first =
            retry_due && (!lease_due || r.delayed.front().at_ns <= r.leases.front().at_ns);
        std::vector<Timer>& heap = retry_first ? r.delayed : r.leases;
        Timer t = heap.front();
        std::pop_heap(heap.begin(), heap.end(), later<Timer>);
        heap.pop_back();
        if (!live(t)) {
            continue;
        }
        Entry& e = _entries[t.index];
        if (retry_first) {
            e.set(flag_delayed, false);
            --r.depth.delayed;
            push_ready(r, t.index);
        } else {
            expire(t.index, now_ns);
        }
    }
}

void JobTable::expire(uint32_t index, int64_t now_ns) {
    const Entry& e = _entries[index];
    Undo before = prior(index, false);
    if (exhausted(e)) {
        move(index, JobState::dead, e.attempts, 0);
        record(LedgerOp::Kind::dead, index, now_ns, before);
        _expired_deaths.push_back(info(index));
    } else {
        move(index, JobState::queued, e.attempts, 0);
        record(LedgerOp::Kind::expire, index, now_ns, before);
    }
}

void JobTable::take_expired_deaths(std::vector<JobInfo>& out) {
    out.insert(out.end(), _expired_deaths.begin(), _expired_deaths.end());
    _expired_deaths.clear();
}

size_t JobTable::expire_leases(int64_t now_ns) {
    size_t expired = 0;
    for (Route& r : _routes) {
        // Deadline order, as the timers would have. They were handed out before everything
        // still queued: they go to the front of the ready FIFO, to be delivered again first.
        size_t pushed = 0;
        while (!r.leases.empty()) {
            Timer t = r.leases.front();
            std::pop_heap(r.leases.begin(), r.leases.end(), later<Timer>);
            r.leases.pop_back();
            if (live(t)) {
                expire(t.index, now_ns);
                ++expired;
                const Entry& e = _entries[t.index];
                if (e.state == JobState::queued && (!e.has(flag_chained) || !held(t.index))) {
                    ++pushed; // the last ref pushed onto the ready FIFO
                }
            }
        }
        r.ready.rotate_back_to_front(pushed);
        prune(r);
    }
    return expired;
}

size_t JobTable::lease(uint16_t route, size_t max, int64_t visibility_ns, int64_t now_ns,
                       std::vector<JobInfo>& out) {
    if (route >= _routes.size()) {
        return 0;
    }
    Route& r = _routes[route];
    run_timers(r, now_ns);
    int64_t deadline = add_saturated(now_ns, std::max<int64_t>(visibility_ns, 0));
    size_t leased = 0;
    while (leased < max && !r.ready.empty()) {
        Ref ref = r.ready.front();
        r.ready.pop_front();
        if (!live(ref)) {
            continue;
        }
        Entry& e = _entries[ref.index];
        uint16_t attempts = e.attempts == UINT16_MAX ? e.attempts : e.attempts + 1;
        Undo before = prior(ref.index, false);
        move(ref.index, JobState::leased, attempts, deadline);
        record(LedgerOp::Kind::lease, ref.index, now_ns, before);
        out.push_back(info(ref.index));
        ++leased;
    }
    prune(r);
    return leased;
}

JobTable::Settle JobTable::ack(JobId id, int64_t now_ns) {
    uint32_t index = find_index(id);
    if (index == no_index) {
        return Settle::unknown;
    }
    Entry& e = _entries[index];
    switch (e.state) {
    case JobState::done:
        return Settle::already_done;
    case JobState::dead:
        return Settle::dead;
    case JobState::queued:
    case JobState::leased:
        break;
    }
    Undo before = prior(index, true);
    move(index, JobState::done, e.attempts, 0);
    record(LedgerOp::Kind::ack, index, now_ns, before);
    prune(_routes[e.route]);
    return Settle::ok;
}

JobTable::Settle JobTable::nack(JobId id, std::optional<int64_t> delay_ns, int64_t now_ns) {
    uint32_t index = find_index(id);
    if (index == no_index) {
        return Settle::unknown;
    }
    Entry& e = _entries[index];
    if (e.state != JobState::leased) {
        return Settle::not_leased;
    }
    Undo before = prior(index, true);
    if (exhausted(e)) {
        move(index, JobState::dead, e.attempts, 0);
        record(LedgerOp::Kind::dead, index, now_ns, before);
    } else {
        int64_t delay = delay_ns ? std::max<int64_t>(*delay_ns, 0) : retry_backoff_ns(e.attempts);
        move(index, JobState::queued, e.attempts, add_saturated(now_ns, delay));
        record(LedgerOp::Kind::nack, index, now_ns, before);
    }
    prune(_routes[e.route]);
    return Settle::ok;
}

JobTable::Settle JobTable::bury(JobId id, int64_t now_ns) {
    uint32_t index = find_index(id);
    if (index == no_index) {
        return Settle::unknown;
    }
    Entry& e = _entries[index];
    if (e.state != JobState::leased) {
        return Settle::not_leased;
    }
    Undo before = prior(index, true);
    move(index, JobState::dead, e.attempts, 0);
    record(LedgerOp::Kind::dead, index, now_ns, before);
    prune(_routes[e.route]);
    return Settle::ok;
}

JobTable::Settle JobTable::replay(JobId id, int64_t now_ns) {
    uint32_t index = find_index(id);
    if (index == no_index) {
        return Settle::unknown;
    }
    Entry& e = _entries[index];
    if (e.state != JobState::dead) {
        return Settle::not_dead;
    }
    Undo before = prior(index, true);
    move(index, JobState::queued, 0, 0);
    record(LedgerOp::Kind::replay, index, now_ns, before);
    prune(_routes[e.route]);
    return Settle::ok;
}

std::optional<JobInfo> JobTable::find(JobId id) const {
    uint32_t index = find_index(id);
    if (index == no_index) {
        return std::nullopt;
    }
    return info(index);
}

void JobTable::dead_letters(uint16_t route, JobId after, size_t limit,
                            std::vector<JobInfo>& out) const {
    if (route >= _routes.size()) {
        return;
    }
    const std::set<JobId>& dead = _routes[route].dead;
    for (auto it = dead.upper_bound(after); it != dead.end() && limit > 0; ++it, --limit) {
        out.push_back(info(find_index(*it)));
    }
}

int64_t JobTable::next_change_ns(uint16_t route) const {
    if (route >= _routes.size()) {
        return int64_max;
    }
    // prune() after every change keeps both tops live.
    const Route& r = _routes[route];
    int64_t next = int64_max;
    if (!r.delayed.empty()) {
        next = r.delayed.front().at_ns;
    }
    if (!r.leases.empty()) {
        next = std::min(next, r.leases.front().at_ns);
    }
    return next;
}

RouteDepth JobTable::depth(uint16_t route) const {
    if (route >= _routes.size()) {
        return {};
    }
    return _routes[route].depth;
}

int64_t JobTable::oldest_waiting_ns(uint16_t route) const {
    if (route >= _routes.size() || _routes[route].optional) {
        return 0;
    }
    const Route& r = _routes[route];
    int64_t oldest = 0;
    auto consider = [&](uint32_t index) {
        const int64_t at = _entries[index].id.unix_ms() * 1'000'000;
        oldest = oldest == 0 ? at : std::min(oldest, at);
    };
    // The FIFO is in the order jobs became ready: its first live job waited longest of them.
    for (size_t i = 0; i < r.ready.size(); ++i) {
        if (live(r.ready.at(i))) {
            consider(r.ready.at(i).index);
            break;
        }
    }
    for (const Timer& t : r.delayed) {
        if (live(t)) {
            consider(t.index);
        }
    }
    return oldest;
}

size_t JobTable::unsettled_in_segment(uint32_t shard, uint64_t segment) const {
    auto slot = find_segment(shard, segment);
    // A job whose ack could still be undone is not settled: its record must stay.
    return slot ? _segments[*slot].unsettled + _segments[*slot].unresolved : 0;
}

void JobTable::drop_segment(uint32_t shard, uint64_t segment) {
    auto slot = find_segment(shard, segment);
    if (!slot) {
        return;
    }
    if (_segments[*slot].unresolved > 0) {
        // Its jobs' slots will be reused: their undos must not restore another job.
        for (Undo& u : _undo) {
            if (u.index != no_index && _entries[u.index].segment == *slot) {
                u.index = no_index;
            }
        }
        _segments[*slot].unresolved = 0;
    }
    for (uint32_t i = 0; i < _entries.size() && _segments[*slot].jobs > 0; ++i) {
        if (_entries[i].has(flag_in_use) && _entries[i].segment == *slot) {
            remove_entry(i);
        }
    }
    _segment_slots.erase({shard, segment});
    _free_segments.push_back(*slot);
    if (_last_segment == *slot) {
        _last_segment = no_index;
    }
    if (_any_ordered) {
        // The removed jobs leave their sequences (their slots will be reused); a sequence that
        // lost its head goes on with the next job.
        std::erase_if(_chain_ops,
                      [this](const auto& kv) { return !_entries[kv.first].has(flag_in_use); });
        for (uint32_t chain = 0; chain < _chains.size(); ++chain) {
            Chain& c = _chains[chain];
            if (c.head >= c.jobs.size()) {
                continue; // free
            }
            const uint32_t head = c.jobs[c.head];
            // Those before head have left the sequence: their slots go now too.
            size_t kept = 0;
            for (size_t k = c.head; k < c.jobs.size(); ++k) {
                if (_entries[c.jobs[k]].has(flag_in_use)) {
                    c.jobs[kept++] = c.jobs[k];
                }
            }
            c.jobs.resize(kept);
            c.head = 0;
            advance_chain(chain, kept == 0 || c.jobs[0] != head);
        }
    }
    for (Route& r : _routes) {
        prune(r);
    }
    if (_count * 4 <= _entries.size() && _entries.size() > compaction_slack) {
        compact();
    }
}

void JobTable::compact() {
    // Live entries keep their order, so every heap, FIFO and sequence keeps its order too.
    base::PageVector<uint32_t> moved_to(_entries.size());
    std::fill(moved_to.begin(), moved_to.end(), no_index);
    base::PageVector<Entry> kept;
    kept.reserve(_count);
    for (uint32_t i = 0; i < _entries.size(); ++i) {
        if (_entries[i].has(flag_in_use)) {
            moved_to[i] = static_cast<uint32_t>(kept.size());
            kept.push_back(_entries[i]);
        }
    }
    for (Route& r : _routes) {
        RefRing ready;
        ready.reserve(r.ready.size());
        for (size_t i = 0; i < r.ready.size(); ++i) {
            const Ref ref = r.ready.at(i);
            if (live(ref)) {
                ready.push_back({moved_to[ref.index], ref.generation});
            }
        }
        r.ready = std::move(ready);
        for (std::vector<Timer>* heap : {&r.delayed, &r.leases}) {
            std::erase_if(*heap, [this](const Timer& t) { return !live(t); });
            for (Timer& t : *heap) {
                t.index = moved_to[t.index];
            }
            std::make_heap(heap->begin(), heap->end(), later<Timer>);
            heap->shrink_to_fit();
        }
    }
    for (Undo& u : _undo) {
        if (u.index != no_index) {
            u.index = moved_to[u.index];
        }
    }
    for (Chain& c : _chains) {
        for (uint32_t& index : c.jobs) {
            index = moved_to[index];
        }
    }
    auto renumber = [&](auto& map) {
        std::remove_reference_t<decltype(map)> renumbered;
        for (const auto& [index, value] : map) {
            renumbered.emplace(moved_to[index], value);
        }
        map.swap(renumbered);
    };
    renumber(_due);
    renumber(_chain_of);
    renumber(_chain_ops);
    _entries.swap(kept);
    std::vector<uint32_t>().swap(_free_entries);
    base::PageVector<uint32_t>().swap(moved_to);
    base::PageVector<Entry>().swap(kept);
    // Ops vectors keep the largest group's room; a mass settlement need not stay reserved.
    _pending.shrink_to_fit();
    _undo.shrink_to_fit();
    // The index is rebuilt at its start-up size for what is left.
    Index().swap(_index);
    Index().swap(_old_index);
    _migrated = 0;
    reserve(_count);
    for (uint32_t i = 0; i < _entries.size(); ++i) {
        index_place(IndexSlot::of(i, hash_id(_entries[i].id)));
    }
}

void JobTable::apply(const LedgerOp& op) {
    uint32_t index = find_index(op.id);
    if (index == no_index) {
        return;
    }
    const uint32_t chain = chain_of(index);
    // Any op but an ack without a lease (one the pull API allows on a queued job, even a held
    // one) says the job was handed out: so were all before it in its sequence, in order.
    const bool handed_out = op.kind != LedgerOp::Kind::ack || op.attempts != 0;
    if (chain != no_index && handed_out && op.kind <= LedgerOp::Kind::expire &&
        op.kind >= LedgerOp::Kind::lease) {
        leave_chain_before(index);
    }
    switch (op.kind) {
    case LedgerOp::Kind::lease:
        move(index, JobState::leased, op.attempts, op.due_ns);
        break;
    case LedgerOp::Kind::ack:
        move(index, JobState::done, op.attempts, 0);
        break;
    case LedgerOp::Kind::nack:
        move(index, JobState::queued, op.attempts, op.due_ns);
        break;
    case LedgerOp::Kind::dead:
        move(index, JobState::dead, op.attempts, 0);
        break;
    case LedgerOp::Kind::replay:
        move(index, JobState::queued, 0, 0);
        break;
    case LedgerOp::Kind::expire:
        move(index, JobState::queued, op.attempts, 0);
        break;
    default:
        // decode_ledger_op never yields another kind; a hand-made op is ignored like an
        // unknown id.
        return;
    }
    if (chain != no_index) {
        // What the ledger holds is durable: a settled head lets the next job go at once.
        advance_chain(chain, false);
    }
    prune(_routes[_entries[index].route]);
}

std::vector<LedgerOp> JobTable::snapshot_ops() const {
    std::vector<LedgerOp> ops;
    for (uint32_t index = 0; index < _entries.size(); ++index) {
        const Entry& e = _entries[index];
        if (!e.has(flag_in_use)) {
            continue;
        }
        const int64_t due_ns = due_of(index);
        LedgerOp::Kind kind = LedgerOp::Kind::ack;
        switch (e.state) {
        case JobState::queued:
            if (e.attempts == 0 && due_ns == 0) {
                continue; // what add() makes
            }
            kind = due_ns == 0 ? LedgerOp::Kind::expire : LedgerOp::Kind::nack;
            break;
        case JobState::leased:
            kind = LedgerOp::Kind::lease;
            break;
        case JobState::done:
            kind = LedgerOp::Kind::ack;
            break;
        case JobState::dead:
            kind = LedgerOp::Kind::dead;
            break;
        }
        // The time of the last change is not kept; compacted ops carry 0.
        ops.push_back({kind, 0, e.attempts, e.id, 0, due_ns});
    }
    return ops;
}

size_t JobTable::memory_bytes() const {
    // A std::set node: the value plus three pointers and the colour, rounded by the allocator.
    constexpr size_t set_node_bytes = sizeof(JobId) + 32;
    constexpr size_t map_node_bytes = sizeof(std::pair<uint32_t, uint64_t>) + sizeof(uint32_t) + 40;
    size_t n = sizeof(*this);
    n += _entries.capacity() * sizeof(Entry);
    n += _free_entries.capacity() * sizeof(uint32_t);
    n += (_index.capacity() + _old_index.capacity()) * sizeof(IndexSlot);
    n += _routes.capacity() * sizeof(Route);
    for (const Route& r : _routes) {
        n += r.ready.capacity() * sizeof(Ref);
        n += (r.delayed.capacity() + r.leases.capacity()) * sizeof(Timer);
        n += r.dead.size() * set_node_bytes;
    }
    n += _segments.capacity() * sizeof(Segment);
    n += _free_segments.capacity() * sizeof(uint32_t);
    n += _segment_slots.size() * map_node_bytes;
    // An unordered_map node: the pair and a next pointer, plus a bucket pointer.
    n += (_due.size() + _chain_of.size()) * (sizeof(std::pair<uint32_t, int64_t>) + 16);
    n += _pending.capacity() * sizeof(LedgerOp);
    n += _undo.capacity() * sizeof(Undo);
    return n;
}

} // namespace portcullis::queue
