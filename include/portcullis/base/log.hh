// Structured logs: one JSON object a line on stderr.
//
//   LogLine(Level::info, "listening").field("plane", "public").field("addr", addr).write();
//
// A LogLine is built in a fixed buffer and never allocates; lines longer than the buffer are cut
// and marked "truncated":true. Bodies and secrets are never passed to a log line: callers pass
// header values only through the redacting helpers of the module that owns them.
#pragma once

#include "portcullis/base/json.hh"

#include <cstdint>
#include <string_view>

namespace portcullis::base {

enum class Level : uint8_t { debug, info, warn, error };

std::string_view level_name(Level l);

// Lines below this level are dropped (set once at start-up from the command line).
void set_log_level(Level l);
bool log_enabled(Level l);

// At most one line per interval for one kind of event that a flood could repeat (refusals,
// closes); how many were held back goes into the next one, as "lines_held_back". The events are
// still counted in full elsewhere.
//
//   if (throttle.allow(now_mono, base::ns_per_s)) {
//       LogLine line(...);
//       if (throttle.held_back != 0) { line.field("lines_held_back", ...); throttle.held_back = 0;
//       }
//   }
struct LogThrottle {
    int64_t next_ns = 0;
    uint64_t held_back = 0;

    bool allow(int64_t now_ns, int64_t interval_ns) {
        if (now_ns < next_ns) {
            ++held_back;
            return false;
        }
        next_ns = now_ns + interval_ns;
        return true;
    }
};

class LogLine {
public:
    static constexpr size_t capacity = 4096;

    LogLine(Level level, std::string_view msg, int64_t unix_nanos);
    LogLine(Level level, std::string_view msg); // reads the clock: cold paths only

    LogLine& field(std::string_view key, std::string_view value);
    // Without this overload a string literal would pick the bool one.
    LogLine& field(std::string_view key, const char* value) {
        return field(key, std::string_view(value));
    }
    LogLine& field(std::string_view key, int64_t value);
    LogLine& field(std::string_view key, bool value);
    // A duration given in nanoseconds, written as milliseconds with three decimals ("12.345").
    LogLine& milliseconds(std::string_view key, int64_t ns);
    // Starts a nested object; close it with end_object().
    LogLine& object(std::string_view key);
    LogLine& end_object();

    // Closes the line and returns it with its trailing newline; the view lives as long as this.
    std::string_view finish();
    // finish() and write to stderr at once (blocking write: start-up, shutdown and the CLI).
    void write();

private:
    FixedBuffer<capacity - 32> _buf;
    JsonWriter<FixedBuffer<capacity - 32>> _json{_buf};
    bool _enabled;
    char _out[capacity];
    size_t _out_size = 0;
};

} // namespace portcullis::base
