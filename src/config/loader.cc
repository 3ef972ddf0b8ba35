// config::load: files -> YAML trees -> one merged tree -> the schema walk that fills a Config.
//
// The walk reports every problem it can find in one pass: a bad value is reported and skipped,
// and the rest of its section is still checked. Nothing in here throws on bad input; load() and
// load_text() catch what the standard library might throw (allocation) at the boundary.
#include "portcullis/admin/auth.hh"
#include "portcullis/base/encoding.hh"
#include "portcullis/base/file.hh"
#include "portcullis/config/config.hh"
#include "portcullis/config/units.hh"
#include "portcullis/http/header_policy.hh"

#include "routes.hh"
#include "sinks.hh"
#include "text.hh"
#include "yaml_tree.hh"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <tuple>

#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

namespace portcullis::config {

namespace {

using detail::index_path;
using detail::join_path;
using detail::parse_route_path;
using detail::PathRelation;
using detail::quote;
using detail::relate;
using detail::RoutePath;
using detail::shared_path;
using detail::YamlNode;

constexpr size_t max_secrets_per_route = 8;
constexpr size_t max_config_file_bytes = 16u << 20;
constexpr size_t max_secret_file_bytes = 64u << 10;
constexpr int64_t ns_per_ms = 1'000'000;

constexpr std::string_view top_keys[] = {"server", "admin",  "spool",    "routes",
                                         "sinks",  "tokens", "integrity"};
constexpr std::string_view server_keys[] = {"listen",
                                            "shards",
                                            "max_connections",
                                            "max_connections_per_ip",
                                            "deny",
                                            "drain_timeout",
                                            "limits",
                                            "timeouts",
                                            "client_ip",
                                            "tls"};
constexpr std::string_view limits_keys[] = {"header_bytes", "headers", "body_bytes"};
constexpr std::string_view timeouts_keys[] = {"header", "body", "idle"};
constexpr std::string_view client_ip_keys[] = {"trusted_proxies", "proxy_protocol"};
constexpr std::string_view tls_keys[] = {"listen", "certificates", "min_version",
                                         "session_tickets"};
constexpr std::string_view tls_certificate_keys[] = {"cert", "key"};
constexpr std::string_view admin_keys[] = {"listen", "max_connections"};
constexpr std::string_view spool_keys[] = {"dir", "durability", "segment_size", "retention"};
constexpr std::string_view route_keys[] = {"path",       "methods",      "verify",  "dedup",
                                           "ordering",   "rate_limit",   "allow",   "max_attempts",
                                           "durability", "keep_headers", "deliver", "ordered"};
constexpr std::string_view verify_keys[] = {"scheme",    "secrets",          "tolerance",
                                            "header",    "prefix",           "encoding",
                                            "algorithm", "timestamp_header", "template"};
constexpr std::string_view shared_secret_keys[] = {"scheme", "secrets", "header"};
constexpr std::string_view windowed_keys[] = {"scheme", "secrets", "tolerance"};
constexpr std::string_view plain_keys[] = {"scheme", "secrets"};
constexpr std::string_view none_keys[] = {"scheme"};
constexpr std::string_view secret_keys[] = {"env", "file", "value"};
constexpr std::string_view dedup_keys[] = {"key", "window"};
constexpr std::string_view ordering_keys[] = {"key", "timestamp"};
constexpr std::string_view rate_limit_keys[] = {"per_ip", "burst", "route"};
constexpr std::string_view token_keys[] = {"sha256", "scopes"};
constexpr std::string_view sink_kinds[] = {"http", "exec", "nats", "redis"};
constexpr std::string_view http_sink_keys[] = {"url",  "method",  "timeout", "concurrency",
                                               "rate", "headers", "ca",      "sign"};
constexpr std::string_view sign_keys[] = {"secrets"};
constexpr std::string_view exec_sink_keys[] = {"command", "concurrency", "timeout"};
constexpr std::string_view nats_sink_keys[] = {"url", "subject", "credentials", "max_in_flight"};
constexpr std::string_view nats_credential_keys[] = {"user", "password", "token", "nkey_seed"};
constexpr std::string_view redis_sink_keys[] = {"url", "stream", "maxlen", "credentials"};
constexpr std::string_view redis_credential_keys[] = {"user", "password"};

template <typename E>
struct Choice {
    std::string_view name;
    E value;
};

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
constexpr Choice<Durability> durabilities[] = {
    {"fsync", Durability::fsync}, {"batch", Durability::batch}, {"none", Durability::none}};
constexpr Choice<ProxyProtocol> proxy_protocols[] = {{"off", ProxyProtocol::off},
                                                     {"v1", ProxyProtocol::v1},
                                                     {"v2", ProxyProtocol::v2},
                                                     {"any", ProxyProtocol::any}};
constexpr Choice<TlsVersion> tls_versions[] = {{"1.2", TlsVersion::v1_2},
                                               {"1.3", TlsVersion::v1_3}};
constexpr Choice<bool> booleans[] = {{"true", true}, {"false", false}};
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

// The dedup key each provider documents as its delivery id.
std::optional<std::string_view> default_dedup_key(Scheme s) {
    switch (s) {
    case Scheme::github:
        return "header:x-github-delivery";
    case Scheme::standard:
        return "header:webhook-id";
    case Scheme::stripe:
        return "json:/id";
    case Scheme::shopify:
        return "header:x-shopify-webhook-id";
    case Scheme::slack:
        return "json:/event_id";
    default:
        return std::nullopt;
    }
}

bool contains(std::span<const std::string_view> list, std::string_view s) {
    return std::find(list.begin(), list.end(), s) != list.end();
}

std::string join_names(std::span<const std::string_view> names) {
    std::string out;
    for (std::string_view n : names) {
        if (!out.empty()) {
            out += ", ";
        }
        out += n;
    }
    return out;
}

template <typename E, size_t N>
std::string choice_names(const Choice<E> (&choices)[N]) {
    std::string out;
    for (size_t i = 0; i < N; ++i) {
        out += i == 0 ? "" : i + 1 == N ? " or " : ", ";
        out += choices[i].name;
    }
    return out;
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

std::string describe(const YamlNode& n) {
    if (n.is_mapping()) {
        return "a mapping";
    }
    if (n.is_sequence()) {
        return "a list";
    }
    if (n.is_null()) {
        return "nothing";
    }
    return quote(n.value);
}

// Where a missing key would have gone: the key of the mapping that lacks it.
const SourceMark& owner_mark(const YamlNode& n) {
    return n.key_mark.line > 0 ? n.key_mark : n.mark;
}

std::string sha256_hex(std::span<const uint8_t> digest) {
    return base::hex(digest);
}

// Streams a regular file through SHA-256.
std::optional<std::string> hash_regular_file(const std::string& path,
                                             std::array<uint8_t, SHA256_DIGEST_LENGTH>& digest) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        return std::string(std::strerror(errno));
    }
    struct stat st {};
    std::optional<std::string> failure;
    if (::fstat(fd, &st) != 0) {
        failure = std::strerror(errno);
    } else if (!S_ISREG(st.st_mode)) {
        failure = "not a regular file";
    } else {
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        std::array<uint8_t, 64 * 1024> buf;
        for (;;) {
            ssize_t n = ::read(fd, buf.data(), buf.size());
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0) {
                failure = std::strerror(errno);
                break;
            }
            if (n == 0) {
                break;
            }
            SHA256_Update(&ctx, buf.data(), static_cast<size_t>(n));
        }
        SHA256_Final(digest.data(), &ctx);
    }
    ::close(fd);
    return failure;
}

// A secret that holds nothing, and why, kept until the whole route is seen: the warning says
// whether the route still has a usable secret.
struct EmptySecret {
    SourceMark mark;
    std::string path;
    std::string what;  // "env GITHUB_WEBHOOK_SECRET is not set"
    std::string until; // "it is"
};

class Walker {
public:
    Walker(std::vector<Diagnostic>& errors, std::vector<Diagnostic>& warnings, Config& cfg)
        : _errors(errors), _warnings(warnings), _cfg(cfg) {}

    void walk(const YamlNode& root) {
        if (!root.is_mapping()) {
            error(root.mark, "",
                  "expected a mapping of " + join_names(top_keys) + " at the top level, found " +
                      describe(root));
            return;
        }
        check_keys(root, "", top_keys);
        if (const YamlNode* n = section(root, "server", "")) {
            server(*n, "server");
        }
        if (const YamlNode* n = section(root, "admin", "")) {
            admin(*n, "admin");
        }
        if (const YamlNode* n = section(root, "spool", "")) {
            spool(*n, "spool");
        }
        // Sinks before routes: a route's deliver names sinks.
        if (const YamlNode* n = section(root, "sinks", "")) {
            sinks(*n, "sinks");
        }
        if (const YamlNode* n = section(root, "routes", "")) {
            routes(*n, "routes");
        }
        check_undelivered_sinks();
        if (const YamlNode* n = section(root, "tokens", "")) {
            tokens(*n, "tokens");
        }
        if (const YamlNode* n = section(root, "integrity", "")) {
            integrity(*n, "integrity");
        }
        apply_defaults();
        check_admin_clash();
    }

private:
    void error(const SourceMark& mark, const std::string& path, std::string message) {
        _errors.push_back(Diagnostic{mark, path, std::move(message)});
    }
    void warn(const SourceMark& mark, const std::string& path, std::string message) {
        _warnings.push_back(Diagnostic{mark, path, std::move(message)});
    }

