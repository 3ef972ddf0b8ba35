// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`. The legacy SHA-1
// `X-Hub-Signature` is ignored: accepting it would let a downgrade through.
#include "portcullis/base/encoding.hh"
#include "portcullis/verify/verifier.hh"

#include <memory>

namespace portcullis::verify {

namespace {

class GithubVerifier final : public HmacScheme {
public:
    explicit GithubVerifier(std::vector<HmacKey> keys) : HmacScheme(std::move(keys)) {}

    Reason begin(std::span<const http::Header> headers, int64_t /*now_unix_ns*/,
                 VerifyState& st) const override {
        st.reset();
        if (!has_keys()) {
            return Reason::secret_unset;
        }
        const HeaderMatch m = find_single_header(headers, "x-hub-signature-256");
        if (m.header == nullptr) {
            return Reason::signature_missing;
        }
        if (m.repeated) {
            return Reason::malformed;
        }
        constexpr std::string_view prefix = "sha256=";
        constexpr size_t mac_size = HashState::digest_size(config::Algorithm::sha256);
        const std::string_view value = m.header->value;
        if (value.size() != prefix.size() + base::hex_encoded_size(mac_size) ||
            !value.starts_with(prefix)) {
            return Reason::malformed;
        }
        PresentedSignature& sig = st.signatures[0];
        if (!base::hex_decode(value.substr(prefix.size()), sig.bytes)) {
            return Reason::malformed;
        }
        sig.size = mac_size;
        sig.kind = 0;
        st.signature_count = 1;
        start_macs(st);
        st.begun = true;
        return Reason::ok;
    }
};

} // namespace

std::unique_ptr<Verifier> make_github_verifier(const config::VerifyConfig& cfg,
                                               std::string& /*error*/) {
    return std::make_unique<GithubVerifier>(
        HmacScheme::keys_from(config::Algorithm::sha256, cfg.secrets));
}

} // namespace portcullis::verify
