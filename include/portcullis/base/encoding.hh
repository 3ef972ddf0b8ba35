// Hex and base64 codecs that write into caller-provided storage, for the request path, plus
// std::string conveniences for start-up and offline tools.
//
//   uint8_t mac[32];
//   if (auto n = hex_decode("sha256 hex...", mac); n && *n == sizeof mac) { ... }
//
// Decoders are strict: an odd hex length, a byte outside the alphabet, misplaced padding or an
// output that would not fit is an error (std::nullopt), never a partial result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace portcullis::base {

enum class Base64Alphabet : uint8_t {
    standard, // RFC 4648 section 4, '+' and '/', padded
    url,      // RFC 4648 section 5, '-' and '_', unpadded on output, padding optional on input
};

constexpr size_t hex_encoded_size(size_t n) {
    return 2 * n;
}
constexpr size_t base64_encoded_size(size_t n, Base64Alphabet a = Base64Alphabet::standard) {
    return a == Base64Alphabet::standard ? (n + 2) / 3 * 4 : (n * 4 + 2) / 3;
}
constexpr size_t base64_decoded_max_size(size_t n) {
    return n / 4 * 3 + 3;
}

// Writes hex_encoded_size(in.size()) lowercase characters to out.
void hex_encode(std::span<const uint8_t> in, char* out);
// Accepts either case. Returns the number of bytes written.
std::optional<size_t> hex_decode(std::string_view in, std::span<uint8_t> out);

// Writes base64_encoded_size(in.size(), a) characters to out.
void base64_encode(std::span<const uint8_t> in, char* out,
                   Base64Alphabet a = Base64Alphabet::standard);
// The standard alphabet requires padding to a multiple of 4; the url alphabet accepts both.
std::optional<size_t> base64_decode(std::string_view in, std::span<uint8_t> out,
                                    Base64Alphabet a = Base64Alphabet::standard);

std::string hex(std::span<const uint8_t> in);
std::string base64(std::span<const uint8_t> in, Base64Alphabet a = Base64Alphabet::standard);

// User text (configuration keys and values, file names) for a message read on a terminal:
// printable ASCII and well-formed UTF-8 pass as they are; control characters (C0, DEL, C1),
// format characters that hide or reorder text (zero-width, bidi, U+2028/2029, BOM), bytes that
// are not UTF-8, and '"' and '\' are written as \xNN per byte. So a NUL cannot cut a message,
// an ESC cannot drive the terminal, and a quoted value cannot fake its closing quote:
// escape_text("a\x1b[2J") == R"(a\x1b[2J)". Never pass secret material.
std::string escape_text(std::string_view s);

inline std::span<const uint8_t> as_bytes(std::string_view s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

} // namespace portcullis::base
