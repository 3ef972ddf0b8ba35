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
