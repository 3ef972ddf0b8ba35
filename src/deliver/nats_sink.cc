#include "portcullis/deliver/nats_sink.hh"

#include "forwarded_headers.hh"
#include "ring_connection.hh"

#include "portcullis/base/encoding.hh"
#include "portcullis/base/json_pointer.hh"
#include "portcullis/base/log.hh"
#include "portcullis/http/header.hh"

#include <openssl/mem.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace portcullis::deliver {

namespace {

constexpr int64_t min_wait_ns = 1'000;
// The reply token of a publish: its slot in the low bits, the slot's generation above.
constexpr unsigned slot_bits = 17;
constexpr uint64_t slot_mask = (uint64_t(1) << slot_bits) - 1;
constexpr uint64_t reply_sid = 1;

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
    return outcome_kind_name(k);
}

NatsSink::NatsSink(io::Ring& ring, uint8_t slot, std::string name,
                   const config::NatsSinkConfig& cfg, NatsSinkOptions options)
    : _ring(ring), _slot(slot), _name(std::move(name)), _cfg(cfg), _options(std::move(options)),
      _endpoint(std::make_unique<Endpoint>(_ring, RingTag{nats_tag, _slot}, _cfg.host, _cfg.port,
                                           _options.resolve_interval_ns, _ops)),
      _conn(std::make_unique<RingConnection>(_ring, _pool, RingTag{nats_tag, _slot}, _ops)),
      _backoff(
          std::make_unique<Backoff>(_options.reconnect_min_ns, _options.reconnect_max_ns, true)),
      _parser(_options.limits) {}

NatsSink::~NatsSink() {
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
    _tls_ctx_error = _conn->init_tls(_cfg.ca, _options.system_ca_file, _where);
    if (_cfg.tls && !_tls_ctx_error.empty()) {
        return _tls_ctx_error;
    }
    if (!_conn->init(nats::max_frame_bytes(_options.limits) + 2 * tls::Transport::plaintext_chunk)
             .empty()) {
        return _where + ": out of memory";
    }
    // One slot more than max_in_flight: the one being reported is still held while done() may
    // start another.
    _publishes.resize(size_t(_cfg.max_in_flight) + 1);
    for (size_t i = _publishes.size(); i-- > 0;) {
        _free.push_back(uint32_t(i));
    }
    std::array<uint8_t, 12> random{};
    RAND_bytes(random.data(), random.size());
    _inbox = "_INBOX." + base::hex(random) + ".";
    _endpoint->init();
    _endpoint->request();
    connect(now_ns);
    return {};
}

