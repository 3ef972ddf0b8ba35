// The TLS side of the public plane, shared by every shard: the certificates (one SSL_CTX each,
// chosen by SNI), the protocol settings of server.tls, and the session-ticket keys.
//
//   tls::Server tls;
//   if (auto err = tls.init(*cfg.server.tls, shards, now); !err.empty()) { ... }  // start-up
//   // shard k, once per loop iteration, then at each accept on a TLS listener:
//   tls.refresh(k, reader);
//   SSL* ssl = transport.accept(reader.ctx);
//   // main thread, on SIGHUP and now and then:
//   std::string why = tls.reload();   // "" or why the old certificates stay
//   tls.tick(now);                    // rotates ticket keys, frees what shards no longer use
#pragma once

#include "portcullis/config/config.hh"
#include "portcullis/tls/certificate.hh"

#include <openssl/ssl.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace portcullis::tls {

// Session-ticket keys: one current key seals new tickets, the one before it still opens
// tickets for one more period. Every shard reads the same keys, so a client resumes on any
// shard. The main thread rotates them; shards read them in a handshake without waiting (a
// seqlock: a reader that overlaps a rotation retries).
class TicketKeys {
public:
    struct Key {
        uint8_t name[16];
        uint8_t aes[16];  // AES-128-CBC
        uint8_t hmac[32]; // HMAC-SHA256
    };

    // A fresh current key (random); the current one becomes the previous one.
    void rotate();
    // The key that seals new tickets.
    Key current() const;
    // The key named `name`, current or previous. False when neither: the ticket is too old.
    bool find(const uint8_t* name, Key& out) const;

private:
    static constexpr size_t key_words = sizeof(Key) / sizeof(uint64_t);
    static_assert(sizeof(Key) % sizeof(uint64_t) == 0);

    // Slot 0 is the current key, slot 1 the previous one (all zero until the second rotation).
    Key read(unsigned slot) const;

    std::atomic<uint64_t> _version{0}; // odd while a rotation writes
    std::atomic<uint64_t> _words[2][key_words]{};
    std::atomic<bool> _have_previous{false};
};

// One shard's view of the current certificates: the SSL_CTX its new sessions start from, held
// by reference until a reload replaces it.
struct Reader {
    SSL_CTX* ctx = nullptr;
    uint64_t generation = 0;
};

struct Stats {
    std::atomic<uint64_t> reloads{0};
    std::atomic<uint64_t> reload_failures{0};
    std::atomic<uint64_t> ticket_rotations{0};
};

class Server {
public:
    Server() = default;
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Start-up: loads every certificate (errors name the file and what is wrong). `shards`:
    // how many readers will call refresh. `now_mono_ns` starts the ticket-key schedule.
    std::string init(const config::TlsConfig& cfg, unsigned shards, int64_t now_mono_ns);

    // SIGHUP: loads the certificates again from their files. New handshakes use them at once;
    // sessions already open keep theirs. On any error nothing changes and the error is returned.
    std::string reload();

    // Main thread, at least every few seconds: rotates the ticket keys on schedule and frees
    // certificate sets that no shard uses any more.
    void tick(int64_t now_mono_ns);

    // Shard `shard`, on its own thread: takes up the certificates of the latest reload, if any.
    // No lock and no wait; an atomic load per call when nothing changed.
    void refresh(unsigned shard, Reader& reader);
    // Shard `shard` at exit: gives back its reference.
    void release(Reader& reader);

    // What the certificates loaded last are (for the log and `check`).
    const std::vector<CertificateInfo>& certificates() const { return _infos; }
    const Stats& stats() const { return _stats; }
    TicketKeys& ticket_keys() { return _keys; }

private:
    struct Retired {
        SSL_CTX* ctx;
        uint64_t replaced_at; // the generation that replaced it
    };

    std::string load(SSL_CTX*& out, std::vector<CertificateInfo>& infos);
    bool readers_past(uint64_t generation) const;

    config::TlsConfig _cfg;
    std::atomic<SSL_CTX*> _current{nullptr};
    std::atomic<uint64_t> _generation{1};
    std::unique_ptr<std::atomic<uint64_t>[]> _seen; // per shard: the generation it refreshed to
    unsigned _shards = 0;
    std::vector<Retired> _retired;
    std::vector<CertificateInfo> _infos;
    TicketKeys _keys;
    int64_t _next_rotation_ns = 0;
    Stats _stats;
};

} // namespace portcullis::tls
