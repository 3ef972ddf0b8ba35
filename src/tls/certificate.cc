// tls::inspect: what `portcullis check` says about a certificate, and what the TLS contexts
// refuse to load. Everything is read through memory BIOs from files opened without blocking, so
// a FIFO or a device named by mistake cannot hang `check` or a reload.
#include "portcullis/tls/certificate.hh"

#include "portcullis/base/file.hh"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <memory>
#include <optional>

namespace portcullis::tls {

namespace {

// A certificate chain or a key is a few KiB; anything this large was named by mistake.
constexpr size_t max_pem_file_bytes = 1u << 20;
constexpr int64_t seconds_per_day = 86400;

struct GeneralNamesFree {
    void operator()(GENERAL_NAMES* names) const { GENERAL_NAMES_free(names); }
};
struct AsnTimeFree {
    void operator()(ASN1_TIME* t) const { ASN1_TIME_free(t); }
};

// Never asks for a passphrase: an encrypted key is refused instead of blocking on a terminal.
int no_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) {
    return 0;
}

// True when the last error is the end of the PEM input rather than a damaged block.
bool only_end_of_input() {
    uint32_t e = ERR_peek_last_error();
    return e == 0 || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
}

// "/CN=hooks.example.org/O=Example" for messages.
std::string subject_text(const X509_NAME* name) {
    char buf[256];
    if (X509_NAME_oneline(name, buf, sizeof buf) == nullptr) {
        return "(unreadable name)";
    }
    return buf;
}

std::string lowercase(std::string s) {
    for (char& c : s) {
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c - 'A' + 'a');
        }
    }
    return s;
}

// The DNS subjectAltNames, or the subject's CN when there are none.
std::vector<std::string> names_of(X509* leaf) {
    std::vector<std::string> names;
    std::unique_ptr<GENERAL_NAMES, GeneralNamesFree> sans(static_cast<GENERAL_NAMES*>(
        X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr)));
    if (sans) {
        for (size_t i = 0; i < sk_GENERAL_NAME_num(sans.get()); ++i) {
            const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans.get(), i);
            if (gn->type != GEN_DNS) {
                continue;
            }
            const ASN1_STRING* s = gn->d.dNSName;
            names.push_back(
                lowercase(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                      static_cast<size_t>(ASN1_STRING_length(s)))));
        }
    }
    if (!names.empty()) {
        return names;
    }
    const X509_NAME* subject = X509_get_subject_name(leaf);
    int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (at >= 0) {
        const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
        unsigned char* utf8 = nullptr;
        int n = ASN1_STRING_to_UTF8(&utf8, cn);
        if (n >= 0) {
            names.push_back(
                lowercase(std::string(reinterpret_cast<char*>(utf8), static_cast<size_t>(n))));
            OPENSSL_free(utf8);
        }
    }
    return names;
}

// The key's type as check prints it, or an error when TLS here will not use it.
std::string key_type_of(const EVP_PKEY* key, std::vector<std::string>& errors) {
    switch (EVP_PKEY_id(key)) {
    case EVP_PKEY_EC: {
        const EC_GROUP* group = EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(key));
        int nid = group != nullptr ? EC_GROUP_get_curve_name(group) : NID_undef;
        if (nid == NID_X9_62_prime256v1 || nid == NID_secp384r1 || nid == NID_secp521r1) {
            return std::string("ECDSA ") + EC_curve_nid2nist(nid);
        }
        errors.push_back("ECDSA key on an unsupported curve (P-256, P-384 and P-521 are)");
        return "ECDSA (other curve)";
    }
    case EVP_PKEY_RSA: {
        int bits = EVP_PKEY_bits(key);
        if (bits < 2048) {
            errors.push_back("RSA key of " + std::to_string(bits) +
                             " bits: at least 2048 are needed");
        }
        return "RSA " + std::to_string(bits);
    }
    case EVP_PKEY_ED25519:
        return "Ed25519";
    default:
        errors.push_back("unsupported key type (ECDSA, RSA of 2048 bits or more, and Ed25519 "
                         "are)");
        return "unsupported";
    }
}

// An ASN1_TIME as unix seconds.
std::optional<int64_t> unix_seconds(const ASN1_TIME* t) {
    const std::unique_ptr<ASN1_TIME, AsnTimeFree> epoch(ASN1_TIME_set(nullptr, 0));
    int days = 0;
    int seconds = 0;
    if (t == nullptr || !epoch || ASN1_TIME_diff(&days, &seconds, epoch.get(), t) != 1) {
        return std::nullopt;
    }
    return int64_t{days} * seconds_per_day + seconds;
}

// "2027-03-06 11:00:20 UTC".
std::string format_date(int64_t unix_s) {
    time_t t = static_cast<time_t>(unix_s);
    tm parts{};
    gmtime_r(&t, &parts);
    char buf[32];
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &parts);
    return std::string(buf, n);
}

std::string plural_days(int64_t days) {
    return std::to_string(days) + (days == 1 ? " day" : " days");
}