    // ---- generic shapes --------------------------------------------------------------------

    void check_keys(const YamlNode& map, const std::string& path,
                    std::span<const std::string_view> allowed) {
        for (const YamlNode& member : map.children) {
            if (contains(allowed, member.key)) {
                continue;
            }
            std::string message = "unknown key";
            std::string_view closest;
            size_t best = std::numeric_limits<size_t>::max();
            for (std::string_view candidate : allowed) {
                size_t d = detail::edit_distance(member.key, candidate);
                if (d < best) {
                    best = d;
                    closest = candidate;
                }
            }
            // Close means a typo, not a different word: one edit for short keys, two for longer.
            size_t close = closest.size() <= 4 ? 1 : 2;
            if (best <= close) {
                message += " (did you mean \"" + std::string(closest) + "\"?)";
            }
            message += "; allowed here: " + join_names(allowed);
            error(member.key_mark, join_path(path, member.key), std::move(message));
        }
    }

    // A mapping-valued member; nullptr when absent, null (`key:` alone) or not a mapping
    // (reported).
    const YamlNode* section(const YamlNode& map, std::string_view key, const std::string& path) {
        const YamlNode* n = map.find(key);
        if (n == nullptr || n->is_null()) {
            return nullptr;
        }
        if (!n->is_mapping()) {
            error(n->mark, join_path(path, key), "expected a mapping, found " + describe(*n));
            return nullptr;
        }
        return n;
    }

    // A list-valued member; nullptr when absent or not a list (reported).
    const YamlNode* list(const YamlNode& n, const std::string& path, std::string_view example) {
        if (!n.is_sequence()) {
            error(n.mark, path,
                  "expected a list like " + std::string(example) + ", found " + describe(n));
            return nullptr;
        }
        return &n;
    }

    const YamlNode* required(const YamlNode& map, std::string_view key, const std::string& path) {
        const YamlNode* n = map.find(key);
        if (n == nullptr) {
            error(owner_mark(map), path, "\"" + std::string(key) + "\" is required");
        }
        return n;
    }

    std::optional<std::string> string(const YamlNode& n, const std::string& path) {
        if (!n.is_scalar() || n.is_null()) {
            error(n.mark, path, "expected a string, found " + describe(n));
            return std::nullopt;
        }
        return n.value;
    }

    std::optional<std::string> nonempty_string(const YamlNode& n, const std::string& path) {
        auto s = string(n, path);
        if (s && s->empty()) {
            error(n.mark, path, "must not be empty");
            return std::nullopt;
        }
        return s;
    }

    std::optional<uint64_t> integer(const YamlNode& n, const std::string& path, uint64_t min,
                                    uint64_t max) {
        std::string range =
            "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
        if (!n.is_scalar() || n.is_null()) {
            error(n.mark, path, "expected " + range + ", found " + describe(n));
            return std::nullopt;
        }
        uint64_t value = 0;
        bool ok = !n.value.empty() && n.value.size() <= 20;
        for (char c : n.value) {
            if (!ok || c < '0' || c > '9' || value > (max - static_cast<uint64_t>(c - '0')) / 10) {
                ok = false;
                break;
            }
            value = value * 10 + static_cast<uint64_t>(c - '0');
        }
        if (!ok || value < min) {
            error(n.mark, path, "expected " + range + ", found " + describe(n));
            return std::nullopt;
        }
        return value;
    }

    std::optional<int64_t> duration(const YamlNode& n, const std::string& path, int64_t min_ns) {
        if (!n.is_scalar() || n.is_null()) {
            error(n.mark, path, "expected a duration like 10s, found " + describe(n));
            return std::nullopt;
        }
        auto ns = parse_duration_ns(n.value);
        if (!ns) {
            error(n.mark, path, duration_error(n.value));
            return std::nullopt;
        }
        if (*ns < min_ns) {
            error(n.mark, path,
                  "must be at least " + format_duration(min_ns) + ", found " + quote(n.value));
            return std::nullopt;
        }
        return ns;
    }

    std::optional<uint64_t> size(const YamlNode& n, const std::string& path, uint64_t min,
                                 uint64_t max) {
        if (!n.is_scalar() || n.is_null()) {
            error(n.mark, path, "expected a size like 16KiB, found " + describe(n));
            return std::nullopt;
        }
        auto bytes = parse_size(n.value);
        if (!bytes) {
            error(n.mark, path, size_error(n.value));
            return std::nullopt;
        }
        if (*bytes < min || *bytes > max) {
            error(n.mark, path,
                  "must be from " + format_size(min) + " to " + format_size(max) + ", found " +
                      quote(n.value));
            return std::nullopt;
        }
        return bytes;
    }

    std::optional<Rate> rate(const YamlNode& n, const std::string& path) {
        if (!n.is_scalar() || n.is_null()) {
            error(n.mark, path, "expected a rate like 20/s, found " + describe(n));
            return std::nullopt;
        }
        auto r = parse_rate(n.value);
        if (!r) {
            error(n.mark, path, rate_error(n.value));
        }
        return r;
    }

    template <typename E, size_t N>
    std::optional<E> choice(const YamlNode& n, const std::string& path,
                            const Choice<E> (&choices)[N]) {
        if (n.is_scalar() && !n.is_null()) {
            for (const Choice<E>& c : choices) {
                if (n.value == c.name) {
                    return c.value;
                }
            }
        }
        error(n.mark, path, "expected " + choice_names(choices) + ", found " + describe(n));
        return std::nullopt;
    }

    std::optional<std::string> header_name(const YamlNode& n, const std::string& path) {
        auto s = string(n, path);
        if (!s) {
            return std::nullopt;
        }
        if (!is_token(*s)) {
            error(n.mark, path, "expected a header name (token characters), found " + quote(*s));
            return std::nullopt;
        }
        return detail::ascii_lowercase(*s);
    }

    std::vector<Cidr> cidrs(const YamlNode& n, const std::string& path) {
        std::vector<Cidr> out;
        if (list(n, path, "[\"10.0.0.0/8\", \"2001:db8::/32\"]") == nullptr) {
            return out;
        }
        for (size_t i = 0; i < n.children.size(); ++i) {
            const YamlNode& item = n.children[i];
            std::string item_path = index_path(path, i);
            auto text = string(item, item_path);
            if (!text) {
                continue;
            }
            std::string why;
            if (auto cidr = parse_cidr(*text, &why)) {
                out.push_back(std::move(*cidr));
            } else {
                error(item.mark, item_path, why);
            }
        }
        return out;
    }

    std::optional<ListenAddress> listen_address(const YamlNode& n, const std::string& path) {
        auto text = string(n, path);
        if (!text) {
            return std::nullopt;
        }
        std::string why;
        auto addr = parse_listen_address(*text, &why);
        if (!addr) {
            error(n.mark, path, why);
        }
        return addr;
    }

    // ---- server, admin, spool ----------------------------------------------------------------

