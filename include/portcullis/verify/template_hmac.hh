// The HMAC schemes whose signature is one header, `prefix` then the MAC in hex or base64, over
// a template of literal text and the timestamp as sent, ending in the body: the `hmac` scheme as
// configured, and the fixed forms of `github`, `shopify` and `slack`.
//
//   config::VerifyConfig form;                    // what is read and signed
//   form.header = "x-hub-signature-256";
//   form.prefix = "sha256=";
//   form.signed_template = "{body}";
//   auto v = std::make_unique<TemplateHmacScheme>(form, cfg.secrets);
#pragma once

#include "portcullis/verify/signature_header.hh"
#include "portcullis/verify/verifier.hh"

#include <string>
#include <vector>

namespace portcullis::verify {

class TemplateHmacScheme : public HmacScheme {
public:
    // form's header (lowercase), prefix, encoding, algorithm, timestamp_header (lowercase;
    // empty: nothing is timed), signed_template and tolerance_ns (300 s when unset) say what is
    // read and signed; its secrets are ignored, `secrets` are the keys. Precondition:
    // template_error(form) is empty.
    TemplateHmacScheme(const config::VerifyConfig& form,
                       const std::vector<config::Secret>& secrets);

    // Empty when form's template parses and uses {timestamp} exactly when a timestamp header is
    // set; otherwise what is wrong.
    static std::string template_error(const config::VerifyConfig& form);

    Reason begin(std::span<const http::Header> headers, int64_t now_unix_ns,
                 VerifyState& st) const override;

private:
    std::string _header;
    std::string _prefix;
    std::string _timestamp_header;
    config::Encoding _encoding;
    size_t _mac_size;
    int64_t _tolerance_ns;
    SignedTemplate _template;
};

} // namespace portcullis::verify
