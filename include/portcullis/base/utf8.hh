// UTF-8 validation (RFC 3629, Unicode Table 3-7 "Well-Formed UTF-8 Byte Sequences"): no overlong
// forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence.
//
//   if (is_utf8(body)) { /* hand it on as a JSON string, byte for byte */ }
//   size_t n = utf8_sequence_length(s, i); // 0: no well-formed sequence starts at s[i]
//
// is_utf8 is the one to use on whole buffers (bodies): it skips ASCII 16 bytes at a time.
// utf8_sequence_length is for scanners that walk a string themselves (the JSON escaper and the
// JSON Pointer scanner); both read the same table of lead bytes, so they cannot disagree.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace portcullis::base {

namespace detail {

// What a lead byte allows: the sequence length (0: the byte cannot start a sequence) and the
// range of the second byte, which is where Table 3-7 excludes overlongs (E0, F0), surrogates (ED)
// and code points above U+10FFFF (F4). Every later byte is 80..BF.
struct Utf8Lead {
    uint8_t length = 0;
    uint8_t second_min = 0x80;
    uint8_t second_max = 0xbf;
};

constexpr std::array<Utf8Lead, 256> make_utf8_leads() {
    std::array<Utf8Lead, 256> t{};
    for (int c = 0; c < 0x80; ++c) {
        t[c].length = 1;
    }
    // C0 and C1 could only start overlong two-byte forms of ASCII.
    for (int c = 0xc2; c <= 0xdf; ++c) {
        t[c].length = 2;
    }
    for (int c = 0xe0; c <= 0xef; ++c) {
        t[c].length = 3;
    }
    t[0xe0].second_min = 0xa0; // below: overlong
    t[0xed].second_max = 0x9f; // above: surrogates
    for (int c = 0xf0; c <= 0xf4; ++c) {
        t[c].length = 4;
    }
    t[0xf0].second_min = 0x90; // below: overlong
    t[0xf4].second_max = 0x8f; // above: past U+10FFFF
    // F5..FF would only encode past U+10FFFF: length 0.
    return t;
}

inline constexpr std::array<Utf8Lead, 256> utf8_leads = make_utf8_leads();

} // namespace detail

// The length of the well-formed UTF-8 sequence starting at s[i], or 0 if there is none there.
// Precondition: i < s.size().
inline size_t utf8_sequence_length(std::string_view s, size_t i) {
    const detail::Utf8Lead lead = detail::utf8_leads[static_cast<uint8_t>(s[i])];
    if (lead.length <= 1) {
        return lead.length;
    }
    if (lead.length > s.size() - i) {
        return 0;
    }
    const auto c1 = static_cast<uint8_t>(s[i + 1]);
    if (c1 < lead.second_min || c1 > lead.second_max) {
        return 0;
    }
    for (size_t k = 2; k < lead.length; ++k) {
        if ((static_cast<uint8_t>(s[i + k]) & 0xc0) != 0x80) {
            return 0;
        }
    }
    return lead.length;
}

// True when s is well-formed UTF-8 (the empty string is).
bool is_utf8(std::string_view s);

} // namespace portcullis::base
