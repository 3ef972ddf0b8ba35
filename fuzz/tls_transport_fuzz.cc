// A TLS listener's peer sends whatever it likes: tls::Transport must take every byte, deliver
// only what decrypts, in order and within bounds, and say why when it gives up. The server side
// is the shard's: one tls::Server (two certificates, so that SNI switches contexts) and one
// Transport that every input's session shares, as a shard's connections do. The certificates
// are made once, at start-up, with BoringSSL into a temporary folder that is removed once the
// server has read them (tests/tls/pki.hh); loopback.hh carries the bytes between the session and
// an in-process BoringSSL client.
//
// The first byte chooses the mode:
// - even: the peer's raw bytes. [mode][n][n x 2-byte cut points][bytes]; with bit 1 of the mode
//   set, the bytes follow a real client's ClientHello (offering a ticket with bit 2). The bytes
//   are fed in pieces cut at the cut points (modulo their length). Checks: a delivery is never
//   empty nor larger than plaintext_chunk; failure() is none exactly when the status is not
//   failed, and its detail is not empty after a failure; bytes whose first is not 22 (a
//   handshake record) fail on their first piece, with nothing written back, as plain_http when
//   that byte is an uppercase letter and not_tls otherwise; plain_http for nothing else;
//   nothing is fed after failed or closed; seal refuses while the handshake is not done.
// - odd: a real client completes a handshake first. [mode][flags][operations]; flags: TLS 1.2
//   (bit 0), SNI (bits 1, 2), ALPN h2,http/1.1 (bit 3), the handshake fed a byte at a time
//   (bit 4), resuming a ticket (bit 5). Then each operation is a byte (modulo their number) and
//   its arguments: the client writes a slice of the input or over 16 KiB (records that
//   decrypt), raw garbage joins the bytes in flight, a bit of them flips, the bytes in flight
//   are fed in pieces of a given size, the server seals a slice or over 16 KiB (the client must
//   decrypt exactly what was sealed), the client sends a KeyUpdate or close_notify, the server
//   sends close_notify. Checks: the handshake succeeds, resumed exactly when a ticket was
//   offered; every plaintext byte delivered is the next byte the client wrote; a failure after
//   the handshake is a record failure, and comes only when garbage or a flipped bit was fed (or
//   after more than 32 KeyUpdates in a row, which BoringSSL refuses); closed only after the
//   client's close_notify, with every byte written before it delivered; with nothing spoilt,
//   everything the client wrote is delivered.
#include "portcullis/tls/server.hh"
#include "portcullis/tls/transport.hh"

#include "tls/loopback.hh"
#include "tls/pki.hh"

#include <openssl/err.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using namespace portcullis;
using namespace portcullis::tls::fixture;

namespace {

void check(bool ok) {
    if (!ok) {
        std::abort();
    }
}

// What every input shares: the server, the shard, the client contexts, and a ticket for each
// version (the keys never rotate here, so they always resume).
struct World {
    tls::Server server;
    std::unique_ptr<Shard> shard;
    bssl::UniquePtr<SSL_CTX> client13 = client_context(TLS1_3_VERSION, TLS1_3_VERSION);
    bssl::UniquePtr<SSL_CTX> client12 = client_context(TLS1_2_VERSION, TLS1_2_VERSION);
    bssl::UniquePtr<SSL_SESSION> ticket13;
    bssl::UniquePtr<SSL_SESSION> ticket12;

    World() {
        const TempDir dir; // the certificates are read once, here
        auto first = make_cert(valid_now("default", {"fuzz.test"}), key_of(KeyKind::p256));
        auto second =
            make_cert(valid_now("second", {"a.test", "*.wild.test"}), key_of(KeyKind::p256));
        config::TlsConfig cfg;
        cfg.certificates.push_back(
            write_certificate(dir, "default", {first.get()}, key_of(KeyKind::p256)));
        cfg.certificates.push_back(
            write_certificate(dir, "second", {second.get()}, key_of(KeyKind::p256)));
        require(server.init(cfg, 1, 0).empty(), "tls::Server::init");
        shard = std::make_unique<Shard>(server, 0);
        ticket13 = ticket(client13.get());
        ticket12 = ticket(client12.get());
    }

