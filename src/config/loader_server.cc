// The schema walk of server (with tls), admin and spool.
#include "loader_walker.hh"

#include <limits>
#include <utility>

namespace portcullis::config::detail {

namespace {

// The keys a mapping allows come from the key table (portcullis/config/keys.hh).
constexpr auto server_keys = keys_of<key_count("server")>("server");
constexpr auto limits_keys = keys_of<key_count("server.limits")>("server.limits");
constexpr auto timeouts_keys = keys_of<key_count("server.timeouts")>("server.timeouts");
constexpr auto client_ip_keys = keys_of<key_count("server.client_ip")>("server.client_ip");
constexpr auto tls_keys = keys_of<key_count("server.tls")>("server.tls");
constexpr auto tls_certificate_keys =
    keys_of<key_count("server.tls.certificates[]")>("server.tls.certificates[]");
constexpr auto admin_keys = keys_of<key_count("admin")>("admin");
constexpr auto admin_consumers_keys = keys_of<key_count("admin.consumers")>("admin.consumers");
constexpr auto admin_events_keys = keys_of<key_count("admin.events")>("admin.events");
constexpr auto spool_keys = keys_of<key_count("spool")>("spool");
constexpr Choice<ProxyProtocol> proxy_protocols[] = {{"off", ProxyProtocol::off},
                                                     {"v1", ProxyProtocol::v1},
                                                     {"v2", ProxyProtocol::v2},
                                                     {"any", ProxyProtocol::any}};
constexpr Choice<TlsVersion> tls_versions[] = {{"1.2", TlsVersion::v1_2},
                                               {"1.3", TlsVersion::v1_3}};

} // namespace

void Walker::server(const YamlNode& map, const std::string& path) {
    ServerConfig& s = _cfg.server;
    check_keys(map, path, server_keys);
    if (const YamlNode* n = map.find("listen")) {
        std::string p = join_path(path, "listen");
        if (list(*n, p, "[\"0.0.0.0:8080\"]") != nullptr) {
            // Empty is fine when TLS listeners serve instead: decided once server.tls is read.
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
                              addr->text + " overlaps " + s.listen[j].text + " listed before it");
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
            if (auto v = choice(*n, join_path(client_ip_path, "proxy_protocol"), proxy_protocols)) {
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
bool Walker::tls(const YamlNode& map, const std::string& path) {
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

void Walker::tls_certificates(const YamlNode& n, const std::string& path,
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

const ListenAddress* Walker::overlapping(const std::vector<ListenAddress>& list,
                                         const ListenAddress& addr) {
    for (const ListenAddress& other : list) {
        if (listen_overlaps(other, addr)) {
            return &other;
        }
    }
    return nullptr;
}

void Walker::admin(const YamlNode& map, const std::string& path) {
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
    if (const YamlNode* events = section(map, "events", path)) {
        admin_events(*events, join_path(path, "events"));
    }
    if (const YamlNode* consumers = section(map, "consumers", path)) {
        admin_consumers(*consumers, join_path(path, "consumers"));
    }
}

void Walker::admin_consumers(const YamlNode& map, const std::string& path) {
    check_keys(map, path, admin_consumers_keys);
    if (const YamlNode* n = map.find("health_interval")) {
        // At most a day: a probe that rare would tell nothing about the consumer.
        if (auto v = duration(*n, join_path(path, "health_interval"), 1'000'000'000)) {
            if (*v > int64_t{86400} * 1'000'000'000) {
                error(n->mark, join_path(path, "health_interval"), "at most 24h");
            } else {
                _cfg.admin.consumers.health_interval_ns = *v;
            }
        }
    }
}

void Walker::admin_events(const YamlNode& map, const std::string& path) {
    check_keys(map, path, admin_events_keys);
    if (const YamlNode* n = map.find("buffer")) {
        if (auto v = integer(*n, join_path(path, "buffer"), 100, 1'000'000)) {
            _cfg.admin.events.buffer = static_cast<uint32_t>(*v);
        }
    }
    if (const YamlNode* n = map.find("subscribers")) {
        if (auto v = integer(*n, join_path(path, "subscribers"), 1, 1024)) {
            _cfg.admin.events.subscribers = static_cast<uint32_t>(*v);
        }
    }
    if (const YamlNode* n = map.find("backlog")) {
        if (auto v = size(*n, join_path(path, "backlog"), 64ull << 10, 256ull << 20)) {
            _cfg.admin.events.backlog = static_cast<size_t>(*v);
        }
    }
}

void Walker::spool(const YamlNode& map, const std::string& path) {
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

} // namespace portcullis::config::detail