    void server(const YamlNode& map, const std::string& path) {
        ServerConfig& s = _cfg.server;
        check_keys(map, path, server_keys);
        if (const YamlNode* n = map.find("listen")) {
            std::string p = join_path(path, "listen");
            if (list(*n, p, "[\"0.0.0.0:8080\"]") != nullptr) {
                // Empty is fine when TLS listeners serve instead: decided once server.tls is
                // read.
                if (n->children.empty()) {
                    _empty_listen_node = n;
                }
                for (size_t i = 0; i < n->children.size(); ++i) {
                    std::string item_path = index_path(p, i);
                    auto addr = listen_address(n->children[i], item_path);
                    if (!addr) {
                        continue;
                    }
                    bool clash = false;
                    for (size_t j = 0; j < s.listen.size() && !clash; ++j) {
                        if (listen_overlaps(s.listen[j], *addr)) {
                            error(n->children[i].mark, item_path,
                                  addr->text + " overlaps " + s.listen[j].text +
                                      " listed before it");
                            clash = true;
                        }
                    }
                    if (!clash) {
                        s.listen.push_back(std::move(*addr));
                        _listen_marks.push_back(n->children[i].mark);
                    }
                }
                _listen_given = true;
            }
        }
        if (const YamlNode* n = map.find("shards")) {
            std::string p = join_path(path, "shards");
            if (n->is_scalar() && n->value == "auto") {
                s.shards = 0;
            } else if (n->is_scalar() && !n->is_null() && !n->value.empty() &&
                       n->value.find_first_not_of("0123456789") == std::string::npos) {
                if (auto v = integer(*n, p, 1, 256)) {
                    s.shards = static_cast<uint32_t>(*v);
                }
            } else {
                error(n->mark, p, "expected auto or a number from 1 to 256, found " + describe(*n));
            }
        }
        if (const YamlNode* n = map.find("max_connections")) {
            if (auto v = integer(*n, join_path(path, "max_connections"), 1,
                                 std::numeric_limits<uint32_t>::max())) {
                s.max_connections = static_cast<uint32_t>(*v);
            }
        }
        if (const YamlNode* n = map.find("max_connections_per_ip")) {
            if (auto v = integer(*n, join_path(path, "max_connections_per_ip"), 1,
                                 std::numeric_limits<uint32_t>::max())) {
                s.max_connections_per_ip = static_cast<uint32_t>(*v);
            }
        }
        if (const YamlNode* n = map.find("deny")) {
            s.deny = cidrs(*n, join_path(path, "deny"));
        }
        if (const YamlNode* n = map.find("drain_timeout")) {
            if (auto v = duration(*n, join_path(path, "drain_timeout"), 0)) {
                s.drain_timeout_ns = *v;
            }
        }
        std::string limits_path = join_path(path, "limits");
        if (const YamlNode* limits = section(map, "limits", path)) {
            check_keys(*limits, limits_path, limits_keys);
            if (const YamlNode* n = limits->find("header_bytes")) {
                if (auto v = size(*n, join_path(limits_path, "header_bytes"), 1u << 10, 1u << 20)) {
                    s.header_bytes = static_cast<uint32_t>(*v);
                }
            }
            if (const YamlNode* n = limits->find("headers")) {
                if (auto v = integer(*n, join_path(limits_path, "headers"), 1, 1000)) {
                    s.headers = static_cast<uint32_t>(*v);
                }
            }
            if (const YamlNode* n = limits->find("body_bytes")) {
                if (auto v = size(*n, join_path(limits_path, "body_bytes"), 1, 1ull << 30)) {
                    s.body_bytes = *v;
                }
            }
        }
        std::string timeouts_path = join_path(path, "timeouts");
        if (const YamlNode* timeouts = section(map, "timeouts", path)) {
            check_keys(*timeouts, timeouts_path, timeouts_keys);
            struct Timeout {
                std::string_view key;
                int64_t* target;
            };
            const Timeout rows[] = {{"header", &s.header_timeout_ns},
                                    {"body", &s.body_timeout_ns},
                                    {"idle", &s.idle_timeout_ns}};
            for (const Timeout& row : rows) {
                if (const YamlNode* n = timeouts->find(row.key)) {
                    if (auto v = duration(*n, join_path(timeouts_path, row.key), ns_per_ms)) {
                        *row.target = *v;
                    }
                }
            }
        }
        std::string client_ip_path = join_path(path, "client_ip");
        if (const YamlNode* client_ip = section(map, "client_ip", path)) {
            check_keys(*client_ip, client_ip_path, client_ip_keys);
            if (const YamlNode* n = client_ip->find("trusted_proxies")) {
                s.trusted_proxies = cidrs(*n, join_path(client_ip_path, "trusted_proxies"));
            }
            if (const YamlNode* n = client_ip->find("proxy_protocol")) {
                if (auto v =
                        choice(*n, join_path(client_ip_path, "proxy_protocol"), proxy_protocols)) {
                    s.proxy_protocol = *v;
                }
            }
        }
        bool tls_listens = false;
        if (const YamlNode* n = section(map, "tls", path)) {
            tls_listens = tls(*n, join_path(path, "tls"));
        }
        if (_empty_listen_node != nullptr && !tls_listens) {
            error(_empty_listen_node->mark, join_path(path, "listen"),
                  "nothing to serve: server.listen and server.tls.listen are both empty");
        }
    }

    // server.tls. Returns whether it names at least one listener (valid or not), so that an
    // empty server.listen is not reported on top of a bad TLS address.
    bool tls(const YamlNode& map, const std::string& path) {
        check_keys(map, path, tls_keys);
        TlsConfig t;
        bool listens = false;
        if (const YamlNode* n = map.find("listen")) {
            std::string p = join_path(path, "listen");
            if (list(*n, p, "[\"0.0.0.0:443\"]") != nullptr) {
                listens = !n->children.empty();
                for (size_t i = 0; i < n->children.size(); ++i) {
                    const YamlNode& item = n->children[i];
                    std::string item_path = index_path(p, i);
                    auto addr = listen_address(item, item_path);
                    if (!addr) {
                        continue;
                    }
                    if (const ListenAddress* other = overlapping(_cfg.server.listen, *addr)) {
                        error(item.mark, item_path,
                              addr->text + " overlaps server.listen " + other->text);
                    } else if (const ListenAddress* before = overlapping(t.listen, *addr)) {
                        error(item.mark, item_path,
                              addr->text + " overlaps " + before->text + " listed before it");
                    } else {
                        t.listen.push_back(std::move(*addr));
                        _tls_listen_marks.push_back(item.mark);
                    }
                }
            }
        }
        const YamlNode* certs = map.find("certificates");
        if (certs != nullptr) {
            tls_certificates(*certs, join_path(path, "certificates"), t.certificates);
        }
        if (listens && (certs == nullptr || (certs->is_sequence() && certs->children.empty()))) {
            error(certs != nullptr ? certs->mark : owner_mark(map), join_path(path, "certificates"),
                  "needs at least one {cert: PATH, key: PATH} when server.tls.listen is set");
        }
        if (const YamlNode* n = map.find("min_version")) {
            std::string p = join_path(path, "min_version");
            if (n->is_scalar() && (n->value == "1.0" || n->value == "1.1")) {
                error(n->mark, p,
                      "TLS " + n->value + " is never offered (nor " +
                          (n->value == "1.0" ? "1.1" : "1.0") + "): expected 1.2 or 1.3");
            } else if (auto v = choice(*n, p, tls_versions)) {
                t.min_version = *v;
            }
        }
        if (const YamlNode* n = map.find("session_tickets")) {
            if (auto v = choice(*n, join_path(path, "session_tickets"), booleans)) {
                t.session_tickets = *v;
            }
        }
        if (!listens && certs != nullptr && !t.certificates.empty()) {
            warn(owner_mark(map), path,
                 "certificates are set but server.tls.listen is empty: TLS is not served");
        }
        if (!t.listen.empty()) {
            _cfg.server.tls = std::move(t);
        }
        return listens;
    }

    void tls_certificates(const YamlNode& n, const std::string& path,
                          std::vector<TlsCertificate>& out) {
        if (list(n, path, "[{cert: PATH, key: PATH}]") == nullptr) {
            return;
        }
        for (size_t i = 0; i < n.children.size(); ++i) {
            const YamlNode& item = n.children[i];
            std::string p = index_path(path, i);
            if (!item.is_mapping()) {
                error(item.mark, p,
                      "expected a mapping like {cert: PATH, key: PATH}, found " + describe(item));
                continue;
            }
            check_keys(item, p, tls_certificate_keys);
            TlsCertificate c;
            c.mark = item.mark;
            bool ok = true;
            for (auto [key, target] : {std::pair{"cert", &c.cert}, std::pair{"key", &c.key}}) {
                const YamlNode* v = required(item, key, p);
                auto text = v != nullptr ? nonempty_string(*v, join_path(p, key)) : std::nullopt;
                if (text) {
                    *target = resolve_path(*text);
                } else {
                    ok = false;
                }
            }
            if (ok) {
                out.push_back(std::move(c));
            }
        }
    }

    // A path of the configuration that names a file next to it: relative paths are taken from
    // the configuration's directory, so that `check` and `serve` read the same files whatever
    // the working directory.
    std::string resolve_path(const std::string& path) const {
        std::filesystem::path p(path);
        if (p.is_relative() && !_cfg.directory.empty()) {
            return (std::filesystem::path(_cfg.directory) / p).string();
        }
        return path;
    }

    static const ListenAddress* overlapping(const std::vector<ListenAddress>& list,
                                            const ListenAddress& addr) {
        for (const ListenAddress& other : list) {
            if (listen_overlaps(other, addr)) {
                return &other;
            }
        }
        return nullptr;
    }

    void admin(const YamlNode& map, const std::string& path) {
        check_keys(map, path, admin_keys);
        if (const YamlNode* n = map.find("listen")) {
            _cfg.admin.listen = listen_address(*n, join_path(path, "listen"));
            _admin_listen_node = n;
        }
        if (const YamlNode* n = map.find("max_connections")) {
            if (auto v = integer(*n, join_path(path, "max_connections"), 1, 65536)) {
                _cfg.admin.max_connections = static_cast<uint32_t>(*v);
            }
        }
    }

