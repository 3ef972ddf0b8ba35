// A TLS conversation with no socket, for the TLS tests and the TLS fuzz target: a BoringSSL
// client on memory BIOs on one side, a shard's tls::Transport serving a session on the other,
// and the bytes between them carried by hand. No GoogleTest here (the fuzz build has none).
//
//   tls::Server server; server.init(cfg, 1, 0);
//   Shard shard(server, 0);                               // pool, transport, reader (refreshed)
//   auto client_ctx = client_context(TLS1_3_VERSION, TLS1_3_VERSION);
//   Client client(client_ctx.get());
//   Session s = shard.accept();
//   Exchange hs = handshake(client, shard, s.get());      // hs.status, hs.failure
//   Fed fed = feed(shard, s.get(), client.write("GET / ..."), 1);   // a byte at a time
//   client.give(shard.seal(s.get(), "HTTP/1.1 200 OK ..."));
#pragma once

#include "portcullis/base/buffer_pool.hh"
#include "portcullis/tls/server.hh"
#include "portcullis/tls/transport.hh"

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::tls::fixture {

// A client context offering versions min..max, no certificate verification (the tests look at
// the certificate themselves), and a session cache that keeps what the server sends.
bssl::UniquePtr<SSL_CTX> client_context(uint16_t min_version, uint16_t max_version);

class Client {
public:
    explicit Client(SSL_CTX* ctx);
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    SSL* ssl() const { return _ssl.get(); }
    // What the client wrote since the last take.
    std::string take();
    // Bytes from the server; the client reads them on its next step or read.
    void give(std::string_view bytes);

    // Advances the handshake with what it was given; once done, reads whatever arrived
    // (tickets, application data). False once the client has failed.
    bool step();
    // Reads all application data available into plain(). The SSL_get_error code of the read
    // that stopped: SSL_ERROR_WANT_READ when everything was read, SSL_ERROR_ZERO_RETURN after
    // the server's close_notify.
    int read();
    // Encrypts `plain` and returns the ciphertext (and whatever else was waiting).
    std::string write(std::string_view plain);

    bool done() const { return _done; }
    bool failed() const { return _failed; }
    std::string& plain() { return _plain; }
    // Sessions the server offered (tickets), oldest first.
    const std::vector<bssl::UniquePtr<SSL_SESSION>>& sessions() const { return _sessions; }
    // The CN of the server's certificate, "" before the handshake.
    std::string peer_cn() const;

    // client_context's new-session callback: keeps the session in the client it is for.
    static int on_new_session(SSL* ssl, SSL_SESSION* session);

private:
    bssl::UniquePtr<SSL> _ssl;
    BIO* _in = nullptr;  // from the server (owned by _ssl)
    BIO* _out = nullptr; // to the server (owned by _ssl)
    bool _done = false;
    bool _failed = false;
    std::string _plain;
    std::vector<bssl::UniquePtr<SSL_SESSION>> _sessions;
};

using Session = bssl::UniquePtr<SSL>; // SSL_free is what Transport::close does

// What one or more receive calls did.
struct Fed {
    Status status = Status::ok;
    Failure failure = Failure::none;
    std::string plain;     // every delivery, in order
    std::string to_client; // every byte the session wrote
    size_t deliveries = 0; // on_plain calls
    size_t largest = 0;    // the largest delivery
    size_t receives = 0;   // receive calls made
    bool empty_delivery = false;
};

// One shard's side: its buffer pool, its transport and its reader of `server`.
class Shard {
public:
    Shard(Server& server, unsigned index);
    ~Shard();
    Shard(const Shard&) = delete;
    Shard& operator=(const Shard&) = delete;

    void refresh() { _server.refresh(_index, reader); }
    Session accept() { return Session(transport.accept(reader.ctx)); }

    // Feeds `cipher` to the session `piece` bytes per receive call, stopping after the first
    // call that does not answer ok.
    Fed feed(SSL* ssl, std::string_view cipher, size_t piece = std::string_view::npos);
    // seal() and close_notify(), returning the ciphertext ("" and ok false when seal fails).
    std::string seal(SSL* ssl, std::string_view plain, bool* ok = nullptr);
    std::string close_notify(SSL* ssl);

    base::BufferPool pool;
    Transport transport{pool};
    Reader reader;

private:
    std::string drain(base::Buffer*& out);

    Server& _server;
    unsigned _index;
};

// A handshake carried to its end or its failure: the server's status and failure, and both
// sides' view.
struct Exchange {
    Status status = Status::ok;
    Failure failure = Failure::none;
    bool client_done = false;
    bool server_done = false;
    bool ok() const {
        return status == Status::ok && failure == Failure::none && client_done && server_done;
    }
};
Exchange handshake(Client& client, Shard& shard, SSL* ssl, size_t piece = std::string_view::npos);

} // namespace portcullis::tls::fixture