void NatsSink::on_resolved(int res, int64_t now_ns) {
    if (!_endpoint->on_event(res, now_ns)) {
        return;
    }
    if (_state == State::resolving) {
        _state = State::idle;
        if (_endpoint->addresses().empty()) {
            conn_failed(_endpoint->error());
        } else {
            connect(now_ns);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The connection

void NatsSink::connect(int64_t now_ns) {
    if (_stopped || _conn->is_open()) {
        return;
    }
    if (_endpoint->addresses().empty()) {
        if (_endpoint->resolving()) {
            _state = State::resolving;
            _connect_deadline_ns = now_ns + _options.connect_timeout_ns;
            return;
        }
        conn_failed(_endpoint->error().empty() ? "no address for " + _cfg.host
                                               : _endpoint->error());
        return;
    }
    if (std::string err = _conn->open(_endpoint->current()); !err.empty()) {
        conn_failed(err);
        return;
    }
    _state = State::connecting;
    _connect_deadline_ns = now_ns + _options.connect_timeout_ns;
    _parser.reset();
    _conn->clear_output();
    _pings_out = 0;
    _doomed = false;
    _use_tls = false;
}

void NatsSink::flush() {
    std::string error;
    switch (_conn->flush(true, error)) {
    case RingConnection::Flush::idle:
        return;
    case RingConnection::Flush::sent:
        ++_stats.sends;
        return;
    case RingConnection::Flush::failed:
        doom(std::move(error));
        return;
    }
}

void NatsSink::on_send(int res) {
    std::string error;
    switch (_conn->on_sent(res, error)) {
    case RingConnection::Sent::more:
        return;
    case RingConnection::Sent::failed:
        conn_failed(error);
        return;
    case RingConnection::Sent::done:
        flush();
        if (_doomed) {
            conn_failed(_doom_error);
        }
        return;
    }
}

void NatsSink::on_recv(int res) {
    const bool was_tls = _conn->tls();
    const RingConnection::Received r = _conn->on_received(res, [&] { return absorb(); });
    switch (r.kind) {
    case RingConnection::Received::Kind::again:
        return;
    case RingConnection::Received::Kind::error:
        conn_failed(r.error);
        return;
    case RingConnection::Received::Kind::eof:
        if (!_conn->received().empty()) {
            conn_failed(_conn->closed_mid("frame"));
            return;
        }
        conn_failed(_state == State::handshake
                        ? "the server closed the connection before its PONG (check the "
                          "credentials and the server's log)"
                        : "the server closed the connection");
        return;
    case RingConnection::Received::Kind::data:
        break;
    }
    if (was_tls) {
        if (r.overflow) {
            ++_stats.protocol_errors;
            doom("a frame larger than the receive buffer");
        }
        if (r.tls == tls::Status::failed) {
            conn_failed(_conn->tls_error(_cfg.host));
            return;
        }
        if (!_doomed && r.handshake_completed) {
            ++_stats.tls_handshakes;
            send_handshake();
        }
        if (!_doomed && r.tls == tls::Status::closed) {
            doom("the server closed the TLS session");
        }
    }
    if (!_doomed) {
        // Ready: what the acknowledgements of this turn let the engine start leaves in one send
        // after the turn (a PONG with it); before that, the handshake's replies go at once.
        if (_state == State::ready) {
            _conn->flush_after_turn();
        } else {
            flush();
        }
    }
    if (_doomed) {
        conn_failed(_doom_error);
        return;
    }
    _conn->arm_recv();
}

void NatsSink::doom(std::string what) {
    if (!_doomed) {
        _doomed = true;
        _doom_error = std::move(what);
    }
}

bool NatsSink::absorb() {
    std::string_view in = _conn->received();
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
        _conn->clear_received();
        return false;
    }
    _conn->consume(_conn->received().size() - in.size());
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
            _conn->output().append("PONG\r\n");
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
    if (!_conn->has_tls_context()) {
        doom("the server requires TLS and no TLS context could be made: " + _tls_ctx_error);
        return;
    }
    std::string err = _conn->start_tls(_cfg.host, _endpoint->host_is_ip());
    if (_conn->tls()) {
        _state = State::tls;
    }
    if (!err.empty()) {
        doom(std::move(err));
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
    _scratch.clear();
    nats::append_connect(_scratch, o);
    _conn->output().append(_scratch).append("SUB ").append(_inbox).append("* 1\r\nPING\r\n");
    OPENSSL_cleanse(_scratch.data(), _scratch.size()); // the credentials
    _pings_out = 1;
    _state = State::handshake;
}

void NatsSink::became_ready() {
    _state = State::ready;
    ++_stats.connects;
    _backoff->reset();
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
        _conn->output().append(std::string_view(_held).substr(p.held_offset, p.held_len));
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
    if (!was_ready && _endpoint->addresses().size() > 1) {
        _endpoint->set_cursor(_endpoint->cursor() + 1);
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
    _conn->clear_output();
    _reconnect_at_ns = _now_ns + _backoff->next_ns();
    _endpoint->request();
}

void NatsSink::close_conn() {
    _state = State::idle;
    _doomed = false;
    if (!_conn->is_open()) {
        return;
    }
    _conn->close();
    _parser.reset();
}

// ---------------------------------------------------------------------------------------------
// Publishes

template <typename Out>
bool NatsSink::write_publish(const NatsDelivery& d, uint32_t index, Out& out, std::string& error) {
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
    out.append(std::string_view(reinterpret_cast<const char*>(d.body.data()), d.body.size()));
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
    RingConnection::Output out = _conn->output();
    const size_t mark = ready ? out.size() : _held.size();
    if (ready ? !write_publish(d, index, out, error) : !write_publish(d, index, _held, error)) {
        if (ready) {
            out.resize(mark);
        } else {
            _held.resize(mark);
        }
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
        _held.resize(mark);
        ++_stats.failed_fast;
        finish(index, NatsOutcome::Kind::retry,
               "not connected to " + _cfg.url + ": " +
                   (_last_error.empty() ? std::string("connecting") : _last_error));
        return true;
    }
    if (ready) {
        // Sent at once, the first publish of each turn went alone, and nats-server (the side that
        // sets the pace) spent ~45% more CPU per message than on batches (bench/brokers/run).
        _conn->flush_after_turn();
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
    post_nop(_ring, RingTag{nats_tag, _slot}, RingOp::report, _ops);
}

void NatsSink::handle(const io_uring_cqe& cqe, int64_t now_ns) {
    _now_ns = now_ns;
    --_ops;
    const RingOp op = RingTag::op_of(cqe.user_data);
    const int res = cqe.res;
    if (op == RingOp::report) {
        _report_posted = false;
        return;
    }
    if (op == RingOp::flush) {
        _conn->flush_nop_done();
        if (!_stopped && _state == State::ready) {
            flush();
            if (_doomed) {
                conn_failed(_doom_error);
            }
        }
        return;
    }
    if (op == RingOp::event) {
        on_resolved(res, now_ns);
        return;
    }
    if (op != RingOp::connect && op != RingOp::send && op != RingOp::recv) {
        return; // a cancel's
    }
    if (!_conn->completed(op, RingTag::generation_of(cqe.user_data))) {
        return; // the connection that asked is closed
    }
    switch (op) {
    case RingOp::connect:
        if (res == 0) {
            _state = State::info;
            _conn->arm_recv();
        } else {
            conn_failed(_conn->connect_error(res));
        }
        return;
    case RingOp::send:
        on_send(res);
        return;
    default:
        on_recv(res);
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
        if (now_ns >= _reconnect_at_ns && !_conn->busy()) {
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
            _conn->output().append("PING\r\n");
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
    if (_endpoint->due(now_ns)) {
        _endpoint->request();
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
        next = _endpoint->earliest(next);
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
    _endpoint->stop();
    io_uring_submit(_ring.raw());
}

} // namespace portcullis::deliver
