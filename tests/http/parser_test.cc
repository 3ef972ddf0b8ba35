#include "portcullis/http/parser.hh"
#include "scan_paths.hh"

#include <gtest/gtest.h>

#include <array>
#include <iostream>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

using namespace portcullis::http;
using namespace portcullis::http::test;
using namespace std::string_literals;

namespace {

// What one parse_head call said, with owned copies of the views so that results of different
// calls (and buffers) compare with ==.
struct Outcome {
    size_t consumed = 0;
    Error error = Error::none;
    std::string detail;
    std::string method, target, path, query, host;
    int minor_version = -1;
    BodyFraming framing = BodyFraming::none;
    uint64_t content_length = 0;
    bool keep_alive = false;
    bool expect_continue = false;
    std::vector<std::pair<std::string, std::string>> headers;

    bool complete() const { return error == Error::none && consumed > 0; }
    bool incomplete() const { return error == Error::none && consumed == 0; }
    bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
    os << "{consumed=" << o.consumed << " status=" << status_of(o.error) << " detail=" << o.detail;
    if (o.complete()) {
        os << " " << o.method << " " << o.target << " 1." << o.minor_version
           << " framing=" << static_cast<int>(o.framing) << " cl=" << o.content_length
           << " host=" << o.host << " keep_alive=" << o.keep_alive
           << " expect_continue=" << o.expect_continue << " headers=" << o.headers.size();
    }
    return os << "}";
}

Outcome parse(std::string_view buf, size_t scanned = 0, const Limits& limits = {}) {
    std::array<Header, 64> storage;
    RequestHead head;
    const HeadResult r = parse_head(buf, scanned, limits, storage, head);
    Outcome o;
    o.consumed = r.consumed;
    o.error = r.error;
    o.detail = std::string(r.detail);
    if (o.complete()) {
        o.method = head.method;
        o.target = head.target;
        o.path = head.path;
        o.query = head.query;
        o.host = head.host;
        o.minor_version = head.minor_version;
        o.framing = head.framing;
        o.content_length = head.content_length;
        o.keep_alive = head.keep_alive;
        o.expect_continue = head.expect_continue;
        for (const Header& h : head.headers) {
            o.headers.emplace_back(h.name, h.value);
        }
    }
    return o;
}

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

// A head of `n` bytes ending in CRLF CRLF, padded with an X-Pad field.
std::string head_of_size(size_t n) {
    std::string h = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    const size_t rest = 4; // "\r\n\r\n"
    h.append(n - h.size() - rest, 'p');
    h += "\r\n\r\n";
    return h;
}

std::string many_fields(int n) {
    std::string h = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 1; i < n; ++i) {
        h += "X-F" + std::to_string(i) + ": v\r\n";
    }
    return h + "\r\n";
}

struct BadRow {
    std::string raw;
    Error error;
    std::string_view detail;
};

constexpr Error e400 = Error::bad_request;
constexpr Error e431 = Error::header_too_large;
constexpr Error e501 = Error::not_implemented;
constexpr Error e505 = Error::version_unsupported;

const std::string get = "GET / HTTP/1.1\r\nHost: a\r\n";
const std::string post = "POST /hook HTTP/1.1\r\nHost: example.com\r\n";

