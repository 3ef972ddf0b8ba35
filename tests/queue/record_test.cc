#include "portcullis/queue/record.hh"

#include "portcullis/queue/segment.hh"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::queue;

namespace {

JobMeta sample_meta(std::string_view route = "github") {
    JobMeta meta;
    meta.id = *JobId::parse("01jd3v8x7e0k4s9q2m6b5n1c8h");
    meta.route = route;
    meta.received_at_ns = 1795353480123456789;
    meta.peer = *base::PeerAddress::parse("203.0.113.5", 40312);
    return meta;
}

std::string all_bytes() {
    std::string s;
    for (int i = 0; i < 256; ++i) {
        s.push_back(static_cast<char>(i));
    }
    return s;
}

struct Decoded {
    DecodeStatus status;
    JobRecord record; // views into bytes
    size_t size = 0;
    std::unique_ptr<uint8_t[]> bytes;
};

// Decodes from a heap block of exactly the bytes given, so that ASan reports any read past them.
Decoded decode_exact(const std::vector<uint8_t>& bytes) {
    Decoded d;
    d.bytes = std::make_unique<uint8_t[]>(bytes.size());
    if (!bytes.empty()) {
        std::memcpy(d.bytes.get(), bytes.data(), bytes.size());
    }
    d.status = decode_record({d.bytes.get(), bytes.size()}, d.record, d.size);
    return d;
}

uint32_t load32(const std::vector<uint8_t>& r, size_t at) {
    return detail::load_le32(&r[at]);
}
void store32(std::vector<uint8_t>& r, size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) {
        r[at + i] = static_cast<uint8_t>(v >> (8 * i));
    }
}
void store16(std::vector<uint8_t>& r, size_t at, uint16_t v) {
    r[at] = static_cast<uint8_t>(v);
    r[at + 1] = static_cast<uint8_t>(v >> 8);
}
// Recomputes the checksum after a mutation, so that the field checks behind it are reached.
void reseal(std::vector<uint8_t>& r) {
    uint64_t sum = XXH3_64bits(r.data() + record_prefix_size, r.size() - record_prefix_size);
    store32(r, 8, static_cast<uint32_t>(sum));
    store32(r, 12, static_cast<uint32_t>(sum >> 32));
}

// Payload offsets (record.hh), counted from the start of the record.
constexpr size_t p = record_prefix_size;

} // namespace

TEST(SpoolRecord, RoundTripsRouteHeadersPeerAndBody) {
    struct Row {
        std::string name;
        std::string route;
        std::vector<std::pair<std::string, std::string>> headers;
        std::string body;
        std::string peer;
    };
    std::vector<std::pair<std::string, std::string>> many;
    many.reserve(300);
    for (int i = 0; i < 300; ++i) {
        many.emplace_back("X-Header-" + std::to_string(i), std::string(i % 7, 'v'));
    }
    const Row rows[] = {
        {"json body", "github", {{"X-GitHub-Event", "push"}}, R"({"a":1})", "203.0.113.5"},
        {"every byte value",
         "stripe",
         {{"Content-Type", "application/octet-stream"}},
         all_bytes(),
         "2001:db8::1"},
        {"empty body", "slack", {{"X-Slack-Signature", "v0=ab"}}, "", "::1"},
        {"no headers", "r", {}, "x", "0.0.0.0"},
        {"many headers, empty values", "many", many, "body", "198.51.100.7"},
        {"empty name and value", "e", {{"", ""}}, "", "10.0.0.1"},
        {"large body", "big", {{"a", "b"}}, std::string(1 << 20, '\x7f'), "10.0.0.2"},
    };
    for (const Row& row : rows) {
        SCOPED_TRACE(row.name);
        std::vector<http::Header> headers;
        for (const auto& [n, v] : row.headers) {
            headers.push_back({n, v});
        }
        JobMeta meta = sample_meta(row.route);
        meta.peer = *base::PeerAddress::parse(row.peer, 443);

        size_t head = job_record_head_size(meta.route, headers);
        std::vector<uint8_t> record(head + row.body.size());
        ASSERT_EQ(encode_job_head(meta, headers, record), head);
        std::memcpy(record.data() + head, row.body.data(), row.body.size());
        seal_record(record);
        EXPECT_EQ(record, make_job_record(meta, headers, row.body));

        Decoded d = decode_exact(record);
        ASSERT_EQ(d.status, DecodeStatus::ok);
        EXPECT_EQ(d.size, record.size());
        EXPECT_EQ(d.record.id, meta.id);
        EXPECT_EQ(d.record.route, row.route);
        EXPECT_EQ(d.record.received_at_ns, meta.received_at_ns);
        EXPECT_EQ(d.record.peer, meta.peer);
        EXPECT_EQ(d.record.header_count, row.headers.size());
        EXPECT_EQ(d.record.body.size(), row.body.size());
        EXPECT_TRUE(d.record.body == row.body);
        std::vector<std::pair<std::string, std::string>> seen;
        d.record.for_each_header([&](std::string_view n, std::string_view v) {
            seen.emplace_back(std::string(n), std::string(v));
        });
        EXPECT_EQ(seen, row.headers);
    }
}

