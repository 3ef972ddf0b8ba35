// `hmac`: the scheme for senders without a scheme of their own, and the template HMAC that
// github, shopify and slack are fixed forms of. The signature is in `header`, after an optional
// literal `prefix`, hex or base64, of HMAC-SHA256/512/SHA1 over `template`: literal text and
// {timestamp} (the `timestamp_header` value as sent), ending in {body}. With a timestamp header
// the window is `tolerance`, 300 s unless set.
#include "portcullis/verify/template_hmac.hh"

#include <cstdlib>
#include <memory>

namespace portcullis::verify {

namespace {

constexpr int64_t default_tolerance_ns = 300LL * 1'000'000'000;

SignedTemplate parsed(const config::VerifyConfig& form) {
    SignedTemplate t;
    if (!t.parse(form.signed_template)) {
        // The constructor's precondition: the factories check template_error() first.
        std::abort();
    }
    return t;
}

} // namespace

TemplateHmacScheme::TemplateHmacScheme(const config::VerifyConfig& form,
                                       const std::vector<config::Secret>& secrets)
    : HmacScheme(keys_from(form.algorithm, secrets)), _header(form.header), _prefix(form.prefix),
      _timestamp_header(form.timestamp_header), _encoding(form.encoding),
      _mac_size(HashState::digest_size(form.algorithm)),
      _tolerance_ns(form.tolerance_ns.value_or(default_tolerance_ns)), _template(parsed(form)) {}

std::string TemplateHmacScheme::template_error(const config::VerifyConfig& form) {
    SignedTemplate t;
    if (!t.parse(form.signed_template)) {
        return "template must be literal text and {timestamp}, ending in {body}";
    }
    if (t.uses_timestamp() != !form.timestamp_header.empty()) {
        return "template must use {timestamp} exactly when timestamp_header is set";
    }
    return {};
}

Reason TemplateHmacScheme::begin(std::span<const http::Header> headers, int64_t now_unix_ns,
                                 VerifyState& st) const {
    if (Reason r = start(st); r != Reason::ok) {
        return r;
    }
    if (Reason r = read_signature_header(headers, _header, _prefix, _encoding, _mac_size,
                                         st.signatures[0]);
        r != Reason::ok) {
        return r;
    }
    std::string_view timestamp;
    if (!_timestamp_header.empty()) {
        if (Reason r = read_timestamp(headers, _timestamp_header, now_unix_ns, _tolerance_ns, st,
                                      timestamp);
            r != Reason::ok) {
            return r;
        }
    }
    st.signature_count = 1;
    start_macs(st);
    _template.render_prefix(timestamp, [&](std::string_view piece) { feed(st, piece); });
    st.begun = true;
    return Reason::ok;
}

std::unique_ptr<Verifier> make_hmac_verifier(const config::VerifyConfig& cfg, std::string& error) {
    if (cfg.header.empty()) {
        error = "scheme hmac needs `header`";
        return nullptr;
    }
    config::VerifyConfig form;
    form.header = cfg.header;
    form.prefix = cfg.prefix;
    form.encoding = cfg.encoding;
    form.algorithm = cfg.algorithm;
    form.timestamp_header = cfg.timestamp_header;
    form.tolerance_ns = cfg.tolerance_ns;
    // The loader fills the default; a VerifyConfig built by hand gets the same one here.
    form.signed_template = !cfg.signed_template.empty()   ? cfg.signed_template
                           : cfg.timestamp_header.empty() ? "{body}"
                                                          : "{timestamp}.{body}";
    error = TemplateHmacScheme::template_error(form);
    if (!error.empty()) {
        return nullptr;
    }
    return std::make_unique<TemplateHmacScheme>(form, cfg.secrets);
}

} // namespace portcullis::verify
