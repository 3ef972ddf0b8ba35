#include "portcullis/admit/rate_limit.hh"

#include "../pin_cpu.hh"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

using namespace portcullis;
using namespace portcullis::admit;

namespace {

constexpr int64_t us = 1'000;
constexpr int64_t ms = 1'000'000;
constexpr int64_t s = 1'000'000'000;
constexpr int64_t t0 = 1'795'000'000 * s;

constexpr config::Rate per_second(uint64_t n) {
    return {n, s};
}
constexpr config::Rate per_minute(uint64_t n) {
    return {n, 60 * s};
}
constexpr config::Rate per_hour(uint64_t n) {
    return {n, 3600 * s};
}

// Keys with distinct tags that all land in bucket `bucket` (the bucket is the key's low bits,
// the tag its top 20).
uint64_t key_in_bucket(uint64_t n, uint64_t bucket = 0) {
    return (n + 1) << 44 | bucket;
}

// How many of n checks at now pass.
int allowed_of(RateLimiter& t, uint64_t key, const Limit& l, int64_t now, int n) {
    int allowed = 0;
    for (int i = 0; i < n; ++i) {
        allowed += t.check(key, l, now).allowed ? 1 : 0;
    }
    return allowed;
}

} // namespace

TEST(RateLimitLimit, FromRateAndBurst) {
    const int64_t max_ahead = RateLimiter::max_ahead_us;
    struct Row {
        const char* name;
        config::Rate rate;
        uint32_t burst;
        int64_t interval_us;
        int64_t tolerance_us;
    };
    const Row rows[] = {
        {"20/s burst 40", per_second(20), 40, 50'000, 39 * 50'000},
        {"20/s burst 0 is the count of one period", per_second(20), 0, 50'000, 19 * 50'000},
        {"route 2000/s, burst = count", per_second(2000), 2000, 500, 1999 * 500},
        {"100/min burst 1", per_minute(100), 1, 600'000, 0},
        {"1/h burst 1", per_hour(1), 1, 3'600'000'000, 0},
        {"3/s rounds the interval up", per_second(3), 1, 333'334, 0},
        {"beyond 1M/s is 1 us", per_second(5'000'000), 1, 1, 0},
        {"count 0 is taken as 1", {0, s}, 1, 1'000'000, 0},
        {"a huge burst is capped", per_hour(1), std::numeric_limits<uint32_t>::max(), 3'600'000'000,
         max_ahead - 3'600'000'000},
    };
    for (const Row& r : rows) {
        Limit l = Limit::from(r.rate, r.burst);
        EXPECT_EQ(l.interval_us, r.interval_us) << r.name;
        EXPECT_EQ(l.tolerance_us, r.tolerance_us) << r.name;
    }
}

TEST(RateLimit, BurstOfFortyThenOneEveryFiftyMilliseconds) {
    RateLimiter t(1024);
    const Limit l = Limit::from(per_second(20), 40);
    const uint64_t k = 42;
    EXPECT_EQ(allowed_of(t, k, l, t0, 40), 40);
    RateLimiter::Decision d = t.check(k, l, t0);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.retry_after_s, 1);
    for (int64_t n = 1; n <= 100; ++n) {
        // One microsecond early nothing passes; at the instant exactly one does.
        EXPECT_EQ(allowed_of(t, k, l, t0 + n * 50 * ms - us, 3), 0) << n;
        EXPECT_EQ(allowed_of(t, k, l, t0 + n * 50 * ms, 3), 1) << n;
    }
    EXPECT_EQ(t.evictions(), 0u);
}

TEST(RateLimit, HundredPerMinuteBurstOneIsSpacedBy600ms) {
    RateLimiter t(1024);
    const Limit l = Limit::from(per_minute(100), 1);
    const uint64_t k = 7;
    int64_t now = t0;
    for (int n = 0; n < 50; ++n) {
        EXPECT_TRUE(t.check(k, l, now).allowed) << n;
        RateLimiter::Decision d = t.check(k, l, now + 600 * ms - 1);
        EXPECT_FALSE(d.allowed) << n;
        EXPECT_EQ(d.retry_after_s, 1) << n;
        now += 600 * ms;
    }
}

TEST(RateLimit, RetryAfterRoundsUpToWholeSeconds) {
    struct Row {
        int64_t after;
        bool allowed;
        int64_t retry_after_s;
    };
    const Row rows[] = {
        {0, false, 3600},     {1 * us, false, 3600}, {999 * ms, false, 3600},
        {1 * s, false, 3599}, {3599 * s, false, 1},  {3600 * s - 1 * us, false, 1},
        {3600 * s, true, 0},
    };
    for (const Row& r : rows) {
        RateLimiter t(1024);
        const Limit l = Limit::from(per_hour(1), 1);
        ASSERT_TRUE(t.check(1, l, t0).allowed);
        RateLimiter::Decision d = t.check(1, l, t0 + r.after);
        EXPECT_EQ(d.allowed, r.allowed) << r.after;
        EXPECT_EQ(d.retry_after_s, r.retry_after_s) << r.after;
    }
}

TEST(RateLimit, RefusalsDoNotConsume) {
    RateLimiter t(1024);
    const Limit l = Limit::from(per_second(1), 1);
    ASSERT_TRUE(t.check(9, l, t0).allowed);
    for (int64_t n = 0; n < 1000; ++n) {
        RateLimiter::Decision d = t.check(9, l, t0 + n * ms);
        ASSERT_FALSE(d.allowed) << n;
        ASSERT_EQ(d.retry_after_s, 1) << n;
    }
    EXPECT_TRUE(t.check(9, l, t0 + s).allowed);
}

TEST(RateLimit, KeysAreIndependent) {
    RateLimiter t(1024);
    const Limit l = Limit::from(per_second(10), 5);
    EXPECT_EQ(allowed_of(t, 1, l, t0, 10), 5);
    EXPECT_EQ(allowed_of(t, 2, l, t0, 10), 5);
    // Same bucket, other tag: still apart.
    EXPECT_EQ(allowed_of(t, key_in_bucket(1, 3), l, t0, 10), 5);
    EXPECT_EQ(allowed_of(t, key_in_bucket(2, 3), l, t0, 10), 5);
    EXPECT_EQ(allowed_of(t, 1, l, t0 + 100 * ms, 10), 1);
}

TEST(RateLimit, FullBucketTakesARestedSlotWithoutEvicting) {
    RateLimiter t(8); // one bucket of eight slots
    ASSERT_EQ(t.capacity(), 8u);
    const Limit l = Limit::from(per_second(1), 1);
    // Key 7 is checked at t0 only; keys 0..6 again at t0 + 10 s, so at that time only key 7
    // has rested.
    for (uint64_t i = 0; i < 8; ++i) {
        ASSERT_TRUE(t.check(key_in_bucket(i), l, t0).allowed) << i;
    }
    for (uint64_t i = 0; i < 7; ++i) {
        ASSERT_TRUE(t.check(key_in_bucket(i), l, t0 + 10 * s).allowed) << i;
    }
    EXPECT_TRUE(t.check(key_in_bucket(8), l, t0 + 10 * s).allowed);
    EXPECT_EQ(t.evictions(), 0u);
    for (uint64_t i = 0; i < 7; ++i) {
        EXPECT_FALSE(t.check(key_in_bucket(i), l, t0 + 10 * s).allowed) << "kept key " << i;
    }
    EXPECT_FALSE(t.check(key_in_bucket(8), l, t0 + 10 * s).allowed);
    EXPECT_EQ(t.evictions(), 0u);
}

TEST(RateLimit, AKeyOffItsHomeSlotKeepsItsStateWhenTheHomeSlotFrees) {
    RateLimiter t(8); // one bucket of eight slots
    // Keys 7 and 15 have tags 8 and 16: both are at home in slot 0.
    const uint64_t first = key_in_bucket(7);
    const uint64_t second = key_in_bucket(15);
    const Limit short_limit = Limit::from(per_second(1), 1);
    const Limit long_limit = Limit::from(per_hour(1), 1);
    ASSERT_TRUE(t.check(first, short_limit, t0).allowed);
    ASSERT_TRUE(t.check(second, long_limit, t0).allowed); // slot 0 taken: another slot
    EXPECT_FALSE(t.check(second, long_limit, t0 + 1 * s).allowed);
    // The first key has rested, so slot 0 is free to take; the second key still has its state
    // elsewhere in the bucket and must be found there, not given a fresh burst at home.
    EXPECT_FALSE(t.check(second, long_limit, t0 + 2 * s).allowed);
    EXPECT_TRUE(t.check(key_in_bucket(23), long_limit, t0 + 2 * s).allowed); // takes slot 0
    EXPECT_FALSE(t.check(second, long_limit, t0 + 3 * s).allowed);
    EXPECT_FALSE(t.check(key_in_bucket(23), long_limit, t0 + 3 * s).allowed);
    EXPECT_EQ(t.evictions(), 0u);
}

TEST(RateLimit, FullBucketEvictsTheSmallestTat) {
    RateLimiter t(8);
    const Limit l = Limit::from(per_second(1), 10);
    // Key i uses i + 2 of its 10, except key 5 which uses 1: the smallest TAT.
    for (uint64_t i = 0; i < 8; ++i) {
        int used = i == 5 ? 1 : static_cast<int>(i) + 2;
        ASSERT_EQ(allowed_of(t, key_in_bucket(i), l, t0, used), used) << i;
    }
    ASSERT_EQ(allowed_of(t, key_in_bucket(8), l, t0, 1), 1);
    EXPECT_EQ(t.evictions(), 1u);
    for (uint64_t i = 0; i < 8; ++i) {
        if (i != 5) {
            EXPECT_EQ(allowed_of(t, key_in_bucket(i), l, t0, 10), 10 - static_cast<int>(i) - 2)
                << "kept key " << i;
        }
    }
    EXPECT_EQ(allowed_of(t, key_in_bucket(8), l, t0, 10), 9);
    EXPECT_EQ(t.evictions(), 1u);
    // The evicted key starts again with a full burst (evicting another).
    EXPECT_EQ(allowed_of(t, key_in_bucket(5), l, t0, 20), 10);
    EXPECT_EQ(t.evictions(), 2u);
}

TEST(RateLimit, ForgetRestedEmptiesOnlyRestedSlots) {
    RateLimiter t(64);
    const Limit l = Limit::from(per_second(1), 1);
    for (uint64_t k = 0; k < 10; ++k) {
        ASSERT_TRUE(t.check(key_in_bucket(k, k), l, k < 4 ? t0 : t0 + 5 * s).allowed);
    }
    // At t0 + 5.5 s, keys 0..3 have rested, keys 4..9 are busy until t0 + 6 s.
    EXPECT_EQ(t.forget_rested(t0 + 5500 * ms), 4u);
    for (uint64_t k = 4; k < 10; ++k) {
        EXPECT_FALSE(t.check(key_in_bucket(k, k), l, t0 + 5500 * ms).allowed) << k;
    }
    EXPECT_EQ(t.forget_rested(t0 + 6 * s), 6u);
    EXPECT_EQ(t.forget_rested(t0 + 6 * s), 0u);
}

TEST(RateLimit, OldStatesCountAsRestedAcrossTheTimeWrap) {
    // Times are kept modulo 2^43 us (about 101.8 days): a state last touched 30 days or a year
    // ago is rested, and so is a clock that starts at 0. (A gap of 76.4 to 101.8 days modulo
    // the ring would not be: forget_rested() keeps slots from getting that old.)
    const Limit l = Limit::from(per_hour(1), 1);
    const int64_t day = 86'400 * s;
    for (int64_t start : {int64_t{0}, t0}) {
        for (int64_t gap : {2 * 3600 * s, 30 * day, 60 * day, 365 * day}) {
            RateLimiter t(64);
            ASSERT_TRUE(t.check(5, l, start).allowed);
            ASSERT_FALSE(t.check(5, l, start + 3599 * s).allowed);
            EXPECT_TRUE(t.check(5, l, start + gap).allowed) << start << " + " << gap;
            EXPECT_FALSE(t.check(5, l, start + gap).allowed) << start << " + " << gap;
        }
    }
}

TEST(RateLimit, MemoryIsEightBytesPerKey) {
    RateLimiter t(1000);
    EXPECT_EQ(t.capacity(), 1024u); // 125 buckets rounded up to 128
    EXPECT_EQ(t.memory_bytes(), 8 * t.capacity());
    EXPECT_EQ(RateLimiter(1).capacity(), 8u);
    EXPECT_EQ(RateLimiter(0).capacity(), 8u);
}

TEST(RateKey, ClientIsTheAddressWithinARoute) {
    auto a = *base::PeerAddress::parse("203.0.113.5", 443);
    auto a_other_port = *base::PeerAddress::parse("203.0.113.5", 50000);
    auto b = *base::PeerAddress::parse("203.0.113.6", 443);
    auto v6 = *base::PeerAddress::parse("2001:db8::1", 443);
    EXPECT_EQ(rate_key(1, a), rate_key(1, a_other_port));
    EXPECT_NE(rate_key(1, a), rate_key(1, b));
    EXPECT_NE(rate_key(1, a), rate_key(2, a));
    EXPECT_NE(rate_key(1, a), rate_key(1, v6));
    EXPECT_NE(route_rate_key(1), route_rate_key(2));
    EXPECT_NE(route_rate_key(1), rate_key(1, base::PeerAddress{}));
}

namespace {

// A barrier that spins, so that both threads leave it within a cache-line transfer of each
// other (a sleeping barrier wakes them microseconds apart, longer than a whole check).
class SpinBarrier {
public:
    explicit SpinBarrier(int threads) : _threads(threads) {}

    void arrive_and_wait() {
        const int generation = _generation.load(std::memory_order_acquire);
        if (_arrived.fetch_add(1) + 1 == _threads) {
            _arrived.store(0, std::memory_order_relaxed);
            _generation.fetch_add(1, std::memory_order_release);
            return;
        }
        // Spin a while, then yield: on a machine busier than two cores the other thread
        // needs this core to arrive at all.
        for (int spins = 0; _generation.load(std::memory_order_acquire) == generation; ++spins) {
            if (spins > 4096) {
                std::this_thread::yield();
            }
        }
    }

private:
    const int _threads;
    std::atomic<int> _arrived{0};
    std::atomic<int> _generation{0};
};

// Two threads check one key in lockstep: at every step of a shared simulated clock each makes
// per_thread checks, then a barrier advances the clock. Within a step all checks see the same
// now, so the number GCRA allows does not depend on their order: it must equal what one
// thread allows for the same requests, exactly.
struct Schedule {
    const char* name;
    config::Rate rate;
    uint32_t burst;
    int64_t step_ns;
    int steps;
    int per_thread;
};

int64_t allowed_in_lockstep(RateLimiter& t, uint64_t key, const Schedule& sc, int threads) {
    const Limit l = Limit::from(sc.rate, sc.burst);
    std::atomic<int64_t> now{t0};
    std::barrier sync(threads, [&]() noexcept { now.fetch_add(sc.step_ns); });
    std::atomic<int64_t> allowed{0};
    auto run = [&](int index) {
        pin_to_cpu(index);
        int64_t mine = 0;
        for (int step = 0; step < sc.steps; ++step) {
            const int64_t at = now.load();
            for (int r = 0; r < sc.per_thread; ++r) {
                mine += t.check(key, l, at).allowed ? 1 : 0;
            }
            sync.arrive_and_wait();
        }
        allowed.fetch_add(mine);
    };
    std::vector<std::thread> workers;
    for (int i = 1; i < threads; ++i) {
        workers.emplace_back(run, i);
    }
    run(0);
    for (std::thread& w : workers) {
        w.join();
    }
    return allowed.load();
}

} // namespace

TEST(RateLimitConcurrency, TwoThreadsOnOneKeyAllowExactlyWhatOneWould) {
    const Schedule rows[] = {
        {"20/s burst 40, a step per interval", per_second(20), 40, 50 * ms, 400, 30},
        {"20/s burst 40, 7 ms steps", per_second(20), 40, 7 * ms, 400, 30},
        {"route 2000/s, 1 ms steps", per_second(2000), 2000, 1 * ms, 400, 30},
        {"100/min burst 1, 100 ms steps", per_minute(100), 1, 100 * ms, 400, 5},
        {"1/h burst 1", per_hour(1), 1, 1 * s, 400, 5},
    };
    for (const Schedule& sc : rows) {
        RateLimiter shared(1024);
        RateLimiter alone(1024);
        Schedule one_thread = sc;
        one_thread.per_thread = 2 * sc.per_thread;
        const int64_t expected = allowed_in_lockstep(alone, 11, one_thread, 1);
        EXPECT_EQ(allowed_in_lockstep(shared, 11, sc, 2), expected) << sc.name;
        EXPECT_EQ(shared.unsettled(), 0u) << sc.name;
    }
    // The first row in closed form: the burst, then one per step.
    RateLimiter t(1024);
    EXPECT_EQ(allowed_in_lockstep(t, 3, rows[0], 2), 40 + 399);
}

TEST(RateLimitConcurrency, RacingFirstRequestsOfANewKeyCountOnce) {
    // Burst 1: of two first requests of a key at the same instant exactly one passes, whichever
    // claim wins. In a one-bucket table every claim also evicts, and rival claims meet in the
    // same eight slots.
    const Limit l = Limit::from(per_hour(1), 1);
    for (size_t keys : {size_t{8}, size_t{1} << 16}) {
        RateLimiter t(keys);
        constexpr int steps = 2000;
        SpinBarrier sync(2);
        std::vector<int> allowed(2 * steps, 0);
        auto run = [&](int index) {
            pin_to_cpu(index);
            for (int step = 0; step < steps; ++step) {
                sync.arrive_and_wait();
                // Distinct tags: a key that shared a live key's tag would be refused twice.
                uint64_t key =
                    key_in_bucket(static_cast<uint64_t>(step), static_cast<uint64_t>(step) * 7919);
                allowed[2 * step + index] = t.check(key, l, t0).allowed ? 1 : 0;
            }
        };
        std::thread other(run, 1);
        run(0);
        other.join();
        for (int step = 0; step < steps; ++step) {
            ASSERT_EQ(allowed[2 * step] + allowed[2 * step + 1], 1)
                << "table of " << keys << ", step " << step;
        }
        EXPECT_EQ(t.unsettled(), 0u);
    }
}
