// Group commit through a real ring into a real file: every waiter learns the outcome, the
// records read back byte for byte, and segments rotate at segment_size. Several groups are in
// flight at once; the tests that show it hold completions back (gathered from the ring, handed
// to on_cqe() later, some of them altered to inject a fault) to choose the order they arrive in.
#include "portcullis/queue/spool_writer.hh"

#include "portcullis/base/time.hh"
#include "portcullis/queue/job_id.hh"
#include "portcullis/queue/record.hh"
#include "portcullis/queue/segment.hh"

#include <gtest/gtest.h>

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
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

    // Runs the ring until `want` waiters were told and nothing is in flight (the next segment's
    // preparation included), or fails.
    void settle(queue::SpoolWriter& w, std::map<uint64_t, bool>& outcome, size_t want) {
        auto done = [&](uint64_t cookie, bool durable) { outcome[cookie] = durable; };
        for (int i = 0; i < 200 && (outcome.size() < want || !w.idle()); ++i) {
            w.flush(ring, 0, done);
            ASSERT_EQ(ring.submit_and_wait(50'000'000), 0);
            ring.for_each_cqe([&](const io_uring_cqe& cqe) { w.on_cqe(cqe, 0, done); });
        }
        ASSERT_EQ(outcome.size(), want);
        EXPECT_TRUE(w.idle());
    }

    // A completion gathered from the ring and not yet handed to the writer.
    struct HeldCqe {
        uint64_t user_data;
        int32_t res;
    };
    using Done = std::function<void(uint64_t, bool)>;

    static io_uring_cqe as_cqe(const HeldCqe& h) {
        io_uring_cqe c{};
        c.user_data = h.user_data;
        c.res = h.res;
        return c;
    }
    static bool is_write(const HeldCqe& h) { return h.user_data >> 56 == queue::spool_write_tag; }
    // The group a completion belongs to: the low bits, the same for its write and its sync.
    static uint64_t group_of(const HeldCqe& h) { return h.user_data & ((uint64_t{1} << 56) - 1); }

    // Submits what flush() queued and hands the writer the write completion of the group just
    // submitted, holding back every fdatasync completion in `syncs`: the group stays in flight.
    // Returns the group's id (group_of), or fails.
    uint64_t write_only(queue::SpoolWriter& w, std::vector<HeldCqe>& syncs, const Done& done) {
        for (int i = 0; i < 40; ++i) {
            EXPECT_EQ(ring.submit_and_wait(50'000'000), 0);
            bool written = false;
            uint64_t group = 0;
            ring.for_each_cqe([&](const io_uring_cqe& c) {
                HeldCqe h{c.user_data, c.res};
                if (is_write(h)) {
                    written = true;
                    group = group_of(h);
                    w.on_cqe(c, 0, done);
                } else {
                    syncs.push_back(h);
                }
            });
            if (written) {
                return group;
            }
        }
        ADD_FAILURE() << "no write was submitted";
        return ~uint64_t{0};
    }

    // Hands the writer the held sync completion of `group`, with its result replaced by `res`
    // unless res is 1.
    void deliver_sync(queue::SpoolWriter& w, std::vector<HeldCqe>& syncs, uint64_t group,
                      const Done& done, int32_t res = 1) {
        for (int i = 0; i < 40; ++i) {
            for (auto it = syncs.begin(); it != syncs.end(); ++it) {
                if (group_of(*it) == group) {
                    HeldCqe h = *it;
                    syncs.erase(it);
                    if (res != 1) {
                        h.res = res;
                    }
                    w.on_cqe(as_cqe(h), 0, done);
                    return;
                }
            }
            EXPECT_EQ(ring.submit_and_wait(50'000'000), 0);
            ring.for_each_cqe([&](const io_uring_cqe& c) {
                syncs.push_back(HeldCqe{c.user_data, c.res});
            });
        }
        ADD_FAILURE() << "no fdatasync completion for group " << group;
    }

    std::string newest_segment() {
        auto listed = queue::list_segments(dir);
        EXPECT_FALSE(listed.segments.empty());
        return listed.segments.empty() ? std::string() : listed.segments.back().path;
    }

    static uint64_t file_size(const std::string& path) {
        struct stat st {};
        EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
        return static_cast<uint64_t>(st.st_size);
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
    w.flush(ring, 0, done); // the first write has not completed: writes go one at a time
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

// Issue 19: rotation does not block the shard. Once the segment is half full, the next one is
// prepared through the ring (created, header written and synced) as next-segment, which is no
// segment to anyone reading the spool; the rotation renames that very file (same inode) to the
// next number, and the records land in it.
TEST_F(SpoolWriterTest, RotationRenamesTheSegmentPreparedAhead) {
    config::SpoolConfig cfg;
    cfg.segment_size = 4096;
    auto owned = std::make_unique<queue::SpoolWriter>();
    queue::SpoolWriter& w = *owned;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    const std::string next = dir + "/shard-0/" + std::string(queue::next_segment_file_name);
    std::vector<std::vector<uint8_t>> records;
    std::vector<std::string> bodies;
    std::map<uint64_t, bool> outcome;
    auto add = [&](char c) {
        bodies.emplace_back(900, c);
        records.push_back(make_record(bodies.back(), static_cast<uint32_t>(records.size())));
        ASSERT_TRUE(w.append(records.back(), records.size(), config::Durability::fsync));
        settle(w, outcome, records.size());
    };
    add('a');
    struct stat st {};
    EXPECT_NE(::stat(next.c_str(), &st), 0) << "prepared before the segment was half full";
    add('b');
    add('c'); // past half of 4096
    ASSERT_EQ(::stat(next.c_str(), &st), 0) << "no next segment prepared";
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), queue::segment_header_size);
    const ino_t prepared = st.st_ino;
    auto listed = queue::list_segments(dir);
    EXPECT_EQ(listed.segments.size(), 1u);
    EXPECT_TRUE(listed.unrecognised.empty()) << listed.unrecognised.front();

    add('d');
    add('e'); // does not fit: rotates
    listed = queue::list_segments(dir);
    ASSERT_EQ(listed.segments.size(), 2u);
    ASSERT_EQ(::stat(listed.segments[1].path.c_str(), &st), 0);
    EXPECT_EQ(st.st_ino, prepared) << "the segment was created in place, not renamed";
    EXPECT_NE(::stat(next.c_str(), &st), 0) << "next-segment still there after the rename";
    EXPECT_EQ(w.stats().segments_opened, 2u);
    for (auto& [cookie, durable] : outcome) {
        EXPECT_TRUE(durable) << cookie;
    }
    EXPECT_EQ(bodies_on_disk(), bodies);

    // A clean close removes a prepared next segment: it holds no record.
    add('f');
    add('g');
    ASSERT_EQ(::stat(next.c_str(), &st), 0);
    owned.reset();
    EXPECT_NE(::stat(next.c_str(), &st), 0) << "a closed writer left its next segment";
}

