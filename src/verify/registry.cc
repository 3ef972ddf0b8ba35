// The one registration table: every config::Scheme and the factory that builds its verifier.
// A new scheme is one file defining make_<scheme>_verifier and one row here.
#include "portcullis/verify/verifier.hh"

#include <array>

namespace portcullis::verify {

// Defined in the scheme's own file, src/verify/<scheme>.cc.
using MakeVerifier = std::unique_ptr<Verifier>(const config::VerifyConfig&, std::string&);
MakeVerifier make_github_verifier;
MakeVerifier make_stripe_verifier;
MakeVerifier make_slack_verifier;
MakeVerifier make_standard_verifier;
MakeVerifier make_shopify_verifier;
MakeVerifier make_hmac_verifier;
MakeVerifier make_shared_secret_verifier;
MakeVerifier make_ed25519_verifier;
MakeVerifier make_none_verifier;

namespace {

struct SchemeEntry {
    config::Scheme scheme;
    std::string_view name;
    MakeVerifier* make;
};

constexpr std::array<SchemeEntry, 9> schemes{{
    {config::Scheme::github, "github", make_github_verifier},
    {config::Scheme::stripe, "stripe", make_stripe_verifier},
    {config::Scheme::slack, "slack", make_slack_verifier},
    {config::Scheme::standard, "standard", make_standard_verifier},
    {config::Scheme::shopify, "shopify", make_shopify_verifier},
    {config::Scheme::hmac, "hmac", make_hmac_verifier},
    {config::Scheme::shared_secret, "shared_secret", make_shared_secret_verifier},
    {config::Scheme::ed25519, "ed25519", make_ed25519_verifier},
    {config::Scheme::none, "none", make_none_verifier},
}};

constexpr bool table_is_in_enum_order() {
    for (size_t i = 0; i < schemes.size(); ++i) {
        if (static_cast<size_t>(schemes[i].scheme) != i) {
            return false;
        }
    }
    return true;
}
static_assert(table_is_in_enum_order(), "one row per config::Scheme, in declaration order");

} // namespace

std::unique_ptr<Verifier> make_verifier(const config::VerifyConfig& cfg, std::string& error) {
    const auto index = static_cast<size_t>(cfg.scheme);
    if (index >= schemes.size()) {
        error = "unknown verification scheme " + std::to_string(index);
        return nullptr;
    }
    const SchemeEntry& entry = schemes[index];
    // The config loader enforces this too; the per-request state has room for no more.
    if (cfg.secrets.size() > max_secrets) {
        error = "at most " + std::to_string(max_secrets) + " secrets per route (" +
                std::to_string(cfg.secrets.size()) + " given)";
        return nullptr;
    }
    return entry.make(cfg, error);
}

} // namespace portcullis::verify
