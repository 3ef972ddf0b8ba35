#include "ring_connection.hh"

#include "portcullis/base/address.hh"

#include <openssl/rand.h>

#include <algorithm>
#include <cerrno>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

namespace portcullis::deliver {

namespace {

constexpr size_t cipher_bytes = 16 * 1024;
constexpr size_t first_send_bytes = 64 * 1024;
// One send moves at most this much (the kernel's limit on a single call is about 2 GiB).
constexpr size_t max_send = size_t(1) << 30;

} // namespace

void post_nop(io::Ring& ring, const RingTag& tag, RingOp op, size_t& ops, uint16_t generation,
              uint32_t index) {
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_nop(sqe);
    sqe->user_data = tag.pack(op, generation, index);
    ++ops;
}

// ---------------------------------------------------------------------------------------------
// Endpoint

Endpoint::Endpoint(io::Ring& ring, RingTag tag, std::string host, uint16_t port,
                   int64_t resolve_interval_ns, size_t& ops)
    : _ring(ring), _tag(tag), _host(std::move(host)), _port(port),
      _resolve_interval_ns(resolve_interval_ns), _ops(ops) {}

void Endpoint::init() {
    std::vector<ResolvedAddress> literal = Resolver::numeric(_host, _port);
    if (!literal.empty()) {
        _addresses = std::move(literal);
        _host_is_ip = true;
        return;
    }
    _resolver = std::make_unique<Resolver>(_host, _port);
    arm_event();
}

void Endpoint::arm_event() {
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_read(sqe, _resolver->event_fd(), &_event_value, sizeof _event_value, 0);
    sqe->user_data = _tag.pack(RingOp::event);
    _event_armed = true;
    ++_ops;
}

bool Endpoint::request() {
    if (_resolver == nullptr || _resolving || _stopped) {
        return false;
    }
    _resolving = true;
    _resolver->request();
    return true;
}

int64_t Endpoint::earliest(int64_t next) const {
    if (_resolver != nullptr && !_resolving && !_stopped) {
        return std::min(next, _next_resolve_ns);
    }
    return next;
}

bool Endpoint::on_event(int res, int64_t now_ns) {
    _event_armed = false;
    if (_stopped) {
        return false;
    }
    if (res >= 0 || res == -EAGAIN || res == -EINTR) {
        arm_event();
    }
    Resolver::Answer a;
    if (!_resolver->take(a)) {
        return false;
    }
    _resolving = false;
    _next_resolve_ns = now_ns + _resolve_interval_ns;
    if (a.addresses.empty()) {
        // The addresses of the last good answer stay in use.
        _error = "resolve " + _host + ": " + a.error;
    } else {
        _error.clear();
        _addresses = std::move(a.addresses);
        _cursor = 0;
    }
    return true;
}

void Endpoint::stop() {
    _stopped = true;
    if (_event_armed) {
        io_uring_sqe* sqe = _ring.sqe();
        io_uring_prep_cancel64(sqe, _tag.pack(RingOp::event), 0);
        sqe->user_data = _tag.pack(RingOp::cancel);
        ++_ops;
    }
}

// ---------------------------------------------------------------------------------------------
// Backoff

Backoff::Backoff(int64_t min_ns, int64_t max_ns, bool jitter)
    : _min_ns(min_ns), _max_ns(max_ns), _jitter(jitter) {
    if (_jitter) {
        uint64_t seed = 0;
        RAND_bytes(reinterpret_cast<uint8_t*>(&seed), sizeof seed);
        _random.seed(seed);
    }
}

int64_t Backoff::next_ns() {
    ++_failures;
    _current_ns = _current_ns == 0 ? _min_ns : std::min(_current_ns * 2, _max_ns);
    if (!_jitter) {
        return _current_ns;
    }
    std::uniform_int_distribution<int64_t> pick(_min_ns, std::max(_current_ns, _min_ns));
    return pick(_random);
}

void Backoff::reset() {
    _current_ns = 0;
    _failures = 0;
}

// ---------------------------------------------------------------------------------------------
// RingConnection

RingConnection::RingConnection(io::Ring& ring, base::BufferPool& pool, RingTag tag, size_t& ops)
    : _ring(ring), _pool(pool), _tag(tag), _ops(ops) {}

RingConnection::~RingConnection() {
    if (_fd >= 0) {
        ::close(_fd);
    }
    if (_ssl != nullptr) {
        tls::Transport::close(_ssl);
    }
    for (base::Buffer* b : {_queued, _sending_buf, _cipher}) {
        if (b != nullptr) {
            _pool.release(b);
        }
    }
}

std::string RingConnection::init(size_t recv_bytes) {
    _rcap = recv_bytes;
    _rbuf = std::make_unique<char[]>(_rcap);
    _queued = _pool.acquire(first_send_bytes);
    return _queued == nullptr ? "out of memory" : "";
}

std::string RingConnection::init_tls(const std::optional<std::string>& ca,
                                     const std::string& system_ca_file, const std::string& where) {
    std::string err = make_client_tls_context(ca, system_ca_file, where, _tls_ctx);
    if (err.empty()) {
        _transport = std::make_unique<tls::Transport>(_pool);
    }
    return err;
}

std::string RingConnection::open(const ResolvedAddress& a) {
    const int fd = ::socket(a.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return std::string("socket: ") + std::strerror(errno);
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    _fd = fd;
    ++_generation;
    _address = a;
    _rlen = 0;
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_connect(sqe, fd, reinterpret_cast<const sockaddr*>(&_address.addr), _address.len);
    sqe->user_data = _tag.pack(RingOp::connect, _generation);
    _connecting = true;
    ++_ops;
    return {};
}

std::string RingConnection::connect_error(int res) const {
    return "connect " +
           base::PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&_address.addr))
               .to_string() +
           ": " + std::strerror(-res);
}

