#include "portcullis/base/encoding.hh"

#include "portcullis/base/utf8.hh"

#include <array>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace portcullis::base {

namespace {

constexpr char hex_digits[] = "0123456789abcdef";
constexpr char b64_standard[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr uint8_t invalid = 0xff;

constexpr std::array<uint8_t, 256> make_hex_table() {
    std::array<uint8_t, 256> t{};
    t.fill(invalid);
    for (int i = 0; i < 10; ++i) {
        t['0' + i] = static_cast<uint8_t>(i);
    }
    for (int i = 0; i < 6; ++i) {
        t['a' + i] = static_cast<uint8_t>(10 + i);
        t['A' + i] = static_cast<uint8_t>(10 + i);
    }
    return t;
}

constexpr std::array<uint8_t, 256> make_b64_table(const char* alphabet) {
    std::array<uint8_t, 256> t{};
    t.fill(invalid);
    for (int i = 0; i < 64; ++i) {
        t[static_cast<uint8_t>(alphabet[i])] = static_cast<uint8_t>(i);
    }
    return t;
}

constexpr auto hex_table = make_hex_table();

#if defined(__SSE2__)
// Decodes 16 hex digits (either case) into 8 bytes at out; true if all 16 were digits.
bool hex16(const char* in, uint8_t* out) {
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in));
    const __m128i digit = _mm_sub_epi8(c, _mm_set1_epi8('0'));
    const __m128i is_digit = _mm_cmpeq_epi8(_mm_min_epu8(digit, _mm_set1_epi8(9)), digit);
    // c | 0x20 is in a..f exactly when c is in a..f or A..F.
    const __m128i letter = _mm_sub_epi8(_mm_or_si128(c, _mm_set1_epi8(0x20)), _mm_set1_epi8('a'));
    const __m128i is_letter = _mm_cmpeq_epi8(_mm_min_epu8(letter, _mm_set1_epi8(5)), letter);
    const __m128i value =
        _mm_or_si128(_mm_and_si128(is_digit, digit),
                     _mm_and_si128(is_letter, _mm_add_epi8(letter, _mm_set1_epi8(10))));
    // Each 16-bit lane holds a pair: its first digit (the high nibble) in the low byte.
    const __m128i high = _mm_slli_epi16(_mm_and_si128(value, _mm_set1_epi16(0x00ff)), 4);
    const __m128i low = _mm_srli_epi16(value, 8);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out),
                     _mm_packus_epi16(_mm_or_si128(high, low), _mm_setzero_si128()));
    return _mm_movemask_epi8(_mm_or_si128(is_digit, is_letter)) == 0xffff;
}
#endif
constexpr auto b64_standard_table = make_b64_table(b64_standard);
constexpr auto b64_url_table = make_b64_table(b64_url);

} // namespace

void hex_encode(std::span<const uint8_t> in, char* out) {
    for (uint8_t b : in) {
        *out++ = hex_digits[b >> 4];
        *out++ = hex_digits[b & 0xf];
    }
}

std::optional<size_t> hex_decode(std::string_view in, std::span<uint8_t> out) {
    if (in.size() % 2 != 0 || in.size() / 2 > out.size()) {
        return std::nullopt;
    }
    // No branch per digit: signatures are decoded on every request, and an invalid digit is
    // rare enough to be found once at the end (bytes written before then are garbage the caller
    // never uses).
    uint8_t seen = 0;
    size_t i = 0;
#if defined(__SSE2__)
    // 16 digits a step (a signature's 64 in four): 5 ns where the table took 25.
    bool all_digits = true;
    for (; i + 16 <= in.size(); i += 16) {
        all_digits &= hex16(in.data() + i, out.data() + i / 2);
    }
    seen = all_digits ? 0 : invalid;
#endif
    for (; i < in.size(); i += 2) {
        const uint8_t hi = hex_table[static_cast<uint8_t>(in[i])];
        const uint8_t lo = hex_table[static_cast<uint8_t>(in[i + 1])];
        seen |= hi | lo;
        out[i / 2] = static_cast<uint8_t>(hi << 4 | lo);
    }
    if ((seen & 0xf0) != 0) { // valid digits are 0..15; invalid is 0xff
        return std::nullopt;
    }
    return in.size() / 2;
}

void base64_encode(std::span<const uint8_t> in, char* out, Base64Alphabet a) {
    const char* alphabet = a == Base64Alphabet::standard ? b64_standard : b64_url;
    size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        uint32_t v = uint32_t(in[i]) << 16 | uint32_t(in[i + 1]) << 8 | in[i + 2];
        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = alphabet[(v >> 6) & 63];
        *out++ = alphabet[v & 63];
    }
    size_t rest = in.size() - i;
    if (rest == 0) {
        return;
    }
    uint32_t v = uint32_t(in[i]) << 16 | (rest == 2 ? uint32_t(in[i + 1]) << 8 : 0);
    *out++ = alphabet[v >> 18];
    *out++ = alphabet[(v >> 12) & 63];
    if (rest == 2) {
        *out++ = alphabet[(v >> 6) & 63];
    }
    if (a == Base64Alphabet::standard) {
        if (rest == 1) {
            *out++ = '=';
        }
        *out++ = '=';
    }
}

