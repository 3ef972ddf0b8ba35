// tls::inspect and tls::name_matches. Keys and certificates are made here with BoringSSL into a
// temporary folder; the clock is injected, so validity windows are exact.
#include "portcullis/tls/certificate.hh"

#include <gtest/gtest.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

using namespace portcullis;

namespace {

// 2027-01-15 08:00:00 UTC; certificates are dated relative to it.
constexpr int64_t now = 1'800'000'000;
constexpr int64_t day = 86400;

class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "tls-test-XXXXXX").string();
        char* made = mkdtemp(pattern.data());
        EXPECT_NE(made, nullptr);
        _path = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(_path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::string file(const std::string& name) const { return (_path / name).string(); }
    std::string write(const std::string& name, const std::string& text) const {
        std::ofstream(_path / name, std::ios::binary) << text;
        return file(name);
    }

private:
    std::filesystem::path _path;
};

enum class KeyKind { p256, p384, p224, rsa1024, rsa2048, ed25519 };

bssl::UniquePtr<EVP_PKEY> make_key(KeyKind kind) {
    int id = kind == KeyKind::ed25519                               ? EVP_PKEY_ED25519
             : kind == KeyKind::rsa1024 || kind == KeyKind::rsa2048 ? EVP_PKEY_RSA
                                                                    : EVP_PKEY_EC;
    bssl::UniquePtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_id(id, nullptr));
    EXPECT_TRUE(ctx && EVP_PKEY_keygen_init(ctx.get()) == 1);
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
    EXPECT_EQ(EVP_PKEY_keygen(ctx.get(), &key), 1);
    return bssl::UniquePtr<EVP_PKEY>(key);
}

// Keys are slow to make (RSA) and any one serves many tests: one of each kind, made once.
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

struct CertSpec {
    std::string cn = "leaf";
    std::vector<std::string> dns;
    int64_t not_before = now - 30 * day;
    int64_t not_after = now + 90 * day;
    bool ca = false;
};

// A certificate for `key`, signed by issuer_key under issuer's name (self-signed when null).
bssl::UniquePtr<X509> make_cert(const CertSpec& spec, EVP_PKEY* key, X509* issuer = nullptr,
                                EVP_PKEY* issuer_key = nullptr) {
    bssl::UniquePtr<X509> x(X509_new());
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
        EXPECT_EQ(X509_add1_ext_i2d(x.get(), NID_subject_alt_name, names, 0, 0), 1);
        GENERAL_NAMES_free(names);
    }
    if (spec.ca) {
        BASIC_CONSTRAINTS* bc = BASIC_CONSTRAINTS_new();
        bc->ca = 1;
        EXPECT_EQ(X509_add1_ext_i2d(x.get(), NID_basic_constraints, bc, 1, 0), 1);
        BASIC_CONSTRAINTS_free(bc);
    }
    EVP_PKEY* signer = issuer_key != nullptr ? issuer_key : key;
    const EVP_MD* md = EVP_PKEY_id(signer) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
    EXPECT_GT(X509_sign(x.get(), signer, md), 0);
    return x;
}

std::string pem_of(X509* x) {
    bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509(bio.get(), x);
    const uint8_t* data = nullptr;
    size_t len = 0;
    BIO_mem_contents(bio.get(), &data, &len);
    return std::string(reinterpret_cast<const char*>(data), len);
}

std::string pem_of(EVP_PKEY* key) {
    bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
    const uint8_t* data = nullptr;
    size_t len = 0;
    BIO_mem_contents(bio.get(), &data, &len);
    return std::string(reinterpret_cast<const char*>(data), len);
}

class TlsCertificate : public ::testing::Test {
protected:
    // Writes the chain and the key, and inspects them at `now`.
    tls::CertificateInfo inspect(const std::vector<X509*>& chain, EVP_PKEY* key) {
        std::string pem;
        for (X509* x : chain) {
            pem += pem_of(x);
        }
        config::TlsCertificate c;
        c.cert = _dir.write("cert.pem", pem);
        c.key = _dir.write("key.pem", pem_of(key));
        return tls::inspect(c, now);
    }

    // One leaf with the given key and names, self-signed.
    tls::CertificateInfo inspect_self_signed(KeyKind kind, const CertSpec& spec = {}) {
        auto leaf = make_cert(spec, key_of(kind));
        return inspect({leaf.get()}, key_of(kind));
    }