std::vector<BadRow> bad_rows() {
    return {
        // Line endings
        {"GET / HTTP/1.1\nHost: a\r\n\r\n", e400, "bare_lf"},
        {"GET / HTTP/1.1\rHost: a\r\n\r\n", e400, "bare_cr"},
        {get + "X: a\n\r\n", e400, "bare_lf"},
        {get + "X: a\nY: b\r\n\r\n", e400, "bare_lf"},
        {get + "X: a\rb\r\n\r\n", e400, "bare_cr"},
        {get + "X: a\r\r\n\r\n", e400, "bare_cr"},
        {get + "\n", e400, "bare_lf"},
        {get + "\rX", e400, "bare_cr"},
        {get + "\r\r\n", e400, "bare_cr"},
        {"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", e400, "bare_lf"},
        {"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", e400, "bare_cr"},
        {"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", e400, "bare_lf"},
        {"GET /\n", e400, "bare_lf"},
        {"GET / HTTP/1.1\n\n", e400, "bare_lf"},
        {"GET\n", e400, "bare_lf"},
        {"GET\rX / HTTP/1.1\r\nHost: a\r\n\r\n", e400, "bare_cr"},
        {"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", e400, "bare_cr"},
        {"GET / HT\rTP/1.1\r\nHost: a\r\n\r\n", e400, "bare_cr"},
        {get + "X\n", e400, "bare_lf"},
        {get + "X\rY: a\r\n\r\n", e400, "bare_cr"},
        // Request line
        {" GET / HTTP/1.1\r\nHost: a\r\n\r\n", e400, "bad_method"},
        {"GE@T / HTTP/1.1\r\nHost: a\r\n\r\n", e400, "bad_method"},
        {"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", e400, "bad_method"},
        {"GET\r\n\r\n", e400, "bad_method"},
        {"G\x80T / HTTP/1.1\r\nHost: a\r\n\r\n", e400, "bad_method"},
        {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", e400, "not_origin_form"},
        {"GET \r\n\r\n", e400, "not_origin_form"},
        {"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", e400, "not_origin_form"},
        {"CONNECT a.example:443 HTTP/1.1\r\nHost: a\r\n\r\n", e400, "not_origin_form"},
        {"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", e400, "asterisk_form"},
        {"OPTIONS * HTTP/1.0\r\n\r\n", e400, "asterisk_form"},
        {"OPTIONS * HTTP/1.1 \r\n\r\n", e400, "asterisk_form"},
        {"OPTIONS * ICE/2.0\r\n\r\n", e400, "asterisk_form"},
        {"OPTIONS *\r\n\r\n", e400, "asterisk_form"},
        {"OPTIONS *x\ty HTTP/2.0\r\n\r\n", e400, "asterisk_form"},
        {"GET http://a/ HTTP/1.9\r\nHost: a\r\n\r\n", e400, "not_origin_form"},
        {"GET http://a/ HTTP/2\r\nHost: a\r\n\r\n", e400, "not_origin_form"},
        {"GET http://a/\xce HTTP/2.0\r\nHost: a\r\n\r\n", e400, "not_origin_form"},
        // A well-formed request line of another version is 505 whatever its target's form: the
        // HTTP/2 connection preface (prior knowledge) first of all.
        {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", e505, "unsupported_version"},
        {"PRI * HTTP/2.0", e505, "unsupported_version"},
        {"GET http://a/ HTTP/2.0\r\nHost: a\r\n\r\n", e505, "unsupported_version"},
        {"CONNECT a.example:443 HTTP/3.0\r\n\r\n", e505, "unsupported_version"},
        {"OPTIONS * HTTP/0.9\r\n\r\n", e505, "unsupported_version"},
        {"GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n", e400, "invalid_target_byte"},
        {"GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n", e400, "invalid_target_byte"},
        {"GET /a<b HTTP/1.1\r\nHost: a\r\n\r\n", e400, "invalid_target_byte"},
        {"GET /a{b HTTP/1.1\r\nHost: a\r\n\r\n", e400, "invalid_target_byte"},
        {"GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n", e400, "invalid_target_byte"},
        {"GET /a^b HTTP/1.1\r\nHost: a\r\n\r\n", e400, "invalid_target_byte"},
        {"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", e400, "invalid_target_byte"},
        {"GET /\xce\xb4 HTTP/1.1\r\nHost: a\r\n\r\n", e400, "invalid_target_byte"},
        {"GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n"s, e400, "invalid_target_byte"},
        {"GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", e400, "invalid_target_byte"},
        {"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", e400, "bad_percent_encoding"},
        {"GET /%4 HTTP/1.1\r\nHost: a\r\n\r\n", e400, "bad_percent_encoding"},
        {"GET /% HTTP/1.1\r\nHost: a\r\n\r\n", e400, "bad_percent_encoding"},
        {"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", e400, "bad_version"},
        {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", e400, "bad_version"},
        {"GET / http/1.1\r\nHost: a\r\n\r\n", e400, "bad_version"},
        {"GET / HTTP/1\r\nHost: a\r\n\r\n", e400, "bad_version"},
        {"GET / HTTP/1.\r\nHost: a\r\n\r\n", e400, "bad_version"},
        {"GET / HTTP/1.x\r\nHost: a\r\n\r\n", e400, "bad_version"},
        {"GET / HTTP/1.10\r\nHost: a\r\n\r\n", e400, "bad_version"},
        {"GET / HTTP/11.1\r\nHost: a\r\n\r\n", e400, "bad_version"},
        {"GET / HTTP/1.1x\r\nHost: a\r\n\r\n", e400, "bad_version"},
        {"GET / ICE/1.0\r\nHost: a\r\n\r\n", e400, "bad_version"},
        {"GET / HTTP/\r\n\r\n", e400, "bad_version"},
        {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", e505, "unsupported_version"},
        {"GET / HTTP/3.0\r\nHost: a\r\n\r\n", e505, "unsupported_version"},
        {"GET / HTTP/0.9\r\nHost: a\r\n\r\n", e505, "unsupported_version"},
        {"GET / HTTP/5.6", e505, "unsupported_version"},
        {"GET /\r\n\r\n", e505, "http09"},
        {"GET /index.html\r\n", e505, "http09"},
        // Field lines
        {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", e400, "obs_fold"},
        {get + "X: a\r\n b\r\n\r\n", e400, "obs_fold"},
        {get + "X: a\r\n\tb\r\n\r\n", e400, "obs_fold"},
        {get + "Host : a\r\n\r\n", e400, "space_before_colon"},
        {get + "X\t: a\r\n\r\n", e400, "space_before_colon"},
        {get + ": a\r\n\r\n", e400, "empty_header_name"},
        {get + "X\r\n\r\n", e400, "missing_colon"},
        {get + "X-Y-Z\r\n\r\n", e400, "missing_colon"},
        {get + "Fo@: a\r\n\r\n", e400, "invalid_token_byte"},
        {get + "Fo\"o: a\r\n\r\n", e400, "invalid_token_byte"},
        {get + "Foo\x01test: a\r\n\r\n", e400, "invalid_token_byte"},
        {get + "F\xc3\xb6o: a\r\n\r\n", e400, "invalid_token_byte"},
        {get + "Content\rLength: 3\r\n\r\n", e400, "bare_cr"},
        {get + "X: a\x00"s + "b\r\n\r\n", e400, "invalid_header_byte"},
        {get + "X: a\x01\r\n\r\n", e400, "invalid_header_byte"},
        {get + "X: hello\x0cworld\r\n\r\n", e400, "invalid_header_byte"},
        {get + "X: \x0b\r\n\r\n", e400, "invalid_header_byte"},
        {get + "X: a\x7f\r\n\r\n", e400, "invalid_header_byte"},
        {get + "X: " + std::string(40, 'v') + "\x1f" + "\r\n\r\n", e400, "invalid_header_byte"},
        // Content-Length
        {post + "Content-Length:\r\n\r\n", e400, "bad_content_length"},
        {post + "Content-Length: +5\r\n\r\n", e400, "bad_content_length"},
        {post + "Content-Length: -1\r\n\r\n", e400, "bad_content_length"},
        {post + "Content-Length: 4 2\r\n\r\n", e400, "bad_content_length"},
        {post + "Content-Length: 0x10\r\n\r\n", e400, "bad_content_length"},
        {post + "Content-Length: 1.0\r\n\r\n", e400, "bad_content_length"},
        {post + "Content-Length: 1,1\r\n\r\n", e400, "content_length_list"},
        {post + "Content-Length: 1, 2\r\n\r\n", e400, "content_length_list"},
        {post + "Content-Length: 9223372036854775808\r\n\r\n", e400, "content_length_overflow"},
        {post + "Content-Length: 1000000000000000000000\r\n", e400, "content_length_overflow"},
        {post + "Content-Length: 1\r\nContent-Length: 1\r\n\r\n", e400, "duplicate_content_length"},
        {post + "Content-Length: 1\r\ncontent-length: 2\r\n", e400, "duplicate_content_length"},
        // Transfer-Encoding
        {post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", e400, "cl_and_te"},
        {post + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", e400, "cl_and_te"},
        {post + "Content-Length: 1\r\nTransfer-Encoding: identity\r\n\r\n", e400, "cl_and_te"},
        {post + "Transfer-Encoding: gzip\r\n\r\n", e400, "te_not_chunked"},
        {post + "Transfer-Encoding: identity\r\n\r\n", e400, "te_not_chunked"},
        {post + "Transfer-Encoding: chunkedchunked\r\n\r\n", e400, "te_not_chunked"},
        {post + "Transfer-Encoding: chunked, chunked\r\n\r\n", e400, "chunked_twice"},
        {post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", e400,
         "chunked_twice"},
        {post + "Transfer-Encoding: chunked, gzip\r\n\r\n", e400, "chunked_not_last"},
        {post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", e400,
         "chunked_not_last"},
        {post + "Transfer-Encoding:\r\n\r\n", e400, "bad_transfer_encoding"},
        {post + "Transfer-Encoding: , chunked\r\n\r\n", e400, "bad_transfer_encoding"},
        {post + "Transfer-Encoding: chunked,\r\n\r\n", e400, "bad_transfer_encoding"},
        {post + "Transfer-Encoding: chunked;q=1\r\n\r\n", e400, "bad_transfer_encoding"},
        {post + "Transfer-Encoding: \"chunked\"\r\n\r\n", e400, "bad_transfer_encoding"},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", e400, "te_in_http10"},
        {post + "Transfer-Encoding: gzip, chunked\r\n\r\n", e501, "unsupported_transfer_coding"},
        {post + "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", e501,
         "unsupported_transfer_coding"},
        {post + "Transfer-Encoding: deflate,chunked\r\n\r\n", e501, "unsupported_transfer_coding"},
        // Host
        {"GET / HTTP/1.1\r\n\r\n", e400, "missing_host"},
        {"GET / HTTP/1.1\r\nX: a\r\n\r\n", e400, "missing_host"},
        {get + "Host: a\r\n\r\n", e400, "duplicate_host"},
        {get + "host: b\r\n\r\n", e400, "duplicate_host"},
        {"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", e400, "duplicate_host"},
        {"GET / HTTP/1.1\r\nHost:\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: a:\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: :80\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: [zz::1]\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: [1:2:3:4:5:6:7:8:9]\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: [1::2::3]\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: [12345::1]\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: [::1.2.3.256]\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", e400, "bad_host"},
        {"GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n", e400, "bad_host"},
        // Connection, Expect
        {get + "Connection: close, @\r\n\r\n", e400, "bad_connection"},
        {get + "Connection: keep alive\r\n\r\n", e400, "bad_connection"},
        {get + "Expect: 100-continue-please\r\n\r\n", e400, "bad_expect"},
        {get + "Expect: 200-ok\r\n\r\n", e400, "bad_expect"},
        // Limits
        {many_fields(65), e431, "too_many_headers"},
        {head_of_size(16 * 1024 + 1), e431, "head_too_large"},
        {"GET /" + std::string(20000, 'a'), e431, "head_too_large"},
    };
}

struct GoodRow {
    std::string raw;
    Outcome expected; // consumed == 0 means the whole of raw
};

Outcome head(std::string method, std::string target, std::string path, std::string query, int minor,
             std::string host, std::vector<std::pair<std::string, std::string>> headers,
             BodyFraming framing = BodyFraming::none, uint64_t content_length = 0,
             bool keep_alive = true, bool expect_continue = false, size_t consumed = 0) {
    Outcome o;
    o.consumed = consumed;
    o.method = std::move(method);
    o.target = std::move(target);
    o.path = std::move(path);
    o.query = std::move(query);
    o.minor_version = minor;
    o.host = std::move(host);
    o.headers = std::move(headers);
    o.framing = framing;
    o.content_length = content_length;
    o.keep_alive = keep_alive;
    o.expect_continue = expect_continue;
    return o;
}

constexpr auto cl = BodyFraming::content_length;
constexpr auto chunked = BodyFraming::chunked;
constexpr auto no_body = BodyFraming::none;

std::vector<GoodRow> good_rows() {
    using H = std::vector<std::pair<std::string, std::string>>;
    const std::string pipelined =
        "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::string with_body =
        "POST /hook HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    return {
        {"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
         head("GET", "/", "/", "", 1, "example.com", H{{"Host", "example.com"}})},
        {"GET /a/b?x=1&y=%2F HTTP/1.1\r\nHost: a\r\n\r\n",
         head("GET", "/a/b?x=1&y=%2F", "/a/b", "x=1&y=%2F", 1, "a", H{{"Host", "a"}})},
        {"GET /? HTTP/1.1\r\nHost: a\r\n\r\n",
         head("GET", "/?", "/", "", 1, "a", H{{"Host", "a"}})},
        {"GET /a?b?c=/d HTTP/1.1\r\nHost: a\r\n\r\n",
         head("GET", "/a?b?c=/d", "/a", "b?c=/d", 1, "a", H{{"Host", "a"}})},
        {"GET /a-._~!$&'()*+,;=:@/%41%aF?q HTTP/1.1\r\nHost: a\r\n\r\n",
         head("GET", "/a-._~!$&'()*+,;=:@/%41%aF?q", "/a-._~!$&'()*+,;=:@/%41%aF", "q", 1, "a",
              H{{"Host", "a"}})},
        {"get / HTTP/1.1\r\nHost: a\r\n\r\n", head("get", "/", "/", "", 1, "a", H{{"Host", "a"}})},
        {"M-SEARCH! / HTTP/1.1\r\nHost: a\r\n\r\n",
         head("M-SEARCH!", "/", "/", "", 1, "a", H{{"Host", "a"}})},
        {"POST /hook HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
         head("POST", "/hook", "/hook", "", 1, "a", H{{"Host", "a"}, {"Content-Length", "5"}}, cl,
              5)},
        {with_body,
         head("POST", "/hook", "/hook", "", 1, "a", H{{"Host", "a"}, {"Content-Length", "5"}}, cl,
              5, true, false, with_body.size() - 5)},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
         head("POST", "/", "/", "", 1, "a", H{{"Host", "a"}, {"Content-Length", "0"}}, cl, 0)},
        {"POST / HTTP/1.1\r\nHost: a\r\ncontent-length:  007 \r\n\r\n",
         head("POST", "/", "/", "", 1, "a", H{{"Host", "a"}, {"content-length", "007"}}, cl, 7)},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n",
         head("POST", "/", "/", "", 1, "a",
              H{{"Host", "a"}, {"Content-Length", "9223372036854775807"}}, cl,
              9223372036854775807ull)},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
         head("GET", "/", "/", "", 1, "a", H{{"Host", "a"}, {"Content-Length", "3"}}, cl, 3)},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
         head("POST", "/", "/", "", 1, "a", H{{"Host", "a"}, {"Transfer-Encoding", "chunked"}},
              chunked)},
        {"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding:\tCHUNKED \r\n\r\n",
         head("POST", "/", "/", "", 1, "a", H{{"Host", "a"}, {"transfer-encoding", "CHUNKED"}},
              chunked)},
        {"GET / HTTP/1.0\r\n\r\n", head("GET", "/", "/", "", 0, "", H{}, no_body, 0, false)},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
         head("GET", "/", "/", "", 0, "", H{{"Connection", "keep-alive"}}, no_body, 0, true)},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\n",
         head("GET", "/", "/", "", 0, "", H{{"Connection", "Keep-Alive, close"}}, no_body, 0,
              false)},
        {"GET / HTTP/1.0\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
         head("GET", "/", "/", "", 0, "a", H{{"Host", "a"}, {"Expect", "100-continue"}}, no_body, 0,
              false, false)},
        {"GET / HTTP/1.0\r\nExpect: whatever\r\n\r\n",
         head("GET", "/", "/", "", 0, "", H{{"Expect", "whatever"}}, no_body, 0, false, false)},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
         head("GET", "/", "/", "", 1, "a", H{{"Host", "a"}, {"Connection", "close"}}, no_body, 0,
              false)},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade,, TE ,CLOSE\r\n\r\n",
         head("GET", "/", "/", "", 1, "a", H{{"Host", "a"}, {"Connection", "Upgrade,, TE ,CLOSE"}},
              no_body, 0, false)},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: upgrade\r\n\r\n",
         head("GET", "/", "/", "", 1, "a",
              H{{"Host", "a"}, {"Connection", "keep-alive"}, {"Connection", "upgrade"}})},
        {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", head("GET", "/", "/", "", 1, "a", H{{"Host", "a"}})},
        {"GET / HTTP/1.9\r\nHost: a\r\n\r\n", head("GET", "/", "/", "", 1, "a", H{{"Host", "a"}})},
        {"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
         head("POST", "/", "/", "", 1, "a",
              H{{"Host", "a"}, {"Expect", "100-continue"}, {"Content-Length", "1"}}, cl, 1, true,
              true)},
        {"POST / HTTP/1.1\r\nHost: a\r\nexpect: 100-CONTINUE\r\n\r\n",
         head("POST", "/", "/", "", 1, "a", H{{"Host", "a"}, {"expect", "100-CONTINUE"}}, no_body,
              0, true, true)},
        {pipelined, head("GET", "/1", "/1", "", 1, "a", H{{"Host", "a"}}, no_body, 0, true, false,
                         pipelined.size() / 2)},
        {"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
         head("GET", "/", "/", "", 1, "a", H{{"Host", "a"}})},
        {"GET / HTTP/1.1\r\nHost: a\r\nX:  a b \t\r\nY:\r\nZ: \t\r\nW:v\r\n\r\n",
         head("GET", "/", "/", "", 1, "a",
              H{{"Host", "a"}, {"X", "a b"}, {"Y", ""}, {"Z", ""}, {"W", "v"}})},
        {"GET / HTTP/1.1\r\nHost: a \r\nX: v  \r\nY:v \r\nZ: \r\n\r\n",
         head("GET", "/", "/", "", 1, "a", H{{"Host", "a"}, {"X", "v"}, {"Y", "v"}, {"Z", ""}})},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9 \x80\xff\r\n\r\n",
         head("GET", "/", "/", "", 1, "a", H{{"Host", "a"}, {"X", "caf\xc3\xa9 \x80\xff"}})},
        {"GET / HTTP/1.1\r\nHost: a\r\nX-Under_score.dot~!#$%&'*+^`|: 1\r\n\r\n",
         head("GET", "/", "/", "", 1, "a",
              H{{"Host", "a"}, {"X-Under_score.dot~!#$%&'*+^`|", "1"}})},
        {"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
         head("GET", "/", "/", "", 1, "127.0.0.1:8080", H{{"Host", "127.0.0.1:8080"}})},
        {"GET / HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
         head("GET", "/", "/", "", 1, "[::1]:443", H{{"Host", "[::1]:443"}})},
        {"GET / HTTP/1.1\r\nHost: [2001:db8::ffff:192.0.2.1]\r\n\r\n",
         head("GET", "/", "/", "", 1, "[2001:db8::ffff:192.0.2.1]",
              H{{"Host", "[2001:db8::ffff:192.0.2.1]"}})},
        {"GET / HTTP/1.1\r\nHost: [1:2:3:4:5:6:7:8]\r\n\r\n",
         head("GET", "/", "/", "", 1, "[1:2:3:4:5:6:7:8]", H{{"Host", "[1:2:3:4:5:6:7:8]"}})},
        {"GET / HTTP/1.1\r\nHost: my_host.example-1.com:65535\r\n\r\n",
         head("GET", "/", "/", "", 1, "my_host.example-1.com:65535",
              H{{"Host", "my_host.example-1.com:65535"}})},
        {"GET / HTTP/1.1\r\nHost: xn--caf-dma.example%2Ecom\r\n\r\n",
         head("GET", "/", "/", "", 1, "xn--caf-dma.example%2Ecom",
              H{{"Host", "xn--caf-dma.example%2Ecom"}})},
        {"GET / HTTP/1.1\r\nUpgrade: websocket\r\nHost: a\r\n\r\n",
         head("GET", "/", "/", "", 1, "a", H{{"Upgrade", "websocket"}, {"Host", "a"}})},
        {head_of_size(16 * 1024), {}},
        {many_fields(64), {}},
    };
}