// durability batch answers after the write and syncs within 10 ms, through the periodic
// fdatasync of the segment being written. A segment left by a rotation would never be synced
// again (power_loss with 1 MiB segments lost jobs answered up to 1.3 s before a cut), so a
// rotation first syncs it, and goes on once that completed.
TEST_F(SpoolWriterTest, BatchDataIsSyncedBeforeItsSegmentIsLeft) {
    config::SpoolConfig cfg;
    cfg.segment_size = 300; // smaller than two records: the second rotates
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    auto first = make_record(std::string(200, 'a'), 1);
    std::map<uint64_t, bool> outcome;
    ASSERT_TRUE(w.append(first, 1, config::Durability::batch));
    settle(w, outcome, 1); // written and answered; its sync is not due yet (the clock stays at 0)
    ASSERT_TRUE(outcome[1]);

    auto second = make_record(std::string(200, 'b'), 2);
    ASSERT_TRUE(w.append(second, 2, config::Durability::batch));
    w.flush(ring, 0, [&](uint64_t cookie, bool durable) { outcome[cookie] = durable; });
    // What flush() queued (besides the next segment's preparation): the periodic fdatasync,
    // no rename, no write.
    io_uring* r = ring.raw();
    int syncs = 0, others = 0;
    for (unsigned i = *r->sq.khead; i != r->sq.sqe_tail; ++i) {
        const io_uring_sqe& sqe = r->sq.sqes[i & r->sq.ring_mask];
        if (sqe.user_data >> 56 == queue::spool_prepare_tag && sqe.opcode != IORING_OP_RENAMEAT) {
            continue;
        }
        (sqe.opcode == IORING_OP_FSYNC && sqe.user_data >> 56 == queue::spool_sync_tag ? syncs
                                                                                       : others)++;
    }
    EXPECT_EQ(syncs, 1) << "the rotation did not sync the segment it leaves";
    EXPECT_EQ(others, 0) << "the rotation did not wait for that sync";
    EXPECT_EQ(queue::list_segments(dir).segments.size(), 1u);
    settle(w, outcome, 2);
    EXPECT_TRUE(outcome[2]);
    EXPECT_EQ(queue::list_segments(dir).segments.size(), 2u);
    EXPECT_EQ(bodies_on_disk(),
              (std::vector<std::string>{std::string(200, 'a'), std::string(200, 'b')}));
}

