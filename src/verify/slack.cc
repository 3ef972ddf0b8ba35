// Slack: `X-Slack-Signature: v0=<hex>` over `v0:{X-Slack-Request-Timestamp}:{body}`,
// HMAC-SHA256 keyed with the signing secret. A verified `url_verification` request is Slack
// checking the endpoint: it is answered with its challenge and never enqueued.
#include "portcullis/base/json_pointer.hh"
#include "portcullis/verify/signature_header.hh"
#include "portcullis/verify/verifier.hh"

#include <memory>

namespace portcullis::verify {

namespace {

class SlackVerifier final : public HmacScheme {
public:
    SlackVerifier(std::vector<HmacKey> keys, int64_t tolerance_ns)
        : HmacScheme(std::move(keys)), _tolerance_ns(tolerance_ns) {}

    Reason begin(std::span<const http::Header> headers, int64_t now_unix_ns,
                 VerifyState& st) const override {
        st.reset();
        if (!has_keys()) {
            return Reason::secret_unset;
        }
        std::string_view value;
        if (Reason r =
                single_header_value(headers, "x-slack-signature", Reason::signature_missing, value);
            r != Reason::ok) {
            return r;
        }
        std::string_view timestamp;
        if (Reason r = read_timestamp(headers, "x-slack-request-timestamp", now_unix_ns,
                                      _tolerance_ns, st, timestamp);
            r != Reason::ok) {
            return r;
        }
        constexpr std::string_view version = "v0=";
        if (!value.starts_with(version) ||
            !decode_signature(value.substr(version.size()), config::Encoding::hex,
                              HashState::digest_size(config::Algorithm::sha256),
                              st.signatures[0])) {
            return Reason::malformed;
        }
        st.signature_count = 1;
        start_macs(st);
        feed(st, "v0:");
        feed(st, timestamp);
        feed(st, ":");
        st.begun = true;
        return Reason::ok;
    }

    std::string_view handshake(std::span<const uint8_t> body, std::span<char> out) const override {
        const std::string_view doc(reinterpret_cast<const char*>(body.data()), body.size());
        const base::JsonLookup type = base::json_find(doc, "/type");
        if (type.status != base::JsonStatus::found || type.value.type != base::JsonType::string ||
            !base::json_string_equals(type.value.raw, "url_verification")) {
            return {};
        }
        const base::JsonLookup challenge = base::json_find(doc, "/challenge");
        constexpr std::string_view open = "{\"challenge\":";
        if (challenge.status != base::JsonStatus::found ||
            challenge.value.type != base::JsonType::string ||
            open.size() + challenge.value.raw.size() + 1 > out.size()) {
            // Not a challenge Slack would send: enqueue it like any other verified event.
            return {};
        }
        // The raw token is valid JSON already (json_find checked it): echoed as sent.
        size_t n = 0;
        for (std::string_view piece : {open, challenge.value.raw, std::string_view("}")}) {
            std::copy(piece.begin(), piece.end(), out.begin() + static_cast<ptrdiff_t>(n));
            n += piece.size();
        }
        return {out.data(), n};
    }

private:
    int64_t _tolerance_ns;
};

} // namespace

std::unique_ptr<Verifier> make_slack_verifier(const config::VerifyConfig& cfg,
                                              std::string& /*error*/) {
    return std::make_unique<SlackVerifier>(
        HmacScheme::keys_from(config::Algorithm::sha256, cfg.secrets),
        cfg.tolerance_ns.value_or(*config::default_tolerance_ns(config::Scheme::slack)));
}

} // namespace portcullis::verify