TEST(ParseHead, RefusesEveryMalformedRowWithItsDetail) {
    for (const BadRow& row : bad_rows()) {
        const Outcome o = parse(row.raw);
        EXPECT_EQ(o.error, row.error) << escaped(row.raw) << " -> " << o;
        EXPECT_EQ(o.detail, row.detail) << escaped(row.raw) << " -> " << o;
        EXPECT_EQ(o.consumed, 0u) << escaped(row.raw);
    }
}

TEST(ParseHead, AcceptsEveryGoodRow) {
    for (const GoodRow& row : good_rows()) {
        const Outcome o = parse(row.raw);
        ASSERT_TRUE(o.complete()) << escaped(row.raw) << " -> " << o;
        if (row.expected.minor_version < 0) {
            continue; // only checks that it is accepted
        }
        Outcome expected = row.expected;
        if (expected.consumed == 0) {
            expected.consumed = row.raw.size();
        }
        EXPECT_EQ(o, expected) << escaped(row.raw);
    }
}

TEST(ParseHead, EveryPrefixOfAGoodHeadIsIncomplete) {
    for (const GoodRow& row : good_rows()) {
        const size_t end = parse(row.raw).consumed;
        for (size_t n = 0; n < end; ++n) {
            const Outcome o = parse(std::string_view(row.raw).substr(0, n));
            ASSERT_TRUE(o.incomplete()) << escaped(row.raw.substr(0, n)) << " -> " << o;
        }
    }
}

