#include "portcullis/queue/job_table.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

using namespace portcullis::queue;

namespace {

constexpr int64_t t0 = 1'700'000'000 * ns_per_s;
constexpr int64_t ms = 1'000'000;
constexpr int64_t visibility = 30 * ns_per_s;
constexpr int64_t never = std::numeric_limits<int64_t>::max();

// Ids whose order is n's order.
JobId id_of(uint32_t n) {
    JobId id;
    id.bytes[0] = 0x01;
    for (int i = 0; i < 4; ++i) {
        id.bytes[15 - i] = static_cast<uint8_t>(n >> (8 * i));
    }
    return id;
}

uint32_t n_of(const JobId& id) {
    uint32_t n = 0;
    for (int i = 12; i < 16; ++i) {
        n = n << 8 | id.bytes[i];
    }
    return n;
}

JobLocation at(uint32_t shard, uint64_t segment, uint64_t offset = 16) {
    return {shard, segment, offset, 100};
}

// Adds jobs with the given numbers to route, in segment (0, 1).
void add_jobs(JobTable& t, std::initializer_list<uint32_t> ns, uint16_t route = 0) {
    for (uint32_t n : ns) {
        ASSERT_TRUE(t.add(id_of(n), route, at(0, 1, n)));
    }
}

std::vector<uint32_t> lease_ns(JobTable& t, uint16_t route, size_t max, int64_t now,
                               int64_t vis = visibility) {
    std::vector<JobInfo> out;
    size_t n = t.lease(route, max, vis, now, out);
    EXPECT_EQ(n, out.size());
    std::vector<uint32_t> ns;
    ns.reserve(out.size());
    for (const JobInfo& j : out) {
        ns.push_back(n_of(j.id));
    }
    return ns;
}

using Ns = std::vector<uint32_t>;

JobInfo must_find(const JobTable& t, uint32_t n) {
    auto j = t.find(id_of(n));
    EXPECT_TRUE(j.has_value()) << "job " << n;
    return j.value_or(JobInfo{});
}

// The pending ops as one ledger group, written and synced / failed, as the control plane does.
void durable(JobTable& t) {
    t.ops_taken();
    t.ops_durable(t.ops_unresolved());
}

size_t failed(JobTable& t) {
    t.ops_taken();
    return t.ops_failed();
}

std::string kinds(const std::vector<LedgerOp>& ops) {
    std::string s;
    for (const LedgerOp& op : ops) {
        s += s.empty() ? "" : " ";
        s += std::string(kind_name(op.kind)) + ":" + std::to_string(n_of(op.id));
    }
    return s;
}

} // namespace

TEST(JobTable, NamesStates) {
    EXPECT_EQ(state_name(JobState::queued), "queued");
    EXPECT_EQ(state_name(JobState::leased), "leased");
    EXPECT_EQ(state_name(JobState::done), "done");
    EXPECT_EQ(state_name(JobState::dead), "dead");
}

TEST(JobTable, AddRefusesKnownIdsAndUnknownRoutes) {
    JobTable t({5, 5});
    EXPECT_TRUE(t.add(id_of(1), 0, at(2, 7, 16)));
    EXPECT_FALSE(t.add(id_of(1), 1, at(2, 7, 116)));
    EXPECT_FALSE(t.add(id_of(2), 2, at(2, 7, 116)));
    EXPECT_EQ(t.size(), 1u);
    JobInfo j = must_find(t, 1);
    EXPECT_EQ(j.route, 0);
    EXPECT_EQ(j.state, JobState::queued);
    EXPECT_EQ(j.attempts, 0);
    EXPECT_EQ(j.received_at_ns, id_of(1).unix_ms() * ms); // the id's time
    EXPECT_EQ(j.due_ns, 0);
    EXPECT_EQ(j.where.shard, 2u);
    EXPECT_EQ(j.where.segment, 7u);
    EXPECT_EQ(j.where.offset, 16u);
    EXPECT_EQ(j.where.size, 100u);
    EXPECT_FALSE(t.find(id_of(2)).has_value());
    EXPECT_TRUE(t.pending_ops().empty());
}

TEST(JobTable, LeasesInAddOrderAndHonoursMax) {
    JobTable t({5});
    add_jobs(t, {5, 3, 9, 1, 7});
    EXPECT_EQ(lease_ns(t, 0, 0, t0), Ns{});
    EXPECT_EQ(lease_ns(t, 0, 2, t0), (Ns{5, 3}));
    EXPECT_EQ(lease_ns(t, 0, 10, t0), (Ns{9, 1, 7}));
    EXPECT_EQ(lease_ns(t, 0, 10, t0), Ns{});

    JobInfo j = must_find(t, 9);
    EXPECT_EQ(j.state, JobState::leased);
    EXPECT_EQ(j.attempts, 1);
    EXPECT_EQ(j.due_ns, t0 + visibility);
    EXPECT_EQ(kinds(t.pending_ops()), "lease:5 lease:3 lease:9 lease:1 lease:7");
    const LedgerOp& op = t.pending_ops()[0];
    EXPECT_EQ(op.attempts, 1);
    EXPECT_EQ(op.at_ns, t0);
    EXPECT_EQ(op.due_ns, t0 + visibility);
}

TEST(JobTable, ReceiveTimeIsTheIdsToTheMillisecond) {
    JobIdGenerator ids(3);
    const int64_t at_ns = t0 + 123'456'789;
    const JobId id = ids.next(at_ns);
    JobTable t({5});
    ASSERT_TRUE(t.add(id, 0, at(3, 9, 4096)));
    EXPECT_EQ(t.find(id)->received_at_ns, t0 + 123 * ms);
}

TEST(JobTable, RefusesOffsetsPastFourGigabytes) {
    JobTable t({5});
    EXPECT_FALSE(t.add(id_of(1), 0, {0, 1, uint64_t{1} << 32, 100}));
    EXPECT_TRUE(t.add(id_of(1), 0, {0, 1, UINT32_MAX, 100}));
    EXPECT_EQ(must_find(t, 1).where.offset, UINT32_MAX);
}

