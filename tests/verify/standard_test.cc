// `standard`: the Standard Webhooks spec's v1 example, svix-* headers, v1a (Ed25519) with whpk_
// keys, both kinds on one route, and every refusal.
#include "portcullis/base/encoding.hh"
#include "portcullis/verify/verifier.hh"

#include "harness.hh"

#include <gtest/gtest.h>
#include <openssl/curve25519.h>

#include <string>

using namespace portcullis;
using namespace portcullis::verify;
using namespace portcullis::verify::harness;

namespace {

// The specification's example (also Svix's): secret, id, timestamp, payload and signature.
const std::string spec_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const std::string spec_id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
constexpr int64_t spec_ts = 1614265330;
const std::string spec_body = R"({"test": 2432232314})";
const std::string spec_signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

// An Ed25519 key pair from RFC 8032's TEST 1 seed; signatures made by BoringSSL.
struct KeyPair {
    uint8_t public_key[32];
    uint8_t private_key[64];
    KeyPair() {
        uint8_t seed[32];
        base::hex_decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", seed);
        ED25519_keypair_from_seed(public_key, private_key, seed);
    }
    std::string whpk() const { return "whpk_" + base::base64({public_key, 32}); }
    std::string v1a(const std::string& message) const {
        uint8_t sig[64];
        ED25519_sign(sig, reinterpret_cast<const uint8_t*>(message.data()), message.size(),
                     private_key);
        return "v1a," + base::base64({sig, 64});
    }
};

Reason check(const std::vector<std::string>& secrets, const Fields& fields,
             const std::string& body = spec_body, int64_t now_s = spec_ts) {
    auto v = make(config::Scheme::standard, secrets);
    return run_verifier(*v, views(fields), body, seconds(now_s));
}

Fields webhook(const std::string& signature, const std::string& id = spec_id,
               const std::string& ts = std::to_string(spec_ts)) {
    return {{"webhook-id", id}, {"webhook-timestamp", ts}, {"webhook-signature", signature}};
}

} // namespace

TEST(StandardSignature, AcceptsTheSpecificationsExample) {
    EXPECT_EQ(check({spec_secret}, webhook(spec_signature)), Reason::ok);
    // Svix sends the same under its own names.
    const Fields svix = {{"svix-id", spec_id},
                         {"svix-timestamp", std::to_string(spec_ts)},
                         {"svix-signature", spec_signature}};
    EXPECT_EQ(check({spec_secret}, svix), Reason::ok);
}

TEST(StandardSignature, AnyEntryOfTheListMayMatch) {
    const std::string bad = "v1," + base::base64(std::vector<uint8_t>(32, 7));
    const struct {
        std::string signature;
        Reason expected;
        const char* what;
    } rows[] = {
        {bad + " " + spec_signature, Reason::ok, "a bad v1 before the good one"},
        {"v2,abc " + spec_signature, Reason::ok, "an unknown version is skipped"},
        {"v1,!!!! " + spec_signature, Reason::ok, "an undecodable entry is skipped"},
        {"garbage  " + spec_signature, Reason::ok, "an entry without a comma is skipped"},
        {bad, Reason::signature_mismatch, "only a bad v1"},
        {"v2,abc", Reason::malformed, "only unknown versions"},
        {"v1,!!!!", Reason::malformed, "only undecodable"},
        {"v1," + base::base64(std::vector<uint8_t>(31, 7)), Reason::malformed, "31 bytes"},
        {"", Reason::malformed, "empty"},
    };
    for (const auto& row : rows) {
        EXPECT_EQ(reason_code(check({spec_secret}, webhook(row.signature))),
                  reason_code(row.expected))
            << row.what;
    }
}

