// Value checks of the sinks section; the walk that applies them is in loader_sinks.cc.
#include "sinks.hh"

#include "portcullis/base/encoding.hh"
#include "portcullis/http/header_policy.hh"

#include "text.hh"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

namespace portcullis::config::detail {

namespace {

bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_hex(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// A byte for a message: printable ASCII as 'c', anything else escaped.
std::string shown_byte(char c) {
    return "'" + base::escape_text(std::string_view(&c, 1)) + "'";
}

// RFC 3986 3.2.2's reg-name, narrowed to what resolvers take: dot-separated labels of 1 to 63
// letters, digits, '-' (not first or last) and '_' (container and service names use it), 253
// characters at most. A name whose last label is all digits is not a name: it must be an IPv4
// address, written as a dotted quad (no octal, no short forms).
std::string host_error(std::string_view host) {
    if (host.empty()) {
        return "the host is missing";
    }
    if (host.size() > 253) {
        return "the host is longer than 253 characters";
    }
    size_t start = 0;
    std::string_view last;
    while (start <= host.size()) {
        size_t dot = host.find('.', start);
        std::string_view label = host.substr(
            start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (label.empty() || label.size() > 63) {
            return "host " + quote(host) +
                   " is not a host name (labels of 1 to 63 characters between single dots)";
        }
        for (char c : label) {
            if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_') {
                return "host " + quote(host) + " holds " + shown_byte(c) +
                       ": expected a host name, an IPv4 address or a bracketed IPv6 address";
            }
        }
        if (label.front() == '-' || label.back() == '-') {
            return "host " + quote(host) + " has a label starting or ending with '-'";
        }
        last = label;
        if (dot == std::string_view::npos) {
            break;
        }
        start = dot + 1;
    }
    if (std::all_of(last.begin(), last.end(), is_digit) && !parse_cidr(host)) {
        return "host " + quote(host) + " is neither a host name nor an IPv4 address a.b.c.d";
    }
    return {};
}

// RFC 3986 pchar, plus '/' and '?' (the path's separators and the query's start).
bool is_path_byte(char c) {
    return is_alpha(c) || is_digit(c) ||
           std::string_view("-._~!$&'()*+,;=:@/?").find(c) != std::string_view::npos;
}

std::string path_error(std::string_view rest) {
    for (size_t i = 0; i < rest.size(); ++i) {
        char c = rest[i];
        if (c == '%') {
            if (i + 2 >= rest.size() || !is_hex(rest[i + 1]) || !is_hex(rest[i + 2])) {
                return "'%' in the path starts no escape: write %25 for a '%'";
            }
            i += 2;
        } else if (c == '#') {
            return "a fragment (#...) is never sent to the server: remove it";
        } else if (!is_path_byte(c)) {
            return shown_byte(c) + " in the path must be percent-encoded";
        }
    }
    return {};
}

// The scheme, lowercased, must be one of two; expected says which for the message.
bool scheme_is(const SinkUrl& url, std::string_view plain, std::string_view secure,
               std::string_view expected, std::string& why) {
    if (url.scheme == plain || url.scheme == secure) {
        return true;
    }
    why = "expected " + std::string(expected) + " URL, found scheme " + quote(url.scheme);
    return false;
}

// The template with {route} put in for a route's name, or why its placeholders are wrong. Route
// names are [a-z0-9_-]: "route" stands for all of them in what is checked after.
std::optional<std::string> expand_route(std::string_view t, std::string& why) {
    std::string out;
    for (size_t i = 0; i < t.size(); ++i) {
        if (t[i] == '}') {
            why = "a '}' outside a placeholder; the one placeholder is {route}";
            return std::nullopt;
        }
        if (t[i] != '{') {
            out += t[i];
            continue;
        }
        size_t close = t.find('}', i);
        if (close == std::string_view::npos) {
            why = "unclosed '{'; the one placeholder is {route}";
            return std::nullopt;
        }
        if (t.substr(i, close - i + 1) != "{route}") {
            why = "unknown placeholder " + quote(t.substr(i, close - i + 1)) +
                  " (the one placeholder is {route})";
            return std::nullopt;
        }
        out += "route";
        i = close;
    }
    return out;
}

std::string printable_error(std::string_view s, std::string_view what) {
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f) {
            return std::string(what) + " are printable ASCII without spaces, found " +
                   shown_byte(c);
        }
    }
    return {};
}

std::optional<uint16_t> parse_port(std::string_view s) {
    if (s.empty() || s.size() > 5 || s[0] == '0' || !std::all_of(s.begin(), s.end(), is_digit)) {
        return std::nullopt;
    }
    unsigned v = 0;
    for (char c : s) {
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v > 65535) {
        return std::nullopt;
    }
    return static_cast<uint16_t>(v);
}

} // namespace

