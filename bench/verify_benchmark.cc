// What verification costs on top of hashing: BM_VerifyGithub against BM_RawSha256 over the same
// bytes gives the overhead of HMAC (two extra compression blocks plus the outer hash) and of the
// per-request plumbing; the TwoSecrets variant shows that every extra secret costs a full pass.
#include "portcullis/base/encoding.hh"
#include "portcullis/verify/verifier.hh"

#include <benchmark/benchmark.h>
#include <openssl/sha.h>

#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::verify;

namespace {

std::string make_body(size_t n) {
    std::string body(n, '\0');
    for (size_t i = 0; i < n; ++i) {
        body[i] = static_cast<char>('a' + i % 26);
    }
    return body;
}

std::string github_signature(const std::string& secret, const std::string& body) {
    HmacKey key(config::Algorithm::sha256, base::as_bytes(secret));
    uint8_t mac[max_mac_size];
    key.compute(base::as_bytes(body), mac);
    return "sha256=" + base::hex({mac, key.size()});
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

// begin + update in 4 KiB pieces + finish, with the matching secret listed last.
void verify_github(benchmark::State& state, const std::vector<std::string>& secrets) {
    const std::string body = make_body(static_cast<size_t>(state.range(0)));
    config::VerifyConfig cfg;
    cfg.scheme = config::Scheme::github;
    for (const std::string& s : secrets) {
        cfg.secrets.push_back({s, config::SecretSource::value, "value"});
    }
    std::string error;
    auto verifier = make_verifier(cfg, error);
    if (!verifier) {
        state.SkipWithError(error.c_str());
        return;
    }
    const std::string signature = github_signature(secrets.back(), body);
    const http::Header headers[] = {
        {"Content-Type", "application/json"},
        {"X-GitHub-Event", "push"},
        {"X-Hub-Signature-256", signature},
    };
    const auto bytes = base::as_bytes(body);
    constexpr size_t piece = 4096;
    VerifyState st;
    for (auto _ : state) {
        Reason r = verifier->begin(headers, 0, st);
        if (r == Reason::ok) {
            for (size_t at = 0; at < bytes.size(); at += piece) {
                verifier->update(st, bytes.subspan(at, std::min(piece, bytes.size() - at)));
            }
            r = verifier->finish(st, bytes);
        }
        if (r != Reason::ok) {
            state.SkipWithError("verification failed");
            return;
        }
        benchmark::DoNotOptimize(r);
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}

void BM_VerifyGithub(benchmark::State& state) {
    verify_github(state, {"current secret"});
}
BENCHMARK(BM_VerifyGithub)->Arg(1024)->Arg(25600);

void BM_VerifyGithubTwoSecrets(benchmark::State& state) {
    verify_github(state, {"current secret", "previous secret"});
}
BENCHMARK(BM_VerifyGithubTwoSecrets)->Arg(1024)->Arg(25600);

} // namespace
