// StandardSigner: the Standard Webhooks specification's example, BoringSSL's HMAC as the
// reference, a round trip through the project's `standard` verifier, bodies in pieces, the
// caller's buffer, and which of several secrets signs.
#include "portcullis/verify/standard_signer.hh"

#include "portcullis/base/encoding.hh"
#include "portcullis/verify/verifier.hh"

#include "harness.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::verify;
using namespace portcullis::verify::harness;

namespace {

// The specification's example, also in the Standard Webhooks and Svix libraries' tests
// (svix/src/webhook.test.ts: "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330).
const std::string spec_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const std::string spec_id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
constexpr int64_t spec_ts = 1614265330;
const std::string spec_body = R"({"test": 2432232314})";
const std::string spec_signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

// A 64-byte key, as generated secrets often are, and a second one that must not verify.
std::string whsec_of(uint8_t first) {
    std::vector<uint8_t> key(64);
    for (size_t i = 0; i < key.size(); ++i) {
        key[i] = static_cast<uint8_t>(first + 37 * i);
    }
    return "whsec_" + base::base64(key);
}
const std::string key_a = whsec_of(1);
const std::string key_b = whsec_of(2);

config::Secret env_secret(const std::string& material, const std::string& name) {
    return {material, config::SecretSource::env, "env:" + name};
}

StandardSigner signer_of(const std::string& whsec) {
    std::optional<HmacKey> key = standard_hmac_key(whsec);
    if (!key) {
        ADD_FAILURE() << "not a whsec_ key";
        key.emplace(config::Algorithm::sha256, base::as_bytes("unused"));
    }
    return StandardSigner(*key);
}

std::string sign(const StandardSigner& s, std::string_view id, int64_t ts, std::string_view body) {
    std::array<char, StandardSigner::signature_size> out;
    const size_t n = s.sign(id, ts, body, out);
    EXPECT_EQ(n, StandardSigner::signature_size);
    return {out.data(), n};
}

// What the signature must be, from BoringSSL's one-shot HMAC over the whole message.
std::string expected(const std::string& whsec, std::string_view message) {
    std::vector<uint8_t> key(64 * 3);
    key.resize(base::base64_decode(std::string_view(whsec).substr(6), key).value_or(0));
    const std::string key_text(key.begin(), key.end());
    return "v1," + base::base64(reference_hmac(config::Algorithm::sha256, key_text, message));
}

// Bodies of every kind the sink forwards: empty, JSON, multi-byte UTF-8, every byte value
// (NUL and bytes that are not UTF-8 included), and longer than a few hash blocks.
std::vector<std::string> bodies() {
    std::string all_bytes;
    for (int b = 0; b < 256; ++b) {
        all_bytes += static_cast<char>(b);
    }
    std::string long_body(100 * 1024 + 7, 'x');
    for (size_t i = 0; i < long_body.size(); ++i) {
        long_body[i] = static_cast<char>('a' + i % 26);
    }
    return {"", spec_body, "{\"name\":\"J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x9a\x80\"}", all_bytes,
            long_body};
}

Reason verify_with(const std::vector<std::string>& secrets, const std::string& id, int64_t ts,
                   const std::string& body, const std::string& signature) {
    auto v = make(config::Scheme::standard, secrets);
    const Fields fields = {{"webhook-id", id},
                           {"webhook-timestamp", std::to_string(ts)},
                           {"webhook-signature", signature}};
    return run_verifier(*v, views(fields), body, seconds(ts));
}

} // namespace

TEST(StandardSigner, SignsTheSpecificationsExample) {
    EXPECT_EQ(sign(signer_of(spec_secret), spec_id, spec_ts, spec_body), spec_signature);
}

TEST(StandardSigner, IsHmacSha256OfIdTimestampAndBody) {
    const StandardSigner s = signer_of(key_a);
    // Timestamps are signed in plain decimal, as the header carries them.
    for (int64_t ts : {int64_t{0}, int64_t{7}, spec_ts, int64_t{99999999999}}) {
        for (const std::string& body : bodies()) {
            const std::string message = "job_42." + std::to_string(ts) + "." + body;
            EXPECT_EQ(sign(s, "job_42", ts, body), expected(key_a, message))
                << "ts " << ts << ", body of " << body.size() << " bytes";
        }
    }
}

TEST(StandardSigner, TheStandardVerifierAcceptsWhatItSigns) {
    const StandardSigner s = signer_of(key_a);
    const std::string id = "0196f3b2-7c1e-7d2a-9a51-3f5e2d8c4b10";
    for (const std::string& body : bodies()) {
        const std::string sig = sign(s, id, spec_ts, body);
        EXPECT_EQ(verify_with({key_a}, id, spec_ts, body, sig), Reason::ok)
            << "body of " << body.size() << " bytes";
        // Signed with a's key, so a receiver that only knows b refuses it...
        EXPECT_EQ(verify_with({key_b}, id, spec_ts, body, sig), Reason::signature_mismatch);
        // ...as it refuses another body, id or timestamp under the same signature.
        EXPECT_EQ(verify_with({key_a}, id, spec_ts, body + " ", sig), Reason::signature_mismatch);
        EXPECT_EQ(verify_with({key_a}, id + "x", spec_ts, body, sig), Reason::signature_mismatch);
        EXPECT_EQ(verify_with({key_a}, id, spec_ts + 1, body, sig), Reason::signature_mismatch);
    }
}

