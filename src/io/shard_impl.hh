// The inside of one shard, shared by the files that implement it along the data flow:
//   shard.cc        start-up, the event loop, accepting, timers, drain
//   connection.cc   bytes in and out of a connection: receive, staging and backpressure, send,
//                   shutdown and close; on TLS listeners the transport (tls::Transport) sits
//                   between the socket's bytes and HTTP, at the receive and at the send
//   exchange.cc     HTTP/1.1 on a connection: heads, body framing, 100-continue, answers; the
//                   webhook itself is ingest::Ingest's
//   control_jobs.cc the doorbell, and jobs enqueued through the control plane: from the inbox
//                   through Ingest::submit and the spool to the outbox
#pragma once

#include "portcullis/base/buffer_pool.hh"
#include "portcullis/base/doorbell.hh"
#include "portcullis/base/log.hh"
#include "portcullis/base/time.hh"
#include "portcullis/http/parser.hh"
#include "portcullis/http/response.hh"
#include "portcullis/ingest/control_job.hh"
#include "portcullis/ingest/webhook.hh"
#include "portcullis/io/ring.hh"
#include "portcullis/io/shard.hh"
#include "portcullis/queue/spool_writer.hh"
#include "portcullis/tls/transport.hh"

#include <cstring>
#include <memory>
#include <optional>
#include <unistd.h>
#include <vector>

namespace portcullis::admit {
enum class ProxyMode : uint8_t;
}

