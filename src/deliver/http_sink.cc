#include "portcullis/deliver/http_sink.hh"

#include "forwarded_headers.hh"
#include "ring_connection.hh"
#include "tls_client.hh"

#include "portcullis/base/address.hh"
#include "portcullis/http/client.hh"
#include "portcullis/http/header_policy.hh"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

namespace portcullis::deliver {

namespace {

constexpr int64_t min_wait_ns = 1'000;
// The response's head may take limits.header_bytes; a TLS record's plaintext (16 KiB) or a
// receive comes on top of what is pending.
constexpr size_t recv_bytes = 32 * 1024;
constexpr size_t cipher_bytes = 16 * 1024;
constexpr size_t max_response_fields = 64;
// One send moves at most this much (the kernel's limit on a single call is about 2 GiB).
constexpr size_t max_send = size_t(1) << 30;
// Room for the request line, Host, Content-Length, Connection and the Portcullis-* and webhook-*
// fields, on top of the forwarded and configured fields.
constexpr size_t head_overhead = 1024;

std::string errno_text(int err) {
    return std::strerror(err);
}

std::string address_text(const sockaddr_storage& ss) {
    return base::PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss)).to_string();
}

std::string_view status_error(uint16_t status) {
    if (status >= 300 && status < 400) {
        return "redirect: not followed (check the sink's url)";
    }
    if (status == 408) {
        return "status 408 (request timeout)";
    }
    if (status == 429) {
        return "status 429 (too many requests)";
    }
    if (status >= 500) {
        return "status 5xx (server error)";
    }
    return "status 4xx (refused by the application)";
}

} // namespace

// The Endpoint's read of the resolver's eventfd and its cancel are tagged with RingOp.
static_assert(uint8_t(RingOp::event) == 4 && uint8_t(RingOp::cancel) == 6);

struct HttpSink::Request {
    bool busy = false;
    bool abandoned = false; // stop(): nothing is reported
    uint16_t generation = 0;
    uint64_t cookie = 0;
    int64_t started_ns = 0;
    int64_t deadline_ns = 0;
    int64_t finished_ns = 0;
    std::string head; // the request head, written by start()
    size_t head_len = 0;
    std::span<const uint8_t> body;
    int64_t conn = -1;      // the connection it is on
    uint32_t send_refs = 0; // sends in flight that read head or body
    bool waiting = false;   // for the first resolution
    bool reused = false;
    bool retried_fresh = false;
    bool finished = false;
    bool report_posted = false;
    std::string_view phase = "connecting"; // for the timeout's message
    // Outcome.
    HttpOutcome::Kind kind = HttpOutcome::Kind::retry;
    uint16_t status = 0;
    int64_t retry_after_ns = -1;
    std::string error;
    std::array<char, body_head_bytes> body_head{};
    size_t body_head_len = 0;
};

struct HttpSink::Conn {
    Conn() : parser(fields, http::Limits{}) {}

    bool busy = false;
    uint16_t generation = 0;
    int fd = -1;
    SSL* ssl = nullptr;
    bool connected = false;
    bool ready = false; // connected, and the TLS handshake done
    bool reusable = true;
    bool doomed = false; // close once the call that found out returns
    std::string doom_error;
    uint32_t served = 0; // responses completed on it
    int64_t request = -1;
    int64_t send_request = -1; // whose head and body the send in flight reads
    bool connecting = false;   // operations in flight
    bool sending = false;
    bool receiving = false;
    size_t address_index = 0;
    size_t tries = 0;
    ResolvedAddress address; // what connect() was given: the kernel reads it at submission
    // Plain sends: head then body from the request's memory.
    std::array<iovec, 2> iov{};
    msghdr msg{};
    size_t sent = 0; // of head + body (plain) or of out_sending (TLS)
    // TLS sends: ciphertext in pool buffers, one in flight, the next one gathering.
    base::Buffer* out_sending = nullptr;
    base::Buffer* out_queued = nullptr;
    // Receives.
    std::unique_ptr<char[]> rbuf = std::make_unique<char[]>(recv_bytes); // plaintext
    size_t rlen = 0;
    std::unique_ptr<char[]> cbuf; // TLS: ciphertext
    bool got_byte = false;        // of the current request's response
    bool response_done = false;
    bool keep_alive = false;
    std::array<http::Header, max_response_fields> fields;
    http::ResponseParser parser;
};

std::string_view http_outcome_name(HttpOutcome::Kind k) {
    return outcome_kind_name(k);
}

