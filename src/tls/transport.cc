#include "portcullis/tls/transport.hh"

#include <openssl/err.h>

#include <algorithm>
#include <cstdlib>

namespace portcullis::tls {

namespace {

// What a session's first bytes (at least one) say before any record is parsed: none when they
// may begin a ClientHello. A second byte is judged when it came with the first; one that comes
// later reaches BoringSSL, whose record layer refuses another version major in the header
// (WRONG_VERSION_NUMBER, not_tls) before it reads a length. (Every TLS version is 3.x.)
Failure judge_first_bytes(std::string_view first, std::string_view& detail) {
    const auto type = static_cast<uint8_t>(first[0]);
    if (type != SSL3_RT_HANDSHAKE) {
        if (type >= 'A' && type <= 'Z') {
            detail = "HTTP_REQUEST"; // BoringSSL's name for the same finding
            return Failure::plain_http;
        }
        detail = "NOT_A_HANDSHAKE_RECORD";
        return Failure::not_tls;
    }
    if (first.size() >= 2 && static_cast<uint8_t>(first[1]) != SSL3_VERSION_MAJOR) {
        detail = "WRONG_VERSION_NUMBER";
        return Failure::not_tls;
    }
    return Failure::none;
}

} // namespace

std::string_view failure_name(Failure f) {
    switch (f) {
    case Failure::none:
        return "none";
    case Failure::not_tls:
        return "not_tls";
    case Failure::plain_http:
        return "plain_http";
    case Failure::handshake:
        return "handshake_failed";
    case Failure::record:
        return "bad_record";
    case Failure::out_of_memory:
        return "out_of_memory";
    }
    return "unknown";
}

Transport::Transport(base::BufferPool& pool) : _pool(pool) {
    // One BIO for every session of the shard: it reads the ciphertext of the call in progress
    // and appends to the buffer of the call in progress, so a session costs no BIO of its own.
    _method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "portcullis shard");
    if (_method == nullptr || BIO_meth_set_write(_method, bio_write) != 1 ||
        BIO_meth_set_read(_method, bio_read) != 1 || BIO_meth_set_ctrl(_method, bio_ctrl) != 1) {
        std::abort(); // start-up only: out of memory
    }
    _bio = BIO_new(_method);
    _first_bio = BIO_new(_method);
    if (_bio == nullptr || _first_bio == nullptr) {
        std::abort();
    }
    for (BIO* bio : {_bio, _first_bio}) {
        BIO_set_data(bio, this);
        BIO_set_init(bio, 1);
    }
}

Transport::~Transport() {
    BIO_free(_first_bio);
    BIO_free(_bio);
    BIO_meth_free(_method);
}

SSL* Transport::accept(SSL_CTX* ctx) {
    SSL* ssl = SSL_new(ctx);
    if (ssl == nullptr) {
        ERR_clear_error();
        return nullptr;
    }
    SSL_set_accept_state(ssl);
    // The certificates and settings are needed for the handshake only; after it, the session
    // keeps what it negotiated and nothing else.
    SSL_set_shed_handshake_config(ssl, 1);
    // It reads from _first_bio until its first bytes have been judged (begin()). Each set0 takes
    // a reference.
    BIO_up_ref(_first_bio);
    SSL_set0_rbio(ssl, _first_bio);
    BIO_up_ref(_bio);
    SSL_set0_wbio(ssl, _bio);
    return ssl;
}

SSL* Transport::connect(SSL_CTX* ctx) {
    SSL* ssl = SSL_new(ctx);
    if (ssl == nullptr) {
        ERR_clear_error();
        return nullptr;
    }
    SSL_set_connect_state(ssl);
    BIO_up_ref(_bio); // as in accept()
    SSL_set_bio(ssl, _bio, _bio);
    return ssl;
}

void Transport::close(SSL* ssl) {
    SSL_free(ssl);
}

bool Transport::begin(SSL* ssl, std::string_view cipher, base::Buffer*& out) {
    _in = cipher;
    _out = &out;
    _out_failed = false;
    _failure = Failure::none;
    _detail = {};
    if (cipher.empty() || SSL_get_rbio(ssl) != _first_bio) {
        return true;
    }
    _failure = judge_first_bytes(cipher, _detail);
    if (_failure != Failure::none) {
        return false; // BoringSSL has seen nothing: no alert, the caller closes
    }
    // From here on the records are BoringSSL's alone. (Swapping costs a reference count, no
    // allocation: the old read side is _first_bio, which the transport still holds.)
    BIO_up_ref(_bio);
    SSL_set0_rbio(ssl, _bio);
    return true;
}

