// The public keys of the Ed25519 schemes (`ed25519` for Discord, `standard`'s v1a) and the check
// of the presented signatures over the kept prefix followed by the body.
//
//   Ed25519Keys keys;
//   keys.add(public_key);                         // config load
//   st.keep_prefix(timestamp);                    // begin(): the signed prefix
//   bool ok = keys.any_matches(st, body);         // finish(): whole message at once
#pragma once

#include "portcullis/verify/signature_header.hh"
#include "portcullis/verify/verifier.hh"

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace portcullis::verify {

class Ed25519Keys {
public:
    void add(std::span<const uint8_t, ed25519_key_size> key);
    bool empty() const { return _keys.empty(); }
    size_t size() const { return _keys.size(); }

    // True when any presented signature_ed25519 signature in st verifies under any key over
    // st.prefix followed by the body. Tries every pair, up to max_ed25519_checks of them (the
    // count goes to st.ed25519_checks); there is no secret here to time, only a bound on work.
    // Borrows st.prefix_size bytes before the body (BodyBuffer's precondition).
    bool any_matches(VerifyState& st, BodyBuffer body) const;

private:
    std::vector<std::array<uint8_t, ed25519_key_size>> _keys;
};

} // namespace portcullis::verify
