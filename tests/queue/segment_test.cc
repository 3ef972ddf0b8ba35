#include "portcullis/queue/segment.hh"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::queue;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> job(std::string_view route, std::string_view body, uint8_t n) {
    JobMeta meta;
    meta.id.bytes[15] = n;
    meta.route = route;
    meta.received_at_ns = 1795353480123456789 + n;
    meta.peer = *base::PeerAddress::parse("192.0.2.1", 1000);
    http::Header headers[] = {{"X-N", std::string_view("0123456789").substr(n % 10, 1)}};
    return make_job_record(meta, headers, body);
}

std::vector<uint8_t> segment_header(uint32_t shard) {
    std::vector<uint8_t> h(segment_header_size);
    encode_segment_header(shard, std::span<uint8_t, segment_header_size>(h.data(), h.size()));
    return h;
}

struct Image {
    std::vector<uint8_t> bytes;
    std::vector<uint64_t> offsets; // of each record
    void add(const std::vector<uint8_t>& record) {
        offsets.push_back(bytes.size());
        bytes.insert(bytes.end(), record.begin(), record.end());
    }
};

// A segment of three records of different sizes (the middle one binary).
Image three_records(uint32_t shard = 0) {
    Image img;
    img.bytes = segment_header(shard);
    img.add(job("github", R"({"action":"opened"})", 1));
    img.add(job("stripe", std::string("\x00\x01PCR1\xff", 7), 2));
    img.add(job("github", "", 3));
    return img;
}

struct Seen {
    std::vector<uint64_t> offsets;
    std::vector<uint8_t> ids;
};

ScanReport scan(const std::vector<uint8_t>& bytes, Seen* seen = nullptr) {
    return scan_segment(bytes, [&](uint64_t offset, const JobRecord& rec) {
        if (seen != nullptr) {
            seen->offsets.push_back(offset);
            seen->ids.push_back(rec.id.bytes[15]);
        }
    });
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

class SpoolSegmentFiles : public ::testing::Test {
protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "portcullis-segment-XXXXXX").native();
        ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
        _dir = tmpl;
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(_dir, ec);
    }
    std::string _dir;
};

} // namespace

TEST(SpoolSegment, NamesSegmentsByShardAndHexSequence) {
    EXPECT_EQ(segment_path("/var/spool", 3, 0x1a), "/var/spool/shard-3/000000000000001a.seg");
    EXPECT_EQ(segment_path("/var/spool/", 0, 0), "/var/spool/shard-0/0000000000000000.seg");
    EXPECT_EQ(segment_path("s", 4294967295u, 0xfedcba9876543210),
              "s/shard-4294967295/fedcba9876543210.seg");
}

TEST(SpoolSegment, WritesTheDocumentedHeader) {
    std::vector<uint8_t> h = segment_header(0x01020304);
    const std::vector<uint8_t> want = {'P', 'C', 'S', 'P', 'O', 'O', 'L', '1',
                                       1,   0,   0,   0,   4,   3,   2,   1};
    EXPECT_EQ(h, want);
}

TEST_F(SpoolSegmentFiles, ListsOnlyWellNamedSegmentsInOrder) {
    const std::vector<uint8_t> empty_segment = segment_header(0);
    for (auto [shard, seq] : {std::pair{10u, 1ull}, std::pair{2u, 0x10ull}, std::pair{2u, 0x9ull},
                              std::pair{0u, 0xffffffffffffffffull}}) {
        write_file(segment_path(_dir, shard, seq), empty_segment);
    }
    const char* ignored[] = {
        "shard-01/0000000000000001.seg", // leading zero: not a name segment_path writes
        "shard-x/0000000000000001.seg",
        "shard-/0000000000000001.seg",
        "shard-99999999999/0000000000000001.seg",
        "other/0000000000000001.seg",
        "0000000000000001.seg",
        "shard-2/000000000000001A.seg", // uppercase hex
        "shard-2/00000000000001a.seg",  // 15 digits
        "shard-2/0000000000000001.seg.tmp",
        "shard-2/0000000000000001.se",
        "shard-2/notes.txt",
    };
    for (const char* name : ignored) {
        write_file(_dir + "/" + name, empty_segment);
    }
    fs::create_directories(_dir + "/shard-2/0000000000000002.seg"); // a folder, not a file
    write_file(_dir + "/shard-5", empty_segment);                   // a file, not a folder

    ListResult listed = list_segments(_dir);
    ASSERT_EQ(listed.error, "");
    std::vector<std::pair<uint32_t, uint64_t>> got;
    for (const SegmentFile& s : listed.segments) {
        got.emplace_back(s.shard, s.seq);
        EXPECT_EQ(s.path, segment_path(_dir, s.shard, s.seq));
        EXPECT_EQ(s.size, segment_header_size);
    }
    const std::vector<std::pair<uint32_t, uint64_t>> want = {
        {0, 0xffffffffffffffff}, {2, 0x9}, {2, 0x10}, {10, 1}};
    EXPECT_EQ(got, want);
}

