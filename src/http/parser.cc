#include "portcullis/http/parser.hh"

#include "bytes.hh"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstring>
#include <limits>

// The vector paths of the byte scans (see "Byte classes, 64 bytes at a time" below). SSE2 is
// part of x86-64; AVX2 and AVX-512 code is compiled in with target attributes and only run on
// CPUs that have it. Other architectures get the scalar path.
#if defined(__SSE2__)
#define PORTCULLIS_PARSER_SSE2 1
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PORTCULLIS_PARSER_AVX 1
#include <immintrin.h>
#endif

namespace portcullis::http {

namespace {

using namespace bytes;

// Finer reasons, exposed as `detail`. They are log and counter labels: keep them stable.
namespace why {
constexpr std::string_view bare_lf = "bare_lf";
constexpr std::string_view bare_cr = "bare_cr";
constexpr std::string_view bad_method = "bad_method";
constexpr std::string_view asterisk_form = "asterisk_form";
constexpr std::string_view not_origin_form = "not_origin_form";
constexpr std::string_view invalid_target_byte = "invalid_target_byte";
constexpr std::string_view bad_percent_encoding = "bad_percent_encoding";
constexpr std::string_view http09 = "http09";
constexpr std::string_view bad_version = "bad_version";
constexpr std::string_view unsupported_version = "unsupported_version";
constexpr std::string_view head_too_large = "head_too_large";
constexpr std::string_view too_many_headers = "too_many_headers";
constexpr std::string_view obs_fold = "obs_fold";
constexpr std::string_view space_before_colon = "space_before_colon";
constexpr std::string_view empty_header_name = "empty_header_name";
constexpr std::string_view missing_colon = "missing_colon";
constexpr std::string_view invalid_token_byte = "invalid_token_byte";
constexpr std::string_view invalid_header_byte = "invalid_header_byte";
constexpr std::string_view bad_content_length = "bad_content_length";
constexpr std::string_view content_length_list = "content_length_list";
constexpr std::string_view content_length_overflow = "content_length_overflow";
constexpr std::string_view duplicate_content_length = "duplicate_content_length";
constexpr std::string_view cl_and_te = "cl_and_te";
constexpr std::string_view te_in_http10 = "te_in_http10";
constexpr std::string_view bad_transfer_encoding = "bad_transfer_encoding";
constexpr std::string_view chunked_twice = "chunked_twice";
constexpr std::string_view chunked_not_last = "chunked_not_last";
constexpr std::string_view te_not_chunked = "te_not_chunked";
constexpr std::string_view unsupported_transfer_coding = "unsupported_transfer_coding";
constexpr std::string_view missing_host = "missing_host";
constexpr std::string_view duplicate_host = "duplicate_host";
constexpr std::string_view bad_host = "bad_host";
constexpr std::string_view bad_connection = "bad_connection";
constexpr std::string_view bad_expect = "bad_expect";
} // namespace why

inline uint64_t load64(const char* p) {
    uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline uint32_t load32(const char* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// ASCII case-insensitive equality, 8 bytes at a time. Precondition: `lower` holds only lowercase
// letters, digits and '-', and `s` is a checked token or field value (no control bytes but
// HTAB): then setting bit 0x20 of a byte of s yields the byte of lower exactly when the two
// match ignoring case (the only other candidates, 0x10-0x19 and CR, cannot occur in s).
inline bool equals_lowercase(std::string_view s, std::string_view lower) {
    const size_t n = s.size();
    if (n != lower.size()) {
        return false;
    }
    constexpr uint64_t case_bits = 0x2020202020202020ull;
    if (n >= 8) {
        uint64_t diff = 0;
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            diff |= (load64(s.data() + i) | case_bits) ^ load64(lower.data() + i);
        }
        if (i < n) {
            diff |= (load64(s.data() + n - 8) | case_bits) ^ load64(lower.data() + n - 8);
        }
        return diff == 0;
    }
    if (n >= 4) {
        constexpr uint32_t case_bits32 = 0x20202020u;
        return ((load32(s.data()) | case_bits32) ^ load32(lower.data())) == 0 &&
               ((load32(s.data() + n - 4) | case_bits32) ^ load32(lower.data() + n - 4)) == 0;
    }
    unsigned diff = 0;
    for (size_t i = 0; i < n; ++i) {
        diff |= static_cast<unsigned>((uchar(s[i]) | 0x20) ^ uchar(lower[i]));
    }
    return diff == 0;
}

constexpr HeadResult incomplete{};

constexpr HeadResult fail(Error e, std::string_view detail) {
    return {0, e, detail};
}
constexpr HeadResult bad(std::string_view detail) {
    return fail(Error::bad_request, detail);
}

// The request line stopped at *p, which does not fit where it is. A CRLF there ends the line
// early and means `early_end`; a lone CR or LF is a line-ending error; anything else is `other`.
// Decided from the bytes up to p[1] only, so that any split of the input gives the same answer.
HeadResult request_line_stop(const char* p, const char* end, Error early_end_error,
                             std::string_view early_end, std::string_view other) {
    if (*p == '\n') {
        return bad(why::bare_lf);
    }
    if (*p == '\r') {
        if (p + 1 == end) {
            return incomplete;
        }
        if (p[1] != '\n') {
            return bad(why::bare_cr);
        }
        return fail(early_end_error, early_end);
    }
    return bad(other);
}

// A request-target of another form than origin-form (asterisk, absolute or authority form)
// starts at p: it is refused as `form`, unless the line is a request line of an HTTP version
// other than 1.x, which gets the 505 any such line gets. That is how an HTTP/2 client with prior
// knowledge starts ("PRI * HTTP/2.0", its connection preface): it learns that this server speaks
// another version, not that its request is malformed. Incomplete until the version's digits are
// in; like the origin-form path, the answer does not wait for the CRLF.
HeadResult other_form_stop(const char* p, const char* end, std::string_view form) {
    while (p < end && is_visible(*p)) {
        ++p;
    }
    if (p == end) {
        return incomplete;
    }
    if (*p != ' ') {
        return bad(form);
    }
    ++p;
    constexpr std::string_view pattern = "HTTP/D.D";
    char major = 0;
    for (char expected : pattern) {
        if (p == end) {
            return incomplete;
        }
        if (expected == 'D' ? !is_digit(*p) : *p != expected) {
            return bad(form);
        }
        if (expected == 'D' && major == 0) {
            major = *p;
        }
        ++p;
    }
    return major == '1' ? bad(form) : fail(Error::version_unsupported, why::unsupported_version);
}

// An error found at `at` on a header line is reported once the line's LF has arrived. Until
// then the answer stays "incomplete", which is what lets parse_head skip the bytes of a line
// it has already seen begin (see more_bytes_change_nothing).
HeadResult header_line_error(const char* at, const char* end, std::string_view detail) {
    if (std::memchr(at, '\n', static_cast<size_t>(end - at)) == nullptr) {
        return incomplete;
    }
    return bad(detail);
}

bool valid_ipv4(std::string_view s) {
    size_t i = 0;
    for (int octet = 0; octet < 4; ++octet) {
        if (octet > 0) {
            if (i == s.size() || s[i] != '.') {
                return false;
            }
            ++i;
        }
        const size_t first = i;
        unsigned value = 0;
        while (i < s.size() && is_digit(s[i]) && i - first < 3) {
            value = value * 10 + static_cast<unsigned>(s[i] - '0');
            ++i;
        }
        const size_t len = i - first;
        // RFC 3986 dec-octet: no leading zeros.
        if (len == 0 || value > 255 || (len > 1 && s[first] == '0')) {
            return false;
        }
    }
    return i == s.size();
}

// RFC 3986 IPv6address (without IPvFuture).
bool valid_ipv6(std::string_view s) {
    size_t i = 0;
    int groups = 0;
    bool compressed = false;
    if (s.size() >= 2 && s[0] == ':' && s[1] == ':') {
        compressed = true;
        i = 2;
        if (i == s.size()) {
            return true;
        }
    }
    for (;;) {
        size_t j = i;
        while (j < s.size() && hex_value(s[j]) >= 0 && j - i < 5) {
            ++j;
        }
        if (j < s.size() && s[j] == '.') {
            if (!valid_ipv4(s.substr(i))) {
                return false;
            }
            groups += 2;
            break;
        }
        if (j == i || j - i > 4) {
            return false;
        }
        ++groups;
        i = j;
        if (i == s.size()) {
            break;
        }
        if (s[i] != ':') {
            return false;
        }
        ++i;
        if (i < s.size() && s[i] == ':') {
            if (compressed) {
                return false;
            }
            compressed = true;
            ++i;
            if (i == s.size()) {
                break;
            }
        } else if (i == s.size()) {
            return false;
        }
    }
    return compressed ? groups <= 7 : groups == 8;
}

// RFC 9110 Host: uri-host [ ":" port ], with uri-host = IP-literal / IPv4address / reg-name.
// An empty host and an empty port are refused, as nginx does.
[[gnu::noinline]] bool valid_host_in_full(std::string_view h) {
    size_t i = 0;
    if (!h.empty() && h[0] == '[') {
        const size_t close = h.find(']');
        if (close == std::string_view::npos || !valid_ipv6(h.substr(1, close - 1))) {
            return false;
        }
        i = close + 1;
    } else {
        for (;;) {
            while (i < h.size() && reg_name_byte[uchar(h[i])]) {
                ++i;
            }
            if (i == h.size() || h[i] != '%') {
                break;
            }
            if (h.size() - i < 3 || hex_value(h[i + 1]) < 0 || hex_value(h[i + 2]) < 0) {
                return false;
            }
            i += 3;
        }
        if (i == 0) {
            return false;
        }
    }
    if (i == h.size()) {
        return true;
    }
    if (h[i] != ':') {
        return false;
    }
    const std::string_view port = h.substr(i + 1);
    if (port.empty() || port.size() > 5) {
        return false;
    }
    unsigned value = 0;
    for (char c : port) {
        if (!is_digit(c)) {
            return false;
        }
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    return value <= 65535;
}

bool valid_host(std::string_view h) {
    // The usual host, a plain reg-name without port or percent-encoding, checked in one pass.
    // The rest, out of line, keeps the callers' frames small.
    if (!h.empty() && all_in(reg_name_byte, h.data(), h.data() + h.size())) {
        return true;
    }
    return valid_host_in_full(h);
}

// What the header fields say about the message, gathered line by line.
struct Semantics {
    uint8_t minor_version = 1;
    bool content_length_seen = false;
    bool te_seen = false;
    bool te_chunked = false; // the last coding so far is chunked
    bool te_other = false;   // a coding other than chunked came before it
    bool host_seen = false;
    bool connection_close = false;
    bool connection_keep_alive = false;
    bool expect_continue = false;
    uint64_t content_length = 0;
    std::string_view host;
};

std::string_view check_content_length(std::string_view v, Semantics& s) {
    if (s.content_length_seen) {
        return why::duplicate_content_length;
    }
    if (s.te_seen) {
        return why::cl_and_te;
    }
    s.content_length_seen = true;
    if (v.empty()) {
        return why::bad_content_length;
    }
    constexpr uint64_t max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    // Up to 18 digits cannot pass max (19 digits): only longer values need the overflow test.
    constexpr size_t safe_digits = std::numeric_limits<int64_t>::digits10;
    uint64_t n = 0;
    for (size_t i = 0; i < v.size(); ++i) {
        const char c = v[i];
        if (!is_digit(c)) {
            return c == ',' ? why::content_length_list : why::bad_content_length;
        }
        const auto digit = static_cast<uint64_t>(c - '0');
        if (i >= safe_digits && n > (max - digit) / 10) {
            return why::content_length_overflow;
        }
        n = n * 10 + digit;
    }
    s.content_length = n;
    return {};
}

// Transfer-Encoding lines are joined as one list; each element is a bare coding name (transfer
// parameters are refused: chunked takes none, and any other coding is refused anyway).
// Out of line: rare in webhooks, and it keeps check_field's frame small.
[[gnu::noinline]] std::string_view check_transfer_encoding(std::string_view v, Semantics& s) {
    if (s.minor_version == 0) {
        return why::te_in_http10;
    }
    if (s.content_length_seen) {
        return why::cl_and_te;
    }
    s.te_seen = true;
    const char* p = v.data();
    const char* const end = p + v.size();
    for (;;) {
        while (p < end && is_ows(*p)) {
            ++p;
        }
        const std::string_view coding(p, token_run(p, end));
        p += coding.size();
        while (p < end && is_ows(*p)) {
            ++p;
        }
        if (coding.empty() || (p < end && *p != ',')) {
            return why::bad_transfer_encoding;
        }
        const bool chunked = equals_lowercase(coding, "chunked");
        if (s.te_chunked) {
            return chunked ? why::chunked_twice : why::chunked_not_last;
        }
        s.te_chunked = chunked;
        s.te_other = s.te_other || !chunked;
        if (p == end) {
            return {};
        }
        ++p;
    }
}

[[gnu::noinline]] std::string_view check_connection_list(std::string_view v, Semantics& s) {
    if (!connection_options(v, s.connection_close, s.connection_keep_alive)) {
        return why::bad_connection;
    }
    return {};
}

std::string_view check_connection(std::string_view v, Semantics& s) {
    // The usual values, a single option, first; any list out of line.
    if (equals_lowercase(v, "close")) {
        s.connection_close = true;
        return {};
    }
    if (equals_lowercase(v, "keep-alive")) {
        s.connection_keep_alive = true;
        return {};
    }
    return check_connection_list(v, s);
}

// The first letter, lowercase, of the names check_field looks at, by name length modulo 64
// (0: none). Longer names share the entries of shorter ones: check_field tells them apart.
constexpr std::array<char, 64> first_letter_by_length = [] {
    std::array<char, 64> t{};
    for (std::string_view name :
         {"host", "expect", "connection", "content-length", "transfer-encoding"}) {
        t.at(name.size()) = name[0];
    }
    return t;
}();

// False for most fields, from the length and first letter of the name: check_field passes over
// those. Precondition: name is a token (for the case folding, see equals_lowercase), not empty.
inline bool may_matter(std::string_view name) {
    return (name[0] | 0x20) == first_letter_by_length[name.size() % first_letter_by_length.size()];
}

// Looks at the fields that decide framing, routing and the connection's fate. Returns an empty
// view when the field is fine. The field loop calls it only for names that may_matter.
std::string_view check_field(const Header& h, Semantics& s) {
    switch (h.name.size()) {
    case 4:
        if (equals_lowercase(h.name, "host")) {
            if (s.host_seen) {
                return why::duplicate_host;
            }
            s.host_seen = true;
            s.host = h.value;
            return valid_host(h.value) ? std::string_view{} : why::bad_host;
        }
        break;
    case 6:
        // RFC 9110 section 10.1.1: a 100-continue in an HTTP/1.0 request is ignored.
        if (s.minor_version == 1 && equals_lowercase(h.name, "expect")) {
            if (!equals_lowercase(h.value, "100-continue")) {
                return why::bad_expect;
            }
            s.expect_continue = true;
        }
        break;
    case 10:
        if (equals_lowercase(h.name, "connection")) {
            return check_connection(h.value, s);
        }
        break;
    case 14:
        if (equals_lowercase(h.name, "content-length")) {
            return check_content_length(h.value, s);
        }
        break;
    case 17:
        if (equals_lowercase(h.name, "transfer-encoding")) {
            return check_transfer_encoding(h.value, s);
        }
        break;
    default:
        break;
    }
    return {};
}

// True when the bytes added since the previous call (which saw buf[0, scanned) and answered
// "incomplete") cannot change that answer, judged from the new bytes and the current line only.
// Precondition: 0 < scanned < buf.size() <= limits.header_bytes. Conservative: false sends the
// caller to the full parse, which is always right.
bool more_bytes_change_nothing(std::string_view buf, size_t scanned) {
    const char* const b = buf.data();
    if (b == nullptr) {
        return false;
    }
    const char* const fresh = b + scanned;
    const size_t fresh_size = buf.size() - scanned;
    // Leading empty lines, a CR that was waiting for its LF, or a line was completed.
    if (b[0] == '\r' || b[0] == '\n' || fresh[-1] == '\r' ||
        std::memchr(fresh, '\n', fresh_size) != nullptr) {
        return false;
    }
    const void* last_lf = memrchr(b, '\n', scanned);
    if (last_lf != nullptr) {
        // Inside a header line whose first byte was already checked: errors on it wait for its
        // LF (header_line_error), and none came.
        const char* line = static_cast<const char*>(last_lf) + 1;
        return line < fresh && *line != '\r';
    }
    // Still on the request line: plain continuation of the method or of the target.
    const void* sp = std::memchr(b, ' ', scanned);
    if (sp == nullptr) {
        return std::all_of(fresh, fresh + fresh_size, [](char c) { return tchar[uchar(c)]; });
    }
    const char* target = static_cast<const char*>(sp) + 1;
    if (target >= fresh ||
        std::memchr(target, ' ', static_cast<size_t>(fresh - target)) != nullptr ||
        fresh[-1] == '%' || fresh[-2] == '%') {
        return false;
    }
    return std::all_of(fresh, fresh + fresh_size, [](char c) { return target_byte[uchar(c)]; });
}

} // namespace

uint16_t status_of(Error e) {
    switch (e) {
    case Error::none:
        return 200;
    case Error::bad_request:
        return 400;
    case Error::header_too_large:
        return 431;
    case Error::version_unsupported:
        return 505;
    case Error::not_implemented:
        return 501;
    }
    return 400;
}

std::string_view reason_of(Error e) {
    switch (e) {
    case Error::none:
        return "ok";
    case Error::bad_request:
        return "malformed";
    case Error::header_too_large:
        return "header_too_large";
    case Error::version_unsupported:
        return "version_unsupported";
    case Error::not_implemented:
        return "not_implemented";
    }
    return "malformed";
}

namespace {

// ---------------------------------------------------------------------------------------------
// Byte classes, 64 bytes at a time
//
// Most of a head is field lines "name: value CRLF". Whether one is well-formed, and where its
// parts end, follows from two byte classes: control bytes (the line ends at the first, which
// must be its CR) and non-token bytes (the name ends at the first, which must be the colon).
// Both are computed for 64-byte blocks at once, as bit masks, by a classifier that uses the
// widest vector instructions at hand, in batches of up to 1 KiB that stop soon after the likely
// end of the head. Finding a line's parts is then one unaligned load from the masks and two bit
// scans; the next line's start depends on nothing else, which keeps the chain of work from line
// to line short.
//
// A classifier computes, for each 64-byte block (bit i for byte i):
//   controls:   exactly the `control` bytes;
//   non_tokens: every non-token byte, and possibly some token bytes too (the SSE2 classifier
//               flags all but letters, digits and '-'). Every control byte is a non-token byte.
// The parser checks the byte a scan stops at, so a superset only sends unusual lines to the
// byte-by-byte path.
//
// Without vector instructions (ScanPath::scalar) no classes are computed: classifying a byte at
// a time costs more than it saves, so every line goes byte by byte. That path is the reference
// the vector paths are tested against, and it shares no code with their line loop.

constexpr size_t block_size = 64;

// Classifies up to `count` whole blocks from p, block k into controls[k] and non_tokens[k], and
// returns how many it did: it stops one block after the first block where the head likely
// ends (see ends_head_likely).
using Classifier = size_t (*)(const char* p, size_t count, uint64_t* controls,
                              uint64_t* non_tokens);

// Two control bytes one byte apart are nearly always the CR LF CR LF that ends a head (or, rarely,
// two HTABs in a value). The body that often follows a head in the buffer is never looked at; a
// classifier stopping soon after them does not classify much of it either. Stopping one block
// later keeps a CR LF CR LF that straddles two blocks in the batch; a parse that needs more
// blocks (the guess was wrong) asks for them.
constexpr bool ends_head_likely(uint64_t controls) {
    return (controls & controls >> 2) != 0;
}

#if defined(PORTCULLIS_PARSER_SSE2)
// SSE2, 16 bytes per step: the baseline of every x86-64 CPU. SSE2 has no byte shuffle for an
// exact token class; field names nearly always keep to letters, digits and '-', which it can
// check with compares.
size_t classify_sse2(const char* p, size_t count, uint64_t* controls, uint64_t* non_tokens) {
    const __m128i max_control = _mm_set1_epi8(0x1f);
    const __m128i del = _mm_set1_epi8(0x7f);
    const __m128i case_bit = _mm_set1_epi8(0x20);
    const __m128i before_a = _mm_set1_epi8('a' - 1);
    const __m128i after_z = _mm_set1_epi8('z' + 1);
    const __m128i before_0 = _mm_set1_epi8('0' - 1);
    const __m128i after_9 = _mm_set1_epi8('9' + 1);
    const __m128i dash = _mm_set1_epi8('-');
    for (size_t k = 0; k < count; ++k, p += block_size) {
        uint64_t c = 0;
        uint64_t n = 0;
        for (size_t i = 0; i < block_size; i += 16) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
            // v <= 0x1f as an unsigned byte, or DEL.
            const __m128i control_bytes = _mm_or_si128(
                _mm_cmpeq_epi8(_mm_min_epu8(v, max_control), v), _mm_cmpeq_epi8(v, del));
            // Signed compares: bytes 0x80-0xff are negative and fall outside both ranges.
            const __m128i lower = _mm_or_si128(v, case_bit);
            const __m128i letters =
                _mm_and_si128(_mm_cmpgt_epi8(lower, before_a), _mm_cmplt_epi8(lower, after_z));
            const __m128i digits =
                _mm_and_si128(_mm_cmpgt_epi8(v, before_0), _mm_cmplt_epi8(v, after_9));
            const __m128i name_bytes =
                _mm_or_si128(_mm_or_si128(letters, digits), _mm_cmpeq_epi8(v, dash));
            c |= uint64_t{static_cast<uint16_t>(_mm_movemask_epi8(control_bytes))} << i;
            n |= uint64_t{static_cast<uint16_t>(~_mm_movemask_epi8(name_bytes))} << i;
        }
        controls[k] = c;
        non_tokens[k] = n;
        if (ends_head_likely(c)) {
            count = std::min(count, k + 2);
        }
    }
    return count;
}
#endif

#if defined(PORTCULLIS_PARSER_AVX)
// Both byte classes as the two 16-entry tables of a nibble lookup (PSHUFB): byte b has the bits
// by_low[b & 0x0f] & by_high[b >> 4]. Each distinct row of a class (the set of low nibbles it
// takes under one high nibble) gets a bit of its own, from the bits given to the class: tokens
// have six rows (bits 0-5), control bytes two (bits 6-7: 0x00-0x1f, then DEL). No byte above
// 0x7f is in either class: PSHUFB gives 0 for an index byte with its top bit set, so the raw
// byte can index by_low.
struct NibbleTables {
    std::array<uint8_t, 16> by_low{};
    std::array<uint8_t, 16> by_high{};
    bool fits = true; // false: a class has more rows than bits
};

constexpr uint8_t token_bits = 0x3f;
constexpr uint8_t control_bits = 0xc0;

constexpr void add_class(NibbleTables& t, const ByteTable& in_class, uint8_t class_bits) {
    std::array<uint16_t, 8> rows{}; // the distinct rows seen, as bit sets of low nibbles
    std::array<uint8_t, 8> row_bits{};
    size_t distinct = 0;
    unsigned free_bits = class_bits;
    for (int high = 0; high < 8; ++high) {
        uint16_t row = 0;
        for (int low = 0; low < 16; ++low) {
            row = static_cast<uint16_t>(row | in_class[high * 16 + low] << low);
        }
        if (row == 0) {
            continue;
        }
        size_t seen = 0;
        while (seen < distinct && rows[seen] != row) {
            ++seen;
        }
        if (seen == distinct) {
            if (free_bits == 0) {
                t.fits = false;
                return;
            }
            rows.at(distinct) = row;
            row_bits.at(distinct) = static_cast<uint8_t>(free_bits & (~free_bits + 1));
            free_bits &= free_bits - 1;
            ++distinct;
        }
        t.by_high[high] = static_cast<uint8_t>(t.by_high[high] | row_bits[seen]);
        for (int low = 0; low < 16; ++low) {
            if ((row >> low & 1) != 0) {
                t.by_low[low] = static_cast<uint8_t>(t.by_low[low] | row_bits[seen]);
            }
        }
    }
}

constexpr bool lookup_matches(const NibbleTables& t, uint8_t class_bits,
                              const ByteTable& in_class) {
    for (int b = 0; b < 256; ++b) {
        const bool looked_up =
            b < 0x80 && (t.by_low[b & 0x0f] & t.by_high[b >> 4] & class_bits) != 0;
        if (looked_up != in_class[b]) {
            return false;
        }
    }
    return true;
}

constexpr NibbleTables class_nibbles = [] {
    NibbleTables t;
    add_class(t, tchar, token_bits);
    add_class(t, control, control_bits);
    return t;
}();
static_assert(class_nibbles.fits);
static_assert(lookup_matches(class_nibbles, token_bits, tchar));
static_assert(lookup_matches(class_nibbles, control_bits, control));

// AVX2, 32 bytes per step, exact classes.
[[gnu::target("avx2")]] size_t classify_avx2(const char* p, size_t count, uint64_t* controls,
                                             uint64_t* non_tokens) {
    const __m256i low_nibbles = _mm256_set1_epi8(0x0f);
    const __m256i tokens = _mm256_set1_epi8(static_cast<char>(token_bits));
    // Adding 0x40 with saturation sets the top bit exactly of the bytes with a control bit.
    static_assert(control_bits == 0xc0);
    const __m256i to_top_bit = _mm256_set1_epi8(0x40);
    const __m256i by_low = _mm256_broadcastsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(class_nibbles.by_low.data())));
    const __m256i by_high = _mm256_broadcastsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(class_nibbles.by_high.data())));
    for (size_t k = 0; k < count; ++k, p += block_size) {
        uint64_t c = 0;
        uint64_t n = 0;
        for (size_t i = 0; i < block_size; i += 32) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
            const __m256i high = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_nibbles);
            const __m256i bits = _mm256_and_si256(_mm256_shuffle_epi8(by_low, v),
                                                  _mm256_shuffle_epi8(by_high, high));
            const __m256i control_bytes = _mm256_adds_epu8(bits, to_top_bit);
            const __m256i non_token_bytes =
                _mm256_cmpeq_epi8(_mm256_and_si256(bits, tokens), _mm256_setzero_si256());
            c |= uint64_t{static_cast<uint32_t>(_mm256_movemask_epi8(control_bytes))} << i;
            n |= uint64_t{static_cast<uint32_t>(_mm256_movemask_epi8(non_token_bytes))} << i;
        }
        controls[k] = c;
        non_tokens[k] = n;
        if (ends_head_likely(c)) {
            count = std::min(count, k + 2);
        }
    }
    return count;
}