std::optional<SinkUrl> parse_sink_url(std::string_view text, std::string& why) {
    const std::string shape =
        "expected scheme://host[:port][/path], like https://app.internal/hooks";
    size_t sep = text.find("://");
    if (sep == std::string_view::npos || sep == 0) {
        why = shape;
        return std::nullopt;
    }
    SinkUrl url;
    std::string_view scheme = text.substr(0, sep);
    if (!is_alpha(scheme[0]) || !std::all_of(scheme.begin(), scheme.end(), [](char c) {
            return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.';
        })) {
        why = shape;
        return std::nullopt;
    }
    url.scheme = ascii_lowercase(scheme);
    std::string_view after = text.substr(sep + 3);
    size_t end = after.find_first_of("/?#");
    std::string_view authority = after.substr(0, end);
    std::string_view rest = end == std::string_view::npos ? std::string_view() : after.substr(end);
    // Before anything of the authority is shown: it may hold a password.
    if (authority.find('@') != std::string_view::npos) {
        why = "a URL holds no user or password (they would be printed and logged): set them in "
              "credentials, or for http in a header";
        return std::nullopt;
    }
    for (char c : text) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f) {
            why = "a URL is ASCII without spaces or control bytes (percent-encode them), found " +
                  shown_byte(c);
            return std::nullopt;
        }
    }
    std::string_view host;
    std::string_view port;
    bool has_port = false;
    if (!authority.empty() && authority[0] == '[') {
        size_t close = authority.find(']');
        if (close == std::string_view::npos) {
            why = "unclosed '[' in the host: IPv6 addresses are written [2001:db8::1]";
            return std::nullopt;
        }
        host = authority.substr(1, close - 1);
        std::string copy(host);
        std::array<uint8_t, 16> addr{};
        if (inet_pton(AF_INET6, copy.c_str(), addr.data()) != 1) {
            why = quote(host) + " is not an IPv6 address (zones like %eth0 are not taken)";
            return std::nullopt;
        }
        std::string_view after_host = authority.substr(close + 1);
        if (!after_host.empty() && after_host[0] != ':') {
            why = "expected ':' and a port after ']', found " + quote(after_host);
            return std::nullopt;
        }
        has_port = !after_host.empty();
        port = has_port ? after_host.substr(1) : std::string_view();
    } else {
        size_t colon = authority.find(':');
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos) {
            has_port = true;
            port = authority.substr(colon + 1);
            if (port.find(':') != std::string_view::npos) {
                why = "IPv6 addresses go in brackets: scheme://[2001:db8::1]:port";
                return std::nullopt;
            }
        }
        if (std::string e = host_error(host); !e.empty()) {
            why = e;
            return std::nullopt;
        }
    }
    url.host = ascii_lowercase(host);
    if (has_port) {
        url.port = parse_port(port);
        if (!url.port) {
            why = "port must be a number from 1 to 65535, found " + quote(port);
            return std::nullopt;
        }
    }
    if (std::string e = path_error(rest); !e.empty()) {
        why = e;
        return std::nullopt;
    }
    url.path_and_query = std::string(rest);
    return url;
}

bool parse_http_url(std::string_view text, HttpSinkConfig& out, std::string& why) {
    auto url = parse_sink_url(text, why);
    if (!url || !scheme_is(*url, "http", "https", "an http:// or https://", why)) {
        return false;
    }
    out.url = std::string(text);
    out.tls = url->scheme == "https";
    out.host = url->host;
    out.port = url->port.value_or(out.tls ? 443 : 80);
    out.path_and_query = url->path_and_query.empty()          ? "/"
                         : url->path_and_query.front() == '?' ? "/" + url->path_and_query
                                                              : url->path_and_query;
    return true;
}

bool parse_nats_url(std::string_view text, NatsSinkConfig& out, std::string& why) {
    auto url = parse_sink_url(text, why);
    if (!url || !scheme_is(*url, "nats", "tls", "a nats:// or tls://", why)) {
        return false;
    }
    if (!url->path_and_query.empty() && url->path_and_query != "/") {
        why = "a NATS URL has no path or query: the subject is set by subject";
        return false;
    }
    out.url = std::string(text);
    out.tls = url->scheme == "tls";
    out.host = url->host;
    out.port = url->port.value_or(4222);
    return true;
}

bool parse_redis_url(std::string_view text, RedisSinkConfig& out, std::string& why) {
    auto url = parse_sink_url(text, why);
    if (!url || !scheme_is(*url, "redis", "rediss", "a redis:// or rediss://", why)) {
        return false;
    }
    std::string_view db = url->path_and_query;
    db.remove_prefix(db.empty() ? 0 : 1);
    uint64_t index = 0;
    bool ok = db.size() <= 10 && (db.size() <= 1 || db[0] != '0') &&
              std::all_of(db.begin(), db.end(), is_digit);
    for (char c : db) {
        index = index * 10 + static_cast<uint64_t>(c - '0');
    }
    if (!ok || index > 2147483647) {
        why = "a Redis URL's path is the database number (redis://host:6379/0), found " +
              quote(url->path_and_query);
        return false;
    }
    out.url = std::string(text);
    out.tls = url->scheme == "rediss";
    out.host = url->host;
    out.port = url->port.value_or(6379);
    out.db = static_cast<uint32_t>(index);
    return true;
}

