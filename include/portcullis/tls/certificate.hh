// One certificate of server.tls as `portcullis check` reports it and the TLS contexts load it:
// the leaf and its chain from one PEM file, the private key from another.
//
//   tls::CertificateInfo info = tls::inspect(cfg.server.tls->certificates[0], std::time(nullptr));
//   for (auto& e : info.errors) print("error: " + info.cert_file + ": " + e);
#pragma once

#include "portcullis/config/config.hh"

#include <cstdint>
#include <string>
#include <vector>

namespace portcullis::tls {

// A certificate that expires sooner than this is warned about.
constexpr int64_t expiry_warning_s = int64_t{14} * 24 * 3600;

struct CertificateInfo {
    std::string cert_file;
    std::string key_file;
    // The names SNI chooses this certificate by: its DNS subjectAltNames, lowercased
    // ("hooks.example.org", "*.example.org"); the subject's CN only when it has none.
    std::vector<std::string> names;
    std::string key_type;    // "ECDSA P-256", "RSA 2048", "Ed25519"
    int64_t not_before = 0;  // unix seconds
    int64_t not_after = 0;   // unix seconds
    size_t chain_length = 0; // certificates in the file, the leaf included
    // Each makes the certificate unusable: a file that cannot be read or holds no certificate,
    // a key that does not match the leaf, an RSA key under 2048 bits or another key type, an
    // expired (or not yet valid) leaf, a chain whose certificates do not each certify the one
    // before. Messages name what is wrong, never key material.
    std::vector<std::string> errors;
    // Expiry within expiry_warning_s.
    std::vector<std::string> warnings;
    bool ok() const { return errors.empty(); }
};

// Reads and checks both files of `c` at time `now` (unix seconds). Never throws.
CertificateInfo inspect(const config::TlsCertificate& c, int64_t now);

// True when `name` (a lowercased host name from SNI) is one this certificate's names cover:
// an exact match, or "*.example.org" for exactly one more label ("a.example.org", not
// "example.org" nor "a.b.example.org").
bool name_matches(std::string_view pattern, std::string_view name);

} // namespace portcullis::tls
