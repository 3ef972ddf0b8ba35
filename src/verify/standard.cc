// Standard Webhooks (and Svix, which uses the same scheme under `svix-*` header names):
// `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64> v1a,<base64> ...` over
// `{id}.{timestamp}.{body}`. v1 is HMAC-SHA256 keyed with the base64-decoding of what follows
// `whsec_`; v1a is Ed25519, checked with public keys written `whpk_<base64>`. A route may list
// both kinds; any signature that verifies under any key is enough.
#include "portcullis/base/encoding.hh"
#include "portcullis/verify/ed25519_keys.hh"
#include "portcullis/verify/signature_header.hh"
#include "portcullis/verify/standard_signer.hh"
#include "portcullis/verify/verifier.hh"

#include <openssl/mem.h>

#include <array>
#include <memory>

namespace portcullis::verify {

namespace {

constexpr std::string_view hmac_prefix = "whsec_";
constexpr std::string_view public_prefix = "whpk_";
// Signing secrets are 24 to 64 bytes in practice; the loader has checked the base64.
constexpr size_t max_key_size = 192;

// The bytes of a key's base64 (what follows whsec_ or whpk_) into out: their count, or 0 when
// it is not base64 of 1 to max_key_size bytes.
size_t decode_key(std::string_view b64, std::span<uint8_t, max_key_size + 3> out) {
    // A plain size (0: unusable), not an optional chosen by ?:, which GCC 12 at -Os takes for
    // maybe-uninitialized (fatal under -Werror in minsize builds).
    size_t n = 0;
    if (b64.size() <= base::base64_encoded_size(max_key_size)) {
        n = base::base64_decode(b64, out).value_or(0);
    }
    return n;
}

struct HeaderNames {
    std::string_view id;
    std::string_view timestamp;
    std::string_view signature;
};
constexpr HeaderNames standard_names{"webhook-id", "webhook-timestamp", "webhook-signature"};
constexpr HeaderNames svix_names{"svix-id", "svix-timestamp", "svix-signature"};

class StandardVerifier final : public HmacScheme {
public:
    StandardVerifier(std::vector<HmacKey> keys, Ed25519Keys public_keys, int64_t tolerance_ns)
        : HmacScheme(std::move(keys)), _public_keys(std::move(public_keys)),
          _tolerance_ns(tolerance_ns) {}

    Reason begin(std::span<const http::Header> headers, int64_t now_unix_ns,
                 VerifyState& st) const override {
        // Either kind of key will do: HMAC secrets (start() counts those) or public keys.
        if (Reason r = start(st); r != Reason::ok && _public_keys.empty()) {
            return r;
        }
        // The family is chosen by the signature header; the other two come from the same one,
        // so that a webhook-id can never be paired with an svix-signature.
        HeaderNames names = standard_names;
        std::string_view value;
        Reason r = single_header_value(headers, names.signature, Reason::signature_missing, value);
        if (r == Reason::signature_missing) {
            names = svix_names;
            r = single_header_value(headers, names.signature, Reason::signature_missing, value);
        }
        if (r != Reason::ok) {
            return r;
        }
        std::string_view id;
        if (r = single_header_value(headers, names.id, Reason::malformed, id);
            r != Reason::ok || id.empty()) {
            return Reason::malformed;
        }
        std::string_view timestamp;
        if (r = read_timestamp(headers, names.timestamp, now_unix_ns, _tolerance_ns, st, timestamp);
            r != Reason::ok) {
            return r;
        }
        st.signature_count = parse_standard_signatures(value, st.signatures);
        if (st.signature_count == 0) {
            return Reason::malformed;
        }
        if (!_public_keys.empty()) {
            // Ed25519 needs the prefix again at finish(); ids this long are not sent in practice.
            if (!st.keep_prefix(id) || !st.keep_prefix(".") || !st.keep_prefix(timestamp) ||
                !st.keep_prefix(".")) {
                return Reason::malformed;
            }
        }
        start_macs(st);
        feed(st, id);
        feed(st, ".");
        feed(st, timestamp);
        feed(st, ".");
        st.begun = true;
        return Reason::ok;
    }

    Reason finish(VerifyState& st, BodyBuffer body) const override {
        if (!st.begun) {
            return Reason::malformed;
        }
        st.begun = false;
        bool matched = any_mac_matches(st);
        if (!_public_keys.empty()) {
            matched |= _public_keys.any_matches(st, body);
        }
        return matched ? Reason::ok : Reason::signature_mismatch;
    }

private:
    Ed25519Keys _public_keys;
    int64_t _tolerance_ns;
};

} // namespace

std::optional<HmacKey> standard_hmac_key(std::string_view material) {
    if (!material.starts_with(hmac_prefix)) {
        return std::nullopt;
    }
    std::array<uint8_t, max_key_size + 3> decoded{};
    const size_t n = decode_key(material.substr(hmac_prefix.size()), decoded);
    std::optional<HmacKey> key;
    if (n != 0) {
        key.emplace(config::Algorithm::sha256, std::span<const uint8_t>(decoded.data(), n));
    }
    OPENSSL_cleanse(decoded.data(), decoded.size());
    return key;
}

std::unique_ptr<Verifier> make_standard_verifier(const config::VerifyConfig& cfg,
                                                 std::string& error) {
    std::vector<HmacKey> keys;
    Ed25519Keys public_keys;
    for (const config::Secret& s : cfg.secrets) {
        const std::string_view m = s.material;
        if (m.empty()) {
            continue;
        }
        const bool is_hmac = m.starts_with(hmac_prefix);
        if (!is_hmac && !m.starts_with(public_prefix)) {
            error = "secret " + s.origin + " must be whsec_<base64> or whpk_<base64>";
            return nullptr;
        }
        if (is_hmac) {
            if (std::optional<HmacKey> key = standard_hmac_key(m)) {
                keys.push_back(*key);
                continue;
            }
            error = "secret " + s.origin + " is not whsec_ followed by base64 (at most 192 bytes)";
            return nullptr;
        }
        std::array<uint8_t, max_key_size + 3> decoded{};
        const size_t n = decode_key(m.substr(public_prefix.size()), decoded);
        if (n != ed25519_key_size) {
            OPENSSL_cleanse(decoded.data(), decoded.size());
            error = "secret " + s.origin +
                    " is not whpk_ followed by the base64 of a 32-byte Ed25519 public key";
            return nullptr;
        }
        public_keys.add(
            std::span<const uint8_t, ed25519_key_size>(decoded.data(), ed25519_key_size));
        OPENSSL_cleanse(decoded.data(), decoded.size());
    }
    return std::make_unique<StandardVerifier>(
        std::move(keys), std::move(public_keys),
        cfg.tolerance_ns.value_or(*config::default_tolerance_ns(config::Scheme::standard)));
}

} // namespace portcullis::verify
