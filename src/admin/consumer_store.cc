#include "portcullis/admin/consumer_store.hh"

#include "../config/sinks.hh"
#include "portcullis/admin/state_file.hh"
#include "portcullis/base/encoding.hh"

#include <algorithm>
#include <openssl/mem.h>
#include <openssl/rand.h>

namespace portcullis::admin {

namespace {

constexpr StateFile consumer_file{consumer_state_file_name, "portcullis-consumers 1", "consumer",
                                  max_consumers, 0600};
constexpr std::string_view none_field = "-";
constexpr size_t max_url = 2048;

bool visible_ascii(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

std::string optional_field(std::string_view f) {
    return f == none_field ? std::string() : std::string(f);
}

// "" or why the line "consumer <name> <created_at> <sha256> <secret> <url> <health> <route>..."
// is wrong.
std::string parse_consumer_line(std::string_view line, Consumer& c) {
    const std::vector<std::string_view> f = state_fields(line);
    if (f.size() < 8 || f[0] != "consumer") {
        return "expected \"consumer <name> <created_at> <sha256> <secret> <url> <health_path> "
               "<route>...\"";
    }
    // "-" stands for none: an empty field would be a second spelling of the same consumer.
    if (std::find(f.begin(), f.end(), std::string_view()) != f.end()) {
        return "an empty field (two spaces, or one at the start or the end of the line)";
    }
    c.name = std::string(f[1]);
    if (!parse_state_time(f[2], c.created_at)) {
        return "expected created_at as Unix nanoseconds";
    }
    if (!parse_state_digest(f[3], c.token_sha256)) {
        return "expected the token's SHA-256 as 64 hex characters";
    }
    c.secret = optional_field(f[4]);
    c.url = optional_field(f[5]);
    c.health_path = optional_field(f[6]);
    for (size_t i = 7; i < f.size(); ++i) {
        c.routes.emplace_back(f[i]);
    }
    return consumer_error(c);
}

} // namespace

std::vector<std::string> Consumer::scopes() const {
    std::vector<std::string> out;
    for (const std::string& r : routes) {
        out.push_back("jobs:consume:" + r);
        out.push_back("jobs:read:" + r);
    }
    return out;
}

std::string consumer_error(const Consumer& c) {
    if (!config::is_name(c.name) || c.name.size() > config::max_consumer_name) {
        return "name: 1 to " + std::to_string(config::max_consumer_name) +
               " characters of [a-z0-9_-]";
    }
    if (c.routes.empty() || c.routes.size() > max_consumer_routes) {
        return "routes: 1 to " + std::to_string(max_consumer_routes) + " route names";
    }
    for (size_t i = 0; i < c.routes.size(); ++i) {
        if (!config::is_name(c.routes[i])) {
            return "routes: \"" + base::escape_text(c.routes[i]) + "\" is not a route name";
        }
        if (std::find(c.routes.begin(), c.routes.begin() + static_cast<long>(i), c.routes[i]) !=
            c.routes.begin() + static_cast<long>(i)) {
            return "routes: " + c.routes[i] + " listed twice";
        }
    }
    if (!c.url.empty()) {
        if (c.url.size() > max_url || !visible_ascii(c.url)) {
            return "url: at most 2048 visible ASCII characters";
        }
        config::HttpSinkConfig http;
        std::string why;
        if (!config::detail::parse_http_url(c.url, http, why)) {
            return "url: " + why;
        }
        if (!c.secret.starts_with("whsec_") || c.secret.size() < 10 || !visible_ascii(c.secret)) {
            return "a consumer with a url needs its whsec_ signing secret";
        }
    } else if (!c.secret.empty()) {
        return "a signing secret without a url";
    }
    if (!c.health_path.empty()) {
        if (c.url.empty()) {
            return "health_path: needs a url (the probe goes to its host)";
        }
        if (c.health_path.front() != '/' || c.health_path.size() > max_health_path ||
            !visible_ascii(c.health_path)) {
            return "health_path: '/' then at most 1023 visible ASCII characters";
        }
    }
    return "";
}

std::string parse_consumer_state(std::string_view text, const std::string& path,
                                 std::vector<Consumer>& out) {
    out.clear();
    std::string err = walk_state(consumer_file, text, path, [&](std::string_view line) {
        Consumer c;
        std::string why = parse_consumer_line(line, c);
        if (!why.empty()) {
            return why;
        }
        for (const Consumer& seen : out) {
            if (seen.name == c.name) {
                why = "consumer " + c.name + " listed twice";
            } else if (seen.token_sha256 == c.token_sha256) {
                why = "consumer " + c.name + " has the same token sha256 as " + seen.name;
            }
        }
        out.push_back(std::move(c));
        return why;
    });
    if (!err.empty()) {
        out.clear();
    }
    return err;
}

std::string format_consumer_state(const std::vector<Consumer>& consumers) {
    std::string records;
    auto field = [](const std::string& s) { return s.empty() ? std::string(none_field) : s; };
    for (const Consumer& c : consumers) {
        records += "consumer " + c.name + " " + std::to_string(c.created_at) + " " +
                   base::hex(c.token_sha256) + " " + field(c.secret) + " " + field(c.url) + " " +
                   field(c.health_path);
        for (const std::string& r : c.routes) {
            records += " " + r;
        }
        records += '\n';
    }
    std::string text = seal_state(consumer_file, records);
    OPENSSL_cleanse(records.data(), records.size());
    return text;
}

std::string read_consumer_state(const std::string& dir, std::vector<Consumer>& out) {
    out.clear();
    return read_state_file(consumer_file, dir, [&](std::string_view text, const std::string& path) {
        return parse_consumer_state(text, path, out);
    });
}

std::string write_consumer_state(const std::string& dir, const std::vector<Consumer>& consumers) {
    std::string text = format_consumer_state(consumers);
    std::string err = write_state_file(consumer_file, dir, text);
    OPENSSL_cleanse(text.data(), text.size());
    return err;
}

std::string generate_signing_secret() {
    uint8_t raw[32];
    RAND_bytes(raw, sizeof raw);
    std::string secret = "whsec_" + base::base64(raw);
    OPENSSL_cleanse(raw, sizeof raw);
    return secret;
}

std::string apply_consumers(config::Config& cfg, const std::vector<Consumer>& consumers) {
    std::erase_if(cfg.sinks, [](const config::SinkConfig& s) {
        return s.name.starts_with(config::consumer_prefix);
    });
    for (config::RouteConfig& r : cfg.routes) {
        std::erase_if(r.deliver,
                      [](const std::string& s) { return s.starts_with(config::consumer_prefix); });
    }
    const std::string file = cfg.spool.dir + "/" + std::string(consumer_state_file_name);
    for (const Consumer& c : consumers) {
        const std::string where = file + ": consumer " + c.name + ": ";
        if (std::string why = consumer_error(c); !why.empty()) {
            return where + why;
        }
        std::vector<config::RouteConfig*> routes;
        for (const std::string& name : c.routes) {
            auto it = std::find_if(cfg.routes.begin(), cfg.routes.end(),
                                   [&](const config::RouteConfig& r) { return r.name == name; });
            if (it == cfg.routes.end()) {
                std::string err = where;
                err += "route ";
                err += name;
                err += " is not configured (put it back, or remove the consumer first with "
                       "DELETE /v1/consumers/";
                err += c.name;
                err += ")";
                return err;
            }
            routes.push_back(&*it);
        }
        if (c.url.empty()) {
            continue;
        }
        config::SinkConfig sink;
        sink.name = c.sink_name();
        sink.kind = config::SinkConfig::Kind::http;
        sink.mark = {file, 0, 0};
        config::HttpSinkConfig http;
        std::string why;
        if (!config::detail::parse_http_url(c.url, http, why)) {
            std::string err = where;
            err += "url: ";
            err += why;
            return err;
        }
        config::Secret secret;
        secret.material = c.secret;
        secret.source = config::SecretSource::file;
        secret.origin = "file:" + file;
        http.sign_secrets.push_back(std::move(secret));
        sink.http = std::move(http);
        if (!c.health_path.empty()) {
            sink.health =
                config::HealthProbeConfig{c.health_path, cfg.admin.consumers.health_interval_ns};
        }
        cfg.sinks.push_back(std::move(sink));
        for (config::RouteConfig* r : routes) {
            r->deliver.push_back(c.sink_name());
        }
    }
    return "";
}

} // namespace portcullis::admin
