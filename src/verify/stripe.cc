// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]` over `{t}.{body}`, HMAC-SHA256 keyed
// with the whole `whsec_...` string as written (Stripe does not decode it). Any v1 may match;
// v0 (test-mode legacy) is never accepted. The timestamp window applies in both directions.
#include "portcullis/verify/signature_header.hh"
#include "portcullis/verify/verifier.hh"

#include <memory>

namespace portcullis::verify {

namespace {

class StripeVerifier final : public HmacScheme {
public:
    StripeVerifier(std::vector<HmacKey> keys, int64_t tolerance_ns)
        : HmacScheme(std::move(keys)), _tolerance_ns(tolerance_ns) {}

    Reason begin(std::span<const http::Header> headers, int64_t now_unix_ns,
                 VerifyState& st) const override {
        if (Reason r = start(st); r != Reason::ok) {
            return r;
        }
        std::string_view value;
        if (Reason r =
                single_header_value(headers, "stripe-signature", Reason::signature_missing, value);
            r != Reason::ok) {
            return r;
        }
        const StripeSignature parsed = parse_stripe_signature(value, st.signatures);
        if (parsed.reason != Reason::ok) {
            return parsed.reason;
        }
        if (Reason r = check_timestamp(parsed.timestamp, now_unix_ns, _tolerance_ns, st.timestamp);
            r != Reason::ok) {
            return r;
        }
        st.signature_count = parsed.count;
        start_macs(st);
        feed(st, parsed.timestamp);
        feed(st, ".");
        st.begun = true;
        return Reason::ok;
    }

private:
    int64_t _tolerance_ns;
};

} // namespace

std::unique_ptr<Verifier> make_stripe_verifier(const config::VerifyConfig& cfg,
                                               std::string& /*error*/) {
    return std::make_unique<StripeVerifier>(
        HmacScheme::keys_from(config::Algorithm::sha256, cfg.secrets),
        cfg.tolerance_ns.value_or(*config::default_tolerance_ns(config::Scheme::stripe)));
}

} // namespace portcullis::verify
