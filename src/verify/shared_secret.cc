// `shared_secret`: a header (default X-Callback-Secret; X-Gitlab-Token for GitLab) carries the
// secret itself. Both sides are compared as SHA-256 digests, so that neither the secret's
// length nor the length of a common prefix shows in the time taken.
#include "portcullis/base/encoding.hh"
#include "portcullis/verify/constant_time.hh"
#include "portcullis/verify/verifier.hh"

#include <openssl/mem.h>
#include <openssl/sha.h>

#include <array>
#include <memory>

namespace portcullis::verify {

namespace {

using Digest = std::array<uint8_t, SHA256_DIGEST_LENGTH>;

class SharedSecretVerifier final : public HeaderOnlyScheme {
public:
    SharedSecretVerifier(std::string header, std::vector<Digest> digests)
        : _header(std::move(header)), _digests(std::move(digests)) {}

    ~SharedSecretVerifier() override {
        // The digests would let anyone who reads them brute-force a weak secret offline.
        OPENSSL_cleanse(_digests.data(), _digests.size() * sizeof(Digest));
    }

    Reason begin(std::span<const http::Header> headers, int64_t /*now_unix_ns*/,
                 VerifyState& st) const override {
        st.reset();
        if (_digests.empty()) {
            return Reason::secret_unset;
        }
        const HeaderMatch m = find_single_header(headers, _header);
        if (m.header == nullptr) {
            return Reason::signature_missing;
        }
        if (m.repeated) {
            return Reason::malformed;
        }
        Digest presented;
        const auto value = base::as_bytes(m.header->value);
        SHA256(value.data(), value.size(), presented.data());
        bool matched = false;
        for (const Digest& d : _digests) {
            matched |= equal_ct(presented, d);
        }
        OPENSSL_cleanse(presented.data(), presented.size());
        if (!matched) {
            return Reason::signature_mismatch;
        }
        // Nothing is signed: the decision is made here, before the body is read.
        st.begun = true;
        return Reason::ok;
    }

    std::string_view secret_header() const override { return _header; }

private:
    std::string _header;          // lowercase
    std::vector<Digest> _digests; // SHA-256 of each usable secret
};

} // namespace

std::unique_ptr<Verifier> make_shared_secret_verifier(const config::VerifyConfig& cfg,
                                                      std::string& /*error*/) {
    std::string header = cfg.header.empty() ? std::string("x-callback-secret") : cfg.header;
    for (char& c : header) {
        c = http::ascii_lower(c);
    }
    std::vector<Digest> digests;
    // Reserved so that no copy of a digest is left behind in a freed buffer.
    digests.reserve(cfg.secrets.size());
    for (const config::Secret& s : cfg.secrets) {
        if (!s.material.empty()) {
            const auto material = base::as_bytes(s.material);
            SHA256(material.data(), material.size(), digests.emplace_back().data());
        }
    }
    return std::make_unique<SharedSecretVerifier>(std::move(header), std::move(digests));
}

} // namespace portcullis::verify
