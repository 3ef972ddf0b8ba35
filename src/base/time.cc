#include "portcullis/base/time.hh"

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace portcullis::base {

std::string_view format_rfc3339(int64_t unix_nanos, char (&out)[24]) {
    if (unix_nanos < 0) {
        unix_nanos = 0;
    }
    const time_t secs = static_cast<time_t>(unix_nanos / ns_per_s);
    const int ms = static_cast<int>(unix_nanos % ns_per_s / ns_per_ms);
    // The date and time of the last second formatted, per thread: lists of jobs received close
    // together format each second once instead of through gmtime_r and snprintf every time.
    thread_local time_t cached_secs = -1;
    thread_local char cached[20];
    if (secs != cached_secs) {
        tm parts{};
        gmtime_r(&secs, &parts);
        char scratch[32];
        int n = std::snprintf(scratch, sizeof scratch, "%04d-%02d-%02dT%02d:%02d:%02d",
                              parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour,
                              parts.tm_min, parts.tm_sec);
        if (n != 19) {
            return {out, 0}; // a year past 9999: not representable here
        }
        std::memcpy(cached, scratch, 19);
        cached_secs = secs;
    }
    std::memcpy(out, cached, 19);
    out[19] = '.';
    out[20] = static_cast<char>('0' + ms / 100);
    out[21] = static_cast<char>('0' + ms / 10 % 10);
    out[22] = static_cast<char>('0' + ms % 10);
    out[23] = 'Z';
    return {out, 24};
}

namespace {

// Reads n decimal digits at text[at...]; -1 if any is not a digit or text is too short.
int64_t digits(std::string_view text, size_t at, size_t n) {
    if (at + n > text.size()) {
        return -1;
    }
    int64_t v = 0;
    for (size_t i = at; i < at + n; ++i) {
        if (text[i] < '0' || text[i] > '9') {
            return -1;
        }
        v = v * 10 + (text[i] - '0');
    }
    return v;
}

} // namespace

// H. Hinnant's algorithm.
int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2 ? 1 : 0;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int64_t days_in_month(int64_t y, int64_t m) {
    constexpr int64_t days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

std::optional<int64_t> parse_rfc3339(std::string_view t) {
    const int64_t y = digits(t, 0, 4);
    const int64_t mo = digits(t, 5, 2);
    const int64_t d = digits(t, 8, 2);
    const int64_t h = digits(t, 11, 2);
    const int64_t mi = digits(t, 14, 2);
    const int64_t s = digits(t, 17, 2);
    if (t.size() < 20 || t[4] != '-' || t[7] != '-' ||
        (t[10] != 'T' && t[10] != 't' && t[10] != ' ') || t[13] != ':' || t[16] != ':' ||
        y < 1970 || y > 2262 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h < 0 ||
        h > 23 || mi < 0 || mi > 59 || s < 0 || s > 60) {
        return std::nullopt;
    }
    size_t at = 19;
    int64_t frac = 0;
    if (t[at] == '.') {
        ++at;
        size_t n = 0;
        while (at < t.size() && t[at] >= '0' && t[at] <= '9') {
            if (n < 9) {
                frac = frac * 10 + (t[at] - '0');
            }
            ++n;
            ++at;
        }
        if (n == 0) {
            return std::nullopt;
        }
        for (; n < 9; ++n) {
            frac *= 10;
        }
    }
    int64_t offset_s = 0;
    if (at < t.size() && (t[at] == 'Z' || t[at] == 'z')) {
        ++at;
    } else if (at < t.size() && (t[at] == '+' || t[at] == '-')) {
        const int64_t oh = digits(t, at + 1, 2);
        const int64_t om = digits(t, at + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59 || at + 3 >= t.size() || t[at + 3] != ':') {
            return std::nullopt;
        }
        offset_s = (oh * 3600 + om * 60) * (t[at] == '+' ? 1 : -1);
        at += 6;
    } else {
        return std::nullopt;
    }
    if (at != t.size()) {
        return std::nullopt;
    }
    // A leap second (:60) counts as the next second's start, as POSIX time does.
    const int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset_s;
    if (secs < 0 || secs > INT64_MAX / ns_per_s - 1) {
        return std::nullopt;
    }
    return secs * ns_per_s + frac;
}

} // namespace portcullis::base
