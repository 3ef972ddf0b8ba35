#include "portcullis/deliver/resp.hh"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>

namespace portcullis::deliver::resp {

namespace {

size_t decimal_digits(uint64_t n) {
    size_t d = 1;
    while (n >= 10) {
        n /= 10;
        ++d;
    }
    return d;
}

char* write_header(char* out, char type, uint64_t n) {
    *out++ = type;
    out = std::to_chars(out, out + 20, n).ptr;
    *out++ = '\r';
    *out++ = '\n';
    return out;
}

// One value's own bytes: a line, a line and a bulk's bytes, or an aggregate's line (its values
// follow).
struct Head {
    Type type = Type::null;
    std::string_view text;
    int64_t integer = 0;
    uint64_t values = 0; // aggregates: values that follow
    size_t end = 0;      // after this value's own bytes
    size_t needed = 0;   // need_more: at least this many bytes of input
};

enum class HeadStatus : uint8_t { ok, need_more, error };

enum class SizeStatus : uint8_t { ok, bad, too_large };

// A length or count: decimal digits, no sign, no leading zero, at most `max`.
SizeStatus parse_size(std::string_view s, uint64_t max, uint64_t& out) {
    if (s.empty() || (s.size() > 1 && s[0] == '0')) {
        return SizeStatus::bad;
    }
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return SizeStatus::bad;
        }
        // Past the limit v stays there; the rest is still checked for digits.
        if (v <= max && (__builtin_mul_overflow(v, 10, &v) ||
                         __builtin_add_overflow(v, uint64_t(c - '0'), &v))) {
            v = std::numeric_limits<uint64_t>::max();
        }
    }
    if (v > max) {
        return SizeStatus::too_large;
    }
    out = v;
    return SizeStatus::ok;
}

bool parse_integer(std::string_view s, int64_t& out) {
    if (s.empty() || s.size() > 20) {
        return false;
    }
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && end == s.data() + s.size();
}

bool all_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

constexpr Limits walk_limits{.max_depth = Parser::depth_capacity,
                             .max_count = std::numeric_limits<uint32_t>::max(),
                             .max_bulk = std::numeric_limits<uint64_t>::max() / 2,
                             .max_line = std::numeric_limits<uint32_t>::max(),
                             .max_frame = 0};