std::optional<size_t> base64_decode(std::string_view in, std::span<uint8_t> out, Base64Alphabet a) {
    const auto& table = a == Base64Alphabet::standard ? b64_standard_table : b64_url_table;
    size_t len = in.size();
    if (a == Base64Alphabet::standard && len % 4 != 0) {
        return std::nullopt;
    }
    if (len % 4 == 0 && len > 0) {
        // At most two trailing '=' and nothing after them.
        if (in[len - 1] == '=') {
            --len;
            if (in[len - 1] == '=') {
                --len;
            }
        }
    }
    if (len % 4 == 1) {
        return std::nullopt;
    }
    size_t produced = len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
    if (produced > out.size()) {
        return std::nullopt;
    }
    // Whole quads first, then the 2 or 3 characters of a short last quad. As in hex_decode, an
    // invalid character is found once at the end: valid ones are below 64, invalid is 0xff.
    const auto at = [&](size_t i) { return table[static_cast<uint8_t>(in[i])]; };
    uint8_t seen = 0;
    size_t o = 0;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        const uint8_t c0 = at(i), c1 = at(i + 1), c2 = at(i + 2), c3 = at(i + 3);
        seen |= c0 | c1 | c2 | c3;
        const uint32_t v = uint32_t(c0) << 18 | uint32_t(c1) << 12 | uint32_t(c2) << 6 | c3;
        out[o++] = static_cast<uint8_t>(v >> 16);
        out[o++] = static_cast<uint8_t>(v >> 8);
        out[o++] = static_cast<uint8_t>(v);
    }
    // Non-canonical encodings (leftover bits set) are refused so one value has one spelling.
    bool leftover = false;
    if (len - i >= 2) {
        const uint8_t c0 = at(i), c1 = at(i + 1);
        const uint8_t c2 = len - i == 3 ? at(i + 2) : 0;
        seen |= c0 | c1 | c2;
        const uint32_t v = uint32_t(c0) << 18 | uint32_t(c1) << 12 | uint32_t(c2) << 6;
        out[o++] = static_cast<uint8_t>(v >> 16);
        if (len - i == 3) {
            out[o++] = static_cast<uint8_t>(v >> 8);
            leftover = (c2 & 0x03) != 0;
        } else {
            leftover = (c1 & 0x0f) != 0;
        }
    }
    if ((seen & 0xc0) != 0 || leftover) {
        return std::nullopt;
    }
    return o;
}

std::string hex(std::span<const uint8_t> in) {
    std::string s(hex_encoded_size(in.size()), '\0');
    hex_encode(in, s.data());
    return s;
}

std::string base64(std::span<const uint8_t> in, Base64Alphabet a) {
    std::string s(base64_encoded_size(in.size(), a), '\0');
    base64_encode(in, s.data(), a);
    return s;
}

namespace {

// Code points that well-formed UTF-8 may carry but a message must not show raw: C1 controls
// (U+009B is CSI on some terminals), and the invisible ones that hide or reorder what is read
// (zero-width, bidi embeddings and isolates, line and paragraph separators, BOM).
bool is_hidden(uint32_t cp) {
    return (cp >= 0x80 && cp <= 0x9f) || cp == 0xad || cp == 0x61c ||
           (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
           (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff;
}

uint32_t code_point(std::string_view seq) {
    const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(seq[i])); };
    switch (seq.size()) {
    case 2:
        return (b(0) & 0x1f) << 6 | (b(1) & 0x3f);
    case 3:
        return (b(0) & 0x0f) << 12 | (b(1) & 0x3f) << 6 | (b(2) & 0x3f);
    case 4:
        return (b(0) & 0x07) << 18 | (b(1) & 0x3f) << 12 | (b(2) & 0x3f) << 6 | (b(3) & 0x3f);
    default:
        return b(0);
    }
}

} // namespace

std::string escape_text(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    auto escape_bytes = [&](std::string_view bytes) {
        for (char c : bytes) {
            const auto u = static_cast<uint8_t>(c);
            out += "\\x";
            out += hex_digits[u >> 4];
            out += hex_digits[u & 0xf];
        }
    };
    for (size_t i = 0; i < s.size();) {
        const size_t n = utf8_sequence_length(s, i);
        const std::string_view seq = s.substr(i, n == 0 ? 1 : n);
        if (n == 1) {
            const auto u = static_cast<uint8_t>(s[i]);
            if (u < 0x20 || u == 0x7f || u == '"' || u == '\\') {
                escape_bytes(seq);
            } else {
                out += s[i];
            }
        } else if (n == 0 || is_hidden(code_point(seq))) {
            escape_bytes(seq);
        } else {
            out += seq;
        }
        i += seq.size();
    }
    return out;
}

} // namespace portcullis::base
