#include "portcullis/http/parser.hh"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace portcullis::http {

namespace {

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

// Byte classes, one 256-entry table each.
using ByteTable = std::array<bool, 256>;

template <class Pred>
constexpr ByteTable make_table(Pred pred) {
    ByteTable t{};
    for (int c = 0; c < 256; ++c) {
        t[c] = pred(static_cast<unsigned char>(c));
    }
    return t;
}

constexpr bool is_alnum(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_one_of(unsigned char c, std::string_view set) {
    return set.find(static_cast<char>(c)) != std::string_view::npos;
}

// RFC 9110 tchar.
constexpr ByteTable tchar =
    make_table([](unsigned char c) { return is_alnum(c) || is_one_of(c, "!#$%&'*+-.^_`|~"); });
// RFC 9110 field-value bytes: VCHAR, SP, HTAB, obs-text.
constexpr ByteTable field_value_byte =
    make_table([](unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); });
// Origin-form target bytes (RFC 3986 pchar, '/', '?'), without '%' whose hex digits are checked
// apart.
constexpr ByteTable target_byte =
    make_table([](unsigned char c) { return is_alnum(c) || is_one_of(c, "-._~!$&'()*+,;=:@/?"); });
// RFC 3986 reg-name bytes without '%'.
constexpr ByteTable reg_name_byte =
    make_table([](unsigned char c) { return is_alnum(c) || is_one_of(c, "-._~!$&'()*+,;="); });
// quoted-string contents (RFC 9110 qdtext).
constexpr ByteTable qdtext = make_table([](unsigned char c) {
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
           (c >= 0x5d && c <= 0x7e) || c >= 0x80;
});

constexpr unsigned char uchar(char c) {
    return static_cast<unsigned char>(c);
}
constexpr bool is_ows(char c) {
    return c == ' ' || c == '\t';
}
constexpr bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

constexpr int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// Length of the run of tchar bytes at the start of [p, end). Header names are nearly always
// letters, digits and '-': 16 bytes at a time check that, then any other tchar continues byte
// by byte.
inline size_t token_run(const char* p, const char* end) {
    const char* const start = p;
#if defined(__SSE2__)
    const __m128i case_bit = _mm_set1_epi8(0x20);
    const __m128i before_a = _mm_set1_epi8('a' - 1);
    const __m128i after_z = _mm_set1_epi8('z' + 1);
    const __m128i before_0 = _mm_set1_epi8('0' - 1);
    const __m128i after_9 = _mm_set1_epi8('9' + 1);
    const __m128i dash = _mm_set1_epi8('-');
    while (end - p >= 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const __m128i lower = _mm_or_si128(v, case_bit);
        const __m128i alpha =
            _mm_and_si128(_mm_cmpgt_epi8(lower, before_a), _mm_cmplt_epi8(lower, after_z));
        const __m128i digit =
            _mm_and_si128(_mm_cmpgt_epi8(v, before_0), _mm_cmplt_epi8(v, after_9));
        const __m128i ok = _mm_or_si128(_mm_or_si128(alpha, digit), _mm_cmpeq_epi8(v, dash));
        const unsigned other = ~static_cast<unsigned>(_mm_movemask_epi8(ok)) & 0xffffu;
        if (other != 0) {
            p += __builtin_ctz(other);
            if (*p == ':') {
                return static_cast<size_t>(p - start); // the usual end of a field name
            }
            break;
        }
        p += 16;
    }
#endif
    while (p < end && tchar[uchar(*p)]) {
        ++p;
    }
    return static_cast<size_t>(p - start);
}

// Length of the run of field-value bytes at the start of [p, end); the first byte after it is
// normally the CR that ends the line.
inline size_t field_value_run(const char* p, const char* end) {
    const char* const start = p;
#if defined(__SSE2__)
    const __m128i space = _mm_set1_epi8(0x20);
    const __m128i minus_one = _mm_set1_epi8(-1);
    const __m128i tab = _mm_set1_epi8('\t');
    const __m128i del = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        // Signed compares: obs-text (0x80-0xff) is negative and must not count as a control.
        __m128i ctl = _mm_and_si128(_mm_cmplt_epi8(v, space), _mm_cmpgt_epi8(v, minus_one));
        ctl = _mm_andnot_si128(_mm_cmpeq_epi8(v, tab), ctl);
        const __m128i bad = _mm_or_si128(ctl, _mm_cmpeq_epi8(v, del));
        const unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(bad));
        if (mask != 0) {
            return static_cast<size_t>(p - start) + __builtin_ctz(mask);
        }
        p += 16;
    }
