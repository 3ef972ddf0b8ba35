#include "portcullis/queue/job_json.hh"

#include "portcullis/base/encoding.hh"
#include "portcullis/base/json_pointer.hh"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::queue;
using base::JsonStatus;
using base::JsonType;

namespace {

constexpr int64_t t0 = 1795353480123456789; // 2026-11-22T13:18:00.123456789Z

// A record as the spool holds it: encoded, then decoded, so that the views are the decoder's.
struct StoredJob {
    std::vector<uint8_t> bytes;
    JobRecord record;

    StoredJob(std::string_view body, std::vector<http::Header> headers = {},
              std::string_view peer = "203.0.113.5", std::string_view source = {}) {
        JobMeta meta;
        meta.source = source;
        meta.id = *JobId::parse("01jd3v8x7e0k4s9q2m6b5n1c8h");
        meta.route = "github";
        meta.received_at_ns = t0;
        meta.peer = *base::PeerAddress::parse(peer, 50000);
        bytes = make_job_record(meta, headers, body);
        size_t size = 0;
        EXPECT_EQ(decode_record(bytes, record, size), DecodeStatus::ok);
    }
};

std::string job_json(const StoredJob& job, uint32_t attempt = 1) {
    std::string out;
    append_job_json(out, job.record, attempt);
    return out;
}

// The member at `pointer`, which must be a string, decoded by the project's JSON scanner: it
// checks the whole document (valid JSON, strings valid UTF-8) on the way.
std::optional<std::string> string_at(std::string_view doc, std::string_view pointer) {
    const base::JsonLookup got = base::json_find(doc, pointer);
    if (got.status != JsonStatus::found || got.value.type != JsonType::string) {
        return std::nullopt;
    }
    std::string out(got.value.raw.size(), '\0');
    const std::optional<size_t> n = base::json_unescape(got.value.raw, out);
    if (!n) {
        return std::nullopt;
    }
    out.resize(*n);
    return out;
}

// The stored body as a consumer gets it back: unescaped, or base64-decoded.
std::optional<std::string> body_of(std::string_view doc) {
    std::optional<std::string> body = string_at(doc, "/body");
    const std::optional<std::string> encoding = string_at(doc, "/body_encoding");
    if (!body || !encoding) {
        return std::nullopt;
    }
    if (*encoding == "utf8") {
        return body;
    }
    if (*encoding != "base64") {
        return std::nullopt;
    }
    std::string bytes(base::base64_decoded_max_size(body->size()), '\0');
    const std::optional<size_t> n = base::base64_decode(
        *body, std::span<uint8_t>(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size()));
    if (!n) {
        return std::nullopt;
    }
    bytes.resize(*n);
    return bytes;
}

std::string every_control_char() {
    std::string s;
    for (int c = 0; c < 0x20; ++c) {
        s.push_back(static_cast<char>(c));
    }
    s.push_back('\x7f');
    return s;
}

} // namespace

TEST(JobJson, WritesEveryFieldInTheSpecOrder) {
    const StoredJob job(R"({"zen":"hi"})",
                        {{"X-GitHub-Event", "push"}, {"Content-Type", "application/json"}});
    EXPECT_EQ(job_json(job, 3),
              R"({"id":"01jd3v8x7e0k4s9q2m6b5n1c8h","route":"github",)"
              R"("received_at":"2026-11-22T13:18:00.123Z","attempt":3,"source_ip":"203.0.113.5",)"
              R"("headers":{"x-github-event":"push","content-type":"application/json"},)"
              R"("body":"{\"zen\":\"hi\"}","body_encoding":"utf8"})");
    std::string dump;
    append_job_json(dump, job.record);
    EXPECT_EQ(dump.find("attempt"), std::string::npos);
    EXPECT_EQ(base::json_find(dump, "").status, JsonStatus::found);
}

TEST(JobJson, AJobEnqueuedThroughTheControlPlaneNamesItsToken) {
    const StoredJob job("{}", {}, "127.0.0.1", "ops");
    EXPECT_EQ(job_json(job, 1),
              R"({"id":"01jd3v8x7e0k4s9q2m6b5n1c8h","route":"github",)"
              R"("received_at":"2026-11-22T13:18:00.123Z","attempt":1,"source_ip":"127.0.0.1",)"
              R"("enqueued_by":"ops","headers":{},"body":"{}","body_encoding":"utf8"})");
}