HeadStatus read_head(std::string_view in, size_t pos, const Limits& limits, Head& h,
                     std::string_view& detail) {
    if (pos >= in.size()) {
        h.needed = pos + 1;
        return HeadStatus::need_more;
    }
    const char type = in[pos];
    if (std::string_view("+-:$*_#,(!=%~>|").find(type) == std::string_view::npos) {
        detail = "unknown type byte"; // at once: garbage is not waited on until a CR comes
        return HeadStatus::error;
    }
    // The line: from pos + 1 to CR LF, at most max_line bytes.
    const size_t from = pos + 1;
    const size_t scan = std::min<uint64_t>(in.size() - from, uint64_t(limits.max_line) + 1);
    const void* cr = scan > 0 ? std::memchr(in.data() + from, '\r', scan) : nullptr;
    if (cr == nullptr) {
        // The same error whatever the bytes' split: a LF seen is one, whether or not the line
        // is already over the limit.
        if (scan > 0 && std::memchr(in.data() + from, '\n', scan) != nullptr) {
            detail = "LF without CR";
            return HeadStatus::error;
        }
        if (scan > limits.max_line) {
            detail = "line too long";
            return HeadStatus::error;
        }
        h.needed = in.size() + 1;
        return HeadStatus::need_more;
    }
    const size_t at = size_t(static_cast<const char*>(cr) - in.data());
    const std::string_view line = in.substr(from, at - from);
    if (std::memchr(line.data(), '\n', line.size()) != nullptr) {
        detail = "LF without CR";
        return HeadStatus::error;
    }
    if (at + 1 >= in.size()) {
        h.needed = at + 2;
        return HeadStatus::need_more;
    }
    if (in[at + 1] != '\n') {
        detail = "CR without LF";
        return HeadStatus::error;
    }
    const size_t after = at + 2;
    h.end = after;
    h.text = {};
    h.integer = 0;
    h.values = 0;
    switch (type) {
    case '+':
        h.type = Type::simple;
        h.text = line;
        return HeadStatus::ok;
    case '-':
        h.type = Type::error;
        h.text = line;
        return HeadStatus::ok;
    case ':':
        h.type = Type::integer;
        if (!parse_integer(line, h.integer)) {
            detail = "bad integer";
            return HeadStatus::error;
        }
        return HeadStatus::ok;
    case '#':
        h.type = Type::boolean;
        if (line != "t" && line != "f") {
            detail = "bad boolean";
            return HeadStatus::error;
        }
        h.integer = line == "t" ? 1 : 0;
        return HeadStatus::ok;
    case ',':
        h.type = Type::number;
        h.text = line;
        if (line.empty()) {
            detail = "empty double";
            return HeadStatus::error;
        }
        return HeadStatus::ok;
    case '(':
        h.type = Type::number;
        h.text = line;
        if (!all_digits(line[0] == '-' ? line.substr(1) : line)) {
            detail = "bad big number";
            return HeadStatus::error;
        }
        return HeadStatus::ok;
    case '_':
        h.type = Type::null;
        if (!line.empty()) {
            detail = "bad null";
            return HeadStatus::error;
        }
        return HeadStatus::ok;
    case '$':
    case '!':
    case '=': {
        if (type == '$' && line == "-1") {
            h.type = Type::null;
            return HeadStatus::ok;
        }
        uint64_t len = 0;
        if (const SizeStatus st = parse_size(line, limits.max_bulk, len); st != SizeStatus::ok) {
            detail = st == SizeStatus::too_large ? "bulk string too large" : "bad bulk length";
            return HeadStatus::error;
        }
        h.type = type == '!' ? Type::error : Type::bulk;
        if (in.size() - after < len + 2) {
            h.needed = after + len + 2;
            return HeadStatus::need_more;
        }
        if (in[after + len] != '\r' || in[after + len + 1] != '\n') {
            detail = "bulk string not followed by CRLF";
            return HeadStatus::error;
        }
        h.text = in.substr(after, len);
        h.end = after + len + 2;
        return HeadStatus::ok;
    }
    case '*':
    case '%':
    case '~':
    case '>':
    case '|': {
        if (type == '*' && line == "-1") {
            h.type = Type::null;
            return HeadStatus::ok;
        }
        uint64_t n = 0;
        if (const SizeStatus st = parse_size(line, limits.max_count, n); st != SizeStatus::ok) {
            detail = st == SizeStatus::too_large ? "aggregate too large" : "bad aggregate count";
            return HeadStatus::error;
        }
        switch (type) {
        case '*':
            h.type = Type::array;
            break;
        case '%':
            h.type = Type::map;
            break;
        case '~':
            h.type = Type::set;
            break;
        case '>':
            h.type = Type::push;
            break;
        default:
            h.type = Type::attribute;
            break;
        }
        h.values = (type == '%' || type == '|') ? n * 2 : n;
        return HeadStatus::ok;
    }
    default:
        detail = "unknown type byte";
        return HeadStatus::error;
    }
}

bool aggregate(Type t) {
    return t == Type::array || t == Type::map || t == Type::set || t == Type::push ||
           t == Type::attribute;
}

void fill(const Head& h, Value& out) {
    out.type = h.type;
    out.text = h.text;
    out.integer = h.integer;
    out.count = h.values;
}

// The end of the checked value at the start of in.
size_t skip(std::string_view in) {
    size_t pos = 0;
    uint64_t left = 1;
    std::string_view detail;
    while (left > 0) {
        Head h;
        if (read_head(in, pos, walk_limits, h, detail) != HeadStatus::ok) {
            return in.size(); // cannot happen for a checked frame
        }
        pos = h.end;
        --left;
        if (aggregate(h.type)) {
            left += h.values;
        }
    }
    return pos;
}

} // namespace