#endif
    while (p < end && field_value_byte[uchar(*p)]) {
        ++p;
    }
    return static_cast<size_t>(p - start);
}

inline uint64_t load64(const char* p) {
    uint64_t v;
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
bool valid_host(std::string_view h) {
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
    uint64_t n = 0;
    for (char c : v) {
        if (!is_digit(c)) {
            return c == ',' ? why::content_length_list : why::bad_content_length;
        }
        const auto digit = static_cast<uint64_t>(c - '0');
        if (n > (max - digit) / 10) {
            return why::content_length_overflow;
        }
        n = n * 10 + digit;
    }
    s.content_length = n;
    return {};
}

// Transfer-Encoding lines are joined as one list; each element is a bare coding name (transfer
// parameters are refused: chunked takes none, and any other coding is refused anyway).
std::string_view check_transfer_encoding(std::string_view v, Semantics& s) {
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

std::string_view check_connection(std::string_view v, Semantics& s) {
    const char* p = v.data();
    const char* const end = p + v.size();
    while (p < end) {
        if (*p == ',' || is_ows(*p)) {
            ++p; // RFC 9110 section 5.6.1: empty list elements are ignored
            continue;
        }
        const std::string_view option(p, token_run(p, end));
        if (option.empty()) {
            return why::bad_connection;
        }
        p += option.size();
        while (p < end && is_ows(*p)) {
            ++p;
        }
        if (p < end && *p != ',') {
            return why::bad_connection;
        }
        if (equals_lowercase(option, "close")) {
            s.connection_close = true;
        } else if (equals_lowercase(option, "keep-alive")) {
            s.connection_keep_alive = true;
        }
    }
    return {};
}

// Looks at the fields that decide framing, routing and the connection's fate. Returns an empty
// view when the field is fine.
std::string_view check_field(const Header& h, Semantics& s) {
    // Most fields are none of these: one test on the name length sends them away.
    constexpr uint32_t interesting_lengths = 1u << 4 | 1u << 6 | 1u << 10 | 1u << 14 | 1u << 17;
    if (h.name.size() >= 32 || (interesting_lengths >> h.name.size() & 1u) == 0) {
        return {};
    }
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

HeadResult parse_window(const char* const begin, const char* const end, std::span<Header> headers,
                        size_t max_headers, RequestHead& out) {
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

    // method SP
    const char* const method = p;
    while (p < end && tchar[uchar(*p)]) {
        ++p;
    }
    if (p == end) {
        return incomplete;
    }
    if (*p != ' ' || p == method) {
        return request_line_stop(p, end, Error::bad_request, why::bad_method, why::bad_method);
    }
    const std::string_view method_view(method, static_cast<size_t>(p - method));
    ++p;

    // origin-form request-target SP
    const char* const target = p;
    if (p == end) {
        return incomplete;
    }
    if (*p != '/') {
        return request_line_stop(p, end, Error::bad_request, why::not_origin_form,
                                 *p == '*' ? why::asterisk_form : why::not_origin_form);
    }
    for (;;) {
        while (p < end && target_byte[uchar(*p)]) {
            ++p;
        }
        if (p == end) {
            return incomplete;
        }
        if (*p != '%') {
            break;
        }
        for (int i = 1; i <= 2; ++i) {
            if (p + i == end) {
                return incomplete;
            }
            if (hex_value(p[i]) < 0) {
                return bad(why::bad_percent_encoding);
            }
        }
        p += 3;
    }
    if (*p != ' ') {
        // A line that ends after the target is an HTTP/0.9 simple request.
        return request_line_stop(p, end, Error::version_unsupported, why::http09,
                                 why::invalid_target_byte);
    }
    const std::string_view target_view(target, static_cast<size_t>(p - target));
    ++p;

    // HTTP-version CRLF
    uint8_t minor_version = 1;
    if (end - p >= 10 && std::memcmp(p, "HTTP/1.1\r\n", 10) == 0) {
        p += 10;
    } else {
        constexpr std::string_view pattern = "HTTP/D.D";
        int major = 0;
        int minor = 0;
        for (char expected : pattern) {
            if (p == end) {
                return incomplete;
            }
            if (expected == 'D' ? !is_digit(*p) : *p != expected) {
                return request_line_stop(p, end, Error::bad_request, why::bad_version,
                                         why::bad_version);
            }
            if (expected == 'D') {
                major = minor;
                minor = *p - '0';
            }
            ++p;
        }
        if (major != 1) {
            return fail(Error::version_unsupported, why::unsupported_version);
        }
        if (p == end) {
            return incomplete;
        }
        if (*p != '\r') {
            return request_line_stop(p, end, Error::bad_request, why::bad_version,
                                     why::bad_version);
        }
        if (p + 1 == end) {
            return incomplete;
        }
        if (p[1] != '\n') {
            return bad(why::bare_cr);
        }
        p += 2;
        minor_version = minor == 0 ? 0 : 1;
    }

    // *( field-line CRLF ) CRLF
    Semantics s;
    s.minor_version = minor_version;
    size_t count = 0;
    for (;;) {
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

        const char* const name = p;
        p += token_run(p, end);
        if (p == end) {
            return incomplete;
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
            return header_line_error(p, end, detail);
        }
        const std::string_view name_view(name, static_cast<size_t>(p - name));
        ++p;
        if (p < end && *p == ' ') {
            ++p; // the usual single space, before looking for more
        }
        while (p < end && is_ows(*p)) {
            ++p;
        }
        const char* const value = p;
        p += field_value_run(p, end);
        if (p == end || (*p == '\r' && p + 1 == end)) {
            return incomplete;
        }
        if (*p != '\r' || p[1] != '\n') {
            std::string_view detail = why::invalid_header_byte;
            if (*p == '\n') {
                detail = why::bare_lf;
            } else if (*p == '\r') {
                detail = why::bare_cr;
            }
            return header_line_error(p, end, detail);
        }
        const char* value_end = p;
        while (value_end > value && is_ows(value_end[-1])) {
            --value_end;
        }
        p += 2;

        Header& h = headers[count++];
        h.name = name_view;
        h.value = std::string_view(value, static_cast<size_t>(value_end - value));
        if (std::string_view detail = check_field(h, s); !detail.empty()) {
            return bad(detail);
        }
    }

    if (minor_version == 1 && !s.host_seen) {
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

    const size_t question = target_view.find('?');
    out.method = method_view;
    out.target = target_view;
    if (question == std::string_view::npos) {
        out.path = target_view;
        out.query = target_view.substr(target_view.size());
    } else {
        out.path = target_view.substr(0, question);
        out.query = target_view.substr(question + 1);
    }
    out.minor_version = minor_version;
    out.headers = std::span<const Header>(headers.data(), count);
    out.framing = framing;
    out.content_length = framing == BodyFraming::content_length ? s.content_length : 0;
    out.host = s.host;
    out.keep_alive =
        minor_version == 1 ? !s.connection_close : s.connection_keep_alive && !s.connection_close;
    out.expect_continue = s.expect_continue;
    return {static_cast<size_t>(p - begin), Error::none, {}};
}

} // namespace

HeadResult parse_head(std::string_view buf, size_t scanned, const Limits& limits,
                      std::span<Header> headers, RequestHead& out) {
    const size_t window = std::min<size_t>(buf.size(), limits.header_bytes);
    if (scanned > 0 && scanned < buf.size() && buf.size() <= limits.header_bytes &&
        more_bytes_change_nothing(buf, scanned)) {
        return incomplete;
    }
    const size_t max_headers = std::min<size_t>(headers.size(), limits.max_headers);
    HeadResult r = parse_window(buf.data(), buf.data() + window, headers, max_headers, out);
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