// When the next segment cannot be prepared (here next-segment is a folder), the writer says so
// and rotates as before, creating the segment in place: nothing is refused.
TEST_F(SpoolWriterTest, APreparationThatFailsFallsBackToCreatingInPlace) {
    config::SpoolConfig cfg;
    cfg.segment_size = 2048;
    ASSERT_TRUE(std::filesystem::create_directories(dir + "/shard-0/" +
                                                    std::string(queue::next_segment_file_name)));
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    std::vector<std::vector<uint8_t>> records;
    std::vector<std::string> bodies;
    std::map<uint64_t, bool> outcome;
    for (uint32_t i = 0; i < 8; ++i) {
        bodies.emplace_back(700, static_cast<char>('a' + i));
        records.push_back(make_record(bodies.back(), i));
        ASSERT_TRUE(w.append(records.back(), i, config::Durability::fsync));
        settle(w, outcome, i + 1);
        ASSERT_TRUE(outcome[i]) << i;
    }
    EXPECT_GE(queue::list_segments(dir).segments.size(), 3u);
    EXPECT_EQ(bodies_on_disk(), bodies);
}

// A next segment a crash left behind (prepared, maybe half written) is not a segment: the
// writer removes it at start and recovers nothing from it.
TEST_F(SpoolWriterTest, ANextSegmentLeftByACrashIsDropped) {
    config::SpoolConfig cfg;
    ASSERT_TRUE(std::filesystem::create_directories(dir + "/shard-0"));
    const std::string next = dir + "/shard-0/" + std::string(queue::next_segment_file_name);
    {
        int fd = ::open(next.c_str(), O_WRONLY | O_CREAT, 0640);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::write(fd, "leftover", 8), 8);
        ::close(fd);
    }
    EXPECT_TRUE(queue::list_segments(dir).unrecognised.empty());
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    struct stat st {};
    EXPECT_NE(::stat(next.c_str(), &st), 0);
    EXPECT_EQ(w.stats().recovered_records, 0u);
    EXPECT_EQ(w.stats().cut_tail_bytes, 0u);
}

