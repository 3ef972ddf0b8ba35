#include "portcullis/deliver/nats_sink.hh"

#include "forwarded_headers.hh"
#include "resolver.hh"
#include "tls_client.hh"

#include "portcullis/base/address.hh"
#include "portcullis/base/encoding.hh"
#include "portcullis/base/json_pointer.hh"
#include "portcullis/base/log.hh"
#include "portcullis/http/header.hh"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

namespace portcullis::deliver {

namespace {

constexpr int64_t min_wait_ns = 1'000;
constexpr size_t cipher_bytes = 16 * 1024;
constexpr size_t max_send = size_t(1) << 30;
// The reply token of a publish: its slot in the low bits, the slot's generation above.
constexpr unsigned slot_bits = 17;
constexpr uint64_t slot_mask = (uint64_t(1) << slot_bits) - 1;
constexpr uint64_t reply_sid = 1;

std::string errno_text(int err) {
    return std::strerror(err);
}

bool has_prefix_nocase(std::string_view s, std::string_view lower_prefix) {
    return s.size() >= lower_prefix.size() &&
           http::name_equals(s.substr(0, lower_prefix.size()), lower_prefix);
}

template <typename T>
std::string_view decimal(T v, char (&buf)[24]) {
    const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
    return {buf, size_t(end - buf)};
}

// A JSON string token from the server, decoded and made safe for a log line, at most 200 bytes.
std::string server_text(std::string_view raw) {
    std::string plain(raw.size(), '\0');
    const std::optional<size_t> n = base::json_unescape(raw, plain);
    if (!n) {
        return "?";
    }
    plain.resize(std::min<size_t>(*n, 200));
    return base::escape_text(plain);
}

} // namespace

std::string_view nats_outcome_name(NatsOutcome::Kind k) {
    switch (k) {
    case NatsOutcome::Kind::delivered:
        return "delivered";
    case NatsOutcome::Kind::retry:
        return "retry";
    case NatsOutcome::Kind::rejected:
        return "rejected";
    }
    return "retry";
}

NatsSink::NatsSink(io::Ring& ring, uint8_t slot, std::string name,
                   const config::NatsSinkConfig& cfg, NatsSinkOptions options)
    : _ring(ring), _slot(slot), _name(std::move(name)), _cfg(cfg), _options(std::move(options)),
      _parser(_options.limits) {}

NatsSink::~NatsSink() {
    if (_fd >= 0) {
        ::close(_fd);
    }
    if (_ssl != nullptr) {
        tls::Transport::close(_ssl);
    }
    if (_cipher_sending != nullptr) {
        _pool.release(_cipher_sending);
    }
    if (_cipher_queued != nullptr) {
        _pool.release(_cipher_queued);
    }
    if (_nkey) {
        OPENSSL_cleanse(_nkey->private_key.data(), _nkey->private_key.size());
    }
}

std::string NatsSink::init(int64_t now_ns) {
    _now_ns = now_ns;
    _where = "sinks." + _name + ".nats";
    if (_cfg.nkey_seed) {
        nats::NKey key;
        std::string why;
        if (!nats::nkey_from_seed(_cfg.nkey_seed->material, key, why)) {
            return _where + ".credentials.nkey_seed: secret " + _cfg.nkey_seed->origin + " " + why;
        }
        _nkey = std::move(key);
        // The seed is not needed any more: only the key stays in memory.
        OPENSSL_cleanse(_cfg.nkey_seed->material.data(), _cfg.nkey_seed->material.size());
        _cfg.nkey_seed->material.clear();
    }
    _tls_ctx_error =
        make_client_tls_context(std::nullopt, _options.system_ca_file, _where, _tls_ctx);
    if (_cfg.tls && !_tls_ctx_error.empty()) {
        return _tls_ctx_error;
    }
    _transport = std::make_unique<tls::Transport>(_pool);
    _rcap = nats::max_frame_bytes(_options.limits) + 2 * tls::Transport::plaintext_chunk;
    _rbuf = std::make_unique<char[]>(_rcap);
    // One slot more than max_in_flight: the one being reported is still held while done() may
    // start another.
    _publishes.resize(size_t(_cfg.max_in_flight) + 1);
    for (size_t i = _publishes.size(); i-- > 0;) {
        _free.push_back(uint32_t(i));
    }
    std::array<uint8_t, 12> random{};
    RAND_bytes(random.data(), random.size());
    _inbox = "_INBOX." + base::hex(random) + ".";
    uint64_t seed = 0;
    RAND_bytes(reinterpret_cast<uint8_t*>(&seed), sizeof seed);
    _random.seed(seed);

    std::vector<ResolvedAddress> literal = Resolver::numeric(_cfg.host, _cfg.port);
    if (!literal.empty()) {
        _addresses = std::move(literal);
        _host_is_ip = true;
    } else {
        _resolver = std::make_unique<Resolver>(_cfg.host, _cfg.port);
        io_uring_sqe* sqe = _ring.sqe();
        io_uring_prep_read(sqe, _resolver->event_fd(), &_event_value, sizeof _event_value, 0);
        sqe->user_data = pack(Op::event, 0);
        _event_armed = true;
        ++_ops;
        _resolving = true;
        _resolver->request();
    }
    connect(now_ns);
    return {};
}

void NatsSink::on_resolved(int64_t now_ns) {
    Resolver::Answer a;
    if (!_resolver->take(a)) {
        return;
    }
    _resolving = false;
    _next_resolve_ns = now_ns + _options.resolve_interval_ns;
    if (a.addresses.empty()) {
        _resolve_error = "resolve " + _cfg.host + ": " + a.error;
    } else {
        _resolve_error.clear();
        _addresses = std::move(a.addresses);
        _address_cursor = 0;
    }
    if (_state == State::resolving) {
        _state = State::idle;
        if (_addresses.empty()) {
            conn_failed(_resolve_error);
        } else {
            connect(now_ns);
        }
    }
}

int64_t NatsSink::backoff_ns() {
    _backoff_ns = _backoff_ns == 0 ? _options.reconnect_min_ns
                                   : std::min(_backoff_ns * 2, _options.reconnect_max_ns);
    // Full jitter, at least the minimum: many sinks (or appliances) do not come back in step.
    std::uniform_int_distribution<int64_t> pick(_options.reconnect_min_ns,
                                                std::max(_backoff_ns, _options.reconnect_min_ns));
    return pick(_random);
}

// ---------------------------------------------------------------------------------------------
// The connection

void NatsSink::connect(int64_t now_ns) {
    if (_stopped || _fd >= 0) {
        return;
    }
    if (_addresses.empty()) {
        if (_resolving) {
            _state = State::resolving;
            _connect_deadline_ns = now_ns + _options.connect_timeout_ns;
            return;
        }
        conn_failed(_resolve_error.empty() ? "no address for " + _cfg.host : _resolve_error);
        return;
    }
    const ResolvedAddress& a = _addresses[_address_cursor % _addresses.size()];
    const int fd = ::socket(a.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conn_failed("socket: " + errno_text(errno));
        return;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    _fd = fd;
    ++_generation;
    if (!_address) {
        _address = std::make_unique<ResolvedAddress>();
    }
    *_address = a;
    _state = State::connecting;
    _connect_deadline_ns = now_ns + _options.connect_timeout_ns;
    _parser.reset();
    _rlen = 0;
    _out.clear();
    _pings_out = 0;
    _doomed = false;
    _use_tls = false;
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_connect(sqe, fd, reinterpret_cast<const sockaddr*>(&_address->addr),
                          _address->len);
    sqe->user_data = pack(Op::connect, _generation);
    _connecting = true;
    ++_ops;
}

void NatsSink::arm_recv() {
    io_uring_sqe* sqe = _ring.sqe();
    if (_ssl != nullptr) {
        io_uring_prep_recv(sqe, _fd, _cbuf.get(), cipher_bytes, 0);
    } else {
        io_uring_prep_recv(sqe, _fd, _rbuf.get() + _rlen, _rcap - _rlen, 0);
    }
    sqe->user_data = pack(Op::recv, _generation);
    _receiving = true;
    ++_ops;
}

void NatsSink::flush() {
    if (_sending || _fd < 0) {
        return;
    }
    io_uring_sqe* sqe = nullptr;
    if (_ssl != nullptr) {
        if (!_out.empty() && tls::Transport::handshake_done(_ssl)) {
            if (!_transport->seal(_ssl, _out, _cipher_queued)) {
                doom("tls: out of memory");
                return;
            }
            _out.clear();
        }
        if (_cipher_queued == nullptr || _cipher_queued->size == 0) {
            return;
        }
        if (_cipher_sending != nullptr) {
            _pool.release(_cipher_sending);
        }
        _cipher_sending = _cipher_queued;
        _cipher_queued = nullptr;
        _sent = 0;
        sqe = _ring.sqe();
        io_uring_prep_send(sqe, _fd, _cipher_sending->data(),
                           std::min(_cipher_sending->size, max_send), MSG_NOSIGNAL);
    } else {
        if (_out.empty()) {
            return;
        }
        _wire.swap(_out);
        _out.clear();
        _sent = 0;
        sqe = _ring.sqe();
        io_uring_prep_send(sqe, _fd, _wire.data(), std::min(_wire.size(), max_send), MSG_NOSIGNAL);
    }
    sqe->user_data = pack(Op::send, _generation);
    _sending = true;
    ++_ops;
}

void NatsSink::on_send(int res) {
    const size_t total =
        _ssl != nullptr ? (_cipher_sending != nullptr ? _cipher_sending->size : 0) : _wire.size();
    if (res > 0) {
        _sent += size_t(res);
    }
    if (res < 0 && res != -EAGAIN && res != -EINTR) {
        conn_failed("send: " + errno_text(-res));
        return;
    }
    if (_sent < total) {
        const void* from = _ssl != nullptr
                               ? static_cast<const void*>(_cipher_sending->data() + _sent)
                               : static_cast<const void*>(_wire.data() + _sent);
        io_uring_sqe* sqe = _ring.sqe();
        io_uring_prep_send(sqe, _fd, from, std::min(total - _sent, max_send), MSG_NOSIGNAL);
        sqe->user_data = pack(Op::send, _generation);
        _sending = true;
        ++_ops;
        return;
    }
    if (_cipher_sending != nullptr) {
        _pool.release(_cipher_sending);
        _cipher_sending = nullptr;
    }
    flush();
    if (_doomed) {
        conn_failed(_doom_error);
    }
}

void NatsSink::on_recv(int res) {
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
            // A frame cut short (a server or a proxy that died mid-write), not a clean close.
            conn_failed("the server closed the connection in the middle of a frame (" +
                        std::to_string(_rlen) + " bytes of it received)");
            return;
        }
        conn_failed(_state == State::handshake
                        ? "the server closed the connection before its PONG (check the "
                          "credentials and the server's log)"
                        : "the server closed the connection");
        return;
    }
    if (_ssl == nullptr) {
        _rlen += size_t(res);
        absorb();
    } else {
        const bool was_done = tls::Transport::handshake_done(_ssl);
        const tls::Status s =
            _transport->receive(_ssl, std::string_view(_cbuf.get(), size_t(res)), _cipher_queued,
                                [&](std::string_view plain) {
                                    if (plain.size() > _rcap - _rlen) {
                                        ++_stats.protocol_errors;
                                        doom("a frame larger than the receive buffer");
                                        return false;
                                    }
                                    std::memcpy(_rbuf.get() + _rlen, plain.data(), plain.size());
                                    _rlen += plain.size();
                                    return absorb();
                                });
        if (s == tls::Status::failed) {
            conn_failed(client_tls_error(_ssl, *_transport, _cfg.host));
            return;
        }
        if (!_doomed && !was_done && tls::Transport::handshake_done(_ssl)) {
            ++_stats.tls_handshakes;
            send_handshake();
        }
        if (!_doomed && s == tls::Status::closed) {
            doom("the server closed the TLS session");
        }
    }
    if (!_doomed) {
        flush();
    }
    if (_doomed) {
        conn_failed(_doom_error);
        return;
    }
    arm_recv();
}