// A 16-byte table four times over, for the four 128-bit lanes of a 512-bit PSHUFB. (GCC 12's
// _mm512_broadcast_i32x4 warns about its own uninitialized operand.)
constexpr std::array<uint8_t, 64> four_times(const std::array<uint8_t, 16>& t) {
    std::array<uint8_t, 64> out{};
    for (size_t i = 0; i < out.size(); ++i) {
        out[i] = t[i % t.size()];
    }
    return out;
}
constexpr std::array<uint8_t, 64> by_low_x4 = four_times(class_nibbles.by_low);
constexpr std::array<uint8_t, 64> by_high_x4 = four_times(class_nibbles.by_high);

// AVX-512 (BW), a block per step, exact classes, with the AVX2 nibble lookup; the masks come
// straight from tests into mask registers.
[[gnu::target("avx512f,avx512bw")]] size_t
classify_avx512(const char* p, size_t count, uint64_t* controls, uint64_t* non_tokens) {
    const __m512i low_nibbles = _mm512_set1_epi8(0x0f);
    const __m512i tokens = _mm512_set1_epi8(static_cast<char>(token_bits));
    const __m512i control_bytes = _mm512_set1_epi8(static_cast<char>(control_bits));
    const __m512i by_low = _mm512_loadu_si512(by_low_x4.data());
    const __m512i by_high = _mm512_loadu_si512(by_high_x4.data());
    for (size_t k = 0; k < count; ++k, p += block_size) {
        const __m512i v = _mm512_loadu_si512(p);
        const __m512i high = _mm512_and_si512(_mm512_srli_epi16(v, 4), low_nibbles);
        const __m512i bits =
            _mm512_and_si512(_mm512_shuffle_epi8(by_low, v), _mm512_shuffle_epi8(by_high, high));
        const uint64_t c = _mm512_test_epi8_mask(bits, control_bytes);
        controls[k] = c;
        non_tokens[k] = _mm512_testn_epi8_mask(bits, tokens);
        if (ends_head_likely(c)) {
            count = std::min(count, k + 2);
        }
    }
    return count;
}
#endif