TEST(JobJson, BodiesRoundTripByteForByte) {
    struct Row {
        const char* what;
        std::string body;
        const char* encoding;
    };
    const Row rows[] = {
        {"empty", "", "utf8"},
        {"ascii", "plain text, with spaces", "utf8"},
        {"json", R"({"a":[1,2.5,null],"b":"c"})", "utf8"},
        {"multibyte", "na\xc3\xafve \xe2\x82\xac \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87",
         "utf8"},
        {"every control char", every_control_char(), "utf8"},
        {"quotes and backslashes", R"(say "hi" \ \\ \" \u0041 \n)", "utf8"},
        {"U+2028 and U+2029", "\xe2\x80\xa8\xe2\x80\xa9", "utf8"},
        {"U+10FFFF", "\xf4\x8f\xbf\xbf", "utf8"},
        {"overlong slash",
         "a\xc0\xaf"
         "b",
         "base64"},
        {"overlong NUL", "\xc0\x80", "base64"},
        {"lone surrogate", "x\xed\xa0\x80y", "base64"},
        {"past U+10FFFF", "\xf4\x90\x80\x80", "base64"},
        {"F5 lead", "\xf5\x80\x80\x80", "base64"},
        {"truncated sequence at the end", "ok \xe2\x82", "base64"},
        {"truncated sequence inside", "\xe2\x82 ok", "base64"},
        {"stray continuation", "\x80", "base64"},
        {"binary", std::string("\x00\xff\x10\x80", 4), "base64"},
        {"binary, one byte", "\xff", "base64"},
        {"binary, two bytes", "\xff\xfe", "base64"},
    };
    for (const Row& row : rows) {
        SCOPED_TRACE(row.what);
        const StoredJob job(row.body);
        const std::string json = job_json(job);
        EXPECT_EQ(string_at(json, "/body_encoding"), row.encoding);
        EXPECT_EQ(body_of(json), row.body);
    }
}

TEST(JobJson, EscapesOnlyWhatJsonRequires) {
    const StoredJob job(std::string("\"\\/\n\t\x01\x1f\x7f\xc3\xa9", 10));
    const std::string json = job_json(job);
    // Non-ASCII UTF-8 and DEL stay raw; '/' needs no escape.
    EXPECT_NE(json.find(R"("body":"\"\\/\n\t\u0001\u001f)"
                        "\x7f\xc3\xa9\""),
              std::string::npos)
        << json;
}

TEST(JobJson, RepeatedHeadersAreJoinedInOrder) {
    const StoredJob job("", {{"X-Tag", "a"},
                             {"Stripe-Signature", "t=1,v1=ab"},
                             {"x-tag", "b"},
                             {"Accept", ""},
                             {"X-TAG", "c"}});
    const std::string json = job_json(job);
    EXPECT_NE(json.find(R"("headers":{"x-tag":"a, b, c","stripe-signature":"t=1,v1=ab",)"
                        R"("accept":""})"),
              std::string::npos)
        << json;
    EXPECT_EQ(string_at(json, "/headers/x-tag"), "a, b, c");
}

TEST(JobJson, HeaderValuesRoundTrip) {
    const StoredJob job("", {{"X-Quote", R"(say "hi" \o/)"},
                             {"X-Utf8", "caf\xc3\xa9"},
                             {"X-Latin1", "caf\xe9"},
                             {"X-Mixed", "\xc3\xa9\xff"}});
    const std::string json = job_json(job);
    EXPECT_EQ(string_at(json, "/headers/x-quote"), R"(say "hi" \o/)");
    EXPECT_EQ(string_at(json, "/headers/x-utf8"), "caf\xc3\xa9");
    // Not UTF-8: the ISO-8859-1 reading, every byte one code point, so that each byte comes
    // back by encoding the string as Latin-1.
    EXPECT_NE(json.find(R"("x-latin1":"caf\u00e9")"), std::string::npos) << json;
    EXPECT_NE(json.find(R"("x-mixed":"\u00c3\u00a9\u00ff")"), std::string::npos) << json;
}

TEST(JobJson, SourceIpHasNoPortAndNoMappedPrefix) {
    EXPECT_EQ(string_at(job_json(StoredJob("", {}, "2001:db8::1")), "/source_ip"), "2001:db8::1");
    EXPECT_EQ(string_at(job_json(StoredJob("", {}, "::1")), "/source_ip"), "::1");
    EXPECT_EQ(string_at(job_json(StoredJob("", {}, "198.51.100.7")), "/source_ip"), "198.51.100.7");
}

TEST(JobJson, AppendsToWhatIsThere) {
    const StoredJob a("one");
    const StoredJob b("\xff");
    std::string out = "{\"jobs\":[";
    append_job_json(out, a.record, 1);
    out += ",";
    append_job_json(out, b.record, 2);
    out += "]}";
    EXPECT_EQ(base::json_find(out, "/jobs/1/attempt").value.raw, "2");
    EXPECT_EQ(string_at(out, "/jobs/0/body"), "one");
    EXPECT_EQ(string_at(out, "/jobs/1/body"), "/w==");
}