void NatsSink::doom(std::string what) {
    if (!_doomed) {
        _doomed = true;
        _doom_error = std::move(what);
    }
}

bool NatsSink::absorb() {
    std::string_view in(_rbuf.get(), _rlen);
    while (!_doomed) {
        const nats::Frame f = _parser.feed(in);
        if (f.op == nats::Op::need_more) {
            break;
        }
        if (f.op == nats::Op::error) {
            ++_stats.protocol_errors;
            doom("protocol error from the server: " + std::string(f.text));
            break;
        }
        on_frame(f);
        in.remove_prefix(f.consumed);
        if (_state == State::tls && !in.empty()) {
            // Bytes in clear after INFO, where the TLS handshake must start.
            ++_stats.protocol_errors;
            doom("protocol error: bytes in clear after INFO on a TLS connection");
        }
    }
    if (_doomed) {
        _rlen = 0;
        return false;
    }
    std::memmove(_rbuf.get(), in.data(), in.size());
    _rlen = in.size();
    return true;
}

void NatsSink::on_frame(const nats::Frame& f) {
    switch (f.op) {
    case nats::Op::info:
        if (_state == State::info) {
            on_info(f.text);
        }
        // Later INFOs (cluster changes, lame duck mode) change nothing here.
        return;
    case nats::Op::ping:
        if (_state == State::handshake || _state == State::ready) {
            _out.append("PONG\r\n");
        }
        return;
    case nats::Op::pong:
        if (_pings_out > 0) {
            --_pings_out;
        }
        if (_state == State::handshake) {
            became_ready();
        }
        return;
    case nats::Op::ok:
        return;
    case nats::Op::err: {
        ++_stats.server_errors;
        std::string what =
            "nats -ERR '" +
            base::escape_text(f.text.substr(0, std::min<size_t>(f.text.size(), 200))) + "'";
        if (has_prefix_nocase(f.text, "authorization") ||
            has_prefix_nocase(f.text, "authentication")) {
            what += " (check " + _where + ".credentials)";
        }
        doom(std::move(what));
        return;
    }
    case nats::Op::msg:
        if (f.sid == reply_sid && (_state == State::ready || _state == State::handshake)) {
            on_ack(f);
        }
        return;
    case nats::Op::need_more:
    case nats::Op::error:
        return;
    }
}

