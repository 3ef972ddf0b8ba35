// Stripe-Signature values -> parse_stripe_signature. Must never crash or over-read; what it
// keeps must be well-formed: a timestamp inside the input, v1 signatures of 32 bytes.
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
    const StripeSignature s = parse_stripe_signature(value, sigs);
    if (s.count > sigs.size()) {
        std::abort();
    }
    if (!s.timestamp.empty() && (s.timestamp.data() < value.data() ||
                                 s.timestamp.data() + s.timestamp.size() > value.data() + size)) {
        std::abort();
    }
    for (size_t i = 0; i < s.count; ++i) {
        if (sigs[i].size != 32 || sigs[i].kind != signature_hmac) {
            std::abort();
        }
    }
    if (s.reason == Reason::ok && s.count == 0) {
        std::abort();
    }
    return 0;
}
