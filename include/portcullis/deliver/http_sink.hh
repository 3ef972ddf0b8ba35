// Delivers jobs to one HTTP sink (SPEC section 8, sinks.NAME.http) from the control plane's
// thread without blocking its loop: connections, TLS, requests and responses all go through the
// loop's io_uring; host names are resolved on a thread of the sink's own.
//
//   HttpSink sink(ring, /*slot=*/0, "app", cfg.sinks[i].http.value());
//   if (auto err = sink.init(now_mono); !err.empty()) { refuse to start; }
//   // per delivery, while sink.has_room():
//   std::string why;
//   if (!sink.start({.job_id = id, .route = r, .attempt = n, .received_at_unix_ns = t,
//                    .record = &rec, .body = body}, cookie, now_mono, why)) {
//       /* nothing started: the request cannot be written (a dead letter), why says so */
//   }
//   // each loop iteration:
//   sink.tick(now_mono);                                   // timeouts, re-resolution
//   ring.submit_and_wait(sink.wait_limit_ns(now_mono, limit));
//   ring.for_each_cqe([&](const io_uring_cqe& c) {
//       if (sink.owns(c.user_data)) {
//           sink.on_cqe(c, now_mono, [](uint64_t cookie, const HttpOutcome& o) { ... });
//       }
//   });
//
// The request: `method` to path_and_query, Host, then the stored request's fields less those
// that describe the connection (Connection and every field it names, Keep-Alive,
// Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, Expect), Host and Content-Length
// (set here), the credentials (Authorization, Proxy-Authorization, Cookie), any incoming
// Portcullis-* (a sender must not spoof them), a field the sink's `headers` sets (the sink's
// value replaces it) and, when signing, webhook-id/-timestamp/-signature; then the sink's
// `headers`; then Portcullis-Job-Id, Portcullis-Attempt, Portcullis-Route,
// Portcullis-Received-At (RFC 3339 UTC, milliseconds); with `sign`, webhook-id (the job id),
// webhook-timestamp (now, per attempt) and webhook-signature. The body byte for byte with
// Content-Length, sent with the head in one vectored write (or sealed together by TLS).
//
// Connections: at most `concurrency` sockets, one request at a time on each (no pipelining),
// kept alive and reused. An idle connection always has a receive armed, so that the server's
// close (EOF, RST) is seen and the socket closed. A request that fails on a reused connection
// before any byte of the response came is sent again once on a new connection without a
// failure being reported (the server closed the idle connection as the request went out).
// `Connection: close`, HTTP/1.0 without keep-alive, a body read until close, bytes after the
// response and a response that came before the request was all sent end the connection.
//
// Outcome: 2xx delivered; 408, 429 and 5xx retry (Retry-After of a 429 or 503 in
// retry_after_ns); 3xx retry (redirects are not followed: the sink's url is wrong); any other 4xx
// rejected (a dead letter). Connection failures, TLS failures, resets, malformed responses and
// the timeout (the whole attempt: resolution wait, connect, TLS, send, response) retry, with
// `error` saying what happened.
//
// Host names: resolved by getaddrinfo on the sink's resolver thread at init(), every
// resolve_interval_ns, and after a failed connect (at most every resolve_retry_ns). The loop
// never waits for it: it asks by setting a flag under a mutex and learns of an answer from an
// eventfd read through the ring, then takes the answer under the same mutex, so the lock is
// taken a few times a minute, never per delivery. A delivery that finds no address while the
// first resolution is under way waits for it (within its timeout); when the last resolution
// failed and none succeeded before, it fails at once with the resolver's error. A failed
// re-resolution keeps the addresses of the last good one. IP literals are never resolved.
// Addresses are tried in getaddrinfo's order: a refused connect moves to the next.
//
// Descriptors (for the engine's fd budget): at most `concurrency` sockets, plus one eventfd when
// the host is a name (not an IP literal). The resolver thread holds none of its own.
#pragma once