    std::string joined(const std::vector<std::string>& v) {
        std::string out;
        for (const std::string& s : v) {
            out += s + "\n";
        }
        return out;
    }

    TempDir _dir;
};

} // namespace

TEST_F(TlsCertificate, KeyTypesThatAreServed) {
    struct Row {
        KeyKind kind;
        std::string type;
    };
    for (const Row& r : {Row{KeyKind::p256, "ECDSA P-256"}, Row{KeyKind::p384, "ECDSA P-384"},
                         Row{KeyKind::rsa2048, "RSA 2048"}, Row{KeyKind::ed25519, "Ed25519"}}) {
        tls::CertificateInfo info = inspect_self_signed(r.kind, {.dns = {"hooks.example.org"}});
        EXPECT_TRUE(info.ok()) << r.type << ": " << joined(info.errors);
        EXPECT_TRUE(info.warnings.empty()) << r.type << ": " << joined(info.warnings);
        EXPECT_EQ(info.key_type, r.type);
        EXPECT_EQ(info.chain_length, 1u);
        EXPECT_EQ(info.names, std::vector<std::string>{"hooks.example.org"});
        EXPECT_EQ(info.not_before, now - 30 * day);
        EXPECT_EQ(info.not_after, now + 90 * day);
        EXPECT_EQ(info.cert_file, _dir.file("cert.pem"));
        EXPECT_EQ(info.key_file, _dir.file("key.pem"));
    }
}

TEST_F(TlsCertificate, KeyTypesThatAreRefused) {
    tls::CertificateInfo rsa = inspect_self_signed(KeyKind::rsa1024);
    EXPECT_EQ(rsa.key_type, "RSA 1024");
    EXPECT_EQ(rsa.errors,
              std::vector<std::string>{"RSA key of 1024 bits: at least 2048 are needed"});

    tls::CertificateInfo curve = inspect_self_signed(KeyKind::p224);
    EXPECT_EQ(curve.errors, std::vector<std::string>{
                                "ECDSA key on an unsupported curve (P-256, P-384 and P-521 are)"});
}

TEST_F(TlsCertificate, ExpiredAndNotYetValidAreErrors) {
    tls::CertificateInfo expired = inspect_self_signed(
        KeyKind::p256, {.not_before = now - 100 * day, .not_after = now - 3 * day});
    EXPECT_EQ(expired.errors,
              std::vector<std::string>{"expired on 2027-01-12 08:00:00 UTC (3 days ago)"});
    EXPECT_EQ(expired.not_after, now - 3 * day);

    tls::CertificateInfo future =
        inspect_self_signed(KeyKind::p256, {.not_before = now + day, .not_after = now + 100 * day});
    EXPECT_EQ(future.errors,
              std::vector<std::string>{"not valid yet: valid from 2027-01-16 08:00:00 UTC"});
}

TEST_F(TlsCertificate, ExpiryWithinFourteenDaysIsAWarning) {
    tls::CertificateInfo soon = inspect_self_signed(KeyKind::p256, {.not_after = now + 10 * day});
    EXPECT_TRUE(soon.ok()) << joined(soon.errors);
    EXPECT_EQ(soon.warnings, std::vector<std::string>{
                                 "expires on 2027-01-25 08:00:00 UTC (in 10 days): renew it"});

    // The boundary: exactly 14 days left is no longer "within".
    tls::CertificateInfo later =
        inspect_self_signed(KeyKind::p256, {.not_after = now + tls::expiry_warning_s});
    EXPECT_TRUE(later.warnings.empty()) << joined(later.warnings);
    tls::CertificateInfo just_within =
        inspect_self_signed(KeyKind::p256, {.not_after = now + tls::expiry_warning_s - 1});
    EXPECT_EQ(just_within.warnings.size(), 1u);
}

TEST_F(TlsCertificate, AKeyThatDoesNotMatchIsAnError) {
    auto leaf = make_cert({}, key_of(KeyKind::p256));
    tls::CertificateInfo info = inspect({leaf.get()}, key_of(KeyKind::ed25519));
    EXPECT_EQ(info.errors, std::vector<std::string>{"the key in " + _dir.file("key.pem") +
                                                    " does not match the certificate"});
    EXPECT_EQ(info.key_type, "ECDSA P-256"); // the certificate's key
}

