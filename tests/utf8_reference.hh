// A byte-at-a-time UTF-8 decoder written from the definition (RFC 3629 section 3: bit patterns,
// then the decoded code point must need that many bytes and be a scalar value), independent of
// the lead-byte table in base/utf8.hh, for differential tests and the utf8 fuzz target.
//
//   EXPECT_EQ(is_utf8(s), reference_is_utf8(s));
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace portcullis::testing_support {

inline bool reference_is_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<uint8_t>(s[i]);
        size_t n = 0;
        uint32_t cp = 0;
        uint32_t min = 0;
        if (c < 0x80) {
            ++i;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            n = 2;
            cp = c & 0x1fu;
            min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3;
            cp = c & 0x0fu;
            min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4;
            cp = c & 0x07u;
            min = 0x10000;
        } else {
            return false; // a continuation byte, or F8..FF
        }
        if (s.size() - i < n) {
            return false;
        }
        for (size_t k = 1; k < n; ++k) {
            const auto b = static_cast<uint8_t>(s[i + k]);
            if ((b & 0xc0) != 0x80) {
                return false;
            }
            cp = cp << 6 | (b & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += n;
    }
    return true;
}

// Appends cp in the UTF-8 bit pattern of its length, without checking that it is a scalar
// value: tests use it to build surrogates and overlong-free out-of-range sequences too.
inline void append_utf8_pattern(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xc0 | cp >> 6));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xe0 | cp >> 12));
        out.push_back(static_cast<char>(0x80 | (cp >> 6 & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
        out.push_back(static_cast<char>(0xf0 | (cp >> 18 & 0x07)));
        out.push_back(static_cast<char>(0x80 | (cp >> 12 & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (cp >> 6 & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
}

} // namespace portcullis::testing_support
