// HMAC (RFC 2104) with the key pads absorbed once, at config load. An HmacKey keeps the hash
// states after the (key ^ ipad) and (key ^ opad) blocks, so that starting a MAC per request is a
// struct copy and the key itself is never touched again.
//
//   HmacKey key(config::Algorithm::sha256, secret_bytes);   // start-up
//   HmacStream s;                                            // per request, no allocation
//   key.start(s);
//   s.update(prefix);
//   s.update(body_part);                                     // as often as the body arrives
//   uint8_t mac[max_mac_size];
//   key.finish(s, mac);                                      // key.size() bytes
#pragma once

#include "portcullis/config/config.hh"

#include <openssl/sha.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace portcullis::verify {

constexpr size_t max_mac_size = 64; // SHA-512

// A running SHA-1, SHA-256 or SHA-512 over BoringSSL's low-level contexts: no EVP, no heap.
// Trivially copyable, which is what makes a precomputed midstate cheap to resume.
class HashState {
public:
    void init(config::Algorithm alg);
    void update(std::span<const uint8_t> data);
    // Writes digest_size() bytes to out. The state is spent afterwards.
    void finish(uint8_t* out);
    size_t digest_size() const { return digest_size(_alg); }
    // Block size: how long an HMAC key may be before it is hashed first.
    size_t block_size() const { return block_size(_alg); }

    static constexpr size_t digest_size(config::Algorithm alg) {
        switch (alg) {
        case config::Algorithm::sha1:
            return SHA_DIGEST_LENGTH;
        case config::Algorithm::sha512:
            return SHA512_DIGEST_LENGTH;
        case config::Algorithm::sha256:
            break;
        }
        return SHA256_DIGEST_LENGTH;
    }
    static constexpr size_t block_size(config::Algorithm alg) {
        return alg == config::Algorithm::sha512 ? SHA512_CBLOCK : SHA256_CBLOCK;
    }

private:
    config::Algorithm _alg = config::Algorithm::sha256;
    union {
        SHA_CTX _sha1;
        SHA256_CTX _sha256;
        SHA512_CTX _sha512;
    };
};

// One MAC in progress. Lives in the per-request VerifyState; started by HmacKey::start.
class HmacStream {
public:
    void update(std::span<const uint8_t> data) { _inner.update(data); }
    void update(std::string_view text) {
        _inner.update({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
    }

private:
    friend class HmacKey;
    HashState _inner;
};

// A secret turned into its two HMAC midstates. Built at config load; the states are as good as
// the key, so they are wiped when the HmacKey goes away.
class HmacKey {
public:
    // Keys longer than the block size are hashed first (RFC 2104 section 2); any length is fine.
    HmacKey(config::Algorithm alg, std::span<const uint8_t> key);
    HmacKey(const HmacKey&) = default;
    HmacKey& operator=(const HmacKey&) = default;
    ~HmacKey();

    void start(HmacStream& s) const;
    // Finishes s and writes size() bytes of MAC to out. s is wiped and must be started again
    // before it is used for another MAC.
    void finish(HmacStream& s, uint8_t* out) const;
    // One-shot MAC of data (tests, `portcullis sign`): size() bytes to out.
    void compute(std::span<const uint8_t> data, uint8_t* out) const;
    size_t size() const { return _inner.digest_size(); }
    config::Algorithm algorithm() const { return _alg; }

private:
    config::Algorithm _alg;
    HashState _inner; // after absorbing key ^ ipad
    HashState _outer; // after absorbing key ^ opad
};

} // namespace portcullis::verify