// The connection layer calls with a prefix, then with the whole buffer (telling how much it had
// passed before): the answer must not depend on where the reads were cut.
TEST(ParseHead, AnswerDoesNotDependOnWhereTheInputIsSplit) {
    std::vector<std::string> inputs;
    for (const BadRow& row : bad_rows()) {
        if (row.raw.size() < 4096) {
            inputs.push_back(row.raw);
        }
    }
    for (const GoodRow& row : good_rows()) {
        if (row.raw.size() < 4096) {
            inputs.push_back(row.raw);
        }
    }
    for (const std::string& raw : inputs) {
        const Outcome whole = parse(raw);
        for (size_t k = 0; k <= raw.size(); ++k) {
            const Outcome first = parse(std::string_view(raw).substr(0, k));
            if (!first.incomplete()) {
                EXPECT_EQ(first, whole) << escaped(raw) << " split at " << k;
                continue;
            }
            for (size_t scanned : {size_t{0}, k}) {
                EXPECT_EQ(parse(raw, scanned), whole)
                    << escaped(raw) << " split at " << k << " scanned " << scanned;
            }
        }
    }
}

// A client sending one byte per read: every call passes what it had already passed.
TEST(ParseHead, ByteByByteWithScannedGivesTheSameAnswer) {
    std::vector<std::string> inputs;
    for (const BadRow& row : bad_rows()) {
        inputs.push_back(row.raw);
    }
    for (const GoodRow& row : good_rows()) {
        inputs.push_back(row.raw);
    }
    for (const std::string& raw : inputs) {
        const Outcome whole = parse(raw);
        Outcome last;
        for (size_t n = 1; n <= raw.size(); ++n) {
            last = parse(std::string_view(raw).substr(0, n), n - 1);
            if (!last.incomplete()) {
                break;
            }
        }
        EXPECT_EQ(last, whole) << escaped(raw.substr(0, 200));
    }
}