void NatsSink::on_info(std::string_view json) {
    std::string why;
    nats::ServerInfo info;
    if (!nats::parse_info(json, info, why)) {
        ++_stats.protocol_errors;
        doom("protocol error: " + why);
        return;
    }
    _info = std::move(info);
    _info_known = true;
    if (!_info.headers) {
        doom("the server does not support headers (nats-server 2.2 or later is needed)");
        return;
    }
    if (_nkey && _info.nonce.empty()) {
        doom("the server sent no nonce for the nkey to sign (is nkey authentication set up?)");
        return;
    }
    _use_tls = _cfg.tls || _info.tls_required;
    if (_cfg.tls && !_info.tls_required && !_info.tls_available) {
        doom("the url is tls:// but the server offers no TLS");
        return;
    }
    if (!_use_tls) {
        send_handshake();
        return;
    }
    if (!_tls_ctx) {
        doom("the server requires TLS and no TLS context could be made: " + _tls_ctx_error);
        return;
    }
    _ssl = _transport->connect(_tls_ctx.get());
    if (_ssl == nullptr) {
        doom("tls: out of memory");
        return;
    }
    set_client_peer(_ssl, _cfg.host, _host_is_ip);
    if (!_cbuf) {
        _cbuf = std::make_unique<char[]>(cipher_bytes);
    }
    _state = State::tls;
    // The ClientHello.
    const tls::Status s =
        _transport->receive(_ssl, {}, _cipher_queued, [](std::string_view) { return true; });
    if (s != tls::Status::ok) {
        doom(client_tls_error(_ssl, *_transport, _cfg.host));
    }
}

