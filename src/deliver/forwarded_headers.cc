#include "forwarded_headers.hh"

#include "portcullis/http/client.hh"
#include "portcullis/http/header_policy.hh"

#include <algorithm>
#include <array>

namespace portcullis::deliver {

namespace {

constexpr std::string_view portcullis_prefix = "portcullis-";

bool has_prefix_nocase(std::string_view s, std::string_view lower_prefix) {
    return s.size() >= lower_prefix.size() &&
           http::name_equals(s.substr(0, lower_prefix.size()), lower_prefix);
}

bool is_webhook_field(std::string_view name) {
    return http::name_equals(name, "webhook-id") || http::name_equals(name, "webhook-timestamp") ||
           http::name_equals(name, "webhook-signature");
}

} // namespace

bool append_forwarded_headers(const queue::JobRecord* record, std::span<const http::Header> headers,
                              const ForwardRules& rules, std::vector<http::Header>& out,
                              std::string& error) {
    auto each_header = [&](auto&& f) {
        if (record != nullptr) {
            record->for_each_header(f);
        } else {
            for (const http::Header& h : headers) {
                f(h.name, h.value);
            }
        }
    };
    // The values of the Connection fields, to drop the fields they name. Few requests have one.
    std::array<std::string_view, 8> connection{};
    size_t connection_count = 0;
    bool connection_overflow = false;
    each_header([&](std::string_view name, std::string_view value) {
        if (http::name_equals(name, "connection")) {
            if (connection_count < connection.size()) {
                connection[connection_count++] = value;
            } else {
                connection_overflow = true;
            }
        }
    });
    if (connection_overflow) {
        error = "more than 8 Connection fields";
        return false;
    }
    each_header([&](std::string_view name, std::string_view value) {
        if (http::is_hop_by_hop(name) || http::name_equals(name, "host") ||
            http::name_equals(name, "content-length") || http::credential_bit(name) != 0 ||
            has_prefix_nocase(name, portcullis_prefix) ||
            (rules.drop_webhook_fields && is_webhook_field(name))) {
            return;
        }
        for (size_t i = 0; i < connection_count; ++i) {
            if (http::connection_lists(connection[i], name)) {
                return;
            }
        }
        for (const config::SinkHeader& h : rules.replaced) {
            if (name.size() == h.name.size() &&
                std::equal(name.begin(), name.end(), h.name.begin(), [](char a, char b) {
                    return http::ascii_lower(a) == http::ascii_lower(b);
                })) {
                return; // the sink's own value replaces it
            }
        }
        out.push_back({name, value});
    });
    return true;
}

} // namespace portcullis::deliver
