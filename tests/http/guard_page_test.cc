// Every input here is copied so that its last byte is the last readable byte before a PROT_NONE
// page: a parser that reads one byte too far crashes the test (as picohttpparser's test does).
// The outside corpora (llhttp's request tests, h2o's fuzzing corpus) are run the same way.
#include "portcullis/base/encoding.hh"
#include "portcullis/http/parser.hh"
#include "scan_paths.hh"

#include "../guard_page.hh"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::http;
using namespace portcullis::http::test;
using namespace std::string_literals;
using portcullis::testing_support::GuardedBuffer;

namespace {

bool inside(std::string_view v, std::string_view buf) {
    return v.empty() || (v.data() >= buf.data() && v.data() + v.size() <= buf.data() + buf.size());
}

// What a connection made of these reads came to.
struct Verdict {
    bool refused = false;
    std::string detail;
    int heads = 0; // complete request heads
};

// Drives the parser over `reads` as the connection layer would: parse_head on the growing
// unconsumed bytes, then the body by its framing, then the next pipelined request. Every call
// sees its input ending at the guard page.
Verdict run_connection(const std::vector<std::string_view>& reads, GuardedBuffer& guard) {
    Verdict v;
    std::string pending;
    size_t scanned = 0;
    enum class Phase { head, sized_body, chunked_body } phase = Phase::head;
    uint64_t body_left = 0;
    ChunkedDecoder dec;
    std::array<Header, 64> storage;
    for (std::string_view read : reads) {
        pending.append(read);
        for (;;) {
            if (pending.size() > guard.capacity()) {
                pending.erase(0, pending.size() - guard.capacity());
            }
            if (phase == Phase::head) {
                const std::string_view buf = guard.place(pending);
                RequestHead head;
                const HeadResult r = parse_head(buf, scanned, Limits{}, storage, head);
                if (r.error != Error::none) {
                    v.refused = true;
                    v.detail = std::string(r.detail);
                    return v;
                }
                if (r.consumed == 0) {
                    scanned = pending.size();
                    break;
                }
                EXPECT_LE(r.consumed, buf.size());
                const std::string_view used = buf.substr(0, r.consumed);
                for (std::string_view s :
                     {head.method, head.target, head.path, head.query, head.host}) {
                    EXPECT_TRUE(inside(s, used));
                }
                for (const Header& h : head.headers) {
                    EXPECT_TRUE(inside(h.name, used) && inside(h.value, used));
                }
                ++v.heads;
                pending.erase(0, r.consumed);
                scanned = 0;
                if (head.framing == BodyFraming::chunked) {
                    dec.reset();
                    phase = Phase::chunked_body;
                } else if (head.framing == BodyFraming::content_length) {
                    body_left = head.content_length;
                    phase = Phase::sized_body;
                }
            } else if (phase == Phase::sized_body) {
                const size_t take =
                    static_cast<size_t>(std::min<uint64_t>(body_left, pending.size()));
                pending.erase(0, take);
                body_left -= take;
                if (body_left > 0) {
                    break;
                }
                phase = Phase::head;
            } else {
                const std::string_view buf = guard.place(pending);
                const ChunkedDecoder::Step s = dec.feed(buf);
                EXPECT_LE(s.consumed, buf.size());
                EXPECT_TRUE(inside(s.data, buf.substr(0, s.consumed)));
                if (s.error != Error::none) {
                    v.refused = true;
                    v.detail = std::string(s.detail);
                    return v;
                }
                pending.erase(0, s.consumed);
                if (s.done) {
                    phase = Phase::head;
                } else if (s.consumed == 0 || pending.empty()) {
                    break;
                }
            }
        }
    }
    return v;
}

const std::vector<std::string>& sample_inputs() {
    static const std::vector<std::string> inputs = {
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\n\r\nGET /a/b?c=d%20e HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "POST /webhooks/github HTTP/1.1\r\nHost: hooks.example.com\r\nUser-Agent: "
        "GitHub-Hookshot/044aadd\r\nContent-Type: application/json\r\nContent-Length: "
        "2\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=" +
            std::string(64, 'a') + "\r\n\r\n{}",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
        "chunked\r\n\r\n5;a=\"b\"\r\nhello\r\n0\r\n"
        "T: v\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1]:80\r\nX: " + std::string(100, 'v') + "\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-" + std::string(40, 'n') + ": y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00"s + "b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET /%4",
        "GET / HTTP/2.0\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX_Y: a\tb \r\n\r\n",
        "POST /webhooks/github?" + std::string(70, 'q') +
            " HTTP/1.1\r\nHost: a\r\nX-Hub-Signature-256: sha256=" + std::string(64, 'd') +
            "\r\nX-" + std::string(60, 'n') + ": " + std::string(130, 'v') + "\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(30, 'v') + "\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(31, 'v') + "\r\n\r\n",
    };
    return inputs;
}

TEST(GuardPage, ReadingPastTheEndCrashes) {
    GuardedBuffer guard(16);
    const std::string_view v = guard.place("x");
    EXPECT_DEATH(
        {
            volatile char c = v.data()[1];
            (void)c;
        },
        "");
}

TEST(GuardPage, EveryPrefixOfTheSampleHeadsIsParsedInBounds) {
    GuardedBuffer guard(4096);
    std::array<Header, 64> storage;
    for (const std::string& input : sample_inputs()) {
        for (size_t n = 0; n <= input.size(); ++n) {
            const std::string_view buf = guard.place(std::string_view(input).substr(0, n));
            RequestHead head;
            for (size_t scanned : {size_t{0}, n / 2, n > 0 ? n - 1 : 0}) {
                const HeadResult r = parse_head(buf, scanned, Limits{}, storage, head);
                EXPECT_LE(r.consumed, buf.size());
            }
        }
    }
}

TEST(GuardPage, EveryPrefixIsParsedInBoundsOnEveryScanPath) {
    GuardedBuffer guard(4096);
    std::array<Header, 64> storage;
    for (ScanPath path : available_scan_paths()) {
        ScopedScanPath on(path);
        for (const std::string& input : sample_inputs()) {
            for (size_t n = 0; n <= input.size(); ++n) {
                const std::string_view buf = guard.place(std::string_view(input).substr(0, n));
                RequestHead head;
                for (size_t scanned : {size_t{0}, n / 2, n > 0 ? n - 1 : 0}) {
                    const HeadResult r = parse_head(buf, scanned, Limits{}, storage, head);
                    EXPECT_LE(r.consumed, buf.size()) << name_of(path);
                }
            }
        }
    }
}

TEST(GuardPage, EveryPrefixOfChunkedBodiesIsDecodedInBounds) {
    GuardedBuffer guard(4096);
    const std::string bodies[] = {
        "5\r\nhello\r\n0\r\n\r\n",
        "5;a=\"b\\\"c\";d=e \t;f\r\nhello\r\n0\r\nT: v\r\nU:\r\n\r\n",
        "FFFFFFFFFFFFFFFF\r\nabc",
        "5\r\nhello\r\r",
        "0\r\nX\r\n",
    };
    for (const std::string& body : bodies) {
        for (size_t n = 0; n <= body.size(); ++n) {
            std::string_view rest = guard.place(std::string_view(body).substr(0, n));
            ChunkedDecoder dec;
            while (!rest.empty()) {
                const ChunkedDecoder::Step s = dec.feed(rest);
                ASSERT_LE(s.consumed, rest.size());
                if (s.error != Error::none || s.done || s.consumed == 0) {
                    break;
                }
                rest.remove_prefix(s.consumed);
            }
        }
    }
}

// --- A small JSON reader: just enough for the llhttp corpus (objects, arrays, strings with
// escapes, numbers, literals).

struct Json {
    enum class Kind { null, boolean, number, string, array, object } kind = Kind::null;
    std::string text; // string contents, or the number as written
    std::vector<Json> items;
    std::map<std::string, Json> fields;