void NatsSink::send_handshake() {
    nats::ConnectOptions o;
    o.name = _options.client_name;
    o.version = _options.client_version;
    o.tls_required = _use_tls;
    std::string sig;
    if (!_cfg.user.empty()) {
        o.user = _cfg.user;
        o.pass = _cfg.password ? std::string_view(_cfg.password->material) : std::string_view();
    } else if (_cfg.token) {
        o.auth_token = _cfg.token->material;
    } else if (_nkey) {
        sig = nats::nkey_sign(*_nkey, _info.nonce);
        o.nkey = _nkey->public_key;
        o.sig = sig;
    }
    nats::append_connect(_out, o);
    _out.append("SUB ").append(_inbox).append("* 1\r\nPING\r\n");
    _pings_out = 1;
    _state = State::handshake;
}

void NatsSink::became_ready() {
    _state = State::ready;
    ++_stats.connects;
    _backoff_ns = 0;
    if (!_last_error.empty()) {
        base::LogLine(base::Level::info, "nats sink connected")
            .field("sink", _name)
            .field("server_id", _info.server_id)
            .write();
    }
    _last_error.clear();
    _next_ping_ns = _now_ns + _options.ping_interval_ns;
    // The publishes written while the connection was being made, less those that timed out or
    // that this server cannot take.
    for (uint32_t i = 0; i < _publishes.size(); ++i) {
        Publish& p = _publishes[i];
        if (!p.busy || p.finished || p.sent) {
            continue;
        }
        if (p.size > _info.max_payload) {
            finish(i, NatsOutcome::Kind::rejected,
                   "the job is " + std::to_string(p.size) +
                       " bytes with its headers, over the server's max_payload of " +
                       std::to_string(_info.max_payload));
            continue;
        }
        _out.append(std::string_view(_held).substr(p.held_offset, p.held_len));
        p.sent = true;
    }
    _held.clear();
}

