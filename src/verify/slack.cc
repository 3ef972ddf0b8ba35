// Slack: `X-Slack-Signature: v0=<hex>` over `v0:{X-Slack-Request-Timestamp}:{body}`,
// HMAC-SHA256 keyed with the signing secret. A verified `url_verification` request is Slack
// checking the endpoint: it is answered with its challenge and never enqueued.
#include "portcullis/base/json_pointer.hh"
#include "portcullis/verify/template_hmac.hh"

#include <memory>

namespace portcullis::verify {

namespace {

class SlackVerifier final : public TemplateHmacScheme {
public:
    SlackVerifier(const config::VerifyConfig& form, const std::vector<config::Secret>& secrets)
        : TemplateHmacScheme(form, secrets) {}

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
};

} // namespace

std::unique_ptr<Verifier> make_slack_verifier(const config::VerifyConfig& cfg,
                                              std::string& /*error*/) {
    config::VerifyConfig form;
    form.header = "x-slack-signature";
    form.prefix = "v0=";
    form.encoding = config::Encoding::hex;
    form.timestamp_header = "x-slack-request-timestamp";
    form.signed_template = "v0:{timestamp}:{body}";
    form.tolerance_ns =
        cfg.tolerance_ns.value_or(*config::default_tolerance_ns(config::Scheme::slack));
    return std::make_unique<SlackVerifier>(form, cfg.secrets);
}

} // namespace portcullis::verify