HttpSink::HttpSink(io::Ring& ring, uint8_t slot, std::string name,
                   const config::HttpSinkConfig& cfg, HttpSinkOptions options)
    : _ring(ring), _slot(slot), _name(std::move(name)), _cfg(cfg), _options(std::move(options)),
      _endpoint(std::make_unique<Endpoint>(_ring, RingTag{http_tag, _slot}, _cfg.host, _cfg.port,
                                           _options.resolve_interval_ns, _ops)) {}

HttpSink::~HttpSink() {
    for (auto& c : _conns) {
        if (c->fd >= 0) {
            ::close(c->fd);
        }
        if (c->ssl != nullptr) {
            tls::Transport::close(c->ssl);
        }
        if (c->out_sending != nullptr) {
            _pool.release(c->out_sending);
        }
        if (c->out_queued != nullptr) {
            _pool.release(c->out_queued);
        }
    }
}

std::string HttpSink::init(int64_t now_ns) {
    const std::string where = "sinks." + _name + ".http";
    if (!_cfg.sign_secrets.empty()) {
        std::string why;
        _signer = verify::make_standard_signer(_cfg.sign_secrets, why);
        if (!_signer) {
            return where + ".sign.secrets: " + why;
        }
    }
    if (_cfg.tls) {
        if (std::string err =
                make_client_tls_context(_cfg.ca, _options.system_ca_file, where, _tls_ctx);
            !err.empty()) {
            return err;
        }
        _transport = std::make_unique<tls::Transport>(_pool);
    }
    _endpoint->init();
    if (_endpoint->host_is_ip()) {
        _ever_resolved = true;
        return {};
    }
    request_resolution(now_ns);
    return {};
}

void HttpSink::request_resolution(int64_t now_ns) {
    if (_endpoint->request()) {
        _last_resolve_ns = now_ns;
        ++_stats.resolutions;
    }
}

void HttpSink::on_resolved(int res, int64_t now_ns) {
    if (!_endpoint->on_event(res, now_ns)) {
        return;
    }
    if (!_endpoint->error().empty()) {
        ++_stats.resolve_failures; // the addresses of the last good answer stay in use
    } else {
        _ever_resolved = true;
    }
    std::vector<uint32_t> waiting;
    waiting.swap(_waiting);
    for (uint32_t index : waiting) {
        Request& r = *_requests[index];
        r.waiting = false;
        if (r.finished) {
            continue;
        }
        dispatch(index, true);
    }
}

// ---------------------------------------------------------------------------------------------
// The request head

