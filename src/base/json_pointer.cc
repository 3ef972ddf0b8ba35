#include "portcullis/base/json_pointer.hh"

#include "portcullis/base/encoding.hh"
#include "portcullis/base/json.hh"
#include "portcullis/base/utf8.hh"

#include <array>
#include <cstring>

namespace portcullis::base {

namespace {

// A token that names no array element. No document holds that many elements, so the element
// counter never reaches it.
constexpr uint64_t not_an_index = UINT64_MAX;

// The pointer cut into its tokens, which keep their "~0" and "~1" escapes: they are compared
// with member names byte by byte as they are decoded, so nothing is copied.
struct PointerPath {
    std::array<std::string_view, json_max_depth> tokens;
    std::array<uint64_t, json_max_depth> indexes; // the array element a token names
    uint64_t escaped = 0;                         // bit k: tokens[k] holds a '~'
    size_t size = 0;
};

uint64_t array_index(std::string_view token) {
    if (token.empty() || (token[0] == '0' && token.size() > 1)) {
        return not_an_index;
    }
    uint64_t v = 0;
    for (char c : token) {
        if (c < '0' || c > '9') {
            return not_an_index;
        }
        const auto d = static_cast<uint64_t>(c - '0');
        if (v > (not_an_index - 1 - d) / 10) {
            return not_an_index;
        }
        v = v * 10 + d;
    }
    return v;
}

bool split_pointer(std::string_view pointer, PointerPath& path) {
    if (pointer.empty()) {
        return true;
    }
    if (pointer[0] != '/' || !is_utf8(pointer)) {
        return false;
    }
    size_t begin = 1;
    for (;;) {
        if (path.size == json_max_depth) {
            return false;
        }
        size_t end = pointer.find('/', begin);
        if (end == std::string_view::npos) {
            end = pointer.size();
        }
        const std::string_view token = pointer.substr(begin, end - begin);
        for (size_t i = 0; i < token.size(); ++i) {
            if (token[i] == '~') {
                if (i + 1 == token.size() || (token[i + 1] != '0' && token[i + 1] != '1')) {
                    return false;
                }
                path.escaped |= uint64_t{1} << path.size;
                ++i;
            }
        }
        path.tokens[path.size] = token;
        path.indexes[path.size] = array_index(token);
        ++path.size;
        if (end == pointer.size()) {
            return true;
        }
        begin = end + 1;
    }
}

enum StringByte : uint8_t { plain, quote, backslash, control, non_ascii };

constexpr std::array<uint8_t, 256> make_string_bytes() {
    std::array<uint8_t, 256> t{};
    for (size_t c = 0; c < 256; ++c) {
        t[c] = c < 0x20 ? control : c >= 0x80 ? non_ascii : plain;
    }
    t['"'] = quote;
    t['\\'] = backslash;
    return t;
}

constexpr auto string_bytes = make_string_bytes();

bool is_high_surrogate(uint32_t u) {
    return u >= 0xd800 && u < 0xdc00;
}
bool is_low_surrogate(uint32_t u) {
    return u >= 0xdc00 && u < 0xe000;
}

// Reads the code unit of a "\uXXXX" at p, if the six bytes are there and make one.
bool read_u_escape(const char* p, const char* end, uint32_t& unit) {
    if (end - p < 6 || p[0] != '\\' || p[1] != 'u') {
        return false;
    }
    std::array<uint8_t, 2> bytes;
    if (!hex_decode(std::string_view(p + 2, 4), bytes)) {
        return false;
    }
    unit = uint32_t(bytes[0]) << 8 | bytes[1];
    return true;
}

// Precondition: p < end and *p == '\\'. Advances p past the escape; a surrogate must be half of
// a pair, the high half first, so that every accepted string decodes to valid UTF-8.
bool scan_escape(const char*& p, const char* end) {
    if (end - p < 2) {
        return false;
    }
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        p += 2;
        return true;
    case 'u': {
        uint32_t unit = 0;
        if (!read_u_escape(p, end, unit) || is_low_surrogate(unit)) {
            return false;
        }
        if (is_high_surrogate(unit)) {
            uint32_t low = 0;
            if (!read_u_escape(p + 6, end, low) || !is_low_surrogate(low)) {
                return false;
            }
            p += 6;
        }
        p += 6;
        return true;
    }
    default:
        return false;
    }
}

// True when none of the 8 bytes at p is a quote, a backslash, a control character or part of a
// multi-byte character, tested all at once (the "has zero byte" and "has less than" tricks of
// Bit Twiddling Hacks): the runs of plain text in strings are most of a webhook body.
bool all_plain(const char* p) {
    constexpr uint64_t ones = 0x0101010101010101;
    constexpr uint64_t highs = 0x8080808080808080;
    uint64_t x = 0;
    std::memcpy(&x, p, 8);
    const uint64_t quotes = x ^ (ones * '"');
    const uint64_t backslashes = x ^ (ones * '\\');
    const uint64_t special = ((quotes - ones) & ~quotes) | ((backslashes - ones) & ~backslashes) |
                             ((x - ones * 0x20) & ~x) | x;
    return (special & highs) == 0;
}

// Precondition: p < end and *p == '"'. Advances p past the closing quote and tells whether the
// string holds an escape. On failure p is at the byte that is wrong, or at end.
bool scan_string(const char*& p, const char* end, bool& escaped) {
    ++p;
    for (;;) {
        while (end - p >= 8 && all_plain(p)) {
            p += 8;
        }
        while (p != end && string_bytes[static_cast<uint8_t>(*p)] == plain) {
            ++p;
        }
        if (p == end) {
            return false;
        }
        switch (string_bytes[static_cast<uint8_t>(*p)]) {
        case quote:
            ++p;
            return true;
        case backslash:
            escaped = true;
            if (!scan_escape(p, end)) {
                return false;
            }
            break;
        case non_ascii: {
            const size_t n = utf8_sequence_length(std::string_view(p, end - p), 0);
            if (n == 0) {
                return false;
            }
            p += n;
            break;
        }
        default: // a raw control character
            return false;
        }
    }
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

bool scan_digits(const char*& p, const char* end) {
    const char* start = p;
    while (p != end && is_digit(*p)) {
        ++p;
    }
    return p != start;
}

// Precondition: p < end. RFC 8259 section 6: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool scan_number(const char*& p, const char* end) {
    if (*p == '-') {
        ++p;
    }
    if (p == end) {
        return false;
    }
    if (*p == '0') {
        ++p;
    } else if (!scan_digits(p, end)) {
        return false;
    }
    if (p != end && *p == '.') {
        ++p;
        if (!scan_digits(p, end)) {
            return false;
        }
    }
    if (p != end && (*p == 'e' || *p == 'E')) {
        ++p;
        if (p != end && (*p == '+' || *p == '-')) {
            ++p;
        }
        if (!scan_digits(p, end)) {
            return false;
        }
    }
    return true;
}

bool scan_literal(const char*& p, const char* end, std::string_view word) {
    if (static_cast<size_t>(end - p) < word.size() ||
        std::memcmp(p, word.data(), word.size()) != 0) {
        return false;
    }
    p += word.size();
    return true;
}

size_t encode_utf8(uint32_t cp, char* out) {
    if (cp < 0x80) {
        out[0] = static_cast<char>(cp);
        return 1;
    }
    if (cp < 0x800) {
        out[0] = static_cast<char>(0xc0 | cp >> 6);
        out[1] = static_cast<char>(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = static_cast<char>(0xe0 | cp >> 12);
        out[1] = static_cast<char>(0x80 | (cp >> 6 & 0x3f));
        out[2] = static_cast<char>(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = static_cast<char>(0xf0 | cp >> 18);
    out[1] = static_cast<char>(0x80 | (cp >> 12 & 0x3f));
    out[2] = static_cast<char>(0x80 | (cp >> 6 & 0x3f));
    out[3] = static_cast<char>(0x80 | (cp & 0x3f));
    return 4;
}

// The bytes that the body of a string (between its quotes) decodes to, one at a time.
// Precondition: scan_string accepted the string, so every escape is complete and well-formed.
class DecodedString {
public:
    DecodedString(const char* p, const char* end) : _p(p), _end(end) {}

    bool done() const { return _next == _size && _p == _end; }

    // Precondition: !done().
    char next() {
        if (_next < _size) {
            return _buf[_next++];
        }
        if (*_p != '\\') {
            return *_p++;
        }
        _size = decode_escape();
        _next = 1;
        return _buf[0];
    }

private:
    uint8_t decode_escape() {
        const char c = _p[1];
        _p += 2;
        switch (c) {
        case 'b':
            _buf[0] = '\b';
            return 1;
        case 'f':
            _buf[0] = '\f';
            return 1;
        case 'n':
            _buf[0] = '\n';
            return 1;
        case 'r':
            _buf[0] = '\r';
            return 1;
        case 't':
            _buf[0] = '\t';
            return 1;
        case 'u':
            break;
        default: // '"', '\\', '/'
            _buf[0] = c;
            return 1;
        }
        uint32_t cp = 0;
        read_u_escape(_p - 2, _end, cp);
        _p += 4;
        if (is_high_surrogate(cp)) {
            uint32_t low = 0;
            read_u_escape(_p, _end, low);
            _p += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
        }
        return static_cast<uint8_t>(encode_utf8(cp, _buf.data()));
    }

    const char* _p;
    const char* _end;
    std::array<char, 4> _buf{};
    uint8_t _size = 0;
    uint8_t _next = 0;
};

// The bytes a pointer token stands for. Precondition: split_pointer accepted it.
class DecodedToken {
public:
    explicit DecodedToken(std::string_view token)
        : _p(token.data()), _end(token.data() + token.size()) {}

    bool done() const { return _p == _end; }

    char next() {
        const char c = *_p++;
        if (c != '~') {
            return c;
        }
        return *_p++ == '0' ? '~' : '/';
    }

private:
    const char* _p;
    const char* _end;
};

class PlainBytes {
public:
    explicit PlainBytes(std::string_view s) : _p(s.data()), _end(s.data() + s.size()) {}
    bool done() const { return _p == _end; }
    char next() { return *_p++; }

private:
    const char* _p;
    const char* _end;
};

template <typename A, typename B>
bool same_bytes(A a, B b) {
    while (!a.done() && !b.done()) {
        if (a.next() != b.next()) {
            return false;
        }
    }
    return a.done() && b.done();
}

// Checks that raw is exactly one valid string token, quotes included.
bool valid_string_token(std::string_view raw, bool& escaped) {
    if (raw.empty() || raw[0] != '"') {
        return false;
    }
    const char* p = raw.data();
    const char* end = raw.data() + raw.size();
    return scan_string(p, end, escaped) && p == end;
}

JsonType type_of(char first) {
    switch (first) {
    case '{':
        return JsonType::object;
    case '[':
        return JsonType::array;
    case '"':
        return JsonType::string;
    case 't':
    case 'f':
        return JsonType::boolean;
    case 'n':
        return JsonType::null;
    default:
        return JsonType::number;
    }
}

// One pass over the document that validates all of it and notes where the pointer's value
// starts and ends. The open containers are bits in fixed words, never frames on the call stack.
// The containers on the pointer's path are always the outermost _path_depth of the open ones:
// a container is on the path only if its parent is and it is the member or element the parent's
// token names.
class Finder {
public:
    Finder(std::string_view doc, const PointerPath& path)
        : _doc(doc), _p(doc.data()), _end(doc.data() + doc.size()), _path(path) {}

    JsonLookup run();

private:
    JsonLookup fail(JsonStatus s) const { return {s, {}, static_cast<size_t>(_p - _doc.data())}; }

    void skip_space() {
        while (_p != _end && (*_p == ' ' || *_p == '\n' || *_p == '\r' || *_p == '\t')) {
            ++_p;
        }
    }

    bool in_object() const { return (_objects >> (_depth - 1) & 1) != 0; }
    bool scalar();
    bool member(bool& on_path);
    void element(bool& on_path);
    void close();
    bool name_matches(const char* body, const char* body_end, bool escaped) const;

    std::string_view _doc;
    const char* _p;
    const char* _end;
    const PointerPath& _path;
    size_t _depth = 0;      // open objects and arrays
    size_t _path_depth = 0; // how many of them, from the outermost, are on the pointer's path
    uint64_t _objects = 0;  // bit d - 1: the container at depth d is an object, not an array
    uint64_t _matched = 0;  // bit d - 1: the path container at depth d has met its token
    uint64_t _element = 0;  // the next element's index in the innermost path array
    const char* _target = nullptr;
    const char* _target_end = nullptr;
    size_t _target_depth = 0;
};

JsonLookup Finder::run() {
    skip_space();
    bool on_path = true; // the value about to start is the one the first _depth tokens name
    for (;;) {
        if (_p == _end) {
            return fail(JsonStatus::malformed);
        }
        const bool is_target = on_path && _depth == _path.size;
        const bool descends = on_path && !is_target;
        on_path = false;
        if (is_target) {
            _target = _p;
            _target_depth = _depth;
        }
        const char first = *_p;
        if (first == '{' || first == '[') {
            if (_depth == json_max_depth) {
                return fail(JsonStatus::too_deep);
            }
            const uint64_t bit = uint64_t{1} << _depth;
            _objects = first == '{' ? _objects | bit : _objects & ~bit;
            ++_depth;
            if (descends) {
                _path_depth = _depth;
                _element = 0;
            }
            ++_p;
            skip_space();
            if (_p != _end && *_p == (first == '{' ? '}' : ']')) {
                ++_p;
                close();
            } else if (first == '{') {
                if (!member(on_path)) {
                    return fail(JsonStatus::malformed);
                }
                continue;
            } else {
                element(on_path);
                continue;
            }
        } else {
            if (!scalar()) {
                return fail(JsonStatus::malformed);
            }
            if (is_target) {
                _target_end = _p;
            }
        }
        // A value ended: close what it ended, up to the next value or the end of the document.
        for (;;) {
            skip_space();
            if (_depth == 0) {
                if (_p != _end) {
                    return fail(JsonStatus::malformed);
                }
                if (_target == nullptr) {
                    return {JsonStatus::not_found, {}, 0};
                }
                return {JsonStatus::found,
                        {type_of(*_target),
                         std::string_view(_target, static_cast<size_t>(_target_end - _target))},
                        0};
            }
            if (_p == _end) {
                return fail(JsonStatus::malformed);
            }
            const bool object = in_object();
            if (*_p == ',') {
                ++_p;
                skip_space();
                if (object) {
                    if (!member(on_path)) {
                        return fail(JsonStatus::malformed);
                    }
                } else {
                    element(on_path);
                }
                break;
            }
            if (*_p != (object ? '}' : ']')) {
                return fail(JsonStatus::malformed);
            }
            ++_p;
            close();
        }
    }
}

// Precondition: _p < _end.
bool Finder::scalar() {
    switch (*_p) {
    case '"': {
        bool escaped = false;
        return scan_string(_p, _end, escaped);
    }
    case 't':
        return scan_literal(_p, _end, "true");
    case 'f':
        return scan_literal(_p, _end, "false");
    case 'n':
        return scan_literal(_p, _end, "null");
    default:
        return scan_number(_p, _end);
    }
}

// Reads `"name" :` and the space after it; the member's value comes next.
bool Finder::member(bool& on_path) {
    if (_p == _end || *_p != '"') {
        return false;
    }
    const char* name = _p;
    bool escaped = false;
    if (!scan_string(_p, _end, escaped)) {
        return false;
    }
    if (_path_depth == _depth && name_matches(name + 1, _p - 1, escaped)) {
        const uint64_t bit = uint64_t{1} << (_depth - 1);
        if ((_matched & bit) != 0) {
            _p = name; // the second copy of the member the pointer names
            return false;
        }
        _matched |= bit;
        on_path = true;
    }
    skip_space();
    if (_p == _end || *_p != ':') {
        return false;
    }
    ++_p;
    skip_space();
    return true;
}

// Counts the element about to start, in the innermost path array until it meets its index.
void Finder::element(bool& on_path) {
    const uint64_t bit = uint64_t{1} << (_depth - 1);
    if (_path_depth != _depth || (_matched & bit) != 0) {
        return;
    }
    if (_element == _path.indexes[_depth - 1]) {
        _matched |= bit;
        on_path = true;
    }
    ++_element;
}

// Called after the closing bracket of the innermost container.
void Finder::close() {
    if (_path_depth == _depth) {
        --_path_depth;
        _matched &= ~(uint64_t{1} << (_depth - 1));
    }
    --_depth;
    if (_target != nullptr && _target_end == nullptr && _depth == _target_depth) {
        _target_end = _p;
    }
}

bool Finder::name_matches(const char* body, const char* body_end, bool escaped) const {
    const size_t k = _depth - 1;
    const std::string_view token = _path.tokens[k];
    if (!escaped && (_path.escaped >> k & 1) == 0) {
        return std::string_view(body, static_cast<size_t>(body_end - body)) == token;
    }
    return same_bytes(DecodedString(body, body_end), DecodedToken(token));
}

} // namespace

JsonLookup json_find(std::string_view doc, std::string_view pointer) {
    PointerPath path;
    if (!split_pointer(pointer, path)) {
        return {JsonStatus::bad_pointer, {}, 0};
    }
    return Finder(doc, path).run();
}

bool json_pointer_valid(std::string_view pointer) {
    PointerPath path;
    return split_pointer(pointer, path);
}

std::optional<size_t> json_unescape(std::string_view raw_string, std::span<char> out) {
    bool escaped = false;
    if (!valid_string_token(raw_string, escaped)) {
        return std::nullopt;
    }
    const std::string_view body = raw_string.substr(1, raw_string.size() - 2);
    if (!escaped) {
        if (body.size() > out.size()) {
            return std::nullopt;
        }
        if (body.empty()) {
            return 0; // out.data() may be null, which memcpy must not see
        }
        std::memcpy(out.data(), body.data(), body.size());
        return body.size();
    }
    DecodedString decoded(body.data(), body.data() + body.size());
    size_t n = 0;
    while (!decoded.done()) {
        if (n == out.size()) {
            return std::nullopt;
        }
        out[n++] = decoded.next();
    }
    return n;
}

bool json_string_equals(std::string_view raw_string, std::string_view text) {
    bool escaped = false;
    if (!valid_string_token(raw_string, escaped)) {
        return false;
    }
    const std::string_view body = raw_string.substr(1, raw_string.size() - 2);
    if (!escaped) {
        return body == text;
    }
    return same_bytes(DecodedString(body.data(), body.data() + body.size()), PlainBytes(text));
}

std::string_view json_status_name(JsonStatus s) {
    switch (s) {
    case JsonStatus::found:
        return "found";
    case JsonStatus::not_found:
        return "not_found";
    case JsonStatus::malformed:
        return "malformed";
    case JsonStatus::too_deep:
        return "too_deep";
    case JsonStatus::bad_pointer:
        return "bad_pointer";
    }
    return "unknown";
}

bool json_plain_strings(std::string_view raw_array, std::vector<std::string_view>& out) {
    if (raw_array.size() < 2 || raw_array.front() != '[') {
        return false;
    }
    size_t i = 1;
    while (i < raw_array.size()) {
        const char c = raw_array[i];
        if (c == '"') {
            const size_t end = raw_array.find('"', i + 1);
            if (end == std::string_view::npos) {
                return false;
            }
            const std::string_view s = raw_array.substr(i + 1, end - i - 1);
            if (s.find('\\') != std::string_view::npos) {
                return false;
            }
            out.push_back(s);
            i = end + 1;
        } else if (c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ']') {
            ++i;
        } else {
            return false;
        }
    }
    return true;
}

} // namespace portcullis::base