namespace portcullis::io {

// Receive buffers: 256 x 16 KiB per shard. Every receive lands in one of them and they go back
// to the kernel as soon as their bytes are parsed or copied, so the count bounds memory, not
// connections.
constexpr unsigned recv_buffer_count = 256;
constexpr unsigned recv_buffer_size = 16 * 1024;
constexpr uint16_t recv_buffer_group = 1;
constexpr unsigned ring_entries = 4096;
// Pipelining: what a client sends beyond the request being answered waits, unparsed, in its
// connection's staging buffer. Each receive is armed for the room left under this many bytes
// (prep_limited_recv), and with the room gone it is not re-armed until answers have drained the
// pipeline; meanwhile the rest waits in the socket's buffer and TCP flow control stops the
// client. 64 KiB holds a few typical webhooks: the next one is parsed as soon as an answer goes.
constexpr size_t pipeline_pause_bytes = 64 * 1024;
// A receive passes its limit by less than one buffer, and an incomplete head (up to
// server.limits.header_bytes) may be staged too. Past both the connection's input is cut: it
// cannot happen unless memory runs out.
constexpr size_t pipeline_max_bytes = pipeline_pause_bytes + 2 * size_t(recv_buffer_size);
// Close reasons a flood can repeat (one per connection a client resets) are logged at most
// once a second per shard and reason; the lines held back are counted in the next one.
constexpr int64_t close_log_interval_ns = base::ns_per_s;
// After a final response with unread input: how long to drain the input before closing, so
// that the peer reads the response instead of a reset.
constexpr int64_t linger_ns = 2 * base::ns_per_s;
// The loop wakes at least this often to expire timers and notice a drain.
constexpr int64_t tick_ns = 50 * base::ns_per_ms;

enum class Op : uint8_t {
    accept = 1,
    recv = 2,
    send = 3,
    close = 4,
    cancel = 5,
    shutdown = 6,
    log_write = 7,
    close_unowned = 8,
    doorbell = 9,
};

constexpr uint64_t pack(Op op, uint32_t gen, uint32_t index) {
    return uint64_t(op) << 56 | uint64_t(gen & 0xffffff) << 32 | index;
}
constexpr uint8_t op_of(uint64_t ud) {
    return static_cast<uint8_t>(ud >> 56);
}
constexpr uint32_t gen_of(uint64_t ud) {
    return static_cast<uint32_t>(ud >> 32) & 0xffffff;
}
constexpr uint32_t index_of(uint64_t ud) {
    return static_cast<uint32_t>(ud);
}

enum class State : uint8_t {
    free,
    reading_proxy, // server.client_ip.proxy_protocol: waiting for the PROXY header
    reading_head,  // between requests (earlier answers may be owed), or a head partly received
    reading_body,  // the newest exchange's body is arriving
    finishing,     // the answer that ends the connection is owed: further input is dropped
    lingering,     // final response sent; draining input until EOF or the deadline
    closing,       // close submitted; the slot is freed when it completes
};

// Pipelining: requests a connection may have between their heads and their answers. Each is
// parsed, verified and handed to the spool as soon as it arrives; answers go out strictly in
// request order. Past this many, or past pipeline_pause_bytes of their records, the next
// requests wait unparsed in the staging buffer (and then in the client's socket).
constexpr unsigned max_pipelined = 16;

struct Connection;

// One request between its head and its answer: the webhook, the HTTP framing of its body and
// its place in the connection's order. Pooled per shard: only connections with requests in
// progress hold any. Its address is the spool cookie, so it outlives a connection that closes
// while its job is being written.
struct Exchange {
    ingest::Webhook webhook;
    http::BodyFraming framing = http::BodyFraming::none;
    uint64_t remaining = 0; // content-length framing
    http::ChunkedDecoder chunked;
    Connection* conn = nullptr;    // null once the connection has gone
    Exchange* next = nullptr;      // the connection's next request, or the next free exchange
    bool keep_alive = true;        // this request let the connection go on
    bool spooling = false;         // its record is in a group commit
    bool answered = false;         // webhook.answer is final
    bool last = false;             // the connection closes after this answer
    bool continue_owed = false;    // Expect: 100-continue, not yet sent
    bool head_request = false;     // HEAD: every answer goes without its body (RFC 9110 9.3.2)
    Exchange* held_next = nullptr; // in the shard's list of records held back from a full spool
    config::Durability held_durability = config::Durability::fsync; // what enqueue was asked
    // A job enqueued through the control plane (no connection): handed back once answered.
    ingest::ControlJob* control = nullptr;
};

struct TimerList;

struct Connection {
    uint32_t index = 0;
    uint32_t gen = 0;
    int fd = -1;
    State state = State::free;
    bool recv_armed = false;
    bool send_inflight = false;
    bool peer_eof = false;
    bool shutdown_inflight = false; // closing waits for it: see start_linger
    bool recv_paused = false;       // not re-armed until answers drain its pipeline
    bool input_cut = false;         // input over pipeline_max_bytes: further bytes are dropped
    bool out_closes = false;        // the answers in `out` end the connection
    uint8_t out_exchanges = 0;      // exchanges whose answers are in `out`
    uint8_t exchanges = 0;          // in the list below
    // The socket's peer; after a PROXY header, the client the balancer names.
    base::PeerAddress peer;
    admit::ConnectionCounts::Ticket counted; // in server.max_connections_per_ip
    base::Buffer* staging = nullptr; // bytes not yet parsed: a partial head or pipelined requests
    size_t staged_from = 0;          // parsed prefix of staging
    size_t scanned = 0;              // bytes of the current head already seen by the parser
    // Requests in progress, oldest first (its answer goes out first); the newest may be reading
    // its body.
    Exchange* first = nullptr;
    Exchange* newest = nullptr;
    // Timer: one intrusive list per kind of deadline, each ordered by deadline.
    int64_t deadline = 0;
    TimerList* timer = nullptr;
    Connection* t_prev = nullptr;
    Connection* t_next = nullptr;
    // Answers being sent, from the pool while they are (an idle connection holds none).
    base::Buffer* out = nullptr;
    size_t out_sent = 0;
    // TLS listeners: the session, and ciphertext waiting for the send in flight (handshake
    // flights, tickets, alerts; sealed answers go out in `out`).
    SSL* ssl = nullptr;
    base::Buffer* tls_out = nullptr;
};

// Deadlines of one kind (idle, header, body, linger) all have the same length, so appending
// at the tail keeps each list sorted and expiry only looks at heads.
struct TimerList {
    Connection* head = nullptr;
    Connection* tail = nullptr;
    int64_t length_ns = 0;

    void remove(Connection& c) {
        (c.t_prev != nullptr ? c.t_prev->t_next : head) = c.t_next;
        (c.t_next != nullptr ? c.t_next->t_prev : tail) = c.t_prev;
        c.t_prev = c.t_next = nullptr;
        c.timer = nullptr;
    }
    void push(Connection& c, int64_t deadline) {
        c.deadline = deadline;
        c.timer = this;
        c.t_prev = tail;
        c.t_next = nullptr;
        (tail != nullptr ? tail->t_next : head) = &c;
        tail = &c;
    }
};

// Log lines written on the request path are gathered per iteration and written to stderr
// through the ring; with one write in flight at a time, lines that find both halves full are
// counted as dropped rather than blocking the shard.
class LogRing {
public:
    static constexpr size_t half = 64 * 1024;