// Issue 19's bound: a deep backlog of queued jobs costs at most 64 bytes each (the entry, the
// index at most 70% full, the FIFO slot), counted from the containers' capacities.
TEST(JobTable, AQueuedJobCostsAtMost64Bytes) {
    constexpr uint32_t jobs = 1'000'000;
    JobTable t({0});
    t.reserve(jobs);
    for (uint32_t n = 1; n <= jobs; ++n) {
        ASSERT_TRUE(t.add(id_of(n), 0, at(0, n / 60'000 + 1, n)));
    }
    EXPECT_LE(t.memory_bytes(), size_t{64} * jobs);
    // Without the reservation the containers grow by doubling: still bounded, with slack.
    JobTable grown({0});
    for (uint32_t n = 1; n <= jobs; ++n) {
        ASSERT_TRUE(grown.add(id_of(n), 0, at(0, n / 60'000 + 1, n)));
    }
    EXPECT_LE(grown.memory_bytes(), size_t{96} * jobs);
}

// Issue 19: once retention has deleted most of the spool, the table gives the memory back, and
// what is left is as it was: states, due times, the FIFO's order, the timers.
TEST(JobTable, RetentionGivesTheMemoryBack) {
    constexpr uint32_t per_segment = 10'000;
    constexpr uint32_t last = 9 * per_segment; // the last job of the 9 segments dropped
    JobTable t({0});
    for (uint32_t n = 1; n <= 10 * per_segment; ++n) {
        ASSERT_TRUE(t.add(id_of(n), 0, at(0, (n - 1) / per_segment + 1, n)));
    }
    const size_t full = t.memory_bytes();
    ASSERT_EQ(lease_ns(t, 0, last + 2, t0).size(), last + 2);
    for (uint32_t n = 1; n <= last; ++n) {
        ASSERT_EQ(t.ack(id_of(n), t0), JobTable::Settle::ok);
    }
    ASSERT_EQ(t.nack(id_of(last + 2), 5 * ns_per_s, t0), JobTable::Settle::ok);
    t.ops_taken();
    t.ops_durable(t.ops_unresolved());
    for (uint64_t segment = 1; segment <= 9; ++segment) {
        ASSERT_EQ(t.unsettled_in_segment(0, segment), 0u);
        t.drop_segment(0, segment);
    }
    EXPECT_EQ(t.size(), per_segment);
    EXPECT_LT(t.memory_bytes(), full / 5);
    EXPECT_FALSE(t.find(id_of(last)).has_value());
    EXPECT_EQ(must_find(t, last + 1).state, JobState::leased);
    EXPECT_EQ(must_find(t, last + 1).due_ns, t0 + visibility);
    EXPECT_EQ(must_find(t, last + 2).state, JobState::queued);
    EXPECT_EQ(must_find(t, last + 2).due_ns, t0 + 5 * ns_per_s);
    EXPECT_EQ(t.next_change_ns(0), t0 + 5 * ns_per_s);
    // The queued jobs in their order, then the retry (due first), then the expired lease.
    std::vector<uint32_t> want;
    for (uint32_t n = last + 3; n <= 10 * per_segment; ++n) {
        want.push_back(n);
    }
    want.push_back(last + 2);
    want.push_back(last + 1);
    EXPECT_EQ(lease_ns(t, 0, per_segment, t0 + visibility), want);
    // And it goes on: new jobs, acks, the last segment dropped too.
    ASSERT_TRUE(t.add(id_of(10 * per_segment + 1), 0, at(0, 11, 1)));
    for (uint32_t n : want) {
        ASSERT_EQ(t.ack(id_of(n), t0 + visibility), JobTable::Settle::ok);
    }
    t.ops_taken();
    t.ops_durable(t.ops_unresolved());
    t.drop_segment(0, 10);
    EXPECT_EQ(t.size(), 1u);
    EXPECT_LT(t.memory_bytes(), full / 100);
    EXPECT_EQ(lease_ns(t, 0, 5, t0 + visibility), std::vector<uint32_t>{10 * per_segment + 1});
}

// Compaction renumbers the entries an ordered route's sequences hold: what is left goes on in
// order, one job per key at a time.
TEST(JobTable, CompactionKeepsOrderedSequences) {
    constexpr uint32_t per_segment = 100;
    JobTable t({RouteOptions{0, false, true}});
    for (uint32_t n = 1; n <= 5 * per_segment; ++n) {
        ASSERT_TRUE(t.add(id_of(n), 0, at(0, (n - 1) / per_segment + 1, n), n % 2));
    }
    auto settle_next_two = [&](uint32_t first) {
        EXPECT_EQ(lease_ns(t, 0, 10, t0), (std::vector<uint32_t>{first, first + 1}));
        for (uint32_t n : {first, first + 1}) {
            ASSERT_EQ(t.ack(id_of(n), t0), JobTable::Settle::ok);
        }
        t.ops_taken();
        t.ops_durable(t.ops_unresolved());
    };
    for (uint32_t n = 1; n <= 4 * per_segment; n += 2) {
        settle_next_two(n);
    }
    const size_t full = t.memory_bytes();
    for (uint64_t segment = 1; segment <= 4; ++segment) {
        ASSERT_EQ(t.unsettled_in_segment(0, segment), 0u);
        t.drop_segment(0, segment);
    }
    EXPECT_EQ(t.size(), per_segment);
    EXPECT_LT(t.memory_bytes(), full);
    for (uint32_t n = 4 * per_segment + 1; n <= 5 * per_segment; n += 2) {
        settle_next_two(n);
    }
    EXPECT_TRUE(lease_ns(t, 0, 10, t0).empty());
}

TEST(JobTable, LeaseCopiesEverythingOut) {
    JobTable t({5});
    ASSERT_TRUE(t.add(id_of(4), 0, at(3, 9, 4096)));
    std::vector<JobInfo> out;
    ASSERT_EQ(t.lease(0, 1, 10 * ns_per_s, t0, out), 1u);
    EXPECT_EQ(out[0].id, id_of(4));
    EXPECT_EQ(out[0].route, 0);
    EXPECT_EQ(out[0].state, JobState::leased);
    EXPECT_EQ(out[0].attempts, 1);
    EXPECT_EQ(out[0].received_at_ns, id_of(4).unix_ms() * ms);
    EXPECT_EQ(out[0].due_ns, t0 + 10 * ns_per_s);
    EXPECT_EQ(out[0].where.shard, 3u);
    EXPECT_EQ(out[0].where.segment, 9u);
    EXPECT_EQ(out[0].where.offset, 4096u);
}

TEST(JobTable, ExpiredLeaseReturnsUntilMaxAttemptsThenDies) {
    JobTable t({3});
    add_jobs(t, {1});
    EXPECT_EQ(lease_ns(t, 0, 10, t0), Ns{1});
    EXPECT_EQ(t.next_change_ns(0), t0 + visibility);
    // One nanosecond before the deadline the lease holds.
    EXPECT_EQ(lease_ns(t, 0, 10, t0 + visibility - 1), Ns{});
    EXPECT_EQ(lease_ns(t, 0, 10, t0 + visibility), Ns{1});
    EXPECT_EQ(must_find(t, 1).attempts, 2);
    EXPECT_EQ(must_find(t, 1).due_ns, t0 + 2 * visibility);
    EXPECT_EQ(lease_ns(t, 0, 10, t0 + 2 * visibility), Ns{1});
    EXPECT_EQ(must_find(t, 1).attempts, 3);
    // The third lease was the last: its expiry sends the job to the dead letters.
    EXPECT_EQ(lease_ns(t, 0, 10, t0 + 3 * visibility), Ns{});
    JobInfo j = must_find(t, 1);
    EXPECT_EQ(j.state, JobState::dead);
    EXPECT_EQ(j.attempts, 3);
    EXPECT_EQ(j.due_ns, 0);
    EXPECT_EQ(t.next_change_ns(0), never);
    EXPECT_EQ(kinds(t.pending_ops()), "lease:1 expire:1 lease:1 expire:1 lease:1 dead:1");
    EXPECT_EQ(t.pending_ops()[1].at_ns, t0 + visibility);
    EXPECT_EQ(t.pending_ops()[1].attempts, 1);
    EXPECT_EQ(t.pending_ops()[1].due_ns, 0);
    EXPECT_EQ(t.pending_ops()[5].attempts, 3);
    std::vector<JobInfo> dead;
    t.dead_letters(0, JobId{}, 10, dead);
    ASSERT_EQ(dead.size(), 1u);
    EXPECT_EQ(dead[0].id, id_of(1));
}

TEST(JobTable, ExpiredLeasesRejoinBehindJobsAlreadyReady) {
    JobTable t({0}); // no limit
    add_jobs(t, {1, 2});
    EXPECT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    add_jobs(t, {3});
    EXPECT_EQ(lease_ns(t, 0, 10, t0 + visibility), (Ns{2, 3, 1}));
}

TEST(JobTable, NoLimitRetriesForever) {
    JobTable t({0});
    add_jobs(t, {1});
    for (int i = 1; i <= 50; ++i) {
        ASSERT_EQ(lease_ns(t, 0, 1, t0 + i * visibility), Ns{1}) << "lease " << i;
        ASSERT_EQ(t.nack(id_of(1), 0, t0 + i * visibility), JobTable::Settle::ok);
    }
    EXPECT_EQ(must_find(t, 1).attempts, 50);
    EXPECT_EQ(must_find(t, 1).state, JobState::queued);
}

TEST(JobTable, BackoffDoublesFromOneSecondUpToTenMinutes) {
    struct Row {
        uint16_t attempts;
        int64_t delay;
    };
    const Row rows[] = {
        {0, 1 * ns_per_s},    {1, 1 * ns_per_s},    {2, 2 * ns_per_s},       {3, 4 * ns_per_s},
        {4, 8 * ns_per_s},    {9, 256 * ns_per_s},  {10, 512 * ns_per_s},    {11, 600 * ns_per_s},
        {12, 600 * ns_per_s}, {64, 600 * ns_per_s}, {65535, 600 * ns_per_s},
    };
    for (const Row& row : rows) {
        EXPECT_EQ(retry_backoff_ns(row.attempts), row.delay) << "attempts " << row.attempts;
    }
}

TEST(JobTable, NackWithoutDelayBacksOff) {
    JobTable t({10});
    add_jobs(t, {1});
    int64_t now = t0;
    // attempt -> the not-before the nack after it sets, relative to the nack.
    const int64_t expected[] = {1, 2, 4, 8, 16};
    for (int64_t delay_s : expected) {
        ASSERT_EQ(lease_ns(t, 0, 1, now), Ns{1});
        ASSERT_EQ(t.nack(id_of(1), std::nullopt, now + ms), JobTable::Settle::ok);
        JobInfo j = must_find(t, 1);
        EXPECT_EQ(j.state, JobState::queued);
        EXPECT_EQ(j.due_ns, now + ms + delay_s * ns_per_s);
        EXPECT_EQ(t.next_change_ns(0), j.due_ns);
        EXPECT_EQ(lease_ns(t, 0, 1, j.due_ns - 1), Ns{}) << "before the backoff of " << delay_s;
        now = j.due_ns;
    }
    EXPECT_EQ(must_find(t, 1).attempts, 5);
    const LedgerOp& last = t.pending_ops().back();
    EXPECT_EQ(last.kind, LedgerOp::Kind::nack);
    EXPECT_EQ(last.attempts, 5);
    EXPECT_EQ(last.due_ns, now);
}

TEST(JobTable, NackWithAnExplicitDelay) {
    struct Row {
        const char* name;
        int64_t delay;
        int64_t due;      // expected not-before
        int64_t ready_at; // first time a lease returns it
    };
    const Row rows[] = {
        {"ten seconds", 10 * ns_per_s, t0 + 10 * ns_per_s, t0 + 10 * ns_per_s},
        {"zero", 0, t0, t0},
        {"negative counts as zero", -5 * ns_per_s, t0, t0},
        {"huge saturates", never, never, never},
    };
    for (const Row& row : rows) {
        JobTable t({10});
        add_jobs(t, {1});
        ASSERT_EQ(lease_ns(t, 0, 1, t0 - ms), Ns{1});
        ASSERT_EQ(t.nack(id_of(1), row.delay, t0), JobTable::Settle::ok) << row.name;
        EXPECT_EQ(must_find(t, 1).due_ns, row.due) << row.name;
        EXPECT_EQ(t.next_change_ns(0), row.due) << row.name;
        if (row.ready_at > t0) {
            EXPECT_EQ(lease_ns(t, 0, 1, row.ready_at - 1), Ns{}) << row.name;
        }
        EXPECT_EQ(lease_ns(t, 0, 1, row.ready_at), Ns{1}) << row.name;
        EXPECT_EQ(must_find(t, 1).attempts, 2) << row.name;
    }
}

TEST(JobTable, NackAtMaxAttemptsGoesDeadWhateverTheDelay) {
    JobTable t({2});
    add_jobs(t, {1});
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    ASSERT_EQ(t.nack(id_of(1), std::nullopt, t0), JobTable::Settle::ok);
    ASSERT_EQ(lease_ns(t, 0, 1, t0 + ns_per_s), Ns{1});
    ASSERT_EQ(t.nack(id_of(1), 5 * ns_per_s, t0 + ns_per_s), JobTable::Settle::ok);
    JobInfo j = must_find(t, 1);
    EXPECT_EQ(j.state, JobState::dead);
    EXPECT_EQ(j.attempts, 2);
    EXPECT_EQ(j.due_ns, 0);
    EXPECT_EQ(kinds(t.pending_ops()), "lease:1 nack:1 lease:1 dead:1");
    EXPECT_EQ(t.next_change_ns(0), never);
}

TEST(JobTable, SettlingAnswersByState) {
    // Job 1 queued, 2 leased, 3 done, 4 dead; 99 unknown.
    auto make = [] {
        JobTable t({1});
        add_jobs(t, {3, 4, 2, 1});
        EXPECT_EQ(lease_ns(t, 0, 3, t0), (Ns{3, 4, 2}));
        EXPECT_EQ(t.ack(id_of(3), t0), JobTable::Settle::ok);
        EXPECT_EQ(t.nack(id_of(4), std::nullopt, t0), JobTable::Settle::ok);
        durable(t);
        return t;
    };
    using S = JobTable::Settle;
    struct Row {
        uint32_t n;
        S ack, nack, replay;
        JobState after_ack;
    };
    const Row rows[] = {
        {1, S::ok, S::not_leased, S::not_dead, JobState::done},
        {2, S::ok, S::ok, S::not_dead, JobState::done},
        {3, S::already_done, S::not_leased, S::not_dead, JobState::done},
        {4, S::dead, S::not_leased, S::ok, JobState::dead},
        {99, S::unknown, S::unknown, S::unknown, JobState::queued},
    };
    for (const Row& row : rows) {
        {
            JobTable t = make();
            EXPECT_EQ(t.ack(id_of(row.n), t0), row.ack) << "ack " << row.n;
            if (row.n != 99) {
                EXPECT_EQ(must_find(t, row.n).state, row.after_ack) << "ack " << row.n;
            }
            EXPECT_EQ(t.pending_ops().size(), row.ack == S::ok ? 1u : 0u) << "ack " << row.n;
        }
        {
            JobTable t = make();
            EXPECT_EQ(t.nack(id_of(row.n), std::nullopt, t0), row.nack) << "nack " << row.n;
            EXPECT_EQ(t.pending_ops().size(), row.nack == S::ok ? 1u : 0u) << "nack " << row.n;
        }
        {
            JobTable t = make();
            EXPECT_EQ(t.replay(id_of(row.n), t0), row.replay) << "replay " << row.n;
            EXPECT_EQ(t.pending_ops().size(), row.replay == S::ok ? 1u : 0u) << "replay " << row.n;
        }
    }
}

TEST(JobTable, AckIsIdempotent) {
    JobTable t({5});
    add_jobs(t, {1});
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    EXPECT_EQ(t.ack(id_of(1), t0 + ms), JobTable::Settle::ok);
    EXPECT_EQ(t.ack(id_of(1), t0 + 2 * ms), JobTable::Settle::already_done);
    EXPECT_EQ(t.ack(id_of(1), t0 + 3 * ms), JobTable::Settle::already_done);
    EXPECT_EQ(kinds(t.pending_ops()), "lease:1 ack:1");
    EXPECT_EQ(t.pending_ops()[1].at_ns, t0 + ms);
    EXPECT_EQ(t.pending_ops()[1].attempts, 1);
    JobInfo j = must_find(t, 1);
    EXPECT_EQ(j.state, JobState::done);
    EXPECT_EQ(j.attempts, 1);
    EXPECT_EQ(j.due_ns, 0);
    EXPECT_EQ(t.next_change_ns(0), never); // the acked lease's timer is gone
    EXPECT_EQ(lease_ns(t, 0, 1, t0 + visibility), Ns{});
}

TEST(JobTable, LateAckAfterTheLeaseExpiredStillCounts) {
    JobTable t({5});
    add_jobs(t, {1, 2});
    ASSERT_EQ(lease_ns(t, 0, 2, t0), (Ns{1, 2}));
    // Both leases expire: job 1 is leased again to someone else, job 2 waits in the queue.
    // The first holder's acks of both still count.
    ASSERT_EQ(lease_ns(t, 0, 1, t0 + visibility), Ns{1});
    EXPECT_EQ(must_find(t, 2).state, JobState::queued);
    EXPECT_EQ(t.ack(id_of(2), t0 + visibility + ms), JobTable::Settle::ok);
    EXPECT_EQ(must_find(t, 2).state, JobState::done);
    EXPECT_EQ(must_find(t, 1).attempts, 2);
    EXPECT_EQ(t.ack(id_of(1), t0 + visibility + ms), JobTable::Settle::ok);
    EXPECT_EQ(lease_ns(t, 0, 10, t0 + 10 * visibility), Ns{});
    EXPECT_EQ(t.depth(0).done, 2u);
}

TEST(JobTable, ReplayRequeuesADeadJobWithNoAttempts) {
    JobTable t({1});
    add_jobs(t, {1, 2});
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    ASSERT_EQ(t.nack(id_of(1), std::nullopt, t0), JobTable::Settle::ok);
    ASSERT_EQ(must_find(t, 1).state, JobState::dead);
    EXPECT_EQ(t.replay(id_of(1), t0 + ms), JobTable::Settle::ok);
    JobInfo j = must_find(t, 1);
    EXPECT_EQ(j.state, JobState::queued);
    EXPECT_EQ(j.attempts, 0);
    EXPECT_EQ(j.due_ns, 0);
    EXPECT_EQ(t.replay(id_of(1), t0 + ms), JobTable::Settle::not_dead);
    std::vector<JobInfo> dead;
    t.dead_letters(0, JobId{}, 10, dead);
    EXPECT_TRUE(dead.empty());
    // Ready at once, behind job 2 that was already waiting; one lease again before dying.
    EXPECT_EQ(lease_ns(t, 0, 10, t0 + ms), (Ns{2, 1}));
    EXPECT_EQ(must_find(t, 1).attempts, 1);
    EXPECT_EQ(kinds(t.pending_ops()), "lease:1 dead:1 replay:1 lease:2 lease:1");
}

TEST(JobTable, DeadLettersPageInIdOrder) {
    JobTable t({1, 1});
    add_jobs(t, {5, 1, 7, 3, 2, 6, 4}, 0);
    add_jobs(t, {8, 0}, 1);
    ASSERT_EQ(lease_ns(t, 0, 10, t0).size(), 7u);
    ASSERT_EQ(lease_ns(t, 1, 10, t0).size(), 2u);
    for (uint32_t n = 0; n <= 8; ++n) {
        ASSERT_EQ(t.nack(id_of(n), std::nullopt, t0), JobTable::Settle::ok);
    }
    struct Row {
        uint32_t after; // 0 = from the start (JobId{} sorts before every id_of)
        size_t limit;
        Ns expected;
    };
    const Row rows[] = {
        {0, 3, {1, 2, 3}}, {3, 3, {4, 5, 6}}, {6, 3, {7}},
        {7, 3, {}},        {0, 0, {}},        {0, 100, {1, 2, 3, 4, 5, 6, 7}},
        {4, 1, {5}},
    };
    for (const Row& row : rows) {
        std::vector<JobInfo> out;
        t.dead_letters(0, row.after == 0 ? JobId{} : id_of(row.after), row.limit, out);
        Ns got;
        for (const JobInfo& j : out) {
            got.push_back(n_of(j.id));
            EXPECT_EQ(j.state, JobState::dead);
            EXPECT_EQ(j.route, 0);
        }
        EXPECT_EQ(got, row.expected) << "after " << row.after << " limit " << row.limit;
    }
    std::vector<JobInfo> other;
    t.dead_letters(1, JobId{}, 10, other);
    ASSERT_EQ(other.size(), 2u);
    EXPECT_EQ(n_of(other[0].id), 0u);
    EXPECT_EQ(n_of(other[1].id), 8u);
}

TEST(JobTable, NextChangeIsTheEarliestLiveTimer) {
    JobTable t({5});
    EXPECT_EQ(t.next_change_ns(0), never);
    add_jobs(t, {1, 2, 3});
    EXPECT_EQ(t.next_change_ns(0), never); // ready jobs are not a timer
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    ASSERT_EQ(lease_ns(t, 0, 1, t0 + ns_per_s), Ns{2});
    EXPECT_EQ(t.next_change_ns(0), t0 + visibility);
    ASSERT_EQ(t.nack(id_of(2), 5 * ns_per_s, t0 + 2 * ns_per_s), JobTable::Settle::ok);
    EXPECT_EQ(t.next_change_ns(0), t0 + 7 * ns_per_s);
    ASSERT_EQ(t.ack(id_of(2), t0 + 3 * ns_per_s), JobTable::Settle::ok); // queued -> done
    EXPECT_EQ(t.next_change_ns(0), t0 + visibility);
    ASSERT_EQ(t.ack(id_of(1), t0 + 3 * ns_per_s), JobTable::Settle::ok);
    EXPECT_EQ(t.next_change_ns(0), never);
    ASSERT_EQ(lease_ns(t, 0, 1, t0 + 4 * ns_per_s), Ns{3});
    EXPECT_EQ(t.next_change_ns(0), t0 + 4 * ns_per_s + visibility);
    // A timer that is due but not yet processed is still reported (<= now): lease() has work.
    ASSERT_EQ(t.nack(id_of(3), 0, t0 + 5 * ns_per_s), JobTable::Settle::ok);
    EXPECT_EQ(t.next_change_ns(0), t0 + 5 * ns_per_s);
    EXPECT_EQ(t.next_change_ns(7), never);
}

TEST(JobTable, RoutesAreIsolated) {
    JobTable t({1, 3});
    add_jobs(t, {1, 3}, 0);
    add_jobs(t, {2, 4}, 1);
    EXPECT_EQ(lease_ns(t, 1, 10, t0), (Ns{2, 4}));
    EXPECT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    // Route 0's lease expires, but only its own lease() moves it; route 1's limit is its own.
    EXPECT_EQ(lease_ns(t, 1, 10, t0 + visibility), (Ns{2, 4}));
    EXPECT_EQ(must_find(t, 1).state, JobState::leased);
    EXPECT_EQ(must_find(t, 2).attempts, 2);
    EXPECT_EQ(lease_ns(t, 0, 10, t0 + visibility), Ns{3});
    EXPECT_EQ(must_find(t, 1).state, JobState::dead); // max_attempts 1
    EXPECT_EQ(t.next_change_ns(1), t0 + 2 * visibility);
    EXPECT_EQ(t.next_change_ns(0), t0 + 2 * visibility);

    RouteDepth d0 = t.depth(0);
    RouteDepth d1 = t.depth(1);
    EXPECT_EQ(d0.queued, 0u);
    EXPECT_EQ(d0.leased, 1u);
    EXPECT_EQ(d0.dead, 1u);
    EXPECT_EQ(d1.queued, 0u);
    EXPECT_EQ(d1.leased, 2u);
    EXPECT_EQ(d1.dead, 0u);
}

TEST(JobTable, DepthCountsEveryState) {
    JobTable t({1});
    add_jobs(t, {1, 2, 3, 4, 5, 6});
    ASSERT_EQ(lease_ns(t, 0, 4, t0), (Ns{1, 2, 3, 4}));
    ASSERT_EQ(t.ack(id_of(1), t0), JobTable::Settle::ok);
    ASSERT_EQ(t.nack(id_of(2), std::nullopt, t0), JobTable::Settle::ok); // dead
    t.replay(id_of(2), t0);
    ASSERT_EQ(lease_ns(t, 0, 0, t0), Ns{});
    RouteDepth d = t.depth(0);
    EXPECT_EQ(d.queued, 3u); // 5, 6 and the replayed 2
    EXPECT_EQ(d.delayed, 0u);
    EXPECT_EQ(d.leased, 2u);
    EXPECT_EQ(d.done, 1u);
    EXPECT_EQ(d.dead, 0u);

    JobTable u({5});
    add_jobs(u, {1});
    ASSERT_EQ(lease_ns(u, 0, 1, t0), Ns{1});
    ASSERT_EQ(u.nack(id_of(1), 10 * ns_per_s, t0), JobTable::Settle::ok);
    EXPECT_EQ(u.depth(0).queued, 1u);
    EXPECT_EQ(u.depth(0).delayed, 1u);
    ASSERT_EQ(lease_ns(u, 0, 0, t0 + 10 * ns_per_s), Ns{}); // promoted, not leased (max 0)
    EXPECT_EQ(u.depth(0).delayed, 0u);
    EXPECT_EQ(u.depth(0).queued, 1u);
}

TEST(JobTable, SegmentsCountUnsettledJobsAndDropForgetsThem) {
    JobTable t({1, 5});
    ASSERT_TRUE(t.add(id_of(1), 0, at(0, 1)));
    ASSERT_TRUE(t.add(id_of(2), 0, at(0, 1)));
    ASSERT_TRUE(t.add(id_of(3), 1, at(0, 1)));
    ASSERT_TRUE(t.add(id_of(4), 0, at(0, 2)));
    ASSERT_TRUE(t.add(id_of(5), 0, at(1, 1)));
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 3u);
    EXPECT_EQ(t.unsettled_in_segment(0, 2), 1u);
    EXPECT_EQ(t.unsettled_in_segment(1, 1), 1u);
    EXPECT_EQ(t.unsettled_in_segment(1, 2), 0u);

    // Each change's group is durable at once: until then it counts too (see the rollback tests).
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    durable(t);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 3u);                         // leased is unsettled
    ASSERT_EQ(t.nack(id_of(1), std::nullopt, t0), JobTable::Settle::ok); // dead: settled
    durable(t);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 2u);
    ASSERT_EQ(t.ack(id_of(2), t0), JobTable::Settle::ok);
    durable(t);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 1u);
    ASSERT_EQ(t.replay(id_of(1), t0), JobTable::Settle::ok);
    durable(t);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 2u);

    ASSERT_EQ(lease_ns(t, 1, 1, t0), Ns{3});
    t.drop_segment(0, 1);
    EXPECT_EQ(t.size(), 2u);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 0u);
    for (uint32_t n : {1, 2, 3}) {
        EXPECT_FALSE(t.find(id_of(n)).has_value()) << n;
        EXPECT_EQ(t.ack(id_of(n), t0), JobTable::Settle::unknown) << n;
    }
    EXPECT_EQ(t.depth(0).queued, 2u);
    EXPECT_EQ(t.depth(0).done, 0u);
    EXPECT_EQ(t.depth(1).leased, 0u);
    EXPECT_EQ(t.next_change_ns(1), never); // job 3's lease timer went with it
    EXPECT_EQ(lease_ns(t, 0, 10, t0), (Ns{4, 5}));
    t.drop_segment(7, 7); // unknown: nothing happens
    EXPECT_EQ(t.size(), 2u);

    // The freed slots are reused; refs left in the FIFO and heaps for the dropped jobs must not
    // come back as the new jobs.
    ASSERT_TRUE(t.add(id_of(1), 0, at(0, 3)));
    ASSERT_TRUE(t.add(id_of(6), 0, at(0, 3)));
    ASSERT_TRUE(t.add(id_of(7), 1, at(0, 3)));
    EXPECT_EQ(must_find(t, 1).attempts, 0);
    EXPECT_EQ(must_find(t, 1).where.segment, 3u);
    EXPECT_EQ(lease_ns(t, 0, 10, t0), (Ns{1, 6}));
    EXPECT_EQ(lease_ns(t, 1, 10, t0), Ns{7});
    durable(t);
    EXPECT_EQ(t.unsettled_in_segment(0, 3), 3u);
}

