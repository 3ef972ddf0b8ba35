#include "portcullis/queue/keys.hh"

#include "portcullis/base/json_pointer.hh"
#include "portcullis/base/time.hh"

#include <limits>

namespace portcullis::queue {

std::optional<std::string_view> query_param(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        size_t eq = pair.find('=');
        if (pair.substr(0, eq) == name) {
            // A parameter without '=' has the empty value at the end of its name: a view inside
            // the query like any other, never a default view that points nowhere.
            return eq == std::string_view::npos ? pair.substr(pair.size()) : pair.substr(eq + 1);
        }
        if (amp == std::string_view::npos) {
            break;
        }
        query.remove_prefix(amp + 1);
    }
    return std::nullopt;
}

std::optional<std::string_view>
head_field(const config::FieldRef& ref, const http::RequestHead& head, const config::Route& route) {
    switch (ref.kind) {
    case config::FieldRef::Kind::header:
        if (const http::Header* h = http::find_header(head.headers, ref.name)) {
            return h->value;
        }
        return std::nullopt;
    case config::FieldRef::Kind::query:
        return query_param(head.query, ref.name);
    case config::FieldRef::Kind::path: {
        std::string_view v = route.path_param(head.path, ref.name);
        if (v.empty()) {
            return std::nullopt;
        }
        return v;
    }
    case config::FieldRef::Kind::json:
        break;
    }
    return std::nullopt;
}

std::optional<std::string_view> json_field(const config::FieldRef& ref, std::string_view body) {
    if (ref.kind != config::FieldRef::Kind::json) {
        return std::nullopt;
    }
    base::JsonLookup found = base::json_find(body, ref.name);
    if (found.status != base::JsonStatus::found) {
        return std::nullopt;
    }
    return found.value.raw;
}

std::optional<int64_t> parse_timestamp(std::string_view value) {
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
    }
    if (value.empty()) {
        return std::nullopt;
    }
    if (value.size() >= 20) {
        if (auto t = base::parse_rfc3339(value)) {
            return t;
        }
    }
    bool negative = value.front() == '-';
    std::string_view digits = negative ? value.substr(1) : value;
    if (digits.empty() || digits.size() > 18) {
        return std::nullopt; // 18 digits always fit an int64
    }
    int64_t v = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        v = v * 10 + (c - '0');
    }
    return negative ? -v : v;
}

} // namespace portcullis::queue