TEST(ParseHead, HeadOfExactlyHeaderBytesFitsOneMoreDoesNot) {
    const std::string raw = "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
    Limits limits;
    limits.header_bytes = static_cast<uint32_t>(raw.size());
    EXPECT_TRUE(parse(raw, 0, limits).complete());
    EXPECT_TRUE(parse(raw + "body", 0, limits).complete());
    limits.header_bytes = static_cast<uint32_t>(raw.size() - 1);
    const Outcome o = parse(raw, 0, limits);
    EXPECT_EQ(o.error, Error::header_too_large);
    EXPECT_EQ(o.detail, "head_too_large");
    // Not decided before more than header_bytes bytes are there.
    EXPECT_TRUE(parse(std::string_view(raw).substr(0, raw.size() - 1), 0, limits).incomplete());
    // Leading empty lines count against the limit too.
    limits.header_bytes = static_cast<uint32_t>(raw.size() + 1);
    EXPECT_EQ(parse("\r\n" + raw, 0, limits).error, Error::header_too_large);
}

TEST(ParseHead, ErrorInsideTheLimitBeatsTooLarge) {
    Limits limits;
    limits.header_bytes = 64;
    const Outcome o =
        parse("GET / HTTP/1.1\r\nHost: a\r\nX: a\nb" + std::string(100, 'x'), 0, limits);
    EXPECT_EQ(o.detail, "bare_lf");
}

