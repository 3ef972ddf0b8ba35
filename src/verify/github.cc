// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`. The legacy SHA-1
// `X-Hub-Signature` is ignored: accepting it would let a downgrade through.
#include "portcullis/verify/signature_header.hh"
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
        std::string_view value;
        if (Reason r = single_header_value(headers, "x-hub-signature-256",
                                           Reason::signature_missing, value);
            r != Reason::ok) {
            return r;
        }
        constexpr std::string_view prefix = "sha256=";
        if (!value.starts_with(prefix) ||
            !decode_signature(value.substr(prefix.size()), config::Encoding::hex,
                              HashState::digest_size(config::Algorithm::sha256),
                              st.signatures[0])) {
            return Reason::malformed;
        }
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