std::string RingConnection::start_tls(const std::string& host, bool host_is_ip) {
    _ssl = _transport->connect(_tls_ctx.get());
    if (_ssl == nullptr) {
        return "tls: out of memory";
    }
    set_client_peer(_ssl, host, host_is_ip);
    if (!_cbuf) {
        _cbuf = std::make_unique<char[]>(cipher_bytes);
    }
    // The ClientHello.
    const tls::Status s =
        _transport->receive(_ssl, {}, _cipher, [](std::string_view) { return true; });
    return s == tls::Status::ok ? std::string() : tls_error(host);
}

std::string RingConnection::tls_error(const std::string& host) const {
    return client_tls_error(_ssl, *_transport, host);
}

void RingConnection::cancel(RingOp op) {
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_cancel64(sqe, _tag.pack(op, _generation), 0);
    sqe->user_data = _tag.pack(RingOp::cancel);
    ++_ops;
}

void RingConnection::close() {
    if (_fd < 0) {
        return;
    }
    if (_connecting) {
        cancel(RingOp::connect);
    }
    if (_sending) {
        cancel(RingOp::send);
    }
    if (_receiving) {
        cancel(RingOp::recv);
    }
    // SQEs already prepared on this descriptor go to the kernel before it is closed (and its
    // number possibly reused); those in flight hold the socket until they complete.
    if (io_uring_sq_ready(_ring.raw()) > 0) {
        io_uring_submit(_ring.raw());
    }
    ::close(_fd);
    _fd = -1;
    if (_ssl != nullptr) {
        tls::Transport::close(_ssl);
        _ssl = nullptr;
    }
    if (_cipher != nullptr) {
        _pool.release(_cipher);
        _cipher = nullptr;
    }
    // _sending_buf may still be read by a send in flight: free again when it is in.
    _rlen = 0;
}

bool RingConnection::completed(RingOp op, uint16_t generation) {
    switch (op) {
    case RingOp::connect:
        _connecting = false;
        break;
    case RingOp::send:
        _sending = false;
        break;
    case RingOp::recv:
        _receiving = false;
        break;
    default:
        break;
    }
    const bool current = generation == _generation && _fd >= 0;
    if (!current && op == RingOp::send && _sending_buf != nullptr) {
        // The send of a closed connection: its buffer is free again.
        _sending_buf->size = 0;
    }
    return current;
}

RingConnection::Output& RingConnection::Output::append(std::string_view s) {
    char* to = _c.reserve(s.size());
    if (to == nullptr) {
        _c._out_of_memory = true;
        return *this;
    }
    std::memcpy(to, s.data(), s.size());
    _c.commit(s.size());
    return *this;
}

