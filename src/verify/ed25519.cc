// `ed25519` (Discord interactions): `X-Signature-Ed25519: <hex signature>` over
// `{X-Signature-Timestamp}{body}`, checked with the application's public key (64 hex
// characters). Discord's PING (`"type": 1`) is answered `{"type":1}` and never enqueued.
#include "portcullis/base/encoding.hh"
#include "portcullis/base/json_pointer.hh"
#include "portcullis/verify/ed25519_keys.hh"
#include "portcullis/verify/signature_header.hh"
#include "portcullis/verify/verifier.hh"

#include <array>
#include <memory>

namespace portcullis::verify {

namespace {

class Ed25519Verifier final : public Verifier {
public:
    Ed25519Verifier(Ed25519Keys keys, int64_t tolerance_ns)
        : _keys(std::move(keys)), _tolerance_ns(tolerance_ns) {}

    Reason begin(std::span<const http::Header> headers, int64_t now_unix_ns,
                 VerifyState& st) const override {
        st.reset();
        if (_keys.empty()) {
            return Reason::secret_unset;
        }
        std::string_view value;
        if (Reason r = single_header_value(headers, "x-signature-ed25519",
                                           Reason::signature_missing, value);
            r != Reason::ok) {
            return r;
        }
        std::string_view timestamp;
        if (Reason r = read_timestamp(headers, "x-signature-timestamp", now_unix_ns, _tolerance_ns,
                                      st, timestamp);
            r != Reason::ok) {
            return r;
        }
        PresentedSignature& sig = st.signatures[0];
        if (!decode_signature(value, config::Encoding::hex, ed25519_signature_size, sig)) {
            return Reason::malformed;
        }
        sig.kind = signature_ed25519;
        st.signature_count = 1;
        // At most 18 digits (check_timestamp): always fits.
        st.keep_prefix(timestamp);
        st.begun = true;
        return Reason::ok;
    }

    void update(VerifyState& /*st*/, std::span<const uint8_t> /*body_part*/) const override {}

    Reason finish(VerifyState& st, BodyBuffer body) const override {
        if (!st.begun) {
            return Reason::malformed;
        }
        st.begun = false;
        return _keys.any_matches(st, body) ? Reason::ok : Reason::signature_mismatch;
    }

    std::string_view handshake(std::span<const uint8_t> body, std::span<char> out) const override {
        const std::string_view doc(reinterpret_cast<const char*>(body.data()), body.size());
        const base::JsonLookup type = base::json_find(doc, "/type");
        constexpr std::string_view pong = R"({"type":1})";
        if (type.status != base::JsonStatus::found || type.value.raw != "1" ||
            out.size() < pong.size()) {
            return {};
        }
        std::copy(pong.begin(), pong.end(), out.begin());
        return {out.data(), pong.size()};
    }

private:
    Ed25519Keys _keys;
    int64_t _tolerance_ns;
};

} // namespace

std::unique_ptr<Verifier> make_ed25519_verifier(const config::VerifyConfig& cfg,
                                                std::string& error) {
    Ed25519Keys keys;
    for (const config::Secret& s : cfg.secrets) {
        if (s.material.empty()) {
            continue;
        }
        std::array<uint8_t, ed25519_key_size> key{};
        const auto n = s.material.size() == base::hex_encoded_size(key.size())
                           ? base::hex_decode(s.material, key)
                           : std::nullopt;
        if (!n) {
            error = "secret " + s.origin + " is not an Ed25519 public key (64 hex characters)";
            return nullptr;
        }
        keys.add(key);
    }
    return std::make_unique<Ed25519Verifier>(
        std::move(keys),
        cfg.tolerance_ns.value_or(*config::default_tolerance_ns(config::Scheme::ed25519)));
}

} // namespace portcullis::verify
