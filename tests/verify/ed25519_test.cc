// Ed25519: RFC 8032's test vectors through the shared key check, and the `ed25519` (Discord)
// scheme with its PING handshake.
#include "portcullis/base/encoding.hh"
#include "portcullis/verify/ed25519_keys.hh"
#include "portcullis/verify/verifier.hh"

#include "harness.hh"

#include <gtest/gtest.h>
#include <openssl/curve25519.h>

#include <string>

using namespace portcullis;
using namespace portcullis::verify;
using namespace portcullis::verify::harness;

namespace {

std::vector<uint8_t> unhex(std::string_view h) {
    std::vector<uint8_t> out(h.size() / 2);
    EXPECT_TRUE(base::hex_decode(h, out)) << h;
    return out;
}

// RFC 8032 section 7.1, TESTs 1 to 3 and SHA(abc).
struct Rfc8032Vector {
    const char* public_key;
    const char* message;
    const char* signature;
};
const Rfc8032Vector rfc8032[] = {
    {"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b"
     "46bd25bf5f0595bbe24655141438e7a100b"},
    {"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11"
     "d8c387b2eaeb4302aeeb00d291612bb0c00"},
    {"fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc"
     "6594a7c15e9716ed28dc027beceea1ec40a"},
    {"ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3fee"
     "bbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e"
     "0303dca179c138ac17ad9bef1177331a704"},
};

// Checks `message` against `signature` with the key, as the schemes do: no prefix, the message
// as the body after a record head.
bool check(const std::vector<uint8_t>& key, const std::vector<uint8_t>& message,
           const std::vector<uint8_t>& signature) {
    Ed25519Keys keys;
    keys.add(std::span<const uint8_t, 32>(key.data(), 32));
    VerifyState st;
    st.reset();
    std::copy(signature.begin(), signature.end(), st.signatures[0].bytes.begin());
    st.signatures[0].size = 64;
    st.signatures[0].kind = signature_ed25519;
    st.signature_count = 1;
    RecordedBody body(
        std::string_view(reinterpret_cast<const char*>(message.data()), message.size()));
    const bool ok = keys.any_matches(st, body.view());
    EXPECT_TRUE(body.head_intact());
    return ok;
}

const char* discord_seed = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";

struct Discord {
    uint8_t public_key[32];
    uint8_t private_key[64];
    Discord() {
        const auto seed = unhex(discord_seed);
        ED25519_keypair_from_seed(public_key, private_key, seed.data());
    }
    Fields sign(const std::string& ts, const std::string& body) const {
        const std::string message = ts + body;
        uint8_t sig[64];
        ED25519_sign(sig, reinterpret_cast<const uint8_t*>(message.data()), message.size(),
                     private_key);
        return {{"X-Signature-Ed25519", base::hex({sig, 64})}, {"X-Signature-Timestamp", ts}};
    }
    std::string key_hex() const { return base::hex({public_key, 32}); }
};

constexpr int64_t now = 1760000000;

} // namespace

TEST(Ed25519Keys, AcceptsRfc8032VectorsAndRefusesTamperedOnes) {
    for (const Rfc8032Vector& v : rfc8032) {
        const auto key = unhex(v.public_key);
        auto message = unhex(v.message);
        auto signature = unhex(v.signature);
        EXPECT_TRUE(check(key, message, signature)) << v.public_key;
        signature[10] ^= 1;
        EXPECT_FALSE(check(key, message, signature)) << v.public_key;
        signature[10] ^= 1;
        message.push_back(0);
        EXPECT_FALSE(check(key, message, signature)) << v.public_key;
    }
}

TEST(Ed25519Scheme, VerifiesTimestampAndBody) {
    const Discord discord;
    auto v = make(config::Scheme::ed25519, {discord.key_hex()});
    const std::string body = R"({"type":2,"data":{"name":"deploy"}})";
    const std::string ts = std::to_string(now);
    EXPECT_EQ(run_verifier(*v, views(discord.sign(ts, body)), body, seconds(now)), Reason::ok);
    EXPECT_EQ(run_verifier(*v, views(discord.sign(ts, body)), body + " ", seconds(now)),
              Reason::signature_mismatch);
    Fields moved = discord.sign(ts, body);
    moved[1].second = std::to_string(now + 1);
    EXPECT_EQ(run_verifier(*v, views(moved), body, seconds(now)), Reason::signature_mismatch);
    EXPECT_EQ(run_verifier(*v, views(discord.sign(ts, body)), body, seconds(now + 301)),
              Reason::timestamp_too_old);
    EXPECT_EQ(run_verifier(*v, views(discord.sign(ts, body)), body, seconds(now - 301)),
              Reason::timestamp_too_new);
    Fields short_sig = discord.sign(ts, body);
    short_sig[0].second.pop_back();
    EXPECT_EQ(run_verifier(*v, views(short_sig), body, seconds(now)), Reason::malformed);
    EXPECT_EQ(run_verifier(*v, views({{"X-Signature-Timestamp", ts}}), body, seconds(now)),
              Reason::signature_missing);
    EXPECT_EQ(run_verifier(*v, views({discord.sign(ts, body)[0]}), body, seconds(now)),
              Reason::timestamp_missing);
    // Another application's key: a valid signature, but not from this sender.
    auto other = make(config::Scheme::ed25519, {std::string(rfc8032[0].public_key)});
    EXPECT_EQ(run_verifier(*other, views(discord.sign(ts, body)), body, seconds(now)),
              Reason::signature_mismatch);
    VerifyState st;
    EXPECT_EQ(run_verifier(*v, views(discord.sign(ts, body)), body, seconds(now), st), Reason::ok);
    EXPECT_EQ(st.ed25519_checks, 1);
}

TEST(Ed25519Scheme, AnswersPingWithPong) {
    const Discord discord;
    auto v = make(config::Scheme::ed25519, {discord.key_hex()});
    EXPECT_EQ(handshake_of(*v, R"({"type":1})"), R"({"type":1})");
    EXPECT_EQ(handshake_of(*v, R"({"id":"1","application_id":"2","type":1,"version":1})"),
              R"({"type":1})");
    for (const char* body :
         {R"({"type":2})", R"({"type":"1"})", R"({"type":1.0})", R"({"type":1)", R"([1])", ""}) {
        EXPECT_EQ(handshake_of(*v, body), "") << body;
    }
}
