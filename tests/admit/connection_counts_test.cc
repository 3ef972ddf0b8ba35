#include "portcullis/admit/connection_counts.hh"

#include "../pin_cpu.hh"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <semaphore>
#include <thread>
#include <utility>
#include <vector>

using portcullis::admit::ConnectionCounts;

namespace {

// Keys with distinct tags that all land in bucket `bucket` (the bucket is the key's low bits,
// the tag its top 32).
uint64_t key_in_bucket(uint64_t n, uint64_t bucket = 0) {
    return (n + 1) << 32 | bucket;
}

TEST(ConnectionCounts, SizedFromMaxConnections) {
    EXPECT_EQ(ConnectionCounts(10).capacity(), 512u);
    EXPECT_EQ(ConnectionCounts(10'000).capacity(), 65'536u);
    EXPECT_EQ(ConnectionCounts(10'000).memory_bytes(), 512u * 1024);
    EXPECT_EQ(ConnectionCounts(4'000'000'000).capacity(), size_t{1} << 22);
}

TEST(ConnectionCounts, HoldsTheCapAndFreesOnRelease) {
    ConnectionCounts counts(100);
    const uint64_t key = key_in_bucket(7, 3);
    std::vector<ConnectionCounts::Ticket> held;
    for (int i = 0; i < 3; ++i) {
        ConnectionCounts::Ticket t = counts.acquire(key, 3);
        ASSERT_TRUE(t.admitted) << i;
        ASSERT_GE(t.slot, 0);
        held.push_back(t);
    }
    EXPECT_EQ(counts.open(key), 3u);
    ConnectionCounts::Ticket over = counts.acquire(key, 3);
    EXPECT_FALSE(over.admitted);
    EXPECT_EQ(counts.open(key), 3u) << "a refusal leaves no count behind";
    counts.release(over); // harmless
    counts.release(held.back());
    held.pop_back();
    EXPECT_EQ(counts.open(key), 2u);
    ConnectionCounts::Ticket again = counts.acquire(key, 3);
    EXPECT_TRUE(again.admitted);
    held.push_back(again);
    for (const auto& t : held) {
        counts.release(t);
    }
    EXPECT_EQ(counts.open(key), 0u);
    EXPECT_EQ(counts.untracked(), 0u);
}

TEST(ConnectionCounts, KeysInOneBucketAreCountedApart) {
    ConnectionCounts counts(100);
    const uint64_t a = key_in_bucket(1), b = key_in_bucket(2);
    ASSERT_TRUE(counts.acquire(a, 1).admitted);
    EXPECT_FALSE(counts.acquire(a, 1).admitted);
    EXPECT_TRUE(counts.acquire(b, 1).admitted) << "another client in the same bucket";
    EXPECT_EQ(counts.open(a), 1u);
    EXPECT_EQ(counts.open(b), 1u);
    EXPECT_EQ(counts.open(key_in_bucket(3)), 0u);
}

// acquire's first try is one atomic add on the key's home slot; a key whose home another key
// holds (counting, or free under its tag) is counted elsewhere, and neither count is disturbed.
TEST(ConnectionCounts, KeysSharingAHomeSlotAreCountedApart) {
    ConnectionCounts counts(100);
    const uint64_t a = key_in_bucket(0), b = key_in_bucket(8); // tags 1 and 9: both home 1
    const ConnectionCounts::Ticket ta = counts.acquire(a, 5);
    ASSERT_TRUE(ta.admitted);
    EXPECT_EQ(ta.slot, 1);
    const ConnectionCounts::Ticket tb = counts.acquire(b, 5);
    ASSERT_TRUE(tb.admitted);
    EXPECT_NE(tb.slot, 1);
    EXPECT_EQ(counts.open(a), 1u);
    EXPECT_EQ(counts.open(b), 1u);
    counts.release(ta);
    EXPECT_EQ(counts.open(a), 0u);
    EXPECT_EQ(counts.open(b), 1u);
    // b's next connection joins its count where it is; home 1 is free under a's tag, and a's
    // next connection takes it back with the one add.
    const ConnectionCounts::Ticket tb2 = counts.acquire(b, 5);
    EXPECT_EQ(tb2.slot, tb.slot);
    const ConnectionCounts::Ticket ta2 = counts.acquire(a, 5);
    ASSERT_TRUE(ta2.admitted);
    EXPECT_EQ(ta2.slot, 1);
    EXPECT_EQ(counts.open(a), 1u);
    EXPECT_EQ(counts.open(b), 2u);
    for (const auto& t : {tb, tb2, ta2}) {
        counts.release(t);
    }
    EXPECT_EQ(counts.open(a), 0u);
    EXPECT_EQ(counts.open(b), 0u);
}

TEST(ConnectionCounts, AFullBucketAdmitsUncountedAndRecovers) {
    ConnectionCounts counts(100);
    std::vector<ConnectionCounts::Ticket> held;
    for (uint64_t n = 0; n < ConnectionCounts::slots_per_bucket; ++n) {
        held.push_back(counts.acquire(key_in_bucket(n), 5));
        ASSERT_TRUE(held.back().admitted);
        ASSERT_GE(held.back().slot, 0);
    }
    const uint64_t late = key_in_bucket(100);
    ConnectionCounts::Ticket t = counts.acquire(late, 5);
    EXPECT_TRUE(t.admitted) << "a full table never refuses";
    EXPECT_EQ(t.slot, -1);
    EXPECT_EQ(counts.untracked(), 1u);
    counts.release(t);
    counts.release(held.front());
    ConnectionCounts::Ticket counted = counts.acquire(late, 5);
    EXPECT_TRUE(counted.admitted);
    EXPECT_EQ(counted.slot, held.front().slot) << "the freed slot is taken, whatever its tag";
    EXPECT_EQ(counts.open(late), 1u);
    EXPECT_EQ(counts.open(key_in_bucket(0)), 0u);
}

// Two threads on two CPUs open and close connections of one client as fast as they can, each
// noting how many it holds at once: the sum never passes the cap, and every count is given back.
TEST(ConnectionCounts, TheCapHoldsUnderTwoThreads) {
    ConnectionCounts counts(100);
    const uint64_t key = key_in_bucket(42, 9);
    constexpr uint32_t cap = 3;
    constexpr int rounds = 200'000;
    std::atomic<int> holding{0};
    std::atomic<int> worst{0};
    std::atomic<uint64_t> admitted{0};
    auto run = [&](int cpu) {
        pin_to_cpu(cpu);
        std::vector<ConnectionCounts::Ticket> mine;
        for (int i = 0; i < rounds; ++i) {
            if (mine.size() < 2) {
                ConnectionCounts::Ticket t = counts.acquire(key, cap);
                if (t.admitted) {
                    int now = holding.fetch_add(1) + 1;
                    int w = worst.load();
                    while (now > w && !worst.compare_exchange_weak(w, now)) {
                    }
                    mine.push_back(t);
                    admitted.fetch_add(1);
                    continue;
                }
            }
            if (!mine.empty()) {
                holding.fetch_sub(1);
                counts.release(mine.back());
                mine.pop_back();
            }
        }
        for (const auto& t : mine) {
            holding.fetch_sub(1);
            counts.release(t);
        }
    };
    std::thread a(run, 0), b(run, 1);
    a.join();
    b.join();
    EXPECT_LE(worst.load(), static_cast<int>(cap));
    EXPECT_GT(admitted.load(), uint64_t{rounds} / 2) << "the threads made progress";
    EXPECT_EQ(counts.open(key), 0u);
    EXPECT_EQ(counts.untracked(), 0u);
}

// Plays a race in a chosen order: a thread that sets `pause_here` before an acquire stops once
// in the bucket search, between reading the slots and counting, until the test lets it go.
struct Pause {
    std::binary_semaphore arrived{0};
    std::binary_semaphore go{0};
};
thread_local Pause* pause_here = nullptr;

void pause_once(void* /*arg*/) {
    if (Pause* p = std::exchange(pause_here, nullptr)) {
        p->arrived.release();
        p->go.acquire();
    }
}

// An acquire on a thread of its own that stops in the bucket search until finish(); the counts
// must have pause_once as their hook. Let go and joined however the test ends.
class HeldAcquire {
public:
    HeldAcquire(ConnectionCounts& counts, uint64_t key, uint32_t cap)
        : _thread([this, &counts, key, cap] {
              pause_here = &_pause;
              _ticket = counts.acquire(key, cap);
          }) {}
    ~HeldAcquire() { finish(); }
    HeldAcquire(const HeldAcquire&) = delete;
    HeldAcquire& operator=(const HeldAcquire&) = delete;

    // The acquire stopped where it was to: it read the bucket and chose a slot.
    bool held() { return _pause.arrived.try_acquire_for(std::chrono::seconds(10)); }
    ConnectionCounts::Ticket finish() {
        if (_thread.joinable()) {
            _pause.go.release();
            _thread.join();
        }
        return _ticket;
    }

private:
    Pause _pause;
    ConnectionCounts::Ticket _ticket;
    std::thread _thread; // last: started once the members it uses exist
};

// Two keys of one home slot (slot 1 of bucket 5): a new client's, and a filler's that holds the
// home slot first.
const uint64_t new_key = key_in_bucket(0, 5);     // tag 1
const uint64_t home_filler = key_in_bucket(8, 5); // tag 9

// The new key's home slot is held by the filler while thread A reads the bucket, so A chooses
// another slot. The filler closes, and thread B reads the bucket: the home slot is free and A
// has not counted yet, so B chooses the home slot. A counts and finishes (the home slot still
// has the filler's tag when A reads it), then B claims the home slot. The key now counts in two
// slots, and B must not mark the home slot verified: one more connection under a cap of two is
// refused (with the home verified, its add alone would admit a third).
TEST(ConnectionCounts, TwoSlotsOfOneKeyLeaveTheHomeUnverified) {
    for (uint32_t cap : {1u, 2u}) {
        SCOPED_TRACE(cap);
        ConnectionCounts counts(100);
        counts.set_pause_before_count(pause_once, nullptr);
        const ConnectionCounts::Ticket f = counts.acquire(home_filler, 1);
        ASSERT_TRUE(f.admitted);
        HeldAcquire a(counts, new_key, cap);
        ASSERT_TRUE(a.held());
        counts.release(f);
        HeldAcquire b(counts, new_key, cap);
        ASSERT_TRUE(b.held());
        const ConnectionCounts::Ticket ta = a.finish();
        const ConnectionCounts::Ticket tb = b.finish();
        ASSERT_TRUE(ta.admitted);
        EXPECT_NE(ta.slot, f.slot) << "A counted away from the home slot";
        if (cap == 1) {
            EXPECT_FALSE(tb.admitted);
            EXPECT_EQ(counts.open(new_key), 1u);
        } else {
            ASSERT_TRUE(tb.admitted);
            EXPECT_EQ(tb.slot, f.slot) << "B claimed the home slot: the key is split";
            EXPECT_EQ(counts.open(new_key), 2u);
            ConnectionCounts::Ticket extra = counts.acquire(new_key, cap);
            EXPECT_FALSE(extra.admitted);
            counts.release(extra);
            counts.release(tb);
        }
        counts.release(ta);
        EXPECT_EQ(counts.open(new_key), 0u);
    }
}

// Thread A reads the bucket while the filler holds the new key's home slot and chooses another.
// The filler closes, and a second connection of the key claims the home slot and, counting
// there alone, marks it verified. Then A counts in the slot it chose; it must see the key's tag
// at home, give its count back and count at home, or the verified home's add would miss it.
TEST(ConnectionCounts, ACountAwayFromAVerifiedHomeMovesHome) {
    for (uint32_t cap : {1u, 2u}) {
        SCOPED_TRACE(cap);
        ConnectionCounts counts(100);
        counts.set_pause_before_count(pause_once, nullptr);
        const ConnectionCounts::Ticket f = counts.acquire(home_filler, 1);
        ASSERT_TRUE(f.admitted);
        HeldAcquire a(counts, new_key, cap);
        ASSERT_TRUE(a.held());
        counts.release(f);
        const ConnectionCounts::Ticket home = counts.acquire(new_key, cap);
        ASSERT_TRUE(home.admitted);
        ASSERT_EQ(home.slot, f.slot) << "the second connection claimed the home slot";
        const ConnectionCounts::Ticket ta = a.finish();
        if (cap == 1) {
            EXPECT_FALSE(ta.admitted);
            EXPECT_EQ(counts.open(new_key), 1u);
        } else {
            ASSERT_TRUE(ta.admitted);
            EXPECT_EQ(ta.slot, home.slot) << "A's count moved home";
            EXPECT_EQ(counts.open(new_key), 2u);
            ConnectionCounts::Ticket extra = counts.acquire(new_key, cap);
            EXPECT_FALSE(extra.admitted);
            counts.release(extra);
            extra = counts.acquire(new_key, cap + 1);
            EXPECT_TRUE(extra.admitted);
            counts.release(extra);
            counts.release(ta);
        }
        counts.release(home);
        EXPECT_EQ(counts.open(new_key), 0u);
    }
}

// Racing first connections of new clients, timed to land in two slots: before each round a
// filler key holds the new key's home slot, and one thread frees it just as both claim the new
// key, so that one claimer may see the home slot taken (and claim another) and the other see it
// free. Even rounds have a cap of one: never both are admitted. Odd rounds a cap of two, so that
// both may be, in two slots. Then, with both still holding what they got, one more connection
// of the key under the same cap: admitted exactly when the two hold fewer than the cap. If the
// home slot were marked verified while the other slot still had a count, that one add would
// pass the cap. Whether a round splits the key is a race of tens of nanoseconds that the code's
// layout moves: thousands of rounds in 100,000 in one build, none in another, so this catches a
// wrong verification only when the race lands: the two tests above play the split in order. This
// one runs the race itself, with the cores' own timing.
TEST(ConnectionCounts, RacingClaimsOfANewKeyAdmitOneAtMost) {
    ConnectionCounts counts(100);
    constexpr int rounds = 200'000;
    std::atomic<int> filled{0};
    std::atomic<int> acquired{0};
    std::atomic<int> released{0};
    std::atomic<int> checked{0};
    std::vector<ConnectionCounts::Ticket> got[2];
    std::vector<char> extra_admitted(rounds, 0);
    for (auto& g : got) {
        g.resize(rounds);
    }
    // Spins, so that both threads leave within a cache-line transfer of each other; yields now
    // and then in case both run on one CPU.
    auto wait_for = [](const std::atomic<int>& n, int want) {
        for (unsigned spins = 1; n.load() < want; ++spins) {
            if (spins % 4096 == 0) {
                std::this_thread::yield();
            }
        }
    };
    auto run = [&](int who) {
        pin_to_cpu(who);
        for (int r = 0; r < rounds; ++r) {
            // Tags 16r + 1 and 16r + 9: one home slot.
            const uint64_t key = key_in_bucket(16 * static_cast<uint64_t>(r), 5);
            if (who == 0) {
                wait_for(released, 2 * r);
                auto filler =
                    counts.acquire(key_in_bucket(16 * static_cast<uint64_t>(r) + 8, 5), 1);
                filled.store(r + 1);
                // Frees the slot at a moment that moves from round to round, to sweep over the
                // other thread's claim.
                for (int i = 0; i < r % 97; ++i) {
                    filled.load();
                }
                counts.release(filler);
            } else {
                wait_for(filled, r + 1);
            }
            const uint32_t cap = r % 2 == 0 ? 1 : 2;
            got[who][r] = counts.acquire(key, cap);
            acquired.fetch_add(1);
            // Each key's connections close before the next round, so the bucket never fills.
            wait_for(acquired, 2 * (r + 1));
            if (who == 0) {
                ConnectionCounts::Ticket extra = counts.acquire(key, cap);
                extra_admitted[r] = extra.admitted ? 1 : 0;
                counts.release(extra);
                checked.store(r + 1);
            } else {
                wait_for(checked, r + 1);
            }
            counts.release(got[who][r]);
            released.fetch_add(1);
        }
    };
    std::thread a(run, 0), b(run, 1);
    a.join();
    b.join();
    int both = 0, none = 0, extra_wrong = 0;
    for (int r = 0; r < rounds; ++r) {
        const int held = (got[0][r].admitted ? 1 : 0) + (got[1][r].admitted ? 1 : 0);
        const int cap = r % 2 == 0 ? 1 : 2;
        if (cap == 1) {
            both += held == 2;
            none += held == 0;
        }
        extra_wrong += (extra_admitted[r] != 0) != (held < cap);
    }
    EXPECT_EQ(both, 0);
    EXPECT_EQ(extra_wrong, 0);
    // Both refused happens only when both counted in the same instant; it must stay a minority.
    // How often depends on the machine: 10.8% of rounds under ASan with the cores shared with
    // a build (the bound was a tenth then); a scheme that refused every race would fail.
    EXPECT_LT(none, rounds / 2 / 3);
    EXPECT_EQ(counts.untracked(), 0u);
}

} // namespace