void NatsSink::on_ack(const nats::Frame& f) {
    if (!f.subject.starts_with(_inbox)) {
        return;
    }
    const std::string_view token = f.subject.substr(_inbox.size());
    uint64_t n = 0;
    const auto r = std::from_chars(token.data(), token.data() + token.size(), n);
    if (r.ec != std::errc() || r.ptr != token.data() + token.size()) {
        return;
    }
    const auto index = uint32_t(n & slot_mask);
    const auto generation = uint32_t(n >> slot_bits);
    if (index >= _publishes.size()) {
        return;
    }
    Publish& p = _publishes[index];
    if (!p.busy || p.finished || p.generation != generation) {
        return; // late: the publish timed out (its retry carries the same Nats-Msg-Id)
    }
    if (!f.headers.empty()) {
        const nats::HeaderStatus st = nats::parse_header_status(f.headers);
        if (st.status == 503) {
            ++_stats.no_stream;
            finish(index, NatsOutcome::Kind::retry, "no JetStream stream for subject " + p.subject);
            return;
        }
        if (st.status != 0) {
            finish(index, NatsOutcome::Kind::retry,
                   "status " + std::to_string(st.status) + " " +
                       base::escape_text(
                           st.description.substr(0, std::min<size_t>(st.description.size(), 200))) +
                       " for subject " + p.subject);
            return;
        }
    }
    const nats::PubAck a = nats::parse_pub_ack(f.payload);
    switch (a.kind) {
    case nats::PubAck::Kind::stored:
        p.duplicate = a.duplicate;
        p.seq = a.seq;
        finish(index, NatsOutcome::Kind::delivered, {});
        return;
    case nats::PubAck::Kind::error:
        ++_stats.ack_errors;
        finish(index, NatsOutcome::Kind::retry,
               "JetStream error " + std::to_string(a.code) + ": " +
                   (a.description.empty() ? std::string("(no description)")
                                          : server_text(a.description)) +
                   " (subject " + p.subject + ")");
        return;
    case nats::PubAck::Kind::malformed:
        finish(index, NatsOutcome::Kind::retry,
               "not a JetStream acknowledgement (does a stream hold subject " + p.subject + "?)");
        return;
    }
}