// The index of the lowest set bit. Precondition: bits != 0.
//
// On x86-64 this is TZCNT written out: __builtin_ctzll and std::countr_zero return an int,
// which GCC sign-extends before every use as an offset, one more cycle on the path from one
// line to the next. ("rep bsf" is TZCNT's encoding; CPUs without it run it as BSF, which is
// the same for bits != 0.)
inline size_t first_bit(uint64_t bits) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    uint64_t index;
    __asm__("rep bsf %1, %0" : "=r"(index) : "rm"(bits) : "cc");
    return index;
#else
    return static_cast<unsigned>(std::countr_zero(bits));
#endif
}

// The byte classes of the window [begin, end), as bit arrays (bit i for byte i) over a few blocks
// at a time: classified as the parse reaches them, each block once as long as the parse moves
// forward (it only moves back to retry a line byte by byte, within the blocks at hand). Never
// reads outside [begin, end): the buffer may end right before an unmapped page.
class ByteClasses {
public:
    // The bits of the bytes from p on, at least `reach` of them (fewer at the end of the
    // window, past which bits are 0). Each is one unaligned 8-byte load from the bit array.
    static constexpr size_t reach = 64 - 7;

    struct Near {
        uint64_t controls;
        uint64_t non_tokens;
    };

    ByteClasses(const char* begin, const char* end, Classifier classify)
        : _begin(begin), _end(end),
          _blocks((static_cast<size_t>(end - begin) + block_size - 1) / block_size),
          _classify(classify), _first(begin) {}

