#include "portcullis/deliver/redis_sink.hh"

#include "ring_connection.hh"

#include "portcullis/queue/job_json.hh"

#include <openssl/mem.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

namespace portcullis::deliver {

namespace {

constexpr int64_t min_wait_ns = 1'000;
// Replies to XADD, AUTH and SELECT are a few dozen bytes (an error line at most a few hundred):
// a reply larger than this is not one of them, and the connection is dropped rather than
// buffered without end. The receive buffer holds one such partial reply and a TLS record's
// plaintext (16 KiB) or a receive on top of it.
constexpr size_t max_reply_bytes = 16 * 1024;
constexpr size_t recv_bytes = 64 * 1024;
// Redis's proto-max-bulk-len default: a longer argument is refused with a protocol error that
// closes the connection.
constexpr size_t max_body_bytes = size_t(512) << 20;
// The server's text in an outcome's error, at most (it is logged).
constexpr size_t max_error_text = 256;

std::string_view clipped(std::string_view s) {
    return s.substr(0, max_error_text);
}

} // namespace

struct RedisSink::Pending {
    Command command = Command::xadd;
    uint64_t cookie = 0;
    int64_t started_ns = 0;
};

std::string_view redis_outcome_name(RedisOutcome::Kind k) {
    return outcome_kind_name(k);
}

RedisSink::RedisSink(io::Ring& ring, uint8_t slot, std::string name,
                     const config::RedisSinkConfig& cfg, RedisSinkOptions options)
    : _ring(ring), _slot(slot), _name(std::move(name)), _cfg(cfg), _options(std::move(options)),
      _endpoint(std::make_unique<Endpoint>(_ring, RingTag{redis_tag, _slot}, _cfg.host, _cfg.port,
                                           _options.resolve_interval_ns, _ops)),
      _conn(std::make_unique<RingConnection>(_ring, _pool, RingTag{redis_tag, _slot}, _ops)),
      _backoff(std::make_unique<Backoff>(_options.backoff_min_ns, _options.backoff_max_ns, false)),
      _parser(resp::Limits{.max_frame = max_reply_bytes}) {}

RedisSink::~RedisSink() = default;

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
        if (std::string err = _conn->init_tls(_cfg.ca, _options.system_ca_file, where);
            !err.empty()) {
            return err;
        }
    }
    _pending.resize(size_t(_cfg.max_in_flight) + 2);
    _settled.reserve(2 * size_t(_cfg.max_in_flight) + 8);
    if (!_conn->init(recv_bytes).empty()) {
        return where + ": out of memory";
    }
    _endpoint->init();
    connect(now_ns);
    return {};
}

// ---------------------------------------------------------------------------------------------
// Resolution

void RedisSink::request_resolution() {
    if (_endpoint->request()) {
        ++_stats.resolutions;
    }
}

void RedisSink::on_resolved(int res, int64_t now_ns) {
    if (!_endpoint->on_event(res, now_ns)) {
        return;
    }
    if (!_endpoint->error().empty()) {
        ++_stats.resolve_failures;
        // The addresses of the last good answer stay in use.
        if (_state == State::resolving) {
            conn_failed(_endpoint->error());
        }
        return;
    }
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
    if (_endpoint->addresses().empty()) {
        _state = State::resolving;
        request_resolution();
        return;
    }
    _state = State::connecting;
    if (std::string err = _conn->open(_endpoint->current()); !err.empty()) {
        ++_stats.connect_failures;
        conn_failed(err);
        return;
    }
    queue_hello();
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
    std::string hello(bytes, '\0');
    char* p = hello.data();
    if (auth_args > 0) {
        p = resp::write_command(p, auth_span);
    }
    if (_cfg.db != 0) {
        (void)resp::write_command(p, select);
    }
    const bool queued = _conn->prepend(hello);
    OPENSSL_cleanse(hello.data(), hello.size()); // the password
    if (!queued) {
        return; // the XADDs then meet -NOAUTH, which says what is missing
    }
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
        _conn->arm_recv();
        flush();
        return;
    }
    _state = State::handshaking;
    // The session first: the receive reads ciphertext.
    if (std::string err = _conn->start_tls(_cfg.host, _endpoint->host_is_ip()); !err.empty()) {
        if (_conn->tls()) {
            ++_stats.tls_failures; // the session's, not a failed allocation
        }
        conn_failed(err);
        return;
    }
    _conn->arm_recv();
    flush();
}

void RedisSink::conn_failed(std::string_view what) {
    if (_stopped) {
        return;
    }
    if (_state == State::open) {
        ++_stats.disconnects;
    }
    _last_error.assign(what);
    _conn->close();
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
    _conn->clear_output();
    _parser.reset();
    _next_connect_ns = _now_ns + _backoff->next_ns();
    if (!_endpoint->addresses().empty()) {
        _endpoint->set_cursor((_endpoint->cursor() + 1) % _endpoint->addresses().size());
    }
    if (_backoff->failures() > 1) {
        request_resolution();
    }
}

