#include "portcullis/config/summary.hh"

#include "portcullis/base/encoding.hh"
#include "portcullis/config/units.hh"

#include <algorithm>

namespace portcullis::config {

namespace {

constexpr std::string_view dot = " \u00b7 ";

std::string plural(size_t n, std::string_view one, std::string_view many) {
    return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
    std::string out;
    for (const std::string& p : parts) {
        if (!out.empty()) {
            out += sep;
        }
        out += p;
    }
    return out;
}

// Secrets by origin, "1 secret (env:NAME)", "env:NAME unset" when it holds nothing.
std::string secret_origins(const std::vector<Secret>& secrets) {
    std::vector<std::string> origins;
    origins.reserve(secrets.size());
    for (const Secret& s : secrets) {
        origins.push_back(s.material.empty() ? s.origin + " unset" : s.origin);
    }
    return plural(secrets.size(), "secret", "secrets") + " (" + join(origins, ", ") + ")";
}

std::string verify_summary(const VerifyConfig& v) {
    std::string out = "verify " + std::string(scheme_name(v.scheme));
    std::vector<std::string> options;
    if (v.scheme == Scheme::shared_secret) {
        options.push_back(v.header);
    }
    if (v.scheme == Scheme::hmac) {
        static constexpr std::string_view algorithms[] = {"sha256", "sha512", "sha1"};
        options.push_back(v.header);
        options.push_back(std::string(algorithms[static_cast<size_t>(v.algorithm)]) + " " +
                          (v.encoding == Encoding::hex ? "hex" : "base64"));
        if (!v.prefix.empty()) {
            options.push_back("prefix " + base::escape_text(v.prefix));
        }
        if (!v.timestamp_header.empty()) {
            options.push_back("timestamp " + v.timestamp_header);
            options.push_back("signs " + v.signed_template);
        }
    }
    if (v.tolerance_ns) {
        options.push_back("tolerance " + format_duration(*v.tolerance_ns));
    }
    if (!options.empty()) {
        out += " (" + join(options, ", ") + ")";
    }
    if (v.scheme == Scheme::none) {
        return out + ", unsigned";
    }
    return out + ", " + secret_origins(v.secrets);
}

std::string route_extras(const RouteConfig& r) {
    std::vector<std::string> extras;
    if (r.dedup) {
        extras.push_back("dedup " + base::escape_text(r.dedup->key.text) + " " +
                         format_duration(r.dedup->window_ns));
    }
    if (r.ordering) {
        extras.push_back("ordering " + base::escape_text(r.ordering->key.text) + " by " +
                         base::escape_text(r.ordering->timestamp.text));
    }
    if (r.rate_limit) {
        std::vector<std::string> parts;
        if (r.rate_limit->per_ip) {
            parts.push_back(format_rate(*r.rate_limit->per_ip) + " per ip");
        }
        if (r.rate_limit->burst != 0) {
            parts.push_back("burst " + std::to_string(r.rate_limit->burst));
        }
        if (r.rate_limit->route) {
            parts.push_back(format_rate(*r.rate_limit->route) + " route");
        }
        extras.push_back("rate " + join(parts, " "));
    }
    if (!r.allow.empty()) {
        extras.push_back("allow " + plural(r.allow.size(), "network", "networks"));
    }
    if (r.max_attempts != 10) {
        extras.push_back(plural(r.max_attempts, "attempt", "attempts"));
    }
    if (r.durability) {
        extras.push_back("durability " + std::string(durability_name(*r.durability)));
    }
    if (!r.keep_headers.empty()) {
        extras.push_back("keeps " + join(r.keep_headers, ", "));
    }
    if (!r.deliver.empty()) {
        extras.push_back("deliver " + join(r.deliver, ", "));
    }
    if (r.ordered) {
        extras.push_back("ordered per " +
                         (r.ordering ? base::escape_text(r.ordering->key.text) : "route"));
    }
    std::string out;
    for (const std::string& e : extras) {
        out += dot;
        out += e;
    }
    return out;
}

std::string origin(const std::optional<Secret>& s) {
    return s->material.empty() ? s->origin + " unset" : s->origin;
}

// A URL's query is left out: it is where tokens are passed (?code=..., ?token=...).
std::string shown_url(const std::string& url) {
    size_t query = url.find('?');
    return base::escape_text(query == std::string::npos ? url : url.substr(0, query) + "?...");
}

// What a sink of each kind delivers to and how, without a secret.
void append_kind_summary(const SinkConfig& s, std::vector<std::string>& parts) {
    if (s.http) {
        const HttpSinkConfig& h = *s.http;
        parts.push_back(h.method + " " + shown_url(h.url));
        parts.push_back("concurrency " + std::to_string(h.concurrency));
        parts.push_back("timeout " + format_duration(h.timeout_ns));
        if (h.rate) {
            parts.push_back("rate " + format_rate(*h.rate));
        }
        if (!h.headers.empty()) {
            std::vector<std::string> names;
            names.reserve(h.headers.size());
            for (const SinkHeader& f : h.headers) {
                names.push_back(f.name);
            }
            parts.push_back("adds " + join(names, ", "));
        }
        if (h.ca) {
            parts.push_back("ca " + base::escape_text(*h.ca));
        }
        if (!h.sign_secrets.empty()) {
            parts.push_back("signed, " + secret_origins(h.sign_secrets));
        }
    } else if (s.exec) {
        const ExecSinkConfig& e = *s.exec;
        // Only the program: an argument may hold something private.
        std::string program = e.command.empty() ? "" : base::escape_text(e.command[0]);
        if (e.command.size() > 1) {
            program += " + " + plural(e.command.size() - 1, "argument", "arguments");
        }
        parts.push_back(program);
        parts.push_back("concurrency " + std::to_string(e.concurrency));
        parts.push_back("timeout " + format_duration(e.timeout_ns));
    } else if (s.nats) {
        const NatsSinkConfig& n = *s.nats;
        parts.push_back(shown_url(n.url) + " subject " + base::escape_text(n.subject));
        parts.push_back("max_in_flight " + std::to_string(n.max_in_flight));
        if (n.password) {
            parts.push_back("user " + base::escape_text(n.user) + ", password " +
                            origin(n.password));
        } else if (n.token) {
            parts.push_back("token " + origin(n.token));
        } else if (n.nkey_seed) {
            parts.push_back("nkey_seed " + origin(n.nkey_seed));
        }
        if (n.ca) {
            parts.push_back("ca " + base::escape_text(*n.ca));
        }
    } else if (s.redis) {
        const RedisSinkConfig& r = *s.redis;
        parts.push_back(shown_url(r.url) + " stream " + base::escape_text(r.stream));
        parts.push_back("maxlen ~" + std::to_string(r.maxlen));
        parts.push_back("max_in_flight " + std::to_string(r.max_in_flight));
        if (r.password) {
            parts.push_back((r.user.empty() ? "" : "user " + base::escape_text(r.user) + ", ") +
                            "password " + origin(r.password));
        }
        if (r.ca) {
            parts.push_back("ca " + base::escape_text(*r.ca));
        }
    }
}

// What a sink delivers to and how, without a secret.
std::string sink_summary(const SinkConfig& s) {
    std::vector<std::string> parts;
    append_kind_summary(s, parts);
    const BreakerConfig defaults;
    if (s.breaker.failures != defaults.failures || s.breaker.cooldown_ns != defaults.cooldown_ns) {
        parts.push_back("breaker " + std::to_string(s.breaker.failures) + " failures, " +
                        format_duration(s.breaker.cooldown_ns));
    }
    return join(parts, dot);
}

std::string tls_summary(const TlsConfig& tls, const std::vector<std::string>& notes) {
    std::string out = "tls      min_version ";
    out += tls.min_version == TlsVersion::v1_3 ? "1.3" : "1.2";
    out += std::string(dot) + "session tickets " +
           (tls.session_tickets
                ? "on (keys rotated every " + format_duration(tls.ticket_rotation_ns) + ")"
                : std::string("off"));
    out += std::string(dot) + plural(tls.certificates.size(), "certificate", "certificates") + '\n';
    for (size_t i = 0; i < tls.certificates.size(); ++i) {
        const TlsCertificate& c = tls.certificates[i];
        out += "  " + base::escape_text(c.cert) + " (key " + base::escape_text(c.key) + ")";
        if (i < notes.size()) {
            out += std::string(dot) + notes[i];
        }
        out += '\n';
    }
    return out;
}

} // namespace

std::string summarize(const Config& cfg, unsigned cores,
                      const std::vector<std::string>& certificate_notes) {
    std::string out;
    std::vector<std::string> publics;
    for (const ListenAddress& l : cfg.server.listen) {
        publics.push_back(l.text);
    }
    out += "listen   public " + (publics.empty() ? std::string("none") : join(publics, ", "));
    if (cfg.server.tls) {
        std::vector<std::string> tls;
        for (const ListenAddress& l : cfg.server.tls->listen) {
            tls.push_back(l.text);
        }
        out += std::string(dot) + "tls " + join(tls, ", ");
    }
    if (cfg.admin.listen) {
        out += std::string(dot) + "admin " + cfg.admin.listen->text;
    }
    out += '\n';

    out += "shards   ";
    out += cfg.server.shards == 0 ? "auto (" + plural(cores, "core", "cores") + ")"
                                  : std::to_string(cfg.server.shards);
    out += std::string(dot) + "max " + std::to_string(cfg.server.max_connections) +
           " connections, " + std::to_string(cfg.server.max_connections_per_ip) + " per client";
    out += std::string(dot) + "drain " + format_duration(cfg.server.drain_timeout_ns) + '\n';

    out += "spool    " + base::escape_text(cfg.spool.dir) + std::string(dot) + "durability " +
           std::string(durability_name(cfg.spool.durability)) + std::string(dot) + "segments " +
           format_size(cfg.spool.segment_size) + std::string(dot) + "retention " +
           format_duration(cfg.spool.retention_ns) + '\n';

    const ServerConfig& s = cfg.server;
    out += "limits   header " + format_size(s.header_bytes) + std::string(dot) +
           plural(s.headers, "header", "headers") + std::string(dot) + "body " +
           format_size(s.body_bytes) + std::string(dot) + "timeouts header " +
           format_duration(s.header_timeout_ns) + " body " + format_duration(s.body_timeout_ns) +
           " idle " + format_duration(s.idle_timeout_ns) + '\n';

    if (!s.trusted_proxies.empty() || s.proxy_protocol != ProxyProtocol::off || !s.deny.empty()) {
        out += "clients  " + plural(s.trusted_proxies.size(), "trusted proxy", "trusted proxies") +
               std::string(dot) + "proxy_protocol " +
               std::string(proxy_protocol_name(s.proxy_protocol)) + std::string(dot) + "deny " +
               plural(s.deny.size(), "network", "networks") + '\n';
    }

    if (cfg.server.tls) {
        out += tls_summary(*cfg.server.tls, certificate_notes);
    }

    out += "routes   " + std::to_string(cfg.routes.size()) + '\n';
    size_t name_width = 0;
    size_t target_width = 0;
    std::vector<std::string> targets;
    for (const RouteConfig& r : cfg.routes) {
        targets.push_back(join(r.methods, ",") + " " + r.path);
        name_width = std::max(name_width, r.name.size());
        target_width = std::max(target_width, targets.back().size());
    }
    for (size_t i = 0; i < cfg.routes.size(); ++i) {
        const RouteConfig& r = cfg.routes[i];
        out += "  " + r.name + std::string(name_width - r.name.size() + 2, ' ') + targets[i] +
               std::string(target_width - targets[i].size() + 2, ' ') + verify_summary(r.verify) +
               route_extras(r) + '\n';
    }

    if (!cfg.sinks.empty()) {
        out += "sinks    " + std::to_string(cfg.sinks.size()) + '\n';
        size_t width = 0;
        for (const SinkConfig& s : cfg.sinks) {
            width = std::max(width, s.name.size());
        }
        for (const SinkConfig& s : cfg.sinks) {
            std::string kind(sink_kind_name(s.kind));
            out += "  " + s.name + std::string(width - s.name.size() + 2, ' ') + kind +
                   std::string(7 - kind.size(), ' ') + sink_summary(s) + '\n';
        }
    }

    if (!cfg.tokens.empty()) {
        std::vector<std::string> names;
        for (const TokenConfig& t : cfg.tokens) {
            names.push_back(t.name);
        }
        out += "tokens   " + std::to_string(cfg.tokens.size()) + " (" + join(names, ", ") + ")\n";
    }
    if (!cfg.integrity.empty()) {
        std::vector<std::string> files;
        for (const auto& [file, digest] : cfg.integrity) {
            files.push_back(base::escape_text(file));
        }
        out += "pinned   " + join(files, ", ") + '\n';
    }
    return out;
}

} // namespace portcullis::config
