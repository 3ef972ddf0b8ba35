#include "portcullis/queue/spool_tool.hh"

#include "portcullis/queue/ledger.hh"
#include "portcullis/queue/segment.hh"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::queue;
namespace fs = std::filesystem;

namespace {

constexpr int64_t t0 = 1795353480123456789; // 2026-11-22T13:18:00.123456789Z

std::vector<uint8_t> record(std::string_view id, std::string_view route, int64_t at,
                            std::string_view peer, std::vector<http::Header> headers,
                            std::string_view body) {
    JobMeta meta;
    meta.id = *JobId::parse(id);
    meta.route = route;
    meta.received_at_ns = at;
    meta.peer = *base::PeerAddress::parse(peer, 50000);
    return make_job_record(meta, headers, body);
}

const std::vector<uint8_t> job_a =
    record("01jd3v8x7e0k4s9q2m6b5n1c8h", "github", t0, "203.0.113.5",
           {{"X-GitHub-Event", "push"}, {"Content-Type", "application/json"}}, R"({"zen":"hi"})");
const std::vector<uint8_t> job_b =
    record("01jd3v8x7e0k4s9q2m6b5n1c8j", "stripe", t0 + 1'000'000'000, "2001:db8::1",
           {{"X-Tag", "a"}, {"Stripe-Signature", "t=1,v1=ab"}, {"x-tag", "b"}, {"X-TAG", "c"}},
           std::string_view("\x00\xff\x10\x80", 4));
const std::vector<uint8_t> job_c =
    record("01jd3v8x7e0k4s9q2m6b5n1c8k", "github", t0 + 2'000'000, "198.51.100.7", {}, "");
const std::vector<uint8_t> job_d = record("01jd3v8x7e0k4s9q2m6b5n1c8m", "github", 0, "::1",
                                          {{"X-Quote", "say \"hi\""}}, "line1\nna\xc3\xafve");

const std::string line_a =
    R"({"id":"01jd3v8x7e0k4s9q2m6b5n1c8h","route":"github","received_at":"2026-11-22T13:18:00.123Z",)"
    R"("source_ip":"203.0.113.5","headers":{"x-github-event":"push","content-type":"application/json"},)"
    R"("body":"{\"zen\":\"hi\"}","body_encoding":"utf8"})";
const std::string line_b =
    R"({"id":"01jd3v8x7e0k4s9q2m6b5n1c8j","route":"stripe","received_at":"2026-11-22T13:18:01.123Z",)"
    R"("source_ip":"2001:db8::1","headers":{"x-tag":"a, b, c","stripe-signature":"t=1,v1=ab"},)"
    R"("body":"AP8QgA==","body_encoding":"base64"})";
const std::string line_c =
    R"({"id":"01jd3v8x7e0k4s9q2m6b5n1c8k","route":"github","received_at":"2026-11-22T13:18:00.125Z",)"
    R"("source_ip":"198.51.100.7","headers":{},"body":"","body_encoding":"utf8"})";
const std::string line_d =
    R"({"id":"01jd3v8x7e0k4s9q2m6b5n1c8m","route":"github","received_at":"1970-01-01T00:00:00.000Z",)"
    R"("source_ip":"::1","headers":{"x-quote":"say \"hi\""},)"
    "\"body\":\"line1\\nna\xc3\xafve\",\"body_encoding\":\"utf8\"}";