std::string nats_subject_error(std::string_view subject) {
    std::string why;
    auto expanded = expand_route(subject, why);
    if (!expanded) {
        return why;
    }
    if (std::string e = printable_error(*expanded, "NATS subjects"); !e.empty()) {
        return e;
    }
    if (expanded->find_first_of("*>") != std::string::npos) {
        return "a subject to publish to has no wildcards ('*', '>')";
    }
    if (expanded->front() == '.' || expanded->back() == '.' ||
        expanded->find("..") != std::string::npos) {
        return "a NATS subject is tokens between single dots, none of them empty";
    }
    if (expanded->front() == '$') {
        return "subjects starting with $ belong to NATS itself ($JS, $SYS): choose another";
    }
    return {};
}

std::string redis_stream_error(std::string_view stream) {
    std::string why;
    auto expanded = expand_route(stream, why);
    if (!expanded) {
        return why;
    }
    return printable_error(*expanded, "stream names");
}

std::optional<std::string> sink_method(std::string_view text, std::string& why) {
    if (!is_token(text)) {
        why = "expected a method like POST (token characters), found " + quote(text);
        return std::nullopt;
    }
    std::string upper(text);
    for (char& c : upper) {
        if (c >= 'a' && c <= 'z') {
            c = static_cast<char>(c - 'a' + 'A');
        }
    }
    if (upper == "CONNECT" || upper == "HEAD" || upper == "TRACE") {
        why = upper + " cannot carry the job's body (a delivery sends it): use POST, PUT or PATCH";
        return std::nullopt;
    }
    return upper;
}

std::string sink_header_name_error(std::string_view name, bool signing) {
    if (!is_token(name)) {
        return "expected a header name (token characters), found " + quote(name);
    }
    std::string lower = ascii_lowercase(name);
    if (lower.starts_with("portcullis-")) {
        return "Portcullis-* fields are set by portcullis on every delivery";
    }
    if (lower == "host" || lower == "content-length") {
        return quote(name) + " is set by portcullis for each delivery";
    }
    if (http::is_hop_by_hop(lower)) {
        return quote(name) +
               " describes the connection, not the delivery: portcullis sets the hop-by-hop "
               "fields itself";
    }
    if (signing &&
        (lower == "webhook-id" || lower == "webhook-timestamp" || lower == "webhook-signature")) {
        return quote(name) + " is set by sign (Standard Webhooks) on every delivery";
    }
    return {};
}

std::string sink_header_value_error(std::string_view value) {
    for (char c : value) {
        auto u = static_cast<unsigned char>(c);
        if ((u < 0x20 && c != '\t') || u == 0x7f) {
            return "a header value holds no control bytes (CR, LF, NUL, ...), found " +
                   shown_byte(c);
        }
    }
    return {};
}

namespace {

// The first file named `name` that PATH finds and this process may execute, as execvp would.
std::optional<std::string> find_on_path(std::string_view name) {
    const char* path = std::getenv("PATH");
    std::string_view dirs = path != nullptr ? path : "";
    while (!dirs.empty()) {
        size_t colon = dirs.find(':');
        std::string_view dir = dirs.substr(0, colon);
        dirs.remove_prefix(colon == std::string_view::npos ? dirs.size() : colon + 1);
        if (dir.empty() || dir[0] != '/') {
            continue; // the working directory's programs are no answer for serve
        }
        std::string candidate =
            std::string(dir) + (dir.back() == '/' ? "" : "/") + std::string(name);
        if (command_run_error(candidate).empty()) {
            return candidate;
        }
    }
    return std::nullopt;
}

} // namespace

std::string command_path_error(std::string_view program) {
    if (program.empty()) {
        return "the program must not be empty";
    }
    if (program[0] == '/') {
        return {};
    }
    std::string message = quote(program) + " is not an absolute path: ";
    if (program.find('/') != std::string_view::npos) {
        return message + "a relative one would depend on the working directory";
    }
    message += "commands are never looked up on PATH (check and serve may see different ones)";
    if (auto found = find_on_path(program)) {
        return message + "; on this host PATH finds " + base::escape_text(*found);
    }
    return message;
}

std::string command_run_error(const std::string& program) {
    struct stat st {};
    if (::stat(program.c_str(), &st) != 0) {
        return std::strerror(errno);
    }
    if (!S_ISREG(st.st_mode)) {
        return "not a regular file";
    }
    if (::access(program.c_str(), X_OK) != 0) {
        return std::strerror(errno);
    }
    return {};
}

std::string user_name_error(std::string_view user) {
    return printable_error(user, "user names");
}

std::string nkey_seed_error(std::string_view seed) {
    // A seed is the base32 (RFC 4648, unpadded) of a prefix byte pair, the 32-byte key and a
    // CRC-16: 58 characters, and a user's starts with SU.
    bool base32 = std::all_of(seed.begin(), seed.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7');
    });
    if (seed.size() != 58 || !seed.starts_with("SU") || !base32) {
        return "is not a NATS user nkey seed: expected SU followed by 56 base32 characters, "
               "found " +
               std::to_string(seed.size()) + " characters";
    }
    return {};
}

} // namespace portcullis::config::detail