// The index grows by moving its old table into one twice the size a few slots per add, while
// lookups try both: through a dozen growths, with segments dropped (and the table compacted) in
// the middle of them, every live job is found, no dropped one is, and no id is added twice.
TEST(JobTable, TheIndexGrowsWhileItIsUsed) {
    JobTable t({5});
    std::mt19937 rng(7);
    std::map<uint32_t, uint64_t> live; // n -> segment
    uint32_t next = 1;
    uint64_t segment = 1;
    for (int round = 0; round < 60; ++round) {
        const uint32_t adds = 100 + rng() % 900;
        for (uint32_t i = 0; i < adds; ++i, ++next) {
            if (next % 97 == 0) {
                ++segment;
            }
            ASSERT_TRUE(t.add(id_of(next), 0, at(0, segment, next)));
            live[next] = segment;
            // A known id, wherever its slot is now, is refused.
            const uint32_t old = 1 + rng() % next;
            if (live.contains(old)) {
                ASSERT_FALSE(t.add(id_of(old), 0, at(0, segment)));
            }
        }
        // Drop a few segments: their jobs leave whichever table holds them.
        for (int d = 0; d < 3; ++d) {
            const uint64_t victim = 1 + rng() % segment;
            t.drop_segment(0, victim);
            std::erase_if(live, [&](const auto& kv) { return kv.second == victim; });
        }
        ASSERT_EQ(t.size(), live.size()) << "round " << round;
        for (uint32_t n = 1; n < next; n += 1 + rng() % 5) {
            ASSERT_EQ(t.find(id_of(n)).has_value(), live.contains(n)) << n << " round " << round;
        }
    }
    for (uint32_t n = 1; n < next; ++n) {
        ASSERT_EQ(t.find(id_of(n)).has_value(), live.contains(n)) << n;
    }
    EXPECT_GT(next, 30'000u); // the index grew from 64 slots past 32,768
}

// The ready FIFO is a ring that grows in place: when it is full and wrapped, the shorter run
// moves (the front one past the old end, or the back one to the new end) and the order holds.
TEST(JobTable, TheReadyQueueGrowsWrappedAndKeepsItsOrder) {
    for (const uint32_t leased_first : {3u, 13u}) {
        JobTable t({5});
        uint32_t next = 1;
        for (; next <= 16; ++next) {
            ASSERT_TRUE(t.add(id_of(next), 0, at(0, 1, next)));
        }
        Ns expected;
        for (uint32_t n = 1; n <= leased_first; ++n) {
            expected.push_back(n);
        }
        ASSERT_EQ(lease_ns(t, 0, leased_first, t0), expected);
        // Refill to 16 (the ring wraps), then past it (it grows), then much further.
        for (uint32_t i = 0; i < leased_first + 1 + 100; ++i, ++next) {
            ASSERT_TRUE(t.add(id_of(next), 0, at(0, 1, next)));
        }
        expected.clear();
        for (uint32_t n = leased_first + 1; n < next; ++n) {
            expected.push_back(n);
        }
        EXPECT_EQ(lease_ns(t, 0, 1000, t0), expected) << leased_first;
    }
}

TEST(JobTable, DroppingQueuedJobsLeavesNoGhostsInTheQueue) {
    JobTable t({5});
    for (uint32_t n = 1; n <= 300; ++n) {
        ASSERT_TRUE(t.add(id_of(n), 0, at(0, n % 3)));
    }
    t.drop_segment(0, 0);
    t.drop_segment(0, 2);
    for (uint32_t n = 301; n <= 400; ++n) {
        ASSERT_TRUE(t.add(id_of(n), 0, at(0, 9)));
    }
    Ns expected;
    for (uint32_t n = 1; n <= 400; ++n) {
        if (n > 300 || n % 3 == 1) {
            expected.push_back(n);
        }
    }
    EXPECT_EQ(lease_ns(t, 0, 1000, t0), expected);
    EXPECT_EQ(t.size(), 200u);
}

TEST(JobTable, CompactionKeepsTheQueueInOrder) {
    JobTable t({5});
    for (uint32_t n = 1; n <= 1000; ++n) {
        ASSERT_TRUE(t.add(id_of(n), 0, at(0, 1)));
    }
    // Acking queued jobs leaves stale slots in the FIFO; the adds that follow compact it.
    for (uint32_t n = 1; n <= 1000; n += 2) {
        ASSERT_EQ(t.ack(id_of(n), t0), JobTable::Settle::ok);
    }
    for (uint32_t n = 1001; n <= 1500; ++n) {
        ASSERT_TRUE(t.add(id_of(n), 0, at(0, 1)));
    }
    Ns expected;
    for (uint32_t n = 2; n <= 1000; n += 2) {
        expected.push_back(n);
    }
    for (uint32_t n = 1001; n <= 1500; ++n) {
        expected.push_back(n);
    }
    EXPECT_EQ(lease_ns(t, 0, 5000, t0), expected);
    // Acking the leases out of deadline order compacts the lease heap; the rest still expire.
    for (size_t i = 0; i < expected.size(); ++i) {
        if (i % 4 != 0) {
            ASSERT_EQ(t.ack(id_of(expected[i]), t0), JobTable::Settle::ok);
        }
    }
    Ns back;
    for (size_t i = 0; i < expected.size(); i += 4) {
        back.push_back(expected[i]);
    }
    EXPECT_EQ(lease_ns(t, 0, 5000, t0 + visibility), back);
}

TEST(JobTable, UntrustedRoutesAndIdsNeverCrash) {
    JobTable t({5});
    add_jobs(t, {1});
    std::vector<JobInfo> out;
    EXPECT_EQ(t.lease(7, 10, visibility, t0, out), 0u);
    EXPECT_EQ(t.lease(0, 10, -visibility, t0, out), 1u); // negative visibility counts as 0
    EXPECT_EQ(out[0].due_ns, t0);
    EXPECT_EQ(t.lease(0, 10, never, t0, out), 1u); // expired at once, leased again, saturated
    EXPECT_EQ(out[1].due_ns, never);
    EXPECT_EQ(out[1].attempts, 2);
    t.dead_letters(7, JobId{}, 10, out);
    EXPECT_EQ(out.size(), 2u);
    EXPECT_EQ(t.next_change_ns(7), never);
    EXPECT_EQ(t.depth(7).queued, 0u);
    JobId all_ones;
    all_ones.bytes.fill(0xff);
    EXPECT_EQ(t.ack(all_ones, t0), JobTable::Settle::unknown);
    EXPECT_EQ(t.nack(all_ones, never, t0), JobTable::Settle::unknown);
    EXPECT_EQ(t.replay(JobId{}, t0), JobTable::Settle::unknown);
    LedgerOp odd{static_cast<LedgerOp::Kind>(42), 0, 1, id_of(1), t0, 0};
    t.apply(odd);
    EXPECT_EQ(must_find(t, 1).state, JobState::leased);
}

TEST(JobTable, MemoryPerJobStaysSmall) {
    JobTable t({5});
    constexpr uint32_t jobs = 100'000;
    for (uint32_t n = 0; n < jobs; ++n) {
        ASSERT_TRUE(t.add(id_of(n), 0, at(0, n / 10'000, n)));
    }
    double per_job = static_cast<double>(t.memory_bytes()) / static_cast<double>(t.size());
    // The 64-byte entry, plus the hash map (11 to 23 bytes) and the ready FIFO (8 to 16 bytes),
    // depending on where their doubling stands.
    EXPECT_GT(per_job, 83.0);
    EXPECT_LT(per_job, 120.0);
}

// ---- a ledger group that fails is rolled back ----

namespace {

// One job's observable state, for comparing before and after.
std::string state_of(const JobTable& t, uint32_t n) {
    auto j = t.find(id_of(n));
    if (!j) {
        return "gone";
    }
    return std::string(state_name(j->state)) + " attempts " + std::to_string(j->attempts) +
           " due " + std::to_string(j->due_ns == 0 ? 0 : (j->due_ns - t0) / ms) + "ms";
}

std::vector<uint32_t> dead_ns(const JobTable& t, uint16_t route) {
    std::vector<JobInfo> out;
    t.dead_letters(route, JobId{}, 100, out);
    std::vector<uint32_t> ns;
    ns.reserve(out.size());
    for (const JobInfo& j : out) {
        ns.push_back(n_of(j.id));
    }
    return ns;
}

} // namespace

TEST(JobTableRollback, AckOfALeasedJobIsUndoneAndCanBeRetried) {
    JobTable t({5});
    add_jobs(t, {1});
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    durable(t);
    const std::string leased = state_of(t, 1);
    ASSERT_EQ(t.ack(id_of(1), t0 + ms), JobTable::Settle::ok);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 1u); // the ack could still be undone
    EXPECT_EQ(failed(t), 1u);
    EXPECT_EQ(state_of(t, 1), leased);
    EXPECT_EQ(t.depth(0).leased, 1u);
    EXPECT_EQ(t.depth(0).done, 0u);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 1u);
    EXPECT_EQ(t.next_change_ns(0), t0 + visibility); // the lease's timer is back
    EXPECT_TRUE(t.pending_ops().empty());
    EXPECT_EQ(t.ops_unresolved(), 0u);
    // The retry is an ack again (not already_done), with its op.
    EXPECT_EQ(t.ack(id_of(1), t0 + 2 * ms), JobTable::Settle::ok);
    EXPECT_EQ(kinds(t.pending_ops()), "ack:1");
    durable(t);
    EXPECT_EQ(t.depth(0).done, 1u);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 0u);
    EXPECT_EQ(t.ops_unresolved(), 0u);
}

TEST(JobTableRollback, UndoneLeaseTimerStillExpires) {
    JobTable t({5});
    add_jobs(t, {1});
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    durable(t);
    ASSERT_EQ(t.ack(id_of(1), t0 + ms), JobTable::Settle::ok);
    failed(t);
    EXPECT_EQ(lease_ns(t, 0, 1, t0 + visibility - 1), Ns{});
    EXPECT_EQ(lease_ns(t, 0, 1, t0 + visibility), Ns{1});
    EXPECT_EQ(kinds(t.pending_ops()), "expire:1 lease:1");
    EXPECT_EQ(must_find(t, 1).attempts, 2);
}

TEST(JobTableRollback, LateAckOfAQueuedJobIsUndone) {
    JobTable t({5});
    add_jobs(t, {1, 2});
    ASSERT_EQ(t.ack(id_of(1), t0), JobTable::Settle::ok);
    EXPECT_EQ(failed(t), 1u);
    EXPECT_EQ(state_of(t, 1), "queued attempts 0 due 0ms");
    EXPECT_EQ(t.depth(0).queued, 2u);
    EXPECT_EQ(t.depth(0).done, 0u);
    // Back in the queue, behind the job that stayed there.
    EXPECT_EQ(lease_ns(t, 0, 10, t0), (Ns{2, 1}));
}

TEST(JobTableRollback, RepeatedAckAfterAFailedOneIsAnAckAgain) {
    JobTable t({5});
    add_jobs(t, {1});
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    durable(t);
    ASSERT_EQ(t.ack(id_of(1), t0), JobTable::Settle::ok);
    t.ops_taken(); // in flight
    // A second ack while the first one's group is in flight: nothing to write, it waits for
    // that group. The group fails: both are refused, and the job is leased.
    ASSERT_EQ(t.ack(id_of(1), t0), JobTable::Settle::already_done);
    EXPECT_EQ(t.ops_failed(), 1u);
    EXPECT_EQ(must_find(t, 1).state, JobState::leased);
    EXPECT_EQ(t.ack(id_of(1), t0), JobTable::Settle::ok);
}

TEST(JobTableRollback, NackIsUndone) {
    JobTable t({5});
    add_jobs(t, {1});
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    durable(t);
    const std::string leased = state_of(t, 1);
    ASSERT_EQ(t.nack(id_of(1), 10 * ns_per_s, t0 + ms), JobTable::Settle::ok);
    ASSERT_EQ(t.depth(0).delayed, 1u);
    EXPECT_EQ(failed(t), 1u);
    EXPECT_EQ(state_of(t, 1), leased);
    EXPECT_EQ(t.depth(0).queued, 0u);
    EXPECT_EQ(t.depth(0).delayed, 0u);
    EXPECT_EQ(t.depth(0).leased, 1u);
    EXPECT_EQ(t.next_change_ns(0), t0 + visibility); // not the nack's not-before
    // The retry is a nack again.
    EXPECT_EQ(t.nack(id_of(1), 10 * ns_per_s, t0 + 2 * ms), JobTable::Settle::ok);
    EXPECT_EQ(kinds(t.pending_ops()), "nack:1");
}

TEST(JobTableRollback, NackToTheDeadLettersIsUndone) {
    JobTable t({1});
    add_jobs(t, {1});
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    durable(t);
    const std::string leased = state_of(t, 1);
    ASSERT_EQ(t.nack(id_of(1), std::nullopt, t0 + ms), JobTable::Settle::ok);
    ASSERT_EQ(dead_ns(t, 0), Ns{1});
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 1u);
    EXPECT_EQ(failed(t), 1u);
    EXPECT_EQ(state_of(t, 1), leased);
    EXPECT_EQ(dead_ns(t, 0), Ns{});
    EXPECT_EQ(t.depth(0).dead, 0u);
    EXPECT_EQ(t.depth(0).leased, 1u);
    EXPECT_EQ(t.replay(id_of(1), t0), JobTable::Settle::not_dead);
    EXPECT_EQ(t.nack(id_of(1), std::nullopt, t0 + ms), JobTable::Settle::ok);
    EXPECT_EQ(kinds(t.pending_ops()), "dead:1");
}

