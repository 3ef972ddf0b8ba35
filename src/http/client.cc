#include "portcullis/http/client.hh"

#include "bytes.hh"
#include "writer.hh"

#include "portcullis/base/time.hh"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace portcullis::http {

namespace {

using namespace bytes;

// Finer reasons, exposed as `detail`. They are log and counter labels: keep them stable. The
// names the request parser also uses mean the same thing here.
namespace why {
constexpr std::string_view bad_method = "bad_method";
constexpr std::string_view bad_target = "bad_target";
constexpr std::string_view bad_host = "bad_host";
constexpr std::string_view bad_header_name = "bad_header_name";
constexpr std::string_view bad_header_value = "bad_header_value";
constexpr std::string_view reserved_header = "reserved_header";

constexpr std::string_view bare_lf = "bare_lf";
constexpr std::string_view bare_cr = "bare_cr";
constexpr std::string_view bad_version = "bad_version";
constexpr std::string_view unsupported_version = "unsupported_version";
constexpr std::string_view bad_status_code = "bad_status_code";
constexpr std::string_view bad_reason = "bad_reason";
constexpr std::string_view switching_protocols = "switching_protocols";
constexpr std::string_view too_many_interim = "too_many_interim";
constexpr std::string_view head_too_large = "head_too_large";
constexpr std::string_view too_many_headers = "too_many_headers";
constexpr std::string_view obs_fold = "obs_fold";
constexpr std::string_view space_before_colon = "space_before_colon";
constexpr std::string_view empty_header_name = "empty_header_name";
constexpr std::string_view missing_colon = "missing_colon";
constexpr std::string_view invalid_token_byte = "invalid_token_byte";
constexpr std::string_view invalid_header_byte = "invalid_header_byte";
constexpr std::string_view bad_content_length = "bad_content_length";
constexpr std::string_view content_length_overflow = "content_length_overflow";
constexpr std::string_view conflicting_content_length = "conflicting_content_length";
constexpr std::string_view cl_and_te = "cl_and_te";
constexpr std::string_view te_in_http10 = "te_in_http10";
constexpr std::string_view bad_transfer_encoding = "bad_transfer_encoding";
constexpr std::string_view chunked_twice = "chunked_twice";
constexpr std::string_view unsupported_transfer_coding = "unsupported_transfer_coding";
constexpr std::string_view bad_connection = "bad_connection";
constexpr std::string_view no_response = "no_response";
constexpr std::string_view truncated_head = "truncated_head";
constexpr std::string_view truncated_body = "truncated_body";
} // namespace why

// ---------------------------------------------------------------------------------------------
// Request head

bool is_token(std::string_view s) {
    return !s.empty() && all_in(tchar, s.data(), s.data() + s.size());
}

// True when v is a field value: no control byte but HTAB (RFC 9110 field-value). Values are most
// of a head, request or response: 16 bytes at a time where SSE2 is at hand (every x86-64).
bool is_field_value(std::string_view v) {
    const char* p = v.data();
    const char* const end = p + v.size();
#if defined(__SSE2__)
    const __m128i max_control = _mm_set1_epi8(0x1f);
    const __m128i tab = _mm_set1_epi8('\t');
    const __m128i del = _mm_set1_epi8(0x7f);
    __m128i bad = _mm_setzero_si128();
    for (; end - p >= 16; p += 16) {
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        // x <= 0x1f as an unsigned byte, but not HTAB; or DEL.
        const __m128i controls = _mm_cmpeq_epi8(_mm_min_epu8(x, max_control), x);
        bad = _mm_or_si128(bad, _mm_andnot_si128(_mm_cmpeq_epi8(x, tab), controls));
        bad = _mm_or_si128(bad, _mm_cmpeq_epi8(x, del));
    }
    if (_mm_movemask_epi8(bad) != 0) {
        return false;
    }
#endif
    return all_in(field_value_byte, p, end);
}

constexpr ByteTable visible = make_table([](unsigned char c) { return c > ' ' && c < 0x7f; });

bool is_ipv6_byte(char c) {
    return hex_value(c) >= 0 || c == ':' || c == '.';
}

// What goes in Host: a reg-name or IPv4 address (no percent-encoding: DNS names have none), or
// an IPv6 address, bare (as the configuration keeps it) or in brackets. Not a full address check
// (the configuration did that): enough that the field cannot carry anything but a host.
bool is_request_host(std::string_view h) {
    if (h.empty()) {
        return false;
    }
    if (h.front() == '[') {
        return h.size() >= 3 && h.back() == ']' &&
               std::all_of(h.begin() + 1, h.end() - 1, is_ipv6_byte);
    }
    if (h.find(':') != std::string_view::npos) {
        // Every IPv6 address has two colons at least ("::"); one is a "host:port" mistaken for
        // a host.
        return std::count(h.begin(), h.end(), ':') >= 2 &&
               std::all_of(h.begin(), h.end(), is_ipv6_byte);
    }
    return all_in(reg_name_byte, h.data(), h.data() + h.size());
}

bool is_origin_form(std::string_view t) {
    return !t.empty() && t.front() == '/' && all_in(visible, t.data(), t.data() + t.size());
}

// The fields write_request sets itself, and Transfer-Encoding: a caller's copy would make the
// request's framing or its connection handling ambiguous.
bool is_reserved(std::string_view name) {
    return name_equals(name, "host") || name_equals(name, "content-length") ||
           name_equals(name, "transfer-encoding") || name_equals(name, "connection");
}

bool is_bodiless_method(std::string_view method) {
    return method == "GET" || method == "HEAD";
}

// ---------------------------------------------------------------------------------------------
// Response head

// What the header fields of a response say, gathered line by line.
struct Semantics {
    uint8_t minor_version = 1;
    bool content_length_seen = false;
    bool te_seen = false;
    bool connection_close = false;
    bool connection_keep_alive = false;
    uint64_t content_length = 0;
};

// Content-Length: a list of one value, possibly repeated (RFC 9110 section 8.6 lets a recipient
// take "42, 42" or two fields of 42 as 42), each element 1*DIGIT within int64.
std::string_view check_content_length(std::string_view v, Semantics& s) {
    if (s.te_seen) {
        return why::cl_and_te;
    }
    constexpr uint64_t max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    const char* p = v.data();
    const char* const end = p + v.size();
    for (;;) {
        const char* const digits = p;
        uint64_t n = 0;
        while (p < end && is_digit(*p)) {
            const auto digit = static_cast<uint64_t>(*p - '0');
            if (n > (max - digit) / 10) {
                return why::content_length_overflow;
            }
            n = n * 10 + digit;
            ++p;
        }
        if (p == digits) {
            return why::bad_content_length;
        }
        if (s.content_length_seen && n != s.content_length) {
            return why::conflicting_content_length;
        }
        s.content_length_seen = true;
        s.content_length = n;
        while (p < end && is_ows(*p)) {
            ++p;
        }
        if (p == end) {
            return {};
        }
        if (*p != ',') {
            return why::bad_content_length;
        }
        ++p;
        while (p < end && is_ows(*p)) {
            ++p;
        }
    }
}

// Transfer-Encoding: this client asks for no transfer coding (it sends no TE), so the only one
// a response may use is a single chunked. Lines are joined as one list.
std::string_view check_transfer_encoding(std::string_view v, Semantics& s) {
    if (s.minor_version == 0) {
        // RFC 9112 section 6.1: the framing of such a message is faulty.
        return why::te_in_http10;
    }
    if (s.content_length_seen) {
        return why::cl_and_te;
    }
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
        if (!name_equals(coding, "chunked")) {
            return why::unsupported_transfer_coding;
        }
        if (s.te_seen) {
            return why::chunked_twice;
        }
        s.te_seen = true;
        if (p == end) {
            return {};
        }
        ++p;
    }
}