TEST(SpoolRecord, WritesTheDocumentedLayout) {
    http::Header headers[] = {{"Ab", "xyz"}};
    std::vector<uint8_t> r = make_job_record(sample_meta("gh"), headers, "BODY");
    ASSERT_EQ(r.size(), 16u + 64u + 2u + (6u + 2u + 3u) + 4u);
    EXPECT_EQ(std::string(r.begin(), r.begin() + 4), "PCR1");
    EXPECT_EQ(load32(r, 4), r.size() - 16);
    EXPECT_EQ(detail::load_le64(&r[8]), XXH3_64bits(r.data() + 16, r.size() - 16));
    EXPECT_EQ(r[p + 0], 1);                     // type
    EXPECT_EQ(detail::load_le16(&r[p + 2]), 2); // route_len
    EXPECT_EQ(detail::load_le16(&r[p + 4]), 1); // header_count
    EXPECT_EQ(load32(r, p + 8), 11u);           // headers_len
    EXPECT_EQ(detail::load_le64(&r[p + 16]), 1795353480123456789u);
    EXPECT_EQ(r[p + 40 + 10], 0xff); // IPv4-mapped peer
    EXPECT_EQ(r[p + 40 + 12], 203);
    EXPECT_EQ(detail::load_le16(&r[p + 56]), 40312); // peer port
    EXPECT_EQ(std::string(r.begin() + p + 64, r.begin() + p + 66), "gh");
    EXPECT_EQ(detail::load_le16(&r[p + 66]), 2); // name_len
    EXPECT_EQ(load32(r, p + 68), 3u);            // value_len
    EXPECT_EQ(std::string(r.begin() + p + 72, r.begin() + p + 77), "Abxyz");
    EXPECT_EQ(std::string(r.end() - 4, r.end()), "BODY");
}

