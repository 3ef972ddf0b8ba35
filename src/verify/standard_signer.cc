// Standard Webhooks v1 signing with a whsec_ key decoded once (see standard_signer.hh).
#include "portcullis/verify/standard_signer.hh"

#include <openssl/mem.h>

#include <array>
#include <charconv>
#include <limits>

namespace portcullis::verify {

void StandardSigner::start(HmacStream& s, std::string_view id, int64_t timestamp_s) const {
    // The longest int64 in decimal, sign included: 20 characters.
    std::array<char, std::numeric_limits<int64_t>::digits10 + 2> ts;
    const auto [end, ec] = std::to_chars(ts.data(), ts.data() + ts.size(), timestamp_s);
    static_cast<void>(ec); // cannot fail: the buffer holds any int64
    _key.start(s);
    s.update(id);
    s.update(".");
    s.update(std::string_view(ts.data(), static_cast<size_t>(end - ts.data())));
    s.update(".");
}

size_t StandardSigner::finish(HmacStream& s, std::span<char> out) const {
    std::array<uint8_t, max_mac_size> mac;
    // Finish even when out is short, so that s is wiped either way.
    _key.finish(s, mac.data());
    size_t n = 0;
    if (out.size() >= signature_size) {
        out[0] = 'v';
        out[1] = '1';
        out[2] = ',';
        base::base64_encode({mac.data(), SHA256_DIGEST_LENGTH}, out.data() + 3);
        n = signature_size;
    }
    OPENSSL_cleanse(mac.data(), mac.size());
    return n;
}

size_t StandardSigner::sign(std::string_view id, int64_t timestamp_s, std::string_view body,
                            std::span<char> out) const {
    HmacStream s;
    start(s, id, timestamp_s);
    s.update(body);
    return finish(s, out);
}

std::optional<StandardSigner> make_standard_signer(const std::vector<config::Secret>& secrets,
                                                   std::string& error) {
    for (const config::Secret& s : secrets) {
        if (s.material.empty()) {
            continue;
        }
        std::optional<HmacKey> key = standard_hmac_key(s.material);
        if (!key) {
            error = "signing secret " + s.origin +
                    " is not whsec_ followed by base64 (at most 192 bytes)";
            return std::nullopt;
        }
        return StandardSigner(*key);
    }
    std::string origins;
    for (const config::Secret& s : secrets) {
        origins += (origins.empty() ? "" : ", ") + s.origin;
    }
    error = "no signing secret is set" + (origins.empty() ? "" : " (" + origins + ")");
    return std::nullopt;
}

} // namespace portcullis::verify
