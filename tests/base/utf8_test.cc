#include "portcullis/base/utf8.hh"

#include "../guard_page.hh"
#include "../utf8_reference.hh"

#include <gtest/gtest.h>

#include <random>
#include <string>

using namespace portcullis::base;
using portcullis::testing_support::append_utf8_pattern;
using portcullis::testing_support::GuardedBuffer;
using portcullis::testing_support::reference_is_utf8;

namespace {

struct Row {
    std::string bytes;
    bool valid;
};

// Each row's edge of Unicode Table 3-7, on both sides.
const Row rows[] = {
    {"", true},
    {"plain ascii", true},
    {std::string("\x00\x7f", 2), true},
    {"\xc2\x80", true},                  // U+0080, the smallest two-byte form
    {"\xdf\xbf", true},                  // U+07FF
    {"\xc0\x80", false},                 // overlong NUL
    {"\xc1\xbf", false},                 // overlong U+007F
    {"\xe0\xa0\x80", true},              // U+0800
    {"\xe0\x9f\xbf", false},             // overlong U+07FF
    {"\xe1\x80\x80", true},              // U+1000
    {"\xec\xbf\xbf", true},              // U+CFFF
    {"\xed\x80\x80", true},              // U+D000
    {"\xed\x9f\xbf", true},              // U+D7FF, the last before the surrogates
    {"\xed\xa0\x80", false},             // U+D800, a lone high surrogate
    {"\xed\xbf\xbf", false},             // U+DFFF
    {"\xed\xa0\xbd\xed\xb2\xa9", false}, // a surrogate pair encoded as two sequences (CESU-8)
    {"\xee\x80\x80", true},              // U+E000
    {"\xef\xbf\xbf", true},              // U+FFFF
    {"\xef\xbb\xbf", true},              // the byte order mark is a character like any other
    {"\xf0\x90\x80\x80", true},          // U+10000
    {"\xf0\x8f\xbf\xbf", false},         // overlong U+FFFF
    {"\xf3\xbf\xbf\xbf", true},          // U+FFFFF
    {"\xf4\x8f\xbf\xbf", true},          // U+10FFFF
    {"\xf4\x90\x80\x80", false},         // U+110000
    {"\xf5\x80\x80\x80", false},
    {"\xf8\x88\x80\x80\x80", false}, // five-byte form
    {"\xfe", false},
    {"\xff", false},
    {"\x80", false}, // a continuation byte alone
    {"a\xbf", false},
    {"\xc3", false}, // truncated at the end
    {"\xe2\x82", false},
    {"\xf0\x9f\x98", false},
    {"\xc3(", false}, // continuation replaced
    {"\xe2(\xa1", false},
    {"\xe2\x82(", false},
    {"\xf0\x9f(\xa9", false},
    {"\xf0\x9f\x98(", false},
    {"na\xc3\xafve \xe2\x82\xac \xf0\x9f\x98\x80", true},
    // The fast path: 16 ASCII bytes, then a fault right after them, or in the 2nd window.
    {"0123456789abcdef\xff", false},
    {"0123456789abcdef0123456789abcde\xc3", false},
    {"0123456789abcdef0123456789abcdef", true},
    // A sequence that straddles the end of a 16-byte window.
    {"0123456789abcde\xe2\x82\xac"
     "0123456789abcdef",
     true},
    {"0123456789abcde\xe2\x82("
     "0123456789abcdef",
     false},
};

} // namespace

TEST(Utf8, TableOfWellFormedSequences) {
    for (const Row& row : rows) {
        SCOPED_TRACE(testing::PrintToString(row.bytes));
        EXPECT_EQ(is_utf8(row.bytes), row.valid);
        EXPECT_EQ(reference_is_utf8(row.bytes), row.valid);
    }
}

TEST(Utf8, SequenceLengthAgreesWithTheTable) {
    EXPECT_EQ(utf8_sequence_length("a", 0), 1u);
    EXPECT_EQ(utf8_sequence_length("\xc3\xaf", 0), 2u);
    EXPECT_EQ(utf8_sequence_length("\xe2\x82\xac", 0), 3u);
    EXPECT_EQ(utf8_sequence_length("\xf0\x9f\x98\x80", 0), 4u);
    EXPECT_EQ(utf8_sequence_length("\xed\xa0\x80", 0), 0u);
    EXPECT_EQ(utf8_sequence_length("\xf0\x9f\x98", 0), 0u);
    EXPECT_EQ(utf8_sequence_length("x\xc3\xaf", 1), 2u);
}

// Every lead byte with every second byte, then padded with continuation bytes: all 65536 two-
// byte prefixes, compared with the reference decoder.
TEST(Utf8, EveryTwoBytePrefixMatchesTheReference) {
    for (int a = 0; a < 256; ++a) {
        for (int b = 0; b < 256; ++b) {
            for (size_t tail = 0; tail <= 2; ++tail) {
                std::string s{static_cast<char>(a), static_cast<char>(b)};
                s.append(tail, '\x80');
                ASSERT_EQ(is_utf8(s), reference_is_utf8(s))
                    << std::hex << a << " " << b << " + " << tail;
            }
        }
    }
}

// Random strings built from pieces that are often almost right (valid characters, surrogates,
// values past U+10FFFF, cut sequences, stray bytes, ASCII runs long enough for the fast path),
// each placed so that it ends at a guard page: the validator must agree with the reference and
// must not read past the end.
TEST(Utf8, RandomizedDifferentialAgainstReference) {
    std::mt19937_64 rng(20261122); // fixed: a failure reproduces
    GuardedBuffer guard(4096);
    size_t valid = 0;
    constexpr int runs = 200000;
    for (int run = 0; run < runs; ++run) {
        std::string s;
        const int pieces = static_cast<int>(rng() % 12);
        for (int k = 0; k < pieces; ++k) {
            switch (rng() % 8) {
            case 0:
                s.append(rng() % 40, static_cast<char>('a' + rng() % 26));
                break;
            case 1:
                append_utf8_pattern(s, static_cast<uint32_t>(rng() % 0x80));
                break;
            case 2:
                append_utf8_pattern(s, static_cast<uint32_t>(0x80 + rng() % 0x780));
                break;
            case 3:
                append_utf8_pattern(s, static_cast<uint32_t>(0x800 + rng() % 0xf800));
                break;
            case 4:
                append_utf8_pattern(s, static_cast<uint32_t>(0x10000 + rng() % 0x100100));
                break;
            case 5: {
                std::string c;
                append_utf8_pattern(c, static_cast<uint32_t>(0x80 + rng() % 0x10ff80));
                s.append(c.substr(0, 1 + rng() % c.size())); // often cut short
                break;
            }
            case 6:
                s.push_back(static_cast<char>(rng() & 0xff));
                break;
            default:
                append_utf8_pattern(s, static_cast<uint32_t>(0xd800 + rng() % 0x800));
                break;
            }
        }
        const bool expected = reference_is_utf8(s);
        valid += expected ? 1 : 0;
        ASSERT_EQ(is_utf8(guard.place(s)), expected) << testing::PrintToString(s);
    }
    // Both answers must be well represented for the comparison to mean anything.
    EXPECT_GT(valid, runs / 10u);
    EXPECT_LT(valid, runs * 9 / 10u);
}