char* RingConnection::reserve(size_t n) {
    if (_queued->room() < n) {
        base::Buffer* bigger =
            _pool.grow(_queued, std::max(_queued->size + n, 2 * _queued->capacity));
        if (bigger == nullptr) {
            return nullptr;
        }
        _queued = bigger;
    }
    return reinterpret_cast<char*>(_queued->data()) + _queued->size;
}

bool RingConnection::prepend(std::string_view front) {
    base::Buffer* b = _pool.acquire(front.size() + _queued->size);
    if (b == nullptr) {
        return false;
    }
    b->append(front.data(), front.size());
    b->append(_queued->data(), _queued->size);
    _pool.release(_queued);
    _queued = b;
    return true;
}

void RingConnection::clear_output() {
    _queued->size = 0;
    _out_of_memory = false;
}

void RingConnection::flush_after_turn() {
    if (_sending || _flush_posted || _queued->size == 0) {
        return;
    }
    _flush_posted = true;
    post_nop(_ring, _tag, RingOp::flush, _ops);
}

RingConnection::Flush RingConnection::flush(bool plain, std::string& error) {
    if (_sending || _fd < 0) {
        return Flush::idle;
    }
    if (_out_of_memory) {
        error = "out of memory for the send buffer";
        return Flush::failed;
    }
    if (_ssl != nullptr) {
        if (plain && _queued->size > 0 && tls::Transport::handshake_done(_ssl)) {
            if (!_transport->seal(_ssl, _queued->view(), _cipher)) {
                error = "tls: out of memory";
                return Flush::failed;
            }
            _queued->size = 0;
        }
        if (_cipher == nullptr || _cipher->size == 0) {
            return Flush::idle;
        }
        if (_sending_buf != nullptr) {
            _pool.release(_sending_buf);
        }
        _sending_buf = _cipher;
        _cipher = nullptr;
    } else {
        if (!plain || _queued->size == 0) {
            return Flush::idle;
        }
        base::Buffer* next = _sending_buf;
        if (next == nullptr) {
            next = _pool.acquire(first_send_bytes);
            if (next == nullptr) {
                error = "out of memory for the send buffer";
                return Flush::failed;
            }
        }
        next->size = 0;
        _sending_buf = _queued;
        _queued = next;
    }
    _sent = 0;
    arm_send();
    return Flush::sent;
}

void RingConnection::arm_send() {
    io_uring_sqe* sqe = _ring.sqe();
    const size_t n = std::min(_sending_buf->size - _sent, max_send);
    io_uring_prep_send(sqe, _fd, _sending_buf->data() + _sent, n, MSG_NOSIGNAL);
    sqe->user_data = _tag.pack(RingOp::send, _generation);
    _sending = true;
    ++_ops;
}

RingConnection::Sent RingConnection::on_sent(int res, std::string& error) {
    if (res > 0) {
        _sent += size_t(res);
    }
    if (res > 0 || res == -EAGAIN || res == -EINTR) {
        if (_sent < _sending_buf->size) {
            arm_send();
            return Sent::more;
        }
        _sending_buf->size = 0;
        return Sent::done;
    }
    error =
        res == 0 ? std::string("send: nothing sent") : "send: " + std::string(std::strerror(-res));
    return Sent::failed;
}

void RingConnection::arm_recv() {
    if (_receiving || _fd < 0) {
        return; // a receive of a closed connection is still in flight: this one arms after it
    }
    io_uring_sqe* sqe = _ring.sqe();
    if (_ssl != nullptr) {
        io_uring_prep_recv(sqe, _fd, _cbuf.get(), cipher_bytes, 0);
    } else {
        io_uring_prep_recv(sqe, _fd, _rbuf.get() + _rlen, _rcap - _rlen, 0);
    }
    sqe->user_data = _tag.pack(RingOp::recv, _generation);
    _receiving = true;
    ++_ops;
}

std::string RingConnection::closed_mid(std::string_view unit) const {
    return "the server closed the connection in the middle of a " + std::string(unit) + " (" +
           std::to_string(_rlen) + " bytes of it received)";
}

void RingConnection::consume(size_t n) {
    std::memmove(_rbuf.get(), _rbuf.get() + n, _rlen - n);
    _rlen -= n;
}

} // namespace portcullis::deliver