std::string_view check_connection(std::string_view v, Semantics& s) {
    if (!connection_options(v, s.connection_close, s.connection_keep_alive)) {
        return why::bad_connection;
    }
    return {};
}

std::string_view check_field(const Header& h, Semantics& s) {
    if (name_equals(h.name, "content-length")) {
        return check_content_length(h.value, s);
    }
    if (name_equals(h.name, "transfer-encoding")) {
        return check_transfer_encoding(h.value, s);
    }
    if (name_equals(h.name, "connection")) {
        return check_connection(h.value, s);
    }
    return {};
}

// "HTTP/1.1 200 OK", without its CRLF.
std::string_view parse_status_line(std::string_view line, ResponseHead& out) {
    constexpr std::string_view prefix = "HTTP/";
    if (line.size() < prefix.size() + 4 || line.substr(0, prefix.size()) != prefix ||
        !is_digit(line[5]) || line[6] != '.' || !is_digit(line[7]) || line[8] != ' ') {
        return why::bad_version;
    }
    if (line[5] != '1') {
        return why::unsupported_version;
    }
    const std::string_view rest = line.substr(9);
    if (rest.size() < 3 || !is_digit(rest[0]) || !is_digit(rest[1]) || !is_digit(rest[2]) ||
        (rest.size() > 3 && rest[3] != ' ')) {
        return why::bad_status_code;
    }
    // RFC 9110 section 15: the first digit is the class, 1 to 5.
    if (rest[0] < '1' || rest[0] > '5') {
        return why::bad_status_code;
    }
    // "HTTP/1.1 200\r\n" lacks the space before an empty reason; it means the same, and some
    // servers send it.
    const std::string_view reason = rest.size() > 3 ? rest.substr(4) : std::string_view{};
    if (field_value_run(reason.data(), reason.data() + reason.size()) != reason.size()) {
        return why::bad_reason;
    }
    out.minor_version = line[7] == '0' ? 0 : 1;
    out.status =
        static_cast<uint16_t>((rest[0] - '0') * 100 + (rest[1] - '0') * 10 + (rest[2] - '0'));
    out.reason = reason;
    return {};
}