TEST(JobTableRollback, ReplayIsUndone) {
    JobTable t({1});
    add_jobs(t, {1});
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    ASSERT_EQ(t.nack(id_of(1), std::nullopt, t0), JobTable::Settle::ok);
    durable(t);
    const std::string dead = state_of(t, 1);
    ASSERT_EQ(t.replay(id_of(1), t0 + ms), JobTable::Settle::ok);
    EXPECT_EQ(failed(t), 1u);
    EXPECT_EQ(state_of(t, 1), dead);
    EXPECT_EQ(dead_ns(t, 0), Ns{1});
    EXPECT_EQ(t.depth(0).dead, 1u);
    EXPECT_EQ(t.depth(0).queued, 0u);
    EXPECT_EQ(lease_ns(t, 0, 10, t0 + ms), Ns{});
    EXPECT_EQ(t.replay(id_of(1), t0 + 2 * ms), JobTable::Settle::ok);
    EXPECT_EQ(kinds(t.pending_ops()), "replay:1");
}

TEST(JobTableRollback, LeasesAreKeptAckedOrNot) {
    // A lease is answered before its op is durable: it stays, in the failed group (job 1, and
    // job 2 whose ack on top of it is undone) and among the ops pending since (job 3).
    JobTable t({5});
    add_jobs(t, {1, 2, 3});
    ASSERT_EQ(lease_ns(t, 0, 2, t0), (Ns{1, 2}));
    ASSERT_EQ(t.ack(id_of(2), t0 + ms), JobTable::Settle::ok);
    const std::string leased_1 = state_of(t, 1);
    t.ops_taken();
    ASSERT_EQ(lease_ns(t, 0, 1, t0 + 2 * ms), Ns{3});
    const std::string leased_3 = state_of(t, 3);
    EXPECT_EQ(t.ops_failed(), 1u);
    EXPECT_EQ(state_of(t, 1), leased_1);
    EXPECT_EQ(state_of(t, 2), "leased attempts 1 due 30000ms");
    EXPECT_EQ(state_of(t, 3), leased_3);
    EXPECT_EQ(t.depth(0).leased, 3u);
    // The failed group's leases are lost from the ledger (a restart delivers those jobs again);
    // the one pending since is still to be written.
    EXPECT_EQ(kinds(t.pending_ops()), "lease:3");
    EXPECT_EQ(t.ops_unresolved(), 1u);
    durable(t);
    EXPECT_EQ(t.ops_unresolved(), 0u);
    EXPECT_EQ(t.ack(id_of(2), t0 + 3 * ms), JobTable::Settle::ok);
}

