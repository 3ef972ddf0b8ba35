// Rate limits shared by all shards: a GCRA token bucket per key in one fixed, lock-free table.
//
//   RateLimiter limiter(1 << 20);                                  // start-up: 8 MiB, 1Mi keys
//   Limit per_ip = Limit::from(*route.rate_limit->per_ip, route.rate_limit->burst);
//   uint64_t seed = route_seed(route.name) ^ process_secret;       // start-up, per route
//   auto d = limiter.check(rate_key(seed, peer), per_ip, now_ns);  // request path
//   if (!d.allowed) {
//       answer 429 with "Retry-After: " + d.retry_after_s
//   }
//
// GCRA (the generic cell rate algorithm) keeps, per key, one theoretical arrival time (TAT): when
// the key's bucket would be full again. With emission interval T = period / count and tolerance
// tau = T * (burst - 1), a request at `now` is allowed iff max(TAT, now) - tau <= now, and then
// TAT becomes max(TAT, now) + T. A refusal changes nothing, so refused retries do not push the
// client further back. Retry-After is the wait until the next request would pass, rounded up to
// whole seconds.
//
// Memory: 8 bytes per key, nothing else. A slot is one 64-bit word, eight slots form a bucket
// (one cache line), the key's low bits choose the bucket. The table is anonymous memory mapped
// at start-up: untouched buckets cost no RAM, and it never grows. Each key has a home slot in
// its bucket (tag modulo 8), where a check looks first and usually finds it: one load and one
// compare-and-swap, no scan. A key not in its bucket takes an empty slot, else a rested one (TAT
// in the past: its bucket is full again, so forgetting it loses nothing), its home slot first
// among equals, else evicts the key with the smallest TAT, the one closest to rested (counted by
// evictions()). An evicted client gets a full burst again; the route-wide limit bounds what
// that can cost. A key that lives off its home slot (the home was taken) is found by a scan of
// the bucket, and stays where it is when its home frees.
//
// A slot word: | tag (20 bits) | provisional (1) | TAT in microseconds modulo 2^43 (43) |.
// The tag is the key's top 20 bits; 0 is an empty slot. Keys whose bucket and tag agree share
// one state: such a pair is always limited more, never less. Times are kept modulo 2^43 us
// (101 days) and compared as signed differences, so there is no epoch and no uptime limit. A
// state never runs more than max_ahead_us (25 days) ahead of now; a difference beyond that is
// a slot so old that it wrapped, and counts as rested. A slot left untouched for 76 to 101
// days could be misread as busy; forget_rested() (run daily) empties rested slots so that none
// lives that long.
//
// Concurrency. Tag and TAT are one word, so an update is one compare-and-swap over both: a slot
// reused by another key in the meantime fails the swap, and two keys never share a state
// through a race. Checks of one key on several shards are serialised by the swap, so the count
// allowed is exactly what one thread would allow for the same requests. A new key is claimed in
// two steps, like the dedup table: the slot is written provisional, the bucket rescanned for a
// rival claim of the same key (the claim at the lower index, or one already confirmed, wins; a
// provisional rival at a higher index is knocked out), then confirmed. All claim steps are
// sequentially consistent, so of two racing claims at least one sees the other: at most one is
// confirmed, and the loser checks again against the winner's state. A check that finds its key
// provisional waits for the claim to settle, a bounded number of pauses, then knocks it out (a
// claimer preempted mid-claim cannot stall others). Should a key ever hold two confirmed slots
// (only possible through a knocked-out claim rewritten bit for bit by another), the next check
// that scans the bucket merges the later slot into the earlier; while one of the two is the
// key's home slot, checks use that one alone and the other rests unused.
#pragma once

#include "portcullis/base/address.hh"
#include "portcullis/config/config.hh"

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace portcullis::admit {

// One limit, in the table's unit (microseconds).
struct Limit {
    int64_t interval_us = 1;  // T: the time one request uses up, >= 1
    int64_t tolerance_us = 0; // tau: how far ahead of now a key may run, >= 0

    // Requests beyond the first that may arrive at once: burst - 1. burst 0 means the count of
    // one period (the per_ip default; route-wide limits pass rate.count). The interval is
    // rounded up to whole microseconds (never more permissive than configured), and tolerance
    // plus interval is capped at max_ahead_us.
    static Limit from(const config::Rate& rate, uint32_t burst);
};

// The key of one client on one route: XXH3 of the 16-byte address (IPv4 mapped; the port is not
// part of a client's identity) seeded with the route's seed. Mix a per-process secret into the
// seed: keys that outsiders cannot compute cannot be aimed at a victim's bucket and tag.
uint64_t rate_key(uint64_t route_seed, const base::PeerAddress& peer);
// The key of a route's own limit (all clients together); never equal to a client key of the
// same seed except by a 64-bit hash collision.
uint64_t route_rate_key(uint64_t route_seed);

class RateLimiter {
public:
    static constexpr size_t slots_per_bucket = 8;
    // The furthest a state may run ahead of now: limits are capped to it (about 25 days).
    static constexpr int64_t max_ahead_us = int64_t{1} << 41;

    struct Decision {
        bool allowed = true;
        int64_t retry_after_s = 0; // refused: whole seconds until a request would pass, >= 1
    };

    // Room for at least min_keys keys (rounded up to a power of two of buckets).
    explicit RateLimiter(size_t min_keys);
    ~RateLimiter();
    RateLimiter(const RateLimiter&) = delete;
    RateLimiter& operator=(const RateLimiter&) = delete;

    // Counts one request of key at now_ns (any clock that only moves forward, e.g. Unix ns) if
    // the limit allows it. Never blocks, allocates or reads a clock.
    Decision check(uint64_t key, const Limit& limit, int64_t now_ns);

    // Empties every rested slot; returns how many. For a periodic sweep off the request path
    // (see the header comment): it keeps slots from living long enough for their time to wrap.
    size_t forget_rested(int64_t now_ns);

    size_t capacity() const { return _buckets * slots_per_bucket; }
    size_t memory_bytes() const { return capacity() * sizeof(uint64_t); }
    // Keys forgotten before they had rested, to make room for another.
    uint64_t evictions() const { return _evictions.load(std::memory_order_relaxed); }
    // Checks allowed without being counted because their bucket stayed contended (every slot
    // provisional through all retries): impossible with fewer shards than slots per bucket.
    uint64_t unsettled() const { return _unsettled.load(std::memory_order_relaxed); }

private:
    // check() past the key's home slot: the whole bucket scanned, claims, merges. Kept out of
    // line so that the hot path saves no registers.
    [[gnu::noinline]] Decision check_in_bucket(std::atomic<uint64_t>* b, uint64_t tag, uint64_t now,
                                               int64_t interval, int64_t tolerance);
    std::atomic<uint64_t>* bucket(uint64_t key) const {
        return _slots + (key & (_buckets - 1)) * slots_per_bucket;
    }

    std::atomic<uint64_t>* _slots = nullptr;
    size_t _buckets = 0;
    std::atomic<uint64_t> _evictions{0};
    std::atomic<uint64_t> _unsettled{0};
};

} // namespace portcullis::admit