    void spool(const YamlNode& map, const std::string& path) {
        SpoolConfig& s = _cfg.spool;
        check_keys(map, path, spool_keys);
        if (const YamlNode* n = map.find("dir")) {
            if (auto v = nonempty_string(*n, join_path(path, "dir"))) {
                s.dir = *v;
            }
        }
        if (const YamlNode* n = map.find("durability")) {
            if (auto v = choice(*n, join_path(path, "durability"), durabilities)) {
                s.durability = *v;
            }
        }
        if (const YamlNode* n = map.find("segment_size")) {
            if (auto v = size(*n, join_path(path, "segment_size"), 1ull << 20, 4ull << 30)) {
                s.segment_size = *v;
            }
        }
        if (const YamlNode* n = map.find("retention")) {
            if (auto v = duration(*n, join_path(path, "retention"), ns_per_ms)) {
                s.retention_ns = *v;
            }
        }
    }

    void apply_defaults() {
        if (!_listen_given && _cfg.server.listen.empty()) {
            _cfg.server.listen.push_back(*parse_listen_address("0.0.0.0:8080"));
        }
        if (!_cfg.admin.listen && _admin_listen_node == nullptr) {
            _cfg.admin.listen = parse_listen_address("127.0.0.1:9090");
        }
    }

    void check_admin_clash() {
        if (!_cfg.admin.listen) {
            return;
        }
        const ListenAddress& admin = *_cfg.admin.listen;
        for (size_t i = 0; i < _cfg.server.listen.size(); ++i) {
            const ListenAddress& pub = _cfg.server.listen[i];
            if (!listen_overlaps(admin, pub)) {
                continue;
            }
            const std::string why =
                ": the control plane never shares a socket with the public plane";
            if (_admin_listen_node != nullptr) {
                error(_admin_listen_node->mark, "admin.listen",
                      admin.text + " overlaps server.listen " + pub.text + why);
            } else if (i < _listen_marks.size()) {
                error(_listen_marks[i], index_path("server.listen", i),
                      pub.text + " overlaps the default admin.listen " + admin.text + why);
            }
        }
        if (!_cfg.server.tls) {
            return;
        }
        for (size_t i = 0; i < _cfg.server.tls->listen.size(); ++i) {
            const ListenAddress& pub = _cfg.server.tls->listen[i];
            if (!listen_overlaps(admin, pub)) {
                continue;
            }
            const std::string why =
                ": the control plane never shares a socket with the public plane";
            if (_admin_listen_node != nullptr) {
                error(_admin_listen_node->mark, "admin.listen",
                      admin.text + " overlaps server.tls.listen " + pub.text + why);
            } else if (i < _tls_listen_marks.size()) {
                error(_tls_listen_marks[i], index_path("server.tls.listen", i),
                      pub.text + " overlaps the default admin.listen " + admin.text + why);
            }
        }
    }

    // ---- routes ------------------------------------------------------------------------------

    std::optional<RoutePath> route_path(const YamlNode& n, const std::string& p) {
        auto text = nonempty_string(n, p);
        if (!text) {
            return std::nullopt;
        }
        std::string why;
        auto path = parse_route_path(*text, why);
        if (!path) {
            error(n.mark, p, why);
        }
        return path;
    }

    std::optional<FieldRef> field_ref(const YamlNode& n, const std::string& path,
                                      const std::optional<RoutePath>& route_shape,
                                      const std::string& route_path_text) {
        auto text = string(n, path);
        if (!text) {
            return std::nullopt;
        }
        std::string why;
        auto ref = parse_field_ref(*text, &why);
        if (!ref) {
            error(n.mark, path, why + ", found " + quote(*text));
            return std::nullopt;
        }
        if (ref->kind == FieldRef::Kind::path && route_shape &&
            !route_shape->has_param(ref->name)) {
            error(n.mark, path,
                  "the route's path " + quote(route_path_text) + " has no {" + ref->name +
                      "} parameter");
            return std::nullopt;
        }
        return ref;
    }

    // A member of `routes` or `tokens`: its key must be a name and its value a mapping.
    bool named_mapping(const YamlNode& member, const std::string& p, std::string_view what,
                       std::string_view keys) {
        if (!is_name(member.key)) {
            error(member.key_mark, p,
                  std::string(what) + " names are 1 to 64 characters of [a-z0-9_-], found " +
                      quote(member.key));
            return false;
        }
        if (!member.is_mapping()) {
            error(member.mark, p,
                  "expected a mapping (" + std::string(keys) + "), found " + describe(member));
            return false;
        }
        return true;
    }

    void routes(const YamlNode& map, const std::string& path) {
        for (const YamlNode& member : map.children) {
            std::string p = join_path(path, member.key);
            if (!named_mapping(member, p, "route", "path, verify, ...")) {
                continue;
            }
            RouteConfig r;
            r.name = member.key;
            r.mark = member.key_mark;
            std::optional<RoutePath> shape;
            const YamlNode* path_node = required(member, "path", p);
            route(member, p, r, shape);
            if (shape && path_node != nullptr) {
                check_path_clashes(*shape, r, path_node->mark, join_path(p, "path"));
            }
            _route_paths.push_back(std::move(shape));
            _route_path_marks.push_back(path_node != nullptr ? path_node->mark : member.key_mark);
            _cfg.routes.push_back(std::move(r));
        }
    }

    // Refuses a route whose path the router could not tell from an earlier route's (routes.hh):
    // the same shape, or paths that share a request path without one being more specific.
    void check_path_clashes(const RoutePath& shape, const RouteConfig& r, const SourceMark& mark,
                            const std::string& p) {
        for (size_t i = 0; i < _cfg.routes.size(); ++i) {
            if (!_route_paths[i]) {
                continue;
            }
            const RouteConfig& earlier = _cfg.routes[i];
            const PathRelation relation = relate(shape, *_route_paths[i]);
            if (relation != PathRelation::same && relation != PathRelation::crossing) {
                continue;
            }
            std::string message = quote(r.path, std::string::npos);
            message += relation == PathRelation::same ? " has the same shape as " : " overlaps ";
            message += "route " + earlier.name + "'s path " +
                       quote(earlier.path, std::string::npos) + " (" +
                       detail::format_mark(_route_path_marks[i]) + "): ";
            if (relation == PathRelation::same) {
                message += "a request could not tell them apart (a route is chosen by its path, "
                           "then the method is checked: list every method in one route's "
                           "methods)";
            } else {
                message += "both match " +
                           quote(shared_path(*_route_paths[i], shape), std::string::npos) +
                           " and neither is more specific (literal wherever the other is): no "
                           "route is the clear one for it";
            }
            error(mark, p, std::move(message));
        }
    }

