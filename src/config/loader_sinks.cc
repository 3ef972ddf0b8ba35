// The schema walk of sinks: each sink's kind and its fields, checked value by value with
// sinks.hh's functions.
#include "loader_walker.hh"

#include "portcullis/base/encoding.hh"

#include "sinks.hh"

#include <algorithm>
#include <limits>

namespace portcullis::config::detail {

namespace {

constexpr std::string_view sink_kinds[] = {"http", "exec", "nats", "redis"};
static_assert(keys_within(sink_kinds, keys_of<key_count("sinks.*")>("sinks.*")));
// A sink's keys: one kind, and the engine's settings for every kind.
// The keys a mapping allows come from the key table (portcullis/config/keys.hh).
constexpr auto sink_keys = keys_of<key_count("sinks.*")>("sinks.*");
constexpr auto breaker_keys = keys_of<key_count("sinks.*.breaker")>("sinks.*.breaker");
constexpr int64_t min_cooldown_ns = 100 * ns_per_ms;
constexpr int64_t max_cooldown_ns = 3600 * 1000 * ns_per_ms;
constexpr auto http_sink_keys = keys_of<key_count("sinks.*.http")>("sinks.*.http");
constexpr auto sign_keys = keys_of<key_count("sinks.*.http.sign")>("sinks.*.http.sign");
constexpr auto exec_sink_keys = keys_of<key_count("sinks.*.exec")>("sinks.*.exec");
constexpr auto nats_sink_keys = keys_of<key_count("sinks.*.nats")>("sinks.*.nats");
constexpr auto nats_credential_keys =
    keys_of<key_count("sinks.*.nats.credentials")>("sinks.*.nats.credentials");
constexpr auto redis_sink_keys = keys_of<key_count("sinks.*.redis")>("sinks.*.redis");
constexpr auto redis_credential_keys =
    keys_of<key_count("sinks.*.redis.credentials")>("sinks.*.redis.credentials");

} // namespace

void Walker::sinks(const YamlNode& map, const std::string& path) {
    for (const YamlNode& member : map.children) {
        std::string p = join_path(path, member.key);
        if (!named_mapping(member, p, "sink", "one of http, exec, nats or redis")) {
            continue;
        }
        _sink_names.push_back(member.key);
        check_keys(member, p, sink_keys);
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
        // Braced: without it GCC 12 takes the optional members' strings for maybe-uninitialized
        // here (fatal under -Werror), since the walk's functions are no longer all in one file.
        SinkConfig s{};
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
        if (const YamlNode* b = member.find("breaker")) {
            breaker(*b, join_path(p, "breaker"), s.breaker);
        }
        if (one) {
            _cfg.sinks.push_back(std::move(s));
        }
    }
}

void Walker::breaker(const YamlNode& map, const std::string& p, BreakerConfig& b) {
    if (!map.is_mapping()) {
        error(map.mark, p, "expected a mapping of failures and cooldown, found " + describe(map));
        return;
    }
    check_keys(map, p, breaker_keys);
    if (const YamlNode* n = map.find("failures")) {
        b.failures = static_cast<uint32_t>(
            integer(*n, join_path(p, "failures"), 1, 1000).value_or(b.failures));
    }
    if (const YamlNode* n = map.find("cooldown")) {
        std::string cp = join_path(p, "cooldown");
        if (auto d = duration(*n, cp, min_cooldown_ns)) {
            if (*d > max_cooldown_ns) {
                error(n->mark, cp, "at most 1h");
            } else {
                b.cooldown_ns = *d;
            }
        }
    }
}

// A string checked by one of sinks.hh's functions, which return why it is wrong or "".
template <typename Check>
std::optional<std::string> Walker::checked(const YamlNode& n, const std::string& path,
                                           Check check) {
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

// A sink's `ca` (a PEM file of CA certificates for a TLS url), resolved against the
// configuration's folder; the file is read when the sink starts. plain: the url has no TLS.
std::optional<std::string> Walker::sink_ca(const YamlNode& map, const std::string& p, bool plain,
                                           std::string_view scheme) {
    const YamlNode* n = map.find("ca");
    if (n == nullptr) {
        return std::nullopt;
    }
    std::string cp = join_path(p, "ca");
    std::optional<std::string> file = nonempty_string(*n, cp);
    if (!file) {
        return std::nullopt;
    }
    if (plain) {
        error(n->key_mark, cp,
              "ca applies to " + std::string(scheme) +
                  " URLs only (it checks the server's certificate)");
        return std::nullopt;
    }
    return resolve_path(*file);
}

// A sink's url, parsed by parse (sinks.hh) into out.
template <typename Out>
bool Walker::sink_url(const YamlNode& map, const std::string& p, Out& out,
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

void Walker::http_sink(const YamlNode& map, const std::string& p, const std::string& sink,
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
    h.ca = sink_ca(map, p, url_ok && !h.tls, "https://");
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

void Walker::sink_headers(const YamlNode& map, const std::string& p, bool signing,
                          std::vector<SinkHeader>& out) {
    for (const YamlNode& member : map.children) {
        std::string hp = join_path(p, member.key);
        if (std::string why = detail::sink_header_name_error(member.key, signing); !why.empty()) {
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
bool Walker::check_signing_secret(const Secret& s, const SourceMark& mark, const std::string& p) {
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

void Walker::exec_sink(const YamlNode& map, const std::string& p, ExecSinkConfig& e) {
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
void Walker::command_argument(const YamlNode& n, const std::string& p, bool program,
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

void Walker::nats_sink(const YamlNode& map, const std::string& p, const std::string& sink,
                       NatsSinkConfig& c) {
    check_keys(map, p, nats_sink_keys);
    const bool url_ok = sink_url(map, p, c, detail::parse_nats_url);
    c.ca = sink_ca(map, p, url_ok && !c.tls, "tls://");
    if (const YamlNode* n = required(map, "subject", p)) {
        c.subject = checked(*n, join_path(p, "subject"), detail::nats_subject_error).value_or("");
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
            c.user = checked(*user, join_path(cp, "user"), detail::user_name_error).value_or("");
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
            if (std::string why = detail::nkey_seed_error(c.nkey_seed->material); !why.empty()) {
                error(n->mark, np, "secret " + c.nkey_seed->origin + " " + why);
            }
        }
    }
}

void Walker::redis_sink(const YamlNode& map, const std::string& p, const std::string& sink,
                        RedisSinkConfig& c) {
    check_keys(map, p, redis_sink_keys);
    const bool url_ok = sink_url(map, p, c, detail::parse_redis_url);
    c.ca = sink_ca(map, p, url_ok && !c.tls, "rediss://");
    if (const YamlNode* n = required(map, "stream", p)) {
        c.stream = checked(*n, join_path(p, "stream"), detail::redis_stream_error).value_or("");
    }
    if (const YamlNode* n = map.find("maxlen")) {
        c.maxlen = integer(*n, join_path(p, "maxlen"), 1,
                           static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                       .value_or(c.maxlen);
    }
    if (const YamlNode* n = map.find("max_in_flight")) {
        c.max_in_flight = static_cast<uint32_t>(
            integer(*n, join_path(p, "max_in_flight"), 1, 65536).value_or(c.max_in_flight));
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
std::optional<Secret> Walker::credential(const YamlNode& n, const std::string& p,
                                         const std::string& sink) {
    std::optional<EmptySecret> unset;
    auto s = secret(n, p, unset);
    if (unset) {
        warn(unset->mark, unset->path,
             unset->what + ": sink " + sink + " cannot authenticate until " + unset->until, true);
    }
    return s;
}

} // namespace portcullis::config::detail
