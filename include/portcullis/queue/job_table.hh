// The control plane's index of every job in the spool and the state machine of the pull API:
// queued -> leased -> done, with retries, lease expiry, dead letters and replay. One thread
// (the control plane's), no locks; time is always passed in, nothing here reads a clock or does
// I/O. Every state change is also appended to pending_ops() for the ledger (ledger.hh), and
// can be undone until the ledger has it (see "Durability" below).
//
//   JobTable table({10, 3});                                  // max_attempts of routes 0 and 1
//   table.add(id, 0, {shard, segment, offset, size});          // each job, at start too
//   for (const LedgerOp& op : recovered.ops) { table.apply(op); }      // start-up only
//
//   std::vector<JobInfo> jobs;
//   table.lease(0, 10, 30 * ns_per_s, now_ns, jobs);          // POST /v1/lease
//   table.ack(jobs[0].id, now_ns);                            // POST /v1/jobs/{id}/ack
//   table.nack(jobs[1].id, std::nullopt, now_ns);             // retry after a backoff
//   ...encode table.pending_ops(), then table.ops_taken()...
//   ...write and fdatasync them, then table.ops_durable(n), or table.ops_failed() on an error...
//   timer.arm(table.next_change_ns(0));                       // wake long polls
//
// Order: lease() hands out ready jobs in the order they became ready: new jobs in add() order,
// a retried job when its not-before or its lease deadline passed. Timers are evaluated lazily:
// an expired lease or a due retry moves only when lease() runs for its route, so find() may show
// a job as leased after its deadline until then.
//
// Cost: lease, ack, nack and replay are O(log n) (heaps) or O(1) amortised (hash map, ready
// FIFO); nothing allocates per job beyond amortised vector growth, except that a job entering the
// dead letters allocates one set node, and a leased or delayed job one node for its due time.
// drop_segment and snapshot_ops are O(n) scans (rare).
// Memory (issue 19: at most 64 bytes per queued job): the 40-byte entry, an 8-byte index slot at
// most 70% full (11.4 bytes a job when reserve() sized it) and an 8-byte FIFO slot: 59.4 bytes a
// job after a start-up's reserve() (AQueuedJobCostsAtMost64Bytes; 58-60 bytes of RSS a job in
// bench/spool/deep). A leased or delayed job has a 16-byte heap slot instead of the FIFO slot and
// a map node for its due time. Jobs stay in the table when done, until drop_segment; once
// retention has dropped three quarters of the entries the table compacts and frees the rest.
//
// Durability. A change is made in the table at once (a lease must see it), and the job's prior
// state is kept in an undo log (24 bytes an op, a vector that stops growing at the largest
// group: no allocation per op) until the caller resolves the ledger group holding its op:
// ops_durable() forgets the undo, ops_failed() rolls back. Undoing rather than staging keeps
// one view of every job for find(), lease() and the counters, and costs nothing when the disk
// works. On a failure:
// - ack, nack and replay are undone, newest first: their answers wait for the ledger and are
//   all refused (503), whether their op was in the failed group or gathered since, so the table
//   never shows a change that was answered 503 (a retry finds the job as it was, and writes).
// - a lease is kept: it was answered before its op was durable, on purpose; the consumer holds
//   the job and may still ack or nack it. Its op is lost, as in a crash: after a restart the
//   job is delivered again. The same for an expiry or a death by expiry (no answer waits for
//   them): after a restart the ledger has the job leased past its deadline (or in an older
//   state), and the next lease() expires it again.
// - a change that built on an undone one is undone too (a lease of a job whose replay or nack
//   was undone): so what is kept of a job is a prefix of its changes, and undoing the rest
//   newest first restores the state after that prefix.
// - bury is undone like nack: its answer waits.
// - ordered routes: a sequence's next job is released only when ops_durable() resolves the last
//   op of its head's settlement (ack, nack or bury to dead, death by expiry), never when the
//   change is made: an undone ack cannot have let the next job out. A death by expiry is kept
//   on a failure like any expiry, but its op is lost with the group: it is recorded again (a
//   dead op in pending_ops()), and the next job waits for that one to be durable.
// A rolled-back job that goes back to the queue rejoins it at the end; a held job of a sequence
// stays held.
//
// Ordered routes (RouteOptions::ordered). The jobs of one (route, order key) form a sequence in
// add() order; only its head is ever ready, the others are held (queued, counted in depth, in no
// FIFO). The head leaves once it is done or dead and that is durable, and the next job becomes
// ready. A late ack of a held job (the pull API allows acking a queued job) settles it in
// place: it leaves at once when its turn comes. A replayed dead job (which has left its
// sequence) is ready at once, out of order: the operator asked for it. At start-up, apply()
// rebuilds the sequences from the ops alone: an op of a job (other than an ack without a lease)
// shows it was handed out, so every job before it in its sequence was too and has left (a
// replayed one among them is ready at once, as it was); a settled head leaves, and the first
// job after the last one handed out is the head. Non-ordered routes pay nothing: the sequence
// index fits in Entry's padding, the sequences live in side containers used only by ordered
// routes.
#pragma once

