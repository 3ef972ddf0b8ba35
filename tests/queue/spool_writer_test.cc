// Group commit through a real ring into a real file: every waiter learns the outcome, the
// records read back byte for byte, and segments rotate at segment_size.
#include "portcullis/queue/spool_writer.hh"

#include "portcullis/queue/job_id.hh"
#include "portcullis/queue/record.hh"
#include "portcullis/queue/segment.hh"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

using namespace portcullis;

namespace {

class SpoolWriterTest : public ::testing::Test {
protected:
    void SetUp() override {
        features = io::probe_features();
        if (!features.available || !features.missing.empty()) {
            GTEST_SKIP() << "io_uring unusable here: " << features.unavailable << features.missing;
        }
        ASSERT_EQ(ring.init(64, features.setup_flags()), "");
        char tmpl[] = "/tmp/spool_writer_test.XXXXXX";
        dir = mkdtemp(tmpl);
    }
    void TearDown() override {
        if (!dir.empty()) {
            std::filesystem::remove_all(dir);
        }
    }

    std::vector<uint8_t> make_record(const std::string& body, uint32_t n) {
        const http::Header headers[] = {{"X-Test", "yes"}};
        queue::JobMeta meta{
            ids.next(1'700'000'000'000'000'000 + n), "github", 1'700'000'000'000'000'000, {}};
        std::vector<uint8_t> rec(queue::job_record_head_size(meta.route, headers) + body.size());
        size_t head = queue::encode_job_head(meta, headers, rec);
        std::memcpy(rec.data() + head, body.data(), body.size());
        queue::seal_record(rec);
        return rec;
    }

    // Runs the ring until `want` waiters were told, or fails.
    void settle(queue::SpoolWriter& w, std::map<uint64_t, bool>& outcome, size_t want) {
        auto done = [&](uint64_t cookie, bool durable) { outcome[cookie] = durable; };
        for (int i = 0; i < 200 && outcome.size() < want; ++i) {
            w.flush(ring, 0, done);
            ASSERT_EQ(ring.submit_and_wait(50'000'000), 0);
            ring.for_each_cqe([&](const io_uring_cqe& cqe) { w.on_cqe(cqe, 0, done); });
        }
        ASSERT_EQ(outcome.size(), want);
        EXPECT_TRUE(w.idle());
    }

    std::vector<std::string> bodies_on_disk() {
        std::vector<std::string> bodies;
        for (const auto& seg : queue::list_segments(dir).segments) {
            std::string error;
            queue::scan_segment_file(
                seg.path, [&](uint64_t, const queue::JobRecord& r) { bodies.emplace_back(r.body); },
                error);
            EXPECT_EQ(error, "");
        }
        return bodies;
    }

    io::Features features;
    io::Ring ring;
    std::string dir;
    queue::JobIdGenerator ids{0};
};

} // namespace

TEST_F(SpoolWriterTest, OneGroupMakesEveryRecordDurable) {
    config::SpoolConfig cfg;
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    std::vector<std::vector<uint8_t>> records;
    for (uint32_t i = 0; i < 5; ++i) {
        records.push_back(make_record("body " + std::to_string(i), i));
    }
    for (uint32_t i = 0; i < records.size(); ++i) {
        ASSERT_TRUE(w.append(records[i], 100 + i, config::Durability::fsync));
    }
    std::map<uint64_t, bool> outcome;
    settle(w, outcome, records.size());
    for (uint32_t i = 0; i < records.size(); ++i) {
        EXPECT_TRUE(outcome[100 + i]) << "record " << i;
    }
    EXPECT_EQ(w.stats().groups, 1u) << "appends of one iteration form one group commit";
    EXPECT_EQ(w.stats().records, 5u);
    std::vector<std::string> expect = {"body 0", "body 1", "body 2", "body 3", "body 4"};
    EXPECT_EQ(bodies_on_disk(), expect);
}

TEST_F(SpoolWriterTest, RecordsArrivingDuringAGroupFormTheNext) {
    config::SpoolConfig cfg;
    cfg.durability = config::Durability::none;
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    auto first = make_record("first", 1);
    auto second = make_record("second", 2);
    std::map<uint64_t, bool> outcome;
    auto done = [&](uint64_t cookie, bool durable) { outcome[cookie] = durable; };
    ASSERT_TRUE(w.append(first, 1, config::Durability::none));
    w.flush(ring, 0, done);
    ASSERT_TRUE(w.append(second, 2, config::Durability::none));
    w.flush(ring, 0, done); // the first group is in flight: nothing new is submitted
    settle(w, outcome, 2);
    EXPECT_EQ(w.stats().groups, 2u);
    EXPECT_EQ(bodies_on_disk(), (std::vector<std::string>{"first", "second"}));
}

