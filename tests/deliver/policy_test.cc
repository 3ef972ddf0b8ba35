// The engine's pure decisions: retry delays, the circuit breaker, a sink's pace.
#include "portcullis/deliver/policy.hh"

#include <gtest/gtest.h>

#include <algorithm>

namespace portcullis::deliver {
namespace {

constexpr int64_t s_ns = 1'000'000'000;

// Full jitter: every delay lies in [0, min(10 min, 1 s x 2^(n-1))] and the draws spread over
// that range (not all at the top, as plain exponential backoff would put them).
TEST(RetryDelay, FullJitterUnderTheDoublingCeiling) {
    Jitter jitter(42);
    for (uint32_t attempts : {1u, 2u, 3u, 5u, 10u, 11u, 30u, 65535u}) {
        const int64_t ceiling =
            attempts >= 11 ? 600 * s_ns : std::min<int64_t>(600 * s_ns, s_ns << (attempts - 1));
        int64_t lo = INT64_MAX;
        int64_t hi = 0;
        for (int i = 0; i < 2000; ++i) {
            int64_t d = retry_delay_ns(attempts, -1, jitter);
            ASSERT_GE(d, 0);
            ASSERT_LE(d, ceiling) << attempts;
            lo = std::min(lo, d);
            hi = std::max(hi, d);
        }
        EXPECT_LT(lo, ceiling / 10) << attempts;
        EXPECT_GT(hi, ceiling * 9 / 10) << attempts;
    }
}

TEST(RetryDelay, RetryAfterIsTakenAndCapped) {
    Jitter jitter(1);
    EXPECT_EQ(retry_delay_ns(1, 2 * s_ns, jitter), 2 * s_ns);
    EXPECT_EQ(retry_delay_ns(7, 0, jitter), 0);
    EXPECT_EQ(retry_delay_ns(1, 3600 * s_ns, jitter), 600 * s_ns);
}

TEST(Breaker, OpensAfterConsecutiveFailuresProbesAndCloses) {
    Breaker b(config::BreakerConfig{.failures = 3, .cooldown_ns = 30 * s_ns});
    int64_t t = 1000 * s_ns;
    EXPECT_TRUE(b.admits(t, 10));
    b.record(false, t);
    b.record(false, t);
    b.record(true, t); // a success in between resets the count
    b.record(false, t);
    b.record(false, t);
    EXPECT_EQ(b.state(), Breaker::State::closed);
    EXPECT_EQ(b.take_transition(), Breaker::Transition::none);
    b.record(false, t);
    EXPECT_EQ(b.state(), Breaker::State::open);
    EXPECT_EQ(b.take_transition(), Breaker::Transition::opened);
    EXPECT_EQ(b.take_transition(), Breaker::Transition::none);
    EXPECT_EQ(b.reopens_at_ns(), t + 30 * s_ns);
    EXPECT_FALSE(b.admits(t + 29 * s_ns, 0));
    b.record(false, t + 29 * s_ns); // a late outcome does not push the cooldown back
    EXPECT_EQ(b.reopens_at_ns(), t + 30 * s_ns);
    // Half-open: one probe, and only while none is in flight.
    EXPECT_TRUE(b.admits(t + 30 * s_ns, 0));
    EXPECT_EQ(b.state(), Breaker::State::half_open);
    EXPECT_EQ(b.take_transition(), Breaker::Transition::half_opened);
    EXPECT_FALSE(b.admits(t + 30 * s_ns, 1));
    b.record(false, t + 31 * s_ns); // the probe failed: open again, a new cooldown
    EXPECT_EQ(b.state(), Breaker::State::open);
    EXPECT_EQ(b.reopens_at_ns(), t + 61 * s_ns);
    EXPECT_EQ(b.times_opened(), 2u);
    EXPECT_TRUE(b.admits(t + 61 * s_ns, 0));
    b.record(true, t + 62 * s_ns);
    EXPECT_EQ(b.state(), Breaker::State::closed);
    EXPECT_EQ(b.take_transition(), Breaker::Transition::closed);
    EXPECT_TRUE(b.admits(t + 62 * s_ns, 100));
    EXPECT_EQ(breaker_state_name(Breaker::State::half_open), "half_open");
}

TEST(Breaker, HeldOpenByAFailedHealthProbeUntilReleased) {
    Breaker b(config::BreakerConfig{.failures = 3, .cooldown_ns = s_ns});
    const int64_t t = 1000 * s_ns;
    b.record(false, t);
    b.hold(true);
    EXPECT_TRUE(b.held());
    EXPECT_EQ(b.state(), Breaker::State::open);
    EXPECT_EQ(b.take_transition(), Breaker::Transition::opened);
    EXPECT_EQ(b.times_opened(), 1u);
    // No cooldown ends it, and outcomes of deliveries still in flight change nothing.
    EXPECT_FALSE(b.admits(t + 3600 * s_ns, 0));
    b.record(true, t + s_ns);
    EXPECT_EQ(b.state(), Breaker::State::open);
    EXPECT_GT(b.reopens_at_ns(), t + 3600 * s_ns);
    b.hold(true); // again: nothing new
    EXPECT_EQ(b.take_transition(), Breaker::Transition::none);
    b.hold(false);
    EXPECT_EQ(b.state(), Breaker::State::closed);
    EXPECT_EQ(b.take_transition(), Breaker::Transition::closed);
    EXPECT_EQ(b.consecutive_failures(), 0u);
    EXPECT_TRUE(b.admits(t + 2 * s_ns, 5));
}

TEST(Pace, EvenSpacingWithoutBurst) {
    Pace none;
    EXPECT_TRUE(none.take(0));
    EXPECT_TRUE(none.take(0));
    EXPECT_EQ(none.next_ns(), 0);
    Pace p(config::Rate{.count = 4, .period_ns = s_ns}); // one per 250 ms
    EXPECT_TRUE(p.take(10 * s_ns));
    EXPECT_FALSE(p.take(10 * s_ns + 249'999'999));
    EXPECT_EQ(p.next_ns(), 10 * s_ns + 250'000'000);
    EXPECT_TRUE(p.take(10 * s_ns + 250'000'000));
    // After an idle minute, one now and the next a slot later: no saved-up burst.
    EXPECT_TRUE(p.take(70 * s_ns));
    EXPECT_FALSE(p.take(70 * s_ns + 1));
}

} // namespace
} // namespace portcullis::deliver
