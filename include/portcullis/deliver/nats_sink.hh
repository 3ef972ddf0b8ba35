// Publishes jobs to NATS JetStream (SPEC section 8, sinks.NAME.nats) from the control plane's
// thread, speaking the NATS client protocol (nats_protocol.hh) over the loop's io_uring: one
// connection, many publishes pipelined on it, each settled by its JetStream acknowledgement.
//
//   NatsSink sink(ring, /*slot=*/0, "bus", cfg.sinks[i].nats.value());
//   if (auto err = sink.init(now_mono); !err.empty()) { refuse to start; }
//   // per delivery, while sink.has_room():
//   std::string why;
//   if (!sink.start({.job_id = id, .route = r, .attempt = n, .received_at_unix_ns = t,
//                    .record = &rec, .body = body}, cookie, now_mono, why)) {
//       /* nothing started: the job can never be published (a dead letter), why says so */
//   }
//   // each loop iteration:
//   sink.tick(now_mono);                    // timeouts, keepalive, reconnection
//   ring.submit_and_wait(sink.wait_limit_ns(now_mono, limit));
//   ring.for_each_cqe([&](const io_uring_cqe& c) {
//       if (sink.owns(c.user_data)) {
//           sink.on_cqe(c, now_mono, [](uint64_t cookie, const NatsOutcome& o) { ... });
//       }
//   });
//
// The connection: TCP to the url's host (resolved off the loop, like the HTTP sink's), the
// server's INFO (in clear), TLS when the url is tls:// or INFO says tls_required (the client
// upgrades after INFO, the NATS way), CONNECT with the credentials (user and password, token, or
// an NKey: the seed signs INFO's nonce), SUB to a reply inbox _INBOX.<random>.*, then PING: the
// connection counts once its PONG came (an authentication failure arrives as -ERR before it).
// A server that does not support headers is refused. The server's PING gets a PONG; the sink
// sends a PING every ping_interval_ns and a missing PONG by the next one ends the connection.
//
// A publish: HPUB <subject> _INBOX.<random>.<n> with the subject template's {route} replaced by
// the job's route; headers: the stored request's fields as the HTTP sink forwards them
// (forwarded_headers.hh), then Portcullis-Job-Id, -Attempt, -Route, -Received-At, then
// Nats-Msg-Id: the hex of the route's dedup key when the record has one (the same provider
// delivery accepted by two appliances is stored once within the stream's duplicate window),
// else the job id; then the body byte for byte.
//
// Outcome: the acknowledgement on the reply subject. {"stream":..,"seq":..} delivered, with
// "duplicate":true too; {"error":{..}} retry with its code and description; a 503 status (no
// responders: no stream holds the subject) retry with "no JetStream stream for subject S".
// No acknowledgement within publish_timeout_ns: retry. A job whose headers NATS cannot carry
// (CR, LF or control bytes in a value) or larger than the server's max_payload is refused by
// start() (a dead letter, as the engine treats an HTTP sink's unwritable request). A closed
// connection, -ERR (the server closes after it) or a protocol error fails every publish in flight
// on it (retry); the sink reconnects after a backoff (reconnect_min_ns doubling to
// reconnect_max_ns, with full jitter). While it is down, start() reports retry at once with the
// reason; while the first connection (or a reconnection) is being made, publishes wait for it
// within their timeout.
//
// Descriptors: one socket, plus one eventfd when the host is a name. Secrets (password, token,
// seed) are never logged; the seed is decoded at init() and kept as the Ed25519 key only.
#pragma once

#include "portcullis/base/buffer_pool.hh"
#include "portcullis/base/time.hh"
#include "portcullis/config/config.hh"
#include "portcullis/deliver/nats_protocol.hh"
#include "portcullis/http/header.hh"
#include "portcullis/io/ring.hh"
#include "portcullis/queue/record.hh"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::deliver {

class Endpoint;
class RingConnection;
class Backoff;

// The tag of NATS sinks' SQEs in the top byte of user_data; the next byte is the sink's slot.
constexpr uint64_t nats_tag = 0xe3;

// One publish. Views: into the caller's memory, which it keeps alive until start() returns (the
// frame is copied into the sink's output buffer).
struct NatsDelivery {
    std::string_view job_id; // the 26-character text form
    std::string_view route;
    uint32_t attempt = 1;
    int64_t received_at_unix_ns = 0;
    // The stored request's fields and keys: record's when record is set, else `headers` (and no
    // dedup key).
    const queue::JobRecord* record = nullptr;
    std::span<const http::Header> headers;
    std::span<const uint8_t> body;
};

