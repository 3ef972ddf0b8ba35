#include "portcullis/http/parser.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

using namespace portcullis::http;
using namespace std::string_literals;

namespace {

// Everything a decoder said about one message.
struct Decoded {
    std::string body;
    bool done = false;
    Error error = Error::none;
    std::string detail;
    size_t used = 0; // input bytes consumed in all

    bool operator==(const Decoded&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Decoded& d) {
    return os << "{body=" << d.body.size() << " bytes, done=" << d.done
              << " status=" << status_of(d.error) << " detail=" << d.detail << " used=" << d.used
              << "}";
}

// Feeds `input` as the connection layer would, with reads ending at each of `cuts` (increasing,
// the last one input.size()). Checks that data views point into the input.
Decoded decode(std::string_view input, const std::vector<size_t>& cuts) {
    ChunkedDecoder dec;
    Decoded d;
    for (size_t available : cuts) {
        while (d.used < available) {
            const std::string_view in = input.substr(d.used, available - d.used);
            const ChunkedDecoder::Step s = dec.feed(in);
            EXPECT_LE(s.consumed, in.size());
            if (!s.data.empty()) {
                EXPECT_GE(s.data.data(), in.data());
                EXPECT_LE(s.data.data() + s.data.size(), in.data() + s.consumed);
            }
            d.body.append(s.data);
            d.used += s.consumed;
            if (s.error != Error::none) {
                d.error = s.error;
                d.detail = std::string(s.detail);
                d.used = 0; // not meaningful after an error
                return d;
            }
            if (s.done) {
                d.done = true;
                return d;
            }
            if (s.consumed == 0) {
                ADD_FAILURE() << "no progress on " << in.size() << " bytes";
                return d;
            }
        }
    }
    return d;
}

Decoded decode_whole(std::string_view input) {
    return decode(input, {input.size()});
}

std::string escaped(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 120)) {
        if (c == '\r') {
            out += "\\r";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

struct GoodRow {
    std::string encoded;
    std::string body;
    std::string rest; // bytes after the message, left for the next request
};

std::vector<GoodRow> good_rows() {
    return {
        {"0\r\n\r\n", "", ""},
        {"5\r\nhello\r\n0\r\n\r\n", "hello", ""},
        {"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", ""},
        {"A\r\n0123456789\r\n0\r\n\r\n", "0123456789", ""},
        {"a\r\n0123456789\r\n0\r\n\r\n", "0123456789", ""},
        {"0005\r\nhello\r\n0000\r\n\r\n", "hello", ""},
        {"0000000000000005\r\nhello\r\n0\r\n\r\n", "hello", ""},
        {"5\r\n\r\n\r\n\n\r\n0\r\n\r\n", "\r\n\r\n\n", ""},
        {"5;a\r\nhello\r\n0\r\n\r\n", "hello", ""},
        {"5;a=b\r\nhello\r\n0\r\n\r\n", "hello", ""},
        {"5;a=\"b c\"\r\nhello\r\n0\r\n\r\n", "hello", ""},
        {"5;a=\"\\\"q\\\\\";b=\"\"\r\nhello\r\n0\r\n\r\n", "hello", ""},
        {"5 ;a=b\r\nhello\r\n0\r\n\r\n", "hello", ""},
        {"5\t; a = b ;c\t;d=\"e\" ;f\r\nhello\r\n0\r\n\r\n", "hello", ""},
        {"5;a=\"caf\xc3\xa9\"\r\nhello\r\n0;last=1\r\n\r\n", "hello", ""},
        {"0\r\nX-Trailer: v\r\n\r\n", "", ""},
        {"0\r\nA: 1\r\nB:\r\nC: \t x \r\n\r\n", "", ""},
        {"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "abc", "GET / HTTP/1.1\r\n"},
        {"1\r\na\r\n0\r\n\r\n0\r\n\r\n", "a", "0\r\n\r\n"},
        {"400\r\n" + std::string(1024, 'x') + "\r\n0\r\n\r\n", std::string(1024, 'x'), ""},
        {"0;" + std::string(4000, 'e') + "\r\n\r\n", "", ""},
        {"0\r\nX: " + std::string(16000, 't') + "\r\n\r\n", "", ""},
    };
}

struct BadRow {
    std::string encoded;
    std::string_view detail;
};

std::vector<BadRow> bad_rows() {
    return {
        {"\r\n", "bad_chunk_size"},
        {"x\r\n", "bad_chunk_size"},
        {"+5\r\nhello\r\n", "bad_chunk_size"},
        {"-1\r\n", "bad_chunk_size"},
        {"0x5\r\nhello\r\n", "bad_chunk_size"},
        {" 5\r\nhello\r\n", "bad_chunk_size"},
        {"5 \r\nhello\r\n", "bad_chunk_size"},
        {"a \r\n0123456789\r\n0\r\n\r\n", "bad_chunk_size"},
        {"2 erfrferferf\r\naa\r\n0 rrrr\r\n\r\n", "bad_chunk_size"},
        {"3\r\nfoo\r\n\r\n", "bad_chunk_size"},
        {"3 \n  \r\nfoo\r\n\r\n", "bare_lf"},
        {"00000000000000005\r\nhello\r\n", "chunk_size_overflow"},
        {"10000000000000000\r\n", "chunk_size_overflow"},
        {"5\nhello\r\n0\r\n\r\n", "bare_lf"},
        {"5\rhello\r\n0\r\n\r\n", "bare_cr"},
        {"5\r\r;ABCD\r\n34\r\nE\r\n0\r\n\r\n", "bare_cr"},
        {"5\r\nhello\n0\r\n\r\n", "bare_lf"},
        {"5\r\nhello\rX0\r\n\r\n", "bare_cr"},
        {"5\r\nhelloX\r\n0\r\n\r\n", "missing_chunk_crlf"},
        {"5\r\nABCDE0\r\n\r\n", "missing_chunk_crlf"},
        {"0\r\n\n", "bare_lf"},
        {"0\r\n\rX", "bare_cr"},
        {"0\n\r\n", "bare_lf"},
        {"5;\r\nhello\r\n", "bad_chunk_ext"},
        {"5; \r\nhello\r\n", "bad_chunk_ext"},
        {"5;=b\r\nhello\r\n", "bad_chunk_ext"},
        {"5;a=\r\nhello\r\n", "bad_chunk_ext"},
        {"5;a=b c\r\nhello\r\n", "bad_chunk_ext"},
        {"5;a \r\nhello\r\n", "bad_chunk_ext"},
        {"5;a=b \r\nhello\r\n", "bad_chunk_ext"},
        {"5;a=\"b\" x\r\nhello\r\n", "bad_chunk_ext"},
        {"5;a=\"b\"c\r\nhello\r\n", "bad_chunk_ext"},
        {"5;a=\"b\r\nhello\r\n", "bad_chunk_ext"},
        {"5;ilovew3=\"abc\";somuchlove=\"def; ghi\r\nhello\r\n", "bad_chunk_ext"},
        {"5;a@\r\nhello\r\n", "bad_chunk_ext"},
        {"5;a=b@\r\nhello\r\n", "bad_chunk_ext"},
        {"5;a=\"\x01\"\r\nhello\r\n", "bad_chunk_ext"},
        {"5;a=\"\\\x01\"\r\nhello\r\n", "bad_chunk_ext"},
        {"5;a=\"\x7f\"\r\nhello\r\n", "bad_chunk_ext"},
        {"5;a;\r\nhello\r\n", "bad_chunk_ext"},
        {"5;a=b=c\r\nhello\r\n", "bad_chunk_ext"},
        {"0;" + std::string(4093, 'e') + "\r\n\r\n", "chunk_line_too_long"},
        {"0\r\n Foo: a\r\n\r\n", "obs_fold"},
        {"0\r\nFoo: a\r\n\tb\r\n\r\n", "obs_fold"},
        {"0\r\nFoo : a\r\n\r\n", "space_before_colon"},
        {"0\r\n: a\r\n\r\n", "empty_header_name"},
        {"0\r\nFoo\r\n\r\n", "missing_colon"},
        {"0\r\nF@o: a\r\n\r\n", "invalid_token_byte"},
        {"0\r\n\x01: a\r\n\r\n", "invalid_token_byte"},
        {"0\r\nFoo: a\x00"s + "\r\n\r\n", "invalid_header_byte"},
        {"0\r\nFoo: a\x7f\r\n\r\n", "invalid_header_byte"},
        {"0\r\nFoo: a\n\r\n", "bare_lf"},
        {"0\r\nFoo: a\rb\r\n\r\n", "bare_cr"},
        {"0\r\nX: " + std::string(16400, 't') + "\r\n\r\n", "trailers_too_large"},
    };
}

std::vector<size_t> every_byte(size_t n) {
    std::vector<size_t> cuts;
    for (size_t i = 1; i <= n; ++i) {
        cuts.push_back(i);
    }
    return cuts;
}

std::vector<size_t> random_cuts(size_t n, std::mt19937& rng) {
    std::vector<size_t> cuts;
    std::uniform_int_distribution<size_t> step(1, 9);
    for (size_t at = step(rng); at < n; at += step(rng)) {
        cuts.push_back(at);
    }
    cuts.push_back(n);
    return cuts;
}

TEST(ChunkedDecoder, DecodesGoodBodiesAndLeavesTheRest) {
    for (const GoodRow& row : good_rows()) {
        const Decoded d = decode_whole(row.encoded);
        EXPECT_EQ(d.error, Error::none) << escaped(row.encoded) << " " << d;
        EXPECT_TRUE(d.done) << escaped(row.encoded);
        EXPECT_EQ(d.body, row.body) << escaped(row.encoded);
        EXPECT_EQ(row.encoded.substr(d.used), row.rest) << escaped(row.encoded);
    }
}

TEST(ChunkedDecoder, RefusesBadFramingWithItsDetail) {
    for (const BadRow& row : bad_rows()) {
        const Decoded d = decode_whole(row.encoded);
        EXPECT_EQ(d.error, Error::bad_request) << escaped(row.encoded) << " " << d;
        EXPECT_EQ(d.detail, row.detail) << escaped(row.encoded);
    }
}

TEST(ChunkedDecoder, ByteByByteAndRandomSplitsGiveTheSameResult) {
    std::mt19937 rng(20240611);
    std::vector<std::string> inputs;
    for (const GoodRow& row : good_rows()) {
        inputs.push_back(row.encoded);
    }
    for (const BadRow& row : bad_rows()) {
        inputs.push_back(row.encoded);
    }
    for (const std::string& input : inputs) {
        const Decoded whole = decode_whole(input);
        EXPECT_EQ(decode(input, every_byte(input.size())), whole) << escaped(input);
        for (int i = 0; i < 20; ++i) {
            EXPECT_EQ(decode(input, random_cuts(input.size(), rng)), whole) << escaped(input);
        }
    }
}

TEST(ChunkedDecoder, EveryPrefixOfAGoodBodyIsUnfinished) {
    for (const GoodRow& row : good_rows()) {
        const size_t end = decode_whole(row.encoded).used;
        for (size_t n = 0; n < end; n += 1 + n / 64) {
            const Decoded d = decode_whole(std::string_view(row.encoded).substr(0, n));
            EXPECT_FALSE(d.done) << escaped(row.encoded.substr(0, n));
            EXPECT_EQ(d.error, Error::none) << escaped(row.encoded.substr(0, n));
        }
    }
}

TEST(ChunkedDecoder, ReturnsOneDataRunPerCall) {
    ChunkedDecoder dec;
    const std::string in = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    ChunkedDecoder::Step s = dec.feed(in);
    EXPECT_EQ(s.data, "abc");
    EXPECT_EQ(s.consumed, 6u);
    s = dec.feed(std::string_view(in).substr(6));
    EXPECT_EQ(s.data, "de");
    EXPECT_EQ(s.consumed, 7u);
    s = dec.feed(std::string_view(in).substr(13));
    EXPECT_TRUE(s.done);
    EXPECT_TRUE(s.data.empty());
    EXPECT_EQ(s.consumed, in.size() - 13);
}

TEST(ChunkedDecoder, HugeChunkSizeStreamsWithoutOverflow) {
    ChunkedDecoder dec;
    ChunkedDecoder::Step s = dec.feed("FFFFFFFFFFFFFFFF\r\nabcdef");
    EXPECT_EQ(s.error, Error::none);
    EXPECT_EQ(s.data, "abcdef");
    s = dec.feed("ghi");
    EXPECT_EQ(s.data, "ghi");
    EXPECT_FALSE(s.done);
}

TEST(ChunkedDecoder, RepeatsItsVerdictUntilReset) {
    ChunkedDecoder dec;
    ChunkedDecoder::Step s = dec.feed("0\r\n\r\nGET");
    EXPECT_TRUE(s.done);
    EXPECT_EQ(s.consumed, 5u);
    s = dec.feed("GET");
    EXPECT_TRUE(s.done);
    EXPECT_EQ(s.consumed, 0u);

    dec.reset();
    s = dec.feed("zz");
    EXPECT_EQ(s.error, Error::bad_request);
    EXPECT_EQ(s.detail, "bad_chunk_size");
    s = dec.feed("0\r\n\r\n");
    EXPECT_EQ(s.error, Error::bad_request);
    EXPECT_EQ(s.detail, "bad_chunk_size");
    EXPECT_EQ(s.consumed, 0u);

    dec.reset();
    s = dec.feed("1\r\nx\r\n0\r\n\r\n");
    EXPECT_EQ(s.data, "x");
    EXPECT_EQ(dec.feed(std::string_view("1\r\nx\r\n0\r\n\r\n").substr(s.consumed)).done, true);
}

TEST(ChunkedDecoder, StateIsAFewWords) {
    EXPECT_LE(sizeof(ChunkedDecoder), 16u);
}

} // namespace