    // Precondition: begin <= p <= end.
    Near near(const char* p) { return near_at(offset_of(p)); }

    // Positions as offsets from the start of the blocks at hand, for the loop over field lines:
    // stepping an offset from line to line takes one subtraction fewer than a pointer on the
    // path each line waits for. An offset is only good until the blocks change (offset_of or
    // a find may change them).
    //
    // The offset of p, classifying blocks if p is not at hand. Precondition: begin <= p <= end.
    size_t offset_of(const char* p) {
        // Unsigned: a position before the blocks at hand wraps around and fails the test too.
        auto offset = static_cast<size_t>(p - _first);
        if (offset >= _ready_bytes) [[unlikely]] {
            classify_from(p);
            offset = static_cast<size_t>(p - _first);
        }
        return offset;
    }
    // True when near_at(offset) can answer.
    bool at_hand(size_t offset) const { return offset < _ready_bytes; }
    const char* pointer(size_t offset) const { return _first + offset; }
    // Precondition: at_hand(offset).
    Near near_at(size_t offset) const {
        const unsigned shift = offset % 8;
        return {load64(bytes_of(_controls) + offset / 8) >> shift,
                load64(bytes_of(_non_tokens) + offset / 8) >> shift};
    }

    // The first control byte in [p, end), or end.
    const char* find_control(const char* p) { return find(p, &Near::controls); }
    // The first non-token byte in [p, end) (or a token byte the classifier flags), or end.
    const char* find_non_token(const char* p) { return find(p, &Near::non_tokens); }

private:
    // Blocks classified per call of the classifier: enough to amortize the call, few enough
    // not to classify much past the end of a head (the body that follows is not looked at).
    static constexpr size_t batch = 16;

