#include "portcullis/admit/connection_counts.hh"

#include "portcullis/base/zeroed_pages.hh"

#include <algorithm>
#include <bit>

namespace portcullis::admit {

namespace {

// A slot word: | tag (32) | generation (8) | verified (1) | open count (23) | (see the header).
constexpr int tag_shift = 32;
constexpr int gen_shift = 24;
constexpr uint64_t gen_mask = uint64_t{0xff} << gen_shift;
constexpr uint64_t verified_bit = uint64_t{1} << 23;
constexpr uint64_t count_mask = verified_bit - 1;
static_assert(ConnectionCounts::max_count == count_mask);
// The table never outgrows this (32 MiB of address space, touched as used), however large
// max_connections is written.
constexpr size_t max_slots = size_t{1} << 22;
constexpr size_t min_slots = 512;
// Every pass either answers or lost a compare-and-swap to a change of the bucket.
constexpr int max_passes = 64;

uint64_t tag_of_key(uint64_t key) {
    return key >> tag_shift;
}
uint64_t tag_of(uint64_t w) {
    return w >> tag_shift;
}
// What a claim of a free slot seen as `old` writes: the key's tag, the next generation (so that
// a compare-and-swap from before the claim fails even if tag and count come back), one open
// connection, not verified.
uint64_t claim_word(uint64_t old, uint64_t tag) {
    return tag << tag_shift | (((old & gen_mask) + (uint64_t{1} << gen_shift)) & gen_mask) | 1;
}
uint64_t count_of(uint64_t w) {
    return w & count_mask;
}
bool is_verified(uint64_t w) {
    return (w & verified_bit) != 0;
}
bool holds(uint64_t w, uint64_t tag) {
    return count_of(w) != 0 && tag_of(w) == tag;
}
size_t home_of(uint64_t tag) {
    return tag % ConnectionCounts::slots_per_bucket;
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
    // Far below the count's top, so that adds taken back at once can never carry out of it.
    cap = std::min(cap, max_count / 2);
    std::atomic<uint64_t>* b = bucket(key);
    const uint64_t tag = tag_of_key(key);
    const size_t home = home_of(tag);
    // One atomic add on the key's home slot takes the bucket's line for this core at once. A
    // slot under another tag is not ours: the add is taken back and the bucket searched.
    const uint64_t before = b[home].fetch_add(1);
    if (tag_of(before) == tag) {
        const Ticket t{true, static_cast<int32_t>((b - _slots) + home)};
        if (is_verified(before)) {
            // The key counts nowhere else: the add's answer is the whole count.
            if (count_of(before) + 1 > cap) {
                release(t);
                return {false, -1};
            }
            return t;
        }
        return settle(b, home, tag, cap, t);
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
        uint64_t want = mine >= 0 ? seen[slot] + 1 : claim_word(seen[slot], tag);
        if (_pause != nullptr) [[unlikely]] {
            _pause(_pause_arg);
        }
        if (!b[slot].compare_exchange_strong(seen[slot], want)) {
            continue;
        }
        const Ticket t{true, static_cast<int32_t>((b - _slots) + slot)};
        if (static_cast<size_t>(slot) != home && tag_of(b[home].load()) == tag) {
            // Counted away from home while the home slot has (or just took) the key's tag:
            // give it back and count at home, so that a verified home stays the key's only
            // slot (the header says why this read suffices).
            release(t);
            continue;
        }
        return settle(b, home, tag, cap, t);
    }
    // The bucket kept changing under every pass: this key (or its bucket) is hammered from
    // several shards at once. Admitting uncounted would let it past its cap; refuse instead.
    return {false, -1};
}

ConnectionCounts::Ticket ConnectionCounts::settle(std::atomic<uint64_t>* b, size_t home,
                                                  uint64_t tag, uint32_t cap, Ticket t) {
    // A rival may have counted the same key in another slot meanwhile: the sum decides.
    uint64_t sum = 0;
    bool elsewhere = false;
    uint64_t at_home = 0;
    for (size_t i = 0; i < slots_per_bucket; ++i) {
        uint64_t w = b[i].load();
        if (i == home) {
            at_home = w;
        }
        if (holds(w, tag)) {
            sum += count_of(w);
            elsewhere = elsewhere || i != home;
        }
    }
    if (sum > cap) {
        release(t);
        return {false, -1};
    }
    if (!elsewhere && holds(at_home, tag) && !is_verified(at_home)) {
        // The key counts at home alone: from now on an add there is the whole check. If the
        // slot changed since it was read, the next acquire tries again.
        b[home].compare_exchange_strong(at_home, at_home | verified_bit);
    }
    return t;
}

void ConnectionCounts::release(Ticket t) {
    if (t.slot >= 0) {
        _slots[t.slot].fetch_sub(1);
    }
}

} // namespace portcullis::admit