TEST_F(SpoolSegmentFiles, ListingAMissingDirIsAnError) {
    ListResult listed = list_segments(_dir + "/missing");
    EXPECT_NE(listed.error, "");
    EXPECT_TRUE(listed.segments.empty());
    EXPECT_EQ(list_segments(_dir).error, ""); // empty is fine
}

TEST(SpoolSegment, ScansACleanSegment) {
    Image img = three_records(7);
    Seen seen;
    ScanReport r = scan(img.bytes, &seen);
    EXPECT_EQ(r.header_error, "");
    EXPECT_EQ(r.shard, 7u);
    EXPECT_EQ(r.records, 3u);
    EXPECT_EQ(r.size, img.bytes.size());
    EXPECT_EQ(r.valid_end, img.bytes.size());
    EXPECT_TRUE(r.corrupt.empty());
    EXPECT_EQ(r.tail_bytes, 0u);
    EXPECT_EQ(seen.offsets, img.offsets);
    EXPECT_EQ(seen.ids, (std::vector<uint8_t>{1, 2, 3}));

    ScanReport empty = scan(segment_header(0));
    EXPECT_EQ(empty.header_error, "");
    EXPECT_EQ(empty.records, 0u);
    EXPECT_EQ(empty.valid_end, segment_header_size);
    EXPECT_EQ(empty.tail_bytes, 0u);
}

TEST(SpoolSegment, TornTailAtEveryCutPoint) {
    Image img = three_records();
    for (size_t cut = segment_header_size; cut <= img.bytes.size(); ++cut) {
        std::vector<uint8_t> torn(img.bytes.begin(),
                                  img.bytes.begin() + static_cast<ptrdiff_t>(cut));
        Seen seen;
        ScanReport r = scan(torn, &seen);
        uint64_t whole = 0;
        uint64_t end = segment_header_size;
        for (size_t i = 0; i < img.offsets.size(); ++i) {
            uint64_t rec_end = i + 1 < img.offsets.size() ? img.offsets[i + 1] : img.bytes.size();
            if (rec_end <= cut) {
                ++whole;
                end = rec_end;
            }
        }
        ASSERT_EQ(r.records, whole) << "cut at " << cut;
        EXPECT_EQ(seen.ids.size(), whole) << "cut at " << cut;
        EXPECT_EQ(r.valid_end, end) << "cut at " << cut;
        EXPECT_EQ(r.tail_bytes, cut - end) << "cut at " << cut;
        EXPECT_TRUE(r.corrupt.empty()) << "cut at " << cut;
        EXPECT_FALSE(r.tail_all_zero) << "cut at " << cut;
        if (r.tail_bytes != 0) {
            EXPECT_EQ(r.tail_why, DecodeStatus::truncated) << "cut at " << cut;
        }
    }
}