TEST(ParseHead, FieldCountLimitComesFromLimitsAndFromStorage) {
    const std::string three = "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n";
    Limits limits;
    limits.max_headers = 3;
    EXPECT_TRUE(parse(three, 0, limits).complete());
    limits.max_headers = 2;
    EXPECT_EQ(parse(three, 0, limits).error, Error::header_too_large);
    EXPECT_EQ(parse(three, 0, limits).detail, "too_many_headers");

    std::array<Header, 2> small;
    RequestHead head;
    const HeadResult r = parse_head(three, 0, Limits{}, small, head);
    EXPECT_EQ(r.error, Error::header_too_large);
    const HeadResult none = parse_head("GET / HTTP/1.0\r\n\r\n", 0, Limits{}, {}, head);
    EXPECT_GT(none.consumed, 0u);
}

TEST(ParseHead, ViewsPointIntoTheCallersBuffer) {
    const std::string raw = "POST /a?b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi";
    std::array<Header, 8> storage;
    RequestHead head;
    const HeadResult r = parse_head(raw, 0, Limits{}, storage, head);
    ASSERT_GT(r.consumed, 0u);
    auto inside = [&](std::string_view v) {
        return v.data() >= raw.data() && v.data() + v.size() <= raw.data() + r.consumed;
    };
    for (std::string_view v : {head.method, head.target, head.path, head.query, head.host}) {
        EXPECT_TRUE(inside(v)) << v;
    }
    for (const Header& h : head.headers) {
        EXPECT_TRUE(inside(h.name) && inside(h.value)) << h.name;
    }
    EXPECT_EQ(head.headers.data(), storage.data());
    EXPECT_EQ(head.headers.size(), 2u);
    EXPECT_EQ(find_header(head.headers, "content-length")->value, "2");
}

TEST(ParseHead, StatusAndReasonCodes) {
    struct Row {
        Error error;
        uint16_t status;
        std::string_view reason;
    };
    const Row rows[] = {
        {Error::none, 200, "ok"},
        {Error::bad_request, 400, "malformed"},
        {Error::header_too_large, 431, "header_too_large"},
        {Error::version_unsupported, 505, "version_unsupported"},
        {Error::not_implemented, 501, "not_implemented"},
    };
    for (const Row& r : rows) {
        EXPECT_EQ(status_of(r.error), r.status);
        EXPECT_EQ(reason_of(r.error), r.reason);
    }
}