struct NatsOutcome {
    enum class Kind : uint8_t { delivered, retry, rejected };
    Kind kind = Kind::retry;
    // What went wrong, for the log ("no JetStream stream for subject webhooks.github", "nats
    // -ERR 'Authorization Violation'", "timeout after 10000 ms waiting for the acknowledgement");
    // empty when delivered. Valid during the callback.
    std::string_view error;
    bool duplicate = false; // the stream had the message already (Nats-Msg-Id)
    uint64_t seq = 0;       // the stream's sequence number when delivered
    int64_t duration_ns = 0;
};

std::string_view nats_outcome_name(NatsOutcome::Kind k); // "delivered", "retry", "rejected"

struct NatsSinkOptions {
    int64_t publish_timeout_ns = 10 * base::ns_per_s;
    int64_t connect_timeout_ns = 5 * base::ns_per_s; // TCP, INFO, TLS, CONNECT to PONG
    int64_t ping_interval_ns = 20 * base::ns_per_s;
    int64_t reconnect_min_ns = 100 * base::ns_per_ms;
    int64_t reconnect_max_ns = 5 * base::ns_per_s;
    int64_t resolve_interval_ns = 30 * base::ns_per_s;
    // The CA store for tls:// without `ca` (Debian's bundle).
    std::string system_ca_file = "/etc/ssl/certs/ca-certificates.crt";
    nats::Limits limits;
    // CONNECT's "name" and "version".
    std::string client_name = "portcullis";
    std::string client_version = "0";
};

struct NatsSinkStats {
    uint64_t started = 0;
    uint64_t refused = 0;  // start() returned false
    uint64_t rejected = 0; // held for the first connection, over its max_payload
    uint64_t delivered = 0;
    uint64_t duplicates = 0; // of delivered: acknowledged with duplicate:true
    uint64_t retried = 0;
    uint64_t no_stream = 0;   // of retried: 503 no responders
    uint64_t ack_errors = 0;  // of retried: {"error":..}
    uint64_t timeouts = 0;    // of retried: no acknowledgement in time
    uint64_t failed_fast = 0; // of retried: the connection was down at start()
    uint64_t connects = 0;    // connections that reached PONG
    uint64_t connect_failures = 0;
    uint64_t disconnects = 0;   // usable connections lost
    uint64_t server_errors = 0; // -ERR
    uint64_t protocol_errors = 0;
    uint64_t tls_handshakes = 0;
    uint64_t pings_sent = 0;
    uint64_t sends = 0; // sends put on the ring (many publishes leave in one)
};

class NatsSink {
public:
    // ring: the loop's, which outlives the sink. slot: this sink's number among the NATS sinks
    // on that ring. name: the sink's, for messages. cfg is copied.
    NatsSink(io::Ring& ring, uint8_t slot, std::string name, const config::NatsSinkConfig& cfg,
             NatsSinkOptions options = {});
    NatsSink(const NatsSink&) = delete;
    NatsSink& operator=(const NatsSink&) = delete;
    // Call stop() and dispatch until idle() first.
    ~NatsSink();

    // Start-up (may block: reads the CA file, decodes the seed): then the first connection
    // starts. "" or what is wrong, naming the sink and the key.
    std::string init(int64_t now_ns);

    // Writes the publish. False, with `error`, when nothing was started (nothing is reported for
    // `cookie`): the job cannot be published (headers NATS cannot carry, larger than the server's
    // max_payload), or no room (has_room() was false). Otherwise the outcome is reported to
    // on_cqe()'s callback exactly once, unless stop() comes first.
    bool start(const NatsDelivery& d, uint64_t cookie, int64_t now_ns, std::string& error);

    bool owns(uint64_t user_data) const {
        return user_data >> 56 == nats_tag && ((user_data >> 48) & 0xff) == _slot;
    }

    template <typename F>
    void on_cqe(const io_uring_cqe& cqe, int64_t now_ns, F&& done);

    // Publish timeouts, keepalive, connect timeout, reconnection. Call once per loop iteration.
    void tick(int64_t now_ns);
    int64_t wait_limit_ns(int64_t now_ns, int64_t limit) const;

    size_t in_flight() const { return _in_flight; }
    size_t max_in_flight() const { return _cfg.max_in_flight; }
    bool has_room() const { return _in_flight < _cfg.max_in_flight; }
    // The connection is usable (its PONG came).
    bool connected() const { return _state == State::ready; }
    // Why the last connection failed or ended; empty once one is usable.
    const std::string& last_error() const { return _last_error; }
    // The INFO of the connection (empty before the first).
    const nats::ServerInfo& server() const { return _info; }
    bool idle() const { return _ops == 0; }
    const NatsSinkStats& stats() const { return _stats; }