TEST(JobTableRollback, ExpiryIsKeptAndAnAckOnTopOfItUndone) {
    JobTable t({5});
    add_jobs(t, {1, 2});
    ASSERT_EQ(lease_ns(t, 0, 2, t0), (Ns{1, 2}));
    durable(t);
    // Both leases expire; job 1 is leased again at once, job 2 stays queued and is acked late.
    ASSERT_EQ(lease_ns(t, 0, 1, t0 + visibility), Ns{1});
    const std::string leased_again = state_of(t, 1);
    ASSERT_EQ(t.ack(id_of(1), t0 + visibility + ms), JobTable::Settle::ok);
    ASSERT_EQ(t.ack(id_of(2), t0 + visibility + ms), JobTable::Settle::ok);
    EXPECT_EQ(kinds(t.pending_ops()), "expire:1 expire:2 lease:1 ack:1 ack:2");
    EXPECT_EQ(failed(t), 2u);
    EXPECT_EQ(state_of(t, 1), leased_again);
    EXPECT_EQ(must_find(t, 1).attempts, 2);
    EXPECT_EQ(state_of(t, 2), "queued attempts 1 due 0ms");
    EXPECT_EQ(t.depth(0).leased, 1u);
    EXPECT_EQ(t.depth(0).queued, 1u);
    EXPECT_EQ(lease_ns(t, 0, 10, t0 + visibility + 2 * ms), Ns{2});
}

TEST(JobTableRollback, DeathByExpiryIsKept) {
    JobTable t({1});
    add_jobs(t, {1, 2});
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    durable(t);
    ASSERT_EQ(lease_ns(t, 0, 1, t0 + visibility), Ns{2}); // 1 dies, 2 is leased
    ASSERT_EQ(t.ack(id_of(2), t0 + visibility), JobTable::Settle::ok);
    EXPECT_EQ(kinds(t.pending_ops()), "dead:1 lease:2 ack:2");
    EXPECT_EQ(failed(t), 1u);
    EXPECT_EQ(dead_ns(t, 0), Ns{1});
    EXPECT_EQ(must_find(t, 2).state, JobState::leased);
}

TEST(JobTableRollback, ALeaseBuiltOnAnUndoneReplayIsUndoneToo) {
    JobTable t({1});
    add_jobs(t, {1});
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    ASSERT_EQ(t.nack(id_of(1), std::nullopt, t0), JobTable::Settle::ok);
    durable(t);
    const std::string dead = state_of(t, 1);
    ASSERT_EQ(t.replay(id_of(1), t0 + ms), JobTable::Settle::ok);
    ASSERT_EQ(lease_ns(t, 0, 1, t0 + 2 * ms), Ns{1});
    ASSERT_EQ(t.ack(id_of(1), t0 + 3 * ms), JobTable::Settle::ok);
    EXPECT_EQ(failed(t), 3u);
    EXPECT_EQ(state_of(t, 1), dead);
    EXPECT_EQ(dead_ns(t, 0), Ns{1});
    EXPECT_EQ(t.depth(0).leased, 0u);
    EXPECT_EQ(t.depth(0).done, 0u);
    EXPECT_EQ(t.next_change_ns(0), never);
}

TEST(JobTableRollback, ALeaseBuiltOnAnUndoneNackIsUndoneToo) {
    JobTable t({5});
    add_jobs(t, {1});
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    durable(t);
    const std::string first_lease = state_of(t, 1);
    ASSERT_EQ(t.nack(id_of(1), 0, t0 + ms), JobTable::Settle::ok);
    t.ops_taken();
    // Pending since the failed group: the nacked job leased again.
    ASSERT_EQ(lease_ns(t, 0, 1, t0 + 2 * ms), Ns{1});
    EXPECT_EQ(t.ops_failed(), 2u);
    EXPECT_EQ(state_of(t, 1), first_lease);
    EXPECT_EQ(t.depth(0).leased, 1u);
    EXPECT_TRUE(t.pending_ops().empty());
    EXPECT_EQ(t.ops_unresolved(), 0u);
}

TEST(JobTableRollback, SettlingOpsPendingSinceAreUndoneTooAndDurableOnesStay) {
    JobTable t({5});
    add_jobs(t, {1, 2, 3, 4});
    ASSERT_EQ(lease_ns(t, 0, 4, t0), (Ns{1, 2, 3, 4}));
    ASSERT_EQ(t.ack(id_of(1), t0), JobTable::Settle::ok);
    durable(t);
    ASSERT_EQ(t.ack(id_of(2), t0), JobTable::Settle::ok);
    t.ops_taken(); // in flight
    ASSERT_EQ(t.ack(id_of(3), t0), JobTable::Settle::ok);
    ASSERT_EQ(t.nack(id_of(4), std::nullopt, t0), JobTable::Settle::ok);
    EXPECT_EQ(t.ops_unresolved(), 3u);
    EXPECT_EQ(t.ops_failed(), 3u);
    EXPECT_EQ(must_find(t, 1).state, JobState::done);
    for (uint32_t n : {2, 3, 4}) {
        EXPECT_EQ(must_find(t, n).state, JobState::leased) << n;
    }
    EXPECT_TRUE(t.pending_ops().empty());
}

