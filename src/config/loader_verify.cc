// The schema walk of a route's verify: its scheme, the scheme's options and secrets, and the
// shape each scheme's secrets must have (also used for a sink's signing secrets).
#include "loader_walker.hh"

#include "portcullis/base/encoding.hh"

#include <array>
#include <vector>

namespace portcullis::config::detail {

namespace {

// The keys a mapping allows come from the key table (portcullis/config/keys.hh).
constexpr auto verify_keys = keys_of<key_count("routes.*.verify")>("routes.*.verify");
constexpr std::string_view shared_secret_keys[] = {"scheme", "secrets", "header"};
constexpr std::string_view windowed_keys[] = {"scheme", "secrets", "tolerance"};
constexpr std::string_view plain_keys[] = {"scheme", "secrets"};
constexpr std::string_view none_keys[] = {"scheme"};
// Each scheme's options are some of verify's (the table's): a key no scheme takes is refused.
static_assert(keys_within(shared_secret_keys, verify_keys) &&
              keys_within(windowed_keys, verify_keys) && keys_within(plain_keys, verify_keys) &&
              keys_within(none_keys, verify_keys));

constexpr Choice<Scheme> schemes[] = {
    {"github", Scheme::github},
    {"stripe", Scheme::stripe},
    {"slack", Scheme::slack},
    {"standard", Scheme::standard},
    {"shopify", Scheme::shopify},
    {"hmac", Scheme::hmac},
    {"shared_secret", Scheme::shared_secret},
    {"ed25519", Scheme::ed25519},
    {"none", Scheme::none},
};
constexpr Choice<Encoding> encodings[] = {{"hex", Encoding::hex}, {"base64", Encoding::base64}};
constexpr Choice<Algorithm> algorithms[] = {
    {"sha256", Algorithm::sha256}, {"sha512", Algorithm::sha512}, {"sha1", Algorithm::sha1}};

std::span<const std::string_view> scheme_keys(Scheme s) {
    switch (s) {
    case Scheme::hmac:
        return verify_keys; // every option is hmac's
    case Scheme::shared_secret:
        return shared_secret_keys;
    case Scheme::stripe:
    case Scheme::slack:
    case Scheme::standard:
    case Scheme::ed25519:
        return windowed_keys;
    case Scheme::none:
        return none_keys;
    default:
        return plain_keys;
    }
}

} // namespace

bool Walker::verify(const YamlNode& map, const std::string& p, RouteConfig& r) {
    VerifyConfig& v = r.verify;
    v.mark = owner_mark(map);
    check_keys(map, p, verify_keys);
    const YamlNode* scheme_node = required(map, "scheme", p);
    if (scheme_node == nullptr) {
        return false;
    }
    auto scheme = choice(*scheme_node, join_path(p, "scheme"), schemes);
    if (!scheme) {
        return false;
    }
    v.scheme = *scheme;
    std::string name(scheme_name(v.scheme));
    bool ok = true;
    std::span<const std::string_view> allowed = scheme_keys(v.scheme);
    for (const YamlNode& member : map.children) {
        // scheme none's secrets get their own message below.
        bool special = v.scheme == Scheme::none && member.key == "secrets";
        if (contains(verify_keys, member.key) && !contains(allowed, member.key) && !special) {
            std::string why = member.key == "tolerance"
                                  ? "scheme " + name + " has no timestamp window"
                                  : "not an option of scheme " + name;
            error(member.key_mark, join_path(p, member.key),
                  why + " (its options: " + join_names(allowed) + ")");
            ok = false;
        }
    }

    if (v.scheme == Scheme::hmac) {
        ok = hmac_options(map, p, v) && ok;
    }
    if (v.scheme == Scheme::shared_secret) {
        v.header = "x-callback-secret";
        if (const YamlNode* n = map.find("header")) {
            auto h = header_name(*n, join_path(p, "header"));
            ok = ok && h.has_value();
            v.header = h.value_or(v.header);
        }
    }
    if (const YamlNode* n = map.find("tolerance")) {
        bool applies = contains(allowed, "tolerance") &&
                       (v.scheme != Scheme::hmac || !v.timestamp_header.empty());
        if (applies) {
            v.tolerance_ns = duration(*n, join_path(p, "tolerance"), 1'000'000'000);
            ok = ok && v.tolerance_ns.has_value();
        } else if (v.scheme == Scheme::hmac) {
            error(n->key_mark, join_path(p, "tolerance"),
                  "needs timestamp_header: without a signed timestamp there is no window");
            ok = false;
        }
    }

    const YamlNode* secrets = map.find("secrets");
    if (v.scheme == Scheme::none) {
        if (secrets != nullptr) {
            error(secrets->key_mark, join_path(p, "secrets"),
                  "scheme none takes no secrets: remove them, or choose the scheme that uses "
                  "them");
            ok = false;
        }
        warn(scheme_node->mark, join_path(p, "scheme"),
             "route " + r.name + " accepts unsigned requests");
        return ok;
    }
    if (secrets == nullptr) {
        error(owner_mark(map), p,
              "\"secrets\" is required for scheme " + name +
                  ": [{env: NAME}], [{file: PATH}] or [{value: \"...\"}]");
        return false;
    }
    return secret_list(*secrets, join_path(p, "secrets"), r) && ok;
}

bool Walker::hmac_options(const YamlNode& map, const std::string& p, VerifyConfig& v) {
    bool ok = true;
    if (const YamlNode* n = required(map, "header", p)) {
        auto h = header_name(*n, join_path(p, "header"));
        ok = h.has_value();
        v.header = h.value_or("");
    } else {
        ok = false;
    }
    if (const YamlNode* n = map.find("prefix")) {
        auto s = string(*n, join_path(p, "prefix"));
        ok = ok && s.has_value();
        v.prefix = s.value_or("");
    }
    if (const YamlNode* n = map.find("encoding")) {
        auto e = choice(*n, join_path(p, "encoding"), encodings);
        ok = ok && e.has_value();
        v.encoding = e.value_or(Encoding::hex);
    }
    if (const YamlNode* n = map.find("algorithm")) {
        auto a = choice(*n, join_path(p, "algorithm"), algorithms);
        ok = ok && a.has_value();
        v.algorithm = a.value_or(Algorithm::sha256);
    }
    bool timestamp_ok = true;
    if (const YamlNode* n = map.find("timestamp_header")) {
        auto h = header_name(*n, join_path(p, "timestamp_header"));
        timestamp_ok = h.has_value();
        v.timestamp_header = h.value_or("");
    }
    ok = ok && timestamp_ok;
    bool with_timestamp = !v.timestamp_header.empty();
    v.signed_template = with_timestamp ? "{timestamp}.{body}" : "{body}";
    if (const YamlNode* n = map.find("template")) {
        std::string tp = join_path(p, "template");
        auto t = string(*n, tp);
        if (!t) {
            return false;
        }
        std::string why = template_error(*t, with_timestamp || !timestamp_ok);
        if (!why.empty()) {
            error(n->mark, tp, why);
            return false;
        }
        v.signed_template = *t;
    }
    return ok;
}

// Empty when t is a valid template: literal text and {timestamp}, ending in the one {body}.
std::string Walker::template_error(std::string_view t, bool with_timestamp) {
    size_t bodies = 0;
    size_t timestamps = 0;
    for (size_t i = 0; i < t.size(); ++i) {
        if (t[i] == '}') {
            return "a '}' outside a placeholder; placeholders are {timestamp} and {body}";
        }
        if (t[i] != '{') {
            continue;
        }
        size_t close = t.find('}', i);
        if (close == std::string_view::npos) {
            return "unclosed '{'; placeholders are {timestamp} and {body}";
        }
        std::string_view name = t.substr(i + 1, close - i - 1);
        if (name == "body") {
            ++bodies;
            if (close + 1 != t.size()) {
                return "{body} must come last: the body is streamed into the MAC";
            }
        } else if (name == "timestamp") {
            if (!with_timestamp) {
                return "{timestamp} needs timestamp_header";
            }
            ++timestamps;
        } else {
            return "unknown placeholder " + quote(t.substr(i, close - i + 1)) +
                   " (placeholders are {timestamp} and {body})";
        }
        i = close;
    }
    if (bodies != 1) {
        return "must end with {body}";
    }
    if (with_timestamp && timestamps == 0) {
        return "must contain {timestamp}: with timestamp_header the timestamp has to be "
               "signed, or it could be replayed with any time";
    }
    return {};
}

bool Walker::secret_list(const YamlNode& n, const std::string& p, RouteConfig& r) {
    return secrets(
        n, p, "route", r.verify.secrets,
        [&](const Secret& s, const SourceMark& mark, const std::string& sp) {
            return check_secret_shape(s, r.verify.scheme, mark, sp);
        },
        "requests to route " + r.name + " are refused (secret_unset) until ");
}

// Errors name the secret by its origin: the material never reaches a message.
bool Walker::check_secret_shape(const Secret& s, Scheme scheme, const SourceMark& mark,
                                const std::string& p) {
    if (scheme == Scheme::ed25519) {
        std::array<uint8_t, 32> key{};
        auto n = s.material.size() == 64 ? base::hex_decode(s.material, key) : std::nullopt;
        if (!n) {
            error(mark, p,
                  "secret " + s.origin +
                      " is not an Ed25519 public key: expected 64 hex characters, found " +
                      std::to_string(s.material.size()) + " characters");
            return false;
        }
    } else if (scheme == Scheme::standard) {
        std::string_view m = s.material;
        bool hmac_key = m.starts_with("whsec_");
        bool public_key = m.starts_with("whpk_");
        if (!hmac_key && !public_key) {
            error(mark, p,
                  "secret " + s.origin +
                      " must be whsec_<base64> (an HMAC key) or whpk_<base64> (an Ed25519 "
                      "public key)");
            return false;
        }
        std::string_view b64 = m.substr(hmac_key ? 6 : 5);
        std::vector<uint8_t> decoded(base::base64_decoded_max_size(b64.size()));
        auto n = base::base64_decode(b64, decoded);
        if (!n || *n == 0 || (public_key && *n != 32)) {
            error(mark, p,
                  "secret " + s.origin + " is not " +
                      (hmac_key ? "whsec_ followed by non-empty base64"
                                : "whpk_ followed by the base64 of a 32-byte Ed25519 key"));
            return false;
        }
    } else if (scheme == Scheme::stripe && !s.material.starts_with("whsec_")) {
        warn(mark, p,
             "secret " + s.origin +
                 " does not start with whsec_: Stripe signing secrets do; check that it is "
                 "the endpoint's signing secret");
    }
    return true;
}

} // namespace portcullis::config::detail