// ---------------------------------------------------------------------------------------------
// Deliveries

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
    const size_t need = resp::command_size(all);
    char* to = _conn->reserve(need);
    if (to == nullptr) {
        settle(cookie, now_ns, RedisOutcome::Kind::retry, "out of memory for the send buffer", {});
        return true;
    }
    _conn->commit(size_t(resp::write_command(to, all) - to));
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
    post_nop(_ring, RingTag{redis_tag, _slot}, RingOp::report, _ops);
}

// ---------------------------------------------------------------------------------------------
// Sending: commands gather in the connection's queue while a send is in flight; a flush takes
// them all.

void RedisSink::request_flush() {
    if (_state == State::open) {
        _conn->flush_after_turn();
    }
}

void RedisSink::flush() {
    std::string error;
    switch (_conn->flush(_state == State::open, error)) {
    case RingConnection::Flush::idle:
        return;
    case RingConnection::Flush::sent:
        ++_stats.sends;
        return;
    case RingConnection::Flush::failed:
        conn_failed(error);
        return;
    }
}

void RedisSink::on_send(int res) {
    std::string error;
    switch (_conn->on_sent(res, error)) {
    case RingConnection::Sent::more:
        return;
    case RingConnection::Sent::done:
        flush();
        return;
    case RingConnection::Sent::failed:
        conn_failed(error);
        return;
    }
}

// ---------------------------------------------------------------------------------------------
// Receiving

void RedisSink::on_recv(int res) {
    const bool was_open = _state == State::open;
    std::string doom;
    const RingConnection::Received r = _conn->on_received(res, [&] { return absorb(doom); });
    switch (r.kind) {
    case RingConnection::Received::Kind::again:
        return;
    case RingConnection::Received::Kind::error:
        conn_failed(r.error);
        return;
    case RingConnection::Received::Kind::eof:
        if (!_conn->received().empty()) {
            conn_failed(_conn->closed_mid("reply"));
            return;
        }
        conn_failed(_state == State::handshaking
                        ? "the server closed the connection during the TLS handshake"
                        : "the server closed the connection");
        return;
    case RingConnection::Received::Kind::data:
        break;
    }
    if (r.overflow) {
        doom = "reply too large";
    }
    if (!doom.empty() || !r.absorbed) {
        conn_failed(doom);
        return;
    }
    if (_cfg.tls) {
        if (r.tls == tls::Status::failed) {
            if (!was_open) {
                ++_stats.tls_failures;
            }
            conn_failed(_conn->tls_error(_cfg.host));
            return;
        }
        if (r.tls == tls::Status::closed) {
            conn_failed("the server closed the TLS session");
            return;
        }
        if (r.handshake_completed) {
            _state = State::open;
            ++_stats.tls_handshakes;
        }
        flush();
    }
    _conn->arm_recv();
}

bool RedisSink::absorb(std::string& doom) {
    const std::string_view all = _conn->received();
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
    _conn->consume(used);
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
            _backoff->reset();
        }
        return true;
    case Command::xadd:
        break;
    }
    _backoff->reset();
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
    const RingOp op = RingTag::op_of(cqe.user_data);
    const int res = cqe.res;
    switch (op) {
    case RingOp::cancel:
        return;
    case RingOp::report:
        _report_posted = false;
        return;
    case RingOp::flush:
        _conn->flush_nop_done();
        if (!_stopped && _state == State::open) {
            flush();
        }
        return;
    case RingOp::event:
        on_resolved(res, now_ns);
        return;
    case RingOp::connect:
    case RingOp::send:
    case RingOp::recv:
        break;
    }
    const bool current = _conn->completed(op, RingTag::generation_of(cqe.user_data));
    if (!current || _stopped) {
        // Of a closed connection: the current one may send (the buffer is free again) and
        // receive.
        if (_stopped || !_conn->is_open()) {
            return;
        }
        if (op == RingOp::send) {
            flush();
        } else if (op == RingOp::recv && (_state == State::handshaking || _state == State::open)) {
            _conn->arm_recv();
        }
        return;
    }
    switch (op) {
    case RingOp::connect:
        if (res != 0) {
            ++_stats.connect_failures;
            conn_failed(_conn->connect_error(res));
            return;
        }
        on_connected();
        return;
    case RingOp::send:
        on_send(res);
        return;
    default:
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
    if (_endpoint->due(now_ns)) {
        request_resolution();
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
    next = _endpoint->earliest(next);
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
    _conn->close();
    _state = State::down;
    _endpoint->stop();
    // The cancellations take effect now, not at the loop's next submission.
    io_uring_submit(_ring.raw());
}

} // namespace portcullis::deliver