TEST(SpoolSegment, ZeroFilledTailIsPreallocatedSpace) {
    Image img = three_records();
    std::vector<uint8_t> bytes = img.bytes;
    bytes.resize(bytes.size() + 4096, 0);
    ScanReport r = scan(bytes);
    EXPECT_EQ(r.records, 3u);
    EXPECT_EQ(r.valid_end, img.bytes.size());
    EXPECT_EQ(r.tail_bytes, 4096u);
    EXPECT_TRUE(r.tail_all_zero);
    EXPECT_EQ(r.tail_why, DecodeStatus::bad_magic);
    EXPECT_TRUE(r.corrupt.empty());

    // A torn record followed by zeros is a torn write, not preallocation.
    bytes = img.bytes;
    std::vector<uint8_t> partial = job("github", "x", 9);
    bytes.insert(bytes.end(), partial.begin(), partial.begin() + 30);
    bytes.resize(bytes.size() + 100, 0);
    r = scan(bytes);
    EXPECT_EQ(r.tail_bytes, 130u);
    EXPECT_FALSE(r.tail_all_zero);
}

TEST(SpoolSegment, ResyncsPastACorruptMiddleRecord) {
    Image img = three_records();
    const uint64_t middle = img.offsets[1];
    const uint64_t middle_size = img.offsets[2] - img.offsets[1];
    struct Row {
        std::string name;
        uint64_t at; // byte flipped, from the middle record's start
        DecodeStatus why;
    };
    const Row rows[] = {
        {"magic", 0, DecodeStatus::bad_magic},
        {"length", 4, DecodeStatus::bad_length}, // set below the fixed fields, not flipped
        {"checksum", 9, DecodeStatus::bad_checksum},
        {"route", record_prefix_size + 64, DecodeStatus::bad_checksum},
        {"last body byte", middle_size - 1, DecodeStatus::bad_checksum},
    };
    for (const Row& row : rows) {
        std::vector<uint8_t> bytes = img.bytes;
        if (row.name == "length") {
            bytes[middle + 4] = 10; // payload shorter than the fixed fields
            bytes[middle + 5] = 0;
        } else {
            bytes[middle + row.at] ^= 0x40;
        }
        Seen seen;
        ScanReport r = scan(bytes, &seen);
        EXPECT_EQ(r.records, 2u) << row.name;
        EXPECT_EQ(seen.ids, (std::vector<uint8_t>{1, 3})) << row.name;
        EXPECT_EQ(seen.offsets, (std::vector<uint64_t>{img.offsets[0], img.offsets[2]}))
            << row.name;
        ASSERT_EQ(r.corrupt.size(), 1u) << row.name;
        EXPECT_EQ(r.corrupt[0].offset, middle) << row.name;
        EXPECT_EQ(r.corrupt[0].length, middle_size) << row.name;
        EXPECT_EQ(r.corrupt[0].why, row.why) << row.name;
        EXPECT_EQ(r.tail_bytes, 0u) << row.name;
        EXPECT_EQ(r.valid_end, img.bytes.size()) << row.name;
    }
}

TEST(SpoolSegment, GarbageBetweenRecordsIsOneRegion) {
    Image img = three_records();
    std::vector<uint8_t> bytes(img.bytes.begin(), img.bytes.begin() + img.offsets[1]);
    const char junk[] = "PCR1PCR1 not a record PCR1";
    bytes.insert(bytes.end(), junk, junk + sizeof junk);
    bytes.insert(bytes.end(), img.bytes.begin() + img.offsets[1], img.bytes.end());
    ScanReport r = scan(bytes);
    EXPECT_EQ(r.records, 3u);
    ASSERT_EQ(r.corrupt.size(), 1u);
    EXPECT_EQ(r.corrupt[0].offset, img.offsets[1]);
    EXPECT_EQ(r.corrupt[0].length, sizeof junk);
}

TEST(SpoolSegment, ReportsABadHeaderButStillReadsTheRecords) {
    struct Row {
        std::string name;
        size_t at;
        uint8_t value;
    };
    const Row rows[] = {{"magic", 0, 'X'}, {"version", 8, 2}};
    for (const Row& row : rows) {
        Image img = three_records();
        img.bytes[row.at] = row.value;
        ScanReport r = scan(img.bytes);
        EXPECT_NE(r.header_error, "") << row.name;
        EXPECT_EQ(r.records, 3u) << row.name;
    }
    std::vector<uint8_t> shorter = segment_header(0);
    shorter.resize(10);
    ScanReport r = scan(shorter);
    EXPECT_NE(r.header_error, "");
    EXPECT_EQ(r.valid_end, 0u);
    EXPECT_EQ(scan({}).records, 0u);
}

