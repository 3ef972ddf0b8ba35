#include "portcullis/http/header_policy.hh"

#include "portcullis/base/json.hh"
#include "portcullis/http/client.hh"

#include <algorithm>
#include <cstring>

namespace portcullis::http {

namespace {

struct LoggedField {
    std::string_view name; // lowercase
    size_t bytes;          // how much of its value is shown
};

// The request fields a rejection log line may show: they identify the sender and the delivery.
constexpr LoggedField logged_fields[] = {
    {"user-agent", logged_value_bytes},
    {"content-type", logged_value_bytes},
    {"content-length", logged_value_bytes},
    {"x-github-event", logged_value_bytes},
    {"x-github-delivery", logged_value_bytes},
    {"x-gitlab-event", logged_value_bytes},
    {"x-request-id", logged_value_bytes},
    {"webhook-id", logged_value_bytes},
    {"webhook-timestamp", logged_value_bytes},
    {"svix-id", logged_value_bytes},
    {"svix-timestamp", logged_value_bytes},
    {"x-slack-request-timestamp", logged_value_bytes},
    {"x-signature-timestamp", logged_value_bytes},
    {"x-shopify-webhook-id", logged_value_bytes},
    {"x-shopify-topic", logged_value_bytes},
    {"x-hub-signature-256", logged_signature_bytes},
    {"x-hub-signature", logged_signature_bytes},
    {"stripe-signature", logged_signature_bytes},
    {"x-slack-signature", logged_signature_bytes},
    {"webhook-signature", logged_signature_bytes},
    {"svix-signature", logged_signature_bytes},
    {"x-shopify-hmac-sha256", logged_signature_bytes},
    {"x-signature-ed25519", logged_signature_bytes},
};
constexpr size_t logged_field_count = std::size(logged_fields);
static_assert(logged_field_count <= 32, "log_headers marks the fields done in a uint32_t");

// The index of name in logged_fields, or logged_field_count.
size_t logged_index(std::string_view name) {
    for (size_t i = 0; i < logged_field_count; ++i) {
        if (name_equals(name, logged_fields[i].name)) {
            return i;
        }
    }
    return logged_field_count;
}

} // namespace

bool is_hop_by_hop(std::string_view name) {
    constexpr std::string_view names[] = {"connection", "keep-alive", "transfer-encoding",
                                          "te",         "upgrade",    "proxy-connection",
                                          "trailer",    "expect"};
    return std::any_of(std::begin(names), std::end(names),
                       [name](std::string_view n) { return name_equals(name, n); });
}

uint8_t credential_bit(std::string_view name) {
    for (size_t i = 0; i < credential_names.size(); ++i) {
        if (name_equals(name, credential_names[i])) {
            return static_cast<uint8_t>(1u << i);
        }
    }
    return 0;
}

bool StoredFields::stores(std::string_view name) const {
    if (is_hop_by_hop(name) || (!secret_header.empty() && name_equals(name, secret_header))) {
        return false;
    }
    const uint8_t bit = credential_bit(name);
    return bit == 0 || (kept_credentials & bit) != 0;
}

// Whether a Connection field of headers lists name: the field is hop-by-hop for this request.
bool connection_names(std::span<const Header> headers, std::string_view name) {
    return std::any_of(headers.begin(), headers.end(), [name](const Header& c) {
        return name_equals(c.name, "connection") && connection_lists(c.value, name);
    });
}

size_t select_stored(std::span<const Header> headers, const StoredFields& policy,
                     std::span<Header> out) {
    size_t kept = 0;
    for (const Header& h : headers) {
        if (policy.stores(h.name) && !connection_names(headers, h.name) && kept < out.size()) {
            out[kept++] = h;
        }
    }
    return kept;
}

namespace {

// Calls emit(name, value) for each allow-listed field of headers that policy stores (see
// log_headers), its values joined and cut.
template <typename Emit>
void each_logged(std::span<const Header> headers, const StoredFields& policy, Emit&& emit) {
    // Each logged field is written once, where it first appears, with all its values: at most
    // one more pass per logged field, whatever the number of repeats.
    uint32_t done = 0;
    for (size_t i = 0; i < headers.size(); ++i) {
        const size_t index = logged_index(headers[i].name);
        if (index == logged_field_count || (done & (1u << index)) != 0 ||
            !policy.stores(headers[i].name)) {
            continue;
        }
        done |= 1u << index;
        const LoggedField& field = logged_fields[index];
        char joined[logged_value_bytes];
        size_t size = 0;
        auto append = [&](std::string_view s) {
            const size_t take = std::min(s.size(), field.bytes - size);
            if (take != 0) {
                std::memcpy(joined + size, s.data(), take);
                size += take;
            }
        };
        append(headers[i].value);
        for (size_t k = i + 1; k < headers.size() && size < field.bytes; ++k) {
            if (name_equals(headers[k].name, field.name)) {
                append(", ");
                append(headers[k].value);
            }
        }
        emit(field.name, std::string_view(joined, size));
    }
}

} // namespace

void log_headers(base::LogLine& line, std::span<const Header> headers, const StoredFields& policy) {
    line.object("headers");
    each_logged(headers, policy,
                [&](std::string_view name, std::string_view value) { line.field(name, value); });
    line.end_object();
}

size_t json_headers(std::span<char> out, std::span<const Header> headers,
                    const StoredFields& policy) {
    base::FixedBuffer<json_headers_bytes> buf;
    base::JsonWriter w(buf);
    w.begin_object();
    size_t kept = 0;
    each_logged(headers, policy, [&](std::string_view name, std::string_view value) {
        w.key(name).string(value);
        if (!buf.overflowed() && buf.size() < out.size()) {
            kept = buf.size(); // what fits with its closing brace added below
        }
    });
    w.end_object();
    std::string_view text = buf.view();
    if (buf.overflowed() || text.size() > out.size()) {
        // Cut after the last field that fits: still one JSON object.
        if (kept == 0 || kept + 1 > out.size()) {
            return 0;
        }
        std::memcpy(out.data(), text.data(), kept);
        out[kept] = '}';
        return kept + 1;
    }
    std::memcpy(out.data(), text.data(), text.size());
    return text.size();
}

} // namespace portcullis::http