TEST(SpoolRecord, EveryDecodeStatusFromACraftedMutation) {
    http::Header headers[] = {{"X-One", "1"}, {"X-Two", "22"}};
    const std::vector<uint8_t> valid = make_job_record(sample_meta(), headers, "hello");
    const size_t headers_at = p + 64 + 6; // after "github"
    struct Row {
        std::string name;
        std::function<void(std::vector<uint8_t>&)> mutate;
        bool reseal;
        DecodeStatus expected;
    };
    const Row rows[] = {
        {"untouched", [](auto&) {}, false, DecodeStatus::ok},
        {"empty input", [](auto& r) { r.clear(); }, false, DecodeStatus::truncated},
        {"shorter than the prefix", [](auto& r) { r.resize(15); }, false, DecodeStatus::truncated},
        {"last byte missing", [](auto& r) { r.pop_back(); }, false, DecodeStatus::truncated},
        {"length past the end", [](auto& r) { store32(r, 4, load32(r, 4) + 1); }, false,
         DecodeStatus::truncated},
        {"length 4 GiB", [](auto& r) { store32(r, 4, 0xffffffff); }, false,
         DecodeStatus::truncated},
        {"magic", [](auto& r) { r[0] = 'p'; }, false, DecodeStatus::bad_magic},
        {"magic version", [](auto& r) { r[3] = '2'; }, false, DecodeStatus::bad_magic},
        {"all zero", [](auto& r) { std::fill(r.begin(), r.end(), 0); }, false,
         DecodeStatus::bad_magic},
        {"length 0", [](auto& r) { store32(r, 4, 0); }, false, DecodeStatus::bad_length},
        {"length below the fixed fields", [](auto& r) { store32(r, 4, 63); }, false,
         DecodeStatus::bad_length},
        {"a body byte", [](auto& r) { r.back() ^= 1; }, false, DecodeStatus::bad_checksum},
        {"a checksum byte", [](auto& r) { r[9] ^= 0x80; }, false, DecodeStatus::bad_checksum},
        {"a route byte", [](auto& r) { r[p + 64] = 'G'; }, false, DecodeStatus::bad_checksum},
        {"length one shorter", [](auto& r) { store32(r, 4, load32(r, 4) - 1); }, false,
         DecodeStatus::bad_checksum},
        {"type 2", [](auto& r) { r[p + 0] = 2; }, true, DecodeStatus::bad_fields},
        {"type 0", [](auto& r) { r[p + 0] = 0; }, true, DecodeStatus::bad_fields},
        {"flags", [](auto& r) { r[p + 1] = 1; }, true, DecodeStatus::bad_fields},
        {"reserved u16 at 6", [](auto& r) { r[p + 7] = 1; }, true, DecodeStatus::bad_fields},
        {"reserved u32 at 12", [](auto& r) { r[p + 15] = 1; }, true, DecodeStatus::bad_fields},
        {"reserved u16 at 58", [](auto& r) { r[p + 58] = 1; }, true, DecodeStatus::bad_fields},
        {"reserved u32 at 60", [](auto& r) { r[p + 63] = 0x80; }, true, DecodeStatus::bad_fields},
        {"route_len past the payload", [](auto& r) { store16(r, p + 2, 0xffff); }, true,
         DecodeStatus::bad_fields},
        {"headers_len past the payload", [](auto& r) { store32(r, p + 8, 0xfffffff0); }, true,
         DecodeStatus::bad_fields},
        {"headers_len one short", [](auto& r) { store32(r, p + 8, load32(r, p + 8) - 1); }, true,
         DecodeStatus::bad_fields},
        {"headers_len one long", [](auto& r) { store32(r, p + 8, load32(r, p + 8) + 1); }, true,
         DecodeStatus::bad_fields},
        {"one header more than stored", [](auto& r) { store16(r, p + 4, 3); }, true,
         DecodeStatus::bad_fields},
        {"one header less than stored", [](auto& r) { store16(r, p + 4, 1); }, true,
         DecodeStatus::bad_fields},
        {"name_len past the block", [&](auto& r) { store16(r, headers_at, 0xffff); }, true,
         DecodeStatus::bad_fields},
        {"value_len past the block", [&](auto& r) { store32(r, headers_at + 2, 0xfffffffe); }, true,
         DecodeStatus::bad_fields},
        {"trailing bytes after the record", [](auto& r) { r.push_back('P'); }, false,
         DecodeStatus::ok},
    };
    for (const Row& row : rows) {
        std::vector<uint8_t> r = valid;
        row.mutate(r);
        if (row.reseal) {
            reseal(r);
        }
        Decoded d = decode_exact(r);
        EXPECT_EQ(d.status, row.expected)
            << row.name << ": got " << describe(d.status) << ", want " << describe(row.expected);
        if (d.status == DecodeStatus::ok) {
            EXPECT_EQ(d.size, valid.size()) << row.name;
        }
    }
}

