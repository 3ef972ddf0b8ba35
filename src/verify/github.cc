// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`. The legacy SHA-1
// `X-Hub-Signature` is ignored: accepting it would let a downgrade through.
#include "portcullis/verify/template_hmac.hh"

#include <memory>

namespace portcullis::verify {

std::unique_ptr<Verifier> make_github_verifier(const config::VerifyConfig& cfg,
                                               std::string& /*error*/) {
    config::VerifyConfig form;
    form.header = "x-hub-signature-256";
    form.prefix = "sha256=";
    form.encoding = config::Encoding::hex;
    form.signed_template = "{body}";
    return std::make_unique<TemplateHmacScheme>(form, cfg.secrets);
}

} // namespace portcullis::verify