void NatsSink::conn_failed(std::string_view what) {
    const bool was_ready = _state == State::ready;
    if (was_ready) {
        ++_stats.disconnects;
    } else {
        ++_stats.connect_failures;
    }
    const bool repeated = _last_error == what;
    _last_error = std::string(what);
    if (!repeated) {
        base::LogLine(base::Level::warn,
                      was_ready ? "nats sink disconnected" : "nats sink cannot connect")
            .field("sink", _name)
            .field("url", _cfg.url)
            .field("error", _last_error)
            .write();
    }
    if (!was_ready && _addresses.size() > 1) {
        ++_address_cursor;
    }
    close_conn();
    const std::string reason = "nats " + _cfg.url + ": " + _last_error;
    for (uint32_t i = 0; i < _publishes.size(); ++i) {
        Publish& p = _publishes[i];
        if (p.busy && !p.finished) {
            finish(i, NatsOutcome::Kind::retry, reason);
        }
    }
    _held.clear();
    _out.clear();
    _reconnect_at_ns = _now_ns + backoff_ns();
    if (_resolver != nullptr && !_resolving && !_stopped) {
        _resolving = true;
        _resolver->request();
    }
}

void NatsSink::cancel(Op op, uint16_t generation) {
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_cancel64(sqe, pack(op, generation), 0);
    sqe->user_data = pack(Op::cancel, 0);
    ++_ops;
}

void NatsSink::close_conn() {
    _state = State::idle;
    _doomed = false;
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
    // Prepared SQEs on this descriptor reach the kernel before it is closed (and its number
    // possibly reused); those in flight hold the socket until they complete.
    if (io_uring_sq_ready(_ring.raw()) > 0) {
        io_uring_submit(_ring.raw());
    }
    ::close(_fd);
    _fd = -1;
    if (_ssl != nullptr) {
        tls::Transport::close(_ssl);
        _ssl = nullptr;
    }
    if (_cipher_queued != nullptr) {
        _pool.release(_cipher_queued);
        _cipher_queued = nullptr;
    }
    // _cipher_sending and _wire may still be read by a send in flight: released when it is in.
    _rlen = 0;
    _parser.reset();
}

// ---------------------------------------------------------------------------------------------
// Publishes

bool NatsSink::write_publish(const NatsDelivery& d, uint32_t index, std::string& out,
                             std::string& error) {
    _fields.clear();
    if (!append_forwarded_headers(d.record, d.headers, {}, _fields, error)) {
        error = "the job cannot be published: " + error;
        return false;
    }
    _hdr.assign("NATS/1.0\r\n");
    for (const http::Header& h : _fields) {
        // Nats-* fields steer the server (Nats-Msg-Id, Nats-Expected-Stream): a sender's would
        // choose the dedup key or fail the publish, so they are never forwarded.
        if (has_prefix_nocase(h.name, "nats-")) {
            continue;
        }
        if (std::string why = nats::header_refusal(h.name, h.value); !why.empty()) {
            error = "the job cannot be published: " + why;
            return false;
        }
        _hdr.append(h.name).append(": ").append(h.value).append("\r\n");
    }
    char num[24];
    char received_at[24];
    _hdr.append("Portcullis-Job-Id: ").append(d.job_id).append("\r\n");
    _hdr.append("Portcullis-Attempt: ").append(decimal(d.attempt, num)).append("\r\n");
    _hdr.append("Portcullis-Route: ").append(d.route).append("\r\n");
    _hdr.append("Portcullis-Received-At: ")
        .append(base::format_rfc3339(d.received_at_unix_ns, received_at))
        .append("\r\n");
    _hdr.append("Nats-Msg-Id: ");
    if (d.record != nullptr && d.record->keys.has_dedup) {
        std::array<uint8_t, 16> key{};
        for (size_t i = 0; i < 8; ++i) {
            key[i] = uint8_t(d.record->keys.dedup_key.hi >> (56 - 8 * i));
            key[8 + i] = uint8_t(d.record->keys.dedup_key.lo >> (56 - 8 * i));
        }
        char hex[32];
        base::hex_encode(key, hex);
        _hdr.append(hex, sizeof hex);
    } else {
        _hdr.append(d.job_id);
    }
    _hdr.append("\r\n\r\n");
    const size_t total = _hdr.size() + d.body.size();
    Publish& p = _publishes[index];
    p.size = total;
    if (_info_known && total > _info.max_payload) {
        error = "the job is " + std::to_string(total) +
                " bytes with its headers, over the server's max_payload of " +
                std::to_string(_info.max_payload);
        return false;
    }
    // The subject: the template with {route} replaced.
    p.subject.clear();
    const std::string_view tmpl = _cfg.subject;
    constexpr std::string_view placeholder = "{route}";
    for (size_t at = 0; at < tmpl.size();) {
        const size_t next = tmpl.find(placeholder, at);
        if (next == std::string_view::npos) {
            p.subject.append(tmpl.substr(at));
            break;
        }
        p.subject.append(tmpl.substr(at, next - at)).append(d.route);
        at = next + placeholder.size();
    }
    const uint64_t token = uint64_t(p.generation) << slot_bits | index;
    p.held_offset = out.size();
    out.append("HPUB ").append(p.subject).append(" ").append(_inbox);
    out.append(decimal(token, num)).append(" ");
    out.append(decimal(_hdr.size(), num)).append(" ");
    out.append(decimal(total, num)).append("\r\n");
    out.append(_hdr);
    out.append(reinterpret_cast<const char*>(d.body.data()), d.body.size());
    out.append("\r\n");
    p.held_len = out.size() - p.held_offset;
    return true;
}