TEST(JobTableRollback, ADroppedSegmentsUndosDoNotTouchTheReusedSlots) {
    JobTable t({5});
    ASSERT_TRUE(t.add(id_of(1), 0, at(0, 1)));
    ASSERT_EQ(t.ack(id_of(1), t0), JobTable::Settle::ok);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 1u); // retention waits for the ack's group
    t.drop_segment(0, 1);
    ASSERT_TRUE(t.add(id_of(2), 0, at(0, 2))); // takes job 1's slot
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{2});
    durable(t);
    ASSERT_EQ(t.ack(id_of(2), t0), JobTable::Settle::ok);
    EXPECT_EQ(failed(t), 1u);
    EXPECT_EQ(state_of(t, 2), "leased attempts 1 due 30000ms");
    EXPECT_FALSE(t.find(id_of(1)).has_value());
    EXPECT_EQ(t.size(), 1u);

    // The same when the group with the dropped job's op is the one that fails.
    ASSERT_TRUE(t.add(id_of(3), 0, at(0, 3)));
    ASSERT_EQ(t.ack(id_of(3), t0), JobTable::Settle::ok);
    t.drop_segment(0, 3);
    ASSERT_TRUE(t.add(id_of(4), 0, at(0, 4)));
    EXPECT_EQ(failed(t), 0u);
    EXPECT_EQ(state_of(t, 4), "queued attempts 0 due 0ms");
    EXPECT_EQ(t.depth(0).queued, 1u);
    EXPECT_EQ(t.depth(0).done, 0u);
    EXPECT_EQ(t.unsettled_in_segment(0, 4), 1u);
}

// A random walk through every operation; the ops it leaves must rebuild the same table, and so
// must a snapshot of it. Now and then a ledger group fails: the table must then be what its
// state at the last group, plus the ops that a failure keeps, rebuilds.
TEST(JobTableLedger, RandomOperationsRebuildFromAddsAndOps) {
    std::map<LedgerOp::Kind, size_t> seen;
    size_t seen_failures = 0;
    for (uint64_t seed = 1; seed <= 20; ++seed) {
        std::mt19937_64 rng(seed);
        auto pick = [&](uint64_t n) {
            return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng);
        };
        // Route 3 is ordered (a few keys), route 4 an optional pull lane.
        const std::vector<RouteOptions> limits = {{3, false, false},
                                                  {0, false, false},
                                                  {1, false, false},
                                                  {3, false, true},
                                                  {2, true, false}};
        JobTable t(limits);
        struct Added {
            uint32_t n;
            uint16_t route;
            JobLocation where;
            uint64_t key;
        };
        std::vector<Added> added;
        std::vector<LedgerOp> log;
        // The table as the last resolved group left it (plus the jobs added since), and for each
        // pending op whether its answer waits for the ledger (ack, nack, replay).
        JobTable base(limits);
        std::vector<bool> waits;
        int64_t now = t0;
        uint32_t next_n = 1;
        uint64_t dropped_segment = 0;
        for (int step = 0; step < 3000; ++step) {
            now += static_cast<int64_t>(pick(2000)) * ms;
            uint32_t some = static_cast<uint32_t>(pick(next_n + 2)); // sometimes unknown
            const size_t pending_before = t.pending_ops().size();
            bool settling = false;
            switch (pick(10)) {
            case 0:
            case 1: {
                auto route = static_cast<uint16_t>(pick(limits.size()));
                JobLocation where = at(static_cast<uint32_t>(pick(2)), next_n / 50, next_n);
                const uint64_t key = pick(3);
                ASSERT_TRUE(t.add(id_of(next_n), route, where, key));
                ASSERT_TRUE(base.add(id_of(next_n), route, where, key));
                added.push_back({next_n, route, where, key});
                ++next_n;
                break;
            }
            case 2:
            case 3: {
                std::vector<JobInfo> out;
                int64_t vis = static_cast<int64_t>(1 + pick(5)) * ns_per_s;
                t.lease(static_cast<uint16_t>(pick(limits.size())), pick(4), vis, now, out);
                break;
            }
            case 4:
                t.ack(id_of(some), now);
                settling = true;
                break;
            case 5: {
                std::optional<int64_t> delay;
                if (pick(2) == 0) {
                    delay = static_cast<int64_t>(pick(3000)) * ms;
                }
                t.nack(id_of(some), delay, now);
                settling = true;
                break;
            }
            case 6:
                t.replay(id_of(some), now);
                settling = true;
                break;
            case 9:
                t.bury(id_of(some), now);
                settling = true;
                break;
            case 7:
                // Writing the pending ops out now and then, as the server does.
                log.insert(log.end(), t.pending_ops().begin(), t.pending_ops().end());
                durable(t);
                waits.clear();
                base = t;
                break;
            case 8: {
                // The write fails. What is kept of each job is its ops up to the first that
                // waits, or that follows one of the job's ops that is undone. Applied to the
                // base they must rebuild the table; in the server they are lost with the
                // group, like a crash would lose them, so here they go to the log (for the
                // rebuild checks below) as if a later snapshot had written them.
                std::vector<LedgerOp> group = t.pending_ops();
                failed(t);
                std::map<JobId, bool> undoing;
                for (size_t i = 0; i < group.size(); ++i) {
                    bool& u = undoing[group[i].id];
                    u = u || waits[i];
                    if (!u) {
                        base.apply(group[i]);
                        log.push_back(group[i]);
                    }
                }
                // What may be pending again: the lost death by expiry of an ordered route's
                // head, written again so that the next job of its sequence can go.
                for (const LedgerOp& op : t.pending_ops()) {
                    EXPECT_EQ(op.kind, LedgerOp::Kind::dead);
                    EXPECT_EQ(must_find(t, n_of(op.id)).route, 3);
                }
                EXPECT_EQ(t.ops_unresolved(), t.pending_ops().size());
                for (const Added& a : added) {
                    auto want = base.find(id_of(a.n));
                    auto got = t.find(id_of(a.n));
                    ASSERT_EQ(got.has_value(), want.has_value()) << "job " << a.n;
                    if (!want) {
                        continue;
                    }
                    EXPECT_EQ(state_name(got->state), state_name(want->state))
                        << "rolled back: seed " << seed << " step " << step << " job " << a.n;
                    EXPECT_EQ(got->attempts, want->attempts) << "rolled back: job " << a.n;
                    EXPECT_EQ(got->due_ns, want->due_ns) << "rolled back: job " << a.n;
                }
                for (size_t i = 0; i < limits.size(); ++i) {
                    const auto route = static_cast<uint16_t>(i);
                    RouteDepth dw = base.depth(route);
                    RouteDepth dg = t.depth(route);
                    EXPECT_EQ(dg.queued, dw.queued) << "rolled back: route " << route;
                    EXPECT_EQ(dg.leased, dw.leased) << "rolled back: route " << route;
                    EXPECT_EQ(dg.done, dw.done) << "rolled back: route " << route;
                    EXPECT_EQ(dg.dead, dw.dead) << "rolled back: route " << route;
                }
                waits.assign(t.pending_ops().size(), false);
                base = t;
                ++seen_failures;
                break;
            }
            }
            waits.resize(t.pending_ops().size(), false);
            for (size_t i = pending_before; i < waits.size(); ++i) {
                // A lease's timers run before it: only an ack, nack or replay call waits.
                waits[i] = settling;
            }
            if (step == 2000) {
                // Retention deletes a segment: its ops stay in the ledger and must be ignored.
                dropped_segment = added[added.size() / 3].where.segment;
                t.drop_segment(0, dropped_segment);
                base.drop_segment(0, dropped_segment);
            }
        }
        log.insert(log.end(), t.pending_ops().begin(), t.pending_ops().end());
        durable(t);
        for (const LedgerOp& op : log) {
            ++seen[op.kind];
        }

        // Through the file format too.
        std::vector<LedgerOp> decoded;
        for (const LedgerOp& op : log) {
            uint8_t buf[ledger_record_size];
            encode_ledger_op(op, buf);
            auto back = decode_ledger_op(buf);
            ASSERT_TRUE(back.has_value());
            decoded.push_back(*back);
        }
        ASSERT_EQ(decoded, log);

        auto rebuild = [&](const std::vector<LedgerOp>& ops) {
            JobTable r(limits);
            for (const Added& a : added) {
                if (a.where.shard == 0 && a.where.segment == dropped_segment) {
                    continue; // its file is gone: recovery finds nothing to add
                }
                EXPECT_TRUE(r.add(id_of(a.n), a.route, a.where, a.key));
            }
            for (const LedgerOp& op : ops) {
                r.apply(op);
            }
            EXPECT_TRUE(r.pending_ops().empty());
            return r;
        };
        auto compare = [&](JobTable& r, const char* how) {
            ASSERT_EQ(r.size(), t.size()) << how << " seed " << seed;
            for (const Added& a : added) {
                auto want = t.find(id_of(a.n));
                auto got = r.find(id_of(a.n));
                ASSERT_EQ(got.has_value(), want.has_value()) << how << " job " << a.n;
                if (!want) {
                    continue;
                }
                EXPECT_EQ(state_name(got->state), state_name(want->state))
                    << how << " seed " << seed << " job " << a.n;
                EXPECT_EQ(got->attempts, want->attempts)
                    << how << " seed " << seed << " job " << a.n;
                EXPECT_EQ(got->due_ns, want->due_ns) << how << " seed " << seed << " job " << a.n;
                EXPECT_EQ(got->route, want->route);
                EXPECT_EQ(got->where.offset, want->where.offset);
            }
            for (uint16_t route = 0; route < static_cast<uint16_t>(limits.size()); ++route) {
                RouteDepth dw = t.depth(route);
                RouteDepth dg = r.depth(route);
                EXPECT_EQ(dg.queued, dw.queued) << how << " route " << route;
                EXPECT_EQ(dg.leased, dw.leased) << how << " route " << route;
                EXPECT_EQ(dg.done, dw.done) << how << " route " << route;
                EXPECT_EQ(dg.dead, dw.dead) << how << " route " << route;
                std::vector<JobInfo> dead_w;
                std::vector<JobInfo> dead_g;
                t.dead_letters(route, JobId{}, 1'000'000, dead_w);
                r.dead_letters(route, JobId{}, 1'000'000, dead_g);
                EXPECT_EQ(dead_g.size(), dead_w.size()) << how << " route " << route;
            }
            for (uint64_t seg = 0; seg < next_n / 50 + 1; ++seg) {
                for (uint32_t shard = 0; shard < 2; ++shard) {
                    EXPECT_EQ(r.unsettled_in_segment(shard, seg),
                              t.unsettled_in_segment(shard, seg))
                        << how << " segment " << shard << "/" << seg;
                }
            }
        };
        JobTable from_log = rebuild(log);
        compare(from_log, "log");
        std::vector<LedgerOp> snapshot = t.snapshot_ops();
        EXPECT_LT(snapshot.size(), log.size());
        JobTable from_snapshot = rebuild(snapshot);
        compare(from_snapshot, "snapshot");
        EXPECT_EQ(from_snapshot.snapshot_ops().size(), snapshot.size());

        // Both rebuilt tables then behave the same: far in the future everything unsettled is
        // ready (or dead), and the same set of jobs comes out.
        int64_t later = now + 3600 * ns_per_s;
        for (uint16_t route = 0; route < static_cast<uint16_t>(limits.size()); ++route) {
            if (limits[route].ordered) {
                continue; // one job a sequence: which one may differ (JobTableOrdered tests)
            }
            auto ids = [&](JobTable& x) {
                Ns ns = lease_ns(x, route, 1'000'000, later);
                std::sort(ns.begin(), ns.end());
                return ns;
            };
            Ns want = ids(t);
            EXPECT_EQ(ids(from_log), want) << "route " << route << " seed " << seed;
            EXPECT_EQ(ids(from_snapshot), want) << "route " << route << " seed " << seed;
        }
    }
    // The walk reached every kind of op.
    for (auto kind : {LedgerOp::Kind::lease, LedgerOp::Kind::ack, LedgerOp::Kind::nack,
                      LedgerOp::Kind::dead, LedgerOp::Kind::replay, LedgerOp::Kind::expire}) {
        EXPECT_GT(seen[kind], 10u) << kind_name(kind);
    }
    EXPECT_GT(seen_failures, 100u);
}