// Each certificate after the first must be the issuer of the one before it: its subject is
// the other's issuer, and its key made the other's signature.
void check_chain(const std::vector<bssl::UniquePtr<X509>>& chain,
                 std::vector<std::string>& errors) {
    for (size_t i = 0; i + 1 < chain.size(); ++i) {
        X509* subject = chain[i].get();
        X509* issuer = chain[i + 1].get();
        bssl::UniquePtr<EVP_PKEY> issuer_key(X509_get_pubkey(issuer));
        bool issued = X509_check_issued(issuer, subject) == X509_V_OK && issuer_key &&
                      X509_verify(subject, issuer_key.get()) == 1;
        ERR_clear_error();
        if (!issued) {
            errors.push_back(
                "chain out of order: certificate " + std::to_string(i + 2) + " (" +
                subject_text(X509_get_subject_name(issuer)) + ") did not issue certificate " +
                std::to_string(i + 1) + " (" + subject_text(X509_get_subject_name(subject)) +
                ", issued by " + subject_text(X509_get_issuer_name(subject)) +
                "); the file must hold the leaf first, then each certificate's issuer after it");
            return;
        }
    }
}

void inspect_into(CertificateInfo& info, int64_t now) {
    std::string pem;
    if (auto failure = base::read_regular_file(info.cert_file, max_pem_file_bytes, pem)) {
        info.errors.push_back("cannot read the certificate file (" + *failure + ")");
        return;
    }
    std::vector<bssl::UniquePtr<X509>> chain;
    {
        bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
        ERR_clear_error();
        while (bio) {
            bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
            if (!cert) {
                break;
            }
            chain.push_back(std::move(cert));
        }
        if (!only_end_of_input()) {
            info.errors.push_back("certificate " + std::to_string(chain.size() + 1) +
                                  " of the file is damaged (not a PEM certificate BoringSSL can "
                                  "parse)");
            ERR_clear_error();
            return;
        }
        ERR_clear_error();
    }
    info.chain_length = chain.size();
    if (chain.empty()) {
        info.errors.push_back("holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)");
        return;
    }
    X509* leaf = chain.front().get();
    info.names = names_of(leaf);

    bssl::UniquePtr<EVP_PKEY> public_key(X509_get_pubkey(leaf));
    if (public_key) {
        info.key_type = key_type_of(public_key.get(), info.errors);
    } else {
        info.errors.push_back("the leaf's public key cannot be parsed");
    }

    auto not_before = unix_seconds(X509_get0_notBefore(leaf));
    auto not_after = unix_seconds(X509_get0_notAfter(leaf));
    if (!not_before || !not_after) {
        info.errors.push_back("the leaf's validity dates cannot be read");
    } else {
        info.not_before = *not_before;
        info.not_after = *not_after;
        if (now < info.not_before) {
            info.errors.push_back("not valid yet: valid from " + format_date(info.not_before));
        } else if (now > info.not_after) {
            info.errors.push_back("expired on " + format_date(info.not_after) + " (" +
                                  plural_days((now - info.not_after) / seconds_per_day) + " ago)");
        } else if (info.not_after - now < expiry_warning_s) {
            info.warnings.push_back("expires on " + format_date(info.not_after) + " (in " +
                                    plural_days((info.not_after - now) / seconds_per_day) +
                                    "): renew it");
        }
    }

    check_chain(chain, info.errors);

    std::string key_pem;
    if (auto failure = base::read_regular_file(info.key_file, max_pem_file_bytes, key_pem)) {
        info.errors.push_back("cannot read the key file " + info.key_file + " (" + *failure + ")");
        return;
    }
    bssl::UniquePtr<EVP_PKEY> key;
    {
        bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
        if (bio) {
            key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
        }
        ERR_clear_error();
    }
    // The PEM text of the key is not kept past this point.
    OPENSSL_cleanse(key_pem.data(), key_pem.size());
    if (!key) {
        info.errors.push_back("the key file " + info.key_file +
                              " holds no private key BoringSSL can read (PEM, not encrypted)");
        return;
    }
    if (X509_check_private_key(leaf, key.get()) != 1) {
        ERR_clear_error();
        std::string hint;
        for (size_t i = 1; i < chain.size(); ++i) {
            if (X509_check_private_key(chain[i].get(), key.get()) == 1) {
                hint = ": it matches certificate " + std::to_string(i + 1) +
                       " of the file, so the leaf is not first";
                break;
            }
        }
        ERR_clear_error();
        info.errors.push_back("the key in " + info.key_file + " does not match the certificate" +
                              hint);
    }
}

} // namespace

CertificateInfo inspect(const config::TlsCertificate& c, int64_t now) {
    CertificateInfo info;
    try {
        info.cert_file = c.cert;
        info.key_file = c.key;
        inspect_into(info, now);
    } catch (...) {
        info.errors.push_back("out of memory while reading the certificate");
    }
    ERR_clear_error();
    return info;
}

bool name_matches(std::string_view pattern, std::string_view name) {
    // Host names compare without regard to ASCII case (RFC 4343); both sides are usually
    // lowercased already, so this only guards a caller that forgot.
    auto same = [](std::string_view a, std::string_view b) {
        if (a.size() != b.size()) {
            return false;
        }
        for (size_t i = 0; i < a.size(); ++i) {
            char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
            char y = b[i] >= 'A' && b[i] <= 'Z' ? static_cast<char>(b[i] - 'A' + 'a') : b[i];
            if (x != y) {
                return false;
            }
        }
        return true;
    };
    if (pattern.empty() || name.empty()) {
        return false;
    }
    if (!pattern.starts_with("*.") || pattern.size() == 2) {
        return same(pattern, name);
    }
    // "*.example.org" covers "<label>.example.org": one non-empty label, no dot in it.
    std::string_view suffix = pattern.substr(1); // ".example.org"
    if (name.size() <= suffix.size() || !same(name.substr(name.size() - suffix.size()), suffix)) {
        return false;
    }
    std::string_view label = name.substr(0, name.size() - suffix.size());
    return label.find('.') == std::string_view::npos;
}

} // namespace portcullis::tls