// Public: the table rows of VerifyExitCodes set the spool up through it.
class SpoolTool : public ::testing::Test {
public:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "portcullis-spool-XXXXXX").native();
        ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
        _dir = tmpl;
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(_dir, ec);
    }

    // shard-0/…01.seg: a, b; shard-0/…02.seg: c; shard-1/…00.seg: d. Written out of order so
    // that the listing's order is what is tested.
    void write_known_spool() {
        write_segment(1, 0, 1, {job_d});
        write_segment(0, 2, 0, {job_c});
        write_segment(0, 1, 0, {job_a, job_b});
    }

    std::string write_segment(uint32_t folder_shard, uint64_t seq, uint32_t header_shard,
                              const std::vector<std::vector<uint8_t>>& records,
                              const std::vector<uint8_t>& tail = {}) {
        std::vector<uint8_t> bytes(segment_header_size);
        encode_segment_header(header_shard,
                              std::span<uint8_t, segment_header_size>(bytes.data(), bytes.size()));
        for (const auto& r : records) {
            bytes.insert(bytes.end(), r.begin(), r.end());
        }
        bytes.insert(bytes.end(), tail.begin(), tail.end());
        std::string path = segment_path(_dir, folder_shard, seq);
        fs::create_directories(fs::path(path).parent_path());
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f.write(reinterpret_cast<const char*>(bytes.data()),
                static_cast<std::streamsize>(bytes.size()));
        return path;
    }

    struct Run {
        int code;
        std::string out;
        std::string err;
    };
    Run dump(std::optional<std::string> route = std::nullopt) {
        std::ostringstream out;
        std::ostringstream err;
        int code = spool_dump(_dir, std::move(route), out, err);
        return {code, out.str(), err.str()};
    }
    Run verify(const std::string& dir) {
        std::ostringstream out;
        std::ostringstream err;
        int code = spool_verify(dir, out, err);
        return {code, out.str(), err.str()};
    }

    std::string _dir;
};

std::string last_line(const std::string& s) {
    size_t end = s.empty() || s.back() != '\n' ? s.size() : s.size() - 1;
    size_t start = s.rfind('\n', end == 0 ? 0 : end - 1);
    return s.substr(start == std::string::npos ? 0 : start + 1, end - (start + 1));
}

} // namespace

TEST_F(SpoolTool, DumpsEveryJobAsOneJsonLineInSpoolOrder) {
    write_known_spool();
    Run r = dump();
    EXPECT_EQ(r.code, 0);
    EXPECT_EQ(r.err, "");
    EXPECT_EQ(r.out, line_a + "\n" + line_b + "\n" + line_c + "\n" + line_d + "\n");
}

TEST_F(SpoolTool, DumpFiltersByRoute) {
    write_known_spool();
    Run github = dump("github");
    EXPECT_EQ(github.code, 0);
    EXPECT_EQ(github.out, line_a + "\n" + line_c + "\n" + line_d + "\n");
    Run stripe = dump("stripe");
    EXPECT_EQ(stripe.out, line_b + "\n");
    Run none = dump("slack");
    EXPECT_EQ(none.code, 0);
    EXPECT_EQ(none.out, "");
}

