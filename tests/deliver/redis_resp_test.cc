// The RESP codec of the Redis sink: commands as Redis reads them, replies of every type cut at
// every byte (each prefix asks for more, the whole gives the same value), frames back to back in
// pieces of every size, and the limits.
#include "portcullis/deliver/resp.hh"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

using namespace portcullis::deliver;

namespace {

// A value as text: +simple -error :integer $bulk nil #t ,number and aggregates as
// *[a,b] %[k,v] ~[..] >[..] |[..]. Bulk bytes outside printable ASCII as \xNN.
std::string render(const resp::Value& v) {
    auto escaped = [](std::string_view s) {
        std::string out;
        for (unsigned char c : s) {
            if (c >= 0x20 && c < 0x7f && c != '\\') {
                out.push_back(char(c));
            } else {
                char b[8];
                std::snprintf(b, sizeof b, "\\x%02x", c);
                out += b;
            }
        }
        return out;
    };
    switch (v.type) {
    case resp::Type::simple:
        return "+" + escaped(v.text);
    case resp::Type::error:
        return "-" + escaped(v.text);
    case resp::Type::integer:
        return ":" + std::to_string(v.integer);
    case resp::Type::bulk:
        return "$" + escaped(v.text);
    case resp::Type::null:
        return "nil";
    case resp::Type::boolean:
        return v.integer != 0 ? "#t" : "#f";
    case resp::Type::number:
        return "," + escaped(v.text);
    case resp::Type::array:
    case resp::Type::map:
    case resp::Type::set:
    case resp::Type::push:
    case resp::Type::attribute: {
        const char* mark = v.type == resp::Type::array  ? "*"
                           : v.type == resp::Type::map  ? "%"
                           : v.type == resp::Type::set  ? "~"
                           : v.type == resp::Type::push ? ">"
                                                        : "|";
        std::string out = std::string(mark) + "[";
        resp::Elements e(v);
        resp::Value item;
        bool first = true;
        uint64_t n = 0;
        while (e.next(item)) {
            out += first ? "" : ",";
            first = false;
            out += render(item);
            ++n;
        }
        EXPECT_EQ(n, v.count);
        return out + "]";
    }
    }
    return "?";
}

struct Row {
    std::string input;
    std::string expected; // render() of the frame, or "error: <detail>"
};

// Parses `in` whole with a fresh parser.
std::string parse_whole(std::string_view in, size_t& consumed, resp::Limits limits = {}) {
    resp::Parser p(limits);
    resp::Value v;
    const resp::Step s = p.parse(in, v);
    consumed = s.consumed;
    if (s.status == resp::Status::error) {
        return "error: " + std::string(s.detail);
    }
    if (s.status == resp::Status::need_more) {
        return "need_more";
    }
    EXPECT_EQ(v.raw, in.substr(0, s.consumed));
    return render(v);
}

// Every prefix of a valid frame asks for more (an invalid one may fail early, with the same
// detail); the whole frame then completes on the same parser, resumed.
void check_every_split(const Row& r, resp::Limits limits = {}) {
    const bool valid = r.expected.rfind("error: ", 0) != 0;
    for (size_t cut = 0; cut < r.input.size(); ++cut) {
        resp::Parser p(limits);
        resp::Value v;
        const std::string prefix = r.input.substr(0, cut);
        const resp::Step first = p.parse(prefix, v);
        if (valid) {
            ASSERT_EQ(first.status, resp::Status::need_more) << "cut " << cut << " of " << r.input;
        } else if (first.status == resp::Status::error) {
            EXPECT_EQ("error: " + std::string(first.detail), r.expected) << "cut " << cut;
            continue;
        }
        // The same bytes and the rest after them, in a buffer of its own (views must not depend
        // on the first call's).
        const std::string whole = r.input;
        const resp::Step s = p.parse(whole, v);
        if (s.status == resp::Status::error) {
            EXPECT_EQ("error: " + std::string(s.detail), r.expected) << "cut " << cut;
        } else {
            ASSERT_EQ(s.status, resp::Status::done) << "cut " << cut << " of " << r.input;
            EXPECT_EQ(s.consumed, whole.size());
            EXPECT_EQ(render(v), r.expected) << "cut " << cut;
        }
    }
}

const std::vector<Row>& valid_rows() {
    static const std::vector<Row> rows = {
        {"+OK\r\n", "+OK"},
        {"+\r\n", "+"},
        {"-ERR unknown command 'FOO'\r\n", "-ERR unknown command 'FOO'"},
        {"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
         "-WRONGTYPE Operation against a key holding the wrong kind of value"},
        {":0\r\n", ":0"},
        {":-42\r\n", ":-42"},
        {":9223372036854775807\r\n", ":9223372036854775807"},
        {":-9223372036854775808\r\n", ":-9223372036854775808"},
        {"$0\r\n\r\n", "$"},
        {"$-1\r\n", "nil"},
        {"$15\r\n1718000000000-0\r\n", "$1718000000000-0"},
        {std::string("$6\r\na\r\nb\0c\r\n", 12), "$a\\x0d\\x0ab\\x00c"},
        {"*-1\r\n", "nil"},
        {"*0\r\n", "*[]"},
        {"*2\r\n:1\r\n$1\r\nx\r\n", "*[:1,$x]"},
        {"*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$2\r\nid\r\n$1\r\na\r\n*2\r\n$3\r\n2-0\r\n*0\r\n",
         "*[*[$1-0,*[$id,$a]],*[$2-0,*[]]]"},
        {"*3\r\n*1\r\n*1\r\n*0\r\n+a\r\n$-1\r\n", "*[*[*[*[]]],+a,nil]"},
        // RESP3, tolerated.
        {"_\r\n", "nil"},
        {"#t\r\n", "#t"},
        {"#f\r\n", "#f"},
        {",3.14\r\n", ",3.14"},
        {",-inf\r\n", ",-inf"},
        {"(3492890328409238509324850943850943825024385\r\n",
         ",3492890328409238509324850943850943825024385"},
        {"(-1\r\n", ",-1"},
        {"!21\r\nSYNTAX invalid syntax\r\n", "-SYNTAX invalid syntax"},
        {"=15\r\ntxt:Some string\r\n", "$txt:Some string"},
        {"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n", "%[+first,:1,+second,:2]"},
        {"~2\r\n+a\r\n+b\r\n", "~[+a,+b]"},
        {">3\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n_\r\n", ">[$invalidate,*[$k],nil]"},
        {"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n", "|[+key-popularity,%[$a,,0.19]]"},
    };
    return rows;
}

const std::vector<Row>& invalid_rows() {
    static const std::vector<Row> rows = {
        {"?\r\n", "error: unknown type byte"},
        {"\r\n", "error: unknown type byte"},
        {"OK\r\n", "error: unknown type byte"},
        {"+OK\n", "error: LF without CR"},
        {"+O\nK\r\n", "error: LF without CR"},
        {"+OK\rX", "error: CR without LF"},
        {":\r\n", "error: bad integer"},
        {":1x\r\n", "error: bad integer"},
        {":+1\r\n", "error: bad integer"},
        {":9223372036854775808\r\n", "error: bad integer"},
        {":-\r\n", "error: bad integer"},
        {"$-2\r\n", "error: bad bulk length"},
        {"$01\r\nx\r\n", "error: bad bulk length"},
        {"$\r\n", "error: bad bulk length"},
        {"$1x\r\n", "error: bad bulk length"},
        {"$+1\r\nx\r\n", "error: bad bulk length"},
        {"$99999999999999999999999\r\n", "error: bulk string too large"},
        {"$536870913\r\n", "error: bulk string too large"},
        {"$3\r\nabcd\r\n", "error: bulk string not followed by CRLF"},
        {"$3\r\nab\r\n\r\n", "error: bulk string not followed by CRLF"},
        {"!-1\r\n", "error: bad bulk length"},
        {"*-2\r\n", "error: bad aggregate count"},
        {"%-1\r\n", "error: bad aggregate count"},
        {"*x\r\n", "error: bad aggregate count"},
        {"*1048577\r\n", "error: aggregate too large"},
        {"*2\r\n:1\r\n?\r\n", "error: unknown type byte"},
        {"#x\r\n", "error: bad boolean"},
        {"#\r\n", "error: bad boolean"},
        {",\r\n", "error: empty double"},
        {"(1.5\r\n", "error: bad big number"},
        {"(\r\n", "error: bad big number"},
        {"_x\r\n", "error: bad null"},
    };
    return rows;
}

} // namespace

