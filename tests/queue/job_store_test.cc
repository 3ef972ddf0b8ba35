#include "portcullis/queue/job_store.hh"

#include "portcullis/queue/segment.hh"

#include "../snapshot_from_yaml.hh"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::queue;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<config::Snapshot> build(const std::string& spool_dir) {
    return snapshot_from_yaml("spool: {dir: " + spool_dir +
                              "}\nroutes:\n  github:\n    path: /webhooks/github\n"
                              "    verify: {scheme: none}\n");
}

constexpr int64_t base_received_ns = 1795353480000000000;
constexpr int64_t now_ns = 1795353490000000000;

JobId id_of(uint8_t n) {
    JobId id;
    id.bytes[0] = 1; // ids sort by time first: a fixed high byte keeps them in n's order
    id.bytes[15] = n;
    return id;
}

std::vector<uint8_t> job(uint8_t n, size_t body_bytes = 100) {
    JobMeta meta;
    meta.id = id_of(n);
    meta.route = "github";
    meta.received_at_ns = base_received_ns + n;
    meta.peer = *base::PeerAddress::parse("192.0.2.1", 1000);
    http::Header headers[] = {{"X-GitHub-Delivery", "d"}};
    return make_job_record(meta, headers, std::string(body_bytes, static_cast<char>('a' + n % 26)));
}

// A spool folder with shard 0's segments written by hand, as a shard's writer would.
class JobStoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/job_store_test.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        _dir = tmpl;
        fs::create_directories(_dir + "/shard-0");
        _snap = build(_dir);
        ASSERT_NE(_snap, nullptr);
    }
    void TearDown() override { fs::remove_all(_dir); }

    // Starts segment seq with its header; returns its path.
    std::string start(uint64_t seq) {
        std::string path = segment_path(_dir, 0, seq);
        std::vector<uint8_t> h(segment_header_size);
        encode_segment_header(0, std::span<uint8_t, segment_header_size>(h.data(), h.size()));
        write_at(path, 0, h);
        return path;
    }
    // Appends records; returns each one's offset.
    std::vector<uint64_t> append(const std::string& path, uint8_t first, uint8_t count) {
        std::vector<uint64_t> offsets;
        for (uint8_t n = first; n < first + count; ++n) {
            offsets.push_back(fs::file_size(path));
            write_at(path, offsets.back(), job(n));
        }
        return offsets;
    }
    static void write_at(const std::string& path, uint64_t offset,
                         const std::vector<uint8_t>& bytes) {
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)),
                  static_cast<ssize_t>(bytes.size()));
        ::close(fd);
    }
    // Sets one bit of a record's u32 payload length (bytes 4..7 of its prefix).
    static void flip_length_bit(const std::string& path, uint64_t record_offset, int bit) {
        int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        uint8_t b = 0;
        const auto at = static_cast<off_t>(record_offset + 4 + bit / 8);
        ASSERT_EQ(::pread(fd, &b, 1, at), 1);
        b ^= static_cast<uint8_t>(1u << (bit % 8));
        ASSERT_EQ(::pwrite(fd, &b, 1, at), 1);
        ::close(fd);
    }
    std::string open_store() {
        return _store.open(*_snap, std::span<const SpoolProgress>(&_progress, 1), now_ns);
    }
    bool indexed(uint8_t n) const { return _store.table().find(id_of(n)).has_value(); }

    std::string _dir;
    std::unique_ptr<config::Snapshot> _snap;
    SpoolProgress _progress;
    JobStore _store;
};

} // namespace

TEST_F(JobStoreTest, SkipsARecordWhoseLengthRunsPastTheEndOfAFinishedSegment) {
    // The reproduction: a flipped bit in the length of a record in the middle of a segment the
    // writer has moved past (after a restart it always starts a new one) makes that record
    // claim more bytes than the file holds. Only it is lost; every later job is indexed.
    std::string path = start(1);
    std::vector<uint64_t> at = append(path, 1, 10);
    flip_length_bit(path, at[4], 19); // +512 KiB: past the end of this 2 KiB file
    start(2);
    _progress.publish(2, segment_header_size);
    ASSERT_EQ(open_store(), "");
    EXPECT_EQ(_store.table().size(), 9u);
    EXPECT_FALSE(indexed(5));
    for (uint8_t n : {1, 4, 6, 10}) {
        EXPECT_TRUE(indexed(n)) << "job " << int{n};
    }
    EXPECT_EQ(_store.stats().damaged_regions, 1u);
    EXPECT_EQ(_store.stats().damaged_bytes, at[5] - at[4]);
}