void Transport::end() {
    _in = {};
    _out = nullptr;
}

Status Transport::next(SSL* ssl, std::string_view& plain) {
    ERR_clear_error();
    int rc = SSL_read(ssl, _plain, static_cast<int>(sizeof _plain));
    if (rc > 0) {
        plain = std::string_view(_plain, static_cast<size_t>(rc));
        return Status::ok;
    }
    plain = {};
    int err = SSL_get_error(ssl, rc);
    if (_out_failed) {
        _failure = Failure::out_of_memory;
        _detail = "no buffer for the bytes to send";
        ERR_clear_error();
        return Status::failed;
    }
    if (err == SSL_ERROR_WANT_READ) {
        return Status::ok; // every byte is taken; a partial record waits inside the session
    }
    if (err == SSL_ERROR_ZERO_RETURN) {
        return Status::closed;
    }
    return fail(ssl, err);
}

Status Transport::fail(SSL* ssl, int /*err*/) {
    uint32_t e = ERR_peek_error();
    int reason = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
    const char* text = e != 0 ? ERR_reason_error_string(e) : nullptr;
    _detail = text != nullptr ? std::string_view(text) : std::string_view("unknown");
    if (!handshake_done(ssl)) {
        if (reason == SSL_R_HTTP_REQUEST || reason == SSL_R_HTTPS_PROXY_REQUEST) {
            _failure = Failure::plain_http;
        } else if (reason == SSL_R_WRONG_VERSION_NUMBER) {
            _failure = Failure::not_tls;
        } else {
            _failure = Failure::handshake;
        }
    } else {
        _failure = Failure::record;
    }
    ERR_clear_error();
    return Status::failed;
}

bool Transport::seal(SSL* ssl, std::string_view plain, base::Buffer*& out) {
    base::Buffer** saved = _out;
    _out = &out;
    _out_failed = false;
    bool ok = true;
    while (!plain.empty()) {
        ERR_clear_error();
        int rc = SSL_write(ssl, plain.data(), static_cast<int>(plain.size()));
        if (rc <= 0 || _out_failed) {
            ERR_clear_error();
            ok = false;
            break;
        }
        plain.remove_prefix(static_cast<size_t>(rc));
    }
    _out = saved;
    return ok;
}

void Transport::close_notify(SSL* ssl, base::Buffer*& out) {
    base::Buffer** saved = _out;
    _out = &out;
    SSL_shutdown(ssl);
    ERR_clear_error();
    _out = saved;
}

int Transport::bio_write(BIO* bio, const char* data, int len) {
    auto* t = static_cast<Transport*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    if (t->_out == nullptr || len < 0) {
        t->_out_failed = true;
        return -1;
    }
    base::Buffer*& out = *t->_out;
    const auto n = static_cast<size_t>(len);
    if (out == nullptr) {
        out = t->_pool.acquire(std::max(n, base::BufferPool::min_class_bytes));
    } else if (out->room() < n) {
        base::Buffer* bigger = t->_pool.grow(out, out->size + n);
        if (bigger != nullptr) {
            out = bigger;
        } else {
            t->_out_failed = true;
            return -1;
        }
    }
    if (out == nullptr) {
        t->_out_failed = true;
        return -1;
    }
    out->append(data, n);
    return len;
}

int Transport::bio_read(BIO* bio, char* data, int len) {
    auto* t = static_cast<Transport*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    if (t->_in.empty()) {
        BIO_set_retry_read(bio); // more will come with the next receive
        return -1;
    }
    const size_t n = std::min(t->_in.size(), static_cast<size_t>(len));
    std::copy_n(t->_in.data(), n, data);
    t->_in.remove_prefix(n);
    return static_cast<int>(n);
}

long Transport::bio_ctrl(BIO* /*bio*/, int cmd, long /*num*/, void* /*ptr*/) {
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

} // namespace portcullis::tls
