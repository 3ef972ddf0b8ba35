#include "portcullis/deliver/redis_sink.hh"

#include "resolver.hh"
#include "tls_client.hh"

#include "portcullis/base/address.hh"
#include "portcullis/queue/job_json.hh"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

namespace portcullis::deliver {

namespace {

constexpr int64_t min_wait_ns = 1'000;
// Replies to XADD, AUTH and SELECT are a few dozen bytes (an error line at most a few hundred):
// a reply larger than this is not one of them, and the connection is dropped rather than
// buffered without end. The receive buffer holds one such partial reply and a TLS record's
// plaintext (16 KiB) or a receive on top of it.
constexpr size_t max_reply_bytes = 16 * 1024;
constexpr size_t recv_bytes = 64 * 1024;
constexpr size_t cipher_bytes = 16 * 1024;
constexpr size_t first_send_bytes = 64 * 1024;
// One send moves at most this much (the kernel's limit on a single call is about 2 GiB).
constexpr size_t max_send = size_t(1) << 30;
// Redis's proto-max-bulk-len default: a longer argument is refused with a protocol error that
// closes the connection.
constexpr size_t max_body_bytes = size_t(512) << 20;
// The server's text in an outcome's error, at most (it is logged).
constexpr size_t max_error_text = 256;

std::string errno_text(int err) {
    return std::strerror(err);
}

std::string address_text(const sockaddr_storage& ss) {
    return base::PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss)).to_string();
}

std::string_view clipped(std::string_view s) {
    return s.substr(0, max_error_text);
}

} // namespace

struct RedisSink::Address : ResolvedAddress {};

struct RedisSink::Pending {
    Command command = Command::xadd;
    uint64_t cookie = 0;
    int64_t started_ns = 0;
};

std::string_view redis_outcome_name(RedisOutcome::Kind k) {
    return k == RedisOutcome::Kind::delivered ? "delivered" : "retry";
}

RedisSink::RedisSink(io::Ring& ring, uint8_t slot, std::string name,
                     const config::RedisSinkConfig& cfg, RedisSinkOptions options)
    : _ring(ring), _slot(slot), _name(std::move(name)), _cfg(cfg), _options(std::move(options)),
      _parser(resp::Limits{.max_frame = max_reply_bytes}) {}

