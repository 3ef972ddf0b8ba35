// Dedup and ordering keys come from outside bytes: a query parameter of the request line, and
// ordering timestamps from a header, a query parameter or a JSON token. Whatever a provider
// sends must give an answer that stays inside the request and agrees with itself.
//
// The input's first line is a query parameter's name, the rest a query string; without a newline
// the whole input is the query and the name is "id". The whole input is also read as a timestamp
// and as an RFC 3339 date-time, and its first bytes build a date-time of the shape
// YYYY-MM-DDTHH:MM:SS[.f]Z with fields near their limits. Checks:
// - query_param finds a value inside the query, and (for a name the configuration accepts: not
//   empty) the same one as a naive split on '&' and '=';
// - parse_rfc3339 gives a time >= 0, which formats (to the millisecond) and parses back to itself
//   cut to the millisecond; for the shape above it agrees with a reference built on timegm;
// - parse_timestamp of a decimal integer of up to 18 digits (optionally quoted) is what
//   std::from_chars reads; anything else it accepts is a date-time that parse_rfc3339 accepts.
#include "portcullis/base/time.hh"
#include "portcullis/queue/keys.hh"

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace portcullis;

namespace {

void check(bool ok) {
    if (!ok) {
        std::abort();
    }
}

bool inside(std::string_view v, std::string_view buf) {
    return v.data() >= buf.data() && v.data() + v.size() <= buf.data() + buf.size();
}

// The first value of `name`, splitting the whole query up front.
std::optional<std::string> reference_query_param(std::string_view query, std::string_view name) {
    std::vector<std::string> pairs(1);
    for (char c : query) {
        if (c == '&') {
            pairs.emplace_back();
        } else {
            pairs.back().push_back(c);
        }
    }
    if (query.empty()) {
        return std::nullopt;
    }
    for (const std::string& pair : pairs) {
        const size_t eq = pair.find('=');
        const std::string key = eq == std::string::npos ? pair : pair.substr(0, eq);
        if (key == name) {
            return eq == std::string::npos ? std::string() : pair.substr(eq + 1);
        }
    }
    return std::nullopt;
}

void check_query_param(std::string_view query, std::string_view name) {
    const std::optional<std::string_view> got = queue::query_param(query, name);
    if (got) {
        check(inside(*got, query));
    }
    // The configuration refuses an empty name (query_param then matches an empty pair, but not
    // a trailing one: "a&" has no empty pair for it).
    if (name.empty()) {
        return;
    }
    const std::optional<std::string> want = reference_query_param(query, name);
    check(got.has_value() == want.has_value());
    if (got) {
        check(*got == *want);
    }
}

bool all_digits(std::string_view s) {
    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    return true;
}

int field(std::string_view s, size_t at, size_t n) {
    int v = 0;
    for (size_t i = at; i < at + n; ++i) {
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

// YYYY-MM-DDTHH:MM:SS[.f]Z read field by field, the date checked and counted by timegm (which
// normalizes an invalid date instead of refusing it, so the date must survive gmtime back).
// nullopt when text is not of that shape or names no instant of 1970 to 2262.
std::optional<std::optional<int64_t>> reference_rfc3339(std::string_view t) {
    if (t.size() < 20 || t.back() != 'Z' || t[4] != '-' || t[7] != '-' || t[10] != 'T' ||
        t[13] != ':' || t[16] != ':') {
        return std::nullopt;
    }
    for (size_t at : {0, 5, 8, 11, 14, 17}) {
        if (!all_digits(t.substr(at, at == 0 ? 4 : 2))) {
            return std::nullopt;
        }
    }
    std::string_view frac_digits;
    if (t.size() > 20) {
        if (t[19] != '.' || t.size() == 21 || !all_digits(t.substr(20, t.size() - 21))) {
            return std::nullopt;
        }
        frac_digits = t.substr(20, t.size() - 21);
    }
    // Of the shape: from here on, the answer is the reference's.
    const int year = field(t, 0, 4);
    const int month = field(t, 5, 2);
    const int day = field(t, 8, 2);
    const int hour = field(t, 11, 2);
    const int minute = field(t, 14, 2);
    const int second = field(t, 17, 2);
    if (year < 1970 || year > 2262 || month < 1 || month > 12 || day < 1 || hour > 23 ||
        minute > 59 || second > 60) {
        return std::optional<int64_t>();
    }
    tm parts{};
    parts.tm_year = year - 1900;
    parts.tm_mon = month - 1;
    parts.tm_mday = day;
    parts.tm_hour = hour;
    parts.tm_min = minute;
    const time_t minute_start = timegm(&parts);
    tm back{};
    gmtime_r(&minute_start, &back);
    if (back.tm_year != year - 1900 || back.tm_mon != month - 1 || back.tm_mday != day) {
        return std::optional<int64_t>(); // a day the month does not have
    }
    // A leap second counts as the next second's start (POSIX time); the last whole second of
    // int64 nanoseconds is the limit (2262-04-11).
    const int64_t secs = int64_t{minute_start} + second;
    if (secs > INT64_MAX / base::ns_per_s - 1) {
        return std::optional<int64_t>();
    }
    int64_t frac = 0;
    for (size_t i = 0; i < 9; ++i) {
        frac = frac * 10 + (i < frac_digits.size() ? frac_digits[i] - '0' : 0);
    }
    return std::optional<int64_t>(secs * base::ns_per_s + frac);
}

void check_rfc3339(std::string_view text) {
    const std::optional<int64_t> got = base::parse_rfc3339(text);
    if (got) {
        check(*got >= 0);
        char out[24];
        const std::string_view formatted = base::format_rfc3339(*got, out);
        check(formatted.size() == 24);
        check(base::parse_rfc3339(formatted) == *got - *got % base::ns_per_ms);
    }
    if (const auto want = reference_rfc3339(text)) {
        check(got == *want);
    }
}

// A date-time of the reference's shape from the input's first bytes, each field ranging a
// little past its limits, so that most of them are well-formed and many are near an edge.
std::string shaped_date_time(std::string_view in) {
    if (in.size() < 9) {
        return {};
    }
    const auto b = [&](size_t i) { return static_cast<unsigned>(static_cast<uint8_t>(in[i])); };
    const unsigned year = 1965 + (b(0) << 8 | b(1)) % 300;
    char text[64];
    int n = std::snprintf(text, sizeof text, "%04u-%02u-%02uT%02u:%02u:%02u", year, b(2) % 14,
                          b(3) % 33, b(4) % 25, b(5) % 61, b(6) % 62);
    std::string out(text, static_cast<size_t>(n));
    const unsigned frac_digits = b(7) % 13;
    if (frac_digits > 0) {
        out.push_back('.');
        for (unsigned i = 0; i < frac_digits; ++i) {
            out.push_back(static_cast<char>('0' + (i + 8 < in.size() ? b(i + 8) : i) % 10));
        }
    }
    out.push_back('Z');
    return out;
}

void check_timestamp(std::string_view text) {
    const std::optional<int64_t> got = queue::parse_timestamp(text);
    std::string_view value = text;
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
    }
    const std::string_view digits = !value.empty() && value[0] == '-' ? value.substr(1) : value;
    if (!digits.empty() && digits.size() <= 18 && all_digits(digits)) {
        int64_t want = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), want);
        check(ec == std::errc() && end == value.data() + value.size());
        check(got == want);
        return;
    }
    if (got) {
        check(value.size() >= 20 && base::parse_rfc3339(value) == got);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // In its own allocation, so that ASan sees any read past the end.
    const std::vector<char> input(data, data + size);
    const std::string_view all(input.data(), input.size());
    std::string_view name = "id";
    std::string_view query = all;
    if (const size_t nl = all.find('\n'); nl != std::string_view::npos) {
        name = all.substr(0, nl);
        query = all.substr(nl + 1);
    }
    const std::vector<char> query_copy(query.begin(), query.end());
    check_query_param(std::string_view(query_copy.data(), query_copy.size()), name);

    check_rfc3339(all);
    check_timestamp(all);
    const std::string shaped = shaped_date_time(all);
    const std::vector<char> shaped_copy(shaped.begin(), shaped.end());
    const std::string_view shaped_view(shaped_copy.data(), shaped_copy.size());
    check_rfc3339(shaped_view);
    check_timestamp(shaped_view);
    return 0;
}