TEST(ParseHead, IncompleteInputsStayIncomplete) {
    const char* rows[] = {
        "",
        "\r",
        "\r\n",
        "G",
        "GET",
        "GET ",
        "GET /",
        "GET /%",
        "GET /%4",
        "GET / ",
        "GET / HTTP/1.",
        "GET / HTTP/1.1",
        "GET / HTTP/1.1\r",
        "GET / HTTP/1.1\r\n",
        "GET / HTTP/1.1\r\nHost",
        "GET / HTTP/1.1\r\nHost: a",
        "GET / HTTP/1.1\r\nHost: a\r",
        "GET / HTTP/1.1\r\nHost: a\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\r",
        // Errors on a header line wait for its LF.
        "GET / HTTP/1.1\r\nHost : a",
        "GET / HTTP/1.1\r\nHost: a\x01",
        "GET / HTTP/1.1\r\nHost: a\rb",
        "GET / HTTP/1.1\r\nContent-Length: x",
    };
    for (const char* raw : rows) {
        EXPECT_TRUE(parse(raw).incomplete()) << escaped(raw) << " -> " << parse(raw);
    }
}

// --- Scan paths. parse_head classifies the bytes of a head with AVX2, SSE2 or plain C++ (see
// ScanPath); every path must give every answer above, whatever the alignment of the lines to
// its 64-byte blocks.

std::vector<std::string> all_rows() {
    std::vector<std::string> rows;
    for (const BadRow& row : bad_rows()) {
        rows.push_back(row.raw);
    }
    for (const GoodRow& row : good_rows()) {
        rows.push_back(row.raw);
    }
    return rows;
}

TEST(ScanPaths, TheBestAvailablePathIsInUse) {
    EXPECT_TRUE(scan_path_available(ScanPath::scalar));
#if defined(__x86_64__)
    EXPECT_TRUE(scan_path_available(ScanPath::sse2));
    __builtin_cpu_init();
    EXPECT_EQ(scan_path_available(ScanPath::avx2), __builtin_cpu_supports("avx2") != 0);
    EXPECT_EQ(scan_path_available(ScanPath::avx512),
              __builtin_cpu_supports("avx512f") != 0 && __builtin_cpu_supports("avx512bw") != 0);
#endif
    const std::vector<ScanPath> paths = available_scan_paths();
    EXPECT_EQ(scan_path(), paths.back());
    std::string tested;
    for (ScanPath path : paths) {
        tested += " " + std::string(name_of(path));
    }
    RecordProperty("scan_paths", tested);
    std::cout << "scan paths tested here:" << tested << "\n";
}

TEST(ScanPaths, EveryPathGivesEveryAnswer) {
    for (ScanPath path : available_scan_paths()) {
        ScopedScanPath on(path);
        for (const BadRow& row : bad_rows()) {
            const Outcome o = parse(row.raw);
            EXPECT_EQ(o.error, row.error)
                << name_of(path) << ": " << escaped(row.raw) << " -> " << o;
            EXPECT_EQ(o.detail, row.detail)
                << name_of(path) << ": " << escaped(row.raw) << " -> " << o;
        }
        for (const GoodRow& row : good_rows()) {
            const Outcome o = parse(row.raw);
            ASSERT_TRUE(o.complete()) << name_of(path) << ": " << escaped(row.raw) << " -> " << o;
            if (row.expected.minor_version < 0) {
                continue;
            }
            Outcome expected = row.expected;
            if (expected.consumed == 0) {
                expected.consumed = row.raw.size();
            }
            EXPECT_EQ(o, expected) << name_of(path) << ": " << escaped(row.raw);
        }
    }
}

TEST(ScanPaths, EveryPathGivesTheSameAnswerWhereverTheInputIsSplit) {
    for (ScanPath path : available_scan_paths()) {
        ScopedScanPath on(path);
        for (const std::string& raw : all_rows()) {
            if (raw.size() >= 4096) {
                continue;
            }
            const Outcome whole = parse(raw);
            for (size_t k = 0; k <= raw.size(); ++k) {
                const Outcome first = parse(std::string_view(raw).substr(0, k));
                if (!first.incomplete()) {
                    EXPECT_EQ(first, whole) << name_of(path) << ": " << escaped(raw) << " at " << k;
                    continue;
                }
                EXPECT_EQ(parse(raw, k), whole)
                    << name_of(path) << ": " << escaped(raw) << " split at " << k;
            }
        }
    }
}