TEST(StandardSignature, RefusesWithTheRightReason) {
    const std::string ts = std::to_string(spec_ts);
    const struct {
        Fields fields;
        int64_t now_s;
        Reason expected;
        const char* what;
    } rows[] = {
        {webhook(spec_signature, "msg_another"), spec_ts, Reason::signature_mismatch,
         "signed for another id"},
        {webhook(spec_signature, spec_id, "1614265331"), spec_ts, Reason::signature_mismatch,
         "signed for another time"},
        {webhook(spec_signature), spec_ts + 301, Reason::timestamp_too_old, "too old"},
        {webhook(spec_signature), spec_ts - 301, Reason::timestamp_too_new, "too new"},
        {webhook(spec_signature, spec_id, "x"), spec_ts, Reason::timestamp_malformed,
         "timestamp not decimal"},
        {{{"webhook-id", spec_id}, {"webhook-signature", spec_signature}},
         spec_ts,
         Reason::timestamp_missing,
         "no timestamp"},
        {{{"webhook-timestamp", ts}, {"webhook-signature", spec_signature}},
         spec_ts,
         Reason::malformed,
         "no id"},
        {webhook(spec_signature, ""), spec_ts, Reason::malformed, "empty id"},
        {{{"webhook-id", spec_id}, {"webhook-timestamp", ts}},
         spec_ts,
         Reason::signature_missing,
         "no signature"},
        {{{"svix-id", spec_id}, {"webhook-timestamp", ts}, {"svix-signature", spec_signature}},
         spec_ts,
         Reason::timestamp_missing,
         "families are not mixed"},
    };
    for (const auto& row : rows) {
        EXPECT_EQ(reason_code(check({spec_secret}, row.fields, spec_body, row.now_s)),
                  reason_code(row.expected))
            << row.what;
    }
}

TEST(StandardSignature, VerifiesV1aWithAPublicKey) {
    const KeyPair keys;
    const std::string message = spec_id + "." + std::to_string(spec_ts) + "." + spec_body;
    EXPECT_EQ(check({keys.whpk()}, webhook(keys.v1a(message))), Reason::ok);
    // Body, id and timestamp are all covered.
    EXPECT_EQ(check({keys.whpk()}, webhook(keys.v1a(message)), spec_body + " "),
              Reason::signature_mismatch);
    EXPECT_EQ(check({keys.whpk()}, webhook(keys.v1a(message), "msg_other")),
              Reason::signature_mismatch);
    // A v1 HMAC signature proves nothing to a route that only holds a public key.
    EXPECT_EQ(check({keys.whpk()}, webhook(spec_signature)), Reason::signature_mismatch);
}

TEST(StandardSignature, OneRouteMayListBothKindsOfKey) {
    const KeyPair keys;
    const std::string message = spec_id + "." + std::to_string(spec_ts) + "." + spec_body;
    const std::vector<std::string> both = {spec_secret, keys.whpk()};
    EXPECT_EQ(check(both, webhook(spec_signature)), Reason::ok);
    EXPECT_EQ(check(both, webhook(keys.v1a(message))), Reason::ok);
    EXPECT_EQ(check(both, webhook("v1a,AAAA " + keys.v1a(message))), Reason::ok);
}

TEST(StandardSignature, BoundsTheEd25519WorkOfOneRequest) {
    const KeyPair keys;
    auto v = make(config::Scheme::standard, {keys.whpk()});
    // Eight bad v1a signatures: each costs one check; no more than max_ed25519_checks.
    std::string many;
    for (int i = 0; i < 12; ++i) {
        many += "v1a," + base::base64(std::vector<uint8_t>(64, static_cast<uint8_t>(i))) + " ";
    }
    VerifyState st;
    EXPECT_EQ(run_verifier(*v, views(webhook(many)), spec_body, seconds(spec_ts), st),
              Reason::signature_mismatch);
    EXPECT_EQ(st.ed25519_checks, max_ed25519_checks);
    // An id too long to keep for Ed25519 is refused when a public key would need it.
    EXPECT_EQ(check({keys.whpk()}, webhook(many, std::string(120, 'i'))), Reason::malformed);
}