    static const char* bytes_of(const std::array<uint64_t, batch + 1>& bits) {
        return reinterpret_cast<const char*>(bits.data());
    }

    const char* find(const char* p, uint64_t Near::*bits_of) {
        for (;;) {
            if (p == _end) {
                return _end;
            }
            if (const uint64_t bits = near(p).*bits_of; bits != 0) {
                return p + first_bit(bits);
            }
            if (_end - p <= static_cast<ptrdiff_t>(reach)) {
                return _end;
            }
            p += reach;
        }
    }

    // Makes the bit arrays start at the block of p (the last block for p == end), with the
    // next `reach` bits of every byte of at least that block in them.
    [[gnu::noinline]] void classify_from(const char* p) {
        const size_t block = std::min(static_cast<size_t>(p - _begin) / block_size, _blocks - 1);
        const size_t full_blocks = static_cast<size_t>(_end - _begin) / block_size;
        const size_t first_block = static_cast<size_t>(_first - _begin) / block_size;
        size_t count = 0;
        if (block - first_block < _classified) {
            // Classified already, but not the block after it: keep it.
            _controls[0] = _controls[block - first_block];
            _non_tokens[0] = _non_tokens[block - first_block];
            count = 1;
        }
        const size_t wanted = std::min(batch, _blocks - block);
        const size_t whole = std::min(wanted, full_blocks - block);
        if (whole > count) {
            count += _classify(_begin + (block + count) * block_size, whole - count,
                               &_controls[count], &_non_tokens[count]);
        }
        if (count == whole && wanted > whole) {
            classify_partial_block(_controls[count], _non_tokens[count]);
            ++count;
        }
        // Past the classified blocks: no bytes of any class, or not known yet (see below).
        _controls[count] = 0;
        _non_tokens[count] = 0;
        _first = _begin + block * block_size;
        _classified = count;
        // A block's bytes have their `reach` bits at hand once the next block is there too,
        // or when there is no next block; then the end of the window has its bits (all 0) too,
        // in the slot after the last block.
        _ready_bytes = block + count == _blocks ? count * block_size + 1 : (count - 1) * block_size;
    }

    // The last block, shorter than 64 bytes: classified from the window's last 64 bytes (the
    // bits shifted to match) or, in a window shorter than a block, from a copy.
    void classify_partial_block(uint64_t& controls, uint64_t& non_tokens) const {
        const auto size = static_cast<size_t>(_end - _begin);
        const size_t available = size % block_size;
        if (size >= block_size) {
            _classify(_end - block_size, 1, &controls, &non_tokens);
            controls >>= block_size - available;
            non_tokens >>= block_size - available;
        } else {
            classify_copy(_end - available, available, controls, non_tokens);
        }
    }

    // Out of line: its 64-byte buffer would make every caller realign the stack.
    [[gnu::noinline]] void classify_copy(const char* p, size_t size, uint64_t& controls,
                                         uint64_t& non_tokens) const {
        alignas(block_size) char copy[block_size] = {};
        std::memcpy(copy, p, size);
        _classify(copy, 1, &controls, &non_tokens);
        const uint64_t inside = (uint64_t{1} << size) - 1;
        controls &= inside;
        non_tokens &= inside;
    }

    const char* const _begin;
    const char* const _end;
    const size_t _blocks; // blocks in the window, the last one possibly partial
    const Classifier _classify;
    const char* _first = nullptr; // the start of the block that the arrays start with
    size_t _classified = 0;       // blocks in the arrays
    size_t _ready_bytes = 0;      // bytes from _first that near() can answer for
    // Not initialized: classify_from writes every slot near() reads. Aligned to a cache line,
    // so that which windows of near_at cross a line does not depend on where the stack is.
    alignas(64) std::array<uint64_t, batch + 1> _controls;
    alignas(64) std::array<uint64_t, batch + 1> _non_tokens;
};

// ---------------------------------------------------------------------------------------------
// The head, line by line

struct RequestLine {
    std::string_view method;
    std::string_view target;
    uint8_t minor_version = 1;
};

constexpr std::string_view space_http11 = " HTTP/1.1";

// The usual request line: "method SP /target SP HTTP/1.1 CRLF" whose target has no
// percent-encoding, given where its method and its line end (the first non-token and the first
// control byte). The byte-by-byte parse accepts such a line with the same method and target.
bool is_plain_request_line(const char* line, const char* method_end, const char* line_end,
                           const char* end) {
    if (end - line_end < 2 || line_end[0] != '\r' || line_end[1] != '\n') {
        return false;
    }
    // Here method_end <= line_end < end: every control byte is a non-token byte.
    if (method_end == line || *method_end != ' ') {
        return false;
    }
    const char* const target = method_end + 1;
    if (line_end - target <= static_cast<ptrdiff_t>(space_http11.size())) {
        return false;
    }
    const char* const version = line_end - space_http11.size();
    return *target == '/' && std::memcmp(version, space_http11.data(), space_http11.size()) == 0 &&
           all_in(target_byte, target, version);
}

// The request line when it is plain: returns the first byte after its CRLF, or nullptr.
const char* take_plain_request_line(ByteClasses& classes, const char* p, const char* end,
                                    RequestLine& line) {
    // The method ends at or before the first control byte, usually both within reach.
    const ByteClasses::Near near = classes.near(p);
    const char* const method_end =
        near.non_tokens != 0 ? p + first_bit(near.non_tokens) : classes.find_non_token(p);
    const char* const line_end =
        near.controls != 0 ? p + first_bit(near.controls) : classes.find_control(method_end);
    if (!is_plain_request_line(p, method_end, line_end, end)) {
        return nullptr;
    }
    line.method = std::string_view(p, static_cast<size_t>(method_end - p));
    const char* const target = method_end + 1;
    line.target =
        std::string_view(target, static_cast<size_t>(line_end - space_http11.size() - target));
    return line_end + 2;
}

// The request line, byte by byte: the reference for every answer about it, errors included.
// Returns the first byte after its CRLF, or nullptr with `stop` set (incomplete or an error).
[[gnu::noinline]] const char* parse_request_line(const char* p, const char* const end,
                                                 RequestLine& line, HeadResult& stop) {
    auto halt = [&stop](HeadResult r) -> const char* {
        stop = r;
        return nullptr;
    };

    // method SP
    const char* const method = p;
    while (p < end && tchar[uchar(*p)]) {
        ++p;
    }
    if (p == end) {
        return halt(incomplete);
    }
    if (*p != ' ' || p == method) {
        return halt(
            request_line_stop(p, end, Error::bad_request, why::bad_method, why::bad_method));
    }
    line.method = std::string_view(method, static_cast<size_t>(p - method));
    ++p;

    // origin-form request-target SP
    const char* const target = p;
    if (p == end) {
        return halt(incomplete);
    }
    if (*p != '/') {
        const std::string_view form = *p == '*' ? why::asterisk_form : why::not_origin_form;
        return halt(is_visible(*p) ? other_form_stop(p, end, form)
                                   : request_line_stop(p, end, Error::bad_request,
                                                       why::not_origin_form, form));
    }
    for (;;) {
        while (p < end && target_byte[uchar(*p)]) {
            ++p;
        }
        if (p == end) {
            return halt(incomplete);
        }
        if (*p != '%') {
            break;
        }
        for (int i = 1; i <= 2; ++i) {
            if (p + i == end) {
                return halt(incomplete);
            }
            if (hex_value(p[i]) < 0) {
                return halt(bad(why::bad_percent_encoding));
            }
        }
        p += 3;
    }
    if (*p != ' ') {
        // A line that ends after the target is an HTTP/0.9 simple request.
        return halt(request_line_stop(p, end, Error::version_unsupported, why::http09,
                                      why::invalid_target_byte));
    }
    line.target = std::string_view(target, static_cast<size_t>(p - target));
    ++p;

    // HTTP-version CRLF
    if (end - p >= 10 && std::memcmp(p, "HTTP/1.1\r\n", 10) == 0) {
        line.minor_version = 1;
        return p + 10;
    }
    constexpr std::string_view pattern = "HTTP/D.D";
    int major = 0;
    int minor = 0;
    for (char expected : pattern) {
        if (p == end) {
            return halt(incomplete);
        }
        if (expected == 'D' ? !is_digit(*p) : *p != expected) {
            return halt(
                request_line_stop(p, end, Error::bad_request, why::bad_version, why::bad_version));
        }
        if (expected == 'D') {
            major = minor;
            minor = *p - '0';
        }
        ++p;
    }
    if (major != 1) {
        return halt(fail(Error::version_unsupported, why::unsupported_version));
    }
    if (p == end) {
        return halt(incomplete);
    }
    if (*p != '\r') {
        return halt(
            request_line_stop(p, end, Error::bad_request, why::bad_version, why::bad_version));
    }
    if (p + 1 == end) {
        return halt(incomplete);
    }
    if (p[1] != '\n') {
        return halt(bad(why::bare_cr));
    }
    line.minor_version = minor == 0 ? 0 : 1;
    return p + 2;
}