// Lines that start, end or break at every offset of a 64-byte block: an X-Pad field of every
// length from 0 to 130 bytes moves the line after it through all of them, and the head's end
// through the last, partial block.
TEST(ScanPaths, LinesAtEveryOffsetOfABlock) {
    struct Tail {
        std::string lines; // after the pad line, up to and including the empty line
        std::string_view detail;
        std::string last_value; // of the last field, when accepted
    };
    const Tail tails[] = {
        {"Content-Length: 5\r\n\r\n", "", "5"},
        {"X-Under_score: v\r\n\r\n", "", "v"},
        {"X: a\tb \t\r\n\r\n", "", "a\tb"},
        {"X:v\r\n\r\n", "", "v"},
        {"X: v  \r\n\r\n", "", "v"},
        {"X:   \r\n\r\n", "", ""},
        {"X: " + std::string(70, 'v') + "\r\n\r\n", "", std::string(70, 'v')},
        {"X-" + std::string(70, 'n') + ": v\r\n\r\n", "", "v"},
        {"X: caf\xc3\xa9\r\n\r\n", "", "caf\xc3\xa9"},
        {"Connection: close\r\n\r\n", "", "close"},
        {"X: a\x01\r\n\r\n", "invalid_header_byte", ""},
        {"X: a\x7f\r\n\r\n", "invalid_header_byte", ""},
        {"X: a\rb\r\n\r\n", "bare_cr", ""},
        {"X: a\nb\r\n\r\n", "bare_lf", ""},
        {"X: a\r\r\n\r\n", "bare_cr", ""},
        {"X : a\r\n\r\n", "space_before_colon", ""},
        {"X\x7f: a\r\n\r\n", "invalid_token_byte", ""},
        {"X\r\n\r\n", "missing_colon", ""},
        {": a\r\n\r\n", "empty_header_name", ""},
        {" X: a\r\n\r\n", "obs_fold", ""},
        {"\n", "bare_lf", ""},
        {"\r\r\n", "bare_cr", ""},
        {"Content-Length: 1\r\nContent-Length: 2\r\n\r\n", "duplicate_content_length", ""},
    };
    for (size_t pad = 0; pad <= 130; ++pad) {
        const std::string head =
            "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + std::string(pad, 'p') + "\r\n";
        for (const Tail& tail : tails) {
            const std::string raw = head + tail.lines;
            Outcome reference;
            for (ScanPath path : available_scan_paths()) {
                ScopedScanPath on(path);
                const Outcome o = parse(raw);
                if (path == ScanPath::scalar) {
                    reference = o;
                } else {
                    EXPECT_EQ(o, reference) << name_of(path) << ": " << escaped(raw);
                }
                if (tail.detail.empty()) {
                    ASSERT_TRUE(o.complete())
                        << name_of(path) << ": " << escaped(raw) << " -> " << o;
                    EXPECT_EQ(o.consumed, raw.size());
                    EXPECT_EQ(o.headers.back().second, tail.last_value)
                        << name_of(path) << ": " << escaped(raw);
                    EXPECT_EQ(o.headers[1],
                              std::make_pair(std::string("X-Pad"), std::string(pad, 'p')));
                } else {
                    EXPECT_EQ(o.detail, tail.detail)
                        << name_of(path) << ": " << escaped(raw) << " -> " << o;
                }
            }
        }
    }
}

// Heads of every length up to a few blocks, cut anywhere: the last, partial block and heads
// shorter than a block are classified without reading past the input.
TEST(ScanPaths, HeadsOfEveryLength) {
    // 36: the shortest head_of_size makes.
    for (size_t length = 36; length <= 200; ++length) {
        const std::string raw = head_of_size(length);
        for (ScanPath path : available_scan_paths()) {
            ScopedScanPath on(path);
            ASSERT_TRUE(parse(raw).complete()) << name_of(path) << ": " << escaped(raw);
            for (size_t n = 0; n < raw.size(); ++n) {
                ASSERT_TRUE(parse(std::string_view(raw).substr(0, n)).incomplete())
                    << name_of(path) << ": " << escaped(raw.substr(0, n));
            }
        }
    }
}

// Random changes to good heads (fixed seed): every path gives the answer of the scalar one.
TEST(ScanPaths, MutatedHeadsGetTheSameAnswerOnEveryPath) {
    std::vector<std::string> seeds;
    for (const GoodRow& row : good_rows()) {
        if (row.raw.size() < 1024) {
            seeds.push_back(row.raw);
        }
    }
    seeds.push_back(
        "POST /webhooks/github?x=%2F HTTP/1.1\r\nHost: hooks.example.com\r\nUser-Agent: "
        "GitHub-Hookshot/8e03811\r\nContent-Length: 7421\r\nContent-Type: "
        "application/json\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=" +
        std::string(64, 'd') + "\r\nConnection: close\r\n\r\n");
    std::string interesting = "\r\n\t :;,_-%/?\x7f\x80\xff\x01\"@";
    interesting += '\0';
    std::mt19937 random(20260522);
    const std::vector<ScanPath> paths = available_scan_paths();
    for (int round = 0; round < 20000; ++round) {
        std::string raw = seeds[random() % seeds.size()];
        const int changes = 1 + static_cast<int>(random() % 3);
        for (int c = 0; c < changes && !raw.empty(); ++c) {
            const size_t at = random() % raw.size();
            switch (random() % 4) {
            case 0:
                raw[at] = interesting[random() % interesting.size()];
                break;
            case 1:
                raw[at] = static_cast<char>(random());
                break;
            case 2:
                raw.insert(at, random() % 80, static_cast<char>('a' + random() % 26));
                break;
            default:
                raw.erase(at, 1 + random() % 8);
                break;
            }
        }
        const size_t scanned = raw.empty() ? 0 : random() % raw.size();
        Outcome reference;
        Outcome reference_scanned;
        for (ScanPath path : paths) {
            ScopedScanPath on(path);
            const Outcome o = parse(raw);
            const Outcome o_scanned = parse(raw, scanned);
            if (path == ScanPath::scalar) {
                reference = o;
                reference_scanned = o_scanned;
                continue;
            }
            ASSERT_EQ(o, reference) << name_of(path) << ": " << escaped(raw);
            ASSERT_EQ(o_scanned, reference_scanned)
                << name_of(path) << ": " << escaped(raw) << " scanned " << scanned;
        }
    }
}

} // namespace