bool HttpSink::build_head(const HttpDelivery& d, Request& r, std::string& error) {
    _fields.clear();
    const bool signing = _signer.has_value();
    if (!append_forwarded_headers(d.record, d.headers,
                                  {.replaced = _cfg.headers, .drop_webhook_fields = signing},
                                  _fields, error)) {
        return false;
    }
    size_t bytes = head_overhead + _cfg.path_and_query.size() + _cfg.host.size();
    for (const http::Header& h : _fields) {
        bytes += h.name.size() + h.value.size() + 4;
    }
    for (const config::SinkHeader& h : _cfg.headers) {
        _fields.push_back({h.name, h.value});
        bytes += h.name.size() + h.value.size() + 4;
    }
    char attempt[16];
    const auto attempt_end = std::to_chars(attempt, attempt + sizeof attempt, d.attempt).ptr;
    char received_at[24];
    _fields.push_back({"Portcullis-Job-Id", d.job_id});
    _fields.push_back({"Portcullis-Attempt", {attempt, size_t(attempt_end - attempt)}});
    _fields.push_back({"Portcullis-Route", d.route});
    _fields.push_back(
        {"Portcullis-Received-At", base::format_rfc3339(d.received_at_unix_ns, received_at)});
    bytes += d.job_id.size() + d.route.size();
    char timestamp[24];
    std::array<char, verify::StandardSigner::signature_size> signature{};
    if (signing) {
        const int64_t now_s = _options.unix_now_ns() / base::ns_per_s;
        const auto ts_end = std::to_chars(timestamp, timestamp + sizeof timestamp, now_s).ptr;
        const std::string_view body(reinterpret_cast<const char*>(d.body.data()), d.body.size());
        const size_t n = _signer->sign(d.job_id, now_s, body, signature);
        _fields.push_back({"webhook-id", d.job_id});
        _fields.push_back({"webhook-timestamp", {timestamp, size_t(ts_end - timestamp)}});
        _fields.push_back({"webhook-signature", {signature.data(), n}});
        bytes += d.job_id.size();
    }
    const http::OutgoingRequest out{.method = _cfg.method,
                                    .target = _cfg.path_and_query,
                                    .host = _cfg.host,
                                    .port = _cfg.port,
                                    .tls = _cfg.tls,
                                    .headers = _fields,
                                    .content_length = d.body.size()};
    if (r.head.size() < bytes) {
        r.head.resize(bytes);
    }
    r.head_len = http::write_request(r.head, out);
    if (r.head_len == 0) {
        const std::string_view why = http::request_refusal(out);
        // Which field, by name only: values may be anything a sender put there.
        std::string field;
        for (const http::Header& h : _fields) {
            http::OutgoingRequest one = out;
            one.headers = std::span<const http::Header>(&h, 1);
            if (!http::request_refusal(one).empty()) {
                field = std::string(h.name.substr(0, 64));
                break;
            }
        }
        error = "the request cannot be written: " +
                std::string(why.empty() ? std::string_view("head too large") : why) +
                (field.empty() ? "" : " (field " + field + ")");
        return false;
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// Slots

uint32_t HttpSink::acquire_request() {
    uint32_t index;
    if (_free_requests.empty()) {
        index = uint32_t(_requests.size());
        _requests.push_back(std::make_unique<Request>());
    } else {
        index = _free_requests.back();
        _free_requests.pop_back();
    }
    Request& r = *_requests[index];
    std::string head = std::move(r.head);
    std::string error = std::move(r.error);
    const uint16_t generation = r.generation;
    r = Request{};
    r.head = std::move(head);
    r.error = std::move(error);
    r.error.clear();
    r.generation = uint16_t(generation + 1);
    r.busy = true;
    return index;
}

void HttpSink::release_request(uint32_t index) {
    Request& r = *_requests[index];
    r.busy = false;
    _free_requests.push_back(index);
}

uint32_t HttpSink::acquire_conn() {
    uint32_t index;
    if (_free_conns.empty()) {
        index = uint32_t(_conns.size());
        _conns.push_back(std::make_unique<Conn>());
    } else {
        index = _free_conns.back();
        _free_conns.pop_back();
    }
    Conn& c = *_conns[index];
    c.busy = true;
    c.generation = uint16_t(c.generation + 1);
    c.fd = -1;
    c.ssl = nullptr;
    c.connected = false;
    c.ready = false;
    c.reusable = true;
    c.doomed = false;
    c.doom_error.clear();
    c.served = 0;
    c.request = -1;
    c.send_request = -1;
    c.sent = 0;
    c.rlen = 0;
    c.got_byte = false;
    c.response_done = false;
    c.keep_alive = false;
    c.parser.reset();
    return index;
}

void HttpSink::maybe_release_conn(uint32_t index) {
    Conn& c = *_conns[index];
    if (!c.busy || c.fd >= 0 || c.connecting || c.sending || c.receiving) {
        return;
    }
    if (c.out_sending != nullptr) {
        _pool.release(c.out_sending);
        c.out_sending = nullptr;
    }
    c.busy = false;
    _free_conns.push_back(index);
}

void HttpSink::cancel(Op op, uint16_t generation, uint32_t index) {
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_cancel64(sqe, pack(op, generation, index), 0);
    sqe->user_data = pack(Op::cancel, 0, 0);
    ++_ops;
}

void HttpSink::close_conn(uint32_t index) {
    Conn& c = *_conns[index];
    if (c.fd < 0) {
        return;
    }
    if (c.connecting) {
        cancel(Op::connect, c.generation, index);
    }
    if (c.sending) {
        cancel(Op::send, c.generation, index);
    }
    if (c.receiving) {
        cancel(Op::recv, c.generation, index);
    }
    // SQEs already prepared on this descriptor go to the kernel before it is closed (and its
    // number possibly reused); those in flight hold the socket until they complete.
    if (io_uring_sq_ready(_ring.raw()) > 0) {
        io_uring_submit(_ring.raw());
    }
    ::close(c.fd);
    c.fd = -1;
    --_open;
    if (c.ssl != nullptr) {
        tls::Transport::close(c.ssl);
        c.ssl = nullptr;
    }
    if (c.out_queued != nullptr) {
        _pool.release(c.out_queued);
        c.out_queued = nullptr;
    }
    c.ready = false;
    c.connected = false;
    if (c.request >= 0) {
        _requests[size_t(c.request)]->conn = -1;
        c.request = -1;
    }
    maybe_release_conn(index);
}

// ---------------------------------------------------------------------------------------------
// Deliveries

bool HttpSink::start(const HttpDelivery& d, uint64_t cookie, int64_t now_ns, std::string& error) {
    error.clear();
    _now_ns = now_ns;
    if (_stopped) {
        error = "the sink is stopping";
        ++_stats.refused;
        return false;
    }
    if (!has_room()) {
        error = "all " + std::to_string(_cfg.concurrency) + " connections are busy";
        ++_stats.refused;
        return false;
    }
    const uint32_t index = acquire_request();
    Request& r = *_requests[index];
    if (!build_head(d, r, error)) {
        release_request(index);
        ++_stats.refused;
        return false;
    }
    r.cookie = cookie;
    r.body = d.body;
    r.started_ns = now_ns;
    r.deadline_ns = now_ns + _cfg.timeout_ns;
    ++_in_flight;
    ++_stats.started;
    dispatch(index, false);
    return true;
}

void HttpSink::dispatch(uint32_t index, bool fresh_only) {
    Request& r = *_requests[index];
    if (!fresh_only) {
        // An idle connection, kept alive by an earlier request.
        int64_t best = -1;
        for (size_t i = 0; i < _conns.size(); ++i) {
            const Conn& c = *_conns[i];
            if (c.busy && c.fd >= 0 && c.ready && c.request < 0 && !c.doomed) {
                best = int64_t(i);
            }
        }
        if (best >= 0) {
            Conn& c = *_conns[size_t(best)];
            c.request = index;
            c.got_byte = false;
            r.conn = best;
            r.reused = true;
            ++_stats.reuses;
            send_request(uint32_t(best));
            return;
        }
    }
    if (_endpoint->addresses().empty()) {
        if (_endpoint->resolving() && !_ever_resolved) {
            r.waiting = true;
            r.phase = "resolving";
            _waiting.push_back(index);
            return;
        }
        finish(index, HttpOutcome::Kind::retry,
               _endpoint->error().empty() ? "no address for " + _cfg.host : _endpoint->error());
        return;
    }
    open_conn(index, _endpoint->cursor() % _endpoint->addresses().size(), 0);
}

void HttpSink::open_conn(uint32_t request, size_t address_index, size_t tries) {
    Request& r = *_requests[request];
    // At the cap, the idle connection used longest ago makes room (a fresh connection was asked
    // for while others sit idle).
    if (_open >= _cfg.concurrency) {
        for (size_t i = 0; i < _conns.size(); ++i) {
            const Conn& c = *_conns[i];
            if (c.busy && c.fd >= 0 && c.request < 0) {
                close_conn(uint32_t(i));
                break;
            }
        }
    }
    const ResolvedAddress a = _endpoint->addresses()[address_index];
    const int fd = ::socket(a.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ++_stats.connect_failures;
        finish(request, HttpOutcome::Kind::retry, "socket: " + errno_text(errno));
        return;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const uint32_t index = acquire_conn();
    Conn& c = *_conns[index];
    c.fd = fd;
    ++_open;
    c.address_index = address_index;
    c.tries = tries;
    c.address = a;
    c.request = request;
    r.conn = index;
    r.reused = false;
    r.phase = "connecting";
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_connect(sqe, fd, reinterpret_cast<const sockaddr*>(&c.address.addr),
                          c.address.len);
    sqe->user_data = pack(Op::connect, c.generation, index);
    c.connecting = true;
    ++_ops;
}

void HttpSink::on_connected(uint32_t index) {
    Conn& c = *_conns[index];
    c.connected = true;
    ++_stats.connects;
    if (c.request >= 0) {
        _requests[size_t(c.request)]->phase = _cfg.tls ? "tls handshake" : "sending the request";
    }
    if (_cfg.tls && !c.cbuf) {
        c.cbuf = std::make_unique<char[]>(cipher_bytes);
    }
    arm_recv(index);
    if (!_cfg.tls) {
        c.ready = true;
        send_request(index);
        return;
    }
    c.ssl = _transport->connect(_tls_ctx.get());
    if (c.ssl == nullptr) {
        conn_failed(index, "tls: out of memory");
        return;
    }
    SSL_set_alpn_protos(c.ssl, reinterpret_cast<const uint8_t*>("\x08http/1.1"), 9);
    set_client_peer(c.ssl, _cfg.host, _endpoint->host_is_ip());
    // The ClientHello.
    const tls::Status s =
        _transport->receive(c.ssl, {}, c.out_queued, [](std::string_view) { return true; });
    if (s != tls::Status::ok) {
        ++_stats.tls_failures;
        conn_failed(index, tls_error(c));
        return;
    }
    flush_tls(index);
}

std::string HttpSink::tls_error(const Conn& c) const {
    return client_tls_error(c.ssl, *_transport, _cfg.host);
}

void HttpSink::send_request(uint32_t index) {
    Conn& c = *_conns[index];
    Request& r = *_requests[size_t(c.request)];
    r.phase = "sending the request";
    c.parser.reset();
    c.rlen = 0;
    c.got_byte = false;
    c.response_done = false;
    if (_cfg.tls) {
        const std::string_view body(reinterpret_cast<const char*>(r.body.data()), r.body.size());
        if (!_transport->seal(c.ssl, std::string_view(r.head.data(), r.head_len), c.out_queued) ||
            !_transport->seal(c.ssl, body, c.out_queued)) {
            finish(uint32_t(c.request), HttpOutcome::Kind::retry, "tls: out of memory");
            return;
        }
        flush_tls(index);
        return;
    }
    c.sent = 0;
    c.send_request = c.request;
    ++r.send_refs;
    arm_send(index);
}

void HttpSink::arm_send(uint32_t index) {
    Conn& c = *_conns[index];
    io_uring_sqe* sqe = _ring.sqe();
    if (_cfg.tls) {
        const size_t n = std::min(c.out_sending->size - c.sent, max_send);
        io_uring_prep_send(sqe, c.fd, c.out_sending->data() + c.sent, n, MSG_NOSIGNAL);
    } else {
        const Request& r = *_requests[size_t(c.send_request)];
        size_t skip = c.sent;
        size_t count = 0;
        if (skip < r.head_len) {
            c.iov[count++] = {const_cast<char*>(r.head.data()) + skip, r.head_len - skip};
            skip = 0;
        } else {
            skip -= r.head_len;
        }
        if (skip < r.body.size()) {
            // sendmsg does not write through iov_base; the cast only meets struct iovec.
            c.iov[count++] = {const_cast<uint8_t*>(r.body.data()) + skip,
                              std::min(r.body.size() - skip, max_send)};
        }
        c.msg = msghdr{};
        c.msg.msg_iov = c.iov.data();
        c.msg.msg_iovlen = count;
        io_uring_prep_sendmsg(sqe, c.fd, &c.msg, MSG_NOSIGNAL);
    }
    sqe->user_data = pack(Op::send, c.generation, index);
    c.sending = true;
    ++_ops;
}

void HttpSink::flush_tls(uint32_t index) {
    Conn& c = *_conns[index];
    if (c.sending || c.out_queued == nullptr || c.out_queued->size == 0 || c.fd < 0) {
        return;
    }
    if (c.out_sending != nullptr) {
        _pool.release(c.out_sending);
    }
    c.out_sending = c.out_queued;
    c.out_queued = nullptr;
    c.sent = 0;
    arm_send(index);
}

void HttpSink::arm_recv(uint32_t index) {
    Conn& c = *_conns[index];
    io_uring_sqe* sqe = _ring.sqe();
    if (_cfg.tls) {
        io_uring_prep_recv(sqe, c.fd, c.cbuf.get(), cipher_bytes, 0);
    } else {
        io_uring_prep_recv(sqe, c.fd, c.rbuf.get() + c.rlen, recv_bytes - c.rlen, 0);
    }
    sqe->user_data = pack(Op::recv, c.generation, index);
    c.receiving = true;
    ++_ops;
}

void HttpSink::on_send(uint32_t index, int res) {
    Conn& c = *_conns[index];
    c.sending = false;
    const int64_t owner = c.send_request;
    size_t total = 0;
    if (_cfg.tls) {
        total = c.out_sending != nullptr ? c.out_sending->size : 0;
    } else if (owner >= 0) {
        const Request& r = *_requests[size_t(owner)];
        total = r.head_len + r.body.size();
    }
    if (res > 0) {
        c.sent += size_t(res);
    }
    const bool again = res > 0 || res == -EAGAIN || res == -EINTR;
    if (c.fd >= 0 && again && c.sent < total) {
        arm_send(index);
        return;
    }
    if (owner >= 0) {
        c.send_request = -1;
        Request& r = *_requests[size_t(owner)];
        --r.send_refs;
        maybe_report(uint32_t(owner));
    }
    if (c.fd < 0) {
        maybe_release_conn(index);
        return;
    }
    if (!again && res != -ECANCELED) {
        c.doomed = true;
        c.doom_error = "send: " + errno_text(-res);
        ++_stats.io_errors;
        return;
    }
    if (_cfg.tls) {
        _pool.release(c.out_sending);
        c.out_sending = nullptr;
        flush_tls(index);
    }
    if (c.request >= 0 && !c.sending && c.ready && !c.got_byte) {
        _requests[size_t(c.request)]->phase = "waiting for the response";
    }
}

void HttpSink::on_recv(uint32_t index, int res) {
    Conn& c = *_conns[index];
    c.receiving = false;
    if (c.fd < 0) {
        maybe_release_conn(index);
        return;
    }
    const bool idle = c.request < 0;
    if (res == -EAGAIN || res == -EINTR || res == -ENOBUFS) {
        arm_recv(index);
        return;
    }
    if (idle && c.ready && (res <= 0 || !_cfg.tls)) {
        // The server closed (or reset) a connection kept for reuse, or sent bytes nobody asked
        // for.
        ++_stats.idle_closed;
        close_conn(index);
        return;
    }
    if (res < 0) {
        ++_stats.io_errors;
        conn_failed(index, "receive: " + errno_text(-res));
        return;
    }
    if (res == 0) {
        if (c.request >= 0 && c.ready) {
            const http::ResponseParser::Step s = c.parser.finish();
            if (s.event == http::ResponseEvent::done) {
                c.reusable = false;
                response_done(index, false);
                close_conn(index);
                return;
            }
            conn_failed(index, std::string("the server closed the connection (") +
                                   std::string(s.detail) + ")");
            return;
        }
        conn_failed(index, "the server closed the connection during the TLS handshake");
        return;
    }
    if (!_cfg.tls) {
        c.rlen += size_t(res);
        absorb(index);
    } else {
        const bool was_ready = c.ready;
        const tls::Status s =
            _transport->receive(c.ssl, std::string_view(c.cbuf.get(), size_t(res)), c.out_queued,
                                [&](std::string_view plain) {
                                    if (c.request < 0 || c.response_done) {
                                        // Application data nobody asked for.
                                        c.doomed = true;
                                        c.reusable = false;
                                        return false;
                                    }
                                    std::memcpy(c.rbuf.get() + c.rlen, plain.data(), plain.size());
                                    c.rlen += plain.size();
                                    absorb(index);
                                    return !c.doomed;
                                });
        if (s == tls::Status::failed) {
            if (!c.ready) {
                ++_stats.tls_failures;
            } else {
                ++_stats.io_errors;
            }
            conn_failed(index, tls_error(c));
            return;
        }
        if (!was_ready && tls::Transport::handshake_done(c.ssl)) {
            c.ready = true;
            ++_stats.tls_handshakes;
            if (c.request >= 0) {
                send_request(index);
            }
        }
        flush_tls(index);
        if (s == tls::Status::closed) {
            // close_notify: as EOF.
            if (c.request >= 0 && !c.response_done && !c.doomed) {
                const http::ResponseParser::Step f = c.parser.finish();
                if (f.event == http::ResponseEvent::done) {
                    c.reusable = false;
                    response_done(index, false);
                } else {
                    conn_failed(index, std::string("the server closed the connection (") +
                                           std::string(f.detail) + ")");
                    return;
                }
            }
            if (c.request < 0 && !c.doomed) {
                ++_stats.idle_closed;
            }
            close_conn(index);
            return;
        }
    }
    if (c.doomed) {
        if (c.request >= 0) {
            const std::string why = c.doom_error.empty() ? "unexpected bytes" : c.doom_error;
            conn_failed(index, why);
        } else {
            close_conn(index);
        }
        return;
    }
    arm_recv(index);
}

void HttpSink::absorb(uint32_t index) {
    Conn& c = *_conns[index];
    if (c.request < 0 || c.response_done) {
        c.doomed = true;
        c.reusable = false;
        return;
    }
    Request& r = *_requests[size_t(c.request)];
    if (c.rlen > 0) {
        c.got_byte = true;
        if (!c.sending) {
            r.phase = "reading the response";
        }
    }
    std::string_view in(c.rbuf.get(), c.rlen);
    for (;;) {
        const http::ResponseParser::Step s = c.parser.feed(in);
        in.remove_prefix(s.consumed);
        switch (s.event) {
        case http::ResponseEvent::need_more:
            std::memmove(c.rbuf.get(), in.data(), in.size());
            c.rlen = in.size();
            return;
        case http::ResponseEvent::head: {
            const http::ResponseHead& h = c.parser.head();
            r.status = h.status;
            c.keep_alive = h.keep_alive;
            r.retry_after_ns = -1;
            if (h.status == 429 || h.status == 503) {
                if (const http::Header* ra = http::find_header(h.headers, "retry-after")) {
                    const std::optional<int64_t> s_after =
                        http::parse_retry_after(ra->value, _options.unix_now_ns() / base::ns_per_s);
                    if (s_after) {
                        constexpr int64_t max_s =
                            std::numeric_limits<int64_t>::max() / base::ns_per_s;
                        r.retry_after_ns = std::min(*s_after, max_s) * base::ns_per_s;
                    }
                }
            }
            break;
        }
        case http::ResponseEvent::data: {
            const size_t take = std::min(s.data.size(), body_head_bytes - r.body_head_len);
            std::memcpy(r.body_head.data() + r.body_head_len, s.data.data(), take);
            r.body_head_len += take;
            break;
        }
        case http::ResponseEvent::done:
            c.rlen = 0;
            response_done(index, !in.empty());
            return;
        case http::ResponseEvent::error:
            ++_stats.bad_responses;
            c.rlen = 0;
            c.reusable = false;
            c.doomed = true;
            c.doom_error = "bad response (" + std::string(s.detail) + ")";
            return;
        }
    }
}

void HttpSink::response_done(uint32_t index, bool leftover) {
    Conn& c = *_conns[index];
    const auto request = uint32_t(c.request);
    Request& r = *_requests[request];
    c.response_done = true;
    const uint16_t st = r.status;
    if (st >= 200 && st < 300) {
        finish(request, HttpOutcome::Kind::delivered, {});
    } else if (st >= 400 && st < 500 && st != 408 && st != 429) {
        finish(request, HttpOutcome::Kind::rejected, status_error(st));
    } else {
        finish(request, HttpOutcome::Kind::retry, status_error(st));
    }
    ++c.served;
    if (leftover || !c.keep_alive || c.sending || !c.reusable) {
        // No reuse: bytes after the response, Connection: close, or the request still going out
        // (the kernel may still be sending its body; the connection ends once it is in).
        c.reusable = false;
        c.doomed = true;
        c.request = -1;
        r.conn = -1;
        return;
    }
    c.request = -1;
    r.conn = -1;
    c.parser.reset();
    c.response_done = false;
}

void HttpSink::conn_failed(uint32_t index, std::string_view what) {
    Conn& c = *_conns[index];
    const int64_t request = c.request;
    const bool reused = c.served > 0;
    const bool got_byte = c.got_byte;
    close_conn(index);
    if (request < 0) {
        return;
    }
    Request& r = *_requests[size_t(request)];
    if (r.finished) {
        return;
    }
    if (reused && !got_byte && !r.retried_fresh) {
        // The server closed the kept connection as the request went out: the request never
        // reached the application, so it goes again on a new connection.
        r.retried_fresh = true;
        ++_stats.stale_retries;
        dispatch(uint32_t(request), true);
        return;
    }
    finish(uint32_t(request), HttpOutcome::Kind::retry, what);
}

void HttpSink::finish(uint32_t index, HttpOutcome::Kind kind, std::string_view error) {
    Request& r = *_requests[index];
    if (r.finished) {
        return;
    }
    r.finished = true;
    r.finished_ns = _now_ns;
    r.kind = kind;
    r.error.assign(error);
    if (r.conn >= 0 && kind != HttpOutcome::Kind::delivered &&
        !_conns[size_t(r.conn)]->response_done) {
        // Failed on its connection (a timeout): that connection is not reused.
        const auto conn = uint32_t(r.conn);
        close_conn(conn);
    }
    maybe_report(index);
}

void HttpSink::maybe_report(uint32_t index) {
    Request& r = *_requests[index];
    if (!r.busy || r.abandoned || !r.finished || r.send_refs > 0 || r.report_posted) {
        return;
    }
    r.report_posted = true;
    if (_in_cqe) {
        settle(index);
        return;
    }
    // Found by tick(), start() or stop(): reported through the ring, so that every outcome
    // reaches the caller from on_cqe().
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_nop(sqe);
    sqe->user_data = pack(Op::report, r.generation, index);
    ++_ops;
}

void HttpSink::settle(uint32_t index) {
    const Request& r = *_requests[index];
    --_in_flight;
    switch (r.kind) {
    case HttpOutcome::Kind::delivered:
        ++_stats.delivered;
        break;
    case HttpOutcome::Kind::retry:
        ++_stats.retried;
        break;
    case HttpOutcome::Kind::rejected:
        ++_stats.rejected;
        break;
    }
    _ready.push_back(index);
}

HttpOutcome HttpSink::outcome_of(uint32_t index, int64_t now_ns) const {
    const Request& r = *_requests[index];
    HttpOutcome o;
    o.kind = r.kind;
    o.status = r.status;
    o.retry_after_ns = r.retry_after_ns;
    o.error = r.error;
    o.body_head = std::string_view(r.body_head.data(), r.body_head_len);
    o.duration_ns = (r.finished_ns != 0 ? r.finished_ns : now_ns) - r.started_ns;
    o.reused = r.reused;
    return o;
}

uint64_t HttpSink::cookie_of(uint32_t index) const {
    return _requests[index]->cookie;
}

void HttpSink::handle(const io_uring_cqe& cqe, int64_t now_ns) {
    _now_ns = now_ns;
    --_ops;
    const auto op = static_cast<Op>((cqe.user_data >> 40) & 0xff);
    const auto generation = static_cast<uint16_t>(cqe.user_data >> 24);
    const auto index = static_cast<uint32_t>(cqe.user_data & 0xffffff);
    const int res = cqe.res;
    switch (op) {
    case Op::cancel:
        return;
    case Op::event:
        on_resolved(res, now_ns);
        return;
    case Op::report: {
        if (index >= _requests.size()) {
            return;
        }
        Request& r = *_requests[index];
        if (!r.busy || r.generation != generation) {
            return;
        }
        if (r.abandoned) {
            release_request(index);
            return;
        }
        settle(index);
        return;
    }
    case Op::connect:
    case Op::send:
    case Op::recv:
        break;
    }
    if (index >= _conns.size()) {
        return;
    }
    Conn& c = *_conns[index];
    if (!c.busy || c.generation != generation) {
        return; // cannot happen: a slot is reused only once all its completions are in
    }
    switch (op) {
    case Op::connect: {
        c.connecting = false;
        if (c.fd < 0) {
            maybe_release_conn(index);
            return;
        }
        if (res == 0) {
            on_connected(index);
        } else {
            ++_stats.connect_failures;
            const auto request = uint32_t(c.request);
            const size_t tries = c.tries + 1;
            const size_t addresses = _endpoint->addresses().size();
            const size_t next = (c.address_index + 1) % std::max<size_t>(addresses, 1);
            const std::string what =
                "connect " + address_text(c.address.addr) + ": " + errno_text(-res);
            close_conn(index);
            if (_endpoint->has_resolver() &&
                now_ns - _last_resolve_ns >= _options.resolve_retry_ns) {
                request_resolution(now_ns);
            }
            _endpoint->set_cursor(next);
            if (tries < addresses) {
                open_conn(request, next, tries);
            } else {
                finish(request, HttpOutcome::Kind::retry, what);
            }
        }
        break;
    }
    case Op::send:
        on_send(index, res);
        if (c.busy && c.fd >= 0 && c.doomed) {
            conn_failed(index, c.doom_error.empty() ? "send failed" : c.doom_error);
        }
        break;
    case Op::recv:
        on_recv(index, res);
        break;
    default:
        break;
    }
}

// ---------------------------------------------------------------------------------------------

void HttpSink::tick(int64_t now_ns) {
    _now_ns = now_ns;
    if (_stopped) {
        return;
    }
    for (uint32_t i = 0; i < _requests.size(); ++i) {
        Request& r = *_requests[i];
        if (!r.busy || r.abandoned || r.finished || now_ns < r.deadline_ns) {
            continue;
        }
        ++_stats.timeouts;
        if (r.waiting) {
            r.waiting = false;
            std::erase(_waiting, i);
        }
        const std::string what = "timeout after " +
                                 std::to_string(_cfg.timeout_ns / base::ns_per_ms) + " ms (" +
                                 std::string(r.phase) + ")";
        finish(i, HttpOutcome::Kind::retry, what);
    }
    if (_endpoint->due(now_ns)) {
        request_resolution(now_ns);
    }
}

int64_t HttpSink::wait_limit_ns(int64_t now_ns, int64_t limit) const {
    int64_t next = now_ns + limit;
    for (const auto& req : _requests) {
        const Request& r = *req;
        if (r.busy && !r.abandoned && !r.finished) {
            next = std::min(next, r.deadline_ns);
        }
    }
    next = _endpoint->earliest(next);
    return std::clamp<int64_t>(next - now_ns, min_wait_ns, limit);
}

void HttpSink::stop() {
    if (_stopped) {
        return;
    }
    _stopped = true;
    // Settled but not yet reported (stop() called from a callback): never reported now.
    for (uint32_t index : _ready) {
        release_request(index);
    }
    _ready.clear();
    for (uint32_t i = 0; i < _requests.size(); ++i) {
        Request& r = *_requests[i];
        if (!r.busy || r.abandoned) {
            continue;
        }
        r.abandoned = true;
        if (!r.report_posted) {
            release_request(i);
        }
    }
    _in_flight = 0;
    _waiting.clear();
    for (uint32_t i = 0; i < _conns.size(); ++i) {
        close_conn(i);
    }
    _endpoint->stop();
    // The cancellations take effect now, not at the loop's next submission.
    io_uring_submit(_ring.raw());
}

} // namespace portcullis::deliver