// The usual field line: "name: value CRLF" with a token name, given the lengths of its name and
// of the line before its CR (up to the first non-token and the first control byte). The
// byte-by-byte parse accepts such a line with the same name and value. `last` is the last byte
// of the window: the LF must be inside it.
bool is_plain_field_line(const char* line, size_t name_length, size_t line_length,
                         const char* last) {
    // name_length <= line_length: every control byte is a non-token byte.
    const char* const line_end = line + line_length;
    return line_end < last && std::memcmp(line_end, "\r\n", 2) == 0 && name_length != 0 &&
           line[name_length] == ':';
}

// The field of a plain field line. Its value has no control byte, so no HTAB: the whitespace
// around it can only be spaces. Usually there is one space before the value and none after it.
Header plain_field(const char* line, size_t name_length, size_t line_length) {
    const char* value = line + name_length + 1;
    value += *value == ' ';
    const char* value_end = line + line_length;
    // value <= value_end, the line's CR: both loops stop.
    if (*value == ' ' || value_end[-1] == ' ') [[unlikely]] {
        while (*value == ' ') {
            ++value;
        }
        while (value_end > value && value_end[-1] == ' ') {
            --value_end;
        }
    }
    return {std::string_view(line, name_length),
            std::string_view(value, static_cast<size_t>(value_end - value))};
}

// What take_plain_fields did.
struct PlainFields {
    const char* next;        // the start of the first line not taken
    size_t count;            // fields stored
    std::string_view detail; // not empty: check_field refused the last field stored
};

// Takes the plain field lines from p on, storing their fields into fields[0, room) and passing
// those that may matter to check_field. Stops before a line that is not plain (the empty line
// at the end of the head, anything unusual), when check_field refuses a field, or when the
// storage is full. `fields` is restrict: storing a field does not change the byte classes,
// which can stay in registers. Precondition: begin < end, and p <= end.
PlainFields take_plain_fields(ByteClasses& classes, const char* p, const char* const end,
                              Header* __restrict fields, size_t room, Semantics& s) {
    const char* const last = end - 1;
    Header* h = fields;
    Header* const fields_end = fields + room;
    size_t at = classes.offset_of(p); // the start of the line, for the blocks at hand
    while (h != fields_end) {
        if (!classes.at_hand(at)) [[unlikely]] {
            at = classes.offset_of(classes.pointer(at));
        }
        const char* const line = classes.pointer(at);
        const ByteClasses::Near near = classes.near_at(at); // all 0 at the end of the window
        const auto taken = [&] { return static_cast<size_t>(h - fields); };
        size_t line_length;
        size_t name_length;
        size_t next_at; // the start of the next line, if this one is taken
        if (near.controls != 0) [[likely]] {
            // Every control byte is a non-token byte: near.non_tokens is not 0 either.
            line_length = first_bit(near.controls);
            name_length = first_bit(near.non_tokens);
            next_at = at + line_length + 2;
        } else if (near.non_tokens != 0) {
            // A line longer than the reach of near(), such as a signature. Its name ends
            // within reach; its end comes after the name. The search may move the blocks on,
            // past the start of the line: the next line's offset comes from its pointer.
            name_length = first_bit(near.non_tokens);
            const char* const line_end = classes.find_control(line + name_length);
            line_length = static_cast<size_t>(line_end - line);
            next_at = line_end < last ? classes.offset_of(line_end + 2) : 0;
        } else {
            return {line, taken(), {}}; // the end of the window, or a name beyond reach
        }
        if (!is_plain_field_line(line, name_length, line_length, last)) {
            return {line, taken(), {}};
        }
        *h = plain_field(line, name_length, line_length);
        at = next_at;
        if (may_matter(h->name)) {
            if (std::string_view detail = check_field(*h, s); !detail.empty()) {
                return {nullptr, taken() + 1, detail};
            }
        }
        ++h;
    }
    return {classes.pointer(at), static_cast<size_t>(h - fields), {}};
}

// A field line, byte by byte: the reference for every answer about it, errors included.
// Precondition: *p starts a field name (not CR, LF or whitespace). Returns the first byte after
// its CRLF, or nullptr with `stop` set (incomplete or an error).
[[gnu::noinline]] const char* parse_field_line(const char* p, const char* const end, Header& h,
                                               HeadResult& stop) {
    const char* const name = p;
    p += token_run(p, end);
    if (p == end) {
        stop = incomplete;
        return nullptr;
    }
    if (*p != ':' || p == name) {
        std::string_view detail = why::invalid_token_byte;
        if (*p == ':') {
            detail = why::empty_header_name;
        } else if (is_ows(*p)) {
            detail = why::space_before_colon;
        } else if (*p == '\n') {
            detail = why::bare_lf;
        } else if (*p == '\r') {
            detail = p + 1 < end && p[1] == '\n' ? why::missing_colon : why::bare_cr;
        }
        stop = header_line_error(p, end, detail);
        return nullptr;
    }
    const std::string_view name_view(name, static_cast<size_t>(p - name));
    ++p;
    while (p < end && is_ows(*p)) {
        ++p;
    }
    const char* const value = p;
    p += field_value_run(p, end);
    if (p == end || (*p == '\r' && p + 1 == end)) {
        stop = incomplete;
        return nullptr;
    }
    if (*p != '\r' || p[1] != '\n') {
        std::string_view detail = why::invalid_header_byte;
        if (*p == '\n') {
            detail = why::bare_lf;
        } else if (*p == '\r') {
            detail = why::bare_cr;
        }
        stop = header_line_error(p, end, detail);
        return nullptr;
    }
    const char* value_end = p;
    while (value_end > value && is_ows(value_end[-1])) {
        --value_end;
    }
    h.name = name_view;
    h.value = std::string_view(value, static_cast<size_t>(value_end - value));
    return p + 2;
}