    bssl::UniquePtr<SSL_SESSION> ticket(SSL_CTX* ctx) {
        Client client(ctx);
        Session s = shard->accept();
        require(handshake(client, *shard, s.get()).ok(), "the first handshake");
        // TLS 1.3's ticket goes out with the server's first write.
        client.give(shard->seal(s.get(), "HTTP/1.1 200 OK\r\n\r\n"));
        client.read();
        require(!client.sessions().empty(), "a ticket");
        return bssl::UpRef(client.sessions().back());
    }
};

World* world = nullptr;

// Reads the input front to back; past its end, zeros.
class Input {
public:
    explicit Input(std::string_view in) : _in(in) {}
    bool empty() const { return _in.empty(); }
    uint8_t byte() {
        if (_in.empty()) {
            return 0;
        }
        const auto b = static_cast<uint8_t>(_in[0]);
        _in.remove_prefix(1);
        return b;
    }
    uint16_t u16() { return static_cast<uint16_t>(byte() | (byte() << 8)); }
    std::string_view bytes(size_t n) {
        const std::string_view s = _in.substr(0, n);
        _in.remove_prefix(s.size());
        return s;
    }
    std::string_view rest() { return bytes(_in.size()); }

private:
    std::string_view _in;
};

std::string drain(base::Buffer*& out) {
    std::string bytes;
    if (out != nullptr) {
        bytes.assign(out->view());
        world->shard->pool.release(out);
        out = nullptr;
    }
    return bytes;
}

// An HTTP method's first letter, where a TLS record's type would be.
bool looks_like_http(std::string_view in) {
    return !in.empty() && in[0] >= 'A' && in[0] <= 'Z';
}

// The status after a receive, checked against failure().
void check_status(tls::Status s) {
    const tls::Transport& t = world->shard->transport;
    check((s == tls::Status::failed) == (t.failure() != tls::Failure::none));
    if (s == tls::Status::failed) {
        check(!t.failure_detail().empty());
        check(t.failure() != tls::Failure::out_of_memory);
    }
}

// ---- mode a: the peer's raw bytes ------------------------------------------------------------

void raw_bytes(uint8_t mode, Input in) {
    tls::Transport& transport = world->shard->transport;
    std::string peer;
    if ((mode & 2) != 0) {
        Client client(world->client13.get());
        SSL_set_tlsext_host_name(client.ssl(), "x.wild.test");
        if ((mode & 4) != 0) {
            SSL_set_session(client.ssl(), world->ticket13.get());
        }
        client.step();
        peer = client.take();
    }
    const size_t n = in.byte() % 16;
    std::vector<size_t> cuts;
    for (size_t i = 0; i < n; ++i) {
        cuts.push_back(in.u16());
    }
    peer += in.rest();
    for (size_t& c : cuts) {
        c %= peer.size() + 1;
    }
    cuts.push_back(peer.size());
    std::sort(cuts.begin(), cuts.end());

    Session s = world->shard->accept();
    check(s != nullptr);
    base::Buffer* out = nullptr;
    tls::Status status = tls::Status::ok;
    size_t from = 0;
    size_t receives = 0;
    for (size_t cut : cuts) {
        const std::string_view piece = std::string_view(peer).substr(from, cut - from);
        from = cut;
        if (piece.empty()) {
            continue;
        }
        ++receives;
        status = transport.receive(s.get(), piece, out, [&](std::string_view plain) {
            check(!plain.empty() && plain.size() <= tls::Transport::plaintext_chunk);
            check(tls::Transport::handshake_done(s.get()));
            return true;
        });
        check_status(status);
        if (status != tls::Status::ok) {
            break;
        }
    }
    // No TLS client's first record is of another type than handshake (22): refused on the
    // first piece, before BoringSSL reads anything, so with nothing written back.
    if (!peer.empty() && static_cast<uint8_t>(peer[0]) != 22) {
        check(status == tls::Status::failed && receives == 1);
        check(transport.failure() ==
              (looks_like_http(peer) ? tls::Failure::plain_http : tls::Failure::not_tls));
        check(out == nullptr || out->size == 0); // the shard answers plain HTTP with a 400
    }
    // (failure() is the last receive's: only after this session's own failure.)
    if (status == tls::Status::failed && transport.failure() == tls::Failure::plain_http) {
        check(looks_like_http(peer));
        check(out == nullptr || out->size == 0);
    }
    drain(out);
    if (status == tls::Status::ok && !tls::Transport::handshake_done(s.get())) {
        check(!transport.seal(s.get(), "HTTP/1.1 200 OK\r\n\r\n", out));
        drain(out);
    }
    transport.close_notify(s.get(), out);
    drain(out);
}

// ---- mode b: application records after a real handshake --------------------------------------

enum Op : uint8_t {
    client_write,
    client_write_big,
    garbage,
    flip,
    deliver,
    server_seal,
    server_seal_big,
    key_update,
    client_close,
    server_close,
    op_count,
};

class Conversation {
public:
    explicit Conversation(uint8_t flags) : _tls13((flags & 1) == 0) {
        _client = std::make_unique<Client>(_tls13 ? world->client13.get() : world->client12.get());
        if ((flags & 2) != 0) {
            SSL_set_tlsext_host_name(_client->ssl(), (flags & 4) != 0 ? "A.test" : "b.wild.test");
        }
        if ((flags & 8) != 0) {
            static constexpr uint8_t alpn[] = "\x02h2\x08http/1.1";
            SSL_set_alpn_protos(_client->ssl(), alpn, sizeof alpn - 1);
        }
        const bool resume = (flags & 32) != 0;
        if (resume) {
            SSL_set_session(_client->ssl(), _tls13 ? world->ticket13.get() : world->ticket12.get());
        }
        _session = world->shard->accept();
        check(_session != nullptr);
        const Exchange hs = handshake(*_client, *world->shard, _session.get(),
                                      (flags & 16) != 0 ? 1 : std::string_view::npos);
        check(hs.ok());
        // The tickets were made under the default certificate; both SNI names choose the other
        // one, and a session never resumes under another certificate (RFC 6066 section 3).
        const bool default_certificate = (flags & 2) == 0;
        check((SSL_session_reused(_session.get()) != 0) == (resume && default_certificate));
    }

