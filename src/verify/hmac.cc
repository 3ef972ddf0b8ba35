// HMAC with precomputed pads, and the update/finish steps shared by the HMAC schemes.
#include "portcullis/verify/hmac.hh"

#include "portcullis/verify/constant_time.hh"
#include "portcullis/verify/signature_header.hh"
#include "portcullis/verify/verifier.hh"

#include <openssl/mem.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <utility>

namespace portcullis::verify {

void HashState::init(config::Algorithm alg) {
    _alg = alg;
    switch (alg) {
    case config::Algorithm::sha1:
        SHA1_Init(&_sha1);
        return;
    case config::Algorithm::sha512:
        SHA512_Init(&_sha512);
        return;
    case config::Algorithm::sha256:
        break;
    }
    _alg = config::Algorithm::sha256;
    SHA256_Init(&_sha256);
}

void HashState::update(std::span<const uint8_t> data) {
    switch (_alg) {
    case config::Algorithm::sha1:
        SHA1_Update(&_sha1, data.data(), data.size());
        return;
    case config::Algorithm::sha512:
        SHA512_Update(&_sha512, data.data(), data.size());
        return;
    case config::Algorithm::sha256:
        break;
    }
    SHA256_Update(&_sha256, data.data(), data.size());
}

void HashState::finish(uint8_t* out) {
    switch (_alg) {
    case config::Algorithm::sha1:
        SHA1_Final(out, &_sha1);
        return;
    case config::Algorithm::sha512:
        SHA512_Final(out, &_sha512);
        return;
    case config::Algorithm::sha256:
        break;
    }
    SHA256_Final(out, &_sha256);
}

HmacKey::HmacKey(config::Algorithm alg, std::span<const uint8_t> key) : _alg(alg) {
    const size_t block = HashState::block_size(alg);
    std::array<uint8_t, SHA512_CBLOCK> pad{};
    if (key.size() > block) {
        HashState h;
        h.init(alg);
        h.update(key);
        h.finish(pad.data());
        OPENSSL_cleanse(&h, sizeof h);
    } else {
        std::copy(key.begin(), key.end(), pad.begin());
    }
    for (size_t i = 0; i < block; ++i) {
        pad[i] ^= 0x36;
    }
    _inner.init(alg);
    _inner.update({pad.data(), block});
    // 0x36 ^ 0x5c turns the ipad block into the opad block.
    for (size_t i = 0; i < block; ++i) {
        pad[i] ^= 0x36 ^ 0x5c;
    }
    _outer.init(alg);
    _outer.update({pad.data(), block});
    OPENSSL_cleanse(pad.data(), pad.size());
}

HmacKey::~HmacKey() {
    OPENSSL_cleanse(&_inner, sizeof _inner);
    OPENSSL_cleanse(&_outer, sizeof _outer);
}

void HmacKey::start(HmacStream& s) const {
    s._inner = _inner;
}

void HmacKey::finish(HmacStream& s, uint8_t* out) const {
    std::array<uint8_t, max_mac_size> inner_digest;
    const size_t n = size();
    s._inner.finish(inner_digest.data());
    HashState outer = _outer;
    outer.update({inner_digest.data(), n});
    outer.finish(out);
    // A spent inner state still extends to MACs of longer messages; leave nothing behind.
    OPENSSL_cleanse(&s, sizeof s);
    OPENSSL_cleanse(&outer, sizeof outer);
    OPENSSL_cleanse(inner_digest.data(), inner_digest.size());
}

void HmacKey::compute(std::span<const uint8_t> data, uint8_t* out) const {
    HmacStream s;
    start(s);
    s.update(data);
    finish(s, out);
}

HmacScheme::HmacScheme(std::vector<HmacKey> keys) : _keys(std::move(keys)) {
    // make_verifier refuses routes with more secrets; past this the streams would overflow.
    if (_keys.size() > max_secrets) {
        std::abort();
    }
}

std::vector<HmacKey> HmacScheme::keys_from(config::Algorithm alg,
                                           const std::vector<config::Secret>& secrets) {
    std::vector<HmacKey> keys;
    for (const config::Secret& s : secrets) {
        if (!s.material.empty()) {
            keys.emplace_back(alg, std::span{reinterpret_cast<const uint8_t*>(s.material.data()),
                                             s.material.size()});
        }
    }
    return keys;
}

void HmacScheme::start_macs(VerifyState& st) const {
    for (size_t k = 0; k < _keys.size(); ++k) {
        _keys[k].start(st.macs[k]);
    }
}

void HmacScheme::feed(VerifyState& st, std::string_view signed_text) const {
    for (size_t k = 0; k < _keys.size(); ++k) {
        st.macs[k].update(signed_text);
    }
}

void HmacScheme::update(VerifyState& st, std::span<const uint8_t> body_part) const {
    for (size_t k = 0; k < _keys.size(); ++k) {
        st.macs[k].update(body_part);
    }
}

bool HmacScheme::any_mac_matches(VerifyState& st) const {
    std::array<uint8_t, max_mac_size> mac;
    bool matched = false;
    for (size_t k = 0; k < _keys.size(); ++k) {
        _keys[k].finish(st.macs[k], mac.data());
        const std::span<const uint8_t> computed{mac.data(), _keys[k].size()};
        for (size_t i = 0; i < st.signature_count; ++i) {
            const PresentedSignature& sig = st.signatures[i];
            matched |=
                sig.kind == signature_hmac && equal_ct(computed, {sig.bytes.data(), sig.size});
        }
    }
    OPENSSL_cleanse(mac.data(), mac.size());
    return matched;
}

Reason HmacScheme::finish(VerifyState& st, BodyBuffer /*body*/) const {
    if (!st.begun) {
        return Reason::malformed;
    }
    st.begun = false;
    return any_mac_matches(st) ? Reason::ok : Reason::signature_mismatch;
}

} // namespace portcullis::verify