TEST(SpoolRecord, NeverReadsPastAnyTruncation) {
    http::Header headers[] = {{"X-One", "1"}, {"X-Two", "22"}, {"X-Three", ""}};
    const std::vector<uint8_t> valid = make_job_record(sample_meta(), headers, all_bytes());
    for (size_t n = 0; n < valid.size(); ++n) {
        std::vector<uint8_t> cut(valid.begin(), valid.begin() + static_cast<ptrdiff_t>(n));
        EXPECT_EQ(decode_exact(cut).status, DecodeStatus::truncated) << "first " << n << " bytes";
    }
    EXPECT_EQ(decode_exact(valid).status, DecodeStatus::ok);
}

TEST(SpoolRecord, HeaderWalkStaysInsideAForgedBlock) {
    // A JobRecord built by hand (not by decode_record) that claims more than its block holds.
    const uint8_t block[] = {3, 0, 200, 0, 0, 0, 'a', 'b', 'c', 'v'};
    JobRecord rec;
    rec.header_count = 5;
    rec.headers_block = std::string_view(reinterpret_cast<const char*>(block), sizeof block);
    int calls = 0;
    rec.for_each_header([&](std::string_view, std::string_view) { ++calls; });
    EXPECT_EQ(calls, 0);
}

TEST(SpoolRecord, EncodeRefusesWhatDoesNotFit) {
    http::Header headers[] = {{"X-One", "1"}};
    JobMeta meta = sample_meta();
    size_t head = job_record_head_size(meta.route, headers);
    std::vector<uint8_t> out(head - 1);
    EXPECT_EQ(encode_job_head(meta, headers, out), 0u);

    std::string long_route(70000, 'r');
    meta.route = long_route;
    out.resize(job_record_head_size(meta.route, headers));
    EXPECT_EQ(encode_job_head(meta, headers, out), 0u);
    EXPECT_TRUE(make_job_record(meta, headers, "").empty());

    std::string long_name(70000, 'n');
    http::Header bad_name[] = {{long_name, "v"}};
    meta.route = "github";
    out.resize(job_record_head_size(meta.route, bad_name));
    EXPECT_EQ(encode_job_head(meta, bad_name, out), 0u);
}

TEST(SpoolRecord, DescribesEveryStatusByName) {
    EXPECT_EQ(describe(DecodeStatus::ok), "ok");
    EXPECT_EQ(describe(DecodeStatus::truncated), "truncated");
    EXPECT_EQ(describe(DecodeStatus::bad_magic), "bad_magic");
    EXPECT_EQ(describe(DecodeStatus::bad_length), "bad_length");
    EXPECT_EQ(describe(DecodeStatus::bad_checksum), "bad_checksum");
    EXPECT_EQ(describe(DecodeStatus::bad_fields), "bad_fields");
}