TEST(JobTableLedger, SnapshotHoldsOneOpPerChangedJob) {
    JobTable t({1, 5});
    add_jobs(t, {1, 2, 3, 4, 5, 6}, 0);
    add_jobs(t, {7, 8}, 1);
    ASSERT_EQ(lease_ns(t, 0, 4, t0), (Ns{1, 2, 3, 4}));
    ASSERT_EQ(t.ack(id_of(1), t0), JobTable::Settle::ok);
    ASSERT_EQ(t.nack(id_of(2), std::nullopt, t0), JobTable::Settle::ok); // dead (limit 1)
    ASSERT_EQ(lease_ns(t, 1, 2, t0), (Ns{7, 8}));
    ASSERT_EQ(t.nack(id_of(7), std::nullopt, t0), JobTable::Settle::ok);
    ASSERT_EQ(lease_ns(t, 1, 0, t0 + visibility), Ns{}); // 8 expires, 7 becomes ready
    ASSERT_EQ(t.ack(id_of(4), t0), JobTable::Settle::ok);
    ASSERT_EQ(t.nack(id_of(3), std::nullopt, t0), JobTable::Settle::ok); // dead
    ASSERT_EQ(t.replay(id_of(3), t0), JobTable::Settle::ok);             // queued, attempts 0

    std::vector<LedgerOp> ops = t.snapshot_ops();
    std::string got;
    for (const LedgerOp& op : ops) {
        got += std::string(kind_name(op.kind)) + ":" + std::to_string(n_of(op.id)) + "/" +
               std::to_string(op.attempts) + " ";
    }
    // Untouched queued jobs (3 after its replay, 5, 6) need no op.
    EXPECT_EQ(got, "ack:1/1 dead:2/1 ack:4/1 nack:7/1 expire:8/1 ");
    EXPECT_EQ(ops[3].due_ns, t0 + ns_per_s);
    EXPECT_EQ(ops[4].due_ns, 0);
}

// ---- push delivery: bury, optional lanes, leases void at start-up ----

TEST(JobTable, BuryKillsALeasedJobAtOnceAndWaitsForTheLedger) {
    JobTable t({10});
    add_jobs(t, {1, 2});
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    EXPECT_EQ(t.bury(id_of(2), t0), JobTable::Settle::not_leased);
    EXPECT_EQ(t.bury(id_of(99), t0), JobTable::Settle::unknown);
    durable(t);
    EXPECT_EQ(t.bury(id_of(1), t0 + ms), JobTable::Settle::ok);
    EXPECT_EQ(state_of(t, 1), "dead attempts 1 due 0ms");
    EXPECT_EQ(kinds(t.pending_ops()), "dead:1");
    EXPECT_EQ(dead_ns(t, 0), Ns{1});
    EXPECT_EQ(t.bury(id_of(1), t0 + ms), JobTable::Settle::not_leased);
    // Its answer waits for the ledger: a failed group undoes it.
    EXPECT_EQ(failed(t), 1u);
    EXPECT_EQ(state_of(t, 1), "leased attempts 1 due 30000ms");
    EXPECT_EQ(dead_ns(t, 0), Ns{});
    EXPECT_EQ(t.bury(id_of(1), t0 + 2 * ms), JobTable::Settle::ok);
    durable(t);
    EXPECT_EQ(t.replay(id_of(1), t0), JobTable::Settle::ok);
    EXPECT_EQ(lease_ns(t, 0, 5, t0 + 3 * ms), (Ns{2, 1}));
}

TEST(JobTable, AnOptionalLaneHoldsSegmentsOnlyForJobsItLeased) {
    JobTable t(std::vector<RouteOptions>{{5, true, false}, {5, false, false}});
    add_jobs(t, {1}, 0);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 0u) << "never leased: nothing to wait for";
    add_jobs(t, {4}, 1);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 1u) << "a job of a route without sinks counts";
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    durable(t);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 2u) << "leased: its consumer may still settle it";
    ASSERT_EQ(t.nack(id_of(1), 10 * ms, t0), JobTable::Settle::ok);
    durable(t);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 2u) << "queued again after a lease: still counts";
    ASSERT_EQ(lease_ns(t, 0, 1, t0 + 10 * ms), Ns{1});
    durable(t);
    ASSERT_EQ(t.ack(id_of(1), t0 + ms), JobTable::Settle::ok);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 2u) << "the ack is not durable yet";
    durable(t);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 1u);
    // An ack without a lease settles a job too (a late ack): nothing to hold either way.
    add_jobs(t, {2, 3}, 0);
    ASSERT_EQ(t.ack(id_of(2), t0), JobTable::Settle::ok);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 2u) << "the ack is not durable yet";
    durable(t);
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 1u);
    EXPECT_EQ(t.depth(0).queued, 1u);
}

TEST(JobTable, ExpireLeasesVoidsEveryLeaseWithTheNextAttemptToCome) {
    JobTable t({2, 0});
    add_jobs(t, {1, 2, 3}, 0);
    add_jobs(t, {4}, 1);
    ASSERT_EQ(lease_ns(t, 0, 3, t0), (Ns{1, 2, 3}));
    ASSERT_EQ(t.nack(id_of(2), 0, t0), JobTable::Settle::ok);
    ASSERT_EQ(lease_ns(t, 0, 1, t0 + ms), Ns{2}); // attempt 2 of 2
    ASSERT_EQ(lease_ns(t, 1, 1, t0), Ns{4});
    durable(t);
    add_jobs(t, {5}, 0); // queued before the restart's expiry
    EXPECT_EQ(t.expire_leases(t0 + 5 * ms), 4u);
    EXPECT_EQ(kinds(t.pending_ops()), "expire:1 expire:3 dead:2 expire:4");
    EXPECT_EQ(state_of(t, 2), "dead attempts 2 due 0ms");
    EXPECT_EQ(t.depth(0).leased, 0u);
    std::vector<JobInfo> out;
    ASSERT_EQ(t.lease(0, 5, visibility, t0 + 5 * ms, out), 3u) << "ready at once";
    EXPECT_EQ(n_of(out[0].id), 1u) << "first: they were handed out before anything queued";
    EXPECT_EQ(out[0].attempts, 2);
    EXPECT_EQ(n_of(out[1].id), 3u);
    EXPECT_EQ(out[1].attempts, 2);
    EXPECT_EQ(n_of(out[2].id), 5u);
    EXPECT_EQ(lease_ns(t, 1, 5, t0 + 5 * ms), Ns{4});
    EXPECT_EQ(t.expire_leases(t0), 4u);
    EXPECT_EQ(t.expire_leases(t0), 0u);
}

// ---- ordered routes: one job at a time per key, in add() order ----

namespace {

// Route 0 ordered (max_attempts 2), route 1 not.
JobTable ordered_table() {
    return JobTable(std::vector<RouteOptions>{{2, false, true}, {5, false, false}});
}

void add_keyed(JobTable& t, std::initializer_list<uint32_t> ns, uint64_t key) {
    for (uint32_t n : ns) {
        ASSERT_TRUE(t.add(id_of(n), 0, at(0, 1, n), key));
    }
}

} // namespace

TEST(JobTableOrdered, OneJobAKeyInAddOrderOnceTheSettlementIsDurable) {
    JobTable t = ordered_table();
    add_keyed(t, {1, 2}, 7);
    add_keyed(t, {3}, 8);
    add_keyed(t, {4}, 7);
    add_keyed(t, {5}, 8);
    EXPECT_EQ(t.depth(0).queued, 5u);
    EXPECT_EQ(lease_ns(t, 0, 10, t0), (Ns{1, 3}));
    EXPECT_EQ(lease_ns(t, 0, 10, t0), Ns{});
    ASSERT_EQ(t.ack(id_of(1), t0), JobTable::Settle::ok);
    EXPECT_EQ(lease_ns(t, 0, 10, t0), Ns{}) << "the ack could still be undone";
    t.ops_taken();
    EXPECT_EQ(lease_ns(t, 0, 10, t0), Ns{}) << "taken is not written";
    t.ops_durable(t.ops_unresolved());
    EXPECT_EQ(lease_ns(t, 0, 10, t0), Ns{2});
    ASSERT_EQ(t.ack(id_of(3), t0), JobTable::Settle::ok);
    ASSERT_EQ(t.ack(id_of(2), t0), JobTable::Settle::ok);
    durable(t);
    EXPECT_EQ(lease_ns(t, 0, 10, t0), (Ns{5, 4}));
}

TEST(JobTableOrdered, AFailedGroupDoesNotReleaseTheNext) {
    JobTable t = ordered_table();
    add_keyed(t, {1, 2}, 0);
    ASSERT_EQ(lease_ns(t, 0, 10, t0), Ns{1});
    ASSERT_EQ(t.ack(id_of(1), t0), JobTable::Settle::ok);
    EXPECT_EQ(failed(t), 1u);
    EXPECT_EQ(state_of(t, 1), "leased attempts 1 due 30000ms");
    EXPECT_EQ(lease_ns(t, 0, 10, t0), Ns{});
    ASSERT_EQ(t.ack(id_of(1), t0), JobTable::Settle::ok);
    durable(t);
    EXPECT_EQ(lease_ns(t, 0, 10, t0), Ns{2});
}

TEST(JobTableOrdered, ADeadHeadReleasesTheNextByNackBuryOrExpiry) {
    JobTable t = ordered_table();
    add_keyed(t, {1, 2, 3, 4}, 0);
    ASSERT_EQ(lease_ns(t, 0, 10, t0), Ns{1});
    ASSERT_EQ(t.nack(id_of(1), 0, t0), JobTable::Settle::ok);
    durable(t);
    EXPECT_EQ(lease_ns(t, 0, 10, t0), Ns{1}) << "a retry keeps its place";
    ASSERT_EQ(t.nack(id_of(1), 0, t0), JobTable::Settle::ok); // attempt 2 of 2: dead
    durable(t);
    EXPECT_EQ(lease_ns(t, 0, 10, t0), Ns{2});
    ASSERT_EQ(t.bury(id_of(2), t0), JobTable::Settle::ok);
    durable(t);
    EXPECT_EQ(lease_ns(t, 0, 10, t0), Ns{3});
    // 3's leases run out twice: it dies by expiry, an op no answer waits for.
    EXPECT_EQ(lease_ns(t, 0, 10, t0 + visibility), Ns{3});
    EXPECT_EQ(lease_ns(t, 0, 10, t0 + 2 * visibility), Ns{});
    EXPECT_EQ(state_of(t, 3), "dead attempts 2 due 0ms");
    // The group with its death fails: the death is kept (as in the pull API) but its op was
    // lost, so 4 waits until it is written again.
    EXPECT_EQ(failed(t), 0u);
    EXPECT_EQ(lease_ns(t, 0, 10, t0 + 2 * visibility), Ns{});
    EXPECT_EQ(kinds(t.pending_ops()), "dead:3");
    durable(t);
    EXPECT_EQ(lease_ns(t, 0, 10, t0 + 2 * visibility), Ns{4});
}

