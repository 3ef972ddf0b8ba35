// sign: the operator's way to send a correctly signed request to a route by hand.
#include "commands.hh"

#include "portcullis/base/encoding.hh"
#include "portcullis/cli/args.hh"
#include "portcullis/config/config.hh"
#include "portcullis/verify/hmac.hh"
#include "portcullis/verify/signature_header.hh"
#include "portcullis/verify/standard_signer.hh"

#include <openssl/rand.h>

#include <array>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <vector>

namespace portcullis::cli {

namespace {

struct SignedHeader {
    std::string name;
    std::string value;
};

// Single-quotes s for a POSIX shell.
std::string shell_quote(std::string_view s) {
    std::string q = "'";
    for (char c : s) {
        if (c == '\'') {
            q += "'\\''";
        } else {
            q += c;
        }
    }
    return q + "'";
}

// MAC of the parts, one after another, as the verifier streams them.
std::vector<uint8_t> mac_of(config::Algorithm alg, std::span<const uint8_t> key,
                            std::initializer_list<std::string_view> parts) {
    verify::HmacKey k(alg, key);
    verify::HmacStream s;
    k.start(s);
    for (std::string_view p : parts) {
        s.update(p);
    }
    std::vector<uint8_t> mac(k.size());
    k.finish(s, mac.data());
    return mac;
}

std::string encode(std::span<const uint8_t> mac, config::Encoding e) {
    return e == config::Encoding::hex ? base::hex(mac) : base::base64(mac);
}

// A fresh Standard Webhooks message id: "msg_" and 16 random bytes, URL-safe.
std::string message_id() {
    uint8_t random[16];
    RAND_bytes(random, sizeof random);
    return "msg_" + base::base64(random, base::Base64Alphabet::url);
}

// The headers that make `body` pass the route's verification at unix time `now`, or an error.
std::vector<SignedHeader> sign(const config::RouteConfig& route, const std::string& body,
                               int64_t now, std::string& error) {
    const config::VerifyConfig& v = route.verify;
    if (v.scheme == config::Scheme::none) {
        return {};
    }
    if (v.secrets.empty() || v.secrets.front().material.empty()) {
        error = "route " + route.name + ": its first secret (" +
                (v.secrets.empty() ? std::string("none") : v.secrets.front().origin) +
                ") is not set";
        return {};
    }
    const std::string& secret_text = v.secrets.front().material;
    const auto secret = base::as_bytes(secret_text);
    const std::string ts = std::to_string(now);
    constexpr auto sha256 = config::Algorithm::sha256;
    switch (v.scheme) {
    case config::Scheme::github:
        return {{"X-Hub-Signature-256", "sha256=" + base::hex(mac_of(sha256, secret, {body}))}};
    case config::Scheme::stripe:
        return {{"Stripe-Signature",
                 "t=" + ts + ",v1=" + base::hex(mac_of(sha256, secret, {ts, ".", body}))}};
    case config::Scheme::slack:
        return {{"X-Slack-Request-Timestamp", ts},
                {"X-Slack-Signature",
                 "v0=" + base::hex(mac_of(sha256, secret, {"v0:", ts, ":", body}))}};
    case config::Scheme::standard: {
        // The loader checked the base64, so only a public key gives no HMAC key.
        const std::optional<verify::HmacKey> key = verify::standard_hmac_key(secret_text);
        if (!key) {
            error = "route " + route.name + ": its first secret (" + v.secrets.front().origin +
                    ") is a public key; signing needs a whsec_ secret, so list one first";
            return {};
        }
        const std::string id = message_id();
        std::array<char, verify::StandardSigner::signature_size> signature;
        const size_t n = verify::StandardSigner(*key).sign(id, now, body, signature);
        return {{"webhook-id", id},
                {"webhook-timestamp", ts},
                {"webhook-signature", std::string(signature.data(), n)}};
    }
    case config::Scheme::shopify:
        return {{"X-Shopify-Hmac-Sha256", base::base64(mac_of(sha256, secret, {body}))}};
    case config::Scheme::hmac: {
        verify::SignedTemplate t;
        t.parse(v.signed_template); // filled and checked by the loader
        std::string signed_text;
        t.render_prefix(ts, [&](std::string_view piece) { signed_text += piece; });
        std::vector<SignedHeader> headers;
        if (!v.timestamp_header.empty()) {
            headers.push_back({v.timestamp_header, ts});
        }
        headers.push_back(
            {v.header,
             v.prefix + encode(mac_of(v.algorithm, secret, {signed_text, body}), v.encoding)});
        return headers;
    }
    case config::Scheme::shared_secret:
        return {{v.header.empty() ? "X-Callback-Secret" : v.header, secret_text}};
    case config::Scheme::ed25519:
        error = "route " + route.name +
                ": scheme ed25519 is checked with the sender's public key; only the sender, "
                "who holds the private key, can sign";
        return {};
    case config::Scheme::none:
        break;
    }
    return {};
}

// The host and port of an http:// URL ("http://[::1]:8443/x" -> "::1", 8443; no port: 80), or
// nullopt when the URL is not http:// or its port is not a number.
std::optional<config::ListenAddress> http_authority(std::string_view url) {
    constexpr std::string_view scheme = "http://";
    std::string head(url.substr(0, scheme.size()));
    for (char& c : head) {
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c - 'A' + 'a');
        }
    }
    if (head != scheme) {
        return std::nullopt;
    }
    std::string_view authority = url.substr(scheme.size());
    authority = authority.substr(0, authority.find_first_of("/?#"));
    if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
        authority = authority.substr(at + 1);
    }
    config::ListenAddress addr;
    std::string_view port;
    if (authority.starts_with('[')) {
        size_t close = authority.find(']');
        if (close == std::string_view::npos) {
            return std::nullopt;
        }
        addr.host = std::string(authority.substr(1, close - 1));
        std::string_view rest = authority.substr(close + 1);
        if (!rest.empty() && rest.front() != ':') {
            return std::nullopt;
        }
        port = rest.empty() ? "" : rest.substr(1);
    } else {
        size_t colon = authority.rfind(':');
        addr.host = std::string(authority.substr(0, colon));
        port = colon == std::string_view::npos ? "" : authority.substr(colon + 1);
    }
    if (port.empty()) {
        addr.port = 80;
    } else {
        uint32_t value = 0;
        for (char c : port) {
            if (c < '0' || c > '9' || value > 65535) {
                return std::nullopt;
            }
            value = value * 10 + static_cast<uint32_t>(c - '0');
        }
        if (value > 65535) {
            return std::nullopt;
        }
        addr.port = static_cast<uint16_t>(value);
    }
    addr.text = std::string(authority);
    return addr;
}