// A field line without its CRLF (no CR or LF inside), not starting with whitespace.
std::string_view parse_field_line(std::string_view line, Header& h) {
    const char* const begin = line.data();
    const char* const end = begin + line.size();
    const char* p = begin + token_run(begin, end);
    if (p == end) {
        return why::missing_colon;
    }
    if (*p != ':') {
        return is_ows(*p) ? why::space_before_colon : why::invalid_token_byte;
    }
    if (p == begin) {
        return why::empty_header_name;
    }
    h.name = std::string_view(begin, static_cast<size_t>(p - begin));
    ++p;
    while (p < end && is_ows(*p)) {
        ++p;
    }
    const char* const value = p;
    if (!is_field_value({value, static_cast<size_t>(end - value)})) {
        return why::invalid_header_byte;
    }
    const char* value_end = end;
    while (value_end > value && is_ows(value_end[-1])) {
        --value_end;
    }
    h.value = std::string_view(value, static_cast<size_t>(value_end - value));
    return {};
}

struct HeadParse {
    size_t consumed = 0;    // > 0: the head is complete
    std::string_view error; // not empty: refused
};

// The head at the start of [begin, end), line by line: a line is looked at once its LF is in,
// and every answer about it depends on its bytes only, so that any split of the input gives the
// same answer. Fills `out` (framing and keep_alive are left to the caller).
HeadParse parse_head_lines(const char* const begin, const char* const end,
                           std::span<Header> storage, size_t max_headers, Semantics& s,
                           ResponseHead& out) {
    const char* p = begin;
    size_t count = 0;
    for (bool status_line = true;; status_line = false) {
        const auto* lf =
            static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
        if (lf == nullptr) {
            return {};
        }
        if (lf == p || lf[-1] != '\r') {
            return {0, why::bare_lf};
        }
        const std::string_view line(p, static_cast<size_t>(lf - 1 - p));
        p = lf + 1;
        // A CR inside a line is its error, whatever else is wrong with it: looked for only once
        // the line is refused (a field line's value check refuses any CR).
        auto refuse = [line](std::string_view detail) {
            return HeadParse{0, line.find('\r') != std::string_view::npos ? why::bare_cr : detail};
        };
        if (status_line) {
            if (line.find('\r') != std::string_view::npos) {
                return {0, why::bare_cr};
            }
            if (std::string_view e = parse_status_line(line, out); !e.empty()) {
                return {0, e};
            }
            s.minor_version = out.minor_version;
            continue;
        }
        if (line.empty()) {
            break;
        }
        // Also whitespace between the status line and the first field (RFC 9112 section 2.2).
        if (is_ows(line.front())) {
            return refuse(why::obs_fold);
        }
        if (count == max_headers) {
            return refuse(why::too_many_headers);
        }
        Header& h = storage[count];
        if (std::string_view e = parse_field_line(line, h); !e.empty()) {
            return refuse(e);
        }
        ++count;
        if (std::string_view e = check_field(h, s); !e.empty()) {
            return {0, e};
        }
    }
    out.headers = std::span<const Header>(storage.data(), count);
    return {static_cast<size_t>(p - begin), {}};
}

