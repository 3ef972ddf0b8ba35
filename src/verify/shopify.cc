// Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`, keyed with the app's
// client secret. No timestamp is signed, so there is no window.
#include "portcullis/verify/signature_header.hh"
#include "portcullis/verify/verifier.hh"

#include <memory>

namespace portcullis::verify {

namespace {

class ShopifyVerifier final : public HmacScheme {
public:
    explicit ShopifyVerifier(std::vector<HmacKey> keys) : HmacScheme(std::move(keys)) {}

    Reason begin(std::span<const http::Header> headers, int64_t /*now_unix_ns*/,
                 VerifyState& st) const override {
        st.reset();
        if (!has_keys()) {
            return Reason::secret_unset;
        }
        std::string_view value;
        if (Reason r = single_header_value(headers, "x-shopify-hmac-sha256",
                                           Reason::signature_missing, value);
            r != Reason::ok) {
            return r;
        }
        if (!decode_signature(value, config::Encoding::base64,
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

std::unique_ptr<Verifier> make_shopify_verifier(const config::VerifyConfig& cfg,
                                                std::string& /*error*/) {
    return std::make_unique<ShopifyVerifier>(
        HmacScheme::keys_from(config::Algorithm::sha256, cfg.secrets));
}

} // namespace portcullis::verify