TEST_F(SpoolTool, DumpSkipsDamageAndSaysSo) {
    std::vector<uint8_t> bad = job_b;
    bad[bad.size() - 2] ^= 1;
    write_segment(0, 1, 0, {job_a, bad, job_c},
                  std::vector<uint8_t>(job_d.begin(), job_d.end() - 1));
    Run r = dump();
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.out, line_a + "\n" + line_c + "\n");
    EXPECT_NE(r.err.find("shard-0/0000000000000001.seg: skipped"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("bad_checksum"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("torn tail of " + std::to_string(job_d.size() - 1) + " bytes"),
              std::string::npos)
        << r.err;
    // No body bytes in messages.
    EXPECT_EQ(r.err.find("zen"), std::string::npos);
}

TEST_F(SpoolTool, DumpOfAMissingDirIsUsageError) {
    std::ostringstream out;
    std::ostringstream err;
    EXPECT_EQ(spool_dump(_dir + "/missing", std::nullopt, out, err), 2);
    EXPECT_NE(err.str(), "");
}

TEST_F(SpoolTool, VerifyReportsAnIntactSpool) {
    write_known_spool();
    Run r = verify(_dir);
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(r.err, "");
    const uint64_t first = segment_header_size + job_a.size() + job_b.size();
    EXPECT_NE(r.out.find("shard-0/0000000000000001.seg: 2 records, " + std::to_string(first) +
                         " bytes: ok\n"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("shard-1/0000000000000000.seg: 1 record, "), std::string::npos);
    EXPECT_NE(r.out.find("total: 3 segments, 4 records, "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("disk: spool "), std::string::npos) << r.out;
    EXPECT_EQ(last_line(r.out), "spool intact: 3 segments, 4 valid records");
}

TEST_F(SpoolTool, VerifyExitCodes) {
    struct Row {
        std::string name;
        std::function<void(SpoolTool&)> setup;
        int code;
        std::string expect_in_out;
    };
    std::vector<uint8_t> flipped = job_b;
    flipped[40] ^= 0x10;
    const Row rows[] = {
        {"empty spool", [](SpoolTool&) {}, 0, "spool intact: 0 segments, 0 valid records"},
        {"zero-filled tail",
         [](SpoolTool& t) { t.write_segment(0, 1, 0, {job_a}, std::vector<uint8_t>(512, 0)); }, 0,
         "preallocated space at offset"},
        {"torn tail",
         [](SpoolTool& t) {
             t.write_segment(0, 1, 0, {job_a},
                             std::vector<uint8_t>(job_b.begin(), job_b.begin() + 20));
         },
         1,
         "torn tail at offset " + std::to_string(segment_header_size + job_a.size()) +
             ": 20 bytes (truncated)"},
        {"corrupt middle",
         [&](SpoolTool& t) {
             t.write_segment(0, 1, 0, {job_a, flipped, job_c});
         },
         1,
         "corrupt region at offset " + std::to_string(segment_header_size + job_a.size()) + ": " +
             std::to_string(job_b.size()) + " bytes skipped (bad_checksum)"},
        {"header of another shard", [](SpoolTool& t) { t.write_segment(0, 1, 3, {job_a}); }, 1,
         "bad header: header names shard 3 but the file is in shard-0"},
        {"bad header magic",
         [](SpoolTool& t) {
             std::string path = t.write_segment(0, 1, 0, {job_a});
             std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
             f.write("X", 1);
         },
         1, "bad header: bad segment magic"},
    };
    for (const Row& row : rows) {
        SCOPED_TRACE(row.name);
        TearDown();
        SetUp();
        row.setup(*this);
        Run r = verify(_dir);
        EXPECT_EQ(r.code, row.code) << r.out << r.err;
        EXPECT_NE(r.out.find(row.expect_in_out), std::string::npos) << r.out;
        if (row.code == 1) {
            EXPECT_TRUE(last_line(r.out).starts_with("spool damaged: 1 segment of 1 damaged, "))
                << r.out;
        }
    }
}

TEST_F(SpoolTool, VerifyOfAMissingDirIsUsageError) {
    Run r = verify(_dir + "/missing");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("missing"), std::string::npos) << r.err;
}

TEST_F(SpoolTool, VerifyReportsEntriesTheSpoolDoesNotKnow) {
    write_known_spool();
    // A stray file and folder are only in the way; a segment under a name serve does not read
    // (renamed, or in a folder that is not a shard's) hides its jobs: that is damage.
    { std::ofstream(_dir + "/notes.txt") << "hello"; }
    fs::create_directories(_dir + "/shard-abc");
    fs::copy_file(segment_path(_dir, 0, 2), _dir + "/zzz.seg");
    fs::rename(segment_path(_dir, 1, 0), _dir + "/shard-1/00000000000000000001.seg");
    fs::create_directories(_dir + "/shard-01");
    fs::copy_file(segment_path(_dir, 0, 1), _dir + "/shard-01/0000000000000001.seg");
    Run r = verify(_dir);
    EXPECT_EQ(r.code, 1) << r.out;
    for (const char* hidden : {"unrecognised: shard-01: holds spool segments",
                               "unrecognised: shard-1/00000000000000000001.seg: holds spool",
                               "unrecognised: zzz.seg: holds spool segments"}) {
        EXPECT_NE(r.out.find(hidden), std::string::npos) << hidden << "\n" << r.out;
    }
    for (const char* ignored : {"unrecognised: notes.txt: not the spool's; ignored by serve",
                                "unrecognised: shard-abc: not the spool's; ignored by serve"}) {
        EXPECT_NE(r.out.find(ignored), std::string::npos) << ignored << "\n" << r.out;
    }
    EXPECT_EQ(last_line(r.out), "spool damaged: 0 segments of 2 damaged, 3 valid records; 3 "
                                "entries hide segments; 2 unrecognised entries ignored");
}

TEST_F(SpoolTool, VerifyOfAStrayFileAloneSaysIntactAndNamesIt) {
    write_known_spool();
    { std::ofstream(_dir + "/README") << "hello"; }
    { std::ofstream(_dir + "/portcullis.lock") << "123\n"; }
    { std::ofstream(_dir + "/ledger.log"); }
    Run r = verify(_dir);
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("unrecognised: README: not the spool's"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("portcullis.lock"), std::string::npos) << r.out;
    EXPECT_EQ(last_line(r.out),
              "spool intact: 3 segments, 4 valid records; 1 unrecognised entry ignored");
}

TEST_F(SpoolTool, VerifyReportsEveryCopyOfAJobId) {
    write_segment(0, 1, 0, {job_a, job_b});
    write_segment(1, 1, 1, {job_c, job_a});
    write_segment(1, 2, 1, {job_a});
    Run r = verify(_dir);
    EXPECT_EQ(r.code, 1) << r.out;
    const std::string id = "01jd3v8x7e0k4s9q2m6b5n1c8h";
    const std::string first = "duplicate job id " + id +
                              ": shard-0/0000000000000001.seg at offset " +
                              std::to_string(segment_header_size) + " and ";
    EXPECT_NE(r.out.find(first + "shard-1/0000000000000001.seg at offset " +
                         std::to_string(segment_header_size + job_c.size())),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find(first + "shard-1/0000000000000002.seg at offset " +
                         std::to_string(segment_header_size)),
              std::string::npos)
        << r.out;
    EXPECT_TRUE(last_line(r.out).ends_with("; 2 duplicate job ids")) << r.out;
}

TEST_F(SpoolTool, VerifyRefusesTheLastSegmentNumber) {
    write_segment(0, UINT64_MAX, 0, {job_a});
    Run r = verify(_dir);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("shard-0/ffffffffffffffff.seg: 1 record, "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("the largest segment number there is"), std::string::npos) << r.out;
}

TEST_F(SpoolTool, VerifyChecksTheLedger) {
    write_known_spool();
    LedgerOp op;
    op.kind = LedgerOp::Kind::ack;
    std::vector<uint8_t> ledger(3 * ledger_record_size);
    for (size_t i = 0; i < 3; ++i) {
        op.id.bytes[0] = static_cast<uint8_t>(i);
        encode_ledger_op(op, std::span<uint8_t, ledger_record_size>(
                                 ledger.data() + i * ledger_record_size, ledger_record_size));
    }
    auto write_ledger = [&](const std::vector<uint8_t>& bytes) {
        std::ofstream f(_dir + "/ledger.log", std::ios::binary | std::ios::trunc);
        f.write(reinterpret_cast<const char*>(bytes.data()),
                static_cast<std::streamsize>(bytes.size()));
    };
    write_ledger(ledger);
    Run ok = verify(_dir);
    EXPECT_EQ(ok.code, 0) << ok.out;
    EXPECT_NE(ok.out.find("ledger.log: 3 ops, 144 bytes: ok\n"), std::string::npos) << ok.out;

    std::vector<uint8_t> damaged = ledger;
    damaged[ledger_record_size + 9] ^= 1;
    damaged.resize(damaged.size() + 20, 'x');
    write_ledger(damaged);
    Run bad = verify(_dir);
    EXPECT_EQ(bad.code, 1) << bad.out;
    EXPECT_NE(bad.out.find("ledger.log: 2 ops, 164 bytes: DAMAGED\n"
                           "  damaged region at offset 48: 48 bytes skipped"),
              std::string::npos)
        << bad.out;
    EXPECT_NE(bad.out.find("  torn tail at offset 144: 20 bytes; serve cuts it at start-up\n"),
              std::string::npos)
        << bad.out;
    EXPECT_EQ(last_line(bad.out), "spool damaged: 0 segments of 3 damaged, 4 valid records; "
                                  "ledger damaged");
    EXPECT_EQ(fs::file_size(_dir + "/ledger.log"), damaged.size()) << "verify only reads";
}
