// The small pieces of the data model: names of enums, diagnostics, field references.
#include "portcullis/config/config.hh"

#include "portcullis/base/encoding.hh"

#include "text.hh"

namespace portcullis::config {

// The file name and the key path are the user's (a directory's listing, YAML keys): escaped
// here, where they are printed. The message quotes what it holds of the user's when it is made.
std::string Diagnostic::format() const {
    std::string out = base::escape_text(mark.file);
    if (mark.line > 0) {
        out += ':' + std::to_string(mark.line) + ':' + std::to_string(mark.column);
    }
    out += ": ";
    if (!key_path.empty()) {
        out += base::escape_text(key_path) + ": ";
    }
    return out + message;
}

std::optional<int64_t> default_tolerance_ns(Scheme s) {
    switch (s) {
    case Scheme::stripe:
    case Scheme::slack:
    case Scheme::standard:
    case Scheme::ed25519:
        return 300ll * 1'000'000'000;
    default:
        return std::nullopt;
    }
}

std::string_view scheme_name(Scheme s) {
    switch (s) {
    case Scheme::github:
        return "github";
    case Scheme::stripe:
        return "stripe";
    case Scheme::slack:
        return "slack";
    case Scheme::standard:
        return "standard";
    case Scheme::shopify:
        return "shopify";
    case Scheme::hmac:
        return "hmac";
    case Scheme::shared_secret:
        return "shared_secret";
    case Scheme::ed25519:
        return "ed25519";
    case Scheme::none:
        return "none";
    }
    return "?";
}

std::string_view durability_name(Durability d) {
    switch (d) {
    case Durability::fsync:
        return "fsync";
    case Durability::batch:
        return "batch";
    case Durability::none:
        return "none";
    }
    return "?";
}

std::string_view proxy_protocol_name(ProxyProtocol p) {
    switch (p) {
    case ProxyProtocol::off:
        return "off";
    case ProxyProtocol::v1:
        return "v1";
    case ProxyProtocol::v2:
        return "v2";
    case ProxyProtocol::any:
        return "any";
    }
    return "?";
}

std::string_view sink_kind_name(SinkConfig::Kind k) {
    switch (k) {
    case SinkConfig::Kind::http:
        return "http";
    case SinkConfig::Kind::exec:
        return "exec";
    case SinkConfig::Kind::nats:
        return "nats";
    case SinkConfig::Kind::redis:
        return "redis";
    }
    return "?";
}

bool is_token(std::string_view s) {
    if (s.empty()) {
        return false;
    }
    for (char c : s) {
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) {
            return false;
        }
    }
    return true;
}

namespace {

bool is_json_pointer(std::string_view p) {
    if (!p.empty() && p[0] != '/') {
        return false;
    }
    for (size_t i = 0; i < p.size(); ++i) {
        if (p[i] == '~' && (i + 1 == p.size() || (p[i + 1] != '0' && p[i + 1] != '1'))) {
            return false;
        }
    }
    return true;
}

bool is_query_name(std::string_view s) {
    if (s.empty()) {
        return false;
    }
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f || c == '&' || c == '=' || c == '#') {
            return false;
        }
    }
    return true;
}

} // namespace

bool is_consumer_name(std::string_view s) {
    return s.starts_with(consumer_prefix) &&
           s.size() <= consumer_prefix.size() + max_consumer_name &&
           is_name(s.substr(consumer_prefix.size()));
}

bool is_name(std::string_view s) {
    if (s.empty() || s.size() > 64) {
        return false;
    }
    for (char c : s) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

bool is_param_name(std::string_view s) {
    if (s.empty()) {
        return false;
    }
    for (char c : s) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

std::optional<FieldRef> parse_field_ref(std::string_view text, std::string* why) {
    auto fail = [&](std::string message) -> std::optional<FieldRef> {
        if (why != nullptr) {
            *why = std::move(message);
        }
        return std::nullopt;
    };
    size_t colon = text.find(':');
    std::string_view kind = text.substr(0, colon);
    std::string_view name = colon == std::string_view::npos ? "" : text.substr(colon + 1);
    FieldRef ref;
    ref.text = std::string(text);
    if (colon == std::string_view::npos) {
        return fail("expected a field reference: header:NAME, json:/pointer, query:NAME or "
                    "path:PARAM");
    }
    if (kind == "header") {
        if (!is_token(name)) {
            return fail("header:NAME needs a header name made of token characters");
        }
        ref.kind = FieldRef::Kind::header;
        ref.name = detail::ascii_lowercase(name);
    } else if (kind == "json") {
        if (!is_json_pointer(name)) {
            return fail("json: takes an RFC 6901 pointer: empty or starting with '/', with '~' "
                        "only in ~0 and ~1");
        }
        ref.kind = FieldRef::Kind::json;
        ref.name = std::string(name);
    } else if (kind == "query") {
        if (!is_query_name(name)) {
            return fail("query:NAME needs a parameter name without spaces, '&', '=' or '#'");
        }
        ref.kind = FieldRef::Kind::query;
        ref.name = std::string(name);
    } else if (kind == "path") {
        if (!is_param_name(name)) {
            return fail("path:PARAM needs a parameter name of [a-z0-9_]");
        }
        ref.kind = FieldRef::Kind::path;
        ref.name = std::string(name);
    } else {
        return fail("unknown field kind " + detail::quote(kind) +
                    " (expected header, json, query or path)");
    }
    return ref;
}

} // namespace portcullis::config