TEST_F(JobStoreTest, SkipsDamageInsideTheCommittedPartOfTheSegmentBeingWritten) {
    std::string path = start(1);
    std::vector<uint64_t> at = append(path, 1, 10);
    flip_length_bit(path, at[2], 19);
    _progress.publish(1, fs::file_size(path));
    ASSERT_EQ(open_store(), "");
    EXPECT_EQ(_store.table().size(), 9u);
    EXPECT_FALSE(indexed(3));
    EXPECT_TRUE(indexed(10));
    EXPECT_EQ(_store.stats().damaged_regions, 1u);

    // Damage in what is appended later is skipped the same way while tailing.
    std::vector<uint64_t> more = append(path, 11, 5);
    flip_length_bit(path, more[1], 12);
    _progress.publish(1, fs::file_size(path));
    EXPECT_EQ(_store.poll(), 4u);
    EXPECT_FALSE(indexed(12));
    EXPECT_TRUE(indexed(15));
    EXPECT_EQ(_store.stats().damaged_regions, 2u);
}

TEST_F(JobStoreTest, IndexesOnlyWhatTheWriterHasCommitted) {
    std::string path = start(1);
    std::vector<uint64_t> at = append(path, 1, 3);
    _progress.publish(1, at[2]); // the third record's group is still being written
    ASSERT_EQ(open_store(), "");
    EXPECT_EQ(_store.table().size(), 2u);
    EXPECT_FALSE(indexed(3));
    EXPECT_EQ(_store.poll(), 0u);
    _progress.publish(1, fs::file_size(path));
    EXPECT_EQ(_store.poll(), 1u);
    EXPECT_TRUE(indexed(3));
    EXPECT_EQ(_store.stats().damaged_regions, 0u);
}

TEST_F(JobStoreTest, AGroupThatFailedAndWasCutOffIsNeverIndexedAndWhatReplacesItIs) {
    // The writer wrote job 2, its fdatasync failed (answered 503), it cut the file back and
    // wrote job 3 (a different size) where job 2 was. A reader that had taken job 2 would
    // resume in the middle of job 3 and miss it.
    std::string path = start(1);
    std::vector<uint64_t> at = append(path, 1, 2);
    _progress.publish(1, at[1]);
    ASSERT_EQ(open_store(), "");
    EXPECT_EQ(_store.poll(), 0u);
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(at[1])), 0);
    std::vector<uint8_t> replacement = job(3, 900);
    write_at(path, at[1], replacement);
    _progress.publish(1, at[1] + replacement.size());
    EXPECT_EQ(_store.poll(), 1u);
    EXPECT_TRUE(indexed(1));
    EXPECT_FALSE(indexed(2));
    EXPECT_TRUE(indexed(3));
    EXPECT_EQ(_store.stats().damaged_regions, 0u);
}

TEST_F(JobStoreTest, ASegmentFinishesWhenTheWriterMovesOn) {
    std::string first = start(1);
    append(first, 1, 2);
    _progress.publish(1, fs::file_size(first));
    ASSERT_EQ(open_store(), "");
    EXPECT_EQ(_store.table().size(), 2u);
    // The writer's last group of segment 1, then it rotates: segment 2 exists before its first
    // group is committed.
    append(first, 3, 1);
    _progress.publish(1, fs::file_size(first));
    std::string second = start(2);
    append(second, 4, 1);
    EXPECT_EQ(_store.poll(), 1u) << "segment 2 holds nothing committed yet";
    _progress.publish(2, segment_header_size);
    EXPECT_EQ(_store.poll(), 0u);
    append(second, 5, 1);
    _progress.publish(2, fs::file_size(second));
    EXPECT_EQ(_store.poll(), 2u);
    for (uint8_t n = 1; n <= 5; ++n) {
        EXPECT_TRUE(indexed(n)) << "job " << int{n};
    }
}