    void route(const YamlNode& map, const std::string& p, RouteConfig& r,
               std::optional<RoutePath>& shape) {
        check_keys(map, p, route_keys);
        if (const YamlNode* n = map.find("path")) {
            shape = route_path(*n, join_path(p, "path"));
            if (shape) {
                r.path = n->value;
            }
        }
        r.methods = {"POST"};
        if (const YamlNode* n = map.find("methods")) {
            methods(*n, join_path(p, "methods"), r);
        }
        bool verify_ok = false;
        if (const YamlNode* n = required(map, "verify", p)) {
            std::string vp = join_path(p, "verify");
            if (!n->is_mapping()) {
                error(n->mark, vp, "expected a mapping (scheme, secrets), found " + describe(*n));
            } else {
                verify_ok = verify(*n, vp, r);
            }
        }
        if (const YamlNode* n = section(map, "dedup", p)) {
            std::string dp = join_path(p, "dedup");
            check_keys(*n, dp, dedup_keys);
            DedupConfig d;
            bool ok = true;
            if (const YamlNode* w = required(*n, "window", dp)) {
                auto v = duration(*w, join_path(dp, "window"), ns_per_ms);
                ok = ok && v.has_value();
                d.window_ns = v.value_or(0);
            } else {
                ok = false;
            }
            if (const YamlNode* k = n->find("key")) {
                auto ref = field_ref(*k, join_path(dp, "key"), shape, r.path);
                ok = ok && ref.has_value();
                if (ref) {
                    d.key = std::move(*ref);
                }
            } else if (verify_ok) {
                if (auto def = default_dedup_key(r.verify.scheme)) {
                    d.key = *parse_field_ref(*def);
                } else {
                    error(owner_mark(*n), join_path(dp, "key"),
                          "dedup.key is required for scheme " +
                              std::string(scheme_name(r.verify.scheme)) +
                              " (it has no standard delivery id)");
                    ok = false;
                }
            }
            if (ok) {
                r.dedup = std::move(d);
            }
        }
        if (const YamlNode* n = section(map, "ordering", p)) {
            std::string op = join_path(p, "ordering");
            check_keys(*n, op, ordering_keys);
            OrderingConfig o;
            const YamlNode* k = required(*n, "key", op);
            const YamlNode* t = required(*n, "timestamp", op);
            std::optional<FieldRef> key, ts;
            if (k != nullptr) {
                key = field_ref(*k, join_path(op, "key"), shape, r.path);
            }
            if (t != nullptr) {
                ts = field_ref(*t, join_path(op, "timestamp"), shape, r.path);
            }
            if (key && ts) {
                r.ordering = OrderingConfig{std::move(*key), std::move(*ts)};
            }
        }
        if (const YamlNode* n = section(map, "rate_limit", p)) {
            std::string rp = join_path(p, "rate_limit");
            check_keys(*n, rp, rate_limit_keys);
            RateLimitConfig rl;
            if (const YamlNode* v = n->find("per_ip")) {
                rl.per_ip = rate(*v, join_path(rp, "per_ip"));
            }
            if (const YamlNode* v = n->find("route")) {
                rl.route = rate(*v, join_path(rp, "route"));
            }
            if (const YamlNode* v = n->find("burst")) {
                if (auto b = integer(*v, join_path(rp, "burst"), 1,
                                     std::numeric_limits<uint32_t>::max())) {
                    rl.burst = static_cast<uint32_t>(*b);
                }
            }
            if (n->find("per_ip") == nullptr && n->find("route") == nullptr) {
                error(owner_mark(*n), rp, "needs per_ip, route or both");
            }
            r.rate_limit = rl;
        }
        if (const YamlNode* n = map.find("allow")) {
            r.allow = cidrs(*n, join_path(p, "allow"));
        }
        if (const YamlNode* n = map.find("max_attempts")) {
            if (auto v = integer(*n, join_path(p, "max_attempts"), 1, 1000)) {
                r.max_attempts = static_cast<uint32_t>(*v);
            }
        }
        if (const YamlNode* n = map.find("durability")) {
            r.durability = choice(*n, join_path(p, "durability"), durabilities);
        }
        if (const YamlNode* n = map.find("keep_headers")) {
            keep_headers(*n, join_path(p, "keep_headers"), r);
        }
        const YamlNode* deliver_node = map.find("deliver");
        if (deliver_node != nullptr) {
            deliver(*deliver_node, join_path(p, "deliver"), r);
        }
        if (const YamlNode* n = map.find("ordered")) {
            std::string op = join_path(p, "ordered");
            r.ordered = choice(*n, op, booleans).value_or(false);
            // A deliver that is not a list is reported already.
            bool none = deliver_node == nullptr ||
                        (deliver_node->is_sequence() && deliver_node->children.empty());
            if (r.ordered && none) {
                error(n->mark, op,
                      "ordered applies to push delivery: it needs deliver (the pull API hands "
                      "out jobs in any order)");
            }
        }
    }

    // The sinks every job of the route goes to: names out of the sinks section, each once.
    void deliver(const YamlNode& n, const std::string& p, RouteConfig& r) {
        if (list(n, p, "[app, bus]") == nullptr) {
            return;
        }
        for (size_t i = 0; i < n.children.size(); ++i) {
            std::string ip = index_path(p, i);
            auto name = string(n.children[i], ip);
            if (!name) {
                continue;
            }
            if (std::find(_sink_names.begin(), _sink_names.end(), *name) == _sink_names.end()) {
                std::string known;
                for (const std::string& s : _sink_names) {
                    known += (known.empty() ? "" : ", ") + s;
                }
                error(n.children[i].mark, ip,
                      "no sink named " + quote(*name) +
                          (known.empty() ? std::string(" (no sinks are defined)")
                                         : " (sinks: " + known + ")"));
            } else if (std::find(r.deliver.begin(), r.deliver.end(), *name) != r.deliver.end()) {
                error(n.children[i].mark, ip, *name + " is listed twice");
            } else {
                r.deliver.push_back(*name);
            }
        }
    }

    // Only the credentials left out of the spool can be kept: every other field is stored
    // already, except the hop-by-hop ones and the route's secret, which are never stored.
    void keep_headers(const YamlNode& n, const std::string& p, RouteConfig& r) {
        if (list(n, p, "[Authorization]") == nullptr) {
            return;
        }
        for (size_t i = 0; i < n.children.size(); ++i) {
            std::string ip = index_path(p, i);
            auto name = header_name(n.children[i], ip);
            if (!name) {
                continue;
            }
            const YamlNode& item = n.children[i];
            if (r.verify.scheme == Scheme::shared_secret && *name == r.verify.header) {
                error(
                    item.mark, ip,
                    quote(item.value) +
                        " carries this route's shared secret (verify.header): it is never stored");
            } else if (http::is_hop_by_hop(*name)) {
                error(item.mark, ip,
                      quote(item.value) + " describes the connection, not the webhook: hop-by-hop "
                                          "fields are never stored");
            } else if (http::credential_bit(*name) == 0) {
                error(item.mark, ip,
                      quote(item.value) +
                          " is stored already: keep_headers names the credentials to keep "
                          "(Authorization, Proxy-Authorization, Cookie)");
            } else if (std::find(r.keep_headers.begin(), r.keep_headers.end(), *name) !=
                       r.keep_headers.end()) {
                error(item.mark, ip, quote(item.value) + " is listed twice");
            } else {
                r.keep_headers.push_back(*name);
            }
        }
    }

    void methods(const YamlNode& n, const std::string& p, RouteConfig& r) {
        if (list(n, p, "[POST]") == nullptr) {
            return;
        }
        if (n.children.empty()) {
            error(n.mark, p, "needs at least one method");
            return;
        }
        r.methods.clear();
        for (size_t i = 0; i < n.children.size(); ++i) {
            std::string ip = index_path(p, i);
            auto m = string(n.children[i], ip);
            if (!m) {
                continue;
            }
            // Methods are case-sensitive (RFC 9110 9.1): "post" is not POST.
            bool upper = is_token(*m) && std::none_of(m->begin(), m->end(),
                                                      [](char c) { return c >= 'a' && c <= 'z'; });
            if (!upper) {
                error(n.children[i].mark, ip,
                      "expected an upper-case method like POST, found " + quote(*m));
                continue;
            }
            if (std::find(r.methods.begin(), r.methods.end(), *m) != r.methods.end()) {
                error(n.children[i].mark, ip, *m + " is listed twice");
                continue;
            }
            r.methods.push_back(*m);
        }
    }

    // ---- verify ------------------------------------------------------------------------------