// The head in [begin, end). Each line is first tried as a plain line, found with the byte
// classes; anything else (the empty line that ends the head, an incomplete line, errors, and
// rarer forms such as an HTAB in a value or percent-encoding in the target) goes byte by byte,
// which decides the exact answer.
HeadResult parse_window(const char* const begin, const char* const end, std::span<Header> headers,
                        size_t max_headers, Classifier classify, RequestHead& out) {
    const char* p = begin;

    // RFC 9112 section 2.2: empty lines before the request line are ignored.
    while (p < end && *p == '\r') {
        if (p + 1 == end) {
            return incomplete;
        }
        if (p[1] != '\n') {
            return bad(why::bare_cr);
        }
        p += 2;
    }
    if (p == end) {
        return incomplete;
    }

    // No classifier (the scalar path): every line byte by byte. The classes cost nothing until
    // asked. (A std::optional here would have its 0.5 KiB zero-filled by GCC on every parse.)
    ByteClasses classes(begin, end, classify);
    const bool by_classes = classify != nullptr;

    RequestLine line;
    if (const char* const next =
            by_classes ? take_plain_request_line(classes, p, end, line) : nullptr) {
        p = next;
    } else {
        HeadResult stop;
        p = parse_request_line(p, end, line, stop);
        if (p == nullptr) {
            return stop;
        }
    }

    // *( field-line CRLF ) CRLF
    Semantics s;
    s.minor_version = line.minor_version;
    size_t count = 0;
    for (;;) {
        if (by_classes) {
            const PlainFields taken =
                take_plain_fields(classes, p, end, headers.data() + count, max_headers - count, s);
            if (!taken.detail.empty()) {
                return bad(taken.detail);
            }
            p = taken.next;
            count += taken.count;
        }

        if (p == end) {
            return incomplete;
        }
        if (*p == '\r') {
            if (p + 1 == end) {
                return incomplete;
            }
            if (p[1] != '\n') {
                return bad(why::bare_cr);
            }
            p += 2;
            break;
        }
        if (*p == '\n') {
            return bad(why::bare_lf);
        }
        if (is_ows(*p)) {
            return bad(why::obs_fold);
        }
        if (count == max_headers) {
            return fail(Error::header_too_large, why::too_many_headers);
        }

        // A plain line whose name goes beyond the reach of near().
        if (by_classes) {
            // The name ends at or before the first control byte: searching in this order
            // only moves forward through the blocks.
            const char* const name_end = classes.find_non_token(p);
            const char* const line_end = classes.find_control(name_end);
            const auto name_length = static_cast<size_t>(name_end - p);
            const auto line_length = static_cast<size_t>(line_end - p);
            if (is_plain_field_line(p, name_length, line_length, end - 1)) {
                Header& h = headers[count++];
                h = plain_field(p, name_length, line_length);
                p = line_end + 2;
                if (std::string_view detail = check_field(h, s); !detail.empty()) {
                    return bad(detail);
                }
                continue;
            }
        }

        HeadResult stop;
        Header& h = headers[count];
        p = parse_field_line(p, end, h, stop);
        if (p == nullptr) {
            return stop;
        }
        ++count;
        if (std::string_view detail = check_field(h, s); !detail.empty()) {
            return bad(detail);
        }
    }

    if (line.minor_version == 1 && !s.host_seen) {
        return bad(why::missing_host);
    }
    BodyFraming framing = BodyFraming::none;
    if (s.te_seen) {
        if (!s.te_chunked) {
            return bad(why::te_not_chunked);
        }
        if (s.te_other) {
            return fail(Error::not_implemented, why::unsupported_transfer_coding);
        }
        framing = BodyFraming::chunked;
    } else if (s.content_length_seen) {
        framing = BodyFraming::content_length;
    }

    const std::string_view target = line.target;
    const size_t question = std::min(target.find('?'), target.size());
    // After the '?', or empty at the end of the target.
    const size_t query = std::min(question + 1, target.size());
    out.method = line.method;
    out.target = target;
    out.path = std::string_view(target.data(), question);
    out.query = std::string_view(target.data() + query, target.size() - query);
    out.minor_version = line.minor_version;
    out.headers = std::span<const Header>(headers.data(), count);
    out.framing = framing;
    out.content_length = framing == BodyFraming::content_length ? s.content_length : 0;
    out.host = s.host;
    out.keep_alive = line.minor_version == 1 ? !s.connection_close
                                             : s.connection_keep_alive && !s.connection_close;
    out.expect_continue = s.expect_continue;
    return {static_cast<size_t>(p - begin), Error::none, {}};
}

// nullptr for the scalar path.
Classifier classifier_for(ScanPath path) {
    switch (path) {
    case ScanPath::scalar:
        break;
    case ScanPath::sse2:
#if defined(PORTCULLIS_PARSER_SSE2)
        return classify_sse2;
#endif
        break;
    case ScanPath::avx2:
#if defined(PORTCULLIS_PARSER_AVX)
        return classify_avx2;
#endif
        break;
    case ScanPath::avx512:
#if defined(PORTCULLIS_PARSER_AVX)
        return classify_avx512;
#endif
        break;
    }
    return nullptr;
}

ScanPath best_scan_path() {
    if (scan_path_available(ScanPath::avx512)) {
        return ScanPath::avx512;
    }
    if (scan_path_available(ScanPath::avx2)) {
        return ScanPath::avx2;
    }
    if (scan_path_available(ScanPath::sse2)) {
        return ScanPath::sse2;
    }
    return ScanPath::scalar;
}

// The path in use and its classifier. Zero-initialized (the scalar path, without classifier,
// right on every CPU) until their dynamic initializers pick the best path, so that a parse from
// another file's static initializer is still correct.
std::atomic<ScanPath> active_scan_path{best_scan_path()};
std::atomic<Classifier> active_classifier{classifier_for(best_scan_path())};

} // namespace

ScanPath scan_path() {
    return active_scan_path.load(std::memory_order_relaxed);
}

bool scan_path_available(ScanPath path) {
#if defined(PORTCULLIS_PARSER_SSE2)
    constexpr bool sse2_built = true;
#else
    constexpr bool sse2_built = false;
#endif
    switch (path) {
    case ScanPath::scalar:
        return true;
    case ScanPath::sse2:
        return sse2_built;
    case ScanPath::avx2:
#if defined(PORTCULLIS_PARSER_AVX)
        // Also called from a static initializer, possibly before the runtime has probed the CPU.
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0;
#else
        return false;
#endif
    case ScanPath::avx512:
#if defined(PORTCULLIS_PARSER_AVX)
        // The runtime's probe also checks that the OS saves the AVX-512 registers.
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") != 0 && __builtin_cpu_supports("avx512bw") != 0;
#else
        return false;
#endif
    }
    return false;
}

bool use_scan_path(ScanPath path) {
    if (!scan_path_available(path)) {
        return false;
    }
    active_scan_path.store(path, std::memory_order_relaxed);
    active_classifier.store(classifier_for(path), std::memory_order_relaxed);
    return true;
}