size_t command_size(std::span<const std::string_view> args) {
    size_t n = 3 + decimal_digits(args.size());
    for (std::string_view a : args) {
        n += 5 + decimal_digits(a.size()) + a.size();
    }
    return n;
}

char* write_command(char* out, std::span<const std::string_view> args) {
    out = write_header(out, '*', args.size());
    for (std::string_view a : args) {
        out = write_header(out, '$', a.size());
        if (!a.empty()) {
            std::memcpy(out, a.data(), a.size());
        }
        out += a.size();
        *out++ = '\r';
        *out++ = '\n';
    }
    return out;
}

std::string_view type_name(Type t) {
    switch (t) {
    case Type::simple:
        return "simple string";
    case Type::error:
        return "error";
    case Type::integer:
        return "integer";
    case Type::bulk:
        return "bulk string";
    case Type::null:
        return "null";
    case Type::array:
        return "array";
    case Type::boolean:
        return "boolean";
    case Type::number:
        return "number";
    case Type::map:
        return "map";
    case Type::set:
        return "set";
    case Type::push:
        return "push";
    case Type::attribute:
        return "attribute";
    }
    return "unknown";
}

void Parser::reset() {
    _failed = false;
    _error = {};
    _pos = 0;
    _depth = 0;
}

Step Parser::parse(std::string_view in, Value& out) {
    if (_failed) {
        return {Status::error, 0, _error};
    }
    const uint32_t max_depth = std::min(_limits.max_depth, depth_capacity);
    auto fail = [&](std::string_view why) {
        _failed = true;
        _error = why;
        return Step{Status::error, 0, why};
    };
    // Past max_frame the bytes are not looked at: an error they hold would be found in one
    // split of the input and not in another. What needs them is "reply too large".
    const bool capped = _limits.max_frame != 0 && in.size() > _limits.max_frame;
    const std::string_view view = capped ? in.substr(0, _limits.max_frame) : in;
    for (;;) {
        Head h;
        std::string_view detail;
        switch (read_head(view, _pos, _limits, h, detail)) {
        case HeadStatus::error:
            return fail(detail);
        case HeadStatus::need_more:
            if (capped || (_limits.max_frame != 0 && h.needed > _limits.max_frame)) {
                return fail("reply too large");
            }
            return {Status::need_more, 0, {}};
        case HeadStatus::ok:
            break;
        }
        _pos = h.end;
        if (aggregate(h.type) && h.values > 0) {
            if (_depth >= max_depth) {
                return fail("nesting too deep");
            }
            _left[_depth++] = h.values;
            continue;
        }
        // A value is complete: so is every aggregate it was the last value of.
        while (_depth > 0 && --_left[_depth - 1] == 0) {
            --_depth;
        }
        if (_depth > 0) {
            continue;
        }
        const size_t frame = _pos;
        Head top;
        read_head(in, 0, walk_limits, top, detail);
        fill(top, out);
        out.raw = in.substr(0, frame);
        _pos = 0;
        return {Status::done, frame, {}};
    }
}

Elements::Elements(const Value& v) {
    if (!v.is_aggregate()) {
        return;
    }
    Head h;
    std::string_view detail;
    if (read_head(v.raw, 0, walk_limits, h, detail) != HeadStatus::ok) {
        return;
    }
    _rest = v.raw.substr(h.end);
    _left = h.values;
}

bool Elements::next(Value& out) {
    if (_left == 0) {
        return false;
    }
    Head h;
    std::string_view detail;
    if (read_head(_rest, 0, walk_limits, h, detail) != HeadStatus::ok) {
        _left = 0;
        return false;
    }
    const size_t end = aggregate(h.type) ? skip(_rest) : h.end;
    fill(h, out);
    out.raw = _rest.substr(0, end);
    _rest.remove_prefix(end);
    --_left;
    return true;
}

} // namespace portcullis::deliver::resp
