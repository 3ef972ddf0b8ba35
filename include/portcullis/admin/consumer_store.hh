// Registered consumers (POST /v1/consumers, SPEC section 10): a token scoped to jobs:consume and
// jobs:read on exactly some routes and, with a URL, an HTTP sink delivering those routes to it,
// signed with a secret minted for it. Both live in <spool dir>/consumers.state, one line per
// consumer, so that one atomic replace of that file is the one durable step that makes (or
// removes) the token and the sink together; they outlive restarts and reloads.
//
//   std::vector<Consumer> list;
//   if (auto err = read_consumer_state(spool_dir, list); !err.empty()) { fail(err); }
//   config::Config cfg = loaded;                       // the configuration file's
//   if (auto err = apply_consumers(cfg, list, spool_dir); !err.empty()) { refuse(err); }
//   auto snap = config::Snapshot::build(std::move(cfg), error);
//
// The file is text between a version line and a checksum line (admin/state_file.hh; mode 0600:
// it holds the signing secrets):
//
//   portcullis-consumers 1
//   consumer billing 1796000000000000000 3f0c...(64 hex) whsec_... http://10.0.0.5:8000/hooks
//   /healthz stripe sha256 9a1b...(64 hex, of every byte before this line)
//
// fields: name, created_at (Unix ns), the token's SHA-256, the signing secret, the URL, the
// health path ("-" for none of the last three), then the routes. Replaced whole and atomically
// (base::replace_file), so a crash leaves the old set or the new one. A file that does not
// parse is an error naming the file and line: the start stops rather than guess.
//
// The consumer's token and sink are both named consumer:<name> (config::consumer_prefix); the
// sink is the configuration's http sink with the default limits, Standard Webhooks signing with
// the consumer's secret and, with a health path, a HealthProbeConfig.
#pragma once

#include "portcullis/admin/auth.hh"
#include "portcullis/config/config.hh"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::admin {

constexpr std::string_view consumer_state_file_name = "consumers.state";
// Each consumer with a URL takes a delivery lane (255 for the life of a ledger): keep room for
// the configured sinks.
constexpr size_t max_consumers = 64;
constexpr size_t max_consumer_routes = 64;
constexpr size_t max_health_path = 1024;

struct Consumer {
    std::string name;                // config::is_name, at most config::max_consumer_name
    std::vector<std::string> routes; // 1..max_consumer_routes distinct config::is_name
    std::string url;                 // "" without a sink; else an http(s) URL, no space
    std::string health_path;         // "" without a probe; else '/' then visible ASCII
    TokenDigest token_sha256{};
    std::string secret;     // "whsec_" + base64 of 32 random bytes, with url only
    int64_t created_at = 0; // Unix nanoseconds
    bool operator==(const Consumer&) const = default;

    std::string token_name() const { return std::string(config::consumer_prefix) + name; }
    std::string sink_name() const { return token_name(); }
    // jobs:consume:<route> and jobs:read:<route> for each route.
    std::vector<std::string> scopes() const;
};

// "" or why the consumer's fields are not acceptable (the rules above, and the URL as an http
// sink's url). Checks no route against a configuration.
std::string consumer_error(const Consumer& c);

// Parses a state file's text into out. Returns "" or "<path>:<line>: <why>"; on error out is
// empty.
std::string parse_consumer_state(std::string_view text, const std::string& path,
                                 std::vector<Consumer>& out);
std::string format_consumer_state(const std::vector<Consumer>& consumers);
// Reads <dir>/consumers.state (a missing file holds none). Returns "" or the error.
std::string read_consumer_state(const std::string& dir, std::vector<Consumer>& out);
// Replaces <dir>/consumers.state atomically and durably (mode 0600). Blocking: registrations are
// rare. Returns "" or the error; on error the old file stays.
std::string write_consumer_state(const std::string& dir, const std::vector<Consumer>& consumers);

// A fresh signing secret from the system's CSPRNG: "whsec_" + base64 of 32 bytes.
std::string generate_signing_secret();

// The configuration the appliance serves: cfg (as loaded from its files, or the one in use) with
// every consumer sink (consumer:*) and every route's delivery to one taken out, then each of
// consumers' sinks added and appended to its routes' `deliver`. The same function at start, at
// each reload and at each registration, so that the three agree. Returns "" or the error
// ("<dir>/consumers.state: consumer billing: route stripe is not configured ..."); then cfg is
// unspecified.
std::string apply_consumers(config::Config& cfg, const std::vector<Consumer>& consumers);

} // namespace portcullis::admin