TEST_F(SpoolSegmentFiles, RecoveryCutsATornTailOnce) {
    Image img = three_records();
    std::vector<uint8_t> bytes = img.bytes;
    std::vector<uint8_t> partial = job("github", "torn", 4);
    bytes.insert(bytes.end(), partial.begin(), partial.end() - 3);
    std::string path = segment_path(_dir, 0, 1);
    write_file(path, bytes);

    std::string error;
    std::vector<uint8_t> ids;
    ScanReport r = recover_segment(
        path, [&](uint64_t, const JobRecord& rec) { ids.push_back(rec.id.bytes[15]); }, error);
    ASSERT_EQ(error, "");
    EXPECT_EQ(ids, (std::vector<uint8_t>{1, 2, 3}));
    EXPECT_EQ(r.tail_bytes, partial.size() - 3);
    EXPECT_TRUE(r.tail_cut);
    EXPECT_EQ(fs::file_size(path), img.bytes.size());

    ScanReport again = recover_segment(path, error);
    ASSERT_EQ(error, "");
    EXPECT_EQ(again.records, 3u);
    EXPECT_EQ(again.tail_bytes, 0u);
    EXPECT_FALSE(again.tail_cut);
    EXPECT_EQ(fs::file_size(path), img.bytes.size());
}

TEST_F(SpoolSegmentFiles, RecoveryLeavesWhatItDoesNotUnderstand) {
    std::string error;

    // A bad header: not modified, even with a torn tail.
    Image img = three_records();
    std::vector<uint8_t> bytes = img.bytes;
    bytes[0] = 'X';
    bytes.push_back('P');
    std::string bad_header = segment_path(_dir, 0, 1);
    write_file(bad_header, bytes);
    ScanReport r = recover_segment(bad_header, error);
    EXPECT_EQ(error, "");
    EXPECT_NE(r.header_error, "");
    EXPECT_FALSE(r.tail_cut);
    EXPECT_EQ(fs::file_size(bad_header), bytes.size());

    // A whole record of a type this version does not know, at the end: not a torn write.
    bytes = img.bytes;
    std::vector<uint8_t> future = job("github", "v2", 4);
    future[record_prefix_size] = 2;
    seal_record(future);
    bytes.insert(bytes.end(), future.begin(), future.end());
    std::string unknown = segment_path(_dir, 0, 2);
    write_file(unknown, bytes);
    r = recover_segment(unknown, error);
    EXPECT_EQ(error, "");
    EXPECT_EQ(r.tail_why, DecodeStatus::bad_fields);
    EXPECT_FALSE(r.tail_cut);
    EXPECT_EQ(fs::file_size(unknown), bytes.size());

    // Shorter than a header: a crash while creating it; holds nothing, so it goes.
    std::string stub = segment_path(_dir, 0, 3);
    std::vector<uint8_t> stub_bytes = segment_header(0);
    stub_bytes.resize(5);
    write_file(stub, stub_bytes);
    r = recover_segment(stub, error);
    EXPECT_EQ(error, "");
    EXPECT_TRUE(r.removed);
    EXPECT_FALSE(fs::exists(stub));

    r = recover_segment(_dir + "/missing.seg", error);
    EXPECT_NE(error, "");
}

TEST_F(SpoolSegmentFiles, ScanningAFileMatchesScanningItsImage) {
    Image img = three_records(4);
    std::string path = segment_path(_dir, 4, 9);
    write_file(path, img.bytes);
    std::string error;
    Seen seen;
    ScanReport r = scan_segment_file(
        path, [&](uint64_t offset, const JobRecord&) { seen.offsets.push_back(offset); }, error);
    EXPECT_EQ(error, "");
    EXPECT_EQ(r.records, 3u);
    EXPECT_EQ(r.shard, 4u);
    EXPECT_EQ(seen.offsets, img.offsets);

    scan_segment_file(_dir + "/nope.seg", nullptr, error);
    EXPECT_NE(error, "");
}