#include "portcullis/base/buffer_pool.hh"
#include "portcullis/base/time.hh"
#include "portcullis/config/config.hh"
#include "portcullis/http/header.hh"
#include "portcullis/io/ring.hh"
#include "portcullis/queue/record.hh"
#include "portcullis/tls/transport.hh"
#include "portcullis/verify/standard_signer.hh"

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::deliver {

// The tag of HTTP sinks' SQEs in the top byte of user_data; the next byte is the sink's slot.
constexpr uint64_t http_tag = 0xe2;

// One attempt to deliver. Views: into the caller's memory, which it keeps alive until the
// outcome is reported (or stop()).
struct HttpDelivery {
    std::string_view job_id; // the 26-character text form
    std::string_view route;
    uint32_t attempt = 1;
    int64_t received_at_unix_ns = 0;
    // The stored request's fields: record's headers when record is set, else `headers`.
    const queue::JobRecord* record = nullptr;
    std::span<const http::Header> headers;
    std::span<const uint8_t> body;
};

struct HttpOutcome {
    enum class Kind : uint8_t { delivered, retry, rejected };
    Kind kind = Kind::retry;
    uint16_t status = 0;         // the final response's status; 0 when none came
    int64_t retry_after_ns = -1; // a 429's or 503's Retry-After; -1 when none
    // What went wrong, for the log ("connect 10.0.0.7:443: Connection refused", "timeout after
    // 10000 ms (waiting for the response)", "status 503"); empty when delivered. Valid during the
    // callback.
    std::string_view error;
    // The first bytes of the response body (at most HttpSink::body_head_bytes), for the log: what
    // an application says about a refusal. The response's fields are not kept (Set-Cookie).
    std::string_view body_head;
    int64_t duration_ns = 0; // from start() to the outcome
    bool reused = false;     // the request went on a connection an earlier one had used
};

std::string_view http_outcome_name(HttpOutcome::Kind k); // "delivered", "retry", "rejected"

struct HttpSinkOptions {
    int64_t resolve_interval_ns = 30 * base::ns_per_s;
    int64_t resolve_retry_ns = base::ns_per_s; // the soonest re-resolution after a failed connect
    // The CA store without `ca` (Debian's bundle).
    std::string system_ca_file = "/etc/ssl/certs/ca-certificates.crt";
    // Wall clock: webhook-timestamp, Retry-After dates. Tests inject their own.
    int64_t (*unix_now_ns)() = base::unix_ns;
};

struct HttpSinkStats {
    uint64_t started = 0;
    uint64_t refused = 0; // start() returned false
    uint64_t delivered = 0;
    uint64_t retried = 0; // outcomes `retry`, whatever the cause
    uint64_t rejected = 0;
    uint64_t connects = 0; // connections established
    uint64_t connect_failures = 0;
    uint64_t reuses = 0;        // requests sent on a kept-alive connection
    uint64_t stale_retries = 0; // requests sent again after a reused connection had closed
    uint64_t idle_closed = 0;   // idle connections the server closed
    uint64_t tls_handshakes = 0;
    uint64_t tls_failures = 0;
    uint64_t timeouts = 0;
    uint64_t io_errors = 0;     // resets and other socket errors, the server's early close
    uint64_t bad_responses = 0; // responses the parser refused
    uint64_t resolutions = 0;
    uint64_t resolve_failures = 0;
};

class Endpoint;

class HttpSink {
public:
    static constexpr size_t body_head_bytes = 512;

    // ring: the loop's, which outlives the sink. slot: this sink's number among the HTTP sinks
    // on that ring (the second byte of its user_data). name: the sink's, for messages. cfg is
    // copied.
    HttpSink(io::Ring& ring, uint8_t slot, std::string name, const config::HttpSinkConfig& cfg,
             HttpSinkOptions options = {});
    HttpSink(const HttpSink&) = delete;
    HttpSink& operator=(const HttpSink&) = delete;
    // Call stop() and dispatch until idle() first: the kernel may still use its buffers.
    ~HttpSink();

    // Start-up (may block: reads the CA file): the TLS context, the signer, the first
    // resolution. "" or what is wrong, naming the sink and the key.
    std::string init(int64_t now_ns);

    // Builds the request and sends it on an idle connection or a new one. False, with `error`,
    // when nothing was started (then nothing is reported for `cookie`): the head cannot be
    // written (a field the writer refuses: the same job would fail every attempt), or no
    // connection is free (has_room() was false: the engine's mistake). Otherwise the outcome is
    // reported to on_cqe()'s callback exactly once, unless stop() comes first.
    bool start(const HttpDelivery& d, uint64_t cookie, int64_t now_ns, std::string& error);

    bool owns(uint64_t user_data) const {
        return user_data >> 56 == http_tag && ((user_data >> 48) & 0xff) == _slot;
    }

    // Handles a CQE owns() says is this sink's; calls done(cookie, outcome) when a delivery is
    // over. done may call start().
    template <typename F>
    void on_cqe(const io_uring_cqe& cqe, int64_t now_ns, F&& done);

    // Timeouts and re-resolution. Call once per loop iteration.
    void tick(int64_t now_ns);
    // How long the loop may wait before tick() has something to do, at most `limit`.
    int64_t wait_limit_ns(int64_t now_ns, int64_t limit) const;

    // Deliveries started and not yet reported.
    size_t in_flight() const { return _in_flight; }
    size_t concurrency() const { return _cfg.concurrency; }
    bool has_room() const { return _in_flight < _cfg.concurrency; }
    // Sockets open (in use or idle): at most concurrency().
    size_t open_connections() const { return _open; }
    // No operation of the sink's in flight on the ring.
    bool idle() const { return _ops == 0; }
    const HttpSinkStats& stats() const { return _stats; }

    // Shutdown: closes every connection and cancels its operations; nothing more is reported
    // (the attempts were never settled and run again). Never waits for a resolution in progress:
    // the resolver thread is left to finish it and exit. The cancellations complete through
    // on_cqe(); idle() once they are all in.
    void stop();

private:
    struct Request;
    struct Conn;
    enum class Op : uint8_t { connect = 1, send, recv, event, report, cancel };

    uint64_t pack(Op op, uint16_t generation, uint32_t index) const {
        return http_tag << 56 | uint64_t(_slot) << 48 | uint64_t(op) << 40 |
               uint64_t(generation) << 24 | (index & 0xffffff);
    }

    // Handles one CQE; the outcomes it settles go to _ready.
    void handle(const io_uring_cqe& cqe, int64_t now_ns);
    void settle(uint32_t request); // counts it and puts it in _ready
    HttpOutcome outcome_of(uint32_t request, int64_t now_ns) const;
    uint64_t cookie_of(uint32_t request) const;
    void release_request(uint32_t request);

    bool build_head(const HttpDelivery& d, Request& r, std::string& error);
    void dispatch(uint32_t request, bool fresh_only);
    void open_conn(uint32_t request, size_t address_index, size_t tries);
    void on_connected(uint32_t conn);
    void send_request(uint32_t conn);
    void arm_recv(uint32_t conn);
    void arm_send(uint32_t conn);
    void flush_tls(uint32_t conn);
    void on_send(uint32_t conn, int res);
    void on_recv(uint32_t conn, int res);
    void absorb(uint32_t conn);
    void response_done(uint32_t conn, bool leftover);
    void conn_failed(uint32_t conn, std::string_view what);
    void close_conn(uint32_t conn);
    void maybe_release_conn(uint32_t conn);
    void finish(uint32_t request, HttpOutcome::Kind kind, std::string_view error);
    void maybe_report(uint32_t request);
    void on_resolved(int res, int64_t now_ns);
    void request_resolution(int64_t now_ns);
    std::string tls_error(const Conn& c) const;
    uint32_t acquire_conn();
    uint32_t acquire_request();
    void cancel(Op op, uint16_t generation, uint32_t index);

    io::Ring& _ring;
    uint8_t _slot;
    std::string _name;
    config::HttpSinkConfig _cfg;
    HttpSinkOptions _options;
    std::optional<verify::StandardSigner> _signer;
    bssl::UniquePtr<SSL_CTX> _tls_ctx;
    base::BufferPool _pool;
    std::unique_ptr<tls::Transport> _transport;
    // The addresses; its cursor is where a new connection starts trying.
    std::unique_ptr<Endpoint> _endpoint;
    bool _ever_resolved = false;
    int64_t _last_resolve_ns = 0;
    std::vector<uint32_t> _waiting; // requests waiting for the first resolution

    std::vector<std::unique_ptr<Request>> _requests; // addresses stable while busy
    std::vector<uint32_t> _free_requests;
    std::vector<std::unique_ptr<Conn>> _conns;
    std::vector<uint32_t> _free_conns;
    size_t _in_flight = 0;
    size_t _open = 0;
    size_t _ops = 0; // operations in flight on the ring
    bool _stopped = false;
    int64_t _now_ns = 0; // of the call in progress
    HttpSinkStats _stats;
    std::vector<http::Header> _fields; // start()'s scratch, reused
    std::vector<uint32_t> _ready;      // settled, to report before on_cqe() returns
    bool _in_cqe = false;
};

template <typename F>
void HttpSink::on_cqe(const io_uring_cqe& cqe, int64_t now_ns, F&& done) {
    _in_cqe = true;
    handle(cqe, now_ns);
    // Outcomes this completion settled, and those tick() or the resolver settled (through a
    // NOP). done may start deliveries whose outcome is known at once: they join the list.
    while (!_ready.empty()) {
        const uint32_t index = _ready.back();
        _ready.pop_back();
        // The request stays allocated during the call: the views of its outcome stay valid even
        // if done() starts another delivery.
        const HttpOutcome o = outcome_of(index, now_ns);
        done(cookie_of(index), o);
        release_request(index);
    }
    _in_cqe = false;
}

} // namespace portcullis::deliver
