// Keys and certificates made with BoringSSL for the TLS tests and the TLS fuzz target, written
// as PEM into a temporary folder. No GoogleTest here (the fuzz build has none): a BoringSSL call
// that fails while making them aborts with a message, which fails the test that asked.
//
//   TempDir dir;
//   auto leaf = make_cert({.cn = "leaf", .dns = {"a.test"}}, key_of(KeyKind::p256));
//   config::TlsCertificate c = write_certificate(dir, "a", {leaf.get()}, key_of(KeyKind::p256));
#pragma once

#include "portcullis/config/config.hh"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace portcullis::tls::fixture {

// 2027-01-15 08:00:00 UTC: CertSpec's default validity is relative to it (certificate tests
// inject it as the clock). Certificates that tls::Server loads need validity around the real
// time instead: valid_now().
constexpr int64_t fixed_now = 1'800'000'000;
constexpr int64_t day = 86400;

// Aborts with `what` when `ok` is false.
void require(bool ok, const char* what);

class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::string file(const std::string& name) const { return (_path / name).string(); }
    // Replaces the file's contents; returns its path.
    std::string write(const std::string& name, const std::string& text) const;

private:
    std::filesystem::path _path;
};

enum class KeyKind { p256, p384, p224, rsa1024, rsa2048, ed25519 };

bssl::UniquePtr<EVP_PKEY> make_key(KeyKind kind);
// Keys are slow to make (RSA) and any one serves many tests: one of each kind, made once.
EVP_PKEY* key_of(KeyKind kind);

struct CertSpec {
    std::string cn = "leaf";
    std::vector<std::string> dns;
    int64_t not_before = fixed_now - 30 * day;
    int64_t not_after = fixed_now + 90 * day;
    bool ca = false;
};

// A spec valid from yesterday to 90 days from now by the real clock.
CertSpec valid_now(std::string cn, std::vector<std::string> dns);

// A certificate for `key`, signed by issuer_key under issuer's name (self-signed when null).
bssl::UniquePtr<X509> make_cert(const CertSpec& spec, EVP_PKEY* key, X509* issuer = nullptr,
                                EVP_PKEY* issuer_key = nullptr);

std::string pem_of(X509* x);
std::string pem_of(EVP_PKEY* key);

// Writes <name>.pem (the chain) and <name>.key into `dir`.
config::TlsCertificate write_certificate(const TempDir& dir, const std::string& name,
                                         const std::vector<X509*>& chain, EVP_PKEY* key);

} // namespace portcullis::tls::fixture
