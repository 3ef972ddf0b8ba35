// Delivers jobs to one Redis Streams sink (SPEC section 8, sinks.NAME.redis) from the control
// plane's thread without blocking its loop: the connection, TLS, commands and replies all go
// through the loop's io_uring; host names are resolved on a thread of the sink's own
// (resolver.hh, as the HTTP sink does).
//
//   RedisSink sink(ring, /*slot=*/0, "stream", cfg.sinks[i].redis.value());
//   if (auto err = sink.init(now_mono); !err.empty()) { refuse to start; }
//   // per delivery, while sink.has_room():
//   std::string why;
//   if (!sink.start({.job_id = id, .route = r, .received_at_unix_ns = t, .record = &rec,
//                    .body = body}, cookie, now_mono, why)) {
//       /* nothing started: the job can never be written (a dead letter), why says so */
//   }
//   // each loop iteration:
//   sink.tick(now_mono);                                   // timeouts, reconnection
//   ring.submit_and_wait(sink.wait_limit_ns(now_mono, limit));
//   ring.for_each_cqe([&](const io_uring_cqe& c) {
//       if (sink.owns(c.user_data)) {
//           sink.on_cqe(c, now_mono, [](uint64_t cookie, const RedisOutcome& o) { ... });
//       }
//   });
//
// Each delivery is one command, pipelined on one connection (Redis runs commands one at a time:
// more connections would not make it faster, and one keeps the replies in order):
//
//   XADD <stream> MAXLEN ~ <maxlen> * id <job id> route <route> received_at <RFC 3339 UTC, ms>
//        headers <the stored headers as a JSON object: queue::append_headers_json> body <bytes>
//
// <stream> is the sink's template with {route} replaced by the route's name. Every argument is a
// RESP bulk string: the body goes byte for byte, whatever it holds. Commands are encoded straight
// into the connection's send buffer (resp.hh); those started while a send is in flight go out
// together once it completes, so a busy sink writes big batches.
//
// Outcome, from the reply (replies come in the order of the commands): a bulk string (the
// entry's id) delivers; an error reply (-OOM, -WRONGTYPE, -NOAUTH, -MISCONF ...) retries, its
// text in `error`; anything else retries as an unexpected reply. A connection that fails (reset,
// closed, a malformed reply, no reply within `timeout_ns`) fails every command in flight on it
// (retry): Redis may have stored an entry whose reply was lost, so delivery is at least once and
// consumers dedup by the `id` field (Redis 7 has no idempotent XADD).
//
// Connection: at init() and whenever it is down, after a backoff that doubles from
// backoff_min_ns to backoff_max_ns with each failed attempt in a row (reset once a connection
// has answered). rediss:// speaks TLS first (the system's CA store, the host name verified).
// Then AUTH [user] password when a password is configured, SELECT db when db != 0, pipelined
// ahead of the first XADDs; an error reply to either is a clear error naming the sink and the
// user (never the password), the connection closes and every command in flight retries with that
// error. The connection stays on RESP2 (no HELLO); RESP3 push and attribute frames are read and
// skipped. Deliveries started while the connection is being made wait for it (within
// timeout_ns); while it is down (waiting for the backoff) they fail at once with the last error.
//
// Descriptors (for the engine's fd budget): one socket, plus one eventfd when the host is a name.
#pragma once

#include "portcullis/base/buffer_pool.hh"
#include "portcullis/base/time.hh"
#include "portcullis/config/config.hh"
#include "portcullis/deliver/resp.hh"
#include "portcullis/io/ring.hh"
#include "portcullis/queue/record.hh"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::deliver {

// The tag of Redis sinks' SQEs in the top byte of user_data; the next byte is the sink's slot.
constexpr uint64_t redis_tag = 0xe4;

// One attempt to deliver. Views: into the caller's memory, which it keeps alive until start()
// returns (the command is encoded into the sink's own buffer at once).
struct RedisDelivery {
    std::string_view job_id; // the 26-character text form
    std::string_view route;
    int64_t received_at_unix_ns = 0;
    // The stored request's fields, for the `headers` JSON; null: "{}".
    const queue::JobRecord* record = nullptr;
    std::span<const uint8_t> body;
};

