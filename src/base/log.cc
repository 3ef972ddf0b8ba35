#include "portcullis/base/log.hh"

#include "portcullis/base/time.hh"

#include <atomic>
#include <cstring>
#include <unistd.h>

namespace portcullis::base {

namespace {
std::atomic<Level> min_level{Level::info};
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
        // Cut at the last complete field so that the line stays valid JSON.
        size_t comma = body.rfind(",\"");
        _out_size = comma == std::string_view::npos ? 0 : comma;
        constexpr std::string_view mark = ",\"truncated\":true";
        std::memcpy(_out + _out_size, mark.data(), mark.size());
        _out_size += mark.size();
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
