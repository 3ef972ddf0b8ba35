// Finds one value in an untrusted JSON document by an RFC 6901 JSON Pointer, in one pass over
// the bytes, without allocating, throwing, locking or recursing.
//
//   const JsonLookup type = json_find(body, "/type");
//   if (type.status == JsonStatus::found && type.value.type == JsonType::string &&
//       json_string_equals(type.value.raw, "url_verification")) {
//       const JsonLookup challenge = json_find(body, "/challenge");
//       // challenge.value.raw is the string token as sent, quotes and escapes included, and is
//       // valid JSON on its own: echo it as {"challenge":<raw>}.
//   }
//
// What counts as a document, and why:
// - The whole document must be valid JSON (RFC 8259), not just the part before the value: a body
//   that is not JSON yields no key, whatever it holds. Checking the rest costs the tail of the one
//   pass; the whole pass over a 7.6 KB GitHub push takes less time than SHA-256 of it
//   (bench/json_pointer_benchmark.cc), and an early exit would only save that tail. Whitespace
//   (space, tab, CR, LF) may surround the value; anything else after it is malformed, and so are
//   an empty document and a leading byte order mark.
// - Strings must be well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
//   U+10FFFF) with no raw control character below 0x20, and a \u escape of a surrogate must be
//   half of a pair. Hence every string the scanner accepts decodes to valid UTF-8, and its raw
//   token can be copied into JSON output as it is.
// - Numbers follow the RFC 8259 grammar exactly: no '+', no leading zero, no ".5" or "5.", no
//   NaN or Infinity. They are handed back as written; nothing is converted.
// - Objects and arrays nest at most json_max_depth deep; one more is too_deep. The state of the
//   open containers is a fixed array of bits, so the depth an attacker can reach costs nothing.
// - Duplicate member names: in every object on the pointer's path, the member the pointer names
//   must appear once. A second one (compared after unescaping, so "id" and "i\u0064" are the same
//   name) makes the document malformed, because a consumer may pick the other copy. Duplicates
//   elsewhere, and inside the found value, are accepted: they do not change the answer, RFC 8259
//   allows them ("names SHOULD be unique"), and finding them all needs memory that grows with the
//   widest object.
// - Pointer tokens are compared with member names after both are unescaped ("~0" and "~1" in the
//   pointer, JSON escapes in the name), byte by byte, without copying either. An array index is
//   "0" or decimal without a leading zero; any other token, "-" included, names no element.
//
// Time is linear in doc.size() + pointer.size(), and nothing outside the two is read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace portcullis::base {

// The deepest nesting of objects and arrays that json_find accepts, and so also the most tokens a
// pointer may have.
inline constexpr size_t json_max_depth = 64;

enum class JsonType : uint8_t {
    object,
    array,
    string,
    number,
    boolean, // raw is "true" or "false"
    null,
};

struct JsonValue {
    JsonType type = JsonType::null;
    // The value's bytes in the document: a string with its quotes and escapes as sent, an object
    // or array from its opening to its closing bracket.
    std::string_view raw;
};

enum class JsonStatus : uint8_t {
    found,
    not_found,   // valid document, nothing at the pointer
    malformed,   // not JSON as described above, or a duplicate member on the pointer's path
    too_deep,    // nesting past json_max_depth
    bad_pointer, // the pointer itself is invalid (see json_pointer_valid)
};

struct JsonLookup {
    JsonStatus status = JsonStatus::not_found;
    JsonValue value; // meaningful when found
    // For malformed and too_deep, the offset of the byte where the scan gave up (doc.size() if
    // the document ended first), for diagnostics; 0 otherwise.
    size_t error_offset = 0;
};

// Finds the value at `pointer` (RFC 6901: "" is the whole document, "/a/b" member b of member a,
// "~0" stands for '~' and "~1" for '/') in `doc`.
JsonLookup json_find(std::string_view doc, std::string_view pointer);

// True when `pointer` is "" or a sequence of "/token", every '~' in a token is followed by '0' or
// '1', it is valid UTF-8 and has at most json_max_depth tokens (a deeper one could never be
// found). Configuration checks this at load time; json_find answers bad_pointer otherwise.
bool json_pointer_valid(std::string_view pointer);

// Decodes a string token as json_find returns it (quotes included) into `out`. Returns the
// number of bytes written, or nullopt if the token is not a valid JSON string in the sense above
// or does not fit. raw_string.size() - 2 bytes are always enough.
std::optional<size_t> json_unescape(std::string_view raw_string, std::span<char> out);

// True when the string token `raw_string` (quotes included) is valid and decodes to exactly
// `text`: json_string_equals(R"("url\u005fverification")", "url_verification") holds.
bool json_string_equals(std::string_view raw_string, std::string_view text);

// The elements of an array token found by json_find (so already valid JSON), when every one is a
// string with no escape (ids, names): appended to out without their quotes. False, with out
// holding the elements before, for any other element.
bool json_plain_strings(std::string_view raw_array, std::vector<std::string_view>& out);

std::string_view json_status_name(JsonStatus s);

} // namespace portcullis::base