    // False once the session is over (failed, or nothing more will be read).
    bool run(Op op, Input& in) {
        switch (op) {
        case client_write:
            if (!_client_closed) {
                const std::string_view data = in.bytes(1 + in.byte());
                if (!data.empty()) {
                    write(data);
                    _key_updates = 0;
                }
            }
            break;
        case client_write_big:
            if (!_client_closed) {
                // Over a record's worth: deliveries come in plaintext_chunk pieces.
                std::string data(16 * 1024 + in.u16() % 20000, '\0');
                for (size_t i = 0; i < data.size(); ++i) {
                    data[i] = static_cast<char>('a' + (i * 7 + _written.size()) % 26);
                }
                write(data);
                _key_updates = 0;
            }
            break;
        case garbage:
            _in_flight += in.bytes(1 + in.byte());
            _spoilt = true;
            break;
        case flip:
            if (!_in_flight.empty()) {
                const size_t at = in.u16() % _in_flight.size();
                _in_flight[at] = static_cast<char>(_in_flight[at] ^ (1 << (in.byte() % 8)));
                _spoilt = true;
            }
            break;
        case deliver:
            return feed(1 + in.byte());
        case server_seal:
            if (!_server_closed) {
                seal(in.bytes(in.byte()));
            }
            break;
        case server_seal_big:
            if (!_server_closed) {
                // Records of a full 16 KiB: the output buffer grows.
                std::string data(16 * 1024 + in.u16(), '\0');
                for (size_t i = 0; i < data.size(); ++i) {
                    data[i] = static_cast<char>('A' + (i * 11 + _sealed.size()) % 26);
                }
                seal(data);
            }
            break;
        case key_update:
            if (_tls13 && !_client_closed) {
                check(SSL_key_update(_client->ssl(), in.byte() % 2) == 1);
                SSL_write(_client->ssl(), "", 0); // sends it (and nothing else)
                ERR_clear_error();
                _in_flight += _client->take();
                // BoringSSL refuses more than 32 KeyUpdates in a row without data between:
                // then the failure is the peer's doing.
                if (++_key_updates > 32) {
                    _spoilt = true;
                }
            }
            break;
        case client_close:
            if (!_client_closed) {
                check(SSL_shutdown(_client->ssl()) >= 0);
                _in_flight += _client->take();
                _client_closed = true;
            }
            break;
        case server_close:
            if (!_server_closed) {
                _client->give(world->shard->close_notify(_session.get()));
                check(_client->read() == SSL_ERROR_ZERO_RETURN);
                check(_client->plain() == _sealed);
                _server_closed = true;
            }
            break;
        case op_count:
            break;
        }
        return true;
    }

