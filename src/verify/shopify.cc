// Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`, keyed with the app's
// client secret. No timestamp is signed, so there is no window.
#include "portcullis/verify/template_hmac.hh"

#include <memory>

namespace portcullis::verify {

std::unique_ptr<Verifier> make_shopify_verifier(const config::VerifyConfig& cfg,
                                                std::string& /*error*/) {
    config::VerifyConfig form;
    form.header = "x-shopify-hmac-sha256";
    form.encoding = config::Encoding::base64;
    form.signed_template = "{body}";
    return std::make_unique<TemplateHmacScheme>(form, cfg.secrets);
}

} // namespace portcullis::verify