// Writes the seed corpus of fuzz/spool_record_fuzz.cc; run by hand when the format changes:
//   PORTCULLIS_SPOOL_SEEDS=fuzz/spool_record-corpus build/tests/unit_tests
//       --gtest_also_run_disabled_tests --gtest_filter='SpoolRecordSeeds.*'
// The fuzz target reads each seed both as a record and as a segment's records.
TEST(SpoolRecordSeeds, DISABLED_WriteFuzzCorpus) {
    const char* dir = std::getenv("PORTCULLIS_SPOOL_SEEDS");
    ASSERT_NE(dir, nullptr) << "set PORTCULLIS_SPOOL_SEEDS to the corpus folder";
    std::filesystem::create_directories(dir);
    auto write = [&](const std::string& name, const std::vector<uint8_t>& bytes) {
        std::ofstream f(std::string(dir) + "/" + name, std::ios::binary | std::ios::trunc);
        f.write(reinterpret_cast<const char*>(bytes.data()),
                static_cast<std::streamsize>(bytes.size()));
        ASSERT_TRUE(f.good()) << name;
    };
    http::Header gh[] = {{"X-GitHub-Event", "push"}, {"Content-Type", "application/json"}};
    http::Header repeated[] = {{"X-Tag", "a"}, {"x-tag", "b"}, {"Empty", ""}};
    JobMeta v6 = sample_meta("stripe");
    v6.peer = *base::PeerAddress::parse("2001:db8::1", 443);
    auto a = make_job_record(sample_meta(), gh, R"({"zen":"Keep it logically awesome."})");
    auto b = make_job_record(v6, repeated, std::string("\x00\xff\x10\x80", 4));
    auto c = make_job_record(sample_meta("slack"), {}, "");
    write("record-json", a);
    write("record-binary-v6", b);
    write("record-empty", c);

    std::vector<uint8_t> three = a;
    three.insert(three.end(), b.begin(), b.end());
    three.insert(three.end(), c.begin(), c.end());
    write("records-three", three);

    std::vector<uint8_t> torn = three;
    torn.insert(torn.end(), a.begin(), a.begin() + 40);
    write("records-torn-tail", torn);

    std::vector<uint8_t> corrupt = three;
    corrupt[a.size() + 100] ^= 0x20; // inside the middle record
    write("records-corrupt-middle", corrupt);

    std::vector<uint8_t> zeros = a;
    zeros.resize(a.size() + 256, 0);
    write("records-zero-tail", zeros);

    std::vector<uint8_t> segment(segment_header_size);
    encode_segment_header(0, std::span<uint8_t, segment_header_size>(segment.data(), 16));
    segment.insert(segment.end(), three.begin(), three.end());
    write("segment-with-header", segment);
}

TEST(RecordKeys, RoundTripThroughTheKeysBlock) {
    JobMeta meta = sample_meta();
    meta.with_keys = true;
    std::vector<http::Header> headers = {{"X-GitHub-Delivery", "d-1"}};
    const std::string body = "{\"id\":1}";
    std::vector<uint8_t> rec = make_job_record(meta, headers, body);
    ASSERT_EQ(rec.size(), job_record_head_size(meta.route, headers, true) + body.size());
    // Without keys filled in, the block is there but says nothing.
    Decoded plain = decode_exact(rec);
    ASSERT_EQ(plain.status, DecodeStatus::ok);
    EXPECT_FALSE(plain.record.keys.has_dedup);
    EXPECT_FALSE(plain.record.keys.has_ordering);
    EXPECT_EQ(plain.record.body, body);

    RecordKeys keys;
    keys.has_dedup = true;
    keys.dedup_key = {1, 2};
    keys.body = {3, 4};
    keys.has_ordering = true;
    keys.ordering_key = {5, 6};
    keys.ordering_ts = -7;
    ASSERT_TRUE(set_record_keys(rec, keys));
    seal_record(rec);
    Decoded d = decode_exact(rec);
    ASSERT_EQ(d.status, DecodeStatus::ok);
    EXPECT_TRUE(d.record.keys.has_dedup);
    EXPECT_EQ(d.record.keys.dedup_key, (Fingerprint{1, 2}));
    EXPECT_EQ(d.record.keys.body, (Fingerprint{3, 4}));
    EXPECT_TRUE(d.record.keys.has_ordering);
    EXPECT_EQ(d.record.keys.ordering_key, (Fingerprint{5, 6}));
    EXPECT_EQ(d.record.keys.ordering_ts, -7);
    EXPECT_EQ(d.record.route, "github");
    EXPECT_EQ(d.record.body, body);
    int seen = 0;
    d.record.for_each_header([&](std::string_view name, std::string_view value) {
        EXPECT_EQ(name, "X-GitHub-Delivery");
        EXPECT_EQ(value, "d-1");
        ++seen;
    });
    EXPECT_EQ(seen, 1);

    // A record without the block has nowhere to put keys.
    std::vector<uint8_t> plain_rec = make_job_record(sample_meta(), headers, body);
    EXPECT_FALSE(set_record_keys(plain_rec, keys));
}

