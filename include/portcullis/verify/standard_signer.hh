// Standard Webhooks v1 signing: what the HTTP sink's `sign: {secrets: [...]}` adds to a delivery
// (SPEC section 8) and what `portcullis sign` prints for a `standard` route. The signature is
// `v1,` and the base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed with the bytes the
// `whsec_` secret's base64 decodes to: the same key the `standard` verifier checks with.
//
//   std::string error;
//   auto signer = verify::make_standard_signer(sink.sign_secrets, error);   // start-up
//   std::array<char, verify::StandardSigner::signature_size> sig;            // per attempt
//   size_t n = signer->sign(job_id, now_s, body, sig);
//   // webhook-id: job_id, webhook-timestamp: now_s in decimal, webhook-signature: {sig, n}
//
// Body in pieces (as read from the spool): start(stream, id, now_s), stream.update(piece)...,
// finish(stream, sig). Nothing allocates, locks or throws per signature; the key is decoded
// once, into HMAC midstates, and never kept as text.
#pragma once

#include "portcullis/base/encoding.hh"
#include "portcullis/config/config.hh"
#include "portcullis/verify/hmac.hh"

#include <openssl/sha.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::verify {

// The HMAC-SHA256 key of a `whsec_<base64>` secret, or nullopt when `material` is not whsec_
// followed by the base64 of 1 to 192 bytes (a whpk_ public key included). The decoded bytes are
// wiped. Shared by the `standard` verifier and the signer: one decoding of the key.
std::optional<HmacKey> standard_hmac_key(std::string_view material);

class StandardSigner {
public:
    // "v1," and the base64 of a SHA-256 MAC: 47 characters.
    static constexpr size_t signature_size = 3 + base::base64_encoded_size(SHA256_DIGEST_LENGTH);

    // Precondition: key is HMAC-SHA256 (standard_hmac_key's).
    explicit StandardSigner(const HmacKey& key) : _key(key) {}

    // Writes `v1,<base64>` for the message `{id}.{timestamp_s}.{body}` to out and returns its
    // length, signature_size; 0 (and nothing written) when out is shorter than that. The
    // timestamp is signed in decimal, as the webhook-timestamp header must carry it.
    size_t sign(std::string_view id, int64_t timestamp_s, std::string_view body,
                std::span<char> out) const;

    // The same signature with the body fed in pieces: start(), s.update(piece) for each piece in
    // order, finish(). Any split of the body gives the signature sign() gives for the whole.
    void start(HmacStream& s, std::string_view id, int64_t timestamp_s) const;
    // As sign()'s result. s is spent (wiped) either way and must be started again.
    size_t finish(HmacStream& s, std::span<char> out) const;

private:
    HmacKey _key;
};

// The signer of an HTTP sink's `sign.secrets`: the FIRST secret that is set signs; the others
// are not used. Rotation is the receiver's side: it accepts any of its keys, so the new key is
// added there first, then listed first here. A secret whose env var or file was unset at load
// is skipped (the loader warned). nullopt, with `error` naming the secrets by origin (never their
// material), when none is set or the first set one is not a whsec_ secret.
std::optional<StandardSigner> make_standard_signer(const std::vector<config::Secret>& secrets,
                                                   std::string& error);

} // namespace portcullis::verify