TEST_F(SpoolWriterTest, RotatesSegmentsAtSegmentSize) {
    config::SpoolConfig cfg;
    cfg.segment_size = 300; // smaller than two records: every group after the first rotates
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 3, cfg), "");
    std::vector<std::vector<uint8_t>> records;
    std::map<uint64_t, bool> outcome;
    for (uint32_t i = 0; i < 3; ++i) {
        records.push_back(make_record(std::string(200, char('a' + i)), i));
        ASSERT_TRUE(w.append(records.back(), i, config::Durability::fsync));
        settle(w, outcome, i + 1);
    }
    auto listed = queue::list_segments(dir);
    ASSERT_EQ(listed.error, "");
    EXPECT_EQ(listed.segments.size(), 3u);
    for (const auto& s : listed.segments) {
        EXPECT_EQ(s.shard, 3u);
    }
    EXPECT_EQ(bodies_on_disk().size(), 3u);
}

TEST_F(SpoolWriterTest, ReopeningStartsANewSegmentAndKeepsTheOld) {
    config::SpoolConfig cfg;
    auto rec = make_record("kept", 1);
    {
        queue::SpoolWriter w;
        ASSERT_EQ(w.open(dir, 0, cfg), "");
        ASSERT_TRUE(w.append(rec, 1, config::Durability::fsync));
        std::map<uint64_t, bool> outcome;
        settle(w, outcome, 1);
    }
    queue::SpoolWriter again;
    ASSERT_EQ(again.open(dir, 0, cfg), "");
    EXPECT_EQ(again.stats().recovered_records, 1u);
    EXPECT_EQ(queue::list_segments(dir).segments.size(), 2u);
    EXPECT_EQ(bodies_on_disk(), std::vector<std::string>{"kept"});
}

TEST_F(SpoolWriterTest, BatchSyncIsDueWithinItsWindowAndNoneNeverSyncs) {
    constexpr int64_t ms = 1'000'000;
    constexpr int64_t tick = 50 * ms;
    config::SpoolConfig cfg;
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    EXPECT_EQ(w.wait_limit_ns(0, tick), tick) << "nothing written: the loop may sleep its tick";

    // none: written, answered, and left to the kernel; no periodic fdatasync, ever.
    auto quiet = make_record("none", 1);
    std::map<uint64_t, bool> outcome;
    ASSERT_TRUE(w.append(quiet, 1, config::Durability::none));
    settle(w, outcome, 1);
    EXPECT_EQ(w.wait_limit_ns(20 * ms, tick), tick);
    auto done = [&](uint64_t cookie, bool durable) { outcome[cookie] = durable; };
    w.flush(ring, 20 * ms, done);
    EXPECT_TRUE(w.idle()) << "durability none submitted an fdatasync";

    // batch: the loop's wait ends when the sync is due (10 ms after the last one, here at 0),
    // however long its tick, so that a shard that goes quiet still syncs within the window.
    auto batched = make_record("batch", 2);
    ASSERT_TRUE(w.append(batched, 2, config::Durability::batch));
    settle(w, outcome, 2);
    EXPECT_EQ(w.wait_limit_ns(4 * ms, tick), 6 * ms);
    EXPECT_GT(w.wait_limit_ns(20 * ms, tick), 0) << "a zero timeout would not wait at all";
    EXPECT_LT(w.wait_limit_ns(20 * ms, tick), ms);
    w.flush(ring, 20 * ms, done);
    EXPECT_FALSE(w.idle()) << "the periodic fdatasync was not submitted once due";
    EXPECT_EQ(w.wait_limit_ns(20 * ms, tick), tick) << "its completion wakes the loop";
    ASSERT_EQ(ring.submit_and_wait(tick), 0);
    ring.for_each_cqe([&](const io_uring_cqe& cqe) { w.on_cqe(cqe, 21 * ms, done); });
    EXPECT_TRUE(w.idle());
    EXPECT_EQ(w.wait_limit_ns(25 * ms, tick), tick) << "synced: nothing is due";
}
