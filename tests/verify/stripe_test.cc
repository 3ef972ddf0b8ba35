// `stripe`: t= and v1= list, key = the whole whsec_ string, window in both directions.
#include "portcullis/base/encoding.hh"
#include "portcullis/verify/verifier.hh"

#include "harness.hh"

#include <gtest/gtest.h>

#include <cctype>
#include <optional>
#include <string>

using namespace portcullis;
using namespace portcullis::verify;
using namespace portcullis::verify::harness;

namespace {

const std::string secret = "whsec_3xGUgJ7aQzYvLm2N8pK4dR6tW9sB1cE5";
const std::string old_secret = "whsec_previousSecretStillListed0000";
const std::string body = R"({"id":"evt_1","type":"payment_intent.succeeded"})";
constexpr int64_t t = 1700000000;

std::string v1(const std::string& key, int64_t ts, const std::string& payload = body) {
    return base::hex(
        reference_hmac(config::Algorithm::sha256, key, std::to_string(ts) + "." + payload));
}

std::string upper(std::string s) {
    for (char& c : s) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return s;
}

Reason check(const std::string& header, int64_t now_s = t,
             const std::vector<std::string>& secrets = {secret},
             std::optional<int64_t> tolerance = {}) {
    config::VerifyConfig cfg;
    cfg.tolerance_ns = tolerance;
    auto v = make(config::Scheme::stripe, secrets, cfg);
    const http::Header headers[] = {{"Stripe-Signature", header}};
    return run_verifier(*v, headers, body, seconds(now_s));
}

} // namespace

TEST(StripeSignature, AcceptsEveryFormStripeSends) {
    const std::string good = v1(secret, t);
    const std::string ts = "t=" + std::to_string(t);
    const struct {
        std::string header;
        Reason expected;
        const char* what;
    } rows[] = {
        {ts + ",v1=" + good, Reason::ok, "t then v1"},
        {"v1=" + good + "," + ts, Reason::ok, "v1 before t"},
        {ts + ",v1=" + good + ",v0=" + std::string(64, 'a'), Reason::ok, "with a v0"},
        {ts + ",v1=" + std::string(64, '0') + ",v1=" + good, Reason::ok, "a bad v1, then a good"},
        {ts + ",v1=zz,v1=" + good, Reason::ok, "an undecodable v1 next to a good one"},
        {ts + ",v1=" + upper(good), Reason::ok, "uppercase hex is hex too"},
        {ts + ",v1=" + good + ",scheme2=abc", Reason::ok, "an unknown key is skipped"},
    };
    for (const auto& row : rows) {
        EXPECT_EQ(reason_code(check(row.header)), reason_code(row.expected)) << row.what;
    }
}

TEST(StripeSignature, RefusesWithTheRightReason) {
    const std::string good = v1(secret, t);
    const std::string ts = "t=" + std::to_string(t);
    const struct {
        std::string header;
        Reason expected;
        const char* what;
    } rows[] = {
        {ts + ",v0=" + good, Reason::malformed, "only v0"},
        {ts, Reason::malformed, "no signature at all"},
        {"v1=" + good, Reason::timestamp_missing, "no t"},
        {ts + "," + ts + ",v1=" + good, Reason::malformed, "two t"},
        {"t=17e8,v1=" + good, Reason::timestamp_malformed, "t not decimal"},
        {"t=,v1=" + good, Reason::timestamp_malformed, "t empty"},
        {ts + ",v1=" + good + ",", Reason::malformed, "trailing comma"},
        {ts + ",,v1=" + good, Reason::malformed, "empty item"},
        {ts + ",=x,v1=" + good, Reason::malformed, "empty key"},
        {ts + ",v1=" + good.substr(2), Reason::malformed, "short v1"},
        {ts + ",v1=" + v1("whsec_another", t), Reason::signature_mismatch, "wrong secret"},
        {ts + ",v1=" + v1(secret, t + 1), Reason::signature_mismatch, "signed another time"},
        {ts + ",v1=" + v1(secret, t, body + " "), Reason::signature_mismatch, "another body"},
        {"", Reason::malformed, "empty header"},
    };
    for (const auto& row : rows) {
        EXPECT_EQ(reason_code(check(row.header)), reason_code(row.expected)) << row.what;
    }
}

TEST(StripeSignature, KeyIsTheWholeWhsecStringNotItsDecoding) {
    // Stripe HMACs with the secret as written, prefix and all.
    const std::string tail = secret.substr(6);
    std::vector<uint8_t> decoded(base::base64_decoded_max_size(tail.size()));
    decoded.resize(base::base64_decode(tail, decoded).value_or(0));
    const std::string decoded_key(decoded.begin(), decoded.end());
    EXPECT_EQ(check("t=1700000000,v1=" + v1(decoded_key, t)), Reason::signature_mismatch);
    EXPECT_EQ(check("t=1700000000,v1=" + v1(tail, t)), Reason::signature_mismatch);
    EXPECT_EQ(check("t=1700000000,v1=" + v1(secret, t)), Reason::ok);
}

TEST(StripeSignature, WindowAppliesInBothDirectionsEdgesIncluded) {
    const std::string header = "t=1700000000,v1=" + v1(secret, t);
    EXPECT_EQ(check(header, t + 300), Reason::ok);
    EXPECT_EQ(check(header, t - 300), Reason::ok);
    EXPECT_EQ(check(header, t + 301), Reason::timestamp_too_old);
    EXPECT_EQ(check(header, t - 301), Reason::timestamp_too_new);
    EXPECT_EQ(check(header, t + 30, {secret}, seconds(10)), Reason::timestamp_too_old);
    EXPECT_EQ(check(header, t + 3000, {secret}, seconds(3600)), Reason::ok);
}

TEST(StripeSignature, AnyListedSecretMatchesForRotation) {
    const std::string with_old = "t=1700000000,v1=" + v1(old_secret, t);
    EXPECT_EQ(check(with_old, t, {secret, old_secret}), Reason::ok);
    EXPECT_EQ(check(with_old, t, {secret}), Reason::signature_mismatch);
    // A secret whose env var was unset at load is skipped; none left is secret_unset.
    EXPECT_EQ(check(with_old, t, {"", old_secret}), Reason::ok);
    EXPECT_EQ(check(with_old, t, {""}), Reason::secret_unset);
}

TEST(StripeSignature, RepeatedOrMissingHeader) {
    auto v = make(config::Scheme::stripe, {secret});
    const std::string header = "t=1700000000,v1=" + v1(secret, t);
    const http::Header twice[] = {{"Stripe-Signature", header}, {"stripe-signature", header}};
    EXPECT_EQ(run_verifier(*v, twice, body, seconds(t)), Reason::malformed);
    EXPECT_EQ(run_verifier(*v, {}, body, seconds(t)), Reason::signature_missing);
}