#include "portcullis/base/zeroed_pages.hh"
#include "portcullis/queue/job_id.hh"
#include "portcullis/queue/ledger.hh"

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace portcullis::queue {

constexpr int64_t ns_per_s = 1'000'000'000;
// How a route's jobs are handled in one table.
struct RouteOptions {
    uint32_t max_attempts = 0; // 0: no limit, the job is retried forever
    // The pull API's table of a route that also has sinks: a job the pull API never leased
    // (attempts 0) does not hold its segment back (unsettled_in_segment does not count it).
    bool optional = false;
    // One job at a time per ordering key, in add() order: see "Ordered routes" above.
    bool ordered = false;
};

// Retry delay after a nack without one: 1 s, doubling with every attempt, at most 10 minutes.
constexpr int64_t backoff_base_ns = ns_per_s;
constexpr int64_t backoff_cap_ns = 600 * ns_per_s;

enum class JobState : uint8_t { queued, leased, done, dead };

// "queued" "leased" "done" "dead": the names of the API and the logs.
std::string_view state_name(JobState state);

// Where a job's record lives in the spool.
struct JobLocation {
    uint32_t shard = 0;
    uint64_t segment = 0; // the segment's sequence number
    uint64_t offset = 0;  // of the record in the segment file
    uint32_t size = 0;    // of the whole record
};

// One job, copied out to callers.
struct JobInfo {
    JobId id;
    uint16_t route = 0;
    JobState state = JobState::queued;
    uint16_t attempts = 0;      // times leased (since the last replay)
    int64_t received_at_ns = 0; // the id's time (milliseconds)
    int64_t due_ns = 0;         // leased: lease deadline; queued: not-before (0 = now); else 0
    JobLocation where;
};

// Counts of one route's jobs, for /healthz and metrics.
struct RouteDepth {
    size_t queued = 0;  // including those waiting for a retry delay
    size_t delayed = 0; // queued with a not-before that had not passed at the last lease()
    size_t leased = 0;
    size_t done = 0;
    size_t dead = 0;
};

// The retry delay after the given number of attempts (>= 1): backoff_base_ns << (attempts - 1),
// capped at backoff_cap_ns.
int64_t retry_backoff_ns(uint16_t attempts);

class JobTable {
public:
    // Index = route number.
    explicit JobTable(std::vector<RouteOptions> routes);
    // Routes with only a max_attempts each (0: no limit).
    explicit JobTable(const std::vector<uint32_t>& max_attempts_per_route);
    // JobTable({10, 3}): the same, without an ambiguity with the vector of options.
    JobTable(std::initializer_list<uint32_t> max_attempts_per_route)
        : JobTable(std::vector<uint32_t>(max_attempts_per_route)) {}

    // Live reload (JobStore::reconfigure). A route added after construction gets the next
    // number (returned); numbers never move. At most 65,535 routes: callers check routes().
    uint16_t add_route(RouteOptions options);
    // New options for every route (index = route number; routes beyond the vector keep theirs):
    // max_attempts applies from the next outcome of each job (a job past the new limit dies at
    // its next failure); a change of optional recounts which segments the route's jobs hold (one
    // pass over the jobs for all routes). ordered is not changed here: a sequence's state is
    // built as jobs are added, so JobStore refuses that change (check_reconfigure).
    void set_routes(const std::vector<RouteOptions>& options);
    RouteOptions route_options(uint16_t route) const;
    size_t routes() const { return _routes.size(); }
    // Appends every job of the routes flagged in `routes` (indexed by route number), whatever
    // its state, in no particular order. O(n): reloads only.
    void jobs_of(const std::vector<bool>& routes, std::vector<JobInfo>& out) const;

    // A new queued job, ready now (on an ordered route: once the job before it of the same
    // order_key is settled and durable; order_key is ignored on other routes). False if the id
    // is already known or the route out of range.
    // The job's receive time is its id's (JobId::unix_ms). False too when where.offset does
    // not fit 32 bits (segments are at most 4 GiB).
    bool add(JobId id, uint16_t route, JobLocation where, uint64_t order_key = 0);
    // Start-up: room for this many jobs in all, so that indexing a deep spool grows nothing
    // (and leaves no copies behind: the index is sized to the count, not to a power of two).
    void reserve(size_t jobs);
    // The same for this many more jobs of each route (index = route number), the ready FIFOs
    // included.
    void reserve(const std::vector<size_t>& more_per_route);
    // Start-up: brings the index slot where the id's probe starts into the cache, a few add()s
    // ahead of the one that needs it (a deep spool's adds otherwise wait on a miss each).
    void prefetch(const JobId& id) const;

    // Leases up to max ready jobs of route (ready: queued and not-before <= now), in the order
    // they became ready. First moves the route's timers that are due: retries whose not-before
    // passed become ready, and leases whose deadline passed go back to the queue (ready now), or
    // to the dead letters if they had max_attempts attempts. Each leased job: state leased,
    // attempts + 1, due = now + visibility (a negative visibility counts as 0). Appends copies to
    // out and returns how many. An unknown route leases nothing.
    size_t lease(uint16_t route, size_t max, int64_t visibility_ns, int64_t now_ns,
                 std::vector<JobInfo>& out);

    enum class Settle : uint8_t {
        ok,
        already_done, // ack of a done job: nothing changed (a repeated ack)
        not_leased,   // nack of a job that is not leased
        not_dead,     // replay of a job that is not dead
        dead,         // ack of a dead job: it stays dead (replay it)
        unknown,      // no such job (never existed, or its segment was deleted)
    };

    // leased or queued -> done. A late ack, after the lease expired and the job went back to the
    // queue, still counts: the work was done.
    Settle ack(JobId id, int64_t now_ns);
    // leased -> queued, ready at now + (delay if given, else retry_backoff_ns(attempts)), or
    // -> dead if the job had max_attempts attempts. A negative delay counts as 0.
    Settle nack(JobId id, std::optional<int64_t> delay_ns, int64_t now_ns);
    // leased -> dead at once, whatever the attempts left (a push delivery refused for good, an
    // HTTP 4xx). Its answer waits for the ledger, like ack and nack.
    Settle bury(JobId id, int64_t now_ns);
    // dead -> queued, attempts 0, ready now (on an ordered route too: the operator asked).
    Settle replay(JobId id, int64_t now_ns);
    // Start-up, after apply(): every leased job's lease is void (the process that held it is
    // gone): it goes back to the queue ready now, or to the dead letters if it had max_attempts
    // attempts, as if its lease had run out (an expire or dead op each, in pending_ops()).
    // Returns how many.
    size_t expire_leases(int64_t now_ns);

    std::optional<JobInfo> find(JobId id) const;

    // Appends up to limit dead jobs of route with ids > after, in id order (for paging: pass
    // the last id of the previous page; JobId{} starts from the beginning).
    void dead_letters(uint16_t route, JobId after, size_t limit, std::vector<JobInfo>& out) const;

    // The earliest time at which a timer of route falls due: a retry's not-before or a lease's
    // deadline; INT64_MAX if none. For long polls: lease(route) may return something new at that
    // time (or when add() is called). It can be <= now if lease() has not run since the timer
    // fell due: then lease() has something right away.
    int64_t next_change_ns(uint16_t route) const;

    RouteDepth depth(uint16_t route) const;
    // When the oldest job waiting for this table's consumer was received (0 if none): the next
    // job a lease hands out, or one waiting for its retry delay. An optional lane counts none
    // (its jobs wait for no one). Costs the retry heap's size (/metrics, once a scrape).
    int64_t oldest_waiting_ns(uint16_t route) const;

    // Retention: how many jobs of the segment are queued or leased, plus how many changes of its
    // jobs are not durable yet (ops_failed() could undo them: the records must stay); 0 for an
    // unknown segment.
    size_t unsettled_in_segment(uint32_t shard, uint64_t segment) const;
    // Forgets every job of the segment, whatever its state: its file has been deleted. Changes
    // of its jobs not yet durable can no longer be undone.
    void drop_segment(uint32_t shard, uint64_t segment);

    // The ops made by lease/ack/nack/replay and by timers since the last ops_taken(), in order.
    const std::vector<LedgerOp>& pending_ops() const { return _pending; }
    // The jobs that went to the dead letters because their last lease ran out (in lease() or
    // expire_leases()), since the last call: moved into `out` (GET /events' job.dead).
    void take_expired_deaths(std::vector<JobInfo>& out);
    // The caller has taken pending_ops() as one ledger group (encoded them): they leave
    // pending_ops(); their undo stays until ops_durable() or ops_failed().
    void ops_taken();
    // The oldest count taken ops are in the ledger (groups are resolved in the order taken).
    void ops_durable(size_t count);
    // The taken ops could not be written or synced: rolls back as described above, the taken
    // ops and those pending since; kept ops that were pending stay in pending_ops(). Returns
    // how many changes were undone.
    size_t ops_failed();
    // Ops taken or pending whose group is not resolved yet.
    size_t ops_unresolved() const { return _undo.size(); }
    // Start-up: after add()ing the recovered jobs, apply the ledger's ops in order. Sets the
    // job's state from the op alone; ops for unknown ids are ignored (their segment was
    // deleted). Adds nothing to pending_ops(). Ordered routes rebuild their sequences as it
    // goes (see "Ordered routes").
    void apply(const LedgerOp& op);
    // Compaction: the fewest ops that, applied to freshly added jobs, rebuild every job's
    // current state, attempts and due time (queued jobs never leased need none). Includes the
    // effect of ops still pending.
    std::vector<LedgerOp> snapshot_ops() const;

    size_t size() const { return _count; }
    // Approximate heap bytes held (containers' capacities), for the docs and /metrics.
    size_t memory_bytes() const;

private:
    static constexpr uint32_t no_index = UINT32_MAX;

    // Flag bits of Entry::flags.
    static constexpr uint8_t flag_in_use = 1;   // false: a free slot, reused by add()
    static constexpr uint8_t flag_delayed = 2;  // queued, waiting in the delayed heap, not the FIFO
    static constexpr uint8_t flag_undoing = 4;  // ops_failed(): a change of it is being undone
    static constexpr uint8_t flag_has_due = 8;  // its due time is in _due (else it is 0)
    static constexpr uint8_t flag_chained = 16; // ordered routes: in a sequence (see _chain_of)

    // 40 bytes a job. What most jobs do not need lives beside it: the due time of a leased or
    // delayed job in _due, the sequence of an ordered route's job in _chain_of. The receive time
    // is the id's (the shard makes both from one clock reading; the id keeps milliseconds).
    struct Entry {
        JobId id;
        uint32_t offset = 0; // segments are at most 4 GiB
        uint32_t size = 0;
        uint32_t segment = 0; // index into _segments
        // Bumped on every state change: heap and FIFO slots holding an older value are stale.
        uint32_t generation = 0;
        uint16_t route = 0;
        uint16_t attempts = 0;
        JobState state = JobState::queued;
        uint8_t flags = 0;

        bool has(uint8_t f) const { return (flags & f) != 0; }
        void set(uint8_t f, bool on) { flags = on ? (flags | f) : (flags & ~f); }
    };
    // The memory figures above count on it.
    static_assert(sizeof(Entry) == 40);

    // A job's state before one change, in the same order as the ops (the last pending_ops()
    // entries are the last undos).
    struct Undo {
        int64_t due_ns = 0;
        uint32_t index = 0; // no_index: the job was dropped since
        uint16_t attempts = 0;
        JobState state = JobState::queued;
        bool waits = false; // its answer waits for the ledger: undone on a failure
        bool undo = false;  // ops_failed(): chosen to be undone
    };
    // The size the "Durability" comment gives.
    static_assert(sizeof(Undo) == 24);

    struct Ref {
        uint32_t index;
        uint32_t generation;
    };
    struct Timer {
        int64_t at_ns;
        uint32_t index;
        uint32_t generation;
    };

    // A FIFO of refs in a power-of-two ring: no allocation once grown.
    class RefRing {
    public:
        RefRing() = default;
        RefRing(RefRing&&) noexcept = default;
        RefRing& operator=(RefRing&&) noexcept = default;
        // Tables are copied in tests: the copy holds the refs in order, from slot 0.
        RefRing(const RefRing& other) { *this = other; }
        RefRing& operator=(const RefRing& other);
        ~RefRing() = default;
        bool empty() const { return _count == 0; }
        size_t size() const { return _count; }
        size_t capacity() const { return _slots.size(); } // a power of two
        const Ref& front() const { return _slots[_head]; }
        const Ref& at(size_t i) const { return _slots[(_head + i) & (capacity() - 1)]; }
        void pop_front();
        void push_back(Ref ref);
        // Room for n refs (a power of two at least n). Pages never written are never resident.
        void reserve(size_t n);
        // Moves the last n refs to the front, in order.
        void rotate_back_to_front(size_t n);
        // Keeps the refs for which keep(ref) is true, in order.
        template <typename F>
        void filter(F&& keep);

    private:
        base::PageVector<Ref> _slots; // grows without copying (see reserve)
        size_t _head = 0;
        size_t _count = 0;
    };

    struct Route {
        uint32_t max_attempts = 0;
        bool optional = false;
        bool ordered = false;
        RefRing ready;
        std::vector<Timer> delayed; // min-heap by not-before
        std::vector<Timer> leases;  // min-heap by deadline
        std::set<JobId> dead;
        RouteDepth depth;
    };

    struct Segment {
        uint32_t shard = 0;
        uint64_t seq = 0;
        size_t jobs = 0;       // entries pointing here
        size_t unsettled = 0;  // of which queued or leased
        size_t unresolved = 0; // undo entries of its jobs
    };

    // The jobs of one (ordered route, order key) in add() order. jobs[head] is the one handed
    // out (or waiting to be); those after it are held: queued, in no ready FIFO or heap. Those
    // before head have left the sequence (kept until compaction).
    struct Chain {
        uint16_t route = 0;
        uint64_t key = 0;
        std::vector<uint32_t> jobs;
        size_t head = 0;
    };

    // An index slot keeps the id's hash, so that probing and deletion read no entries.
    // Stored inverted, so that an all-zero slot (a page nobody wrote: base::PageVector) is
    // an empty one, no_index.
    struct IndexSlot {
        uint32_t inverted_entry;
        uint32_t hash;

        static IndexSlot of(uint32_t entry, uint32_t hash) { return {~entry, hash}; }
        uint32_t entry() const { return ~inverted_entry; }
        void set_entry(uint32_t entry) { inverted_entry = ~entry; }
    };
    using Index = base::PageVector<IndexSlot>;

    // Linear probing over any number of slots: a hash picks its home by multiply-shift.
    static size_t home_in(const Index& t, uint32_t hash) {
        return static_cast<size_t>((static_cast<uint64_t>(hash) * t.size()) >> 32);
    }
    static size_t next_in(const Index& t, size_t pos) { return pos + 1 == t.size() ? 0 : pos + 1; }
    size_t home_of(uint32_t hash) const { return home_in(_index, hash); }
    size_t next_slot(size_t pos) const { return next_in(_index, pos); }
    // Start-up and compaction: the index at this size at once (after any growth in progress).
    void index_resize(size_t slots);
    // Moves up to n slots of the old index into the new one; frees the old one once all are.
    void index_migrate(size_t n);
    uint32_t find_in(const Index& t, const JobId& id, uint32_t hash) const;
    uint32_t find_index(const JobId& id) const;
    void index_place(IndexSlot slot);
    void index_insert(uint32_t index);
    void index_erase(uint32_t index);
    uint32_t segment_slot(uint32_t shard, uint64_t seq);
    std::optional<uint32_t> find_segment(uint32_t shard, uint64_t seq) const;

    bool live(Ref ref) const;
    bool live(const Timer& t) const;
    // Leaves the current state (counters, dead set) and enters the new one, pushing the job
    // into the container of its new state under a new generation.
    void move(uint32_t index, JobState to, uint16_t attempts, int64_t due_ns);
    void leave_state(Entry& e, Route& r);
    void remove_entry(uint32_t index);
    // After drop_segment: when at most a quarter of the entries are in use, moves the live ones
    // to the front (renumbering every reference to them, in order) and gives the rest of every
    // container back, so that what retention deleted costs no memory afterwards.
    void compact();
    void push_timer(std::vector<Timer>& heap, size_t live_count, Timer t);
    void push_ready(Route& r, uint32_t index);
    // Pops stale slots off the fronts, so that next_change_ns reads a live timer; compaction
    // keeps stale slots deeper down below half of each container.
    void prune(Route& r);
    void run_timers(Route& r, int64_t now_ns);
    // The job's state before a change, for record(); waits: the change's answer waits for the
    // ledger (ack, nack, replay).
    Undo prior(uint32_t index, bool waits) const;
    void record(LedgerOp::Kind kind, uint32_t index, int64_t now_ns, const Undo& before);
    // durable: the op is in the ledger (ops_durable), else it is lost (ops_failed).
    void forget_undo(const Undo& u, bool durable);
    // The one place where a leased job's lease ends without an answer (timers and start-up):
    // -> queued ready now, or dead when exhausted.
    void expire(uint32_t index, int64_t now_ns);
    // Puts a queued job in its route's ready FIFO or delayed heap.
    void enter_queue(Route& r, uint32_t index);
    bool holds_segment(const Entry& e) const;
    // Ordered routes.
    bool held(uint32_t index) const;
    int64_t due_of(uint32_t index) const;
    void set_due(uint32_t index, int64_t due_ns);
    // The sequence of index, no_index when it is in none.
    uint32_t chain_of(uint32_t index) const;
    void set_chain(uint32_t index, uint32_t chain);
    uint32_t chain_slot(uint16_t route, uint64_t key);
    // Lets the head leave its sequence while it is settled with no op unresolved, and queues
    // the job that becomes head (head_changed: the head already changed before the call).
    void advance_chain(uint32_t chain, bool head_changed);
    // apply(): index's op says it was handed out, so every job before it was too.
    void leave_chain_before(uint32_t index);
    bool chain_has_ops(uint32_t index) const;
    JobInfo info(uint32_t index) const;
    bool exhausted(const Entry& e) const;

    base::PageVector<Entry> _entries; // grows without copying; a new entry is Entry{}: zero
    std::vector<uint32_t> _free_entries;
    size_t _count = 0;
    // Open addressing with linear probing, at most 70% full. It grows without a pause: past 70%
    // a table twice the size becomes _index and the old one drains into it, a few slots per
    // insert (done long before the new one is 70% full), while lookups try both. A slot of the
    // old one whose job moved or was erased keeps the probes that pass it going: `moved`.
    Index _index;
    Index _old_index;
    size_t _migrated = 0;                           // slots of _old_index moved so far
    static constexpr uint32_t moved = no_index - 1; // entries stop at no_index - 2 (add())
    static constexpr size_t migrate_per_insert = 8;
    std::vector<Route> _routes;
    std::vector<Segment> _segments;
    std::vector<uint32_t> _free_segments;
    std::map<std::pair<uint32_t, uint64_t>, uint32_t> _segment_slots; // (shard, seq) -> index
    uint32_t _last_segment = no_index; // add() comes in runs from one segment
    std::vector<LedgerOp> _pending;
    std::vector<JobInfo> _expired_deaths;
    std::vector<Undo> _undo; // taken ops first, then one per pending op
    // Ordered routes only (empty otherwise): the sequences, and for each job in one the count
    // of its ops not yet resolved (the head leaves only once its settlement is durable).
    bool _any_ordered = false;
    std::vector<Chain> _chains;
    std::vector<uint32_t> _free_chains;
    std::map<std::pair<uint16_t, uint64_t>, uint32_t> _chain_slots;
    std::unordered_map<uint32_t, uint32_t> _chain_ops;
    std::unordered_map<uint32_t, uint32_t> _chain_of; // entry -> its sequence
    // Due times that are not 0: leased jobs' deadlines and delayed jobs' not-before, by entry.
    std::unordered_map<uint32_t, int64_t> _due;
};

} // namespace portcullis::queue