    const Json* get(const std::string& key) const {
        auto it = fields.find(key);
        return it == fields.end() ? nullptr : &it->second;
    }
};

class JsonReader {
public:
    explicit JsonReader(std::string_view s) : _s(s) {}

    bool read(Json& out) {
        if (!value(out)) {
            return false;
        }
        skip_space();
        return _i == _s.size();
    }

private:
    void skip_space() {
        while (_i < _s.size() && std::strchr(" \t\r\n", _s[_i]) != nullptr) {
            ++_i;
        }
    }

    bool literal(std::string_view word) {
        if (_s.substr(_i, word.size()) != word) {
            return false;
        }
        _i += word.size();
        return true;
    }

    static void append_utf8(std::string& out, uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xc0 | cp >> 6);
            out += static_cast<char>(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xe0 | cp >> 12);
            out += static_cast<char>(0x80 | (cp >> 6 & 0x3f));
            out += static_cast<char>(0x80 | (cp & 0x3f));
        } else {
            out += static_cast<char>(0xf0 | cp >> 18);
            out += static_cast<char>(0x80 | (cp >> 12 & 0x3f));
            out += static_cast<char>(0x80 | (cp >> 6 & 0x3f));
            out += static_cast<char>(0x80 | (cp & 0x3f));
        }
    }

    bool hex4(uint32_t& cp) {
        if (_s.size() - _i < 4) {
            return false;
        }
        cp = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = _s[_i++];
            const int d =
                std::isxdigit(static_cast<unsigned char>(c))
                    ? (std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                                                                   : (c | 0x20) - 'a' + 10)
                    : -1;
            if (d < 0) {
                return false;
            }
            cp = cp << 4 | static_cast<uint32_t>(d);
        }
        return true;
    }

    bool string(std::string& out) {
        if (_i == _s.size() || _s[_i] != '"') {
            return false;
        }
        ++_i;
        while (_i < _s.size()) {
            const char c = _s[_i++];
            if (c == '"') {
                return true;
            }
            if (c != '\\') {
                out += c;
                continue;
            }
            if (_i == _s.size()) {
                return false;
            }
            const char e = _s[_i++];
            switch (e) {
            case '"':
            case '\\':
            case '/':
                out += e;
                break;
            case 'b':
                out += '\b';
                break;
            case 'f':
                out += '\f';
                break;
            case 'n':
                out += '\n';
                break;
            case 'r':
                out += '\r';
                break;
            case 't':
                out += '\t';
                break;
            case 'u': {
                uint32_t cp = 0;
                if (!hex4(cp)) {
                    return false;
                }
                if (cp >= 0xd800 && cp < 0xdc00 && literal("\\u")) {
                    uint32_t low = 0;
                    if (!hex4(low)) {
                        return false;
                    }
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
                }
                append_utf8(out, cp);
                break;
            }
            default:
                return false;
            }
        }
        return false;
    }

    bool value(Json& out) {
        skip_space();
        if (_i == _s.size()) {
            return false;
        }
        const char c = _s[_i];
        if (c == '{') {
            out.kind = Json::Kind::object;
            ++_i;
            skip_space();
            if (_i < _s.size() && _s[_i] == '}') {
                ++_i;
                return true;
            }
            for (;;) {
                skip_space();
                std::string key;
                if (!string(key)) {
                    return false;
                }
                skip_space();
                if (_i == _s.size() || _s[_i++] != ':') {
                    return false;
                }
                if (!value(out.fields[key])) {
                    return false;
                }
                skip_space();
                if (_i == _s.size()) {
                    return false;
                }
                const char sep = _s[_i++];
                if (sep == '}') {
                    return true;
                }
                if (sep != ',') {
                    return false;
                }
            }
        }
        if (c == '[') {
            out.kind = Json::Kind::array;
            ++_i;
            skip_space();
            if (_i < _s.size() && _s[_i] == ']') {
                ++_i;
                return true;
            }
            for (;;) {
                out.items.emplace_back();
                if (!value(out.items.back())) {
                    return false;
                }
                skip_space();
                if (_i == _s.size()) {
                    return false;
                }
                const char sep = _s[_i++];
                if (sep == ']') {
                    return true;
                }
                if (sep != ',') {
                    return false;
                }
            }
        }
        if (c == '"') {
            out.kind = Json::Kind::string;
            return string(out.text);
        }
        if (literal("null")) {
            out.kind = Json::Kind::null;
            return true;
        }
        if (literal("true") || literal("false")) {
            out.kind = Json::Kind::boolean;
            return true;
        }
        const size_t start = _i;
        while (_i < _s.size() && std::strchr("+-0123456789.eE", _s[_i]) != nullptr) {
            ++_i;
        }
        out.kind = Json::Kind::number;
        out.text = std::string(_s.substr(start, _i - start));
        return _i > start;
    }

    std::string_view _s;
    size_t _i = 0;
};

