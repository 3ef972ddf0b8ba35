#include "portcullis/base/json.hh"

#include <gtest/gtest.h>

#include <string>

using namespace portcullis::base;

namespace {

std::string escaped(std::string_view s) {
    std::string out;
    StringBuffer buf(out);
    append_json_escaped(buf, s);
    return out;
}

// One byte as the escaper must write it when it stands alone (a byte >= 0x80 alone is not
// UTF-8).
std::string escaped_byte(uint8_t c) {
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        break;
    }
    if (c < 0x20 || c >= 0x80) {
        static constexpr char hex_digits[] = "0123456789abcdef";
        return std::string("\\u00") + hex_digits[c >> 4] + hex_digits[c & 0xf];
    }
    return std::string(1, static_cast<char>(c));
}

} // namespace

// Every byte value at every offset of a 24-byte run, so that it lands in each lane of the
// 8-byte fast path, in the byte loop after it, and in the tail.
TEST(JsonEscape, EveryByteAtEveryOffset) {
    for (int c = 0; c < 256; ++c) {
        for (size_t at = 0; at < 24; ++at) {
            std::string s(24, 'a');
            s[at] = static_cast<char>(c);
            const std::string expected = std::string(at, 'a') +
                                         escaped_byte(static_cast<uint8_t>(c)) +
                                         std::string(23 - at, 'a');
            ASSERT_EQ(escaped(s), expected) << "byte " << c << " at " << at;
        }
    }
}

TEST(JsonEscape, KeepsUtf8AndEscapesWhatIsNot) {
    for (size_t at = 0; at < 20; ++at) {
        std::string s(20, 'b');
        s.insert(at, "\xe2\x82\xac");
        EXPECT_EQ(escaped(s), s) << at;
        std::string cut(20, 'b');
        cut.insert(at, "\xe2\x82");
        EXPECT_EQ(escaped(cut), std::string(at, 'b') + "\\u00e2\\u0082" + std::string(20 - at, 'b'))
            << at;
    }
    EXPECT_EQ(escaped(""), "");
    EXPECT_EQ(escaped("\x7f/"), "\x7f/");
}

TEST(JsonWriter, WritesObjectsArraysAndNumbers) {
    std::string out;
    StringBuffer buf(out);
    JsonWriter w(buf);
    w.begin_object().key("a").number(-12).key("b").begin_array().boolean(true).null().end_array();
    w.key("c\"").string("x").end_object();
    EXPECT_EQ(out, R"({"a":-12,"b":[true,null],"c\"":"x"})");

    FixedBuffer<8> small;
    JsonWriter f(small);
    f.string("too long for it");
    EXPECT_TRUE(small.overflowed());
}
