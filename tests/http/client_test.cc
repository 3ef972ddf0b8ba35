#include "portcullis/http/client.hh"
#include "portcullis/http/parser.hh"
#include "portcullis/http/response.hh"

#include "../guard_page.hh"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

using namespace portcullis::http;
using namespace std::string_literals;
using portcullis::testing_support::GuardedBuffer;

namespace {

// ---------------------------------------------------------------------------------------------
// write_request

std::string written(const OutgoingRequest& r, size_t capacity = 4096) {
    std::string out(capacity, '\0');
    out.resize(write_request(out, r));
    return out;
}

TEST(WriteRequest, WritesTheHeadOnly) {
    const std::array<Header, 2> fields = {
        {{"Content-Type", "application/json"}, {"Portcullis-Job-Id", "01J0000000000000000000000"}}};
    const OutgoingRequest r{.method = "POST",
                            .target = "/hooks/github?x=1",
                            .host = "app.internal",
                            .port = 8443,
                            .tls = true,
                            .headers = fields,
                            .content_length = 1234};
    EXPECT_EQ(written(r), "POST /hooks/github?x=1 HTTP/1.1\r\n"
                          "Host: app.internal:8443\r\n"
                          "Content-Type: application/json\r\n"
                          "Portcullis-Job-Id: 01J0000000000000000000000\r\n"
                          "Content-Length: 1234\r\n"
                          "Connection: keep-alive\r\n"
                          "\r\n");
}

TEST(WriteRequest, HostCarriesThePortOnlyWhenNotTheDefault) {
    struct Row {
        std::string_view host;
        uint16_t port;
        bool tls;
        std::string_view expected;
    };
    const Row rows[] = {
        {"a.example", 0, false, "Host: a.example\r\n"},
        {"a.example", 80, false, "Host: a.example\r\n"},
        {"a.example", 443, false, "Host: a.example:443\r\n"},
        {"a.example", 443, true, "Host: a.example\r\n"},
        {"a.example", 80, true, "Host: a.example:80\r\n"},
        {"10.0.0.7", 8080, false, "Host: 10.0.0.7:8080\r\n"},
        {"[::1]", 8443, true, "Host: [::1]:8443\r\n"},
        {"[2001:db8::7]", 0, true, "Host: [2001:db8::7]\r\n"},
        // The sink's configuration keeps IPv6 addresses without brackets.
        {"::1", 8080, false, "Host: [::1]:8080\r\n"},
        {"2001:db8::7", 443, true, "Host: [2001:db8::7]\r\n"},
        {"::ffff:10.0.0.7", 0, false, "Host: [::ffff:10.0.0.7]\r\n"},
    };
    for (const Row& row : rows) {
        const std::string head =
            written({.target = "/", .host = row.host, .port = row.port, .tls = row.tls});
        EXPECT_NE(head.find("\r\n"s + std::string(row.expected)), std::string::npos)
            << row.host << " " << row.port << " " << row.tls << ": " << head;
    }
}

TEST(WriteRequest, ConnectionAndContentLength) {
    EXPECT_EQ(written({.method = "POST", .target = "/", .host = "a", .close = true}),
              "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    // RFC 9110 section 8.6: no Content-Length for a GET or HEAD without content.
    EXPECT_EQ(written({.method = "GET", .target = "/health", .host = "a"}),
              "GET /health HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
    EXPECT_EQ(written({.method = "HEAD", .target = "/", .host = "a"}),
              "HEAD / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
    EXPECT_EQ(written({.method = "PUT", .target = "/", .host = "a", .content_length = 7}),
              "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\nConnection: keep-alive\r\n\r\n");
    EXPECT_EQ(written({.method = "GET", .target = "/", .host = "a", .content_length = 2}),
              "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
    const std::string big = written({.target = "/", .host = "a", .content_length = UINT64_MAX});
    EXPECT_NE(big.find("Content-Length: 18446744073709551615\r\n"), std::string::npos) << big;
}

TEST(WriteRequest, ReturnsZeroWhenTheHeadDoesNotFit) {
    const std::array<Header, 3> fields = {{{"A", "1"}, {"B", "22"}, {"C", ""}}};
    const OutgoingRequest r{.target = "/x", .host = "h", .headers = fields, .content_length = 9};
    const std::string whole = written(r);
    ASSERT_FALSE(whole.empty());
    for (size_t capacity = 0; capacity < whole.size(); ++capacity) {
        std::string out(capacity, '\0');
        EXPECT_EQ(write_request(out, r), 0u) << capacity;
    }
    std::string exact(whole.size(), '\0');
    EXPECT_EQ(write_request(exact, r), whole.size());
    EXPECT_EQ(exact, whole);
}

TEST(WriteRequest, RefusesWhatCouldSplitTheRequest) {
    struct Row {
        OutgoingRequest request;
        std::string_view detail;
    };
    // Header values as a webhook sender could have set them, were they not checked.
    const std::string smuggled_crlf = "x\r\nContent-Length: 0\r\n\r\nPOST /admin HTTP/1.1";
    const std::string nul = "a\0b"s;
    const std::vector<std::pair<Header, std::string_view>> header_rows = {
        {{"X-A", smuggled_crlf}, "bad_header_value"},
        {{"X-A", "a\nb"}, "bad_header_value"},
        {{"X-A", "a\rb"}, "bad_header_value"},
        {{"X-A", "a\r"}, "bad_header_value"},
        {{"X-A", nul}, "bad_header_value"},
        {{"X-A", "a\x01"}, "bad_header_value"},
        {{"X-A", "a\x7f"}, "bad_header_value"},
        {{"X-A\r\nX-B", "v"}, "bad_header_name"},
        {{"X A", "v"}, "bad_header_name"},
        {{"X-A:", "v"}, "bad_header_name"},
        {{"", "v"}, "bad_header_name"},
        {{"X-\xc3\xa9", "v"}, "bad_header_name"},
        {{"Host", "evil.example"}, "reserved_header"},
        {{"content-length", "0"}, "reserved_header"},
        {{"Transfer-Encoding", "chunked"}, "reserved_header"},
        {{"CONNECTION", "close"}, "reserved_header"},
    };
    std::vector<Row> rows = {
        {{.method = "PO ST", .target = "/", .host = "a"}, "bad_method"},
        {{.method = "", .target = "/", .host = "a"}, "bad_method"},
        {{.method = "POST\r\n", .target = "/", .host = "a"}, "bad_method"},
        {{.target = "", .host = "a"}, "bad_target"},
        {{.target = "hooks", .host = "a"}, "bad_target"},
        {{.target = "http://a/", .host = "a"}, "bad_target"},
        {{.target = "/a b", .host = "a"}, "bad_target"},
        {{.target = "/a\r\nX: y", .host = "a"}, "bad_target"},
        {{.target = "/\xc3\xa9", .host = "a"}, "bad_target"},
        {{.target = "/", .host = ""}, "bad_host"},
        {{.target = "/", .host = "a b"}, "bad_host"},
        {{.target = "/", .host = "a\r\nX: y"}, "bad_host"},
        {{.target = "/", .host = "a/b"}, "bad_host"},
        {{.target = "/", .host = "a:80"}, "bad_host"},
        {{.target = "/", .host = "::1%eth0"}, "bad_host"},
        {{.target = "/", .host = "::1]"}, "bad_host"},
        {{.target = "/", .host = "user@a"}, "bad_host"},
        {{.target = "/", .host = "[::1"}, "bad_host"},
        {{.target = "/", .host = "[]"}, "bad_host"},
        {{.target = "/", .host = "[::1]x]"}, "bad_host"},
    };
    // Each bad field after a good one, so that the check is not of the first field only. The
    // storage does not move: the rows' spans point into it.
    std::vector<std::array<Header, 2>> storage;
    storage.reserve(header_rows.size());
    for (const auto& [field, detail] : header_rows) {
        storage.push_back({{{"X-Good", "1"}, field}});
        rows.push_back({{.target = "/", .host = "a", .headers = storage.back()}, detail});
    }
    for (const Row& row : rows) {
        std::string out(4096, '\0');
        EXPECT_EQ(write_request(out, row.request), 0u) << row.detail;
        EXPECT_EQ(request_refusal(row.request), row.detail)
            << row.request.method << " " << row.request.target << " " << row.request.host;
    }
}

TEST(WriteRequest, AcceptsHtabObsTextAndEmptyValues) {
    const std::array<Header, 3> fields = {
        {{"X-Tab", "a\tb"}, {"X-Utf8", "caf\xc3\xa9"}, {"X-Empty", ""}}};
    const OutgoingRequest r{.target = "/", .host = "a", .headers = fields};
    EXPECT_EQ(request_refusal(r), "");
    EXPECT_EQ(written(r), "POST / HTTP/1.1\r\nHost: a\r\nX-Tab: a\tb\r\nX-Utf8: caf\xc3\xa9\r\n"
                          "X-Empty: \r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
}

// What the writer sends, the strict server parser reads back field for field.
TEST(WriteRequest, RoundTripsThroughTheRequestParser) {
    std::vector<Header> fields;
    std::vector<std::string> names;
    std::vector<std::string> values;
    for (int i = 0; i < 12; ++i) {
        names.push_back("X-Field-" + std::to_string(i));
        values.push_back("v" + std::string(static_cast<size_t>(i) * 7, 'v') + "\t!~\x80");
    }
    for (size_t i = 0; i < names.size(); ++i) {
        fields.push_back({names[i], values[i]});
    }
    const OutgoingRequest r{.target = "/hooks/a%20b?q=1",
                            .host = "app.internal",
                            .port = 9000,
                            .headers = fields,
                            .content_length = 1024};
    const std::string head = written(r);
    ASSERT_FALSE(head.empty());
    std::array<Header, 64> storage;
    RequestHead parsed;
    const HeadResult res = parse_head(head, 0, Limits{}, storage, parsed);
    ASSERT_EQ(res.error, Error::none) << res.detail;
    EXPECT_EQ(res.consumed, head.size());
    EXPECT_EQ(parsed.method, "POST");
    EXPECT_EQ(parsed.target, "/hooks/a%20b?q=1");
    EXPECT_EQ(parsed.host, "app.internal:9000");
    EXPECT_EQ(parsed.framing, BodyFraming::content_length);
    EXPECT_EQ(parsed.content_length, 1024u);
    EXPECT_TRUE(parsed.keep_alive);
    ASSERT_EQ(parsed.headers.size(), fields.size() + 3); // Host, Content-Length, Connection
    for (size_t i = 0; i < fields.size(); ++i) {
        EXPECT_EQ(parsed.headers[i + 1].name, fields[i].name);
        EXPECT_EQ(parsed.headers[i + 1].value, fields[i].value);
    }
}

// ---------------------------------------------------------------------------------------------
// ResponseParser

// Everything the parser said about one response, with owned copies of the views, so that
// results of different runs (and buffers) compare with ==.
struct Outcome {
    int heads = 0; // head events
    uint16_t status = 0;
    std::string reason;
    int minor_version = -1;
    std::vector<std::pair<std::string, std::string>> headers;
    ResponseFraming framing = ResponseFraming::none;
    uint64_t content_length = 0;
    bool keep_alive = false;
    int interim = 0;
    std::string body;
    bool done = false;
    std::string error; // detail, when refused
    std::string rest;  // bytes left unconsumed after done

    bool operator==(const Outcome&) const = default;
};

std::string escaped(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '\r') {
            out += "\\r";
        } else if (c == '\n') {
            out += "\\n";
        } else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
            char hex[8];
            snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
            out += hex;
        } else {
            out += c;
        }
    }
    return out;
}

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
    os << "{heads=" << o.heads << " status=" << o.status << " reason=" << o.reason << " 1."
       << o.minor_version << " headers=" << o.headers.size()
       << " framing=" << static_cast<int>(o.framing) << " cl=" << o.content_length
       << " keep_alive=" << o.keep_alive << " interim=" << o.interim << " body=" << escaped(o.body)
       << " done=" << o.done << " error=" << o.error << " rest=" << escaped(o.rest) << "}";
    return os;
}

bool inside(std::string_view v, std::string_view buf) {
    return v.empty() || (v.data() >= buf.data() && v.data() + v.size() <= buf.data() + buf.size());
}

struct RunOptions {
    bool head_request = false;
    Limits limits{};
    size_t storage = 64;
    bool eof = true; // the server closes after the last read
};

// Drives the parser as the sink does: the reads of `input` end at each of `cuts` (increasing;
// the last one is input.size()); after each read, feed the unconsumed bytes until the parser
// needs more. Then, with opts.eof, finish(). Checks that every answer stays inside its input.
Outcome run(std::string_view input, const std::vector<size_t>& cuts, const RunOptions& opts = {}) {
    std::vector<Header> storage(opts.storage);
    ResponseParser p(storage, opts.limits);
    p.reset(opts.head_request);
    Outcome o;
    std::string pending;
    size_t given = 0;
    auto take = [&](const ResponseParser::Step& s, std::string_view in) {
        EXPECT_LE(s.consumed, in.size());
        EXPECT_TRUE(inside(s.data, in.substr(0, s.consumed)));
        switch (s.event) {
        case ResponseEvent::head: {
            ++o.heads;
            const ResponseHead& h = p.head();
            const std::string_view used = in.substr(0, s.consumed);
            EXPECT_TRUE(inside(h.reason, used));
            o.status = h.status;
            o.reason = h.reason;
            o.minor_version = h.minor_version;
            o.headers.clear();
            for (const Header& f : h.headers) {
                EXPECT_TRUE(inside(f.name, used) && inside(f.value, used));
                o.headers.emplace_back(f.name, f.value);
            }
            o.framing = h.framing;
            o.content_length = h.content_length;
            o.keep_alive = h.keep_alive;
            o.interim = h.interim;
            break;
        }
        case ResponseEvent::data:
            EXPECT_FALSE(s.data.empty());
            o.body.append(s.data);
            break;
        case ResponseEvent::done:
            o.done = true;
            break;
        case ResponseEvent::error:
            EXPECT_FALSE(s.detail.empty());
            o.error = s.detail;
            break;
        case ResponseEvent::need_more:
            break;
        }
    };
    auto finished = [&] { return o.done || !o.error.empty(); };
    for (size_t cut : cuts) {
        pending.append(input.substr(given, cut - given));
        given = cut;
        while (!finished()) {
            const ResponseParser::Step s = p.feed(pending);
            take(s, pending);
            pending.erase(0, s.consumed);
            if (s.event == ResponseEvent::need_more) {
                break;
            }
        }
    }
    if (opts.eof && !finished()) {
        take(p.finish(), {});
    }
    EXPECT_EQ(p.body_bytes(), o.body.size());
    // Once it has answered, the parser repeats itself and consumes nothing.
    if (finished()) {
        const ResponseParser::Step again = p.feed(pending);
        EXPECT_EQ(again.consumed, 0u);
        EXPECT_EQ(again.event, o.done ? ResponseEvent::done : ResponseEvent::error);
        EXPECT_EQ(again.detail, o.error);
        if (o.done) {
            o.rest = pending; // after an error nothing more is read: no rest to speak of
        }
    }
    return o;
}

Outcome whole(std::string_view input, const RunOptions& opts = {}) {
    return run(input, {input.size()}, opts);
}

// The outcome of a complete response; fill in the rest with designated fields.
struct Expected {
    uint16_t status = 200;
    std::string reason = "OK";
    int minor_version = 1;
    ResponseFraming framing = ResponseFraming::content_length;
    uint64_t content_length = 0;
    bool keep_alive = true;
    int interim = 0;
    std::string body;
    std::string rest;
};

struct Row {
    std::string name;
    std::string raw;
    // Either an error detail, or what the response comes to.
    std::string error;
    Expected ok{};
    bool head_request = false;
};

const std::string ok200 = "HTTP/1.1 200 OK\r\n";

std::vector<Row> rows() {
    using F = ResponseFraming;
    return {
        // Framing
        {"content_length",
         ok200 + "Content-Length: 5\r\n\r\nhello",
         "",
         {.content_length = 5, .body = "hello"}},
        {"content_length_zero", ok200 + "Content-Length: 0\r\n\r\n", "", {}},
        {"trailing_bytes_left",
         ok200 + "Content-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
         "",
         {.content_length = 2, .body = "ok", .rest = "HTTP/1.1 200 OK\r\n\r\n"}},
        {"chunked",
         ok200 + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=\"v\"\r\n world\r\n0\r\n"
                 "\r\n",
         "",
         {.framing = F::chunked, .body = "hello world"}},
        {"chunked_trailers",
         ok200 + "Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Checksum: 1\r\n"
                 "Server-Timing: db;dur=53\r\n\r\nrest",
         "",
         {.framing = F::chunked, .body = "abc", .rest = "rest"}},
        {"until_close",
         ok200 + "Content-Type: text/plain\r\n\r\nall of it\r\nuntil EOF",
         "",
         {.framing = F::until_close, .keep_alive = false, .body = "all of it\r\nuntil EOF"}},
        {"until_close_empty",
         "HTTP/1.0 200 OK\r\n\r\n",
         "",
         {.minor_version = 0, .framing = F::until_close, .keep_alive = false}},
        {"no_body_204",
         "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\nabc",
         "",
         {.status = 204, .reason = "No Content", .framing = F::none, .rest = "abc"}},
        {"no_body_304",
         "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
         "",
         {.status = 304, .reason = "Not Modified", .framing = F::none}},
        {"no_body_head", ok200 + "Content-Length: 1234\r\n\r\n", "", {.framing = F::none}, true},
        {"no_body_head_chunked",
         ok200 + "Transfer-Encoding: chunked\r\n\r\n",
         "",
         {.framing = F::none},
         true},
        {"head_without_length", ok200 + "\r\n", "", {.framing = F::none}, true},
        {"repeated_equal_lengths",
         ok200 + "Content-Length: 2\r\nContent-Length: 2\r\n\r\nab",
         "",
         {.content_length = 2, .body = "ab"}},
        {"equal_length_list",
         ok200 + "Content-Length: 2 ,\t02\r\n\r\nab",
         "",
         {.content_length = 2, .body = "ab"}},
        // Interim responses
        {"continue_then_200",
         "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
         "",
         {.status = 201, .reason = "Created", .content_length = 2, .interim = 1, .body = "{}"}},
        {"early_hints",
         "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" + ok200 +
             "Content-Length: 0\r\n\r\n",
         "",
         {.interim = 1}},
        {"three_interim",
         "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early "
         "Hints\r\n\r\n" +
             ok200 + "Content-Length: 0\r\n\r\n",
         "",
         {.interim = 3}},
        {"eight_interim",
         [] {
             std::string s;
             for (int i = 0; i < 8; ++i) {
                 s += "HTTP/1.1 100 Continue\r\n\r\n";
             }
             return s + ok200 + "Content-Length: 0\r\n\r\n";
         }(),
         "",
         {.interim = 8}},
        {"nine_interim",
         [] {
             std::string s;
             for (int i = 0; i < 9; ++i) {
                 s += "HTTP/1.1 100 Continue\r\n\r\n";
             }
             return s + ok200 + "Content-Length: 0\r\n\r\n";
         }(),
         "too_many_interim"},
        {"switching_protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
         "switching_protocols"},
        // keep-alive (RFC 9112 section 9.3)
        {"http11_close",
         ok200 + "Connection: close\r\nContent-Length: 0\r\n\r\n",
         "",
         {.keep_alive = false}},
        {"http11_close_in_list",
         ok200 + "Connection: Upgrade, ,CLOSE\r\nContent-Length: 0\r\n\r\n",
         "",
         {.keep_alive = false}},
        {"http10_default_close",
         "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
         "",
         {.minor_version = 0, .keep_alive = false}},
        {"http10_keep_alive",
         "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
         "",
         {.minor_version = 0}},
        {"http10_keep_alive_and_close",
         "HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
         "",
         {.minor_version = 0, .keep_alive = false}},
        {"http19_is_11", "HTTP/1.9 200 OK\r\nContent-Length: 0\r\n\r\n", "", {}},
        // Status line
        {"no_reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "", {.reason = ""}},
        {"empty_reason", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", "", {.reason = ""}},
        {"reason_obs_text_and_tab",
         "HTTP/1.1 200 \xc3\x9c\tber OK\r\nContent-Length: 0\r\n\r\n",
         "",
         {.reason = "\xc3\x9c\tber OK"}},
        {"status_599",
         "HTTP/1.1 599 Odd\r\nContent-Length: 0\r\n\r\n",
         "",
         {.status = 599, .reason = "Odd"}},
        {"bad_reason", "HTTP/1.1 200 O\x01K\r\n\r\n", "bad_reason"},
        {"bad_reason_del", "HTTP/1.1 200 O\x7fK\r\n\r\n", "bad_reason"},
        {"status_099", "HTTP/1.1 099 X\r\n\r\n", "bad_status_code"},
        {"status_600", "HTTP/1.1 600 X\r\n\r\n", "bad_status_code"},
        {"status_000", "HTTP/1.1 000 X\r\n\r\n", "bad_status_code"},
        {"status_two_digits", "HTTP/1.1 20 OK\r\n\r\n", "bad_status_code"},
        {"status_four_digits", "HTTP/1.1 2000 OK\r\n\r\n", "bad_status_code"},
        {"status_letters", "HTTP/1.1 2x0 OK\r\n\r\n", "bad_status_code"},
        {"status_missing", "HTTP/1.1 \r\n\r\n", "bad_status_code"},
        {"two_spaces", "HTTP/1.1  200 OK\r\n\r\n", "bad_status_code"},
        {"status_tab", "HTTP/1.1 200\tOK\r\n\r\n", "bad_status_code"},
        {"version_2", "HTTP/2.0 200 OK\r\n\r\n", "unsupported_version"},
        {"version_0_9", "HTTP/0.9 200 OK\r\n\r\n", "unsupported_version"},
        {"version_short", "HTTP/2 200 OK\r\n\r\n", "bad_version"},
        {"version_lowercase", "http/1.1 200 OK\r\n\r\n", "bad_version"},
        {"version_10", "HTTP/1.10 200 OK\r\n\r\n", "bad_version"},
        {"version_only", "HTTP/1.1\r\n\r\n", "bad_version"},
        {"not_http", "ICY 200 OK\r\n\r\n", "bad_version"},
        {"http09_body", "<html>hello</html>\r\n", "bad_version"},
        {"leading_empty_line", "\r\n" + ok200 + "\r\n", "bad_version"},
        // Line endings, folding
        {"bare_lf_status", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "bare_lf"},
        {"bare_lf_field", ok200 + "Content-Length: 0\n\r\n", "bare_lf"},
        {"bare_lf_end", ok200 + "Content-Length: 0\r\n\n", "bare_lf"},
        {"bare_cr_field", ok200 + "X: a\rb\r\n\r\n", "bare_cr"},
        {"bare_cr_end", ok200 + "X: a\r\r\n\r\n", "bare_cr"},
        {"bare_cr_empty_line", ok200 + "\rX\r\n", "bare_cr"},
        {"bare_cr_status", "HTTP/1.1 200 O\rK\r\n\r\n", "bare_cr"},
        {"obs_fold", ok200 + "X-A: a\r\n b\r\n\r\n", "obs_fold"},
        {"obs_fold_tab", ok200 + "X-A: a\r\n\tb\r\n\r\n", "obs_fold"},
        {"space_after_status_line", ok200 + " X-A: a\r\n\r\n", "obs_fold"},
        // Field lines
        {"space_before_colon", ok200 + "Content-Length : 0\r\n\r\n", "space_before_colon"},
        {"space_in_name", ok200 + "Content-Length 0\r\n\r\n", "space_before_colon"},
        {"missing_colon_name_only", ok200 + "X\r\n\r\n", "missing_colon"},
        {"empty_name", ok200 + ": v\r\n\r\n", "empty_header_name"},
        {"invalid_token_byte", ok200 + "X@Y: v\r\n\r\n", "invalid_token_byte"},
        {"invalid_header_byte", ok200 + "X: a\x01z\r\n\r\n", "invalid_header_byte"},
        {"invalid_header_nul", ok200 + "X: a\0z\r\n\r\n"s, "invalid_header_byte"},
        {"values_trimmed", ok200 + "X-A:  \t v \t \r\nX-B:\r\nContent-Length: 0\r\n\r\n", "", {}},
        // Content-Length and Transfer-Encoding
        {"conflicting_lengths", ok200 + "Content-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
         "conflicting_content_length"},
        {"conflicting_list", ok200 + "Content-Length: 2, 3\r\n\r\nabc",
         "conflicting_content_length"},
        {"length_empty", ok200 + "Content-Length: \r\n\r\n", "bad_content_length"},
        {"length_negative", ok200 + "Content-Length: -1\r\n\r\n", "bad_content_length"},
        {"length_plus", ok200 + "Content-Length: +1\r\n\r\n", "bad_content_length"},
        {"length_hex", ok200 + "Content-Length: 0x10\r\n\r\n", "bad_content_length"},
        {"length_two_numbers", ok200 + "Content-Length: 1 2\r\n\r\n", "bad_content_length"},
        {"length_empty_element", ok200 + "Content-Length: 1,\r\n\r\n", "bad_content_length"},
        {"length_overflow", ok200 + "Content-Length: 9223372036854775808\r\n\r\n",
         "content_length_overflow"},
        {"length_max", ok200 + "Content-Length: 9223372036854775807\r\n\r\nab", "truncated_body"},
        {"cl_then_te", ok200 + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
         "cl_and_te"},
        {"te_then_cl", ok200 + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
         "cl_and_te"},
        {"te_gzip", ok200 + "Transfer-Encoding: gzip\r\n\r\n", "unsupported_transfer_coding"},
        {"te_gzip_chunked", ok200 + "Transfer-Encoding: gzip, chunked\r\n\r\n",
         "unsupported_transfer_coding"},
        {"te_chunked_gzip", ok200 + "Transfer-Encoding: chunked, gzip\r\n\r\n",
         "unsupported_transfer_coding"},
        {"te_identity", ok200 + "Transfer-Encoding: identity\r\n\r\n",
         "unsupported_transfer_coding"},
        {"te_chunked_twice", ok200 + "Transfer-Encoding: chunked, chunked\r\n\r\n",
         "chunked_twice"},
        {"te_two_lines", ok200 + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
         "chunked_twice"},
        {"te_parameter", ok200 + "Transfer-Encoding: chunked;q=1\r\n\r\n", "bad_transfer_encoding"},
        {"te_empty", ok200 + "Transfer-Encoding: \r\n\r\n", "bad_transfer_encoding"},
        {"te_http10", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         "te_in_http10"},
        {"bad_connection", ok200 + "Connection: close;x\r\nContent-Length: 0\r\n\r\n",
         "bad_connection"},
        // Chunked bodies (the ChunkedDecoder's details)
        {"bad_chunk_size", ok200 + "Transfer-Encoding: chunked\r\n\r\nzz\r\n", "bad_chunk_size"},
        {"missing_chunk_crlf", ok200 + "Transfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
         "missing_chunk_crlf"},
        {"chunk_line_too_long",
         ok200 + "Transfer-Encoding: chunked\r\n\r\n1;x=" + std::string(5000, 'v') + "\r\n",
         "chunk_line_too_long"},
        {"chunk_bare_lf", ok200 + "Transfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n", "bare_lf"},
        {"trailer_obs_fold", ok200 + "Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n",
         "obs_fold"},
        // Cut by the end of input
        {"no_response", "", "no_response"},
        {"truncated_status_line", "HTTP/1.1 200", "truncated_head"},
        {"truncated_head", ok200 + "Content-Length: 5\r\n", "truncated_head"},
        {"truncated_after_interim", "HTTP/1.1 100 Continue\r\n\r\n", "truncated_head"},
        {"truncated_sized_body", ok200 + "Content-Length: 5\r\n\r\nhel", "truncated_body"},
        {"truncated_chunked_body", ok200 + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
         "truncated_body"},
        {"truncated_before_trailers", ok200 + "Transfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n",
         "truncated_body"},
    };
}

// What a complete row's response comes to; the headers are those of the raw final head.
Outcome expected_outcome(const Row& row, const Outcome& got) {
    Outcome o;
    if (!row.error.empty()) {
        o.error = row.error;
        // A head may have been parsed before a body error: take what was seen of it.
        o.heads = got.heads;
        if (got.heads > 0) {
            o.status = got.status;
            o.reason = got.reason;
            o.minor_version = got.minor_version;
            o.headers = got.headers;
            o.framing = got.framing;
            o.content_length = got.content_length;
            o.keep_alive = got.keep_alive;
            o.interim = got.interim;
            o.body = got.body;
        }
        return o;
    }
    const Expected& e = row.ok;
    o.heads = 1;
    o.status = e.status;
    o.reason = e.reason;
    o.minor_version = e.minor_version;
    o.headers = got.headers;
    o.framing = e.framing;
    o.content_length = e.content_length;
    o.keep_alive = e.keep_alive;
    o.interim = e.interim;
    o.body = e.body;
    o.done = true;
    o.rest = e.rest;
    return o;
}

TEST(ResponseParser, EveryRule) {
    for (const Row& row : rows()) {
        const Outcome got = whole(row.raw, {.head_request = row.head_request});
        EXPECT_EQ(got, expected_outcome(row, got)) << row.name << ": " << escaped(row.raw);
    }
}

TEST(ResponseParser, HeaderFieldsAsSent) {
    const Outcome o = whole(ok200 + "Server: nginx/1.24.0\r\nx-Request-ID:  a b \r\nEmpty:\r\n"
                                    "Content-Length: 0\r\n\r\n");
    using P = std::pair<std::string, std::string>;
    const std::vector<P> expected = {P{"Server", "nginx/1.24.0"}, P{"x-Request-ID", "a b"},
                                     P{"Empty", ""}, P{"Content-Length", "0"}};
    EXPECT_EQ(o.headers, expected);
    EXPECT_TRUE(o.done);
}

// Any split of the input into two reads, and one byte per read, come to what the whole input
// does.
TEST(ResponseParser, EverySplitGivesTheSameResult) {
    for (const Row& row : rows()) {
        const RunOptions opts{.head_request = row.head_request};
        const Outcome expected = whole(row.raw, opts);
        const size_t n = row.raw.size();
        for (size_t cut = 0; cut <= n; ++cut) {
            EXPECT_EQ(run(row.raw, {cut, n}, opts), expected) << row.name << " cut at " << cut;
        }
        std::vector<size_t> bytes;
        for (size_t i = 1; i <= n; ++i) {
            bytes.push_back(i);
        }
        if (n > 0) {
            EXPECT_EQ(run(row.raw, bytes, opts), expected) << row.name << " byte by byte";
        }
    }
}

// Three reads, at every pair of cuts, for the short rows with more than one part.
TEST(ResponseParser, EveryPairOfCutsGivesTheSameResult) {
    for (const Row& row : rows()) {
        const size_t n = row.raw.size();
        if (n > 160) {
            continue;
        }
        const RunOptions opts{.head_request = row.head_request};
        const Outcome expected = whole(row.raw, opts);
        for (size_t a = 0; a <= n; ++a) {
            for (size_t b = a; b <= n; ++b) {
                ASSERT_EQ(run(row.raw, {a, b, n}, opts), expected)
                    << row.name << " cuts at " << a << ", " << b;
            }
        }
    }
}

// The fuzz target's seeds are real servers' answers (nginx, Python's http.server, Node): the
// good ones parse to done and give the same result at every cut, the others fail as named.
TEST(ResponseParser, FuzzSeeds) {
    const char* root = std::getenv("PORTCULLIS_SOURCE_ROOT");
    if (root == nullptr) {
        GTEST_SKIP() << "PORTCULLIS_SOURCE_ROOT is not set (run through meson test)";
    }
    const std::filesystem::path dir = std::filesystem::path(root) / "fuzz" / "http_response-corpus";
    ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
    const std::map<std::string, std::string> refused = {
        {"bad_cl_te", "cl_and_te"},           {"bad_obs_fold", "obs_fold"},
        {"bad_bare_lf", "bare_lf"},           {"conflicting_cl", "conflicting_content_length"},
        {"truncated_body", "truncated_body"},
    };
    size_t seeds = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        std::ifstream file(entry.path(), std::ios::binary);
        std::string raw((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
        // Reads are separated by "\n--MARK--\n" (the h2o corpus convention).
        std::vector<size_t> cuts;
        for (size_t at; (at = raw.find("\n--MARK--\n")) != std::string::npos;) {
            raw.erase(at, 10);
            cuts.push_back(at);
        }
        cuts.push_back(raw.size());
        const RunOptions opts{.head_request = name == "head_response"};
        const Outcome o = run(raw, cuts, opts);
        const auto bad = refused.find(name);
        if (bad != refused.end()) {
            EXPECT_EQ(o.error, bad->second) << name;
        } else {
            EXPECT_TRUE(o.done) << name << ": " << o;
            EXPECT_GE(o.status, 200) << name;
        }
        for (size_t cut = 0; cut <= raw.size(); ++cut) {
            ASSERT_EQ(run(raw, {cut, raw.size()}, opts), o) << name << " cut at " << cut;
        }
        ++seeds;
    }
    EXPECT_GE(seeds, 30u);
}

// Every row placed so that its last byte is the last readable one: no read past the input.
TEST(ResponseParser, ReadsNothingPastTheInput) {
    GuardedBuffer guard(16 * 1024);
    for (const Row& row : rows()) {
        std::vector<Header> storage(64);
        ResponseParser p(storage, Limits{});
        p.reset(row.head_request);
        std::string_view in = guard.place(row.raw);
        for (;;) {
            const ResponseParser::Step s = p.feed(in);
            in.remove_prefix(s.consumed);
            if (s.event != ResponseEvent::head && s.event != ResponseEvent::data) {
                break;
            }
        }
        // And every prefix of the head, which ends mid-line.
        for (size_t n = 0; n < std::min<size_t>(row.raw.size(), 200); ++n) {
            p.reset(row.head_request);
            const std::string_view prefix = guard.place(std::string_view(row.raw).substr(0, n));
            (void)p.feed(prefix);
        }
    }
}

TEST(ResponseParser, NothingIsDecidedBeforeTheLineEnds) {
    // An error on a line is reported once its LF is in: before that, more bytes are awaited.
    std::array<Header, 8> storage;
    ResponseParser p(storage, Limits{});
    p.reset();
    std::string buf = "HTTP/1.1 2x0 OK";
    ResponseParser::Step s = p.feed(buf);
    EXPECT_EQ(s.event, ResponseEvent::need_more);
    EXPECT_EQ(s.consumed, 0u);
    buf += "\r";
    s = p.feed(buf);
    EXPECT_EQ(s.event, ResponseEvent::need_more);
    buf += "\n";
    s = p.feed(buf);
    EXPECT_EQ(s.event, ResponseEvent::error);
    EXPECT_EQ(s.detail, "bad_status_code");
}

TEST(ResponseParser, LimitsOnTheHead) {
    // A head of exactly header_bytes passes; one byte more does not.
    const Limits limits{.header_bytes = 64, .max_headers = 4};
    auto head_of_size = [](size_t n) {
        std::string h = ok200 + "Content-Length: 0\r\nX-Pad: ";
        h.append(n - h.size() - 4, 'p');
        return h + "\r\n\r\n";
    };
    const std::string fits = head_of_size(64);
    ASSERT_EQ(fits.size(), 64u);
    EXPECT_TRUE(whole(fits, {.limits = limits}).done);
    const std::string over = head_of_size(65);
    EXPECT_EQ(whole(over, {.limits = limits}).error, "head_too_large");
    // Without any LF in sight: refused as soon as more than header_bytes are in.
    const std::string endless = "HTTP/1.1 200 " + std::string(100, 'x');
    const std::string_view at_limit = std::string_view(endless).substr(0, 64);
    const std::string_view past_limit = std::string_view(endless).substr(0, 65);
    EXPECT_EQ(run(at_limit, {64}, {.limits = limits, .eof = false}).error, "");
    EXPECT_EQ(run(past_limit, {64, 65}, {.limits = limits, .eof = false}).error, "head_too_large");
    EXPECT_EQ(whole(past_limit, {.limits = limits, .eof = false}).error, "head_too_large");
    // Each interim head has the whole budget.
    std::string interims;
    for (int i = 0; i < 3; ++i) {
        interims += "HTTP/1.1 103 Early Hints\r\nLink: <" + std::string(20, 'l') + ">\r\n\r\n";
    }
    EXPECT_TRUE(whole(interims + ok200 + "Content-Length: 0\r\n\r\n", {.limits = limits}).done);

    // max_headers fields pass, one more does not; smaller storage lowers the limit.
    auto with_fields = [](int n) {
        std::string h = ok200;
        for (int i = 0; i < n; ++i) {
            h += "X-" + std::to_string(i) + ": v\r\n";
        }
        return h + "\r\n";
    };
    const RunOptions small{.head_request = true, .limits = limits};
    EXPECT_TRUE(whole(with_fields(4), small).done);
    EXPECT_EQ(whole(with_fields(5), small).error, "too_many_headers");
    const RunOptions tiny{.head_request = true, .storage = 2};
    EXPECT_TRUE(whole(with_fields(2), tiny).done);
    EXPECT_EQ(whole(with_fields(3), tiny).error, "too_many_headers");
}

// Bytes after a complete response are the caller's: reset() and parse them as the next one.
TEST(ResponseParser, ResetsForTheNextResponse) {
    const std::string second = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n";
    const std::string input = ok200 + "Content-Length: 2\r\n\r\nok" + second;
    std::array<Header, 8> storage;
    ResponseParser p(storage, Limits{});
    p.reset();
    std::string_view in = input;
    std::string body;
    ResponseParser::Step s;
    do {
        s = p.feed(in);
        in.remove_prefix(s.consumed);
        body.append(s.data);
    } while (s.event != ResponseEvent::done && s.event != ResponseEvent::error);
    ASSERT_EQ(s.event, ResponseEvent::done);
    EXPECT_EQ(body, "ok");
    EXPECT_EQ(in, second);

    p.reset();
    body.clear();
    uint16_t status = 0;
    std::optional<int64_t> retry;
    do {
        s = p.feed(in);
        if (s.event == ResponseEvent::head) {
            status = p.head().status;
            const Header* h = find_header(p.head().headers, "retry-after");
            ASSERT_NE(h, nullptr);
            retry = parse_retry_after(h->value, 0);
        }
        in.remove_prefix(s.consumed);
        body.append(s.data);
    } while (s.event != ResponseEvent::done && s.event != ResponseEvent::error);
    EXPECT_EQ(s.event, ResponseEvent::done);
    EXPECT_EQ(status, 503);
    EXPECT_EQ(retry, 7);
    EXPECT_EQ(body, "no");
    EXPECT_EQ(p.body_bytes(), 2u);
    EXPECT_TRUE(in.empty());
}

// finish() ends a body read until close, and only that.
TEST(ResponseParser, EndOfInput) {
    std::array<Header, 8> storage;
    ResponseParser p(storage, Limits{});
    p.reset();
    EXPECT_EQ(p.finish().detail, "no_response");
    p.reset();
    const std::string until_close = ok200 + "\r\nabc";
    std::string_view in = until_close;
    ResponseParser::Step s = p.feed(in);
    ASSERT_EQ(s.event, ResponseEvent::head);
    in.remove_prefix(s.consumed);
    s = p.feed(in);
    ASSERT_EQ(s.event, ResponseEvent::data);
    EXPECT_EQ(s.data, "abc");
    EXPECT_EQ(p.feed({}).event, ResponseEvent::need_more);
    EXPECT_EQ(p.finish().event, ResponseEvent::done);
    EXPECT_EQ(p.feed("more").event, ResponseEvent::done);
    EXPECT_EQ(p.finish().event, ResponseEvent::done);
    EXPECT_FALSE(p.head().keep_alive);
}

// ---------------------------------------------------------------------------------------------
// Retry-After

constexpr int64_t nov_6_1994 = 784111777; // Sun, 06 Nov 1994 08:49:37 GMT

TEST(RetryAfter, DeltaSeconds) {
    EXPECT_EQ(parse_retry_after("120", 1'000'000), 120);
    EXPECT_EQ(parse_retry_after("0", 1'000'000), 0);
    EXPECT_EQ(parse_retry_after(" 5\t", 0), 5);
    EXPECT_EQ(parse_retry_after("007", 0), 7);
    EXPECT_EQ(parse_retry_after("9223372036854775807", 0), INT64_MAX);
    EXPECT_EQ(parse_retry_after("99999999999999999999999", 0), INT64_MAX);
    for (std::string_view bad : {"", " ", "-1", "+1", "1.5", "1e3", "12abc", "1 2", "0x10"}) {
        EXPECT_EQ(parse_retry_after(bad, 0), std::nullopt) << bad;
    }
}

TEST(RetryAfter, HttpDates) {
    const int64_t now = nov_6_1994 - 100;
    EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), 100);
    EXPECT_EQ(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), 100);
    EXPECT_EQ(parse_retry_after("Sun Nov  6 08:49:37 1994", now), 100);
    EXPECT_EQ(parse_retry_after("Sun Nov 06 08:49:37 1994", now), 100);
    // In the past, or now: no wait.
    EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", nov_6_1994), 0);
    EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", nov_6_1994 + 3600), 0);
    EXPECT_EQ(parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", nov_6_1994), 0);
    EXPECT_EQ(parse_retry_after("Mon, 01 Jan 0001 00:00:00 GMT", nov_6_1994), 0);
    // Leap days and seconds.
    EXPECT_EQ(parse_retry_after("Thu, 29 Feb 2024 00:00:00 GMT", 1709164800 - 1), 1);
    EXPECT_EQ(parse_retry_after("Sat, 31 Dec 2016 23:59:60 GMT", 1483228800 - 10), 10);
    // RFC 850 two-digit years: more than 50 years ahead means the century before.
    const int64_t in_2026 = 1767225600; // 2026-01-01
    EXPECT_EQ(parse_retry_after("Friday, 01-Jan-27 00:00:00 GMT", in_2026), 365 * 86400);
    EXPECT_EQ(parse_retry_after("Friday, 01-Jan-99 00:00:00 GMT", in_2026), 0); // 1999
    EXPECT_GT(parse_retry_after("Tuesday, 01-Jan-76 00:00:00 GMT", in_2026).value_or(0),
              49 * 365 * 86400); // 2076
}

TEST(RetryAfter, RoundTripsWithTheDateTheServerWrites) {
    DateCache date;
    for (int64_t t : {int64_t{0}, nov_6_1994, int64_t{951782400} /* 2000-02-29 */,
                      int64_t{1767225599}, int64_t{4102444800} /* 2100-01-01 */}) {
        date.update(t * 1'000'000'000);
        EXPECT_EQ(parse_retry_after(date.view(), t - 42), 42) << date.view();
    }
}

TEST(RetryAfter, RefusesMalformedDates) {
    for (std::string_view bad : {
             "Sun, 06 Nov 1994 08:49:37 UTC",    "Sun, 06 Nov 1994 08:49:37 gmt",
             "sun, 06 Nov 1994 08:49:37 GMT",    "Xyz, 06 Nov 1994 08:49:37 GMT",
             "Sun, 6 Nov 1994 08:49:37 GMT",     "Sun, 06 nov 1994 08:49:37 GMT",
             "Sun, 06 Nov 94 08:49:37 GMT",      "Sun, 31 Nov 1994 08:49:37 GMT",
             "Sun, 29 Feb 2023 08:49:37 GMT",    "Sun, 00 Nov 1994 08:49:37 GMT",
             "Sun, 06 Nov 1994 24:00:00 GMT",    "Sun, 06 Nov 1994 08:60:00 GMT",
             "Sun, 06 Nov 1994 08:49:61 GMT",    "Sun, 06 Nov 1994 08-49-37 GMT",
             "Sun, 06 Nov 1994 08:49:37 GMTX",   "Sun,  06 Nov 1994 08:49:37 GMT",
             "Sunday, 06-Nov-1994 08:49:37 GMT", "Sun, 06-Nov-94 08:49:37 GMT",
             "Sun Nov  6 08:49:37 94",           "Sun Nov 6 08:49:37 1994",
             "Sun Nov  6 08:49:37 1994 GMT",     "tomorrow",
         }) {
        EXPECT_EQ(parse_retry_after(bad, 0), std::nullopt) << bad;
    }
}

} // namespace

TEST(ConnectionLists, FindsTheFieldsAConnectionValueNames) {
    EXPECT_TRUE(connection_lists("X-Hop, keep-alive", "x-hop"));
    EXPECT_TRUE(connection_lists("keep-alive,X-HOP", "X-Hop"));
    EXPECT_TRUE(connection_lists(" , x-hop ,", "x-hop"));
    EXPECT_FALSE(connection_lists("X-Hopper", "x-hop"));
    EXPECT_FALSE(connection_lists("X-Ho", "x-hop"));
    EXPECT_FALSE(connection_lists("", "x-hop"));
    // Malformed: the options before the fault count, none after it.
    EXPECT_TRUE(connection_lists("x-hop, a b", "x-hop"));
    EXPECT_FALSE(connection_lists("a b, x-hop", "x-hop"));
}