    // The bytes still in flight, whole; then, unless something was spoilt, everything the
    // client wrote has arrived.
    void finish() {
        if (feed(std::string_view::npos) && !_spoilt) {
            check(_delivered == _written);
        }
    }

private:
    void write(std::string_view data) {
        _in_flight += _client->write(data);
        _written += data;
    }

    void seal(std::string_view data) {
        bool ok = false;
        const std::string cipher = world->shard->seal(_session.get(), data, &ok);
        check(ok);
        _sealed += data;
        _client->give(cipher);
        const int err = _client->read();
        check(err == SSL_ERROR_WANT_READ);
        check(_client->plain() == _sealed);
    }

    bool feed(size_t piece) {
        tls::Transport& transport = world->shard->transport;
        base::Buffer* out = nullptr;
        std::string_view rest = _in_flight;
        tls::Status status = tls::Status::ok;
        while (!rest.empty() && status == tls::Status::ok) {
            const std::string_view now = rest.substr(0, piece);
            rest.remove_prefix(now.size());
            status = transport.receive(_session.get(), now, out, [&](std::string_view plain) {
                check(!plain.empty() && plain.size() <= tls::Transport::plaintext_chunk);
                check(_delivered.size() + plain.size() <= _written.size());
                check(std::string_view(_written).substr(_delivered.size(), plain.size()) == plain);
                _delivered += plain;
                return true;
            });
            check_status(status);
        }
        _in_flight.clear();
        const std::string to_client = drain(out);
        if (status == tls::Status::failed) {
            check(_spoilt);
            check(transport.failure() == tls::Failure::record);
            return false;
        }
        if (status == tls::Status::closed) {
            check(_client_closed);
            check(_delivered == _written);
            return false;
        }
        // KeyUpdate answers wait for the next seal; nothing else is sent after the handshake.
        if (!to_client.empty()) {
            _client->give(to_client);
            check(_client->read() == SSL_ERROR_WANT_READ);
        }
        return true;
    }

    bool _tls13;
    std::unique_ptr<Client> _client;
    Session _session;
    std::string _in_flight; // bytes on their way to the server
    std::string _written;   // the client's plaintext, in order
    std::string _delivered; // what the server delivered
    std::string _sealed;    // what the server sealed
    bool _spoilt = false;   // garbage or a flipped bit is (or was) in flight
    int _key_updates = 0;   // sent since the last data
    bool _client_closed = false;
    bool _server_closed = false;
};

void after_handshake(Input in) {
    Conversation c(in.byte());
    while (!in.empty()) {
        const auto op = static_cast<Op>(in.byte() % op_count);
        if (!c.run(op, in)) {
            return;
        }
    }
    c.finish();
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
    world = new World(); // NOLINT(cppcoreguidelines-owning-memory): lives as long as the process
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Input in(std::string_view(reinterpret_cast<const char*>(data), size));
    const uint8_t mode = in.byte();
    if ((mode & 1) == 0) {
        raw_bytes(mode, in);
    } else {
        after_handshake(in);
    }
    ERR_clear_error();
    return 0;
}