TEST(JobTableOrdered, AReplayedJobIsReadyAtOnce) {
    JobTable t = ordered_table();
    add_keyed(t, {1, 2, 3}, 0);
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    ASSERT_EQ(t.bury(id_of(1), t0), JobTable::Settle::ok);
    durable(t);
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{2});
    ASSERT_EQ(t.replay(id_of(1), t0), JobTable::Settle::ok);
    EXPECT_EQ(lease_ns(t, 0, 5, t0), Ns{1}) << "the operator asked for it";
    ASSERT_EQ(t.ack(id_of(1), t0), JobTable::Settle::ok);
    durable(t);
    EXPECT_EQ(lease_ns(t, 0, 5, t0), Ns{}) << "2 is still the head";
}

TEST(JobTableOrdered, ALateAckOfAHeldJobLetsItBeSkipped) {
    JobTable t = ordered_table();
    add_keyed(t, {1, 2, 3}, 0);
    ASSERT_EQ(lease_ns(t, 0, 1, t0), Ns{1});
    ASSERT_EQ(t.ack(id_of(2), t0), JobTable::Settle::ok); // held, acked by id
    durable(t);
    EXPECT_EQ(lease_ns(t, 0, 5, t0), Ns{});
    ASSERT_EQ(t.ack(id_of(1), t0), JobTable::Settle::ok);
    durable(t);
    EXPECT_EQ(lease_ns(t, 0, 5, t0), Ns{3});
}

TEST(JobTableOrdered, ARestartRebuildsTheSequencesFromTheLedger) {
    JobTable t = ordered_table();
    add_keyed(t, {1, 2, 3, 4}, 0);
    add_keyed(t, {5, 6}, 1);
    add_keyed(t, {7, 8}, 2);
    add_keyed(t, {9, 10}, 3);
    std::vector<LedgerOp> log;
    auto write = [&] {
        log.insert(log.end(), t.pending_ops().begin(), t.pending_ops().end());
        durable(t);
    };
    ASSERT_EQ(lease_ns(t, 0, 10, t0), (Ns{1, 5, 7, 9}));
    ASSERT_EQ(t.ack(id_of(1), t0), JobTable::Settle::ok);
    ASSERT_EQ(t.bury(id_of(7), t0), JobTable::Settle::ok);
    ASSERT_EQ(t.ack(id_of(9), t0), JobTable::Settle::ok);
    write();
    ASSERT_EQ(lease_ns(t, 0, 10, t0), (Ns{2, 8, 10}));
    ASSERT_EQ(t.ack(id_of(2), t0), JobTable::Settle::ok);
    ASSERT_EQ(t.replay(id_of(7), t0), JobTable::Settle::ok);
    write();
    // Key 0: 1 and 2 done, 3 was released (ready) but not leased; key 1: 5 leased, 6 held;
    // key 2: 7 replayed (ready, out of order), 8 leased; key 3: 9 done, 10 leased.
    Ns ready = lease_ns(t, 0, 10, t0);
    std::sort(ready.begin(), ready.end());
    ASSERT_EQ(ready, (Ns{3, 7}));
    ASSERT_EQ(t.ack(id_of(10), t0), JobTable::Settle::ok); // in a group lost in a crash
    auto restart = [&](const std::vector<LedgerOp>& ops, bool expire) {
        JobTable r = ordered_table();
        add_keyed(r, {1, 2, 3, 4}, 0);
        add_keyed(r, {5, 6}, 1);
        add_keyed(r, {7, 8}, 2);
        add_keyed(r, {9, 10}, 3);
        for (const LedgerOp& op : ops) {
            r.apply(op);
        }
        if (expire) {
            EXPECT_EQ(r.expire_leases(t0 + ms), 5u); // 3, 5, 7, 8, 10
        }
        return r;
    };
    log.insert(log.end(), t.pending_ops().begin(), t.pending_ops().end() - 1); // not 10's ack
    for (const auto* how : {"log", "snapshot"}) {
        JobTable r =
            restart(std::string(how) == "log" ? log : restart(log, false).snapshot_ops(), true);
        // The next attempts of what was leased, then nothing else: 4 waits for 3, 6 for 5.
        // 7 was leased after its replay: expired, ready.
        Ns got = lease_ns(r, 0, 10, t0 + ms);
        std::sort(got.begin(), got.end());
        EXPECT_EQ(got, (Ns{3, 5, 7, 8, 10})) << how;
        EXPECT_EQ(must_find(r, 10).attempts, 2) << how;
        ASSERT_EQ(r.ack(id_of(3), t0), JobTable::Settle::ok);
        ASSERT_EQ(r.ack(id_of(5), t0), JobTable::Settle::ok);
        durable(r);
        got = lease_ns(r, 0, 10, t0 + ms);
        std::sort(got.begin(), got.end());
        EXPECT_EQ(got, (Ns{4, 6})) << how;
    }
}

TEST(JobTableOrdered, ADroppedHeadHandsOverToTheNext) {
    // An optional pull lane of an ordered route: its head was never leased, and retention
    // deletes its segment once the sinks are done with it.
    JobTable t(std::vector<RouteOptions>{{2, true, true}});
    ASSERT_TRUE(t.add(id_of(1), 0, at(0, 1), 0));
    ASSERT_TRUE(t.add(id_of(2), 0, at(0, 2), 0));
    ASSERT_TRUE(t.add(id_of(3), 0, at(0, 3), 0));
    EXPECT_EQ(t.unsettled_in_segment(0, 1), 0u);
    t.drop_segment(0, 1);
    EXPECT_EQ(lease_ns(t, 0, 5, t0), Ns{2});
    t.drop_segment(0, 3); // a held job goes: nothing changes for the head
    ASSERT_EQ(t.ack(id_of(2), t0), JobTable::Settle::ok);
    durable(t);
    EXPECT_EQ(lease_ns(t, 0, 5, t0), Ns{});
    ASSERT_TRUE(t.add(id_of(4), 0, at(0, 4), 0));
    EXPECT_EQ(lease_ns(t, 0, 5, t0), Ns{4}) << "a new sequence starts with its first job";
}

TEST(JobTableOrdered, NonOrderedRoutesPayNothing) {
    // The per-job figure of MemoryPerJobStaysSmall, with an ordered route in the same table.
    JobTable t(std::vector<RouteOptions>{{5, false, false}, {5, false, true}});
    constexpr uint32_t jobs = 100'000;
    for (uint32_t n = 0; n < jobs; ++n) {
        ASSERT_TRUE(t.add(id_of(n), 0, at(0, n / 10'000, n), n));
    }
    double per_job = static_cast<double>(t.memory_bytes()) / static_cast<double>(t.size());
    EXPECT_GT(per_job, 83.0);
    EXPECT_LT(per_job, 120.0);
}

// /metrics' portcullis_jobs_oldest_age_seconds: the oldest job still waiting, ready or waiting
// for its retry delay; leased, done and dead jobs wait for no one, nor does an optional lane.
TEST(JobTable, OldestWaitingIsTheOldestReadyOrDelayedJob) {
    // Job n received at t0 + n * 100 ms: the time is the id's.
    auto id_at = [](uint32_t n) {
        JobId id = id_of(n);
        const auto unix_ms = static_cast<uint64_t>(t0 / ms + n * 100);
        for (int i = 0; i < 6; ++i) {
            id.bytes[5 - i] = static_cast<uint8_t>(unix_ms >> (8 * i));
        }
        return id;
    };
    JobTable t({RouteOptions{}, RouteOptions{0, true, false}});
    EXPECT_EQ(t.oldest_waiting_ns(0), 0);
    ASSERT_TRUE(t.add(id_at(1), 0, at(0, 1, 1)));
    ASSERT_TRUE(t.add(id_at(2), 0, at(0, 1, 2)));
    ASSERT_TRUE(t.add(id_at(3), 0, at(0, 1, 3)));
    EXPECT_EQ(t.oldest_waiting_ns(0), t0 + 100 * ms);
    EXPECT_EQ(lease_ns(t, 0, 1, t0 + 1000), std::vector<uint32_t>{1});
    EXPECT_EQ(t.oldest_waiting_ns(0), t0 + 200 * ms); // job 1 is leased: its consumer has it
    // Job 1 back for a retry in a minute: waiting again, and the oldest.
    EXPECT_EQ(t.nack(id_at(1), 60 * ns_per_s, t0 + 2000), JobTable::Settle::ok);
    EXPECT_EQ(t.oldest_waiting_ns(0), t0 + 100 * ms);
    EXPECT_EQ(lease_ns(t, 0, 2, t0 + 3000, 3600 * ns_per_s), (std::vector<uint32_t>{2, 3}));
    EXPECT_EQ(t.oldest_waiting_ns(0), t0 + 100 * ms); // only the delayed job waits
    EXPECT_EQ(lease_ns(t, 0, 1, t0 + 61 * ns_per_s), std::vector<uint32_t>{1});
    EXPECT_EQ(t.oldest_waiting_ns(0), 0);
    // An optional lane (the pull API of a route with sinks) holds jobs that wait for no one.
    ASSERT_TRUE(t.add(id_at(4), 1, at(0, 1, 4)));
    EXPECT_EQ(t.oldest_waiting_ns(1), 0);
    EXPECT_EQ(t.oldest_waiting_ns(7), 0); // an unknown route
}

// GET /events' job.dead for a job whose last lease ran out: lease() finds it, and hands it
// over once.
TEST(JobTable, DeathsByLeaseExpiryAreHandedOverOnce) {
    JobTable t({RouteOptions{1, false, false}});
    add_jobs(t, {1, 2});
    EXPECT_EQ(lease_ns(t, 0, 1, t0, 10 * ms), std::vector<uint32_t>{1});
    std::vector<JobInfo> dead;
    t.take_expired_deaths(dead);
    EXPECT_TRUE(dead.empty());
    EXPECT_EQ(lease_ns(t, 0, 1, t0 + 20 * ms), std::vector<uint32_t>{2});
    t.take_expired_deaths(dead);
    ASSERT_EQ(dead.size(), 1U);
    EXPECT_EQ(n_of(dead[0].id), 1U);
    EXPECT_EQ(dead[0].state, JobState::dead);
    EXPECT_EQ(dead[0].attempts, 1);
    dead.clear();
    t.take_expired_deaths(dead);
    EXPECT_TRUE(dead.empty());
    // A nack that spends the last attempt is the caller's own death, not one by expiry.
    EXPECT_EQ(t.nack(id_of(2), std::nullopt, t0 + 30 * ms), JobTable::Settle::ok);
    EXPECT_EQ(t.find(id_of(2))->state, JobState::dead);
    t.take_expired_deaths(dead);
    EXPECT_TRUE(dead.empty());
}