bool has_lf(const char* p, const char* end) {
    return p < end && std::memchr(p, '\n', static_cast<size_t>(end - p)) != nullptr;
}

// ---------------------------------------------------------------------------------------------
// Retry-After

constexpr std::array<std::string_view, 7> day_names = {"Mon", "Tue", "Wed", "Thu",
                                                       "Fri", "Sat", "Sun"};
constexpr std::array<std::string_view, 7> long_day_names = {
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"};
constexpr std::array<std::string_view, 12> month_names = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// Reads exactly n digits at s[at...]; -1 if s is too short or one is not a digit.
int64_t fixed_digits(std::string_view s, size_t at, size_t n) {
    if (at + n > s.size()) {
        return -1;
    }
    int64_t v = 0;
    for (size_t i = at; i < at + n; ++i) {
        if (!is_digit(s[i])) {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

// 1-12 for the month name at s[at...], 0 if none.
int64_t month_at(std::string_view s, size_t at) {
    for (size_t m = 0; m < month_names.size(); ++m) {
        if (s.substr(at, 3) == month_names[m]) {
            return static_cast<int64_t>(m) + 1;
        }
    }
    return 0;
}

// "08:49:37" at s[at...] as seconds of the day; -1 if malformed. A leap second (60) is allowed
// and counts as the next minute's start, as POSIX time does.
int64_t time_of_day_at(std::string_view s, size_t at) {
    const int64_t h = fixed_digits(s, at, 2);
    const int64_t m = fixed_digits(s, at + 3, 2);
    const int64_t sec = fixed_digits(s, at + 6, 2);
    if (h < 0 || m < 0 || sec < 0 || s[at + 2] != ':' || s[at + 5] != ':' || h > 23 || m > 59 ||
        sec > 60) {
        return -1;
    }
    return h * 3600 + m * 60 + sec;
}

std::optional<int64_t> unix_time(int64_t year, int64_t month, int64_t day, int64_t seconds) {
    if (year < 0 || month < 1 || day < 1 || day > base::days_in_month(year, month) || seconds < 0) {
        return std::nullopt;
    }
    return base::days_from_civil(year, month, day) * 86400 + seconds;
}

// IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes).
std::optional<int64_t> parse_imf_fixdate(std::string_view s) {
    if (s.size() != 29 || s.substr(3, 2) != ", " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
        s.substr(25) != " GMT" ||
        std::find(day_names.begin(), day_names.end(), s.substr(0, 3)) == day_names.end()) {
        return std::nullopt;
    }
    return unix_time(fixed_digits(s, 12, 4), month_at(s, 8), fixed_digits(s, 5, 2),
                     time_of_day_at(s, 17));
}

// rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT". RFC 9110 section 5.6.7: a two-digit year
// more than 50 years in the future is the most recent past year with those digits.
std::optional<int64_t> parse_rfc850_date(std::string_view s, int64_t now_unix_s) {
    const size_t comma = s.find(',');
    if (comma == std::string_view::npos || std::find(long_day_names.begin(), long_day_names.end(),
                                                     s.substr(0, comma)) == long_day_names.end()) {
        return std::nullopt;
    }
    const std::string_view d = s.substr(comma + 1); // " 06-Nov-94 08:49:37 GMT"
    if (d.size() != 23 || d[0] != ' ' || d[3] != '-' || d[7] != '-' || d[10] != ' ' ||
        d.substr(19) != " GMT") {
        return std::nullopt;
    }
    const int64_t yy = fixed_digits(d, 8, 2);
    if (yy < 0) {
        return std::nullopt;
    }
    const int64_t now_year = 1970 + now_unix_s / 31'556'952; // mean Gregorian year: close enough
    int64_t year = now_year - now_year % 100 + yy;
    if (year > now_year + 50) {
        year -= 100;
    }
    return unix_time(year, month_at(d, 4), fixed_digits(d, 1, 2), time_of_day_at(d, 11));
}

// asctime-date: "Sun Nov  6 08:49:37 1994".
std::optional<int64_t> parse_asctime_date(std::string_view s) {
    if (s.size() != 24 || s[3] != ' ' || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' ||
        std::find(day_names.begin(), day_names.end(), s.substr(0, 3)) == day_names.end()) {
        return std::nullopt;
    }
    const int64_t day = s[8] == ' ' ? fixed_digits(s, 9, 1) : fixed_digits(s, 8, 2);
    return unix_time(fixed_digits(s, 20, 4), month_at(s, 4), day, time_of_day_at(s, 11));
}

} // namespace

// ---------------------------------------------------------------------------------------------

std::string_view request_refusal(const OutgoingRequest& r) {
    if (!is_token(r.method)) {
        return why::bad_method;
    }
    if (!is_origin_form(r.target)) {
        return why::bad_target;
    }
    if (!is_request_host(r.host)) {
        return why::bad_host;
    }
    for (const Header& h : r.headers) {
        if (!is_token(h.name)) {
            return why::bad_header_name;
        }
        if (!is_field_value(h.value)) {
            return why::bad_header_value;
        }
        if (is_reserved(h.name)) {
            return why::reserved_header;
        }
    }
    return {};
}

size_t write_request(std::span<char> out, const OutgoingRequest& r) {
    if (!request_refusal(r).empty()) {
        return 0;
    }
    Writer w(out);
    w.put(r.method);
    w.put(" ");
    w.put(r.target);
    w.put(" HTTP/1.1\r\nHost: ");
    // A bare IPv6 address goes in brackets (RFC 3986 IP-literal).
    const bool bracket = r.host.front() != '[' && r.host.find(':') != std::string_view::npos;
    w.put(bracket ? "[" : "");
    w.put(r.host);
    w.put(bracket ? "]" : "");
    if (r.port != 0 && r.port != (r.tls ? 443 : 80)) {
        w.put(":");
        w.put_uint(r.port);
    }
    w.put("\r\n");
    for (const Header& h : r.headers) {
        w.put(h.name);
        w.put(": ");
        w.put(h.value);
        w.put("\r\n");
    }
    if (r.content_length != 0 || !is_bodiless_method(r.method)) {
        w.put("Content-Length: ");
        w.put_uint(r.content_length);
        w.put("\r\n");
    }
    w.put(r.close ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n");
    return w.finish();
}

bool connection_lists(std::string_view connection_value, std::string_view name) {
    bool listed = false;
    for_each_connection_option(connection_value, [&](std::string_view option) {
        listed =
            listed || (option.size() == name.size() &&
                       std::equal(option.begin(), option.end(), name.begin(),
                                  [](char a, char b) { return ascii_lower(a) == ascii_lower(b); }));
    });
    return listed;
}

ResponseParser::ResponseParser(std::span<Header> storage, const Limits& limits)
    : _storage(storage), _limits(limits) {}

void ResponseParser::reset(bool head_request) {
    _head = ResponseHead{};
    _chunked.reset();
    _remaining = 0;
    _body_bytes = 0;
    _head_seen = 0;
    _detail = {};
    _state = State::head;
    _head_request = head_request;
    _started = false;
}

ResponseParser::Step ResponseParser::fail(std::string_view detail, size_t consumed) {
    _state = State::failed;
    _detail = detail;
    return {consumed, ResponseEvent::error, {}, detail};
}

ResponseParser::Step ResponseParser::feed_head(std::string_view in) {
    _started = _started || !in.empty();
    const size_t max_headers = std::min<size_t>(_storage.size(), _limits.max_headers);
    size_t pos = 0; // after the interim responses taken in this call
    for (;;) {
        const char* const begin = in.data() + pos;
        const size_t size = in.size() - pos;
        const char* const window_end = begin + std::min<size_t>(size, _limits.header_bytes);
        HeadParse r;
        Semantics s;
        ResponseHead head;
        head.interim = _head.interim;
        // Until a line ends, more bytes cannot change "incomplete" (see parse_head_lines).
        const bool line_ended = pos > 0 || _head_seen == 0 || _head_seen > size ||
                                has_lf(begin + _head_seen, window_end);
        if (line_ended) {
            r = parse_head_lines(begin, window_end, _storage, max_headers, s, head);
        }
        if (!r.error.empty()) {
            return fail(r.error);
        }
        if (r.consumed == 0) {
            if (size > _limits.header_bytes) {
                return fail(why::head_too_large);
            }
            _head_seen = size;
            return {pos, ResponseEvent::need_more, {}, {}};
        }
        _head_seen = 0;
        if (head.status < 200) {
            // 100 Continue, 103 Early Hints and the like: skipped. This client never asks to
            // switch protocols, so a 101 cannot be followed.
            if (head.status == 101) {
                return fail(why::switching_protocols);
            }
            if (_head.interim == max_interim) {
                return fail(why::too_many_interim);
            }
            ++_head.interim;
            pos += r.consumed;
            continue;
        }
        // RFC 9112 section 6.3: no body after a HEAD, a 204 or a 304, whatever the fields say.
        if (_head_request || head.status == 204 || head.status == 304) {
            head.framing = ResponseFraming::none;
        } else if (s.te_seen) {
            head.framing = ResponseFraming::chunked;
        } else if (s.content_length_seen) {
            head.framing = ResponseFraming::content_length;
            head.content_length = s.content_length;
        } else {
            head.framing = ResponseFraming::until_close;
        }
        head.keep_alive = head.framing != ResponseFraming::until_close && !s.connection_close &&
                          (head.minor_version == 1 || s.connection_keep_alive);
        _head = head;
        switch (head.framing) {
        case ResponseFraming::none:
            _state = State::no_body;
            break;
        case ResponseFraming::content_length:
            _remaining = head.content_length;
            _state = _remaining == 0 ? State::no_body : State::sized;
            break;
        case ResponseFraming::chunked:
            _state = State::chunked;
            break;
        case ResponseFraming::until_close:
            _state = State::until_close;
            break;
        }
        return {pos + r.consumed, ResponseEvent::head, {}, {}};
    }
}

ResponseParser::Step ResponseParser::feed(std::string_view in) {
    switch (_state) {
    case State::head:
        return feed_head(in);
    case State::no_body:
        _state = State::done;
        return {0, ResponseEvent::done, {}, {}};
    case State::sized: {
        if (in.empty()) {
            return {};
        }
        const auto take = static_cast<size_t>(std::min<uint64_t>(_remaining, in.size()));
        _remaining -= take;
        _body_bytes += take;
        if (_remaining == 0) {
            _state = State::no_body; // the next call says done
        }
        return {take, ResponseEvent::data, in.substr(0, take), {}};
    }
    case State::chunked: {
        const ChunkedDecoder::Step s = _chunked.feed(in);
        if (s.error != Error::none) {
            return fail(s.detail);
        }
        if (!s.data.empty()) {
            _body_bytes += s.data.size();
            return {s.consumed, ResponseEvent::data, s.data, {}};
        }
        if (s.done) {
            _state = State::done;
            return {s.consumed, ResponseEvent::done, {}, {}};
        }
        return {s.consumed, ResponseEvent::need_more, {}, {}};
    }
    case State::until_close:
        if (in.empty()) {
            return {};
        }
        _body_bytes += in.size();
        return {in.size(), ResponseEvent::data, in, {}};
    case State::done:
        return {0, ResponseEvent::done, {}, {}};
    case State::failed:
        return {0, ResponseEvent::error, {}, _detail};
    }
    return {};
}

ResponseParser::Step ResponseParser::finish() {
    switch (_state) {
    case State::head:
        return fail(_started ? why::truncated_head : why::no_response);
    case State::sized:
    case State::chunked:
        return fail(why::truncated_body);
    case State::no_body:
    case State::until_close:
    case State::done:
        _state = State::done;
        return {0, ResponseEvent::done, {}, {}};
    case State::failed:
        return {0, ResponseEvent::error, {}, _detail};
    }
    return {};
}

std::optional<int64_t> parse_retry_after(std::string_view value, int64_t now_unix_s) {
    while (!value.empty() && is_ows(value.front())) {
        value.remove_prefix(1);
    }
    while (!value.empty() && is_ows(value.back())) {
        value.remove_suffix(1);
    }
    if (value.empty()) {
        return std::nullopt;
    }
    if (is_digit(value.front())) {
        // delta-seconds = 1*DIGIT
        constexpr int64_t max = std::numeric_limits<int64_t>::max();
        int64_t n = 0;
        for (char c : value) {
            if (!is_digit(c)) {
                return std::nullopt;
            }
            const int digit = c - '0';
            n = n > (max - digit) / 10 ? max : n * 10 + digit;
        }
        return n;
    }
    std::optional<int64_t> at = parse_imf_fixdate(value);
    if (!at) {
        at = value.size() == 24 ? parse_asctime_date(value) : parse_rfc850_date(value, now_unix_s);
    }
    if (!at) {
        return std::nullopt;
    }
    return *at > now_unix_s ? *at - now_unix_s : 0;
}

} // namespace portcullis::http
