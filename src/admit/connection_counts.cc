#include "portcullis/admit/connection_counts.hh"

#include "portcullis/base/zeroed_pages.hh"

#include <algorithm>
#include <bit>

namespace portcullis::admit {

namespace {

constexpr int count_bits = 24;
constexpr uint64_t count_mask = (uint64_t{1} << count_bits) - 1;
// The table never outgrows this (32 MiB of address space, touched as used), however large
// max_connections is written.
constexpr size_t max_slots = size_t{1} << 22;
constexpr size_t min_slots = 512;
// Every pass either answers or lost a compare-and-swap to a change of the bucket.
constexpr int max_passes = 64;

uint64_t tag_of_key(uint64_t key) {
    return key >> count_bits;
}
uint64_t count_of(uint64_t w) {
    return w & count_mask;
}
bool holds(uint64_t w, uint64_t tag) {
    return count_of(w) != 0 && (w >> count_bits) == tag;
}

} // namespace

ConnectionCounts::ConnectionCounts(size_t max_connections) {
    size_t want = std::clamp(max_connections * 4, min_slots, max_slots);
    size_t slots = std::bit_ceil(want);
    _buckets = slots / slots_per_bucket;
    _slots = static_cast<std::atomic<uint64_t>*>(base::map_zeroed(memory_bytes()));
}

ConnectionCounts::~ConnectionCounts() {
    base::unmap_zeroed(_slots, memory_bytes());
}

uint32_t ConnectionCounts::open(uint64_t key) const {
    const std::atomic<uint64_t>* b = bucket(key);
    const uint64_t tag = tag_of_key(key);
    uint64_t sum = 0;
    for (size_t i = 0; i < slots_per_bucket; ++i) {
        uint64_t w = b[i].load();
        if (holds(w, tag)) {
            sum += count_of(w);
        }
    }
    return static_cast<uint32_t>(sum);
}

ConnectionCounts::Ticket ConnectionCounts::acquire(uint64_t key, uint32_t cap) {
    cap = std::min(cap, max_count - 1);
    std::atomic<uint64_t>* b = bucket(key);
    const uint64_t tag = tag_of_key(key);
    // The key's home slot, where its count usually is: one atomic add takes the bucket's line
    // for this core at once, where a read then a compare-and-swap took it twice (under several
    // shards that was 8.6x the op's own cost; bench/tables). A slot whose count was 0 under
    // another tag is not ours: the add is taken back and the bucket searched as below.
    const size_t home = tag % slots_per_bucket;
    const uint64_t before = b[home].fetch_add(1);
    if ((before >> count_bits) == tag) {
        Ticket t{true, static_cast<int32_t>((b - _slots) + home)};
        if (open(key) > cap) {
            release(t);
            return {false, -1};
        }
        return t;
    }
    b[home].fetch_sub(1);
    for (int pass = 0; pass < max_passes; ++pass) {
        uint64_t sum = 0;
        int mine = -1;
        int free = -1;
        uint64_t seen[slots_per_bucket];
        for (size_t i = 0; i < slots_per_bucket; ++i) {
            seen[i] = b[i].load();
            if (holds(seen[i], tag)) {
                sum += count_of(seen[i]);
                mine = mine < 0 ? static_cast<int>(i) : mine;
            } else if (count_of(seen[i]) == 0 && (free < 0 || i == home)) {
                free = static_cast<int>(i); // the home slot first: the next acquire finds it
            }
        }
        if (sum >= cap) {
            return {false, -1};
        }
        int slot = mine >= 0 ? mine : free;
        if (slot < 0) {
            _untracked.fetch_add(1, std::memory_order_relaxed);
            return {true, -1};
        }
        uint64_t want = mine >= 0 ? seen[slot] + 1 : (tag << count_bits | 1);
        if (!b[slot].compare_exchange_strong(seen[slot], want)) {
            continue;
        }
        Ticket t{true, static_cast<int32_t>((b - _slots) + slot)};
        // A rival may have counted the same key in another slot meanwhile: the sum decides.
        if (open(key) > cap) {
            release(t);
            return {false, -1};
        }
        return t;
    }
    // The bucket kept changing under every pass: this key (or its bucket) is hammered from
    // several shards at once. Admitting uncounted would let it past its cap; refuse instead.
    return {false, -1};
}

void ConnectionCounts::release(Ticket t) {
    if (t.slot >= 0) {
        _slots[t.slot].fetch_sub(1);
    }
}

} // namespace portcullis::admit
