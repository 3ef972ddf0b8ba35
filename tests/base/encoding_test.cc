#include "portcullis/base/encoding.hh"

#include <gtest/gtest.h>

#include <array>
#include <string>

using namespace portcullis::base;

TEST(Hex, RoundTripsEveryByte) {
    std::array<uint8_t, 256> all{};
    for (int i = 0; i < 256; ++i) {
        all[i] = static_cast<uint8_t>(i);
    }
    std::string h = hex(all);
    ASSERT_EQ(h.size(), 512u);
    EXPECT_EQ(h.substr(0, 6), "000102");
    std::array<uint8_t, 256> back{};
    auto n = hex_decode(h, back);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 256u);
    EXPECT_EQ(back, all);
}

TEST(Hex, RejectsOddLengthBadDigitsAndOverflow) {
    uint8_t out[4];
    EXPECT_FALSE(hex_decode("abc", out));
    EXPECT_FALSE(hex_decode("zz", out));
    EXPECT_FALSE(hex_decode("0011223344", out));
    EXPECT_EQ(hex_decode("AbCd", out).value(), 2u);
    EXPECT_EQ(out[0], 0xab);
    EXPECT_EQ(out[1], 0xcd);
}

// The 16-digits-a-step path (a 64-digit signature, as GitHub and Stripe send): every byte that is
// not a digit, at every position, is refused; both cases of every digit decode.
TEST(Hex, EveryBadByteAtEveryPositionOfALongStringIsRefused) {
    const std::string good = "0123456789abcdefABCDEF0123456789fedcba9876543210FEDCBA0011223344";
    ASSERT_EQ(good.size(), 64u);
    uint8_t out[32];
    ASSERT_EQ(hex_decode(good, out).value(), 32u);
    EXPECT_EQ(hex(std::span<const uint8_t>(out, 8)), "0123456789abcdef");
    EXPECT_EQ(hex(std::span<const uint8_t>(out + 8, 8)), "abcdef0123456789");
    EXPECT_EQ(hex(std::span<const uint8_t>(out + 24, 8)), "fedcba0011223344");
    for (size_t at = 0; at < good.size(); ++at) {
        for (int b = 0; b < 256; ++b) {
            const char c = static_cast<char>(b);
            const bool digit =
                (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
            std::string bad = good;
            bad[at] = c;
            EXPECT_EQ(hex_decode(bad, out).has_value(), digit) << "byte " << b << " at " << at;
        }
    }
}

TEST(Base64, MatchesRfc4648Vectors) {
    struct Row {
        std::string plain, standard, url;
    };
    const Row rows[] = {
        {"", "", ""},
        {"f", "Zg==", "Zg"},
        {"fo", "Zm8=", "Zm8"},
        {"foo", "Zm9v", "Zm9v"},
        {"foob", "Zm9vYg==", "Zm9vYg"},
        {"fooba", "Zm9vYmE=", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
        {"\xfb\xff", "+/8=", "-_8"},
    };
    for (const auto& r : rows) {
        EXPECT_EQ(base64(as_bytes(r.plain)), r.standard) << r.plain;
        EXPECT_EQ(base64(as_bytes(r.plain), Base64Alphabet::url), r.url) << r.plain;
        uint8_t out[16];
        auto n = base64_decode(r.standard, out);
        ASSERT_TRUE(n) << r.standard;
        EXPECT_EQ(std::string(reinterpret_cast<char*>(out), *n), r.plain);
        n = base64_decode(r.url, out, Base64Alphabet::url);
        ASSERT_TRUE(n) << r.url;
        EXPECT_EQ(std::string(reinterpret_cast<char*>(out), *n), r.plain);
    }
}

TEST(Base64, RejectsMalformedInput) {
    uint8_t out[16];
    const char* bad[] = {
        "Zg=", "Zg", "Z===", "Zh==", "Zm9v!A==", "=Zg=", "Zm9=", "Zm!=", "Zm9vYm!y", "Zm9vYmFy\n"};
    for (const char* b : bad) {
        EXPECT_FALSE(base64_decode(b, out)) << b;
    }
    uint8_t tiny[2];
    EXPECT_FALSE(base64_decode("Zm9v", tiny));
}

TEST(EscapeText, ShowsWhatCouldGarbleATerminalAsBytes) {
    EXPECT_EQ(escape_text("routes.github"), "routes.github");
    EXPECT_EQ(escape_text(std::string("a\0b", 3)), R"(a\x00b)");
    EXPECT_EQ(escape_text("a\x1b[2Jb"), R"(a\x1b[2Jb)");
    EXPECT_EQ(escape_text("tab\there\nline\x7f"), R"(tab\x09here\x0aline\x7f)");
    EXPECT_EQ(escape_text(R"(say "hi" \ bye)"), R"(say \x22hi\x22 \x5c bye)");
    // Well-formed UTF-8 stays readable; C1 controls (U+009B is CSI) and invisible characters that
    // reorder or hide text are shown as their bytes, and so is anything that is not UTF-8.
    EXPECT_EQ(escape_text("caf\u00e9 \u65e5\u672c \U0001f600"),
              "caf\u00e9 \u65e5\u672c \U0001f600");
    EXPECT_EQ(escape_text("a\u009bb"), R"(a\xc2\x9bb)");
    EXPECT_EQ(escape_text("\u202eevil\u200b\u2028\ufeff"),
              R"(\xe2\x80\xaeevil\xe2\x80\x8b\xe2\x80\xa8\xef\xbb\xbf)");
    EXPECT_EQ(escape_text("\xff\xc3(\xe2\x82"), R"(\xff\xc3(\xe2\x82)");
    EXPECT_EQ(escape_text(""), "");
}