// True when an http:// URL reaches one of server.tls.listen: the same port on that address, or
// any host (a name included) on a TLS listener bound to every address. A listener on port 0
// has no port known in advance, so nothing matches it.
bool reaches_tls_listener(const config::Config& cfg, std::string_view url) {
    auto addr = http_authority(url);
    if (!addr || !cfg.server.tls) {
        return false;
    }
    for (const config::ListenAddress& l : cfg.server.tls->listen) {
        if (config::listen_overlaps(l, *addr)) {
            return true;
        }
    }
    return false;
}

} // namespace

int run_sign(int argc, char** argv) {
    Command cmd{"sign",
                "-c PATH ROUTE [--body FILE] [--curl URL [--cacert FILE]]",
                "Print the headers of a correctly signed request for ROUTE, using its first "
                "secret and the current time; with --curl, a complete curl command instead. "
                "Without --body the body is {\"hello\":\"portcullis\"}. URL is the base "
                "(http://127.0.0.1:8080) or the full URL of the route. An http:// URL whose "
                "host and port are one of server.tls.listen is printed as https:// (saying so "
                "on stderr); --cacert passes the CA that signed the server's certificate to "
                "curl.",
                {{"config", 'c', "PATH", "YAML file or directory"},
                 {"body", 0, "FILE", "the request body to sign"},
                 {"curl", 0, "URL", "print a curl command for URL"},
                 {"cacert", 0, "FILE", "with --curl: curl --cacert FILE (a test CA)"}},
                1,
                1};
    ParsedArgs a = cmd.parse(argc, argv);
    if (a.help) {
        std::fputs(cmd.usage().c_str(), stdout);
        return 0;
    }
    if (!a.error.empty() || !a.has("config")) {
        std::fprintf(stderr, "portcullis sign: %s\n",
                     a.error.empty() ? "-c PATH is required" : a.error.c_str());
        return 2;
    }
    if (a.has("cacert") && !a.has("curl")) {
        std::fprintf(stderr, "portcullis sign: --cacert goes with --curl\n");
        return 2;
    }
    config::LoadResult loaded = config::load(*a.get("config"));
    if (!loaded.ok()) {
        for (const auto& d : loaded.errors) {
            std::fprintf(stderr, "error: %s\n", d.format().c_str());
        }
        return 2;
    }
    const std::string& name = a.positional[0];
    const config::RouteConfig* route = nullptr;
    for (const auto& r : loaded.config->routes) {
        if (r.name == name) {
            route = &r;
        }
    }
    if (route == nullptr) {
        std::string known;
        for (const auto& r : loaded.config->routes) {
            known += (known.empty() ? "" : ", ") + r.name;
        }
        std::fprintf(stderr, "portcullis sign: no route '%s' (routes: %s)\n", name.c_str(),
                     known.c_str());
        return 2;
    }
    std::string body = R"({"hello":"portcullis"})";
    if (auto file = a.get("body")) {
        std::ifstream in(*file, std::ios::binary);
        if (!in) {
            std::fprintf(stderr, "portcullis sign: cannot read %s\n", file->c_str());
            return 1;
        }
        std::ostringstream ss;
        ss << in.rdbuf();
        body = ss.str();
    }
    std::string error;
    std::vector<SignedHeader> headers = sign(*route, body, std::time(nullptr), error);
    if (!error.empty()) {
        std::fprintf(stderr, "portcullis sign: %s\n", error.c_str());
        return 2;
    }
    auto url = a.get("curl");
    if (!url) {
        for (const auto& h : headers) {
            std::printf("%s: %s\n", h.name.c_str(), h.value.c_str());
        }
        return 0;
    }
    std::string target = *url;
    if (reaches_tls_listener(*loaded.config, target)) {
        target = "https" + target.substr(4);
        std::fprintf(stderr,
                     "portcullis sign: %s is a TLS listener (server.tls.listen): the command "
                     "uses https://\n",
                     base::escape_text(http_authority(*url)->text).c_str());
    }
    size_t scheme_end = target.find("://");
    size_t path_start = target.find('/', scheme_end == std::string::npos ? 0 : scheme_end + 3);
    if (path_start == std::string::npos || path_start == target.size() - 1) {
        if (path_start != std::string::npos) {
            target.pop_back();
        }
        target += route->path;
    }
    std::string method = route->methods.empty() ? "POST" : route->methods.front();
    std::string line = "curl -sS -X " + method + " " + shell_quote(target);
    if (auto cacert = a.get("cacert")) {
        line += " --cacert " + shell_quote(*cacert);
    }
    line += " -H 'Content-Type: application/json'";
    for (const auto& h : headers) {
        line += " -H " + shell_quote(h.name + ": " + h.value);
    }
    if (auto file = a.get("body")) {
        line += " --data-binary @" + shell_quote(*file);
    } else {
        line += " --data-binary " + shell_quote(body);
    }
    std::printf("%s\n", line.c_str());
    return 0;
}

} // namespace portcullis::cli