    bool append(std::string_view line) {
        Half& h = _halves[_current];
        if (line.size() > half - h.size) {
            return false;
        }
        std::memcpy(h.data + h.size, line.data(), line.size());
        h.size += line.size();
        return true;
    }
    void flush(Ring& ring) {
        Half& h = _halves[_current];
        if (_inflight || h.size == 0) {
            return;
        }
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_write(sqe, STDERR_FILENO, h.data, static_cast<unsigned>(h.size),
                            static_cast<uint64_t>(-1));
        sqe->user_data = pack(Op::log_write, 0, 0);
        _inflight = true;
        _current ^= 1;
    }
    void on_written() {
        _inflight = false;
        _halves[_current ^ 1].size = 0;
    }
    bool idle() const { return !_inflight && _halves[_current].size == 0; }

private:
    struct Half {
        char data[half];
        size_t size = 0;
    };
    Half _halves[2];
    unsigned _current = 0;
    bool _inflight = false;
};

struct Shard::Impl final : ingest::Host {
    uint32_t index;
    ShardShared& shared;
    // The configuration new connections and requests get (shared.snapshot as this shard last
    // took it up); a request in progress keeps its own (ingest::Webhook::snap).
    const config::Snapshot* snap;
    const config::Config* cfg;
    std::vector<int> listen_fds;
    size_t tls_from; // listen_fds from here on are TLS listeners
    ShardStats stats;

    Ring ring;
    BufferRing buffers;
    base::BufferPool pool;
    queue::SpoolWriter spool;
    ingest::Clock clock;
    ingest::Ingest ingest;
    http::DateCache date;
    http::Limits limits;
    LogRing logs;
    base::LogThrottle error_close_log, overflow_close_log, tls_failure_log;
    // TLS listeners only: the record layer, and the certificates new sessions start from.
    std::optional<tls::Transport> tls;
    tls::Reader tls_reader;

    std::vector<std::unique_ptr<Connection[]>> conn_chunks;
    std::vector<Connection*> conns; // by index
    std::vector<uint32_t> free_conns;
    uint32_t open_conns = 0;
    static constexpr uint32_t chunk = 256;

    // Exchanges not in use (3 KiB each). The request path takes and returns them without the
    // allocator; once a second the list is cut to the most that were in use at once during
    // that second (at least min_free_exchanges), so that a steady load keeps what it needs and
    // a burst's memory is given back when it is over.
    Exchange* free_exchanges = nullptr;
    uint32_t free_exchange_count = 0;
    uint32_t exchanges_in_use = 0;
    uint32_t exchanges_peak = 0; // in use at once since the last trim
    int64_t next_exchange_trim = 0;
    static constexpr uint32_t min_free_exchanges = 64;

    std::vector<http::Header> header_scratch;

    TimerList idle_timers, header_timers, body_timers, linger_timers;

    bool draining = false;
    int64_t drain_deadline = 0;
    // Wakes the loop from another thread; the reasons are in the queues drained at its top.
    base::Doorbell doorbell;
    // Jobs enqueued through the control plane: in from it, and back once answered.
    ingest::ControlJobQueue control_inbox{ingest::control_jobs_per_shard};
    ingest::ControlJobQueue control_outbox{ingest::control_jobs_per_shard};
    // server.client_ip.proxy_protocol; empty when off.
    std::optional<admit::ProxyMode> proxy_mode;
    uint32_t accepts_armed = 0;

