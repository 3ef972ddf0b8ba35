// What verification costs on top of hashing. Each BM_Verify<Scheme> runs begin + update in
// 4 KiB pieces + finish over the same body as BM_RawSha256 and BM_BoringsslHmacSha256, so the
// ratio to the first is the whole overhead of verifying (HMAC's one extra compression block
// for the outer hash, the scheme's signed prefix, header parsing and decoding, comparison) and
// the ratio to the second is what this project adds to the HMAC floor. The TwoSecrets variant
// shows that every extra secret costs a full pass. Ed25519 cannot stream: BM_VerifyEd25519 is
// its fixed cost per request. BM_SignStandard is the signing a signed HTTP sink adds per delivery.
#include "portcullis/base/encoding.hh"
#include "portcullis/verify/standard_signer.hh"
#include "portcullis/verify/verifier.hh"

#include <benchmark/benchmark.h>
#include <openssl/curve25519.h>
#include <openssl/digest.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <array>
#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::verify;

namespace {

constexpr int64_t now_s = 1700000000;

std::string make_body(size_t n) {
    std::string body(n, '\0');
    for (size_t i = 0; i < n; ++i) {
        body[i] = static_cast<char>('a' + i % 26);
    }
    return body;
}

std::vector<uint8_t> mac_of(const std::string& key, const std::string& message) {
    HmacKey k(config::Algorithm::sha256, base::as_bytes(key));
    std::vector<uint8_t> mac(k.size());
    k.compute(base::as_bytes(message), mac.data());
    return mac;
}

void BM_RawSha256(benchmark::State& state) {
    const std::string body = make_body(static_cast<size_t>(state.range(0)));
    uint8_t digest[SHA256_DIGEST_LENGTH];
    for (auto _ : state) {
        SHA256(reinterpret_cast<const uint8_t*>(body.data()), body.size(), digest);
        benchmark::DoNotOptimize(digest);
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_RawSha256)->Arg(1024)->Arg(25600);

// The floor for any HMAC over these bytes: BoringSSL's own HMAC with its key set once and the
// context reused (the same precomputed pads), without headers, decoding or comparison. HMAC
// costs one more compression block than SHA-256 of the same bytes (the outer hash).
void BM_BoringsslHmacSha256(benchmark::State& state) {
    const std::string body = make_body(static_cast<size_t>(state.range(0)));
    const std::string key = "current secret";
    uint8_t mac[SHA256_DIGEST_LENGTH];
    unsigned int n = 0;
    bssl::ScopedHMAC_CTX ctx;
    HMAC_Init_ex(ctx.get(), key.data(), key.size(), EVP_sha256(), nullptr);
    for (auto _ : state) {
        HMAC_Init_ex(ctx.get(), nullptr, 0, nullptr, nullptr);
        HMAC_Update(ctx.get(), base::as_bytes(body).data(), body.size());
        HMAC_Final(ctx.get(), mac, &n);
        benchmark::DoNotOptimize(mac);
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_BoringsslHmacSha256)->Arg(1024)->Arg(25600);

struct Request {
    std::vector<std::pair<std::string, std::string>> headers;
};

// Verifies `body` with headers made by sign(body) on a route of `scheme` with `secrets`.
template <typename Sign>
void verify_scheme(benchmark::State& state, config::Scheme scheme,
                   const std::vector<std::string>& secrets, Sign sign) {
    const std::string body = make_body(static_cast<size_t>(state.range(0)));
    config::VerifyConfig cfg;
    cfg.scheme = scheme;
    for (const std::string& s : secrets) {
        cfg.secrets.push_back({s, config::SecretSource::value, "value"});
    }
    std::string error;
    auto verifier = make_verifier(cfg, error);
    if (!verifier) {
        state.SkipWithError(error.c_str());
        return;
    }
    const Request request = sign(body);
    std::vector<http::Header> headers;
    for (const auto& [name, value] : request.headers) {
        headers.push_back({name, value});
    }
    // The body after room for a record head, as the shard hands it to finish().
    std::vector<uint8_t> record(max_signed_prefix, 0);
    record.insert(record.end(), body.begin(), body.end());
    const auto bytes = base::as_bytes(body);
    constexpr size_t piece = 4096;
    VerifyState st;
    for (auto _ : state) {
        Reason r = verifier->begin(headers, now_s * 1'000'000'000, st);
        if (r == Reason::ok) {
            for (size_t at = 0; at < bytes.size(); at += piece) {
                verifier->update(st, bytes.subspan(at, std::min(piece, bytes.size() - at)));
            }
            r = verifier->finish(st, {record, max_signed_prefix});
        }
        if (r != Reason::ok) {
            state.SkipWithError(std::string(reason_code(r)).c_str());
            return;
        }
        benchmark::DoNotOptimize(r);
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}

Request github(const std::string& secret, const std::string& body) {
    return {{{"Content-Type", "application/json"},
             {"X-GitHub-Event", "push"},
             {"X-Hub-Signature-256", "sha256=" + base::hex(mac_of(secret, body))}}};
}

void BM_VerifyGithub(benchmark::State& state) {
    verify_scheme(state, config::Scheme::github, {"current secret"},
                  [](const std::string& body) { return github("current secret", body); });
}
BENCHMARK(BM_VerifyGithub)->Arg(1024)->Arg(25600);

// The matching secret listed last.
void BM_VerifyGithubTwoSecrets(benchmark::State& state) {
    verify_scheme(state, config::Scheme::github, {"current secret", "previous secret"},
                  [](const std::string& body) { return github("previous secret", body); });
}
BENCHMARK(BM_VerifyGithubTwoSecrets)->Arg(1024)->Arg(25600);

void BM_VerifyStripe(benchmark::State& state) {
    const std::string secret = "whsec_benchmark";
    verify_scheme(state, config::Scheme::stripe, {secret}, [&](const std::string& body) {
        const std::string t = std::to_string(now_s);
        return Request{
            {{"Stripe-Signature", "t=" + t + ",v1=" + base::hex(mac_of(secret, t + "." + body))}}};
    });
}
BENCHMARK(BM_VerifyStripe)->Arg(1024)->Arg(25600);

void BM_VerifySlack(benchmark::State& state) {
    const std::string secret = "slack signing secret";
    verify_scheme(state, config::Scheme::slack, {secret}, [&](const std::string& body) {
        const std::string t = std::to_string(now_s);
        return Request{
            {{"X-Slack-Request-Timestamp", t},
             {"X-Slack-Signature", "v0=" + base::hex(mac_of(secret, "v0:" + t + ":" + body))}}};
    });
}
BENCHMARK(BM_VerifySlack)->Arg(1024)->Arg(25600);

void BM_VerifyStandard(benchmark::State& state) {
    const std::string key = "standard webhooks key";
    verify_scheme(state, config::Scheme::standard, {"whsec_" + base::base64(base::as_bytes(key))},
                  [&](const std::string& body) {
                      const std::string t = std::to_string(now_s);
                      const std::string id = "msg_2LJtYGRPCGXKqALYxsGyVmprnVw";
                      return Request{
                          {{"webhook-id", id},
                           {"webhook-timestamp", t},
                           {"webhook-signature",
                            "v1," + base::base64(mac_of(key, id + "." + t + "." + body))}}};
                  });
}
BENCHMARK(BM_VerifyStandard)->Arg(1024)->Arg(25600);

// The HTTP sink's side of the same scheme: one `webhook-signature` for a delivery, key decoded
// at start-up, written to a stack buffer (no allocation). Comparable to BM_BoringsslHmacSha256:
// the difference is the "{id}.{timestamp}." prefix, its decimal timestamp and the base64.
void BM_SignStandard(benchmark::State& state) {
    const std::string body = make_body(static_cast<size_t>(state.range(0)));
    const StandardSigner signer(
        *standard_hmac_key("whsec_" + base::base64(base::as_bytes("standard webhooks key"))));
    const std::string id = "0196f3b2-7c1e-7d2a-9a51-3f5e2d8c4b10";
    std::array<char, StandardSigner::signature_size> out;
    int64_t ts = now_s;
    for (auto _ : state) {
        benchmark::DoNotOptimize(signer.sign(id, ts++, body, out));
        benchmark::DoNotOptimize(out);
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_SignStandard)->Arg(1024)->Arg(25600);

void BM_VerifyShopify(benchmark::State& state) {
    const std::string secret = "shopify client secret";
    verify_scheme(state, config::Scheme::shopify, {secret}, [&](const std::string& body) {
        return Request{{{"X-Shopify-Hmac-Sha256", base::base64(mac_of(secret, body))}}};
    });
}
BENCHMARK(BM_VerifyShopify)->Arg(1024)->Arg(25600);

void BM_VerifyEd25519(benchmark::State& state) {
    uint8_t public_key[32];
    uint8_t private_key[64];
    const uint8_t seed[32] = {7};
    ED25519_keypair_from_seed(public_key, private_key, seed);
    verify_scheme(
        state, config::Scheme::ed25519, {base::hex(public_key)}, [&](const std::string& body) {
            const std::string t = std::to_string(now_s);
            const std::string message = t + body;
            uint8_t sig[64];
            ED25519_sign(sig, base::as_bytes(message).data(), message.size(), private_key);
            return Request{{{"X-Signature-Ed25519", base::hex(sig)}, {"X-Signature-Timestamp", t}}};
        });
}
BENCHMARK(BM_VerifyEd25519)->Arg(1024)->Arg(25600);

} // namespace
