// Clocks. The request path never reads a clock itself: each shard reads both clocks once per
// loop iteration and passes the values down, so tests inject time by passing their own.
#pragma once

#include <cstdint>
#include <ctime>
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

} // namespace portcullis::base