    Impl(uint32_t i, ShardShared& s, std::vector<int> fds, size_t tls_listeners_from);
    // Top of the loop: takes up a reloaded configuration, and says which generations this shard
    // uses and still holds (shared.uses[index]).
    void take_up_snapshot();
    // The parts of the configuration the shard keeps in its own form (limits, timers, PROXY).
    void apply_config();
    ~Impl();
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    // ingest::Host
    bool enqueue(std::span<const uint8_t> record, uint64_t cookie,
                 config::Durability durability) override;
    // Records the spool had no room for (its next group full while two are in flight), in the
    // order they came: offered again before each flush, so that a burst of pipelined requests
    // waits for the disk instead of being refused.
    Exchange* held_first = nullptr;
    Exchange* held_last = nullptr;
    void offer_held();
    void log(base::LogLine& line) override;
    // One slot copied into this shard's event queue; a full queue drops it (counted there).
    void event(const base::Event& e) override {
        if (shared.events != nullptr) {
            shared.events[index]->try_push(e);
        }
    }

    // shard.cc: start-up, loop, accept, timers, drain
    std::string init();
    void run();
    void read_clocks();
    void dispatch(const io_uring_cqe& cqe);
    Connection* lookup(uint64_t ud);
    void arm_accept(uint32_t listener);
    void on_accept(const io_uring_cqe& cqe);
    bool count_client(Connection& c);
    Connection& allocate_connection();
    void free_connection(Connection& c);
    void expire_timers();
    void on_timeout(Connection& c);
    void start_drain();
    bool drain_finished();

    // connection.cc: bytes in and out
    void arm_recv(Connection& c);
    void on_recv(const io_uring_cqe& cqe);
    void on_peer_eof(Connection& c);
    static size_t staged_bytes(const Connection& c) {
        return c.staging != nullptr ? c.staging->size - c.staged_from : 0;
    }
    static bool is_open(const Connection& c) {
        return c.state != State::free && c.state != State::closing;
    }
    static bool pipeline_full(const Connection& c);
    void keep_reading(Connection& c);
    void cut_input(Connection& c);
    void close_for_error(Connection& c, std::string_view what, int error);
    void log_close(const Connection& c, base::LogThrottle& throttle, std::string_view reason,
                   int error);
    void on_socket_bytes(Connection& c, std::string_view in);
    void on_bytes(Connection& c, std::string_view in);
    // connection.cc, TLS: ciphertext in, plaintext to on_bytes, ciphertext out.
    void on_tls_bytes(Connection& c, std::string_view in);
    void decrypt(Connection& c, std::string_view cipher);
    void on_handshake_done(Connection& c);
    void on_tls_failure(Connection& c);
    bool seal_answers(Connection& c, base::Buffer*& out, bool closes);
    void flush_tls(Connection& c);
    void send_tls_out(Connection& c, bool closes);
    static bool in_handshake(const Connection& c) {
        return c.ssl != nullptr && !tls::Transport::handshake_done(c.ssl);
    }
    bool stage(Connection& c, std::string_view bytes);
    void drive_staged(Connection& c);
    void start_send(Connection& c);
    void on_send(const io_uring_cqe& cqe);
    void end_input(Connection& c, bool dropped);
    void start_linger(Connection& c);
    void close_connection(Connection& c);
    void submit_close(Connection& c);
    void on_shutdown(const io_uring_cqe& cqe);
    void on_closed(const io_uring_cqe& cqe);
    void add_peer(base::LogLine& line, const Connection& c);

    // control_jobs.cc: the doorbell, and jobs from the control plane
    void arm_doorbell();
    void on_doorbell(const io_uring_cqe& cqe);
    void take_control_jobs();
    void finish_control_job(Exchange& ex);

    // exchange.cc: HTTP/1.1 on a connection
    size_t process(Connection& c, std::string_view in);
    bool can_start_request(const Connection& c) const;
    size_t on_proxy_bytes(Connection& c, std::string_view in);
    size_t on_head_bytes(Connection& c, std::string_view in);
    void on_head(Connection& c, const http::RequestHead& head);
    size_t on_body_bytes(Connection& c, std::string_view in);
    void decided(Connection& c, Exchange& ex, ingest::Next next);
    void on_spooled(uint64_t cookie, bool durable);
    void reject_malformed(Connection& c, http::Error error, std::string_view detail);
    void final_answer(Connection& c, uint16_t status, std::string_view body);
    void pump(Connection& c);
    void on_sent(Connection& c);
    Exchange& push_exchange(Connection& c);
    void drop_newest(Connection& c);
    void release_exchange(Exchange& ex);
    void trim_exchanges();
    static bool has_spooling(const Connection& c);
};

} // namespace portcullis::io