    bool verify(const YamlNode& map, const std::string& p, RouteConfig& r) {
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

    bool hmac_options(const YamlNode& map, const std::string& p, VerifyConfig& v) {
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
    static std::string template_error(std::string_view t, bool with_timestamp) {
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

    bool secret_list(const YamlNode& n, const std::string& p, RouteConfig& r) {
        return secrets(
            n, p, "route", r.verify.secrets,
            [&](const Secret& s, const SourceMark& mark, const std::string& sp) {
                return check_secret_shape(s, r.verify.scheme, mark, sp);
            },
            "requests to route " + r.name + " are refused (secret_unset) until ");
    }

    // A list of secrets (a route's, a sink's signing keys), each checked by shape once it holds
    // something. An empty one is a warning that says what it means: skipped while others are
    // usable, else all_unset followed by what would make it usable.
    template <typename Shape>
    bool secrets(const YamlNode& n, const std::string& p, std::string_view owner,
                 std::vector<Secret>& out, Shape shape, const std::string& all_unset) {
        if (list(n, p, "[{env: NAME}]") == nullptr) {
            return false;
        }
        if (n.children.empty()) {
            error(n.mark, p, "needs at least one secret");
            return false;
        }
        if (n.children.size() > max_secrets_per_route) {
            error(n.children[max_secrets_per_route].mark, p,
                  "at most " + std::to_string(max_secrets_per_route) + " secrets per " +
                      std::string(owner) + " (rotation needs two or three)");
            return false;
        }
        bool ok = true;
        std::vector<EmptySecret> empty;
        size_t read = 0;
        for (size_t i = 0; i < n.children.size(); ++i) {
            std::optional<EmptySecret> unset;
            auto s = secret(n.children[i], index_path(p, i), unset);
            if (!s) {
                ok = false;
                continue;
            }
            if (unset) {
                empty.push_back(std::move(*unset));
            } else {
                const YamlNode& source = n.children[i].children[0];
                ok = shape(*s, source.mark, join_path(index_path(p, i), source.key)) && ok;
            }
            out.push_back(std::move(*s));
            ++read;
        }
        bool none_usable = empty.size() == read;
        for (EmptySecret& e : empty) {
            std::string consequence =
                none_usable ? all_unset + e.until : "this secret is skipped until " + e.until;
            warn(e.mark, e.path, e.what + ": " + consequence);
        }
        return ok;
    }

    // One {env: NAME}, {file: PATH} or {value: "..."}. Returns the secret, its material empty
    // when the variable is unset or the file unreadable (then unset says so, for a warning that
    // the caller words), or nullopt when the item is malformed (reported).
    std::optional<Secret> secret(const YamlNode& n, const std::string& p,
                                 std::optional<EmptySecret>& unset) {
        // Never describe a scalar here: a secret pasted in place of {value: ...} would be echoed.
        if (!n.is_mapping() || n.children.size() != 1) {
            std::string found = n.is_mapping()
                                    ? "a mapping of " + std::to_string(n.children.size()) + " keys"
                                : n.is_sequence() ? "a list"
                                : n.is_null()     ? "nothing"
                                                  : "a string";
            error(n.mark, p,
                  "expected one of {env: NAME}, {file: PATH} or {value: \"...\"}, found " + found);
            return std::nullopt;
        }
        const YamlNode& source = n.children[0];
        std::string sp = join_path(p, source.key);
        if (!contains(secret_keys, source.key)) {
            check_keys(n, p, secret_keys);
            return std::nullopt;
        }
        if (!source.is_scalar() || source.is_null()) {
            error(source.mark, sp,
                  std::string("expected a ") + (source.key == "value" ? "string" : "name") +
                      ", found " + (source.is_null() ? "nothing" : describe(source)));
            return std::nullopt;
        }
        Secret s;
        std::string what;
        std::string until;
        if (source.key == "env") {
            const std::string& name = source.value;
            if (name.empty() || name.find('=') != std::string::npos ||
                name.find('\0') != std::string::npos) {
                error(source.mark, sp,
                      "expected an environment variable name, found " + quote(name));
                return std::nullopt;
            }
            s.source = SecretSource::env;
            // The origin is printed (messages, check's summary, sign): escaped once, here.
            s.origin = "env:" + base::escape_text(name);
            const char* value = std::getenv(name.c_str());
            if (value == nullptr) {
                what = "env " + s.origin.substr(4) + " is not set";
                until = "it is";
            } else {
                s.material = value;
                what = "env " + s.origin.substr(4) + " is empty";
                until = "it is set";
            }
        } else if (source.key == "file") {
            const std::string& file = source.value;
            if (file.empty() || file.find('\0') != std::string::npos) {
                error(source.mark, sp, "expected a file path, found " + quote(file));
                return std::nullopt;
            }
            s.source = SecretSource::file;
            s.origin = "file:" + base::escape_text(file);
            if (auto failure = base::read_regular_file(file, max_secret_file_bytes, s.material)) {
                s.material.clear();
                what = "file " + s.origin.substr(5) + " cannot be read (" + *failure + ")";
                until = "it can";
            } else {
                strip_one_newline(s.material);
                what = "file " + s.origin.substr(5) + " is empty";
                until = "it holds the secret";
            }
        } else {
            s.source = SecretSource::value;
            s.origin = "value";
            s.material = source.value;
            what = "inline secret is empty";
            until = "it is set";
            warn(source.mark, sp, "inline secret: use {env: ...} or {file: ...} in production");
        }
        if (s.material.empty()) {
            unset = EmptySecret{source.mark, sp, std::move(what), std::move(until)};
        }
        return s;
    }

    static void strip_one_newline(std::string& s) {
        if (!s.empty() && s.back() == '\n') {
            s.pop_back();
            if (!s.empty() && s.back() == '\r') {
                s.pop_back();
            }
        }
    }

    // Errors name the secret by its origin: the material never reaches a message.
    bool check_secret_shape(const Secret& s, Scheme scheme, const SourceMark& mark,
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

    // ---- sinks -------------------------------------------------------------------------------

    void sinks(const YamlNode& map, const std::string& path) {
        for (const YamlNode& member : map.children) {
            std::string p = join_path(path, member.key);
            if (!named_mapping(member, p, "sink", "one of http, exec, nats or redis")) {
                continue;
            }
            _sink_names.push_back(member.key);
            check_keys(member, p, sink_kinds);
            const YamlNode* kind = nullptr;
            bool one = true;
            for (const YamlNode& k : member.children) {
                if (!contains(sink_kinds, k.key)) {
                    continue;
                }
                if (kind != nullptr) {
                    error(k.key_mark, join_path(p, k.key),
                          "a sink is of one kind, and this one is " + kind->key +
                              " already: define another sink for " + k.key);
                    one = false;
                } else {
                    kind = &k;
                }
            }
            if (kind == nullptr) {
                error(owner_mark(member), p, "needs one of http, exec, nats or redis");
                continue;
            }
            std::string kp = join_path(p, kind->key);
            if (!kind->is_mapping()) {
                error(kind->mark, kp, "expected a mapping, found " + describe(*kind));
                continue;
            }
            SinkConfig s;
            s.name = member.key;
            s.mark = member.key_mark;
            if (kind->key == "http") {
                s.kind = SinkConfig::Kind::http;
                http_sink(*kind, kp, s.name, s.http.emplace());
            } else if (kind->key == "exec") {
                s.kind = SinkConfig::Kind::exec;
                exec_sink(*kind, kp, s.exec.emplace());
            } else if (kind->key == "nats") {
                s.kind = SinkConfig::Kind::nats;
                nats_sink(*kind, kp, s.name, s.nats.emplace());
            } else {
                s.kind = SinkConfig::Kind::redis;
                redis_sink(*kind, kp, s.name, s.redis.emplace());
            }
            if (one) {
                _cfg.sinks.push_back(std::move(s));
            }
        }
    }

    // A sink that no route delivers to does nothing: likely a route's deliver was forgotten.
    void check_undelivered_sinks() {
        for (const SinkConfig& s : _cfg.sinks) {
            bool used = std::any_of(_cfg.routes.begin(), _cfg.routes.end(), [&](const auto& r) {
                return std::find(r.deliver.begin(), r.deliver.end(), s.name) != r.deliver.end();
            });
            if (!used) {
                warn(s.mark, join_path("sinks", s.name),
                     "sink " + s.name + " is not delivered to: no route lists it in deliver");
            }
        }
    }

    // A string checked by one of sinks.hh's functions, which return why it is wrong or "".
    template <typename Check>
    std::optional<std::string> checked(const YamlNode& n, const std::string& path, Check check) {
        auto text = nonempty_string(n, path);
        if (!text) {
            return std::nullopt;
        }
        if (std::string why = check(*text); !why.empty()) {
            error(n.mark, path, why);
            return std::nullopt;
        }
        return text;
    }

    // A sink's url, parsed by parse (sinks.hh) into out.
    template <typename Out>
    bool sink_url(const YamlNode& map, const std::string& p, Out& out,
                  bool (*parse)(std::string_view, Out&, std::string&)) {
        const YamlNode* n = required(map, "url", p);
        auto text = n != nullptr ? nonempty_string(*n, join_path(p, "url")) : std::nullopt;
        if (!text) {
            return false;
        }
        std::string why;
        if (!parse(*text, out, why)) {
            error(n->mark, join_path(p, "url"), why);
            return false;
        }
        return true;
    }

    void http_sink(const YamlNode& map, const std::string& p, const std::string& sink,
                   HttpSinkConfig& h) {
        check_keys(map, p, http_sink_keys);
        bool url_ok = sink_url(map, p, h, detail::parse_http_url);
        if (const YamlNode* n = map.find("method")) {
            std::string mp = join_path(p, "method");
            if (auto text = string(*n, mp)) {
                std::string why;
                auto method = detail::sink_method(*text, why);
                if (method) {
                    h.method = *method;
                } else {
                    error(n->mark, mp, why);
                }
            }
        }
        if (const YamlNode* n = map.find("timeout")) {
            h.timeout_ns = duration(*n, join_path(p, "timeout"), ns_per_ms).value_or(h.timeout_ns);
        }
        if (const YamlNode* n = map.find("concurrency")) {
            h.concurrency = static_cast<uint32_t>(
                integer(*n, join_path(p, "concurrency"), 1, 4096).value_or(h.concurrency));
        }
        if (const YamlNode* n = map.find("rate")) {
            h.rate = rate(*n, join_path(p, "rate"));
        }
        const YamlNode* sign = map.find("sign");
        bool signing = sign != nullptr && !sign->is_null();
        if (const YamlNode* n = section(map, "headers", p)) {
            sink_headers(*n, join_path(p, "headers"), signing, h.headers);
        }
        if (const YamlNode* n = map.find("ca")) {
            std::string cp = join_path(p, "ca");
            if (auto file = nonempty_string(*n, cp)) {
                if (url_ok && !h.tls) {
                    error(n->key_mark, cp,
                          "ca applies to https:// URLs only (it checks the server's certificate)");
                } else {
                    h.ca = resolve_path(*file);
                }
            }
        }
        if (const YamlNode* n = section(map, "sign", p)) {
            std::string sp = join_path(p, "sign");
            check_keys(*n, sp, sign_keys);
            if (const YamlNode* list = required(*n, "secrets", sp)) {
                secrets(
                    *list, join_path(sp, "secrets"), "sink", h.sign_secrets,
                    [&](const Secret& s, const SourceMark& mark, const std::string& path) {
                        return check_signing_secret(s, mark, path);
                    },
                    "sink " + sink + " has no signing secret until ");
            }
        }
    }

    void sink_headers(const YamlNode& map, const std::string& p, bool signing,
                      std::vector<SinkHeader>& out) {
        for (const YamlNode& member : map.children) {
            std::string hp = join_path(p, member.key);
            if (std::string why = detail::sink_header_name_error(member.key, signing);
                !why.empty()) {
                error(member.key_mark, hp, why);
                continue;
            }
            auto value = member.is_null() ? std::optional<std::string>("") : string(member, hp);
            if (!value) {
                continue;
            }
            if (std::string why = detail::sink_header_value_error(*value); !why.empty()) {
                error(member.mark, hp, why);
                continue;
            }
            std::string lower = detail::ascii_lowercase(member.key);
            bool twice = std::any_of(out.begin(), out.end(), [&](const SinkHeader& h) {
                return detail::ascii_lowercase(h.name) == lower;
            });
            if (twice) {
                error(member.key_mark, hp,
                      quote(member.key) + " is listed twice (header names ignore case)");
                continue;
            }
            out.push_back(SinkHeader{member.key, std::move(*value)});
        }
    }

    // Standard Webhooks signing: a whsec_ secret, checked like the standard scheme's.
    bool check_signing_secret(const Secret& s, const SourceMark& mark, const std::string& p) {
        if (!s.material.starts_with("whsec_")) {
            error(mark, p,
                  "secret " + s.origin +
                      (s.material.starts_with("whpk_")
                           ? " is a whpk_ public key: it checks signatures, signing needs the "
                             "whsec_ secret"
                           : " must be whsec_<base64> (a Standard Webhooks signing secret)"));
            return false;
        }
        return check_secret_shape(s, Scheme::standard, mark, p);
    }

    void exec_sink(const YamlNode& map, const std::string& p, ExecSinkConfig& e) {
        check_keys(map, p, exec_sink_keys);
        if (const YamlNode* n = required(map, "command", p)) {
            std::string cp = join_path(p, "command");
            if (list(*n, cp, "[\"/usr/local/bin/deploy\", \"--from-webhook\"]") != nullptr) {
                if (n->children.empty()) {
                    error(n->mark, cp, "needs at least the program: [\"/usr/local/bin/deploy\"]");
                }
                for (size_t i = 0; i < n->children.size(); ++i) {
                    command_argument(n->children[i], index_path(cp, i), i == 0, e.command);
                }
            }
        }
        if (const YamlNode* n = map.find("concurrency")) {
            e.concurrency = static_cast<uint32_t>(
                integer(*n, join_path(p, "concurrency"), 1, 256).value_or(e.concurrency));
        }
        if (const YamlNode* n = map.find("timeout")) {
            e.timeout_ns = duration(*n, join_path(p, "timeout"), ns_per_ms).value_or(e.timeout_ns);
        }
    }

    // Only the program is quoted in messages: an argument may hold something private.
    void command_argument(const YamlNode& n, const std::string& p, bool program,
                          std::vector<std::string>& out) {
        auto arg = string(n, p);
        if (!arg) {
            return;
        }
        if (arg->find('\0') != std::string::npos) {
            error(n.mark, p, "an argument cannot hold a NUL byte");
            return;
        }
        if (program) {
            if (std::string why = detail::command_path_error(*arg); !why.empty()) {
                error(n.mark, p, why);
            } else if (why = detail::command_run_error(*arg); !why.empty()) {
                warn(n.mark, p, base::escape_text(*arg) + " cannot be run here (" + why + ")");
            }
        }
        out.push_back(std::move(*arg));
    }

    void nats_sink(const YamlNode& map, const std::string& p, const std::string& sink,
                   NatsSinkConfig& c) {
        check_keys(map, p, nats_sink_keys);
        sink_url(map, p, c, detail::parse_nats_url);
        if (const YamlNode* n = required(map, "subject", p)) {
            c.subject =
                checked(*n, join_path(p, "subject"), detail::nats_subject_error).value_or("");
        }
        if (const YamlNode* n = map.find("max_in_flight")) {
            c.max_in_flight = static_cast<uint32_t>(
                integer(*n, join_path(p, "max_in_flight"), 1, 65536).value_or(c.max_in_flight));
        }
        const YamlNode* creds = section(map, "credentials", p);
        if (creds == nullptr) {
            return;
        }
        std::string cp = join_path(p, "credentials");
        check_keys(*creds, cp, nats_credential_keys);
        // One kind: user with password, token, or nkey_seed.
        const YamlNode* first = nullptr;
        for (const YamlNode& m : creds->children) {
            if (!contains(nats_credential_keys, m.key)) {
                continue;
            }
            auto kind_of = [](const std::string& key) {
                return key == "password" ? std::string("user") : key;
            };
            if (first == nullptr) {
                first = &m;
            } else if (kind_of(first->key) != kind_of(m.key)) {
                error(m.key_mark, join_path(cp, m.key),
                      "credentials are of one kind: user and password, token, or nkey_seed (" +
                          first->key + " is set already)");
                return;
            }
        }
        if (first == nullptr) {
            error(owner_mark(*creds), cp, "needs user and password, token, or nkey_seed");
            return;
        }
        if (creds->find("user") != nullptr || creds->find("password") != nullptr) {
            const YamlNode* user = required(*creds, "user", cp);
            const YamlNode* password = required(*creds, "password", cp);
            if (user != nullptr) {
                c.user =
                    checked(*user, join_path(cp, "user"), detail::user_name_error).value_or("");
            }
            if (password != nullptr) {
                c.password = credential(*password, join_path(cp, "password"), sink);
            }
        } else if (const YamlNode* n = creds->find("token")) {
            c.token = credential(*n, join_path(cp, "token"), sink);
        } else if (const YamlNode* n = creds->find("nkey_seed")) {
            std::string np = join_path(cp, "nkey_seed");
            c.nkey_seed = credential(*n, np, sink);
            if (c.nkey_seed && !c.nkey_seed->material.empty()) {
                if (std::string why = detail::nkey_seed_error(c.nkey_seed->material);
                    !why.empty()) {
                    error(n->mark, np, "secret " + c.nkey_seed->origin + " " + why);
                }
            }
        }
    }

    void redis_sink(const YamlNode& map, const std::string& p, const std::string& sink,
                    RedisSinkConfig& c) {
        check_keys(map, p, redis_sink_keys);
        sink_url(map, p, c, detail::parse_redis_url);
        if (const YamlNode* n = required(map, "stream", p)) {
            c.stream = checked(*n, join_path(p, "stream"), detail::redis_stream_error).value_or("");
        }
        if (const YamlNode* n = map.find("maxlen")) {
            c.maxlen = integer(*n, join_path(p, "maxlen"), 1,
                               static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                           .value_or(c.maxlen);
        }
        if (const YamlNode* creds = section(map, "credentials", p)) {
            std::string cp = join_path(p, "credentials");
            check_keys(*creds, cp, redis_credential_keys);
            if (const YamlNode* n = creds->find("user")) {
                c.user = checked(*n, join_path(cp, "user"), detail::user_name_error).value_or("");
            }
            if (const YamlNode* n = required(*creds, "password", cp)) {
                c.password = credential(*n, join_path(cp, "password"), sink);
            }
        }
    }

    // A password, token or seed: one secret, warned about while it holds nothing.
    std::optional<Secret> credential(const YamlNode& n, const std::string& p,
                                     const std::string& sink) {
        std::optional<EmptySecret> unset;
        auto s = secret(n, p, unset);
        if (unset) {
            warn(unset->mark, unset->path,
                 unset->what + ": sink " + sink + " cannot authenticate until " + unset->until);
        }
        return s;
    }

    // ---- tokens, integrity -------------------------------------------------------------------

    void tokens(const YamlNode& map, const std::string& path) {
        std::map<std::array<uint8_t, 32>, std::string> seen;
        for (const YamlNode& member : map.children) {
            std::string p = join_path(path, member.key);
            if (!named_mapping(member, p, "token", "sha256, scopes")) {
                continue;
            }
            check_keys(member, p, token_keys);
            TokenConfig t;
            t.name = member.key;
            bool ok = true;
            if (const YamlNode* n = required(member, "sha256", p)) {
                std::string sp = join_path(p, "sha256");
                auto text = string(*n, sp);
                auto decoded =
                    text && text->size() == 64 ? base::hex_decode(*text, t.sha256) : std::nullopt;
                if (!decoded) {
                    if (text) {
                        error(n->mark, sp,
                              "expected the token's SHA-256 as 64 hex characters (portcullis "
                              "token new prints it), found " +
                                  std::to_string(text->size()) + " characters");
                    }
                    ok = false;
                } else if (auto [it, inserted] = seen.emplace(t.sha256, t.name); !inserted) {
                    error(n->mark, sp, "same sha256 as token " + it->second);
                    ok = false;
                }
            } else {
                ok = false;
            }
            if (const YamlNode* n = required(member, "scopes", p)) {
                std::string sp = join_path(p, "scopes");
                if (list(*n, sp, "[\"jobs:consume:github\"]") == nullptr) {
                    ok = false;
                } else {
                    if (n->children.empty()) {
                        error(n->mark, sp, "needs at least one scope");
                        ok = false;
                    }
                    for (size_t i = 0; i < n->children.size(); ++i) {
                        std::string ip = index_path(sp, i);
                        auto scope = string(n->children[i], ip);
                        std::string why;
                        if (!scope) {
                            ok = false;
                        } else if (!admin::Scope::parse(*scope, &why)) {
                            error(n->children[i].mark, ip,
                                  "expected [!]resource:action[:route-glob] (like "
                                  "jobs:consume:github or !jobs:read:stripe), found " +
                                      quote(*scope) + ": " + why);
                            ok = false;
                        } else {
                            t.scopes.push_back(*scope);
                        }
                    }
                }
            } else {
                ok = false;
            }
            if (ok) {
                _cfg.tokens.push_back(std::move(t));
            }
        }
    }

    void integrity(const YamlNode& map, const std::string& path) {
        for (const YamlNode& member : map.children) {
            std::string p = join_path(path, member.key);
            auto pin = string(member, p);
            if (!pin) {
                continue;
            }
            std::array<uint8_t, 32> want{};
            std::string_view hex_part =
                std::string_view(*pin).substr(pin->starts_with("sha256:") ? 7 : 0);
            if (!pin->starts_with("sha256:") || hex_part.size() != 64 ||
                !base::hex_decode(hex_part, want)) {
                error(member.mark, p, "expected \"sha256:<64 hex>\", found " + quote(*pin));
                continue;
            }
            std::filesystem::path file(member.key);
            if (file.is_relative() && !_cfg.directory.empty()) {
                file = std::filesystem::path(_cfg.directory) / file;
            }
            std::array<uint8_t, SHA256_DIGEST_LENGTH> have{};
            std::string want_hex = sha256_hex(want);
            std::string shown = base::escape_text(file.string());
            if (auto failure = hash_regular_file(file.string(), have)) {
                error(member.key_mark, p,
                      "cannot read " + shown + " (" + *failure + ") to check its pinned sha256 " +
                          want_hex.substr(0, 12) + "...");
                continue;
            }
            std::string have_hex = sha256_hex(have);
            if (have != want) {
                error(member.mark, p,
                      shown + " does not match its pin: pinned sha256 " + want_hex.substr(0, 12) +
                          "..., file has " + have_hex.substr(0, 12) + "...");
                continue;
            }
            _cfg.integrity[member.key] = "sha256:" + want_hex;
        }
    }

    std::vector<Diagnostic>& _errors;
    std::vector<Diagnostic>& _warnings;
    Config& _cfg;
    const YamlNode* _admin_listen_node = nullptr;
    bool _listen_given = false;
    std::vector<SourceMark> _listen_marks;              // parallel to _cfg.server.listen
    const YamlNode* _empty_listen_node = nullptr;       // `server.listen: []`
    std::vector<SourceMark> _tls_listen_marks;          // parallel to _cfg.server.tls->listen
    std::vector<std::optional<RoutePath>> _route_paths; // parallel to _cfg.routes
    std::vector<SourceMark> _route_path_marks;          // parallel to _cfg.routes
    std::vector<std::string> _sink_names; // every well-named sink, valid or not: deliver's names
};

// ---- files and merging -----------------------------------------------------------------------

// Deep-merges from into into: mappings merge key by key; anything else defined on both sides is
// an error naming both places. A null (`key:` alone) yields to the other side.
void merge(YamlNode& into, YamlNode&& from, const std::string& path,
           std::vector<Diagnostic>& errors) {
    for (YamlNode& member : from.children) {
        YamlNode* existing = into.find(member.key);
        std::string p = join_path(path, member.key);
        if (existing == nullptr) {
            into.children.push_back(std::move(member));
        } else if (existing->is_mapping() && member.is_mapping()) {
            merge(*existing, std::move(member), p, errors);
        } else if (member.is_null()) {
            continue;
        } else if (existing->is_null()) {
            SourceMark key_mark = existing->key_mark;
            *existing = std::move(member);
            existing->key_mark = key_mark;
        } else {
            errors.push_back(Diagnostic{member.key_mark, p,
                                        "defined again here; first defined at " +
                                            detail::format_mark(existing->key_mark)});
        }
    }
}

struct Source {
    std::string file;
    std::string text;
};

LoadResult load_sources(const std::vector<Source>& sources, std::string directory) {
    LoadResult result;
    Config cfg;
    cfg.directory = std::move(directory);
    std::optional<YamlNode> root;
    for (const Source& src : sources) {
        cfg.files.push_back(src.file);
        detail::YamlDocument doc = detail::parse_yaml(src.file, src.text);
        for (Diagnostic& d : doc.errors) {
            result.errors.push_back(std::move(d));
        }
        if (!doc.root || doc.root->is_null()) {
            continue;
        }
        if (!doc.root->is_mapping()) {
            result.errors.push_back(Diagnostic{doc.root->mark, "",
                                               "expected a mapping of " + join_names(top_keys) +
                                                   " at the top level, found " +
                                                   describe(*doc.root)});
            continue;
        }
        if (!root) {
            root = std::move(doc.root);
        } else {
            merge(*root, std::move(*doc.root), "", result.errors);
        }
    }
    // A file that does not parse would make every later message a guess; stop here.
    if (!result.errors.empty()) {
        return result;
    }
    Walker walker(result.errors, result.warnings, cfg);
    if (root) {
        walker.walk(*root);
    } else {
        walker.walk(YamlNode{YamlNode::Kind::mapping});
    }
    // The walk goes section by section and some checks run after it (shape clashes, the admin
    // socket); report in reading order instead.
    auto reading_order = [&files = cfg.files](const Diagnostic& a, const Diagnostic& b) {
        auto file_index = [&files](const std::string& f) {
            return std::find(files.begin(), files.end(), f) - files.begin();
        };
        return std::tuple(file_index(a.mark.file), a.mark.line, a.mark.column) <
               std::tuple(file_index(b.mark.file), b.mark.line, b.mark.column);
    };
    std::stable_sort(result.errors.begin(), result.errors.end(), reading_order);
    std::stable_sort(result.warnings.begin(), result.warnings.end(), reading_order);
    if (result.errors.empty()) {
        result.config = std::move(cfg);
    }
    return result;
}

LoadResult load_path(const std::string& path) {
    LoadResult result;
    auto fail = [&](std::string message) {
        result.errors.push_back(Diagnostic{SourceMark{path, 0, 0}, "", std::move(message)});
        return result;
    };
    std::error_code ec;
    auto status = std::filesystem::status(path, ec);
    if (ec) {
        return fail("cannot read: " + ec.message());
    }
    std::vector<Source> sources;
    std::string directory;
    if (std::filesystem::is_directory(status)) {
        directory = path;
        std::vector<std::string> names;
        for (auto it = std::filesystem::directory_iterator(path, ec);
             !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
            std::string name = it->path().filename().string();
            if (name.empty() || name[0] == '.' || !name.ends_with(".yaml")) {
                continue;
            }
            std::error_code type_ec;
            if (!it->is_regular_file(type_ec)) {
                continue;
            }
            names.push_back(std::move(name));
        }
        if (ec) {
            return fail("cannot list the directory: " + ec.message());
        }
        if (names.empty()) {
            return fail("no *.yaml file in this directory");
        }
        std::sort(names.begin(), names.end());
        for (const std::string& name : names) {
            sources.push_back(Source{(std::filesystem::path(path) / name).string(), {}});
        }
    } else {
        std::filesystem::path parent = std::filesystem::path(path).parent_path();
        directory = parent.empty() ? "." : parent.string();
        sources.push_back(Source{path, {}});
    }
    for (Source& src : sources) {
        if (auto failure = base::read_regular_file(src.file, max_config_file_bytes, src.text)) {
            result.errors.push_back(
                Diagnostic{SourceMark{src.file, 0, 0}, "", "cannot read: " + *failure});
        }
    }
    if (!result.errors.empty()) {
        return result;
    }
    return load_sources(sources, std::move(directory));
}

LoadResult internal_error(const std::string& name, const char* what) {
    LoadResult result;
    result.errors.push_back(Diagnostic{SourceMark{name, 0, 0}, "",
                                       std::string("internal error while loading: ") + what});
    return result;
}

} // namespace

LoadResult load(const std::string& path) {
    try {
        return load_path(path);
    } catch (const std::exception& e) {
        return internal_error(path, e.what());
    } catch (...) {
        return internal_error(path, "unknown exception");
    }
}

LoadResult load_text(const std::string& name, const std::string& yaml) {
    try {
        return load_sources({Source{name, yaml}}, "");
    } catch (const std::exception& e) {
        return internal_error(name, e.what());
    } catch (...) {
        return internal_error(name, "unknown exception");
    }
}

} // namespace portcullis::config