std::string shared_dir() {
    const char* dir = std::getenv("PORTCULLIS_SHARED");
    return dir == nullptr ? std::string() : std::string(dir);
}

// llhttp's error field reads like: error code=22 reason="Pause on CONNECT/Upgrade".
int llhttp_error_code(const Json& c) {
    const Json* e = c.get("error");
    if (e == nullptr || e->kind != Json::Kind::string) {
        return -1;
    }
    const size_t at = e->text.find("code=");
    return at == std::string::npos ? -1 : std::atoi(e->text.c_str() + at + 5);
}

// llhttp "error" cases that portcullis accepts on purpose. llhttp only takes the methods it
// knows (ANNOUNCE is RTSP, MKCOLA is no method); here any token is a method and the router
// answers 405 for the ones a route does not take.
const std::map<std::string, std::string> accepted_on_purpose = {
    {"Invalid requests / ICE protocol and GET method / HTTP protocol and ANNOUNCE method",
     "any token is a method"},
    {"Invalid requests / ICE protocol and GET method / Invalid method", "any token is a method"},
};

// Most llhttp cases have no Host, which alone gets them refused. Giving them one checks that
// what llhttp objects to is refused for its own sake.
std::string with_host(std::string raw) {
    const size_t eol = raw.find("\r\n");
    if (eol != std::string::npos && eol > 0) {
        raw.insert(eol + 2, "Host: example.com\r\n");
    }
    return raw;
}

