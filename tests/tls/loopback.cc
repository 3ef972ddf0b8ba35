#include "loopback.hh"

#include "pki.hh"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <algorithm>

namespace portcullis::tls::fixture {

bssl::UniquePtr<SSL_CTX> client_context(uint16_t min_version, uint16_t max_version) {
    bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
    require(ctx != nullptr, "SSL_CTX_new (client)");
    require(SSL_CTX_set_min_proto_version(ctx.get(), min_version) == 1 &&
                SSL_CTX_set_max_proto_version(ctx.get(), max_version) == 1,
            "client versions");
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx.get(), Client::on_new_session);
    return ctx;
}

Client::Client(SSL_CTX* ctx) : _ssl(SSL_new(ctx)) {
    require(_ssl != nullptr, "SSL_new (client)");
    _in = BIO_new(BIO_s_mem());
    _out = BIO_new(BIO_s_mem());
    require(_in != nullptr && _out != nullptr, "BIO_new");
    BIO_set_mem_eof_return(_in, -1); // empty: "retry later", not end of file
    SSL_set_bio(_ssl.get(), _in, _out);
    SSL_set_connect_state(_ssl.get());
    SSL_set_app_data(_ssl.get(), this);
}

int Client::on_new_session(SSL* ssl, SSL_SESSION* session) {
    auto* self = static_cast<Client*>(SSL_get_app_data(ssl));
    self->_sessions.emplace_back(session); // takes the reference BoringSSL hands over
    return 1;
}

std::string Client::take() {
    const uint8_t* data = nullptr;
    size_t len = 0;
    BIO_mem_contents(_out, &data, &len);
    std::string bytes(reinterpret_cast<const char*>(data), len);
    BIO_reset(_out);
    return bytes;
}

void Client::give(std::string_view bytes) {
    if (!bytes.empty()) {
        require(BIO_write(_in, bytes.data(), static_cast<int>(bytes.size())) ==
                    static_cast<int>(bytes.size()),
                "BIO_write (client)");
    }
}

bool Client::step() {
    if (_failed) {
        return false;
    }
    if (!_done) {
        const int rc = SSL_do_handshake(_ssl.get());
        if (rc == 1) {
            _done = true;
        } else if (SSL_get_error(_ssl.get(), rc) != SSL_ERROR_WANT_READ) {
            _failed = true;
            ERR_clear_error();
            return false;
        }
    }
    if (_done) {
        const int err = read();
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_ZERO_RETURN) {
            _failed = true;
            return false;
        }
    }
    return true;
}

int Client::read() {
    char buf[4096];
    while (true) {
        const int rc = SSL_read(_ssl.get(), buf, sizeof buf);
        if (rc > 0) {
            _plain.append(buf, static_cast<size_t>(rc));
            continue;
        }
        const int err = SSL_get_error(_ssl.get(), rc);
        ERR_clear_error();
        return err;
    }
}

std::string Client::write(std::string_view plain) {
    while (!plain.empty()) {
        const int rc = SSL_write(_ssl.get(), plain.data(), static_cast<int>(plain.size()));
        require(rc > 0, "SSL_write (client)");
        plain.remove_prefix(static_cast<size_t>(rc));
    }
    return take();
}

std::string Client::peer_cn() const {
    bssl::UniquePtr<X509> cert(SSL_get_peer_certificate(_ssl.get()));
    if (cert == nullptr) {
        return {};
    }
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof cn);
    return cn;
}

Shard::Shard(Server& server, unsigned index) : _server(server), _index(index) {
    refresh();
}

Shard::~Shard() {
    _server.release(reader);
}

std::string Shard::drain(base::Buffer*& out) {
    std::string bytes;
    if (out != nullptr) {
        bytes.assign(out->view());
        pool.release(out);
        out = nullptr;
    }
    return bytes;
}

Fed Shard::feed(SSL* ssl, std::string_view cipher, size_t piece) {
    Fed fed;
    base::Buffer* out = nullptr;
    piece = std::max<size_t>(piece, 1);
    do {
        const std::string_view now = cipher.substr(0, piece);
        cipher.remove_prefix(now.size());
        ++fed.receives;
        fed.status = transport.receive(ssl, now, out, [&](std::string_view plain) {
            fed.plain.append(plain);
            ++fed.deliveries;
            fed.largest = std::max(fed.largest, plain.size());
            fed.empty_delivery = fed.empty_delivery || plain.empty();
            return true;
        });
        fed.failure = transport.failure();
    } while (fed.status == Status::ok && !cipher.empty());
    fed.to_client = drain(out);
    return fed;
}

std::string Shard::seal(SSL* ssl, std::string_view plain, bool* ok) {
    base::Buffer* out = nullptr;
    const bool sealed = transport.seal(ssl, plain, out);
    if (ok != nullptr) {
        *ok = sealed;
    }
    return drain(out);
}

std::string Shard::close_notify(SSL* ssl) {
    base::Buffer* out = nullptr;
    transport.close_notify(ssl, out);
    return drain(out);
}

Exchange handshake(Client& client, Shard& shard, SSL* ssl, size_t piece) {
    Exchange ex;
    // A full handshake is two round trips, then the client reads the server's last flight
    // (TLS 1.2); a few more rounds than that means a loop. (A TLS 1.3 ticket waits for the
    // server's first write.)
    for (int round = 0; round < 8; ++round) {
        client.step();
        const std::string cipher = client.take();
        if (cipher.empty()) {
            break;
        }
        Fed fed = shard.feed(ssl, cipher, piece);
        client.give(fed.to_client);
        ex.status = fed.status;
        ex.failure = fed.failure;
        if (fed.status != Status::ok) {
            client.step(); // reads the alert
            break;
        }
    }
    ex.client_done = client.done() && !client.failed();
    ex.server_done = Transport::handshake_done(ssl);
    return ex;
}

} // namespace portcullis::tls::fixture
