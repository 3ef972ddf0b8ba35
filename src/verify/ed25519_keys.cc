// Ed25519 verification over prefix + body without copying the body: BoringSSL wants one
// contiguous message, so the prefix is written into the bytes just before the body (the job
// record's head) and those bytes are put back afterwards.
#include "portcullis/verify/ed25519_keys.hh"

#include <openssl/curve25519.h>

#include <algorithm>
#include <cstdlib>

namespace portcullis::verify {

void Ed25519Keys::add(std::span<const uint8_t, ed25519_key_size> key) {
    auto& k = _keys.emplace_back();
    std::copy(key.begin(), key.end(), k.begin());
}

bool Ed25519Keys::any_matches(VerifyState& st, BodyBuffer body) const {
    const size_t prefix = st.prefix_size;
    if (body.body_start < prefix || body.body_start > body.buffer.size()) {
        // The caller broke BodyBuffer's precondition: a bug, not something a request can do.
        std::abort();
    }
    uint8_t* message = body.buffer.data() + body.body_start - prefix;
    const size_t message_size = body.buffer.size() - body.body_start + prefix;
    std::array<uint8_t, max_signed_prefix> saved;
    std::copy_n(message, prefix, saved.begin());
    std::copy_n(st.prefix.begin(), prefix, message);
    bool matched = false;
    for (size_t i = 0; i < st.signature_count; ++i) {
        const PresentedSignature& sig = st.signatures[i];
        if (sig.kind != signature_ed25519) {
            continue;
        }
        for (const auto& key : _keys) {
            if (st.ed25519_checks == max_ed25519_checks) {
                break;
            }
            ++st.ed25519_checks;
            matched |= ED25519_verify(message, message_size, sig.bytes.data(), key.data()) == 1;
        }
    }
    std::copy_n(saved.begin(), prefix, message);
    return matched;
}

} // namespace portcullis::verify