TEST(LlhttpCorpus, StrictErrorCasesAreRefused) {
    const std::string path = shared_dir() + "/corpora/llhttp-requests.jsonl";
    std::ifstream file(path);
    if (shared_dir().empty() || !file) {
        GTEST_SKIP() << "no llhttp corpus at " << path;
    }
    GuardedBuffer guard(64 * 1024);
    int cases = 0;
    int refused = 0;
    std::string line;
    while (std::getline(file, line)) {
        if (line.empty()) {
            continue;
        }
        Json c;
        ASSERT_TRUE(JsonReader(line).read(c)) << line.substr(0, 200);
        const Json* meta = c.get("meta");
        const Json* type = meta == nullptr ? nullptr : meta->get("type");
        if (type == nullptr || type->text != "request") {
            continue; // the lenient-* cases describe what portcullis must not accept
        }
        const Json* name = c.get("name");
        const Json* expect = c.get("expect");
        const Json* raw_b64 = c.get("raw_b64");
        ASSERT_TRUE(name && expect && raw_b64) << line.substr(0, 200);
        std::string raw(base::base64_decoded_max_size(raw_b64->text.size()), '\0');
        const auto n = base::base64_decode(raw_b64->text,
                                           {reinterpret_cast<uint8_t*>(raw.data()), raw.size()});
        ASSERT_TRUE(n) << name->text;
        raw.resize(*n);

        ++cases;
        const Verdict whole = run_connection({raw}, guard);
        // The same bytes one read per byte must end the same way.
        std::vector<std::string_view> bytes;
        for (size_t i = 0; i < raw.size(); ++i) {
            bytes.push_back(std::string_view(raw).substr(i, 1));
        }
        const Verdict trickled = run_connection(bytes, guard);
        EXPECT_EQ(trickled.refused, whole.refused) << name->text;
        EXPECT_EQ(trickled.detail, whole.detail) << name->text;

        const int code = llhttp_error_code(c);
        if (expect->text != "error" || code == 22 || code == 23 || code == 5) {
            continue;
        }
        const Verdict hosted =
            whole.detail == "missing_host" ? run_connection({with_host(raw)}, guard) : whole;
        if (hosted.refused) {
            ++refused;
            continue;
        }
        if (accepted_on_purpose.count(name->text) == 0) {
            ADD_FAILURE() << "accepted llhttp error case: " << name->text << " ("
                          << c.get("error")->text << ")";
        }
    }
    EXPECT_GT(cases, 100);
    EXPECT_GT(refused, 40);
}