TEST_F(TlsCertificate, LeafThenIntermediateIsAChain) {
    auto root = make_cert({.cn = "root", .ca = true}, key_of(KeyKind::rsa2048));
    auto intermediate = make_cert({.cn = "intermediate", .ca = true}, key_of(KeyKind::p384),
                                  root.get(), key_of(KeyKind::rsa2048));
    auto leaf = make_cert({.cn = "leaf", .dns = {"a.example.org"}}, key_of(KeyKind::p256),
                          intermediate.get(), key_of(KeyKind::p384));

    tls::CertificateInfo two = inspect({leaf.get(), intermediate.get()}, key_of(KeyKind::p256));
    EXPECT_TRUE(two.ok()) << joined(two.errors);
    EXPECT_EQ(two.chain_length, 2u);
    EXPECT_EQ(two.names, std::vector<std::string>{"a.example.org"});

    tls::CertificateInfo three =
        inspect({leaf.get(), intermediate.get(), root.get()}, key_of(KeyKind::p256));
    EXPECT_TRUE(three.ok()) << joined(three.errors);
    EXPECT_EQ(three.chain_length, 3u);
}

TEST_F(TlsCertificate, AChainInTheWrongOrderIsAnError) {
    auto root = make_cert({.cn = "root", .ca = true}, key_of(KeyKind::rsa2048));
    auto intermediate = make_cert({.cn = "intermediate", .ca = true}, key_of(KeyKind::p384),
                                  root.get(), key_of(KeyKind::rsa2048));
    auto leaf =
        make_cert({.cn = "leaf"}, key_of(KeyKind::p256), intermediate.get(), key_of(KeyKind::p384));

    // Intermediate first: the leaf did not issue it, and the key matches the second one.
    tls::CertificateInfo swapped = inspect({intermediate.get(), leaf.get()}, key_of(KeyKind::p256));
    EXPECT_EQ(swapped.errors,
              (std::vector<std::string>{
                  "chain out of order: certificate 2 (/CN=leaf) did not issue certificate 1 "
                  "(/CN=intermediate, issued by /CN=root); the file must hold the leaf first, "
                  "then each certificate's issuer after it",
                  "the key in " + _dir.file("key.pem") +
                      " does not match the certificate: it matches certificate 2 of the file, "
                      "so the leaf is not first"}));

    // Leaf first but the root before the intermediate.
    tls::CertificateInfo skipped =
        inspect({leaf.get(), root.get(), intermediate.get()}, key_of(KeyKind::p256));
    EXPECT_EQ(skipped.errors,
              std::vector<std::string>{
                  "chain out of order: certificate 2 (/CN=root) did not issue certificate 1 "
                  "(/CN=leaf, issued by /CN=intermediate); the file must hold the leaf first, "
                  "then each certificate's issuer after it"});

    // A certificate with the issuer's name but another key did not sign it either.
    auto impostor = make_cert({.cn = "intermediate", .ca = true}, key_of(KeyKind::ed25519));
    tls::CertificateInfo forged = inspect({leaf.get(), impostor.get()}, key_of(KeyKind::p256));
    ASSERT_EQ(forged.errors.size(), 1u) << joined(forged.errors);
    EXPECT_NE(forged.errors[0].find("certificate 2 (/CN=intermediate) did not issue"),
              std::string::npos)
        << forged.errors[0];
}

TEST_F(TlsCertificate, NamesAreTheDnsAlternativeNamesLowercased) {
    tls::CertificateInfo info = inspect_self_signed(
        KeyKind::p256, {.cn = "ignored.example.org",
                        .dns = {"Hooks.Example.ORG", "*.example.org", "other.example.net"}});
    EXPECT_TRUE(info.ok()) << joined(info.errors);
    EXPECT_EQ(info.names, (std::vector<std::string>{"hooks.example.org", "*.example.org",
                                                    "other.example.net"}));

    // Without any DNS name, the subject's CN stands in.
    tls::CertificateInfo cn = inspect_self_signed(KeyKind::p256, {.cn = "Legacy.Example.org"});
    EXPECT_TRUE(cn.ok()) << joined(cn.errors);
    EXPECT_EQ(cn.names, std::vector<std::string>{"legacy.example.org"});
}

