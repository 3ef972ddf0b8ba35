// tls::inspect and tls::name_matches. Keys and certificates are made with BoringSSL into a
// temporary folder (pki.hh); the clock is injected, so validity windows are exact.
#include "portcullis/tls/certificate.hh"

#include "pki.hh"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

using namespace portcullis;

namespace {

using namespace portcullis::tls::fixture;

// The clock the certificates are dated against.
constexpr int64_t now = fixed_now;

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