bool NatsSink::start(const NatsDelivery& d, uint64_t cookie, int64_t now_ns, std::string& error) {
    error.clear();
    _now_ns = now_ns;
    if (_stopped) {
        error = "the sink is stopping";
        ++_stats.refused;
        return false;
    }
    if (!has_room() || _free.empty()) {
        error = "all " + std::to_string(_cfg.max_in_flight) + " publishes are in flight";
        ++_stats.refused;
        return false;
    }
    const uint32_t index = _free.back();
    Publish& p = _publishes[index];
    ++p.generation;
    const bool ready = _state == State::ready;
    const bool down = _state == State::idle;
    std::string& target = ready ? _out : _held;
    const size_t mark = target.size();
    if (!write_publish(d, index, target, error)) {
        target.resize(mark);
        ++_stats.refused;
        return false;
    }
    _free.pop_back();
    p.busy = true;
    p.finished = false;
    p.sent = ready;
    p.cookie = cookie;
    p.started_ns = now_ns;
    p.deadline_ns = now_ns + _options.publish_timeout_ns;
    p.finished_ns = 0;
    p.duplicate = false;
    p.seq = 0;
    p.error.clear();
    ++_in_flight;
    ++_stats.started;
    if (down) {
        // Down (between attempts): fail at once, so that the engine's breaker sees it.
        target.resize(mark);
        ++_stats.failed_fast;
        finish(index, NatsOutcome::Kind::retry,
               "not connected to " + _cfg.url + ": " +
                   (_last_error.empty() ? std::string("connecting") : _last_error));
        return true;
    }
    if (ready) {
        flush();
        if (_doomed) {
            conn_failed(_doom_error);
        }
    }
    return true;
}

void NatsSink::finish(uint32_t index, NatsOutcome::Kind kind, std::string_view error) {
    Publish& p = _publishes[index];
    if (!p.busy || p.finished) {
        return;
    }
    p.finished = true;
    p.finished_ns = _now_ns;
    p.kind = kind;
    p.error.assign(error);
    switch (kind) {
    case NatsOutcome::Kind::delivered:
        ++_stats.delivered;
        _stats.duplicates += p.duplicate ? 1 : 0;
        break;
    case NatsOutcome::Kind::retry:
        ++_stats.retried;
        break;
    case NatsOutcome::Kind::rejected:
        ++_stats.rejected;
        break;
    }
    --_in_flight;
    _ready.push_back(index);
    if (!_in_cqe) {
        post_report();
    }
}

void NatsSink::post_report() {
    if (_report_posted) {
        return;
    }
    // Found by tick() or start(): reported through the ring, so that every outcome reaches the
    // caller from on_cqe().
    _report_posted = true;
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_nop(sqe);
    sqe->user_data = pack(Op::report, 0);
    ++_ops;
}