struct RedisOutcome {
    enum class Kind : uint8_t { delivered, retry };
    Kind kind = Kind::retry;
    // What went wrong, for the log ("XADD refused: WRONGTYPE Operation against a key holding the
    // wrong kind of value", "connect 127.0.0.1:6379: Connection refused"); empty when delivered.
    // Valid during the callback.
    std::string_view error;
    // The entry's id in the stream ("1718000000000-0") when delivered. Valid during the callback.
    std::string_view entry_id;
    int64_t duration_ns = 0; // from start() to the outcome
};

std::string_view redis_outcome_name(RedisOutcome::Kind k); // "delivered", "retry"

struct RedisSinkOptions {
    int64_t timeout_ns = 10 * base::ns_per_s; // connect + TLS + hello, or a reply, at most
    int64_t backoff_min_ns = 100 * base::ns_per_ms;
    int64_t backoff_max_ns = 5 * base::ns_per_s;
    int64_t resolve_interval_ns = 30 * base::ns_per_s;
    // The CA store for rediss:// without `ca` (Debian's bundle).
    std::string system_ca_file = "/etc/ssl/certs/ca-certificates.crt";
};

struct RedisSinkStats {
    uint64_t started = 0;
    uint64_t refused = 0; // start() returned false
    uint64_t delivered = 0;
    uint64_t retried = 0;       // outcomes `retry`, whatever the cause
    uint64_t error_replies = 0; // XADDs Redis answered with an error
    uint64_t connects = 0;      // connections established (TCP, and TLS when rediss)
    uint64_t connect_failures = 0;
    uint64_t disconnects = 0; // established connections that failed or closed
    uint64_t auth_failures = 0;
    uint64_t timeouts = 0;
    uint64_t bad_replies = 0; // replies the parser refused
    uint64_t tls_handshakes = 0;
    uint64_t tls_failures = 0;
    uint64_t resolutions = 0;
    uint64_t resolve_failures = 0;
    uint64_t sends = 0; // send operations (each carries every command queued when it started)
};

class Endpoint;
class RingConnection;
class Backoff;

class RedisSink {
public:
    // ring: the loop's, which outlives the sink. slot: this sink's number among the Redis sinks
    // on that ring (the second byte of its user_data). name: the sink's, for messages. cfg is
    // copied.
    RedisSink(io::Ring& ring, uint8_t slot, std::string name, const config::RedisSinkConfig& cfg,
              RedisSinkOptions options = {});
    RedisSink(const RedisSink&) = delete;
    RedisSink& operator=(const RedisSink&) = delete;
    // Call stop() and dispatch until idle() first: the kernel may still use its buffers.
    ~RedisSink();

    // Start-up (may block: reads the CA file): the TLS context, the first resolution, the first
    // connection. "" or what is wrong, naming the sink.
    std::string init(int64_t now_ns);

    // Encodes the XADD and queues it on the connection. False, with `error`, when nothing was
    // started (then nothing is reported for `cookie`): a body Redis cannot take (over its
    // proto-max-bulk-len of 512 MiB: the same job would fail every attempt), the sink is
    // stopping, or has_room() was false (the engine's mistake). Otherwise the outcome is reported
    // to on_cqe()'s callback exactly once, unless stop() comes first.
    bool start(const RedisDelivery& d, uint64_t cookie, int64_t now_ns, std::string& error);

    bool owns(uint64_t user_data) const {
        return user_data >> 56 == redis_tag && ((user_data >> 48) & 0xff) == _slot;
    }

    // Handles a CQE owns() says is this sink's; calls done(cookie, outcome) for each delivery it
    // settled. done may call start().
    template <typename F>
    void on_cqe(const io_uring_cqe& cqe, int64_t now_ns, F&& done);

    // Timeouts, reconnection, re-resolution. Call once per loop iteration.
    void tick(int64_t now_ns);
    // How long the loop may wait before tick() has something to do, at most `limit`.
    int64_t wait_limit_ns(int64_t now_ns, int64_t limit) const;

    // Deliveries started and not yet reported.
    size_t in_flight() const { return _in_flight; }
    size_t max_in_flight() const { return _cfg.max_in_flight; }
    bool has_room() const { return _in_flight < _cfg.max_in_flight; }
    // The connection is up and its AUTH/SELECT were answered OK.
    bool connected() const { return _state == State::open && _hello_pending == 0; }
    // No operation of the sink's in flight on the ring.
    bool idle() const { return _ops == 0; }
    const RedisSinkStats& stats() const { return _stats; }
    // Why the last connection failed or was refused ("" when none did): for the log when the
    // engine's breaker opens. Never holds a secret.
    const std::string& last_error() const { return _last_error; }

