#include "portcullis/admin/consumer_store.hh"

#include "../config/sinks.hh"
#include "portcullis/base/encoding.hh"
#include "portcullis/base/file.hh"

#include <algorithm>
#include <cerrno>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/stat.h>

namespace portcullis::admin {

namespace {

constexpr std::string_view version_line = "portcullis-consumers 1";
constexpr std::string_view checksum_prefix = "sha256 ";
constexpr std::string_view none_field = "-";
constexpr size_t max_file_bytes = 4 << 20;
constexpr size_t max_url = 2048;

std::string sha256_hex(std::string_view text) {
    TokenDigest d{};
    SHA256(reinterpret_cast<const uint8_t*>(text.data()), text.size(), d.data());
    return base::hex(d);
}

// A decimal int64 >= 0 without sign or leading zero (but "0").
bool parse_time(std::string_view s, int64_t& out) {
    if (s.empty() || s.size() > 19 || (s.size() > 1 && s[0] == '0')) {
        return false;
    }
    int64_t n = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
        const int64_t digit = c - '0';
        if (n > (INT64_MAX - digit) / 10) {
            return false;
        }
        n = n * 10 + digit;
    }
    out = n;
    return true;
}

// Splits at single spaces; an empty field is kept so that the caller refuses it.
std::vector<std::string_view> fields(std::string_view line) {
    std::vector<std::string_view> out;
    while (true) {
        const size_t sp = line.find(' ');
        out.push_back(line.substr(0, sp));
        if (sp == std::string_view::npos) {
            return out;
        }
        line.remove_prefix(sp + 1);
    }
}

bool visible_ascii(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

std::string optional_field(std::string_view f) {
    return f == none_field ? std::string() : std::string(f);
}

// "" or why the line "consumer <name> <created_at> <sha256> <secret> <url> <health> <route>..."
// is wrong.
std::string parse_consumer_line(std::string_view line, Consumer& c) {
    const std::vector<std::string_view> f = fields(line);
    if (f.size() < 8 || f[0] != "consumer") {
        return "expected \"consumer <name> <created_at> <sha256> <secret> <url> <health_path> "
               "<route>...\"";
    }
    c.name = std::string(f[1]);
    if (!parse_time(f[2], c.created_at)) {
        return "expected created_at as Unix nanoseconds";
    }
    const bool lower =
        std::all_of(f[3].begin(), f[3].end(), [](char ch) { return ch < 'A' || ch > 'Z'; });
    auto n = f[3].size() == 64 && lower ? base::hex_decode(f[3], c.token_sha256) : std::nullopt;
    if (!n || *n != c.token_sha256.size()) {
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
    const std::string_view whole = text;
    size_t line = 0;
    bool checked = false;
    std::string err;
    while (!text.empty() && err.empty()) {
        ++line;
        const std::string where = path + ":" + std::to_string(line) + ": ";
        const size_t end = text.find('\n');
        if (end == std::string_view::npos) {
            err = where + "no newline at the end of the line (cut short?)";
            break;
        }
        const std::string_view l = text.substr(0, end);
        const size_t at = static_cast<size_t>(l.data() - whole.data());
        text.remove_prefix(end + 1);
        if (checked) {
            err = where + "text after the checksum line";
        } else if (line == 1) {
            if (l != version_line) {
                err = where + "expected \"" + std::string(version_line) +
                      "\" (not a consumer state file, or one written by a newer portcullis)";
            }
        } else if (l.starts_with(checksum_prefix)) {
            if (l.substr(checksum_prefix.size()) != sha256_hex(whole.substr(0, at))) {
                err = where + "checksum does not match the lines above (the file was damaged "
                              "or edited)";
            }
            checked = true;
        } else if (out.size() >= max_consumers) {
            err = where + "more than " + std::to_string(max_consumers) + " consumers";
        } else {
            Consumer c;
            if (std::string why = parse_consumer_line(l, c); !why.empty()) {
                err = where + why;
                break;
            }
            for (const Consumer& seen : out) {
                if (seen.name == c.name) {
                    err = where + "consumer " + c.name + " listed twice";
                } else if (seen.token_sha256 == c.token_sha256) {
                    err =
                        where + "consumer " + c.name + " has the same token sha256 as " + seen.name;
                }
            }
            out.push_back(std::move(c));
        }
    }
    if (err.empty() && line == 0) {
        err = path + ":1: empty file (cut short?)";
    }
    if (err.empty() && !checked) {
        err = path + ":" + std::to_string(line) + ": no checksum line at the end (cut short?)";
    }
    if (!err.empty()) {
        out.clear();
    }
    return err;
}

std::string format_consumer_state(const std::vector<Consumer>& consumers) {
    std::string text(version_line);
    text += '\n';
    auto field = [](const std::string& s) { return s.empty() ? std::string(none_field) : s; };
    for (const Consumer& c : consumers) {
        text += "consumer " + c.name + " " + std::to_string(c.created_at) + " " +
                base::hex(c.token_sha256) + " " + field(c.secret) + " " + field(c.url) + " " +
                field(c.health_path);
        for (const std::string& r : c.routes) {
            text += " " + r;
        }
        text += '\n';
    }
    text += std::string(checksum_prefix) + sha256_hex(text) + "\n";
    return text;
}

std::string read_consumer_state(const std::string& dir, std::vector<Consumer>& out) {
    out.clear();
    const std::string path = dir + "/" + std::string(consumer_state_file_name);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
        return {};
    }
    std::string text;
    if (auto why = base::read_regular_file(path, max_file_bytes, text)) {
        return "cannot read " + path + ": " + *why;
    }
    return parse_consumer_state(text, path, out);
}

std::string write_consumer_state(const std::string& dir, const std::vector<Consumer>& consumers) {
    std::string text = format_consumer_state(consumers);
    std::string err = base::replace_file(
        dir + "/" + std::string(consumer_state_file_name),
        [&](int fd) { return base::write_all(fd, text.data(), text.size()); }, 0600);
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
