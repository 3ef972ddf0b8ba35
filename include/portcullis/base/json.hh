// A JSON writer that appends to a caller-owned buffer: a std::string on cold paths, a
// FixedBuffer on the request path (no allocation; overflow is remembered, never written past).
//
//   FixedBuffer<512> buf;
//   JsonWriter w(buf);
//   w.begin_object().key("id").string(id).key("status").string("queued").end_object();
//   if (buf.overflowed()) { ... }
#pragma once

#include "portcullis/base/utf8.hh"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace portcullis::base {

template <size_t N>
class FixedBuffer {
public:
    void append(std::string_view s) {
        if (s.size() > N - _size) {
            _overflowed = true;
            return;
        }
        std::memcpy(_data + _size, s.data(), s.size());
        _size += s.size();
    }
    void push_back(char c) { append(std::string_view(&c, 1)); }
    std::string_view view() const { return {_data, _size}; }
    size_t size() const { return _size; }
    bool overflowed() const { return _overflowed; }
    void clear() {
        _size = 0;
        _overflowed = false;
    }

private:
    char _data[N];
    size_t _size = 0;
    bool _overflowed = false;
};

// Adapts std::string to the buffer interface JsonWriter expects.
class StringBuffer {
public:
    explicit StringBuffer(std::string& s) : _s(s) {}
    void append(std::string_view v) { _s.append(v); }
    void push_back(char c) { _s.push_back(c); }

private:
    std::string& _s;
};

// Appends the JSON string escape of s (without quotes). Bytes that are not valid UTF-8 are
// escaped as \u00XX of the byte so that the output is always valid JSON; callers that must keep
// bytes exact (bodies) use base64 instead.
template <typename Buffer>
void append_json_escaped(Buffer& out, std::string_view s);

template <typename Buffer>
class JsonWriter {
public:
    explicit JsonWriter(Buffer& out) : _out(out) {}

    JsonWriter& begin_object() {
        separate();
        _out.push_back('{');
        _first = true;
        return *this;
    }
    JsonWriter& end_object() {
        _out.push_back('}');
        _first = false;
        return *this;
    }
    JsonWriter& begin_array() {
        separate();
        _out.push_back('[');
        _first = true;
        return *this;
    }
    JsonWriter& end_array() {
        _out.push_back(']');
        _first = false;
        return *this;
    }
    JsonWriter& key(std::string_view k) {
        separate();
        _out.push_back('"');
        append_json_escaped(_out, k);
        _out.append("\":");
        _after_key = true;
        return *this;
    }
    JsonWriter& string(std::string_view v) {
        separate();
        _out.push_back('"');
        append_json_escaped(_out, v);
        _out.push_back('"');
        return *this;
    }
    JsonWriter& number(int64_t v) {
        separate();
        char tmp[24];
        _out.append(format_int(v, tmp));
        return *this;
    }
    JsonWriter& boolean(bool v) {
        separate();
        _out.append(v ? "true" : "false");
        return *this;
    }
    JsonWriter& null() {
        separate();
        _out.append("null");
        return *this;
    }
    // Appends already-encoded JSON as one value.
    JsonWriter& raw(std::string_view json) {
        separate();
        _out.append(json);
        return *this;
    }

private:
    static std::string_view format_int(int64_t v, char (&tmp)[24]) {
        char* end = tmp + sizeof tmp;
        char* p = end;
        uint64_t u = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
        do {
            *--p = static_cast<char>('0' + u % 10);
            u /= 10;
        } while (u != 0);
        if (v < 0) {
            *--p = '-';
        }
        return {p, static_cast<size_t>(end - p)};
    }
    void separate() {
        if (_after_key) {
            _after_key = false;
            return;
        }
        if (!_first) {
            _out.push_back(',');
        }
        _first = false;
    }

    Buffer& _out;
    bool _first = true;
    bool _after_key = false;
};

namespace detail {

// True when one of the 8 bytes at p is below 0x20, a quote, a backslash or non-ASCII. Each test
// is exact about whether some byte matches (the borrows of the subtractions only blur which one).
inline bool json_needs_look(const char* p) {
    constexpr uint64_t ones = 0x0101010101010101;
    constexpr uint64_t highs = 0x8080808080808080;
    uint64_t x;
    std::memcpy(&x, p, sizeof x);
    const auto has_zero = [](uint64_t v) { return (v - ones) & ~v & highs; };
    const uint64_t below_space = (x - ones * 0x20) & ~x & highs;
    return ((x & highs) | below_space | has_zero(x ^ (ones * '"')) | has_zero(x ^ (ones * '\\'))) !=
           0;
}

} // namespace detail

template <typename Buffer>
void append_json_escaped(Buffer& out, std::string_view s) {
    static constexpr char hex_digits[] = "0123456789abcdef";
    size_t run = 0; // start of the pending run of bytes that need no escape
    auto flush = [&](size_t i) {
        if (i > run) {
            out.append(s.substr(run, i - run));
        }
    };
    for (size_t i = 0; i < s.size();) {
        // Eight bytes at a time while none needs a look (bodies are mostly such runs).
        while (s.size() - i >= 8 && !detail::json_needs_look(s.data() + i)) {
            i += 8;
        }
        if (i == s.size()) {
            break;
        }
        auto c = static_cast<uint8_t>(s[i]);
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            ++i;
            continue;
        }
        if (c >= 0x80) {
            // Keep well-formed UTF-8 sequences as they are.
            size_t n = utf8_sequence_length(s, i);
            if (n != 0) {
                i += n;
                continue;
            }
        }
        flush(i);
        switch (c) {
        case '"':
            out.append("\\\"");
            break;
        case '\\':
            out.append("\\\\");
            break;
        case '\n':
            out.append("\\n");
            break;
        case '\r':
            out.append("\\r");
            break;
        case '\t':
            out.append("\\t");
            break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', hex_digits[c >> 4], hex_digits[c & 0xf]};
            out.append(std::string_view(esc, sizeof esc));
        }
        }
        ++i;
        run = i;
    }
    flush(s.size());
}

} // namespace portcullis::base
