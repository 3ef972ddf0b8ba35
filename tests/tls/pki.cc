#include "pki.hh"

#include <openssl/bio.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <utility>

#include <unistd.h>

namespace portcullis::tls::fixture {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "tls test PKI: %s failed\n", what);
        std::abort();
    }
}

TempDir::TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tls-test-XXXXXX").string();
    require(mkdtemp(pattern.data()) != nullptr, "mkdtemp");
    _path = pattern;
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(_path, ec);
}

std::string TempDir::write(const std::string& name, const std::string& text) const {
    std::ofstream(_path / name, std::ios::binary | std::ios::trunc) << text;
    return file(name);
}

bssl::UniquePtr<EVP_PKEY> make_key(KeyKind kind) {
    int id = kind == KeyKind::ed25519                               ? EVP_PKEY_ED25519
             : kind == KeyKind::rsa1024 || kind == KeyKind::rsa2048 ? EVP_PKEY_RSA
                                                                    : EVP_PKEY_EC;
    bssl::UniquePtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_id(id, nullptr));
    require(ctx && EVP_PKEY_keygen_init(ctx.get()) == 1, "EVP_PKEY_keygen_init");
    switch (kind) {
    case KeyKind::p256:
        EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), NID_X9_62_prime256v1);
        break;
    case KeyKind::p384:
        EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), NID_secp384r1);
        break;
    case KeyKind::p224:
        EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), NID_secp224r1);
        break;
    case KeyKind::rsa1024:
        EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), 1024);
        break;
    case KeyKind::rsa2048:
        EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), 2048);
        break;
    case KeyKind::ed25519:
        break;
    }
    EVP_PKEY* key = nullptr;
    require(EVP_PKEY_keygen(ctx.get(), &key) == 1, "EVP_PKEY_keygen");
    return bssl::UniquePtr<EVP_PKEY>(key);
}

EVP_PKEY* key_of(KeyKind kind) {
    static std::vector<std::pair<KeyKind, bssl::UniquePtr<EVP_PKEY>>> made;
    for (auto& [k, key] : made) {
        if (k == kind) {
            return key.get();
        }
    }
    made.emplace_back(kind, make_key(kind));
    return made.back().second.get();
}

CertSpec valid_now(std::string cn, std::vector<std::string> dns) {
    const auto now = static_cast<int64_t>(std::time(nullptr));
    return {.cn = std::move(cn),
            .dns = std::move(dns),
            .not_before = now - day,
            .not_after = now + 90 * day};
}

bssl::UniquePtr<X509> make_cert(const CertSpec& spec, EVP_PKEY* key, X509* issuer,
                                EVP_PKEY* issuer_key) {
    bssl::UniquePtr<X509> x(X509_new());
    require(x != nullptr, "X509_new");
    X509_set_version(x.get(), X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 1);
    X509_NAME* name = X509_get_subject_name(x.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                               reinterpret_cast<const uint8_t*>(spec.cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(x.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
    ASN1_TIME_set(X509_getm_notBefore(x.get()), static_cast<time_t>(spec.not_before));
    ASN1_TIME_set(X509_getm_notAfter(x.get()), static_cast<time_t>(spec.not_after));
    X509_set_pubkey(x.get(), key);
    if (!spec.dns.empty()) {
        GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
        for (const std::string& d : spec.dns) {
            GENERAL_NAME* gn = GENERAL_NAME_new();
            ASN1_IA5STRING* s = ASN1_IA5STRING_new();
            ASN1_STRING_set(s, d.data(), static_cast<int>(d.size()));
            GENERAL_NAME_set0_value(gn, GEN_DNS, s);
            sk_GENERAL_NAME_push(names, gn);
        }
        require(X509_add1_ext_i2d(x.get(), NID_subject_alt_name, names, 0, 0) == 1,
                "subjectAltName");
        GENERAL_NAMES_free(names);
    }
    if (spec.ca) {
        BASIC_CONSTRAINTS* bc = BASIC_CONSTRAINTS_new();
        bc->ca = 1;
        require(X509_add1_ext_i2d(x.get(), NID_basic_constraints, bc, 1, 0) == 1,
                "basicConstraints");
        BASIC_CONSTRAINTS_free(bc);
    }
    EVP_PKEY* signer = issuer_key != nullptr ? issuer_key : key;
    const EVP_MD* md = EVP_PKEY_id(signer) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
    require(X509_sign(x.get(), signer, md) > 0, "X509_sign");
    return x;
}

namespace {

std::string contents(BIO* bio) {
    const uint8_t* data = nullptr;
    size_t len = 0;
    BIO_mem_contents(bio, &data, &len);
    return std::string(reinterpret_cast<const char*>(data), len);
}

} // namespace

std::string pem_of(X509* x) {
    bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
    require(PEM_write_bio_X509(bio.get(), x) == 1, "PEM_write_bio_X509");
    return contents(bio.get());
}

std::string pem_of(EVP_PKEY* key) {
    bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
    require(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1,
            "PEM_write_bio_PrivateKey");
    return contents(bio.get());
}

config::TlsCertificate write_certificate(const TempDir& dir, const std::string& name,
                                         const std::vector<X509*>& chain, EVP_PKEY* key) {
    std::string pem;
    for (X509* x : chain) {
        pem += pem_of(x);
    }
    config::TlsCertificate c;
    c.cert = dir.write(name + ".pem", pem);
    c.key = dir.write(name + ".key", pem_of(key));
    return c;
}

} // namespace portcullis::tls::fixture