std::vector<std::string_view> split_reads(std::string_view data) {
    constexpr std::string_view mark = "\n--MARK--\n";
    std::vector<std::string_view> reads;
    for (;;) {
        const size_t at = data.find(mark);
        if (at == std::string_view::npos) {
            reads.push_back(data);
            return reads;
        }
        reads.push_back(data.substr(0, at));
        data.remove_prefix(at + mark.size());
    }
}

TEST(H2oCorpus, EveryInputIsParsedInBounds) {
    const std::filesystem::path dir = shared_dir() + "/corpora/h2o-http1";
    std::error_code ec;
    if (shared_dir().empty() || !std::filesystem::is_directory(dir, ec)) {
        GTEST_SKIP() << "no h2o corpus at " << dir;
    }
    GuardedBuffer guard(64 * 1024);
    int files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        std::ifstream in(entry.path(), std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        const std::string data = ss.str();
        run_connection(split_reads(data), guard);
        ++files;
    }
    EXPECT_GT(files, 1000);
}

bool operator==(const Verdict& a, const Verdict& b) {
    return a.refused == b.refused && a.detail == b.detail && a.heads == b.heads;
}

// The outside corpora as connections: each llhttp request whole and one byte per read, each
// h2o input in its reads.
std::vector<std::vector<std::string>> corpus_connections() {
    std::vector<std::vector<std::string>> connections;
    std::ifstream llhttp(shared_dir() + "/corpora/llhttp-requests.jsonl");
    std::string line;
    while (!shared_dir().empty() && std::getline(llhttp, line)) {
        Json c;
        if (line.empty() || !JsonReader(line).read(c)) {
            continue;
        }
        const Json* raw_b64 = c.get("raw_b64");
        if (raw_b64 == nullptr) {
            continue;
        }
        std::string raw(base::base64_decoded_max_size(raw_b64->text.size()), '\0');
        const auto n = base::base64_decode(raw_b64->text,
                                           {reinterpret_cast<uint8_t*>(raw.data()), raw.size()});
        if (!n) {
            continue;
        }
        raw.resize(*n);
        connections.push_back({raw});
        std::vector<std::string> bytes;
        for (char b : raw) {
            bytes.emplace_back(1, b);
        }
        connections.push_back(bytes);
    }
    const std::filesystem::path h2o = shared_dir() + "/corpora/h2o-http1";
    std::error_code ec;
    if (!shared_dir().empty() && std::filesystem::is_directory(h2o, ec)) {
        for (const auto& entry : std::filesystem::directory_iterator(h2o)) {
            std::ifstream in(entry.path(), std::ios::binary);
            std::stringstream ss;
            ss << in.rdbuf();
            const std::string data = ss.str();
            std::vector<std::string> reads;
            for (std::string_view read : split_reads(data)) {
                reads.emplace_back(read);
            }
            connections.push_back(reads);
        }
    }
    return connections;
}

TEST(GuardPage, CorporaGetTheSameVerdictsOnEveryScanPath) {
    const std::vector<std::vector<std::string>> connections = corpus_connections();
    if (connections.empty()) {
        GTEST_SKIP() << "no corpora under " << shared_dir();
    }
    GuardedBuffer guard(64 * 1024);
    for (const std::vector<std::string>& connection : connections) {
        const std::vector<std::string_view> reads(connection.begin(), connection.end());
        Verdict reference;
        for (ScanPath path : available_scan_paths()) {
            ScopedScanPath on(path);
            const Verdict v = run_connection(reads, guard);
            if (path == ScanPath::scalar) {
                reference = v;
                continue;
            }
            ASSERT_TRUE(v == reference)
                << name_of(path) << ": " << v.detail << " / " << v.heads << " instead of "
                << reference.detail << " / " << reference.heads << " for a connection of "
                << reads.size() << " reads starting " << std::string(reads[0].substr(0, 80));
        }
    }
}

} // namespace