TEST_F(TlsCertificate, FilesThatCannotBeUsed) {
    std::string key = _dir.write("key.pem", pem_of(key_of(KeyKind::p256)));
    std::string cert = _dir.write("cert.pem", pem_of(make_cert({}, key_of(KeyKind::p256)).get()));
    struct Row {
        std::string cert;
        std::string key;
        std::string error;
    };
    const Row rows[] = {
        {_dir.file("missing.pem"), key,
         "cannot read the certificate file (No such file or directory)"},
        {_dir.write("empty.pem", ""), key,
         "holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)"},
        {_dir.write("text.pem", "not a certificate\n"), key,
         "holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)"},
        {_dir.write("damaged.pem",
                    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
         key, "certificate 1 of the file is damaged (not a PEM certificate BoringSSL can parse)"},
        {_dir.file(""), key, "cannot read the certificate file (not a regular file)"},
        {cert, _dir.file("missing.key"),
         "cannot read the key file " + _dir.file("missing.key") + " (No such file or directory)"},
        {cert, _dir.write("empty.key", ""),
         "the key file " + _dir.file("empty.key") +
             " holds no private key BoringSSL can read (PEM, not encrypted)"},
        // A certificate is not a key.
        {cert, cert,
         "the key file " + cert + " holds no private key BoringSSL can read (PEM, not encrypted)"},
    };
    for (const Row& r : rows) {
        tls::CertificateInfo info = tls::inspect({.cert = r.cert, .key = r.key}, now);
        EXPECT_EQ(info.errors, std::vector<std::string>{r.error}) << r.cert << " " << r.key;
        EXPECT_FALSE(info.ok());
    }

    // A FIFO named by mistake: refused at once instead of waiting for a writer.
    std::string fifo = _dir.file("fifo.pem");
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    tls::CertificateInfo info = tls::inspect({.cert = fifo, .key = key}, now);
    EXPECT_EQ(info.errors,
              std::vector<std::string>{"cannot read the certificate file (not a regular file)"});
}

TEST_F(TlsCertificate, MessagesNeverHoldKeyMaterial) {
    std::string key_pem = pem_of(key_of(KeyKind::p256));
    auto other = make_cert({}, key_of(KeyKind::ed25519));
    config::TlsCertificate c{.cert = _dir.write("cert.pem", pem_of(other.get())),
                             .key = _dir.write("key.pem", key_pem)};
    tls::CertificateInfo info = tls::inspect(c, now);
    ASSERT_FALSE(info.ok());
    // The base64 body of the key, a line at a time.
    size_t begin = key_pem.find('\n') + 1;
    std::string first_line = key_pem.substr(begin, key_pem.find('\n', begin) - begin);
    ASSERT_GT(first_line.size(), 16u);
    for (const std::string& e : info.errors) {
        EXPECT_EQ(e.find(first_line), std::string::npos) << e;
        EXPECT_EQ(e.find("PRIVATE KEY"), std::string::npos) << e;
    }
}

TEST(TlsNameMatches, ExactAndOneLabelWildcards) {
    struct Row {
        std::string_view pattern;
        std::string_view name;
        bool matches;
    };
    const Row rows[] = {
        {"hooks.example.org", "hooks.example.org", true},
        {"hooks.example.org", "hooks.example.net", false},
        {"hooks.example.org", "a.hooks.example.org", false},
        {"hooks.example.org", "example.org", false},
        {"Hooks.Example.org", "hooks.example.org", true},
        {"hooks.example.org", "HOOKS.example.ORG", true},
        {"*.example.org", "a.example.org", true},
        {"*.example.org", "A.Example.Org", true},
        {"*.example.org", "example.org", false},        // the bare domain
        {"*.example.org", ".example.org", false},       // an empty label
        {"*.example.org", "a.b.example.org", false},    // two labels
        {"*.example.org", "a.example.org.evil", false}, // a suffix elsewhere
        {"*.example.org", "aexample.org", false},
        {"*", "anything", false},
        {"*.", "a.", false},
        {"", "", false},
        {"a.example.org", "", false},
    };
    for (const Row& r : rows) {
        EXPECT_EQ(tls::name_matches(r.pattern, r.name), r.matches) << r.pattern << " " << r.name;
    }
}