TEST(RespCommand, EncodesArraysOfBulkStrings) {
    struct Case {
        std::vector<std::string> args;
        std::string expected;
    };
    const std::vector<Case> cases = {
        {{"PING"}, "*1\r\n$4\r\nPING\r\n"},
        {{"AUTH", "default", "pw"}, "*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n"},
        {{"SET", "k", ""}, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"},
        {{}, "*0\r\n"},
        // Binary-safe: CR, LF, NUL, '$' and '*' inside an argument are just bytes.
        {{"XADD", std::string("a\r\n*1\r\n$\0b", 10)},
         std::string("*2\r\n$4\r\nXADD\r\n$10\r\na\r\n*1\r\n$\0b\r\n", 31)},
        {{std::string(1234, 'x')}, "*1\r\n$1234\r\n" + std::string(1234, 'x') + "\r\n"},
    };
    for (const Case& c : cases) {
        std::vector<std::string_view> views(c.args.begin(), c.args.end());
        const size_t n = resp::command_size(views);
        EXPECT_EQ(n, c.expected.size());
        std::string out(n + 8, '#');
        char* end = resp::write_command(out.data(), views);
        EXPECT_EQ(size_t(end - out.data()), n);
        EXPECT_EQ(out.substr(0, n), c.expected);
        EXPECT_EQ(out.substr(n), std::string(8, '#')); // nothing written past the end
    }
    // Ten arguments and more: a two-digit count.
    std::vector<std::string_view> many(12, "a");
    std::string out(resp::command_size(many), '\0');
    resp::write_command(out.data(), many);
    EXPECT_EQ(out.substr(0, 5), "*12\r\n");
}

TEST(RespCommand, ReadsBackThroughTheParserAsAnArrayOfBulkStrings) {
    // What the sink writes is what a server's reader sees: an array of exactly those bytes.
    std::string body;
    for (int i = 0; i < 256; ++i) {
        body.push_back(char(i));
    }
    const std::vector<std::string_view> args = {"XADD", "webhooks:github", "*", "body", body};
    std::string out(resp::command_size(args), '\0');
    resp::write_command(out.data(), args);
    size_t consumed = 0;
    resp::Parser p;
    resp::Value v;
    ASSERT_EQ(p.parse(out, v).status, resp::Status::done);
    resp::Elements e(v);
    resp::Value item;
    for (std::string_view a : args) {
        ASSERT_TRUE(e.next(item));
        EXPECT_EQ(item.type, resp::Type::bulk);
        EXPECT_EQ(item.text, a);
    }
    EXPECT_FALSE(e.next(item));
    EXPECT_EQ(parse_whole(out, consumed).substr(0, 6), "*[$XAD");
    EXPECT_EQ(consumed, out.size());
}

TEST(RespParser, ValidRepliesAtEverySplit) {
    for (const Row& r : valid_rows()) {
        size_t consumed = 0;
        EXPECT_EQ(parse_whole(r.input, consumed), r.expected) << r.input;
        EXPECT_EQ(consumed, r.input.size()) << r.input;
        // Bytes after the frame are the next frame's: not consumed.
        EXPECT_EQ(parse_whole(r.input + "+NEXT\r\n", consumed), r.expected) << r.input;
        EXPECT_EQ(consumed, r.input.size()) << r.input;
        check_every_split(r);
    }
}

TEST(RespParser, InvalidRepliesAtEverySplit) {
    for (const Row& r : invalid_rows()) {
        size_t consumed = 0;
        EXPECT_EQ(parse_whole(r.input, consumed), r.expected) << r.input;
        EXPECT_EQ(consumed, 0u);
        check_every_split(r);
    }
}

TEST(RespParser, StaysFailedUntilReset) {
    resp::Parser p;
    resp::Value v;
    EXPECT_EQ(p.parse("?\r\n", v).status, resp::Status::error);
    const resp::Step again = p.parse("+OK\r\n", v);
    EXPECT_EQ(again.status, resp::Status::error);
    EXPECT_EQ(again.detail, "unknown type byte");
    p.reset();
    EXPECT_EQ(p.parse("+OK\r\n", v).status, resp::Status::done);
}

TEST(RespParser, FramesBackToBackInPiecesOfEverySize) {
    // Every valid row, one after the other, as a pipelined connection receives them: in pieces
    // of n bytes for every n, through a buffer that keeps the unconsumed bytes.
    std::string stream;
    std::vector<std::string> expected;
    for (const Row& r : valid_rows()) {
        stream += r.input;
        expected.push_back(r.expected);
    }
    for (size_t piece = 1; piece <= stream.size(); piece += (piece < 64 ? 1 : 97)) {
        resp::Parser p;
        std::string pending;
        std::vector<std::string> got;
        for (size_t at = 0; at < stream.size(); at += piece) {
            pending.append(stream, at, piece);
            for (;;) {
                resp::Value v;
                const resp::Step s = p.parse(pending, v);
                ASSERT_NE(s.status, resp::Status::error) << s.detail << " piece " << piece;
                if (s.status == resp::Status::need_more) {
                    break;
                }
                got.push_back(render(v));
                pending.erase(0, s.consumed);
            }
        }
        EXPECT_TRUE(pending.empty()) << "piece " << piece;
        EXPECT_EQ(got, expected) << "piece " << piece;
    }
}

TEST(RespParser, Limits) {
    size_t consumed = 0;
    resp::Limits small;
    small.max_depth = 2;
    small.max_count = 3;
    small.max_bulk = 4;
    small.max_line = 8;
    small.max_frame = 32;
    const std::vector<Row> rows = {
        {"*1\r\n*1\r\n:1\r\n", "*[*[:1]]"},
        {"*1\r\n*1\r\n*1\r\n:1\r\n", "error: nesting too deep"},
        {"*1\r\n*1\r\n*0\r\n", "*[*[*[]]]"}, // an empty aggregate opens nothing
        {"*3\r\n:1\r\n:2\r\n:3\r\n", "*[:1,:2,:3]"},
        {"*4\r\n", "error: aggregate too large"},
        {"%2\r\n:1\r\n:2\r\n:3\r\n:4\r\n", "%[:1,:2,:3,:4]"}, // the count is of pairs
        {"$4\r\nabcd\r\n", "$abcd"},
        {"$5\r\nabcde\r\n", "error: bulk string too large"},
        {"+12345678\r\n", "+12345678"},
        {"+123456789\r\n", "error: line too long"},
        {"*3\r\n$4\r\nabcd\r\n$4\r\nabcd\r\n$4\r\nabcd\r\n", "error: reply too large"},
        // The same error at every split (found by the fuzz target): a LF is seen before the
        // line is too long, and bytes past max_frame are never looked at.
        {"+1\n3456789012\r\n", "error: LF without CR"},
        {"*3\r\n$4\r\nabcd\r\n$4\r\nabcd\r\n$4\r\nabcdXY", "error: reply too large"},
    };
    for (const Row& r : rows) {
        EXPECT_EQ(parse_whole(r.input, consumed, small), r.expected) << r.input;
        check_every_split(r, small);
    }
    // Without CR, a line is refused once it is longer than max_line, not when all of it came.
    resp::Parser p(small);
    resp::Value v;
    EXPECT_EQ(p.parse("+12345678", v).status, resp::Status::need_more);
    const resp::Step s = p.parse("+123456789", v);
    EXPECT_EQ(s.status, resp::Status::error);
    EXPECT_EQ(s.detail, "line too long");
    // A bulk string announced larger than the frame limit is refused before its bytes come.
    resp::Parser q(small);
    const resp::Step big = q.parse("*1\r\n$4\r\n", v);
    EXPECT_EQ(big.status, resp::Status::need_more);
    resp::Limits frame;
    frame.max_frame = 16;
    resp::Parser f(frame);
    EXPECT_EQ(f.parse("$100\r\n", v).detail, "reply too large");
    // The default depth: 16 aggregates deep, not 17.
    std::string deep;
    for (int i = 0; i < 16; ++i) {
        deep += "*1\r\n";
    }
    EXPECT_EQ(parse_whole(deep + ":1\r\n", consumed).substr(0, 4), "*[*[");
    EXPECT_EQ(parse_whole("*1\r\n" + deep + ":1\r\n", consumed), "error: nesting too deep");
}
