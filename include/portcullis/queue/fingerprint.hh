// 128-bit fingerprints of dedup keys, ordering keys and bodies (XXH3-128).
//
//   uint64_t seed = route_seed(route.name);              // per route, at start-up
//   Fingerprint key = fingerprint(as_bytes(value), seed);
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace portcullis::queue {

struct Fingerprint {
    uint64_t hi = 0;
    uint64_t lo = 0;
    bool operator==(const Fingerprint&) const = default;
};

// XXH3-128 of bytes with a seed. route_seed gives each route its own hash function, stable across
// restarts and reorderings of the configuration (it depends on the name only), so that two routes
// never share keys.
Fingerprint fingerprint(std::span<const uint8_t> bytes, uint64_t seed = 0);
uint64_t route_seed(std::string_view route_name);

} // namespace portcullis::queue