TEST(StandardSigner, AnySplitOfTheBodyGivesTheSameSignature) {
    const StandardSigner s = signer_of(key_a);
    const std::string body = bodies()[4].substr(0, 300);
    const std::string whole = sign(s, "job_1", spec_ts, body);
    auto in_pieces = [&](const std::vector<size_t>& cuts) {
        HmacStream st;
        s.start(st, "job_1", spec_ts);
        size_t at = 0;
        for (size_t cut : cuts) {
            st.update(std::string_view(body).substr(at, cut - at));
            at = cut;
        }
        st.update(std::string_view(body).substr(at));
        std::array<char, StandardSigner::signature_size> out;
        return std::string(out.data(), s.finish(st, out));
    };
    for (size_t cut = 0; cut <= body.size(); ++cut) {
        EXPECT_EQ(in_pieces({cut}), whole) << "cut at " << cut;
    }
    for (size_t step : {1, 7, 63, 64, 65}) {
        std::vector<size_t> cuts;
        for (size_t at = step; at < body.size(); at += step) {
            cuts.push_back(at);
        }
        EXPECT_EQ(in_pieces(cuts), whole) << "pieces of " << step;
    }
}

TEST(StandardSigner, AShortBufferGetsNothing) {
    const StandardSigner s = signer_of(spec_secret);
    std::array<char, StandardSigner::signature_size + 1> out;
    out.fill('#');
    EXPECT_EQ(s.sign(spec_id, spec_ts, spec_body,
                     std::span<char>(out.data(), StandardSigner::signature_size - 1)),
              0U);
    EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](char c) { return c == '#'; }));
    // Exactly signature_size is enough, and nothing past it is written.
    EXPECT_EQ(s.sign(spec_id, spec_ts, spec_body,
                     std::span<char>(out.data(), StandardSigner::signature_size)),
              StandardSigner::signature_size);
    EXPECT_EQ(std::string(out.data(), StandardSigner::signature_size), spec_signature);
    EXPECT_EQ(out.back(), '#');
}

TEST(StandardSigner, TheFirstSetSecretSigns) {
    std::string error;
    // Several secrets: the first signs; the receiver that only knows the second refuses.
    auto two = make_standard_signer({env_secret(key_a, "NEW"), env_secret(key_b, "OLD")}, error);
    ASSERT_TRUE(two) << error;
    const std::string sig = sign(*two, "job_1", spec_ts, spec_body);
    EXPECT_EQ(sig, expected(key_a, "job_1." + std::to_string(spec_ts) + "." + spec_body));
    EXPECT_EQ(verify_with({key_a}, "job_1", spec_ts, spec_body, sig), Reason::ok);
    EXPECT_EQ(verify_with({key_b}, "job_1", spec_ts, spec_body, sig), Reason::signature_mismatch);
    // A receiver in the middle of a rotation accepts it with either key listed first.
    EXPECT_EQ(verify_with({key_b, key_a}, "job_1", spec_ts, spec_body, sig), Reason::ok);

    // A first secret whose env var was unset at load is skipped: the next one signs.
    auto skipped = make_standard_signer({env_secret("", "NEW"), env_secret(key_b, "OLD")}, error);
    ASSERT_TRUE(skipped) << error;
    EXPECT_EQ(sign(*skipped, "job_1", spec_ts, spec_body),
              expected(key_b, "job_1." + std::to_string(spec_ts) + "." + spec_body));
}

TEST(StandardSigner, RefusalsNameTheSecretNeverItsMaterial) {
    std::string error;
    EXPECT_FALSE(make_standard_signer({env_secret("", "NEW"), env_secret("", "OLD")}, error));
    EXPECT_EQ(error, "no signing secret is set (env:NEW, env:OLD)");
    error.clear();
    EXPECT_FALSE(make_standard_signer({}, error));
    EXPECT_EQ(error, "no signing secret is set");

    const std::vector<std::string> bad = {
        "whpk_" + std::string(key_a).substr(6), // a public key's prefix
        "whsec_%%%%not-base64%%%%",
        "whsec_",
        "whsec_" + base::base64(std::vector<uint8_t>(193, 1)), // longer than 192 bytes
        std::string(key_a).substr(6),                          // no prefix
    };
    for (const std::string& material : bad) {
        error.clear();
        EXPECT_FALSE(make_standard_signer({env_secret(material, "APP_SIGNING")}, error))
            << material;
        EXPECT_EQ(error,
                  "signing secret env:APP_SIGNING is not whsec_ followed by base64 (at most 192 "
                  "bytes)");
        EXPECT_FALSE(standard_hmac_key(material)) << material;
    }
    // 192 bytes is the longest key accepted.
    EXPECT_TRUE(standard_hmac_key("whsec_" + base::base64(std::vector<uint8_t>(192, 1))));
}
