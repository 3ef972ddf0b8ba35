// sign: the operator's way to send a correctly signed request to a route by hand.
#include "commands.hh"

#include "portcullis/base/encoding.hh"
#include "portcullis/cli/args.hh"
#include "portcullis/config/config.hh"
#include "portcullis/verify/hmac.hh"

#include <cstdio>
#include <fstream>
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

// The headers that make `body` pass the route's verification now, or an error.
std::vector<SignedHeader> sign(const config::RouteConfig& route, const std::string& body,
                               std::string& error) {
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
    const std::string& secret = v.secrets.front().material;
    switch (v.scheme) {
    case config::Scheme::github: {
        verify::HmacKey key(config::Algorithm::sha256, base::as_bytes(secret));
        uint8_t mac[32];
        key.compute(base::as_bytes(body), mac);
        return {{"X-Hub-Signature-256", "sha256=" + base::hex(mac)}};
    }
    case config::Scheme::shared_secret:
        return {{v.header.empty() ? "X-Callback-Secret" : v.header, secret}};
    default:
        error = "route " + route.name + ": signing for scheme " +
                std::string(config::scheme_name(v.scheme)) + " is not available in this build yet";
        return {};
    }
}

} // namespace

int run_sign(int argc, char** argv) {
    Command cmd{"sign",
                "-c PATH ROUTE [--body FILE] [--curl URL]",
                "Print the headers of a correctly signed request for ROUTE, using its first "
                "secret and the current time; with --curl, a complete curl command instead. "
                "Without --body the body is {\"hello\":\"portcullis\"}. URL is the base "
                "(http://127.0.0.1:8080) or the full URL of the route.",
                {{"config", 'c', "PATH", "YAML file or directory"},
                 {"body", 0, "FILE", "the request body to sign"},
                 {"curl", 0, "URL", "print a curl command for URL"}},
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
    std::vector<SignedHeader> headers = sign(*route, body, error);
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
