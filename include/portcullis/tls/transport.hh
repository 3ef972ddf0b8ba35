// The TLS record layer of one shard's connections, with no socket of its own: the shard hands
// it the ciphertext a receive brought and takes back the ciphertext to send. `io/` calls it at
// its two seams (after a receive, before a send); HTTP and ingest/ only ever see plaintext.
//
//   tls::Transport tls(pool);                       // one per shard
//   SSL* ssl = tls.accept(reader.ctx);              // per TLS connection
//   tls::Status s = tls.receive(ssl, cipher, out, [&](std::string_view plain) {
//       on_bytes(c, plain); return still_open(c);   // false stops decrypting
//   });
//   tls.seal(ssl, answers, out);                    // answers → ciphertext appended to out
//   tls::Transport::close(ssl);
//
// Every byte BoringSSL wants to send (handshake flights, tickets, alerts, sealed answers) is
// appended to `out`, a pool buffer taken on first need and grown as needed; the caller sends
// it. No call blocks and none takes a lock. BoringSSL buffers a partial record itself, releasing
// the buffer once it is used up, so an idle session holds no buffer.
//
// A server session's first bytes are judged before BoringSSL reads them: a TLS client's first
// record is a handshake record (content type 22, version major 3), and anything else fails at
// once as not_tls, or plain_http when it starts with an uppercase letter (an HTTP method). Left
// to BoringSSL, random bytes whose second byte is 3 read as a record header: it would wait for a
// "record" of up to 16 KiB or call them a failed handshake. Which of the transport's two BIOs
// a session reads from tells whether it has had bytes yet (accept() gives it the first one,
// its first receive the other), so a session costs nothing more and the caller keeps no state
// for it. Client sessions (connect()) are not judged.
#pragma once

#include "portcullis/base/buffer_pool.hh"

#include <openssl/ssl.h>

#include <cstdint>
#include <string_view>

namespace portcullis::tls {

enum class Status : uint8_t {
    ok,     // all input taken; plaintext delivered; more input awaited
    closed, // the peer sent close_notify: no more plaintext will come
    failed, // a failed handshake or a bad record: close (an alert may be in `out`)
};

// Why a session failed, as a stable reason for logs and counters.
enum class Failure : uint8_t {
    none,
    not_tls,       // the first bytes are not a TLS record
    plain_http,    // the first bytes are a plain HTTP request: sent to the TLS port by mistake
    handshake,     // the handshake failed: no shared version, cipher or protocol; a bad message
    record,        // a record after the handshake did not decrypt or parse
    out_of_memory, // no buffer for the bytes to send
};
std::string_view failure_name(Failure f);

class Transport {
public:
    // Decrypted bytes are delivered in pieces of at most this size.
    static constexpr size_t plaintext_chunk = 16 * 1024;

    explicit Transport(base::BufferPool& pool);
    ~Transport();
    Transport(const Transport&) = delete;
    Transport& operator=(const Transport&) = delete;

    // A server session for a connection accepted on a TLS listener, starting from `ctx` (the
    // default certificate; SNI may switch it). nullptr when memory is exhausted.
    SSL* accept(SSL_CTX* ctx);
    // A client session (the HTTP sink's https:// connections) from `ctx`; the caller sets the
    // name to verify and SNI on it. The first receive() with no ciphertext writes the
    // ClientHello to `out`. nullptr when memory is exhausted.
    SSL* connect(SSL_CTX* ctx);
    static void close(SSL* ssl);

    // Feeds `cipher` and delivers what decrypts to on_plain(string_view) until nothing more
    // decrypts: all of `cipher` is taken, a partial record kept inside the session. When
    // on_plain returns false (the connection is closing) the rest of `cipher` is dropped.
    // After `failed`, failure() says why.
    template <typename F>
    Status receive(SSL* ssl, std::string_view cipher, base::Buffer*& out, F&& on_plain) {
        if (!begin(ssl, cipher, out)) {
            end();
            return Status::failed; // a first byte that no TLS client sends
        }
        while (true) {
            std::string_view plain;
            Status s = next(ssl, plain);
            if (s != Status::ok || plain.empty()) {
                end();
                return s;
            }
            if (!on_plain(plain)) {
                end();
                return Status::ok;
            }
        }
    }

    // Encrypts `plain` and appends the records to `out`. False when memory is exhausted.
    bool seal(SSL* ssl, std::string_view plain, base::Buffer*& out);
    // Appends a close_notify alert to `out`.
    void close_notify(SSL* ssl, base::Buffer*& out);

    static bool handshake_done(const SSL* ssl) { return SSL_in_init(ssl) == 0; }
    Failure failure() const { return _failure; }
    // BoringSSL's reason for the last failure ("NO_SHARED_CIPHER", "WRONG_VERSION_NUMBER"):
    // a static string, safe to log.
    std::string_view failure_detail() const { return _detail; }

private:
    // False when these are a server session's first bytes and they are not TLS.
    bool begin(SSL* ssl, std::string_view cipher, base::Buffer*& out);
    Status next(SSL* ssl, std::string_view& plain);
    void end();
    Status fail(SSL* ssl, int rc);

    static int bio_write(BIO* bio, const char* data, int len);
    static int bio_read(BIO* bio, char* data, int len);
    static long bio_ctrl(BIO* bio, int cmd, long num, void* ptr);

    base::BufferPool& _pool;
    BIO_METHOD* _method = nullptr;
    BIO* _bio = nullptr; // shared by every session of the shard; points back here
    // The read side of server sessions that have had no bytes yet: the same as _bio but for its
    // address, which marks them. Their first receive judges the bytes and moves them to _bio.
    BIO* _first_bio = nullptr;
    std::string_view _in;          // ciphertext not yet taken by BoringSSL
    base::Buffer** _out = nullptr; // where written ciphertext goes
    bool _out_failed = false;
    Failure _failure = Failure::none;
    std::string_view _detail;
    char _plain[plaintext_chunk];
};

} // namespace portcullis::tls