RedisSink::~RedisSink() {
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

std::string RedisSink::init(int64_t now_ns) {
    _now_ns = now_ns;
    _where = "redis sink " + _name;
    const std::string where = "sinks." + _name + ".redis";
    if (_cfg.max_in_flight == 0) {
        return where + ".max_in_flight: must be at least 1";
    }
    // The stream template: pieces around each {route}.
    constexpr std::string_view placeholder = "{route}";
    std::string_view t = _cfg.stream;
    for (;;) {
        const size_t at = t.find(placeholder);
        _stream_pieces.emplace_back(t.substr(0, at));
        if (at == std::string_view::npos) {
            break;
        }
        t.remove_prefix(at + placeholder.size());
    }
    _maxlen_text = std::to_string(_cfg.maxlen);
    if (_cfg.tls) {
        // No `ca` key for redis (yet): the system's store, or the test's.
        if (std::string err =
                make_client_tls_context(std::nullopt, _options.system_ca_file, where, _tls_ctx);
            !err.empty()) {
            return err;
        }
        _transport = std::make_unique<tls::Transport>(_pool);
        _cbuf = std::make_unique<char[]>(cipher_bytes);
    }
    _pending.resize(size_t(_cfg.max_in_flight) + 2);
    _settled.reserve(2 * size_t(_cfg.max_in_flight) + 8);
    _rbuf = std::make_unique<char[]>(recv_bytes);
    _queued = _pool.acquire(first_send_bytes);
    if (_queued == nullptr) {
        return where + ": out of memory";
    }
    std::vector<ResolvedAddress> literal = Resolver::numeric(_cfg.host, _cfg.port);
    if (!literal.empty()) {
        for (const ResolvedAddress& a : literal) {
            _addresses.push_back({a});
        }
        _host_is_ip = true;
    } else {
        _resolver = std::make_unique<Resolver>(_cfg.host, _cfg.port);
        io_uring_sqe* sqe = _ring.sqe();
        io_uring_prep_read(sqe, _resolver->event_fd(), &_event_value, sizeof _event_value, 0);
        sqe->user_data = pack(Op::event, 0);
        _event_armed = true;
        ++_ops;
    }
    connect(now_ns);
    return {};
}

// ---------------------------------------------------------------------------------------------
// Resolution

void RedisSink::request_resolution(int64_t now_ns) {
    if (_resolver == nullptr || _resolving || _stopped) {
        return;
    }
    _resolving = true;
    _next_resolve_ns = now_ns + _options.resolve_interval_ns;
    ++_stats.resolutions;
    _resolver->request();
}

void RedisSink::on_resolved(int64_t now_ns) {
    Resolver::Answer a;
    if (!_resolver->take(a)) {
        return;
    }
    _resolving = false;
    _next_resolve_ns = now_ns + _options.resolve_interval_ns;
    if (a.addresses.empty()) {
        ++_stats.resolve_failures;
        // The addresses of the last good answer stay in use.
        if (_state == State::resolving) {
            conn_failed("resolve " + _cfg.host + ": " + a.error);
        }
        return;
    }
    _addresses.clear();
    for (const ResolvedAddress& r : a.addresses) {
        _addresses.push_back({r});
    }
    _address_cursor = 0;
    if (_state == State::resolving) {
        connect(now_ns);
    }
}

// ---------------------------------------------------------------------------------------------
// The connection

void RedisSink::connect(int64_t now_ns) {
    if (_stopped) {
        return;
    }
    _state_since_ns = now_ns;
    if (_addresses.empty()) {
        _state = State::resolving;
        request_resolution(now_ns);
        return;
    }
    const Address& a = _addresses[_address_cursor % _addresses.size()];
    const int fd = ::socket(a.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ++_stats.connect_failures;
        _state = State::connecting;
        conn_failed("socket: " + errno_text(errno));
        return;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    _fd = fd;
    ++_generation;
    _state = State::connecting;
    _connect_address = std::make_unique<Address>(a);
    queue_hello();
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_connect(sqe, fd, reinterpret_cast<const sockaddr*>(&_connect_address->addr),
                          _connect_address->len);
    sqe->user_data = pack(Op::connect, _generation);
    _connecting = true;
    ++_ops;
}

// AUTH and SELECT go ahead of every XADD queued so far (those started while the first
// resolution was under way).
void RedisSink::queue_hello() {
    std::array<std::string_view, 3> auth{};
    size_t auth_args = 0;
    if (_cfg.password) {
        auth[auth_args++] = "AUTH";
        if (!_cfg.user.empty()) {
            auth[auth_args++] = _cfg.user;
        }
        auth[auth_args++] = _cfg.password->material;
    }
    const std::string db = std::to_string(_cfg.db);
    const std::array<std::string_view, 2> select{"SELECT", db};
    const std::span<const std::string_view> auth_span(auth.data(), auth_args);
    size_t bytes = 0;
    if (auth_args > 0) {
        bytes += resp::command_size(auth_span);
    }
    if (_cfg.db != 0) {
        bytes += resp::command_size(select);
    }
    if (bytes == 0) {
        return;
    }
    base::Buffer* b = _pool.acquire(bytes + _queued->size);
    if (b == nullptr) {
        return; // the XADDs then meet -NOAUTH, which says what is missing
    }
    char* p = reinterpret_cast<char*>(b->data());
    char* const begin = p;
    if (auth_args > 0) {
        p = resp::write_command(p, auth_span);
    }
    if (_cfg.db != 0) {
        p = resp::write_command(p, select);
    }
    b->size = size_t(p - begin);
    b->append(_queued->data(), _queued->size);
    _pool.release(_queued);
    _queued = b;
    // Their replies come first: in front of the pending ring, SELECT then AUTH.
    const size_t cap = _pending.size();
    auto push_front = [&](Command c) {
        _pending_head = (_pending_head + cap - 1) % cap;
        _pending[_pending_head] = {c, 0, _now_ns};
        ++_pending_count;
        ++_hello_pending;
    };
    if (_cfg.db != 0) {
        push_front(Command::select);
    }
    if (auth_args > 0) {
        push_front(Command::auth);
    }
}

void RedisSink::on_connected() {
    ++_stats.connects;
    if (!_cfg.tls) {
        _state = State::open;
        arm_recv();
        flush();
        return;
    }
    _state = State::handshaking;
    arm_recv();
    _ssl = _transport->connect(_tls_ctx.get());
    if (_ssl == nullptr) {
        conn_failed("tls: out of memory");
        return;
    }
    set_client_peer(_ssl, _cfg.host, _host_is_ip);
    // The ClientHello.
    const tls::Status s =
        _transport->receive(_ssl, {}, _cipher, [](std::string_view) { return true; });
    if (s != tls::Status::ok) {
        ++_stats.tls_failures;
        conn_failed(client_tls_error(_ssl, *_transport, _cfg.host));
        return;
    }
    flush();
}

void RedisSink::cancel(Op op, uint16_t generation) {
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_cancel64(sqe, pack(op, generation), 0);
    sqe->user_data = pack(Op::cancel, 0);
    ++_ops;
}

void RedisSink::close_conn() {
    if (_fd < 0) {
        return;
    }
    if (_connecting) {
        cancel(Op::connect, _generation);
    }
    if (_sending) {
        cancel(Op::send, _generation);
    }
    if (_receiving) {
        cancel(Op::recv, _generation);
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
}

void RedisSink::conn_failed(std::string_view what) {
    if (_stopped) {
        return;
    }
    if (_state == State::open) {
        ++_stats.disconnects;
    }
    _last_error.assign(what);
    close_conn();
    _state = State::down;
    // Every command in flight fails: its reply may have been lost after Redis stored it, so the
    // delivery runs again (at least once).
    const size_t cap = _pending.size();
    for (size_t i = 0; i < _pending_count; ++i) {
        const Pending& p = _pending[(_pending_head + i) % cap];
        if (p.command == Command::xadd) {
            settle(p.cookie, p.started_ns, RedisOutcome::Kind::retry, _last_error, {});
        }
    }
    _pending_head = 0;
    _pending_count = 0;
    _hello_pending = 0;
    _queued->size = 0;
    _rlen = 0;
    _parser.reset();
    ++_failures;
    int64_t backoff = _options.backoff_min_ns;
    for (uint32_t i = 1; i < _failures && backoff < _options.backoff_max_ns; ++i) {
        backoff *= 2;
    }
    _next_connect_ns = _now_ns + std::min(backoff, _options.backoff_max_ns);
    if (!_addresses.empty()) {
        _address_cursor = (_address_cursor + 1) % _addresses.size();
    }
    if (_resolver != nullptr && _failures > 1) {
        request_resolution(_now_ns);
    }
}

// ---------------------------------------------------------------------------------------------
// Deliveries

bool RedisSink::encode(std::span<const std::string_view> args) {
    const size_t need = resp::command_size(args);
    if (_queued->room() < need) {
        base::Buffer* bigger =
            _pool.grow(_queued, std::max(_queued->size + need, 2 * _queued->capacity));
        if (bigger == nullptr) {
            return false;
        }
        _queued = bigger;
    }
    char* begin = reinterpret_cast<char*>(_queued->data()) + _queued->size;
    _queued->size += size_t(resp::write_command(begin, args) - begin);
    return true;
}

bool RedisSink::start(const RedisDelivery& d, uint64_t cookie, int64_t now_ns, std::string& error) {
    error.clear();
    _now_ns = now_ns;
    if (_stopped) {
        error = "the sink is stopping";
        ++_stats.refused;
        return false;
    }
    if (!has_room()) {
        error = "all " + std::to_string(_cfg.max_in_flight) + " commands in flight";
        ++_stats.refused;
        return false;
    }
    if (d.body.size() > max_body_bytes) {
        error = "the body (" + std::to_string(d.body.size()) +
                " bytes) is over Redis's largest argument (proto-max-bulk-len, 512 MiB)";
        ++_stats.refused;
        return false;
    }
    if (_state == State::down && now_ns >= _next_connect_ns) {
        connect(now_ns);
    }
    ++_in_flight;
    ++_stats.started;
    if (_state == State::down) {
        // Waiting for the backoff: fail fast with what went wrong.
        settle(cookie, now_ns, RedisOutcome::Kind::retry,
               _last_error.empty() ? std::string_view("not connected") : _last_error, {});
        return true;
    }
    _stream.clear();
    for (size_t i = 0; i < _stream_pieces.size(); ++i) {
        if (i > 0) {
            _stream.append(d.route);
        }
        _stream.append(_stream_pieces[i]);
    }
    _headers_json.clear();
    if (d.record != nullptr) {
        queue::append_headers_json(_headers_json, *d.record);
    } else {
        _headers_json = "{}";
    }
    char received_at[24];
    const std::array<std::string_view, 15> args{
        "XADD",    _stream,       "MAXLEN",
        "~",       _maxlen_text,  "*",
        "id",      d.job_id,      "route",
        d.route,   "received_at", base::format_rfc3339(d.received_at_unix_ns, received_at),
        "headers", _headers_json, "body",
    };
    const std::string_view body(reinterpret_cast<const char*>(d.body.data()), d.body.size());
    std::array<std::string_view, 16> all{};
    std::copy(args.begin(), args.end(), all.begin());
    all[15] = body;
    if (!encode(all)) {
        settle(cookie, now_ns, RedisOutcome::Kind::retry, "out of memory for the send buffer", {});
        return true;
    }
    _pending[(_pending_head + _pending_count) % _pending.size()] = {Command::xadd, cookie, now_ns};
    ++_pending_count;
    request_flush();
    return true;
}

void RedisSink::settle(uint64_t cookie, int64_t started_ns, RedisOutcome::Kind kind,
                       std::string_view error, std::string_view entry_id) {
    if (_settled_count == _settled.size()) {
        _settled.emplace_back();
    }
    Settled& s = _settled[_settled_count++];
    s.cookie = cookie;
    s.kind = kind;
    s.duration_ns = _now_ns - started_ns;
    s.error.assign(error);
    s.entry_id.assign(entry_id);
    if (kind == RedisOutcome::Kind::delivered) {
        ++_stats.delivered;
    } else {
        ++_stats.retried;
    }
    if (!_in_cqe) {
        // Found by start() or tick(): reported through the ring, so that every outcome reaches
        // the caller from on_cqe().
        post_report();
    }
}

void RedisSink::post_report() {
    if (_report_posted || _stopped) {
        return;
    }
    _report_posted = true;
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_nop(sqe);
    sqe->user_data = pack(Op::report, 0);
    ++_ops;
}

// ---------------------------------------------------------------------------------------------
// Sending: commands gather in _queued while a send is in flight; a flush takes them all.

void RedisSink::request_flush() {
    if (_state != State::open || _sending || _flush_posted || _queued->size == 0) {
        return;
    }
    // Not at once: the caller is likely to start more deliveries in the same turn of the loop
    // (the engine fills the window), and a NOP completes at the next submission, after them.
    _flush_posted = true;
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_nop(sqe);
    sqe->user_data = pack(Op::flush, 0);
    ++_ops;
}

void RedisSink::flush() {
    if (_sending || _fd < 0) {
        return;
    }
    if (_cfg.tls) {
        if (_state == State::open && _queued->size > 0) {
            if (!_transport->seal(_ssl, _queued->view(), _cipher)) {
                conn_failed("tls: out of memory");
                return;
            }
            _queued->size = 0;
        }
        if (_cipher == nullptr || _cipher->size == 0) {
            return;
        }
        if (_sending_buf != nullptr) {
            _pool.release(_sending_buf);
        }
        _sending_buf = _cipher;
        _cipher = nullptr;
    } else {
        if (_state != State::open || _queued->size == 0) {
            return;
        }
        base::Buffer* next = _sending_buf;
        if (next == nullptr) {
            next = _pool.acquire(first_send_bytes);
            if (next == nullptr) {
                conn_failed("out of memory for the send buffer");
                return;
            }
        }
        next->size = 0;
        _sending_buf = _queued;
        _queued = next;
    }
    _sent = 0;
    ++_stats.sends;
    arm_send();
}

void RedisSink::arm_send() {
    io_uring_sqe* sqe = _ring.sqe();
    const size_t n = std::min(_sending_buf->size - _sent, max_send);
    io_uring_prep_send(sqe, _fd, _sending_buf->data() + _sent, n, MSG_NOSIGNAL);
    sqe->user_data = pack(Op::send, _generation);
    _sending = true;
    ++_ops;
}

void RedisSink::on_send(int res) {
    if (res > 0) {
        _sent += size_t(res);
    }
    if (res > 0 || res == -EAGAIN || res == -EINTR) {
        if (_sent < _sending_buf->size) {
            arm_send();
            return;
        }
        _sending_buf->size = 0;
        flush();
        return;
    }
    conn_failed(res == 0 ? std::string("send: nothing sent") : "send: " + errno_text(-res));
}

// ---------------------------------------------------------------------------------------------
// Receiving

void RedisSink::arm_recv() {
    if (_receiving || _fd < 0 || (_state != State::handshaking && _state != State::open)) {
        return; // a receive of a closed connection is still in flight: this one arms after it
    }
    io_uring_sqe* sqe = _ring.sqe();
    if (_cfg.tls) {
        io_uring_prep_recv(sqe, _fd, _cbuf.get(), cipher_bytes, 0);
    } else {
        io_uring_prep_recv(sqe, _fd, _rbuf.get() + _rlen, recv_bytes - _rlen, 0);
    }
    sqe->user_data = pack(Op::recv, _generation);
    _receiving = true;
    ++_ops;
}

void RedisSink::on_recv(int res) {
    if (res == -EAGAIN || res == -EINTR || res == -ENOBUFS) {
        arm_recv();
        return;
    }
    if (res < 0) {
        conn_failed("receive: " + errno_text(-res));
        return;
    }
    if (res == 0) {
        if (_rlen > 0) {
            // A reply cut short (a server or a proxy that died mid-write), not a clean close.
            conn_failed("the server closed the connection in the middle of a reply (" +
                        std::to_string(_rlen) + " bytes of it received)");
            return;
        }
        conn_failed(_state == State::handshaking
                        ? "the server closed the connection during the TLS handshake"
                        : "the server closed the connection");
        return;
    }
    std::string doom;
    if (!_cfg.tls) {
        _rlen += size_t(res);
        if (!absorb(doom)) {
            conn_failed(doom);
            return;
        }
        arm_recv();
        return;
    }
    const bool was_open = _state == State::open;
    const tls::Status s = _transport->receive(
        _ssl, std::string_view(_cbuf.get(), size_t(res)), _cipher, [&](std::string_view plain) {
            if (plain.size() > recv_bytes - _rlen) {
                doom = "reply too large";
                return false;
            }
            std::memcpy(_rbuf.get() + _rlen, plain.data(), plain.size());
            _rlen += plain.size();
            return absorb(doom);
        });
    if (!doom.empty()) {
        conn_failed(doom);
        return;
    }
    if (s == tls::Status::failed) {
        if (!was_open) {
            ++_stats.tls_failures;
        }
        conn_failed(client_tls_error(_ssl, *_transport, _cfg.host));
        return;
    }
    if (s == tls::Status::closed) {
        conn_failed("the server closed the TLS session");
        return;
    }
    if (!was_open && tls::Transport::handshake_done(_ssl)) {
        _state = State::open;
        ++_stats.tls_handshakes;
    }
    flush();
    arm_recv();
}

bool RedisSink::absorb(std::string& doom) {
    const std::string_view all(_rbuf.get(), _rlen);
    size_t used = 0;
    for (;;) {
        resp::Value v;
        const resp::Step s = _parser.parse(all.substr(used), v);
        if (s.status == resp::Status::need_more) {
            break;
        }
        if (s.status == resp::Status::error) {
            ++_stats.bad_replies;
            doom = "bad reply from redis (" + std::string(s.detail) + ")";
            return false;
        }
        used += s.consumed;
        if (!on_reply(v, doom)) {
            return false;
        }
    }
    std::memmove(_rbuf.get(), _rbuf.get() + used, _rlen - used);
    _rlen -= used;
    return true;
}

bool RedisSink::on_reply(const resp::Value& v, std::string& doom) {
    if (v.type == resp::Type::push || v.type == resp::Type::attribute) {
        return true; // out of band: not the reply to a command
    }
    if (_pending_count == 0) {
        doom = "a reply to no command";
        return false;
    }
    const Pending p = _pending[_pending_head];
    _pending_head = (_pending_head + 1) % _pending.size();
    --_pending_count;
    switch (p.command) {
    case Command::auth:
    case Command::select:
        --_hello_pending;
        if (v.type == resp::Type::error) {
            if (p.command == Command::auth) {
                ++_stats.auth_failures;
                doom = _where + ": AUTH" +
                       (_cfg.user.empty() ? std::string() : " as user " + _cfg.user) +
                       " refused by " + _cfg.host + ":" + std::to_string(_cfg.port) + ": ";
            } else {
                doom = _where + ": SELECT " + std::to_string(_cfg.db) + " refused by " + _cfg.host +
                       ":" + std::to_string(_cfg.port) + ": ";
            }
            doom.append(clipped(v.text));
            return false;
        }
        if (_hello_pending == 0) {
            _failures = 0;
        }
        return true;
    case Command::xadd:
        break;
    }
    _failures = 0;
    if (v.type == resp::Type::bulk) {
        settle(p.cookie, p.started_ns, RedisOutcome::Kind::delivered, {}, clipped(v.text));
        return true;
    }
    std::string& why = _settle_scratch;
    if (v.type == resp::Type::error) {
        ++_stats.error_replies;
        why.assign("XADD refused: ");
        why.append(clipped(v.text));
        // Redis 7 answers a long command from a client that has not authenticated with a
        // protocol error, a short one with NOAUTH: both mean the same.
        if (v.text.starts_with("NOAUTH") ||
            v.text.find("unauthenticated") != std::string_view::npos) {
            why.append(" (the server wants AUTH: set the sink's credentials)");
        }
    } else {
        why.assign("unexpected reply to XADD: ");
        why.append(resp::type_name(v.type));
    }
    settle(p.cookie, p.started_ns, RedisOutcome::Kind::retry, why, {});
    return true;
}

// ---------------------------------------------------------------------------------------------

void RedisSink::handle(const io_uring_cqe& cqe, int64_t now_ns) {
    _now_ns = now_ns;
    --_ops;
    const auto op = static_cast<Op>((cqe.user_data >> 40) & 0xff);
    const auto generation = static_cast<uint16_t>(cqe.user_data >> 24);
    const bool current = generation == _generation && _fd >= 0;
    const int res = cqe.res;
    switch (op) {
    case Op::cancel:
        return;
    case Op::report:
        _report_posted = false;
        return;
    case Op::flush:
        _flush_posted = false;
        if (!_stopped && _state == State::open) {
            flush();
        }
        return;
    case Op::event:
        _event_armed = false;
        if (_stopped) {
            return;
        }
        on_resolved(now_ns);
        if (res >= 0 || res == -EAGAIN || res == -EINTR) {
            io_uring_sqe* sqe = _ring.sqe();
            io_uring_prep_read(sqe, _resolver->event_fd(), &_event_value, sizeof _event_value, 0);
            sqe->user_data = pack(Op::event, 0);
            _event_armed = true;
            ++_ops;
        }
        return;
    case Op::connect:
        _connecting = false;
        if (!current || _stopped) {
            return;
        }
        if (res != 0) {
            ++_stats.connect_failures;
            conn_failed("connect " + address_text(_connect_address->addr) + ": " +
                        errno_text(-res));
            return;
        }
        on_connected();
        return;
    case Op::send:
        _sending = false;
        if (!current || _stopped) {
            // The send of a closed connection: its buffer is free again, and the current
            // connection may send.
            if (_sending_buf != nullptr) {
                _sending_buf->size = 0;
            }
            if (!_stopped && _fd >= 0) {
                flush();
            }
            return;
        }
        on_send(res);
        return;
    case Op::recv:
        _receiving = false;
        if (!current || _stopped) {
            if (!_stopped && _fd >= 0) {
                arm_recv();
            }
            return;
        }
        on_recv(res);
        return;
    }
}

void RedisSink::tick(int64_t now_ns) {
    _now_ns = now_ns;
    if (_stopped) {
        return;
    }
    const int64_t timeout_ms = _options.timeout_ns / base::ns_per_ms;
    switch (_state) {
    case State::down:
        if (now_ns >= _next_connect_ns) {
            connect(now_ns);
        }
        break;
    case State::resolving:
    case State::connecting:
    case State::handshaking:
        if (now_ns - _state_since_ns >= _options.timeout_ns) {
            ++_stats.timeouts;
            const char* phase = _state == State::resolving    ? "resolving "
                                : _state == State::connecting ? "connecting to "
                                                              : "tls handshake with ";
            conn_failed("timeout after " + std::to_string(timeout_ms) + " ms (" + phase +
                        _cfg.host + ":" + std::to_string(_cfg.port) + ")");
        }
        break;
    case State::open:
        if (_pending_count > 0 &&
            now_ns - _pending[_pending_head].started_ns >= _options.timeout_ns) {
            ++_stats.timeouts;
            conn_failed("timeout after " + std::to_string(timeout_ms) +
                        " ms (no reply from redis)");
        }
        break;
    }
    if (_resolver != nullptr && !_resolving && now_ns >= _next_resolve_ns) {
        request_resolution(now_ns);
    }
}

int64_t RedisSink::wait_limit_ns(int64_t now_ns, int64_t limit) const {
    int64_t next = now_ns + limit;
    if (_stopped) {
        return limit;
    }
    switch (_state) {
    case State::down:
        next = std::min(next, _next_connect_ns);
        break;
    case State::resolving:
    case State::connecting:
    case State::handshaking:
        next = std::min(next, _state_since_ns + _options.timeout_ns);
        break;
    case State::open:
        if (_pending_count > 0) {
            next = std::min(next, _pending[_pending_head].started_ns + _options.timeout_ns);
        }
        break;
    }
    if (_resolver != nullptr && !_resolving) {
        next = std::min(next, _next_resolve_ns);
    }
    return std::clamp<int64_t>(next - now_ns, min_wait_ns, limit);
}

void RedisSink::stop() {
    if (_stopped) {
        return;
    }
    _stopped = true;
    _settled_count = 0;
    _pending_count = 0;
    _hello_pending = 0;
    _in_flight = 0;
    close_conn();
    _state = State::down;
    if (_event_armed) {
        cancel(Op::event, 0);
    }
    // The cancellations take effect now, not at the loop's next submission.
    io_uring_submit(_ring.raw());
}

} // namespace portcullis::deliver
