// Drives a verifier the way the shard does, for the scheme tests:
//
//   VerifyState st;
//   Reason r = run_verifier(*v, headers, body, now_ns, st);         // begin, update..., finish
//   std::string answer = handshake_of(*v, body);                    // "" for ordinary webhooks
#pragma once

#include "portcullis/base/encoding.hh"
#include "portcullis/verify/verifier.hh"

#include <gtest/gtest.h>
#include <openssl/digest.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::verify::harness {

// The body after max_signed_prefix bytes of filler, as the record head precedes it in the shard;
// the filler must be intact after finish() (Ed25519 schemes borrow and restore it).
class RecordedBody {
public:
    explicit RecordedBody(std::string_view body) : _bytes(max_signed_prefix + body.size(), filler) {
        std::copy(body.begin(), body.end(), _bytes.begin() + max_signed_prefix);
    }
    BodyBuffer view() { return {_bytes, max_signed_prefix}; }
    bool head_intact() const {
        return std::all_of(_bytes.begin(), _bytes.begin() + max_signed_prefix,
                           [](uint8_t b) { return b == filler; });
    }

private:
    static constexpr uint8_t filler = 0xA5;
    std::vector<uint8_t> _bytes;
};

// begin's refusal, or finish's verdict after the body was fed in pieces of piece_size.
inline Reason run_verifier(const Verifier& v, std::span<const http::Header> headers,
                           std::string_view body, int64_t now_unix_ns, VerifyState& st,
                           size_t piece_size = 4096) {
    Reason r = v.begin(headers, now_unix_ns, st);
    if (r != Reason::ok) {
        return r;
    }
    const auto bytes = base::as_bytes(body);
    for (size_t at = 0; at < bytes.size(); at += piece_size) {
        v.update(st, bytes.subspan(at, std::min(piece_size, bytes.size() - at)));
    }
    RecordedBody recorded(body);
    r = v.finish(st, recorded.view());
    if (!recorded.head_intact()) {
        ADD_FAILURE() << "finish() left the bytes before the body changed";
    }
    return r;
}

inline Reason run_verifier(const Verifier& v, std::span<const http::Header> headers,
                           std::string_view body, int64_t now_unix_ns = 0) {
    VerifyState st;
    return run_verifier(v, headers, body, now_unix_ns, st);
}

// The MAC computed by BoringSSL's own one-shot HMAC, so that the schemes' tests never check the
// project's HMAC code against itself.
inline std::vector<uint8_t> reference_hmac(config::Algorithm alg, std::string_view key,
                                           std::string_view message) {
    const EVP_MD* md = alg == config::Algorithm::sha512 ? EVP_sha512()
                       : alg == config::Algorithm::sha1 ? EVP_sha1()
                                                        : EVP_sha256();
    std::vector<uint8_t> out(EVP_MAX_MD_SIZE);
    unsigned int n = 0;
    HMAC(md, key.data(), key.size(), reinterpret_cast<const uint8_t*>(message.data()),
         message.size(), out.data(), &n);
    out.resize(n);
    return out;
}

constexpr int64_t seconds(int64_t s) {
    return s * 1'000'000'000;
}

// A verifier for `scheme` with the given secrets (taken as env secrets) and options.
inline std::unique_ptr<Verifier> make(config::Scheme scheme,
                                      const std::vector<std::string>& secrets,
                                      config::VerifyConfig cfg = {}) {
    cfg.scheme = scheme;
    for (const std::string& s : secrets) {
        cfg.secrets.push_back({s, config::SecretSource::env, "env:SECRET"});
    }
    std::string error;
    auto v = make_verifier(cfg, error);
    EXPECT_TRUE(v) << error;
    return v;
}

using Fields = std::vector<std::pair<std::string, std::string>>;

inline std::vector<http::Header> views(const Fields& fields) {
    std::vector<http::Header> headers;
    for (const auto& [name, value] : fields) {
        headers.push_back({name, value});
    }
    return headers;
}

inline std::string handshake_of(const Verifier& v, std::string_view body) {
    std::array<char, max_handshake_answer> out;
    return std::string(v.handshake(base::as_bytes(body), out));
}

} // namespace portcullis::verify::harness
