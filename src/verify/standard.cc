// Standard Webhooks (and Svix, which uses the same scheme under `svix-*` header names):
// `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64> v1a,<base64> ...` over
// `{id}.{timestamp}.{body}`. v1 is HMAC-SHA256 keyed with the base64-decoding of what follows
// `whsec_`; v1a is Ed25519, checked with public keys written `whpk_<base64>`. A route may list
// both kinds; any signature that verifies under any key is enough.
#include "portcullis/base/encoding.hh"
#include "portcullis/verify/ed25519_keys.hh"
#include "portcullis/verify/signature_header.hh"
#include "portcullis/verify/verifier.hh"

#include <openssl/mem.h>

#include <array>
#include <memory>

namespace portcullis::verify {

namespace {

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

std::unique_ptr<Verifier> make_standard_verifier(const config::VerifyConfig& cfg,
                                                 std::string& error) {
    constexpr std::string_view hmac_prefix = "whsec_";
    constexpr std::string_view public_prefix = "whpk_";
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
        const std::string_view b64 = m.substr(is_hmac ? hmac_prefix.size() : public_prefix.size());
        // Signing secrets are 24 to 64 bytes in practice; the loader has checked the base64.
        std::array<uint8_t, 256> decoded{};
        // A plain size (0: unusable), not an optional chosen by ?:, which GCC 12 at -Os takes for
        // maybe-uninitialized (fatal under -Werror in minsize builds).
        size_t n = 0;
        if (b64.size() <= base::base64_encoded_size(192)) {
            n = base::base64_decode(b64, decoded).value_or(0);
        }
        if (n == 0 || (!is_hmac && n != ed25519_key_size)) {
            error = "secret " + s.origin + " is not " +
                    (is_hmac ? "whsec_ followed by base64 (at most 192 bytes)"
                             : "whpk_ followed by the base64 of a 32-byte Ed25519 public key");
            return nullptr;
        }
        if (is_hmac) {
            keys.emplace_back(config::Algorithm::sha256,
                              std::span<const uint8_t>(decoded.data(), n));
        } else {
            public_keys.add(
                std::span<const uint8_t, ed25519_key_size>(decoded.data(), ed25519_key_size));
        }
        OPENSSL_cleanse(decoded.data(), decoded.size());
    }
    return std::make_unique<StandardVerifier>(
        std::move(keys), std::move(public_keys),
        cfg.tolerance_ns.value_or(*config::default_tolerance_ns(config::Scheme::standard)));
}

} // namespace portcullis::verify
