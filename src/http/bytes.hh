// Byte classes and character helpers shared by the HTTP/1.1 parsers of this module (requests
// in parser.cc, responses in client.cc): one definition of what a token or a field value is.
// Private to src/http.
#pragma once

#include "portcullis/http/header.hh"

#include <array>
#include <cstddef>
#include <string_view>

namespace portcullis::http::bytes {

// Byte classes, one 256-entry table each.
using ByteTable = std::array<bool, 256>;

template <class Pred>
constexpr ByteTable make_table(Pred pred) {
    ByteTable t{};
    for (int c = 0; c < 256; ++c) {
        t[c] = pred(static_cast<unsigned char>(c));
    }
    return t;
}

constexpr bool is_alnum(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_one_of(unsigned char c, std::string_view set) {
    return set.find(static_cast<char>(c)) != std::string_view::npos;
}

// RFC 9110 tchar.
inline constexpr ByteTable tchar =
    make_table([](unsigned char c) { return is_alnum(c) || is_one_of(c, "!#$%&'*+-.^_`|~"); });
// RFC 9110 field-value bytes: VCHAR, SP, HTAB, obs-text.
inline constexpr ByteTable field_value_byte =
    make_table([](unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); });
// Origin-form target bytes (RFC 3986 pchar, '/', '?'), without '%' whose hex digits are checked
// apart.
inline constexpr ByteTable target_byte =
    make_table([](unsigned char c) { return is_alnum(c) || is_one_of(c, "-._~!$&'()*+,;=:@/?"); });
// RFC 3986 reg-name bytes without '%'.
inline constexpr ByteTable reg_name_byte =
    make_table([](unsigned char c) { return is_alnum(c) || is_one_of(c, "-._~!$&'()*+,;="); });
// Control bytes: none may appear in a request head but HTAB (in field values) and the CRLF that
// ends each line.
inline constexpr ByteTable control =
    make_table([](unsigned char c) { return c < 0x20 || c == 0x7f; });
// quoted-string contents (RFC 9110 qdtext).
inline constexpr ByteTable qdtext = make_table([](unsigned char c) {
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
           (c >= 0x5d && c <= 0x7e) || c >= 0x80;
});

constexpr unsigned char uchar(char c) {
    return static_cast<unsigned char>(c);
}
constexpr bool is_ows(char c) {
    return c == ' ' || c == '\t';
}
constexpr bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
// RFC 5234 VCHAR: the bytes a request-target of any form is made of.
constexpr bool is_visible(char c) {
    return c > ' ' && c < 0x7f;
}

constexpr int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// Length of the run of tchar bytes at the start of [p, end).
inline size_t token_run(const char* p, const char* end) {
    const char* const start = p;
    while (p < end && tchar[uchar(*p)]) {
        ++p;
    }
    return static_cast<size_t>(p - start);
}

// Length of the run of field-value bytes at the start of [p, end); the first byte after it is
// normally the CR that ends the line.
inline size_t field_value_run(const char* p, const char* end) {
    const char* const start = p;
    while (p < end && field_value_byte[uchar(*p)]) {
        ++p;
    }
    return static_cast<size_t>(p - start);
}

// True when every byte of [p, end) is in the class. No branch per byte: the usual strings here
// are short and all in the class.
inline bool all_in(const ByteTable& in_class, const char* p, const char* const end) {
    auto in = [&in_class](char c) { return static_cast<unsigned>(in_class[uchar(c)]); };
    unsigned all = 1;
    for (; end - p >= 4; p += 4) {
        all &= in(p[0]) & in(p[1]) & in(p[2]) & in(p[3]);
    }
    for (; p < end; ++p) {
        all &= in(*p);
    }
    return all != 0;
}

// The options of a Connection field (RFC 9110 section 7.6.1), requests' and responses' alike: a
// list of tokens, empty elements ignored (section 5.6.1). Calls on_option(token) for each, in
// order; false when the list is malformed (options before the fault were seen).
template <typename F>
bool for_each_connection_option(std::string_view v, F&& on_option) {
    const char* p = v.data();
    const char* const end = p + v.size();
    while (p < end) {
        if (*p == ',' || is_ows(*p)) {
            ++p;
            continue;
        }
        const std::string_view option(p, token_run(p, end));
        if (option.empty()) {
            return false;
        }
        p += option.size();
        while (p < end && is_ows(*p)) {
            ++p;
        }
        if (p < end && *p != ',') {
            return false;
        }
        on_option(option);
    }
    return true;
}

// Sets `close` and `keep_alive` when a Connection field's value lists those options; false when
// the list is malformed.
inline bool connection_options(std::string_view v, bool& close, bool& keep_alive) {
    return for_each_connection_option(v, [&](std::string_view option) {
        if (name_equals(option, "close")) {
            close = true;
        } else if (name_equals(option, "keep-alive")) {
            keep_alive = true;
        }
    });
}

} // namespace portcullis::http::bytes
