// The immutable runtime form of a Config that the shards serve from: routes compiled for
// matching, each with its verifier built (key pads precomputed) and its Allow header.
//
//   auto snap = Snapshot::build(std::move(cfg), error);
//   if (const Route* r = snap->match("/webhooks/github")) { ... }
#pragma once

#include "portcullis/admit/cidr_set.hh"
#include "portcullis/admit/rate_limit.hh"
#include "portcullis/config/config.hh"
#include "portcullis/http/header_policy.hh"
#include "portcullis/verify/verifier.hh"

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace portcullis::config {

// Every route name the process has served, each with a number (its slot) that never moves or is
// given to another name: what per-route counters and events are kept by, so that a reload that
// adds, removes or reorders routes leaves every other route's series as they were.
//
//   RouteSlots slots;                          // the main thread's
//   uint32_t s = *slots.assign("github");      // main thread, before publishing a snapshot
//   slots.name(s);                             // any thread that saw that snapshot
class RouteSlots {
public:
    // Names over the process's life; a reload past it is refused (restart to renumber).
    static constexpr uint32_t capacity = 16384;

    RouteSlots();
    // The name's slot, given now if it has none. Main thread only. nullopt when full.
    std::optional<uint32_t> assign(std::string_view name);
    // Whether the name has a slot. Main thread only.
    bool known(std::string_view name) const { return _by_name.contains(std::string(name)); }
    // The name of a slot assigned before the caller's snapshot was published ("" past size()).
    std::string_view name(uint32_t slot) const;
    uint32_t size() const { return _count.load(std::memory_order_acquire); }

private:
    std::unique_ptr<std::string[]> _names;
    std::atomic<uint32_t> _count{0};
    std::unordered_map<std::string, uint32_t> _by_name;
};

struct Route {
    const RouteConfig* config = nullptr;
    uint32_t index = 0; // in this snapshot's routes()
    // The route's number for the life of the process (RouteSlots): a name keeps it across
    // reloads, so per-route counters and events stay attached to the name. Equal to index in a
    // snapshot built at start.
    uint32_t slot = 0;
    std::unique_ptr<verify::Verifier> verifier;
    std::string allow_header; // "Allow: POST\r\n"
    // The request fields its jobs keep and its rejection lines may show: no hop-by-hop field,
    // never the verifier's secret header, credentials only as keep_headers says.
    http::StoredFields stored_fields;
    // Path pattern split into segments; a segment "{x}" matches any non-empty segment.
    std::vector<std::string> segments;
    std::vector<bool> is_param;

    // Seeds the fingerprints of this route's dedup and ordering keys (queue::route_seed).
    uint64_t key_seed = 0;
    admit::CidrSet allow; // empty: everyone
    // rate_limit, compiled: per client (checked before the body is hashed) and for the whole
    // route (after verification).
    std::optional<admit::Limit> per_ip_limit;
    std::optional<admit::Limit> route_limit;

    bool allows_method(std::string_view method) const;
    bool matches(std::string_view path) const;
    // What the route's `{name}` segment matched in path (a path this route matches); empty if
    // the route has no such parameter.
    std::string_view path_param(std::string_view path, std::string_view name) const;
};

class Snapshot {
public:
    // Compiles cfg. On failure returns nullptr and sets error ("route github: ...").
    static std::unique_ptr<Snapshot> build(Config cfg, std::string& error);

    const Config& config() const { return _config; }
    const std::vector<Route>& routes() const { return _routes; }
    const admit::CidrSet& deny() const { return _deny; }
    const admit::CidrSet& trusted_proxies() const { return _trusted_proxies; }
    // The route whose path matches, or nullptr; with several, the one with the fewest {param}
    // segments (the most specific: the loader refuses routes that do not nest). Paths are
    // compared as sent (no decoding).
    const Route* match(std::string_view path) const;

    // 1 for the configuration the process started with, one more for each reload.
    uint64_t generation() const { return _generation; }
    // "" or why its routes cannot all have a slot (more names than RouteSlots holds).
    std::string fits(const RouteSlots& slots) const;
    // Before it is published: its number, and each route's slot (a name seen before keeps its
    // own). After fits().
    void number(uint64_t generation, RouteSlots& slots);

private:
    uint64_t _generation = 1;
    Config _config;
    std::vector<Route> _routes;
    admit::CidrSet _deny;
    admit::CidrSet _trusted_proxies;
};

} // namespace portcullis::config
