#include "portcullis/base/log.hh"

#include "portcullis/base/time.hh"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <unistd.h>

namespace portcullis::base {

namespace {

std::atomic<Level> min_level{Level::info};

// Where an overflowed line is cut: at the last comma between members, and how many objects
// besides the line's own are open there (they get closed).
struct Cut {
    size_t at = 0;
    size_t open = 0;
};

// A comma outside every string follows a complete value: the writer puts one before each key.
// Commas inside strings (a header value "a,") and escaped quotes are skipped by tracking the
// strings. A line holds objects only (LogLine has no arrays). The cut is the last such comma
// whose open objects can be closed in `room` bytes, at worst the last one of the top level.
// Without one (never: the constructor writes three fields), all but the opening brace is cut.
Cut last_member_end(std::string_view json, size_t room) {
    Cut last;
    size_t depth = 0;
    bool in_string = false;
    bool escaped = false;
    for (size_t i = 0; i < json.size(); ++i) {
        const char c = json[i];
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{') {
            ++depth;
        } else if (c == '}' && depth > 0) {
            --depth;
        } else if (c == ',' && depth >= 1 && depth - 1 <= room) {
            last = {i, depth - 1};
        }
    }
    if (last.at == 0) {
        return {json.empty() ? size_t{0} : size_t{1}, 0};
    }
    return last;
}

} // namespace

std::string_view level_name(Level l) {
    switch (l) {
    case Level::debug:
        return "debug";
    case Level::info:
        return "info";
    case Level::warn:
        return "warn";
    case Level::error:
        return "error";
    }
    return "info";
}

void set_log_level(Level l) {
    min_level.store(l, std::memory_order_relaxed);
}
bool log_enabled(Level l) {
    return l >= min_level.load(std::memory_order_relaxed);
}

LogLine::LogLine(Level level, std::string_view msg, int64_t unix_nanos)
    : _enabled(log_enabled(level)) {
    char ts[24];
    _json.begin_object()
        .key("ts")
        .string(format_rfc3339(unix_nanos, ts))
        .key("level")
        .string(level_name(level))
        .key("msg")
        .string(msg);
}

LogLine::LogLine(Level level, std::string_view msg) : LogLine(level, msg, unix_ns()) {}

LogLine& LogLine::field(std::string_view key, std::string_view value) {
    _json.key(key).string(value);
    return *this;
}

LogLine& LogLine::field(std::string_view key, int64_t value) {
    _json.key(key).number(value);
    return *this;
}

LogLine& LogLine::milliseconds(std::string_view key, int64_t ns) {
    char text[32];
    const int n =
        std::snprintf(text, sizeof text, "%lld.%03lld", static_cast<long long>(ns / 1'000'000),
                      static_cast<long long>((ns % 1'000'000) / 1'000));
    _json.key(key).raw(std::string_view(text, n > 0 ? static_cast<size_t>(n) : 0));
    return *this;
}

LogLine& LogLine::field(std::string_view key, bool value) {
    _json.key(key).boolean(value);
    return *this;
}

LogLine& LogLine::object(std::string_view key) {
    _json.key(key).begin_object();
    return *this;
}

LogLine& LogLine::end_object() {
    _json.end_object();
    return *this;
}

std::string_view LogLine::finish() {
    if (_out_size != 0) {
        return {_out, _out_size};
    }
    std::string_view body = _buf.view();
    std::memcpy(_out, body.data(), body.size());
    _out_size = body.size();
    if (_buf.overflowed()) {
        // Cut at the last complete member, close the objects it is in, and say so at the top
        // level, so that the line stays one valid JSON object.
        constexpr std::string_view mark = ",\"truncated\":true";
        const Cut cut = last_member_end(body, capacity - body.size() - mark.size() - 2);
        _out_size = cut.at;
        std::memset(_out + _out_size, '}', cut.open);
        _out_size += cut.open;
        // No comma when nothing is left but the opening brace.
        const std::string_view member = cut.at <= 1 ? mark.substr(1) : mark;
        std::memcpy(_out + _out_size, member.data(), member.size());
        _out_size += member.size();
    }
    _out[_out_size++] = '}';
    _out[_out_size++] = '\n';
    return {_out, _out_size};
}

void LogLine::write() {
    if (!_enabled) {
        return;
    }
    std::string_view line = finish();
    while (!line.empty()) {
        ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
        if (n <= 0) {
            return;
        }
        line.remove_prefix(static_cast<size_t>(n));
    }
}

} // namespace portcullis::base
