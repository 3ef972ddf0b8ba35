// Comparison of secret-dependent bytes whose running time does not depend on where they differ.
//
//   bool ok = equal_ct(computed_mac, presented_signature);
//
// Lengths are treated as public: spans of different sizes compare unequal at once. Hash both
// sides first (as shared_secret does) when the length itself must not leak.
#pragma once

#include <openssl/mem.h>

#include <cstdint>
#include <span>

namespace portcullis::verify {

// Equal-length constant-time comparison; false if the sizes differ.
inline bool equal_ct(std::span<const uint8_t> a, std::span<const uint8_t> b) {
    if (a.size() != b.size()) {
        return false;
    }
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

} // namespace portcullis::verify
