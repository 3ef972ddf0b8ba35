#include "portcullis/base/time.hh"

#include <cstdio>

namespace portcullis::base {

std::string_view format_rfc3339(int64_t unix_nanos, char (&out)[24]) {
    time_t secs = static_cast<time_t>(unix_nanos / ns_per_s);
    int ms = static_cast<int>(unix_nanos % ns_per_s / ns_per_ms);
    if (unix_nanos < 0) {
        secs = 0;
        ms = 0;
    }
    tm parts{};
    gmtime_r(&secs, &parts);
    // 24 bytes hold the 24 characters written; snprintf needs room for its NUL, so format into
    // a larger scratch buffer and copy.
    char scratch[32];
    int n = std::snprintf(scratch, sizeof scratch, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                          parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour,
                          parts.tm_min, parts.tm_sec, ms);
    size_t len = n > 0 && static_cast<size_t>(n) <= sizeof out ? static_cast<size_t>(n) : 0;
    for (size_t i = 0; i < len; ++i) {
        out[i] = scratch[i];
    }
    return {out, len};
}

} // namespace portcullis::base
