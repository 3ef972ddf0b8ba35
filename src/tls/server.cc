#include "portcullis/tls/server.hh"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <string_view>

namespace portcullis::tls {

// ---- ticket keys ---------------------------------------------------------------------------

void TicketKeys::rotate() {
    Key fresh{};
    RAND_bytes(reinterpret_cast<uint8_t*>(&fresh), sizeof fresh);
    uint64_t fresh_words[key_words];
    std::memcpy(fresh_words, &fresh, sizeof fresh);
    OPENSSL_cleanse(&fresh, sizeof fresh);

    const uint64_t v = _version.load(std::memory_order_relaxed);
    _version.store(v + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    for (size_t i = 0; i < key_words; ++i) {
        _words[1][i].store(_words[0][i].load(std::memory_order_relaxed), std::memory_order_relaxed);
        _words[0][i].store(fresh_words[i], std::memory_order_relaxed);
    }
    _have_previous.store(v != 0, std::memory_order_relaxed);
    _version.store(v + 2, std::memory_order_release);
    OPENSSL_cleanse(fresh_words, sizeof fresh_words);
}

TicketKeys::Key TicketKeys::read(unsigned slot) const {
    uint64_t words[key_words];
    while (true) {
        const uint64_t before = _version.load(std::memory_order_acquire);
        for (size_t i = 0; i < key_words; ++i) {
            words[i] = _words[slot][i].load(std::memory_order_relaxed);
        }
        std::atomic_thread_fence(std::memory_order_acquire);
        if ((before & 1) == 0 && _version.load(std::memory_order_relaxed) == before) {
            break;
        }
    }
    Key k;
    std::memcpy(&k, words, sizeof k);
    return k;
}

TicketKeys::Key TicketKeys::current() const {
    return read(0);
}

bool TicketKeys::find(const uint8_t* name, Key& out) const {
    for (unsigned slot = 0; slot < 2; ++slot) {
        if (slot == 1 && !_have_previous.load(std::memory_order_relaxed)) {
            break;
        }
        Key k = read(slot);
        if (std::memcmp(k.name, name, sizeof k.name) == 0) {
            out = k;
            return true;
        }
    }
    return false;
}

namespace {

// ---- what every context shares ---------------------------------------------------------------

// TLS 1.2 suites: forward secrecy and AEAD only. (TLS 1.3's are BoringSSL's fixed set.)
constexpr const char* cipher_list = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// The certificates SNI chooses from, hung on the default certificate's SSL_CTX (ex_data), so
// that it lives exactly as long as a session may still start from that context. It holds a
// reference to every other certificate's context; its own entries point nowhere (no cycle).
struct SniTable {
    struct Entry {
        std::string name; // lowercased; "*.example.org" for a wildcard
        SSL_CTX* ctx;     // nullptr: the default context itself
    };
    std::vector<Entry> entries;
    std::vector<SSL_CTX*> owned; // one reference each

    SniTable() = default;
    SniTable(const SniTable&) = delete;
    SniTable& operator=(const SniTable&) = delete;
    ~SniTable() {
        for (SSL_CTX* c : owned) {
            SSL_CTX_free(c);
        }
    }
};

void free_sni_table(void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*index*/,
                    long /*argl*/, void* /*argp*/) {
    delete static_cast<SniTable*>(ptr); // NOLINT(cppcoreguidelines-owning-memory)
}

int sni_index() {
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_sni_table);
    return index;
}

int server_index() {
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

// Exact names first, then wildcards; a name no certificate covers (or none) gets the default.
int on_server_name(SSL* ssl, int* /*alert*/, void* arg) {
    const char* sent = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (sent == nullptr) {
        return SSL_TLSEXT_ERR_OK;
    }
    char lower[256];
    size_t n = std::strlen(sent);
    if (n >= sizeof lower) {
        return SSL_TLSEXT_ERR_OK;
    }
    for (size_t i = 0; i < n; ++i) {
        char ch = sent[i];
        lower[i] = ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch;
    }
    const std::string_view name(lower, n);
    const auto* table = static_cast<const SniTable*>(arg);
    const SniTable::Entry* found = nullptr;
    for (const SniTable::Entry& e : table->entries) {
        if (e.name == name) {
            found = &e;
            break;
        }
    }
    if (found == nullptr) {
        for (const SniTable::Entry& e : table->entries) {
            if (e.name.starts_with("*.") && name_matches(e.name, name)) {
                found = &e;
                break;
            }
        }
    }
    if (found != nullptr && found->ctx != nullptr) {
        SSL_set_SSL_CTX(ssl, found->ctx);
    }
    return SSL_TLSEXT_ERR_OK;
}

// ALPN: http/1.1 or nothing. A client that offers protocols but not http/1.1 cannot talk to
// this server: the handshake fails with no_application_protocol (RFC 7301 3.2).
int on_alpn(SSL* /*ssl*/, const uint8_t** out, uint8_t* out_len, const uint8_t* in, unsigned in_len,
            void* /*arg*/) {
    static constexpr uint8_t http11[] = {'h', 't', 't', 'p', '/', '1', '.', '1'};
    for (unsigned i = 0; i < in_len;) {
        const unsigned len = in[i];
        if (i + 1 + len > in_len) {
            break;
        }
        if (len == sizeof http11 && std::memcmp(in + i + 1, http11, len) == 0) {
            *out = in + i + 1;
            *out_len = static_cast<uint8_t>(len);
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

// Session tickets sealed with the keys every shard shares (RFC 5077's AES-128-CBC +
// HMAC-SHA256 construction, as BoringSSL's callback expects). A ticket under the previous key
// is accepted and replaced by one under the current key.
int on_ticket(SSL* ssl, uint8_t* key_name, uint8_t* iv, EVP_CIPHER_CTX* cipher, HMAC_CTX* hmac,
              int encrypt) {
    auto* server = static_cast<Server*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), server_index()));
    if (server == nullptr) {
        return -1;
    }
    TicketKeys& keys = server->ticket_keys();
    TicketKeys::Key k{};
    int result = 1;
    if (encrypt != 0) {
        k = keys.current();
        std::memcpy(key_name, k.name, sizeof k.name);
        RAND_bytes(iv, EVP_MAX_IV_LENGTH);
        if (EVP_EncryptInit_ex(cipher, EVP_aes_128_cbc(), nullptr, k.aes, iv) != 1) {
            result = -1;
        }
    } else {
        if (!keys.find(key_name, k)) {
            return 0; // unknown or too old: a full handshake
        }
        TicketKeys::Key now = keys.current();
        result = std::memcmp(now.name, k.name, sizeof k.name) == 0 ? 1 : 2;
        OPENSSL_cleanse(&now, sizeof now);
        if (EVP_DecryptInit_ex(cipher, EVP_aes_128_cbc(), nullptr, k.aes, iv) != 1) {
            result = -1;
        }
    }
    if (result > 0 && HMAC_Init_ex(hmac, k.hmac, sizeof k.hmac, EVP_sha256(), nullptr) != 1) {
        result = -1;
    }
    OPENSSL_cleanse(&k, sizeof k);
    return result;
}

std::string ssl_error(std::string_view what) {
    uint32_t e = ERR_get_error();
    ERR_clear_error();
    const char* reason = e != 0 ? ERR_reason_error_string(e) : nullptr;
    return std::string(what) + (reason != nullptr ? std::string(": ") + reason : std::string());
}

} // namespace

// ---- the server ------------------------------------------------------------------------------

Server::~Server() {
    SSL_CTX_free(_current.load(std::memory_order_relaxed));
    for (const Retired& r : _retired) {
        SSL_CTX_free(r.ctx);
    }
}

std::string Server::init(const config::TlsConfig& cfg, unsigned shards, int64_t now_mono_ns) {
    _cfg = cfg;
    _shards = shards;
    _seen = std::make_unique<std::atomic<uint64_t>[]>(shards);
    _keys.rotate();
    _next_rotation_ns = now_mono_ns + _cfg.ticket_rotation_ns;
    SSL_CTX* ctx = nullptr;
    if (auto err = load(ctx, _infos); !err.empty()) {
        return err;
    }
    _current.store(ctx, std::memory_order_release);
    return {};
}

// One SSL_CTX per certificate, each with the same settings; the first is where every session
// starts, and SNI moves it to another.
std::string Server::load(SSL_CTX*& out, std::vector<CertificateInfo>& infos) {
    const auto now = static_cast<int64_t>(std::time(nullptr));
    std::vector<CertificateInfo> found;
    for (const config::TlsCertificate& c : _cfg.certificates) {
        CertificateInfo info = inspect(c, now);
        if (!info.ok()) {
            std::string why = c.cert + ": ";
            for (size_t i = 0; i < info.errors.size(); ++i) {
                why += (i != 0 ? "; " : "") + info.errors[i];
            }
            return why;
        }
        found.push_back(std::move(info));
    }
    if (found.empty()) {
        return "server.tls: no certificate";
    }
    auto table = std::make_unique<SniTable>();
    SSL_CTX* first = nullptr;
    auto fail = [&](std::string why) {
        SSL_CTX_free(first);
        return why;
    };
    const uint32_t lifetime_s = static_cast<uint32_t>(_cfg.ticket_rotation_ns / 1'000'000'000);
    for (size_t i = 0; i < found.size(); ++i) {
        const config::TlsCertificate& c = _cfg.certificates[i];
        SSL_CTX* ctx = SSL_CTX_new(TLS_method());
        if (ctx == nullptr) {
            return fail(ssl_error("cannot create a TLS context"));
        }
        if (i == 0) {
            first = ctx;
        } else {
            table->owned.push_back(ctx);
        }
        const uint16_t min =
            _cfg.min_version == config::TlsVersion::v1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
        if (SSL_CTX_set_min_proto_version(ctx, min) != 1 ||
            SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
            SSL_CTX_set_strict_cipher_list(ctx, cipher_list) != 1) {
            return fail(ssl_error("cannot configure a TLS context"));
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, c.cert.c_str()) != 1) {
            return fail(ssl_error(c.cert));
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, c.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            return fail(ssl_error(c.key));
        }
        // A session belongs to the certificate it was made with: its id context is the leaf's
        // SHA-256. Offered on a connection whose SNI chose another certificate (RFC 6066
        // section 3: a server MUST NOT resume it), or after a reload replaced this one, it is
        // not resumed and the handshake is a full one with the certificate now chosen.
        uint8_t leaf_sha256[EVP_MAX_MD_SIZE];
        unsigned leaf_sha256_len = 0;
        const X509* leaf = SSL_CTX_get0_certificate(ctx);
        if (leaf == nullptr ||
            X509_digest(leaf, EVP_sha256(), leaf_sha256, &leaf_sha256_len) != 1 ||
            SSL_CTX_set_session_id_context(ctx, leaf_sha256, leaf_sha256_len) != 1) {
            return fail(ssl_error("cannot configure a TLS context"));
        }
        // Resumption is by tickets only: a server-side cache would be per shard (and locked).
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        if (_cfg.session_tickets) {
            SSL_CTX_set_tlsext_ticket_key_cb(ctx, on_ticket);
            SSL_CTX_set_timeout(ctx, lifetime_s);
            SSL_CTX_set_session_psk_dhe_timeout(ctx, lifetime_s);
            // One ticket per handshake: a webhook sender reconnects one connection at a time.
            SSL_CTX_set_num_tickets(ctx, 1);
        } else {
            SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
            SSL_CTX_set_num_tickets(ctx, 0);
        }
        SSL_CTX_set_alpn_select_cb(ctx, on_alpn, nullptr);
        SSL_CTX_set_ex_data(ctx, server_index(), this);
        for (const std::string& name : found[i].names) {
            table->entries.push_back({name, i == 0 ? nullptr : ctx});
        }
    }
    SniTable* raw = table.release();
    SSL_CTX_set_ex_data(first, sni_index(), raw); // freed with `first`
    SSL_CTX_set_tlsext_servername_callback(first, on_server_name);
    SSL_CTX_set_tlsext_servername_arg(first, raw);
    out = first;
    infos = std::move(found);
    return {};
}

std::string Server::reload() {
    SSL_CTX* ctx = nullptr;
    std::vector<CertificateInfo> infos;
    if (auto err = load(ctx, infos); !err.empty()) {
        _stats.reload_failures.fetch_add(1, std::memory_order_relaxed);
        return err;
    }
    SSL_CTX* old = _current.load(std::memory_order_relaxed);
    // The new context first, then the generation: a shard that sees the generation loads a
    // context at least that new (refresh).
    _current.store(ctx, std::memory_order_release);
    const uint64_t generation = _generation.fetch_add(1, std::memory_order_acq_rel) + 1;
    _retired.push_back({old, generation});
    _infos = std::move(infos);
    _stats.reloads.fetch_add(1, std::memory_order_relaxed);
    return {};
}

bool Server::readers_past(uint64_t generation) const {
    for (unsigned s = 0; s < _shards; ++s) {
        if (_seen[s].load(std::memory_order_acquire) < generation) {
            return false;
        }
    }
    return true;
}

void Server::tick(int64_t now_mono_ns) {
    if (_cfg.session_tickets && now_mono_ns >= _next_rotation_ns) {
        _keys.rotate();
        _stats.ticket_rotations.fetch_add(1, std::memory_order_relaxed);
        _next_rotation_ns = now_mono_ns + _cfg.ticket_rotation_ns;
    }
    // A replaced context goes once every shard holds its own reference to a newer one; the
    // sessions that started from it keep it alive as long as they need it.
    std::erase_if(_retired, [this](const Retired& r) {
        if (!readers_past(r.replaced_at)) {
            return false;
        }
        SSL_CTX_free(r.ctx);
        return true;
    });
}

void Server::refresh(unsigned shard, Reader& reader) {
    const uint64_t generation = _generation.load(std::memory_order_acquire);
    if (generation == reader.generation) {
        return;
    }
    // Safe to take a reference: the main thread frees this context only after this shard has
    // published a generation past the one that replaced it, which it does below.
    SSL_CTX* ctx = _current.load(std::memory_order_acquire);
    SSL_CTX_up_ref(ctx);
    SSL_CTX_free(reader.ctx);
    reader.ctx = ctx;
    reader.generation = generation;
    _seen[shard].store(generation, std::memory_order_release);
}

void Server::release(Reader& reader) {
    SSL_CTX_free(reader.ctx);
    reader.ctx = nullptr;
}

} // namespace portcullis::tls