HeadResult parse_head(std::string_view buf, size_t scanned, const Limits& limits,
                      std::span<Header> headers, RequestHead& out) {
    const size_t window = std::min<size_t>(buf.size(), limits.header_bytes);
    if (scanned > 0 && scanned < buf.size() && buf.size() <= limits.header_bytes &&
        more_bytes_change_nothing(buf, scanned)) {
        return incomplete;
    }
    const size_t max_headers = std::min<size_t>(headers.size(), limits.max_headers);
    const Classifier classify = active_classifier.load(std::memory_order_relaxed);
    HeadResult r =
        parse_window(buf.data(), buf.data() + window, headers, max_headers, classify, out);
    if (r.error == Error::none && r.consumed == 0 && buf.size() > window) {
        return fail(Error::header_too_large, why::head_too_large);
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// Chunked framing

namespace {

constexpr uint32_t max_chunk_line_bytes = 4 * 1024;
constexpr uint32_t max_trailer_bytes = 16 * 1024;

// Order matters: the chunk-size line states come first and the trailer states last, so that
// one comparison tells which byte budget a framing byte counts against.
enum State : uint8_t {
    size_first,      // first hex digit of chunk-size
    size_digits,     // more hex digits, or what follows the size
    size_bws,        // whitespace after the size: only ';' may follow
    ext_name_start,  // after ';' (BWS allowed)
    ext_name,        // in chunk-ext-name
    ext_name_bws,    // whitespace after the name: '=' or ';' may follow
    ext_value_start, // after '=' (BWS allowed)
    ext_value_token, // in a token chunk-ext-val
    ext_value_quoted,
    ext_value_escape, // after '\' in a quoted-string
    ext_after_value,  // after the closing quote
    ext_bws,          // whitespace after a value: only ';' may follow
    size_lf,          // CR seen at the end of the chunk-size line
    data,
    data_cr,
    data_lf,
    trailer_start, // start of a trailer field line, or CR of the final CRLF
    trailer_name,
    trailer_value,
    trailer_lf,
    final_lf,
    done,
    failed,
};

enum Failure : uint8_t {
    f_bare_lf,
    f_bare_cr,
    f_bad_chunk_size,
    f_chunk_size_overflow,
    f_bad_chunk_ext,
    f_chunk_line_too_long,
    f_missing_chunk_crlf,
    f_obs_fold,
    f_empty_header_name,
    f_space_before_colon,
    f_missing_colon,
    f_invalid_token_byte,
    f_invalid_header_byte,
    f_trailers_too_large,
};

constexpr std::string_view failure_detail[] = {
    why::bare_lf,
    why::bare_cr,
    "bad_chunk_size",
    "chunk_size_overflow",
    "bad_chunk_ext",
    "chunk_line_too_long",
    "missing_chunk_crlf",
    why::obs_fold,
    why::empty_header_name,
    why::space_before_colon,
    why::missing_colon,
    why::invalid_token_byte,
    why::invalid_header_byte,
    "trailers_too_large",
};

constexpr bool expects_lf(uint8_t state) {
    return state == size_lf || state == data_lf || state == trailer_lf || state == final_lf;
}

} // namespace

void ChunkedDecoder::reset() {
    *this = ChunkedDecoder{};
}

ChunkedDecoder::Step ChunkedDecoder::feed(std::string_view in) {
    if (_state == failed) {
        return {0, {}, false, Error::bad_request, failure_detail[_failure]};
    }
    if (_state == done) {
        return {0, {}, true, Error::none, {}};
    }
    size_t i = 0;
    const size_t n = in.size();
    // Moves to `failed` and answers; the detail is kept for later calls.
    auto fail_with = [&](Failure f) {
        _state = failed;
        _failure = f;
        return Step{i, {}, false, Error::bad_request, failure_detail[f]};
    };
    while (i < n) {
        if (_state == data) {
            const size_t take = static_cast<size_t>(std::min<uint64_t>(_remaining, n - i));
            _remaining -= take;
            if (_remaining == 0) {
                _state = data_cr;
            }
            return {i + take, in.substr(i, take), false, Error::none, {}};
        }
        const char c = in[i++];
        if (_state <= size_lf) {
            if (++_line_bytes > max_chunk_line_bytes) {
                return fail_with(f_chunk_line_too_long);
            }
        } else if (_state >= trailer_start) {
            if (++_line_bytes > max_trailer_bytes) {
                return fail_with(f_trailers_too_large);
            }
        }
        if (c == '\n' && !expects_lf(_state)) {
            return fail_with(f_bare_lf);
        }
        switch (_state) {
        case size_first:
            if (hex_value(c) < 0) {
                return fail_with(f_bad_chunk_size);
            }
            _remaining = static_cast<uint64_t>(hex_value(c));
            _digits = 1;
            _state = size_digits;
            break;
        case size_digits:
            if (const int v = hex_value(c); v >= 0) {
                // 16 hex digits fill 64 bits; leading zeros count too, as a cheap bound.
                if (_digits == 16) {
                    return fail_with(f_chunk_size_overflow);
                }
                _remaining = _remaining << 4 | static_cast<uint64_t>(v);
                ++_digits;
            } else if (c == ';') {
                _state = ext_name_start;
            } else if (is_ows(c)) {
                _state = size_bws;
            } else if (c == '\r') {
                _state = size_lf;
            } else {
                return fail_with(f_bad_chunk_size);
            }
            break;
        case size_bws:
            if (c == ';') {
                _state = ext_name_start;
            } else if (!is_ows(c)) {
                return fail_with(f_bad_chunk_size);
            }
            break;
        case ext_name_start:
            if (tchar[uchar(c)]) {
                _state = ext_name;
            } else if (!is_ows(c)) {
                return fail_with(f_bad_chunk_ext);
            }
            break;
        case ext_name:
            if (c == '=') {
                _state = ext_value_start;
            } else if (c == ';') {
                _state = ext_name_start;
            } else if (c == '\r') {
                _state = size_lf;
            } else if (is_ows(c)) {
                _state = ext_name_bws;
            } else if (!tchar[uchar(c)]) {
                return fail_with(f_bad_chunk_ext);
            }
            break;
        case ext_name_bws:
            if (c == '=') {
                _state = ext_value_start;
            } else if (c == ';') {
                _state = ext_name_start;
            } else if (!is_ows(c)) {
                return fail_with(f_bad_chunk_ext);
            }
            break;
        case ext_value_start:
            if (c == '"') {
                _state = ext_value_quoted;
            } else if (tchar[uchar(c)]) {
                _state = ext_value_token;
            } else if (!is_ows(c)) {
                return fail_with(f_bad_chunk_ext);
            }
            break;
        case ext_value_token:
            if (c == ';') {
                _state = ext_name_start;
            } else if (c == '\r') {
                _state = size_lf;
            } else if (is_ows(c)) {
                _state = ext_bws;
            } else if (!tchar[uchar(c)]) {
                return fail_with(f_bad_chunk_ext);
            }
            break;
        case ext_value_quoted:
            if (c == '"') {
                _state = ext_after_value;
            } else if (c == '\\') {
                _state = ext_value_escape;
            } else if (!qdtext[uchar(c)]) {
                return fail_with(f_bad_chunk_ext);
            }
            break;
        case ext_value_escape:
            // quoted-pair: HTAB, SP, VCHAR or obs-text
            if (!field_value_byte[uchar(c)]) {
                return fail_with(f_bad_chunk_ext);
            }
            _state = ext_value_quoted;
            break;
        case ext_after_value:
            if (c == ';') {
                _state = ext_name_start;
            } else if (c == '\r') {
                _state = size_lf;
            } else if (is_ows(c)) {
                _state = ext_bws;
            } else {
                return fail_with(f_bad_chunk_ext);
            }
            break;
        case ext_bws:
            if (c == ';') {
                _state = ext_name_start;
            } else if (!is_ows(c)) {
                return fail_with(f_bad_chunk_ext);
            }
            break;
        case size_lf:
            if (c != '\n') {
                return fail_with(f_bare_cr);
            }
            _line_bytes = 0;
            _state = _remaining == 0 ? trailer_start : data;
            break;
        case data_cr:
            if (c != '\r') {
                return fail_with(f_missing_chunk_crlf);
            }
            _state = data_lf;
            break;
        case data_lf:
            if (c != '\n') {
                return fail_with(f_bare_cr);
            }
            _line_bytes = 0;
            _state = size_first;
            break;
        case trailer_start:
            if (c == '\r') {
                _state = final_lf;
            } else if (is_ows(c)) {
                return fail_with(f_obs_fold);
            } else if (c == ':') {
                return fail_with(f_empty_header_name);
            } else if (tchar[uchar(c)]) {
                _state = trailer_name;
            } else {
                return fail_with(f_invalid_token_byte);
            }
            break;
        case trailer_name:
            if (c == ':') {
                _state = trailer_value;
            } else if (is_ows(c)) {
                return fail_with(f_space_before_colon);
            } else if (c == '\r') {
                return fail_with(f_missing_colon);
            } else if (!tchar[uchar(c)]) {
                return fail_with(f_invalid_token_byte);
            }
            break;
        case trailer_value:
            if (c == '\r') {
                _state = trailer_lf;
            } else if (!field_value_byte[uchar(c)]) {
                return fail_with(f_invalid_header_byte);
            }
            break;
        case trailer_lf:
            if (c != '\n') {
                return fail_with(f_bare_cr);
            }
            _state = trailer_start;
            break;
        case final_lf:
            if (c != '\n') {
                return fail_with(f_bare_cr);
            }
            _state = done;
            return {i, {}, true, Error::none, {}};
        default:
            // data, done and failed are handled before the switch.
            break;
        }
    }
    return {n, {}, false, Error::none, {}};
}

} // namespace portcullis::http