// A segment that cannot be created (here: its folder is gone; in life, a full disk or a file
// system gone read-only) refuses that group and backs off like a failed write; once the disk
// takes files again, the spool rotates and takes jobs again, without a restart.
TEST_F(SpoolWriterTest, AFailedRotationIsRetriedAfterTheBackOff) {
    config::SpoolConfig cfg;
    cfg.segment_size = 300; // smaller than two records: every group after the first rotates
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    auto first = make_record(std::string(200, 'a'), 1);
    std::map<uint64_t, bool> outcome;
    ASSERT_TRUE(w.append(first, 1, config::Durability::fsync));
    settle(w, outcome, 1);
    ASSERT_TRUE(outcome[1]);

    const std::string shard_dir = dir + "/shard-0";
    const std::string aside = dir + "/aside";
    std::filesystem::rename(shard_dir, aside);
    auto refused = make_record(std::string(200, 'b'), 2);
    ASSERT_TRUE(w.append(refused, 2, config::Durability::fsync));
    std::map<uint64_t, bool> failed;
    // The next segment was prepared while the first filled: its rename fails first, and then
    // the segment cannot be created in place either.
    auto refuse = [&](uint64_t cookie, bool durable) { failed[cookie] = durable; };
    for (int i = 0; i < 20 && failed.empty(); ++i) {
        w.flush(ring, 0, refuse);
        ASSERT_EQ(ring.submit_and_wait(50'000'000), 0);
        ring.for_each_cqe([&](const io_uring_cqe& cqe) { w.on_cqe(cqe, 0, refuse); });
    }
    ASSERT_EQ(failed.size(), 1u) << "the group that could not rotate was not answered";
    EXPECT_FALSE(failed[2]);
    EXPECT_FALSE(w.healthy()) << "a failed rotation does not back off";
    EXPECT_FALSE(w.append(refused, 3, config::Durability::fsync)) << "took a job while failing";

    // The disk is back: after the back-off the next group rotates and is made durable.
    std::filesystem::rename(aside, shard_dir);
    std::map<uint64_t, bool> later;
    w.flush(ring, 2'000'000'000, [&](uint64_t cookie, bool durable) { later[cookie] = durable; });
    EXPECT_TRUE(w.healthy());
    auto again = make_record(std::string(200, 'c'), 4);
    ASSERT_TRUE(w.append(again, 4, config::Durability::fsync)) << "the spool stayed closed";
    settle(w, later, 1);
    EXPECT_TRUE(later[4]);
    EXPECT_EQ(bodies_on_disk(),
              (std::vector<std::string>{std::string(200, 'a'), std::string(200, 'c')}));
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

// Issue 19: a deep spool is read once at start (by the control plane's index), not twice. A
// shard reads a finished segment only when its records may still matter to on_record (its
// mtime is at or after remember_since); the newest one always, for a torn tail.
TEST_F(SpoolWriterTest, RecoverySkipsFinishedSegmentsOlderThanWhatItMustRemember) {
    config::SpoolConfig cfg;
    for (uint32_t n = 1; n <= 2; ++n) { // one segment per run: 1 and 2, then 3 is opened
        queue::SpoolWriter w;
        ASSERT_EQ(w.open(dir, 0, cfg), "");
        auto rec = make_record("run " + std::to_string(n), n);
        ASSERT_TRUE(w.append(rec, n, config::Durability::fsync));
        std::map<uint64_t, bool> outcome;
        settle(w, outcome, 1);
    }
    auto segments = queue::list_segments(dir).segments;
    ASSERT_EQ(segments.size(), 2u);
    // Both written an hour ago.
    const int64_t now = base::unix_ns();
    const timespec hour_ago[2] = {{now / 1'000'000'000 - 3600, 0}, {now / 1'000'000'000 - 3600, 0}};
    for (const auto& seg : segments) {
        ASSERT_EQ(::utimensat(AT_FDCWD, seg.path.c_str(), hour_ago, 0), 0);
    }
    auto bodies_seen = [&](int64_t since, uint64_t& not_read) {
        std::vector<std::string> seen;
        queue::SpoolWriter w;
        auto on_record = [&](uint64_t, const queue::JobRecord& r) {
            seen.emplace_back(reinterpret_cast<const char*>(r.body.data()), r.body.size());
        };
        EXPECT_EQ(w.open(dir, 0, cfg, on_record, nullptr, since), "");
        not_read = w.stats().segments_not_read;
        return seen;
    };
    uint64_t not_read = 0;
    // Remembering the last 10 minutes: only the newest segment is read (segment 3 is new and
    // empty after the first of these opens, and is then the newest).
    EXPECT_EQ(bodies_seen(now - 600 * 1'000'000'000LL, not_read),
              std::vector<std::string>{"run 2"});
    EXPECT_EQ(not_read, 1u);
    EXPECT_TRUE(bodies_seen(now - 600 * 1'000'000'000LL, not_read).empty());
    EXPECT_EQ(not_read, 2u);
    // Remembering two hours, or everything (an ordered route): all of them.
    EXPECT_EQ(bodies_seen(now - 7200 * 1'000'000'000LL, not_read),
              (std::vector<std::string>{"run 1", "run 2"}));
    EXPECT_EQ(not_read, 0u);
    EXPECT_EQ(bodies_seen(INT64_MIN, not_read), (std::vector<std::string>{"run 1", "run 2"}));
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

// A stopping shard waits for drained(), not idle(): under durability batch a record is answered
// once written, and its fdatasync comes within 10 ms. A shard that stopped in between would
// leave that data to the kernel's write-back, and a power cut in the next 30 s would lose jobs
// answered 202. The shard's drain used idle(), which is true in that state.
TEST_F(SpoolWriterTest, AWriterIsDrainedOnlyOnceItsBatchDataIsSynced) {
    constexpr int64_t ms = 1'000'000;
    config::SpoolConfig cfg;
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    EXPECT_TRUE(w.drained());
    std::map<uint64_t, bool> outcome;
    auto done = [&](uint64_t cookie, bool durable) { outcome[cookie] = durable; };

    auto synced = make_record("fsync", 1);
    ASSERT_TRUE(w.append(synced, 1, config::Durability::fsync));
    settle(w, outcome, 1);
    EXPECT_TRUE(w.drained()) << "fsync: answered once synced";

    auto unsynced = make_record("none", 2);
    ASSERT_TRUE(w.append(unsynced, 2, config::Durability::none));
    settle(w, outcome, 2);
    EXPECT_TRUE(w.drained()) << "none promises no sync";

    auto batched = make_record("batch", 3);
    ASSERT_TRUE(w.append(batched, 3, config::Durability::batch));
    settle(w, outcome, 3); // answered; the clock stays at 0, so its sync is not due yet
    ASSERT_TRUE(outcome[3]);
    EXPECT_TRUE(w.idle());
    EXPECT_FALSE(w.drained()) << "a shard could stop with answered batch data unsynced";
    w.flush(ring, 10 * ms, done);
    EXPECT_FALSE(w.drained());
    ASSERT_EQ(ring.submit_and_wait(50 * ms), 0);
    ring.for_each_cqe([&](const io_uring_cqe& cqe) { w.on_cqe(cqe, 11 * ms, done); });
    EXPECT_TRUE(w.drained()) << "synced, and still not drained";
}

TEST_F(SpoolWriterTest, NextGroupIsSubmittedWhileTheFirstSyncs) {
    config::SpoolConfig cfg;
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    auto first = make_record("first", 1);
    auto second = make_record("second", 2);
    std::vector<uint64_t> answered;
    std::map<uint64_t, bool> outcome;
    Done done = [&](uint64_t cookie, bool durable) {
        answered.push_back(cookie);
        outcome[cookie] = durable;
    };
    std::vector<HeldCqe> syncs;
    ASSERT_TRUE(w.append(first, 1, config::Durability::fsync));
    w.flush(ring, 0, done);
    uint64_t g1 = write_only(w, syncs, done);
    EXPECT_TRUE(answered.empty()) << "answered before its fdatasync completed";

    // The first group's fdatasync is in flight (held back): the second goes out now, as a
    // writev and its own linked fdatasync.
    ASSERT_TRUE(w.append(second, 2, config::Durability::fsync));
    w.flush(ring, 0, done);
    EXPECT_EQ(io_uring_sq_ready(ring.raw()), 2u)
        << "the second group waited for the first one's fdatasync";
    uint64_t g2 = write_only(w, syncs, done);
    EXPECT_NE(g1, g2);
    EXPECT_TRUE(answered.empty());
    EXPECT_FALSE(w.idle());

    deliver_sync(w, syncs, g1, done);
    deliver_sync(w, syncs, g2, done);
    EXPECT_EQ(answered, (std::vector<uint64_t>{1, 2}));
    EXPECT_TRUE(outcome[1]);
    EXPECT_TRUE(outcome[2]);
    EXPECT_TRUE(w.idle());
    EXPECT_EQ(w.stats().groups, 2u);
    EXPECT_EQ(w.stats().deepest_inflight, 2u);
    EXPECT_EQ(w.stats().overlapped_groups, 1u);
    EXPECT_EQ(bodies_on_disk(), (std::vector<std::string>{"first", "second"}));
}

static_assert(queue::SpoolWriter::max_inflight >= 2, "these tests need groups in flight");

TEST_F(SpoolWriterTest, AnswersComeInGroupOrderWhateverOrderTheSyncsComplete) {
    constexpr uint32_t n = queue::SpoolWriter::max_inflight;
    config::SpoolConfig cfg;
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    std::vector<std::vector<uint8_t>> records;
    std::vector<std::string> bodies;
    for (uint32_t i = 0; i < 2 * n; ++i) {
        bodies.push_back("r" + std::to_string(i));
        records.push_back(make_record(bodies.back(), i));
    }
    std::vector<std::pair<uint64_t, bool>> answered;
    Done done = [&](uint64_t cookie, bool durable) { answered.emplace_back(cookie, durable); };
    std::vector<HeldCqe> syncs;
    std::vector<uint64_t> groups;
    // As many groups of two records as may be in flight, all in flight at once.
    for (uint32_t g = 0; g < n; ++g) {
        ASSERT_TRUE(w.append(records[2 * g], 2 * g, config::Durability::fsync));
        ASSERT_TRUE(w.append(records[2 * g + 1], 2 * g + 1, config::Durability::fsync));
        w.flush(ring, 0, done);
        groups.push_back(write_only(w, syncs, done));
        ASSERT_FALSE(HasFailure());
    }
    // The fdatasyncs complete last group first: nobody is answered before the first group is.
    for (uint32_t g = n; g-- > 1;) {
        deliver_sync(w, syncs, groups[g], done);
        EXPECT_TRUE(answered.empty()) << "group " << g << " answered before group 0";
    }
    deliver_sync(w, syncs, groups[0], done);
    std::vector<std::pair<uint64_t, bool>> expect;
    for (uint64_t c = 0; c < 2 * n; ++c) {
        expect.emplace_back(c, true);
    }
    EXPECT_EQ(answered, expect);
    EXPECT_TRUE(w.idle());
    EXPECT_EQ(bodies_on_disk(), bodies);
}

TEST_F(SpoolWriterTest, AFailedSyncFailsTheLaterGroupsAndCutsOnlyOnceTheyLanded) {
    constexpr uint32_t n = queue::SpoolWriter::max_inflight;
    config::SpoolConfig cfg;
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    auto kept = make_record("kept", 0);
    std::vector<std::vector<uint8_t>> records;
    for (uint32_t i = 1; i <= n; ++i) {
        records.push_back(make_record("lost " + std::to_string(i), i));
    }
    std::vector<std::pair<uint64_t, bool>> answered;
    Done done = [&](uint64_t cookie, bool durable) { answered.emplace_back(cookie, durable); };
    std::vector<HeldCqe> syncs;
    ASSERT_TRUE(w.append(kept, 0, config::Durability::fsync));
    std::map<uint64_t, bool> first;
    settle(w, first, 1);
    ASSERT_TRUE(first[0]);
    const std::string segment = newest_segment();
    const uint64_t kept_end = file_size(segment);

    std::vector<uint64_t> groups;
    for (uint32_t i = 0; i < n; ++i) {
        ASSERT_TRUE(w.append(records[i], i + 1, config::Durability::fsync));
        w.flush(ring, 0, done);
        groups.push_back(write_only(w, syncs, done));
        ASSERT_FALSE(HasFailure());
    }
    const uint64_t written_end = file_size(segment);
    ASSERT_GT(written_end, kept_end);

    // The first group's fdatasync fails (EIO): its records and those of every later group are
    // answered 503, each once all its completions are in, and the file is cut back only then.
    deliver_sync(w, syncs, groups[0], done, -EIO);
    std::vector<std::pair<uint64_t, bool>> expect{{1, false}};
    EXPECT_EQ(answered, expect);
    EXPECT_FALSE(w.healthy());
    EXPECT_FALSE(w.append(kept, 99, config::Durability::fsync)) << "took a job while failing";
    for (uint32_t i = 1; i < n; ++i) {
        EXPECT_EQ(file_size(segment), written_end) << "cut while later groups were in flight";
        deliver_sync(w, syncs, groups[i], done);
        expect.emplace_back(i + 1, false);
        EXPECT_EQ(answered, expect);
    }
    EXPECT_EQ(file_size(segment), kept_end) << "the failed groups' bytes were not cut off";
    EXPECT_EQ(w.stats().failures, n);
    EXPECT_TRUE(w.idle());
    EXPECT_EQ(bodies_on_disk(), std::vector<std::string>{"kept"});

    // After the back-off the spool takes jobs again, appended where the cut left off.
    auto after = make_record("after", 100);
    std::map<uint64_t, bool> later;
    auto later_done = [&](uint64_t cookie, bool durable) { later[cookie] = durable; };
    w.flush(ring, 2'000'000'000, later_done);
    EXPECT_TRUE(w.healthy());
    ASSERT_TRUE(w.append(after, 100, config::Durability::fsync));
    settle(w, later, 1);
    EXPECT_TRUE(later[100]);
    EXPECT_EQ(bodies_on_disk(), (std::vector<std::string>{"kept", "after"}));
}

TEST_F(SpoolWriterTest, AFailedWriteFailsItsGroupButNotTheEarlierOne) {
    config::SpoolConfig cfg;
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    auto first = make_record("first", 1);
    auto second = make_record("second", 2);
    std::vector<std::pair<uint64_t, bool>> answered;
    Done done = [&](uint64_t cookie, bool durable) { answered.emplace_back(cookie, durable); };
    std::vector<HeldCqe> syncs;
    ASSERT_TRUE(w.append(first, 1, config::Durability::fsync));
    w.flush(ring, 0, done);
    uint64_t g1 = write_only(w, syncs, done);
    ASSERT_TRUE(w.append(second, 2, config::Durability::fsync));
    w.flush(ring, 0, done);
    // The second group's write comes back short (as on a full disk); its fdatasync, which the
    // kernel ran anyway here, comes later and must not revive it.
    bool seen = false;
    for (int i = 0; i < 40 && !seen; ++i) {
        ASSERT_EQ(ring.submit_and_wait(50'000'000), 0);
        ring.for_each_cqe([&](const io_uring_cqe& c) {
            HeldCqe h{c.user_data, c.res};
            if (is_write(h)) {
                seen = true;
                h.res = c.res - 1;
                w.on_cqe(as_cqe(h), 0, done);
            } else {
                syncs.push_back(h);
            }
        });
    }
    ASSERT_TRUE(seen) << "the second group was not submitted while the first synced";
    EXPECT_TRUE(answered.empty()) << "the second group was answered before the first";
    deliver_sync(w, syncs, g1, done);
    EXPECT_EQ(answered, (std::vector<std::pair<uint64_t, bool>>{{1, true}}));
    for (int i = 0; i < 40 && answered.size() < 2; ++i) {
        for (const HeldCqe& h : syncs) {
            w.on_cqe(as_cqe(h), 0, done);
        }
        syncs.clear();
        if (answered.size() < 2) {
            ASSERT_EQ(ring.submit_and_wait(50'000'000), 0);
            ring.for_each_cqe([&](const io_uring_cqe& c) {
                syncs.push_back(HeldCqe{c.user_data, c.res});
            });
        }
    }
    EXPECT_EQ(answered, (std::vector<std::pair<uint64_t, bool>>{{1, true}, {2, false}}));
    EXPECT_TRUE(w.idle());
    EXPECT_EQ(bodies_on_disk(), std::vector<std::string>{"first"});
}

TEST_F(SpoolWriterTest, ManyGroupsInFlightRecoverInOrderAcrossSegments) {
    config::SpoolConfig cfg;
    cfg.segment_size = 4096; // a few records each: rotations happen while the pipeline is busy
    constexpr uint32_t count = 300;
    std::vector<std::vector<uint8_t>> records;
    std::vector<std::string> expect;
    for (uint32_t i = 0; i < count; ++i) {
        expect.push_back("record " + std::to_string(i) + std::string(i % 97, 'x'));
        records.push_back(make_record(expect.back(), i));
    }
    std::map<uint64_t, bool> outcome;
    std::vector<uint64_t> order;
    {
        queue::SpoolWriter w;
        ASSERT_EQ(w.open(dir, 0, cfg), "");
        auto done = [&](uint64_t cookie, bool durable) {
            outcome[cookie] = durable;
            order.push_back(cookie);
        };
        uint32_t next = 0;
        // Until every job is answered and nothing is in flight (the next segment's preparation
        // included: it may still be under way when the last answer comes).
        for (uint32_t i = 0; i < 2000 && (outcome.size() < count || !w.idle()); ++i) {
            // One to three jobs arrive per loop iteration, whatever is in flight.
            for (uint32_t k = 0; k < 1 + i % 3 && next < count; ++k, ++next) {
                ASSERT_TRUE(w.append(records[next], next, config::Durability::fsync));
            }
            w.flush(ring, 0, done);
            ASSERT_EQ(ring.submit_and_wait(1'000'000), 0);
            ring.for_each_cqe([&](const io_uring_cqe& cqe) { w.on_cqe(cqe, 0, done); });
        }
        ASSERT_EQ(outcome.size(), count);
        EXPECT_TRUE(w.idle());
        EXPECT_EQ(w.stats().records, count);
        EXPECT_GT(w.stats().deepest_inflight, 1u) << "the groups never overlapped";
        EXPECT_LE(w.stats().deepest_inflight, queue::SpoolWriter::max_inflight);
        EXPECT_GT(w.stats().overlapped_groups, 0u);
        // 13-15 segments on a quiet machine; a slow fdatasync (the machine busy) lets the jobs
        // pile up into larger groups, and a run with the CPUs loaded once opened 7.
        EXPECT_GE(w.stats().segments_opened, 5u) << "too few rotations to show anything";
    }
    for (uint32_t i = 0; i < count; ++i) {
        EXPECT_TRUE(outcome[i]) << "record " << i;
        EXPECT_EQ(order[i], i) << "answers out of order";
    }
    EXPECT_EQ(bodies_on_disk(), expect);
    queue::SpoolWriter again;
    ASSERT_EQ(again.open(dir, 0, cfg), "");
    EXPECT_EQ(again.stats().recovered_records, count);
    EXPECT_EQ(again.stats().cut_tail_bytes, 0u);
}

TEST_F(SpoolWriterTest, BatchSyncIsNotStarvedByAConstantStream) {
    constexpr int64_t ms = 1'000'000;
    constexpr int64_t tick = 50 * ms;
    config::SpoolConfig cfg;
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    std::vector<std::vector<uint8_t>> records;
    for (uint32_t i = 0; i < 8; ++i) {
        records.push_back(make_record("batch " + std::to_string(i), i));
    }
    std::map<uint64_t, bool> outcome;
    auto done = [&](uint64_t cookie, bool durable) { outcome[cookie] = durable; };
    // A job arrives in every loop iteration, past the 10 ms window: the periodic fdatasync
    // still goes out (the groups wait for it), not only once the shard goes quiet.
    for (uint32_t i = 0; i < records.size(); ++i) {
        int64_t now = 20 * ms + i;
        ASSERT_TRUE(w.append(records[i], i, config::Durability::batch));
        w.flush(ring, now, done);
        ASSERT_EQ(ring.submit_and_wait(tick), 0);
        ring.for_each_cqe([&](const io_uring_cqe& cqe) { w.on_cqe(cqe, now, done); });
    }
    // Synced during the stream: the next sync is due about 10 ms later, not at once.
    EXPECT_GT(w.wait_limit_ns(20 * ms + 100, tick), 9 * ms)
        << "written batch records are still waiting for their fdatasync past the window";
    settle(w, outcome, records.size());
    EXPECT_EQ(bodies_on_disk().size(), records.size());
}

TEST_F(SpoolWriterTest, EveryGroupInFlightSyncsThroughItsOwnFileDescription) {
    // An fdatasync reports a writeback error once per open file description; two in flight on
    // one description could hand the error of one group's pages to the other's. Each group in
    // flight therefore writes and syncs through a description of its own.
    config::SpoolConfig cfg;
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    std::string segment = std::filesystem::canonical(newest_segment());
    std::vector<int> fds;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        auto target = std::filesystem::read_symlink(entry.path(), ec);
        if (!ec && target == segment) {
            fds.push_back(std::stoi(entry.path().filename().string()));
        }
    }
    ASSERT_GE(fds.size(), 2u) << "one descriptor of the segment for every group in flight";
    // Descriptions, not descriptors (dup() would share one): each has its own file position.
    for (size_t i = 0; i < fds.size(); ++i) {
        ASSERT_EQ(::lseek(fds[i], static_cast<off_t>(100 + i), SEEK_SET),
                  static_cast<off_t>(100 + i));
    }
    for (size_t i = 0; i < fds.size(); ++i) {
        EXPECT_EQ(::lseek(fds[i], 0, SEEK_CUR), static_cast<off_t>(100 + i));
    }
}

TEST_F(SpoolWriterTest, AWriteAndItsSyncAreNeverSplitAcrossSubmissions) {
    // A full submission queue: Ring::sqe() submits it to make room. Between a write and its
    // linked fdatasync that would end the link, and the fdatasync could run before the write.
    io::Ring small;
    ASSERT_EQ(small.init(4, features.setup_flags()), "");
    config::SpoolConfig cfg;
    queue::SpoolWriter w;
    ASSERT_EQ(w.open(dir, 0, cfg), "");
    auto rec = make_record("linked", 1);
    for (int i = 0; i < 3; ++i) {
        io_uring_sqe* nop = small.sqe();
        io_uring_prep_nop(nop);
        nop->user_data = 0;
    }
    ASSERT_EQ(io_uring_sq_space_left(small.raw()), 1u);
    std::map<uint64_t, bool> outcome;
    auto done = [&](uint64_t cookie, bool durable) { outcome[cookie] = durable; };
    ASSERT_TRUE(w.append(rec, 1, config::Durability::fsync));
    w.flush(small, 0, done);
    EXPECT_EQ(io_uring_sq_ready(small.raw()), 2u) << "the write went without its fdatasync";
    for (int i = 0; i < 40 && outcome.empty(); ++i) {
        ASSERT_EQ(small.submit_and_wait(50'000'000), 0);
        small.for_each_cqe([&](const io_uring_cqe& cqe) {
            if (cqe.user_data >> 56 != 0) {
                w.on_cqe(cqe, 0, done);
            }
        });
    }
    EXPECT_TRUE(outcome[1]);
    EXPECT_TRUE(w.idle());
}

// A writer that was never opened (a shard whose start failed earlier) closes no descriptor when
// it goes: not descriptor 0, which an all-zero array of descriptors would name.
TEST(SpoolWriterLifetime, NeverOpenedClosesNothing) {
    if (::fcntl(0, F_GETFD) == -1) {
        GTEST_SKIP() << "descriptor 0 is not open in this process";
    }
    { queue::SpoolWriter w; }
    EXPECT_NE(::fcntl(0, F_GETFD), -1) << "the writer closed descriptor 0";
}
