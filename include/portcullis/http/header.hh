// A header field as parsed: views into the receive buffer, name and value exactly as sent (the
// value without surrounding whitespace). Lookups compare names ASCII case-insensitively.
//
//   if (const Header* h = find_header(headers, "x-hub-signature-256")) { use(h->value); }
#pragma once

#include <span>
#include <string_view>

namespace portcullis::http {

struct Header {
    std::string_view name;
    std::string_view value;
};

constexpr char ascii_lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

// True when name equals lower_name ignoring ASCII case. Precondition: lower_name is lowercase.
constexpr bool name_equals(std::string_view name, std::string_view lower_name) {
    if (name.size() != lower_name.size()) {
        return false;
    }
    for (size_t i = 0; i < name.size(); ++i) {
        if (ascii_lower(name[i]) != lower_name[i]) {
            return false;
        }
    }
    return true;
}

// The first header called lower_name, or nullptr. Precondition: lower_name is lowercase.
constexpr const Header* find_header(std::span<const Header> headers, std::string_view lower_name) {
    for (const Header& h : headers) {
        if (name_equals(h.name, lower_name)) {
            return &h;
        }
    }
    return nullptr;
}

} // namespace portcullis::http
