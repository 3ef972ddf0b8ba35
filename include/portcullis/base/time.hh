// Clocks. The request path never reads a clock itself: each shard reads both clocks once per
// loop iteration and passes the values down, so tests inject time by passing their own.
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string_view>

namespace portcullis::base {

constexpr int64_t ns_per_ms = 1'000'000;
constexpr int64_t ns_per_s = 1'000'000'000;

inline int64_t read_clock(clockid_t id) {
    timespec ts{};
    clock_gettime(id, &ts);
    return int64_t(ts.tv_sec) * ns_per_s + ts.tv_nsec;
}
// Wall-clock time in nanoseconds since the Unix epoch (timestamps, signature windows).
inline int64_t unix_ns() {
    return read_clock(CLOCK_REALTIME);
}
// Monotonic time in nanoseconds (deadlines, rates).
inline int64_t mono_ns() {
    return read_clock(CLOCK_MONOTONIC);
}

// Formats t as RFC 3339 UTC with milliseconds, "2026-11-22T13:18:00.123Z", into out (which must
// hold 24 characters). Returns the view of out that was written.
std::string_view format_rfc3339(int64_t unix_nanos, char (&out)[24]);

// Parses an RFC 3339 date-time ("2026-11-30T03:44:15.5Z", "2026-11-30t04:44:15+01:00"; 'T', 't'
// or a space between date and time; up to 9 fraction digits are kept, more are cut) to Unix
// nanoseconds. Years 1970 to 2262; nullopt for anything else.
std::optional<int64_t> parse_rfc3339(std::string_view text);

// Days from 1970-01-01 to y-m-d (month 1-12) in the proleptic Gregorian calendar; negative
// before 1970. No range check: the caller validates the date (days_in_month).
int64_t days_from_civil(int64_t y, int64_t m, int64_t d);
// Days in month m (1-12) of year y, leap years included.
int64_t days_in_month(int64_t y, int64_t m);

} // namespace portcullis::base