    // Shutdown: closes the connection and cancels its operations; nothing more is reported (the
    // publishes were never settled and run again: Nats-Msg-Id makes a second store of one that
    // made it a duplicate within the stream's window). idle() once the cancellations are in.
    void stop();

private:
    enum class State : uint8_t {
        idle,       // not connected; reconnect at _reconnect_at_ns
        resolving,  // waiting for the first resolution
        connecting, // TCP connect in flight
        info,       // waiting for INFO
        tls,        // TLS handshake
        handshake,  // CONNECT, SUB, PING sent: waiting for PONG
        ready,
    };
    struct Publish;

    void handle(const io_uring_cqe& cqe, int64_t now_ns);
    void connect(int64_t now_ns);
    void on_recv(int res);
    void on_send(int res);
    bool absorb(); // parses what the connection received; false when the connection is doomed
    void on_frame(const nats::Frame& f);
    // Marks the connection failed from inside a parse or a TLS call; the caller that started it
    // calls conn_failed once the session is no longer in use.
    void doom(std::string what);
    void on_info(std::string_view json);
    void on_ack(const nats::Frame& f);
    void send_handshake();
    void became_ready();
    void flush();
    void conn_failed(std::string_view what);
    void close_conn();
    void finish(uint32_t index, NatsOutcome::Kind kind, std::string_view error);
    void post_report();
    template <typename Out>
    bool write_publish(const NatsDelivery& d, uint32_t index, Out& out, std::string& error);
    void on_resolved(int res, int64_t now_ns);

    io::Ring& _ring;
    uint8_t _slot;
    std::string _name;
    config::NatsSinkConfig _cfg;
    NatsSinkOptions _options;
    std::string _where; // "sinks.NAME.nats"
    std::optional<nats::NKey> _nkey;
    std::string _tls_ctx_error; // why there is no context (no tls://: only if INFO asks for TLS)
    size_t _ops = 0;            // operations in flight on the ring
    base::BufferPool _pool;
    std::unique_ptr<Endpoint> _endpoint;
    std::unique_ptr<RingConnection> _conn;
    std::unique_ptr<Backoff> _backoff;

    // The connection.
    State _state = State::idle;
    int64_t _connect_deadline_ns = 0;
    int64_t _reconnect_at_ns = 0;
    int64_t _next_ping_ns = 0;
    uint32_t _pings_out = 0; // our PINGs without their PONG (the handshake's included)
    bool _use_tls = false;
    bool _doomed = false;
    std::string _doom_error;
    bool _info_known = false; // an INFO came (max_payload is the server's)
    nats::ServerInfo _info;
    nats::Parser _parser;
    std::string _inbox; // "_INBOX.<random>." (the reply subject's prefix)
    std::string _last_error;
    // Frames gather in the connection's send queue; publishes written before the connection was
    // usable wait in _held.
    std::string _held;
    std::string _scratch; // CONNECT's

    // Publishes.
    std::vector<Publish> _publishes;
    std::vector<uint32_t> _free;
    size_t _in_flight = 0;
    bool _stopped = false;
    bool _report_posted = false;
    int64_t _now_ns = 0;
    NatsSinkStats _stats;
    std::vector<http::Header> _fields; // start()'s scratch
    std::vector<uint32_t> _ready;      // settled, to report from on_cqe()
    std::string _hdr;                  // start()'s scratch: the header block
    bool _in_cqe = false;
};

struct NatsSink::Publish {
    bool busy = false;
    bool finished = false;
    bool sent = false;       // on the connection (not held)
    uint32_t generation = 0; // in the reply subject's token
    uint64_t cookie = 0;
    size_t size = 0; // headers and body
    size_t held_offset = 0;
    size_t held_len = 0;
    std::string subject;
    int64_t started_ns = 0;
    int64_t deadline_ns = 0;
    int64_t finished_ns = 0;
    NatsOutcome::Kind kind = NatsOutcome::Kind::retry;
    bool duplicate = false;
    uint64_t seq = 0;
    std::string error;
};

template <typename F>
void NatsSink::on_cqe(const io_uring_cqe& cqe, int64_t now_ns, F&& done) {
    _in_cqe = true;
    handle(cqe, now_ns);
    while (!_ready.empty()) {
        const uint32_t index = _ready.back();
        _ready.pop_back();
        Publish& p = _publishes[index];
        NatsOutcome o;
        o.kind = p.kind;
        o.error = p.error;
        o.duplicate = p.duplicate;
        o.seq = p.seq;
        o.duration_ns = p.finished_ns - p.started_ns;
        const uint64_t cookie = p.cookie;
        done(cookie, o);
        // Released after the call: the error's view stays valid while done() starts others.
        _publishes[index].busy = false;
        _free.push_back(index);
    }
    _in_cqe = false;
}

} // namespace portcullis::deliver