    // Shutdown: closes the connection and cancels its operations; nothing more is reported (the
    // attempts were never settled and run again). The cancellations complete through on_cqe();
    // idle() once they are all in.
    void stop();

private:
    enum class State : uint8_t { down, resolving, connecting, handshaking, open };
    enum class Command : uint8_t { xadd, auth, select };
    struct Pending; // a command awaiting its reply
    struct Settled; // an outcome awaiting its report

    void handle(const io_uring_cqe& cqe, int64_t now_ns);
    void connect(int64_t now_ns);
    void on_connected();
    void queue_hello();
    void request_flush();
    void flush();
    void on_send(int res);
    void on_recv(int res);
    // Parse what the connection received and settle what the replies answer; false, with
    // `doom`, when the connection cannot go on (the caller closes it: not from inside a TLS
    // callback).
    bool absorb(std::string& doom);
    bool on_reply(const resp::Value& v, std::string& doom);
    void conn_failed(std::string_view what);
    void settle(uint64_t cookie, int64_t started_ns, RedisOutcome::Kind kind,
                std::string_view error, std::string_view entry_id);
    void post_report();
    void request_resolution();
    void on_resolved(int res, int64_t now_ns);
    template <typename F>
    void report(F& done);

    io::Ring& _ring;
    uint8_t _slot;
    std::string _name;
    config::RedisSinkConfig _cfg;
    RedisSinkOptions _options;
    std::string _where; // "redis sink NAME (HOST:PORT)", for messages
    // The stream template split at each {route}: pieces joined by the route's name.
    std::vector<std::string> _stream_pieces;
    std::string _maxlen_text;

    size_t _ops = 0; // operations in flight on the ring
    base::BufferPool _pool;
    std::unique_ptr<Endpoint> _endpoint;
    std::unique_ptr<RingConnection> _conn;
    std::unique_ptr<Backoff> _backoff;

    // The connection.
    State _state = State::down;
    int64_t _state_since_ns = 0; // of connecting/handshaking: for the timeout
    int64_t _next_connect_ns = 0;
    size_t _hello_pending = 0; // AUTH/SELECT replies awaited
    resp::Parser _parser;

    // Commands awaiting their reply, oldest first: a ring of max_in_flight + hello slots.
    std::vector<Pending> _pending;
    size_t _pending_head = 0;
    size_t _pending_count = 0;
    // Outcomes not yet reported; _settled_count of _settled are live (the rest keep their
    // strings' capacity for reuse).
    std::vector<Settled> _settled;
    size_t _settled_count = 0;
    bool _report_posted = false;

    size_t _in_flight = 0;
    bool _stopped = false;
    bool _in_cqe = false;
    int64_t _now_ns = 0;
    std::string _last_error;
    RedisSinkStats _stats;
    std::string _headers_json; // start()'s scratch, reused
    std::string _stream;       // start()'s scratch, reused
    std::string _settle_scratch;
};

struct RedisSink::Settled {
    uint64_t cookie = 0;
    RedisOutcome::Kind kind = RedisOutcome::Kind::retry;
    int64_t duration_ns = 0;
    std::string error;
    std::string entry_id;
};

template <typename F>
void RedisSink::report(F& done) {
    // done may start deliveries whose outcome is known at once (the connection is down): they
    // are reported by a later CQE, so this loop ends.
    const size_t n = _settled_count;
    for (size_t i = 0; i < n; ++i) {
        const Settled& s = _settled[i];
        RedisOutcome o;
        o.kind = s.kind;
        o.error = s.error;
        o.entry_id = s.entry_id;
        o.duration_ns = s.duration_ns;
        // A delivery counts as in flight until reported, so that no more are settled than
        // _settled has room for (it never reallocates under the views handed out here).
        --_in_flight;
        done(s.cookie, o);
        if (_stopped) {
            break;
        }
    }
    // Outcomes added during the calls move to the front.
    for (size_t i = n; i < _settled_count; ++i) {
        std::swap(_settled[i - n], _settled[i]);
    }
    _settled_count = _stopped ? 0 : _settled_count - n;
    if (_settled_count > 0) {
        post_report();
    }
}

template <typename F>
void RedisSink::on_cqe(const io_uring_cqe& cqe, int64_t now_ns, F&& done) {
    _in_cqe = true;
    handle(cqe, now_ns);
    _in_cqe = false;
    report(done);
}

} // namespace portcullis::deliver
