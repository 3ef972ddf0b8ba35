#include "portcullis/queue/fingerprint.hh"

#include <xxhash.h>

namespace portcullis::queue {

Fingerprint fingerprint(std::span<const uint8_t> bytes, uint64_t seed) {
    XXH128_hash_t h = XXH3_128bits_withSeed(bytes.data(), bytes.size(), seed);
    return {h.high64, h.low64};
}

uint64_t route_seed(std::string_view route_name) {
    return XXH3_64bits(route_name.data(), route_name.size());
}

} // namespace portcullis::queue
