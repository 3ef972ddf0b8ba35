// `hmac`: the scheme for senders without a scheme of their own. The signature is in `header`,
// after an optional literal `prefix`, hex or base64, of HMAC-SHA256/512/SHA1 over `template`:
// literal text and {timestamp} (the `timestamp_header` value as sent), ending in {body}. With a
// timestamp header the window is `tolerance`, 300 s unless set.
#include "portcullis/verify/signature_header.hh"
#include "portcullis/verify/verifier.hh"

#include <memory>

namespace portcullis::verify {

namespace {

constexpr int64_t default_tolerance_ns = 300LL * 1'000'000'000;

class CustomHmacVerifier final : public HmacScheme {
public:
    CustomHmacVerifier(std::vector<HmacKey> keys, const config::VerifyConfig& cfg,
                       SignedTemplate signed_template)
        : HmacScheme(std::move(keys)), _header(cfg.header), _prefix(cfg.prefix),
          _timestamp_header(cfg.timestamp_header), _encoding(cfg.encoding),
          _mac_size(HashState::digest_size(cfg.algorithm)),
          _tolerance_ns(cfg.tolerance_ns.value_or(default_tolerance_ns)),
          _template(std::move(signed_template)) {}

    Reason begin(std::span<const http::Header> headers, int64_t now_unix_ns,
                 VerifyState& st) const override {
        st.reset();
        if (!has_keys()) {
            return Reason::secret_unset;
        }
        std::string_view value;
        if (Reason r = single_header_value(headers, _header, Reason::signature_missing, value);
            r != Reason::ok) {
            return r;
        }
        std::string_view timestamp;
        if (!_timestamp_header.empty()) {
            if (Reason r = read_timestamp(headers, _timestamp_header, now_unix_ns, _tolerance_ns,
                                          st, timestamp);
                r != Reason::ok) {
                return r;
            }
        }
        if (!value.starts_with(_prefix) ||
            !decode_signature(value.substr(_prefix.size()), _encoding, _mac_size,
                              st.signatures[0])) {
            return Reason::malformed;
        }
        st.signature_count = 1;
        start_macs(st);
        _template.render_prefix(timestamp, [&](std::string_view piece) { feed(st, piece); });
        st.begun = true;
        return Reason::ok;
    }

private:
    std::string _header;           // lowercase
    std::string _prefix;           // literal, before the encoded MAC
    std::string _timestamp_header; // lowercase; empty: nothing is timed
    config::Encoding _encoding;
    size_t _mac_size;
    int64_t _tolerance_ns;
    SignedTemplate _template;
};

} // namespace

std::unique_ptr<Verifier> make_hmac_verifier(const config::VerifyConfig& cfg, std::string& error) {
    if (cfg.header.empty()) {
        error = "scheme hmac needs `header`";
        return nullptr;
    }
    SignedTemplate signed_template;
    // The loader fills the default; a VerifyConfig built by hand gets the same one here.
    std::string_view text = cfg.timestamp_header.empty() ? "{body}" : "{timestamp}.{body}";
    if (!cfg.signed_template.empty()) {
        text = cfg.signed_template;
    }
    if (!signed_template.parse(text)) {
        error = "template must be literal text and {timestamp}, ending in {body}";
        return nullptr;
    }
    if (signed_template.uses_timestamp() != !cfg.timestamp_header.empty()) {
        error = "template must use {timestamp} exactly when timestamp_header is set";
        return nullptr;
    }
    return std::make_unique<CustomHmacVerifier>(HmacScheme::keys_from(cfg.algorithm, cfg.secrets),
                                                cfg, std::move(signed_template));
}

} // namespace portcullis::verify
