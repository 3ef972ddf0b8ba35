// webhook-signature values -> parse_standard_signatures. Must never crash or over-read; every
// kept entry is a 32-byte v1 HMAC or a 64-byte v1a Ed25519 signature.
#include "portcullis/verify/signature_header.hh"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace portcullis::verify;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view value(reinterpret_cast<const char*>(data), size);
    std::array<PresentedSignature, max_signatures> sigs;
    const uint8_t n = parse_standard_signatures(value, sigs);
    if (n > sigs.size()) {
        std::abort();
    }
    for (size_t i = 0; i < n; ++i) {
        const bool hmac = sigs[i].kind == signature_hmac && sigs[i].size == 32;
        const bool ed25519 = sigs[i].kind == signature_ed25519 && sigs[i].size == 64;
        if (!hmac && !ed25519) {
            std::abort();
        }
    }
    return 0;
}