TEST(RecordKeys, UnknownFlagsOrKeysWithoutTheBlockAreRefused) {
    std::vector<http::Header> headers;
    constexpr size_t flags_at = record_prefix_size + 1;
    for (uint8_t flags : {uint8_t{0x10}, uint8_t{0x80}, record_flag_dedup, record_flag_ordering,
                          record_flag_source}) {
        std::vector<uint8_t> rec = make_job_record(sample_meta(), headers, "body");
        rec[flags_at] = flags;
        seal_record(rec);
        EXPECT_EQ(decode_exact(rec).status, DecodeStatus::bad_fields) << int(flags);
    }
}

// A job enqueued through the control plane: the token's name between the keys block and the
// route, its length in the u16 at offset 6, announced by record_flag_source.
TEST(RecordSource, RoundTripsWithAndWithoutKeys) {
    std::vector<http::Header> headers = {{"X-Trigger", "manual"}};
    for (bool with_keys : {false, true}) {
        JobMeta meta = sample_meta();
        meta.with_keys = with_keys;
        meta.source = "ops-bot";
        std::vector<uint8_t> rec = make_job_record(meta, headers, "body");
        ASSERT_EQ(rec.size(), job_record_head_size(meta.route, headers, with_keys, "ops-bot") + 4)
            << with_keys;
        EXPECT_EQ(detail::load_le16(&rec[p + 6]), 7u);
        EXPECT_EQ(rec[p + 1] & record_flag_source, record_flag_source);
        if (with_keys) {
            RecordKeys keys;
            keys.has_dedup = true;
            keys.dedup_key = {1, 2};
            ASSERT_TRUE(set_record_keys(rec, keys));
            seal_record(rec);
        }
        Decoded d = decode_exact(rec);
        ASSERT_EQ(d.status, DecodeStatus::ok) << with_keys;
        EXPECT_EQ(d.record.source, "ops-bot");
        EXPECT_EQ(d.record.route, meta.route);
        EXPECT_EQ(d.record.body, "body");
        EXPECT_EQ(d.record.keys.has_dedup, with_keys) << "set_record_keys keeps the source flag";
        std::vector<std::string> names;
        d.record.for_each_header(
            [&](std::string_view n, std::string_view) { names.emplace_back(n); });
        EXPECT_EQ(names, std::vector<std::string>{"X-Trigger"});
    }
    // A webhook of the public plane has none.
    Decoded plain = decode_exact(make_job_record(sample_meta(), headers, "body"));
    ASSERT_EQ(plain.status, DecodeStatus::ok);
    EXPECT_TRUE(plain.record.source.empty());
}

TEST(RecordSource, ALengthWithoutTheFlagOrTheFlagWithoutALengthIsRefused) {
    JobMeta meta = sample_meta();
    meta.source = "ops";
    std::vector<http::Header> headers;
    std::vector<uint8_t> rec = make_job_record(meta, headers, "body");
    ASSERT_EQ(decode_exact(rec).status, DecodeStatus::ok);
    std::vector<uint8_t> no_flag = rec;
    no_flag[p + 1] = 0;
    reseal(no_flag);
    EXPECT_EQ(decode_exact(no_flag).status, DecodeStatus::bad_fields);
    std::vector<uint8_t> too_long = rec;
    store16(too_long, p + 6, 0xffff);
    reseal(too_long);
    EXPECT_EQ(decode_exact(too_long).status, DecodeStatus::bad_fields);
    const std::string huge(70000, 'x');
    meta.source = huge;
    EXPECT_TRUE(make_job_record(meta, headers, "body").empty()) << "a source over 65535 bytes";
}