void NatsSink::handle(const io_uring_cqe& cqe, int64_t now_ns) {
    _now_ns = now_ns;
    --_ops;
    const auto op = static_cast<Op>((cqe.user_data >> 40) & 0xff);
    const auto generation = static_cast<uint16_t>(cqe.user_data >> 24);
    const int res = cqe.res;
    switch (op) {
    case Op::cancel:
        return;
    case Op::report:
        _report_posted = false;
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
        break;
    case Op::send:
        _sending = false;
        break;
    case Op::recv:
        _receiving = false;
        break;
    }
    if (generation != _generation || _fd < 0) {
        // The connection that asked is closed.
        if (!_sending && _cipher_sending != nullptr) {
            _pool.release(_cipher_sending);
            _cipher_sending = nullptr;
        }
        return;
    }
    switch (op) {
    case Op::connect:
        if (res == 0) {
            _state = State::info;
            arm_recv();
        } else {
            conn_failed(
                "connect " +
                base::PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&_address->addr))
                    .to_string() +
                ": " + errno_text(-res));
        }
        return;
    case Op::send:
        on_send(res);
        return;
    case Op::recv:
        on_recv(res);
        return;
    default:
        return;
    }
}

// ---------------------------------------------------------------------------------------------

void NatsSink::tick(int64_t now_ns) {
    _now_ns = now_ns;
    if (_stopped) {
        return;
    }
    for (uint32_t i = 0; i < _publishes.size(); ++i) {
        Publish& p = _publishes[i];
        if (!p.busy || p.finished || now_ns < p.deadline_ns) {
            continue;
        }
        ++_stats.timeouts;
        finish(i, NatsOutcome::Kind::retry,
               "timeout after " + std::to_string(_options.publish_timeout_ns / base::ns_per_ms) +
                   (p.sent ? " ms waiting for the acknowledgement"
                           : " ms waiting for the connection"));
    }
    switch (_state) {
    case State::idle:
        if (now_ns >= _reconnect_at_ns && !_connecting && !_sending && !_receiving) {
            connect(now_ns);
        }
        break;
    case State::resolving:
    case State::connecting:
    case State::info:
    case State::tls:
    case State::handshake:
        if (now_ns >= _connect_deadline_ns) {
            conn_failed("no usable connection within " +
                        std::to_string(_options.connect_timeout_ns / base::ns_per_ms) + " ms");
        }
        break;
    case State::ready:
        if (now_ns >= _next_ping_ns) {
            if (_pings_out > 0) {
                conn_failed("no PONG within " +
                            std::to_string(_options.ping_interval_ns / base::ns_per_ms) +
                            " ms: the connection is dead");
                break;
            }
            _out.append("PING\r\n");
            ++_pings_out;
            ++_stats.pings_sent;
            _next_ping_ns = now_ns + _options.ping_interval_ns;
            flush();
            if (_doomed) {
                conn_failed(_doom_error);
            }
        }
        break;
    }
    if (_resolver != nullptr && !_resolving && now_ns >= _next_resolve_ns) {
        _resolving = true;
        _resolver->request();
    }
}

int64_t NatsSink::wait_limit_ns(int64_t now_ns, int64_t limit) const {
    int64_t next = now_ns + limit;
    for (const Publish& p : _publishes) {
        if (p.busy && !p.finished) {
            next = std::min(next, p.deadline_ns);
        }
    }
    if (!_stopped) {
        switch (_state) {
        case State::idle:
            next = std::min(next, _reconnect_at_ns);
            break;
        case State::ready:
            next = std::min(next, _next_ping_ns);
            break;
        default:
            next = std::min(next, _connect_deadline_ns);
            break;
        }
        if (_resolver != nullptr && !_resolving) {
            next = std::min(next, _next_resolve_ns);
        }
    }
    return std::clamp<int64_t>(next - now_ns, min_wait_ns, limit);
}

void NatsSink::stop() {
    if (_stopped) {
        return;
    }
    _stopped = true;
    _ready.clear();
    _free.clear();
    for (size_t i = _publishes.size(); i-- > 0;) {
        _publishes[i].busy = false;
        _free.push_back(uint32_t(i));
    }
    _in_flight = 0;
    close_conn();
    if (_event_armed) {
        cancel(Op::event, 0);
    }
    io_uring_submit(_ring.raw());
}

} // namespace portcullis::deliver
