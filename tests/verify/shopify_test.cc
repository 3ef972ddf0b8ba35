// `shopify`: base64 HMAC-SHA256 of the body in X-Shopify-Hmac-Sha256.
#include "portcullis/base/encoding.hh"
#include "portcullis/verify/verifier.hh"

#include "harness.hh"

#include <gtest/gtest.h>

#include <string>

using namespace portcullis;
using namespace portcullis::verify;
using namespace portcullis::verify::harness;

namespace {

const std::string secret = "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";
const std::string body = R"({"id":820982911946154508,"email":"jon@example.com"})";

Reason check(const std::string& signature, const std::vector<std::string>& secrets = {secret}) {
    auto v = make(config::Scheme::shopify, secrets);
    const http::Header headers[] = {{"X-Shopify-Hmac-Sha256", signature}};
    return run_verifier(*v, headers, body);
}

std::string sign(const std::string& key) {
    return base::base64(reference_hmac(config::Algorithm::sha256, key, body));
}

} // namespace

TEST(ShopifySignature, AcceptsAndRefuses) {
    const std::string good = sign(secret);
    const struct {
        std::string signature;
        Reason expected;
        const char* what;
    } rows[] = {
        {good, Reason::ok, "signed with the secret"},
        {sign("another"), Reason::signature_mismatch, "wrong secret"},
        {good.substr(0, good.size() - 1), Reason::malformed, "padding cut"},
        {base::hex(reference_hmac(config::Algorithm::sha256, secret, body)), Reason::malformed,
         "hex instead of base64"},
        {"!" + good.substr(1), Reason::malformed, "outside the alphabet"},
        {"", Reason::malformed, "empty"},
    };
    for (const auto& row : rows) {
        EXPECT_EQ(reason_code(check(row.signature)), reason_code(row.expected)) << row.what;
    }
    EXPECT_EQ(check(sign("old"), {secret, "old"}), Reason::ok);
    auto v = make(config::Scheme::shopify, {secret});
    EXPECT_EQ(run_verifier(*v, {}, body), Reason::signature_missing);
}
