#include "portcullis/io/shard.hh"

#include "portcullis/admit/client_ip.hh"
#include "portcullis/admit/proxy_protocol.hh"
#include "portcullis/base/address.hh"
#include "portcullis/base/encoding.hh"
#include "portcullis/base/json.hh"
#include "portcullis/base/log.hh"
#include "portcullis/base/time.hh"
#include "portcullis/http/header_policy.hh"
#include "portcullis/http/parser.hh"
#include "portcullis/http/response.hh"
#include "portcullis/io/buffers.hh"
#include "portcullis/queue/dedup.hh"
#include "portcullis/queue/job_id.hh"
#include "portcullis/queue/keys.hh"
#include "portcullis/queue/record.hh"
#include "portcullis/queue/spool_writer.hh"
#include "portcullis/verify/verifier.hh"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <netinet/in.h>
#include <optional>
#include <sys/socket.h>
#include <unistd.h>

namespace portcullis::io {

namespace {

using base::Level;
using base::LogLine;
using base::LogThrottle;

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
// Chunked bodies start with this much room and grow by doubling.
constexpr size_t chunked_initial_room = 16 * 1024;

enum class Op : uint8_t {
    accept = 1,
    recv = 2,
    send = 3,
    close = 4,
    cancel = 5,
    shutdown = 6,
    log_write = 7,
    close_unowned = 8,
    send_continue = 9,
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
    reading_head,  // idle between requests, or a head partly received
    reading_body,
    spooling,  // the job is in a group commit
    sending,   // a response is being written
    lingering, // final response sent; draining input until EOF or the deadline
    closing,   // close submitted; the slot is freed when it completes
};

// A request between its head and its answer. Pooled per shard: only connections with a request
// in progress hold one.
struct Request {
    const config::Route* route = nullptr;
    Buffer* record = nullptr; // record head, then the body as it arrives
    size_t body_start = 0;
    uint64_t body_bytes = 0;
    uint64_t remaining = 0; // content-length framing
    http::BodyFraming framing = http::BodyFraming::none;
    http::ChunkedDecoder chunked;
    queue::JobId id;
    int64_t received_ns = 0;
    // Who sent it: the peer, or the address a trusted proxy forwarded it for.
    base::PeerAddress client;
    verify::VerifyState verify;
    // Dedup and ordering: the keys found so far (head fields at the head, json fields once the
    // body is complete), and the dedup claim held while the job is being written.
    queue::RecordKeys keys;
    std::optional<queue::Fingerprint> ordering_key;
    std::optional<int64_t> ordering_ts;
    queue::FingerprintTable::Ref dedup_claim;
    bool dedup_held = false;
    bool queued = false; // durable: its 202 is owed
    Request* next_free = nullptr;
};

struct TimerList;

struct Connection {
    uint32_t index = 0;
    uint32_t gen = 0;
    int fd = -1;
    State state = State::free;
    bool recv_armed = false;
    bool send_inflight = false;
    bool keep_alive = true;
    bool peer_eof = false;
    bool abandoned = false;         // closed while its job was in the spool group
    bool continue_inflight = false; // the interim 100 Continue is being sent
    bool shutdown_inflight = false; // closing waits for it: see start_linger
    uint8_t continue_bytes_sent = 0;
    // The socket's peer; after a PROXY header, the client the balancer names.
    base::PeerAddress peer;
    admit::ConnectionCounts::Ticket counted; // in server.max_connections_per_ip
    Buffer* staging = nullptr; // bytes not yet parsed: a partial head or pipelined requests
    size_t staged_from = 0;    // parsed prefix of staging
    size_t scanned = 0;        // bytes of the current head already seen by the parser
    Request* req = nullptr;
    // Timer: one intrusive list per kind of deadline, each ordered by deadline.
    int64_t deadline = 0;
    TimerList* timer = nullptr;
    Connection* t_prev = nullptr;
    Connection* t_next = nullptr;
    // Output: responses here are small; a 202 with its job id is about 200 bytes.
    uint16_t out_len = 0;
    uint16_t out_sent = 0;
    bool close_after_send = false;
    // Backpressure; here they take what was padding (the struct stays 520 bytes).
    bool recv_paused = false; // not re-armed until answers drain its pipeline
    bool input_cut = false;   // input over pipeline_max_bytes: further bytes are dropped
    char out[400];
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

constexpr std::string_view body_not_found = R"({"error":"not_found"})";
constexpr std::string_view body_unauthorized = R"({"error":"unauthorized"})";
constexpr std::string_view body_method_not_allowed = R"({"error":"method_not_allowed"})";
constexpr std::string_view body_too_large = R"({"error":"body_too_large"})";
constexpr std::string_view body_unavailable = R"({"error":"unavailable"})";
constexpr std::string_view body_bad_request = R"({"error":"bad_request"})";
constexpr std::string_view body_timeout = R"({"error":"timeout"})";
constexpr std::string_view body_conflict = R"({"error":"conflict"})";
constexpr std::string_view body_forbidden = R"({"error":"forbidden"})";
constexpr std::string_view body_rate_limited = R"({"error":"rate_limited"})";
constexpr std::string_view body_stale = R"({"error":"stale"})";
// The first copy of this delivery is still being written: its outcome is not known yet.
constexpr std::string_view body_in_progress = R"({"error":"in_progress"})";
constexpr std::string_view retry_after_header = "Retry-After: 1\r\n";

} // namespace

struct Shard::Impl {
    uint32_t index;
    ShardShared& shared;
    const config::Snapshot& snap;
    const config::Config& cfg;
    std::vector<int> listen_fds;
    ShardStats stats;

    Ring ring;
    BufferRing buffers;
    BufferPool pool;
    queue::SpoolWriter spool;
    queue::JobIdGenerator ids;
    http::DateCache date;
    http::Limits limits;
    LogRing logs;
    LogThrottle error_close_log, overflow_close_log;

    std::vector<std::unique_ptr<Connection[]>> conn_chunks;
    std::vector<Connection*> conns; // by index
    std::vector<uint32_t> free_conns;
    uint32_t open_conns = 0;
    static constexpr uint32_t chunk = 256;

    Request* free_requests = nullptr;
    std::vector<std::unique_ptr<Request>> all_requests;

    std::vector<http::Header> header_scratch;
    std::vector<http::Header> stored_headers;

    TimerList idle_timers, header_timers, body_timers, linger_timers;

    int64_t now_unix = 0;
    int64_t now_mono = 0;
    bool draining = false;
    int64_t drain_deadline = 0;
    // server.client_ip.proxy_protocol; empty when off.
    std::optional<admit::ProxyMode> proxy_mode;
    uint32_t accepts_armed = 0;

    Impl(uint32_t i, ShardShared& s, std::vector<int> fds)
        : index(i), shared(s), snap(*s.snapshot), cfg(s.snapshot->config()),
          listen_fds(std::move(fds)), ids(static_cast<uint8_t>(i)) {}

    // ---- start-up --------------------------------------------------------------------------

    std::string init() {
        if (auto err = ring.init(ring_entries, shared.features.setup_flags()); !err.empty()) {
            return err;
        }
        if (auto err = buffers.init(ring, recv_buffer_group, recv_buffer_count, recv_buffer_size);
            !err.empty()) {
            return err;
        }
        auto remember = [this](uint64_t, const queue::JobRecord& rec) { remember_keys(rec); };
        queue::SpoolProgress* progress =
            shared.spool_progress != nullptr ? &shared.spool_progress[index] : nullptr;
        if (auto err = spool.open(cfg.spool.dir, index, cfg.spool, remember, progress);
            !err.empty()) {
            return err;
        }
        limits.header_bytes = cfg.server.header_bytes;
        limits.max_headers = cfg.server.headers;
        header_scratch.resize(cfg.server.headers);
        stored_headers.resize(cfg.server.headers);
        idle_timers.length_ns = cfg.server.idle_timeout_ns;
        header_timers.length_ns = cfg.server.header_timeout_ns;
        body_timers.length_ns = cfg.server.body_timeout_ns;
        linger_timers.length_ns = linger_ns;
        switch (cfg.server.proxy_protocol) {
        case config::ProxyProtocol::off:
            break;
        case config::ProxyProtocol::v1:
            proxy_mode = admit::ProxyMode::v1;
            break;
        case config::ProxyProtocol::v2:
            proxy_mode = admit::ProxyMode::v2;
            break;
        case config::ProxyProtocol::any:
            proxy_mode = admit::ProxyMode::any;
            break;
        }
        return {};
    }

    // ---- event loop ------------------------------------------------------------------------

    void run() {
        read_clocks();
        for (uint32_t i = 0; i < listen_fds.size(); ++i) {
            arm_accept(i);
        }
        while (true) {
            read_clocks();
            date.update(now_unix);
            if (!draining && shared.draining.load(std::memory_order_relaxed)) {
                start_drain();
            }
            expire_timers();
            if (draining && drain_finished()) {
                break;
            }
            spool.flush(ring, now_mono,
                        [this](uint64_t cookie, bool durable) { on_spooled(cookie, durable); });
            buffers.publish();
            logs.flush(ring);
            int rc = ring.submit_and_wait(spool.wait_limit_ns(now_mono, tick_ns));
            if (rc < 0) {
                LogLine(Level::error, "io_uring_enter failed")
                    .field("shard", static_cast<int64_t>(index))
                    .field("error", std::strerror(-rc))
                    .write();
                break;
            }
            read_clocks();
            ring.for_each_cqe([this](const io_uring_cqe& cqe) { dispatch(cqe); });
        }
        // Let the last log lines out before the thread ends.
        logs.flush(ring);
        while (!logs.idle()) {
            ring.submit_and_wait(tick_ns);
            ring.for_each_cqe([this](const io_uring_cqe& cqe) { dispatch(cqe); });
            logs.flush(ring);
        }
    }

    void read_clocks() {
        now_unix = base::unix_ns();
        now_mono = base::mono_ns();
    }

    void dispatch(const io_uring_cqe& cqe) {
        uint8_t op = op_of(cqe.user_data);
        if (op == queue::spool_write_tag || op == queue::spool_sync_tag) {
            spool.on_cqe(cqe, now_mono,
                         [this](uint64_t cookie, bool durable) { on_spooled(cookie, durable); });
            return;
        }
        switch (static_cast<Op>(op)) {
        case Op::accept:
            on_accept(cqe);
            return;
        case Op::recv:
            on_recv(cqe);
            return;
        case Op::send:
            on_send(cqe);
            return;
        case Op::send_continue:
            on_send_continue(cqe);
            return;
        case Op::close:
            on_closed(cqe);
            return;
        case Op::log_write:
            logs.on_written();
            return;
        case Op::shutdown:
            on_shutdown(cqe);
            return;
        case Op::cancel:
        case Op::close_unowned:
            return;
        }
    }

    Connection* lookup(uint64_t ud) {
        uint32_t i = index_of(ud);
        if (i >= conns.size()) {
            return nullptr;
        }
        Connection* c = conns[i];
        if (c->state == State::free || (c->gen & 0xffffff) != gen_of(ud)) {
            return nullptr;
        }
        return c;
    }

    // ---- accept ----------------------------------------------------------------------------

    void arm_accept(uint32_t listener) {
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_multishot_accept(sqe, listen_fds[listener], nullptr, nullptr, SOCK_CLOEXEC);
        sqe->user_data = pack(Op::accept, 0, listener);
        ++accepts_armed;
    }

    void on_accept(const io_uring_cqe& cqe) {
        uint32_t listener = index_of(cqe.user_data);
        bool more = (cqe.flags & IORING_CQE_F_MORE) != 0;
        if (!more) {
            --accepts_armed;
            if (!draining && listener < listen_fds.size() && listen_fds[listener] >= 0) {
                arm_accept(listener);
            }
        }
        if (cqe.res < 0) {
            return; // ECANCELED on drain; EMFILE and the like: the re-armed accept retries
        }
        int fd = cqe.res;
        uint32_t total = shared.connections.fetch_add(1, std::memory_order_relaxed);
        if (draining || total >= cfg.server.max_connections) {
            shared.connections.fetch_sub(1, std::memory_order_relaxed);
            stats.refused_connections.fetch_add(1, std::memory_order_relaxed);
            io_uring_sqe* sqe = ring.sqe();
            io_uring_prep_close(sqe, fd);
            sqe->user_data = pack(Op::close_unowned, 0, 0);
            return;
        }
        Connection& c = allocate_connection();
        c.fd = fd;
        // The peer address: multishot accept shares one address buffer between completions,
        // so it is read per connection instead (once per connection, not per request).
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
            c.peer = base::PeerAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
        }
        stats.accepted_connections.fetch_add(1, std::memory_order_relaxed);
        if (proxy_mode) {
            // Behind a balancer, the client is known once its PROXY header is in. With
            // trusted_proxies set, only those peers may send one.
            c.state = State::reading_proxy;
            if (!snap.trusted_proxies().empty() && !snap.trusted_proxies().contains(c.peer)) {
                stats.proxy_refused.fetch_add(1, std::memory_order_relaxed);
                close_connection(c);
                return;
            }
            header_timers.push(c, now_mono + header_timers.length_ns);
        } else {
            c.state = State::reading_head;
            if (!count_client(c)) {
                close_connection(c);
                return;
            }
            idle_timers.push(c, now_mono + idle_timers.length_ns);
        }
        arm_recv(c);
    }

    // server.max_connections_per_ip, over all shards. Trusted proxies carry many clients and
    // are not capped.
    bool count_client(Connection& c) {
        if (shared.per_client == nullptr || snap.trusted_proxies().contains(c.peer)) {
            return true;
        }
        c.counted = shared.per_client->acquire(admit::rate_key(shared.key_secret, c.peer),
                                               cfg.server.max_connections_per_ip);
        if (!c.counted.admitted) {
            stats.refused_per_client.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        return true;
    }

    Connection& allocate_connection() {
        if (free_conns.empty()) {
            auto block = std::make_unique<Connection[]>(chunk);
            uint32_t base_index = static_cast<uint32_t>(conns.size());
            for (uint32_t i = 0; i < chunk; ++i) {
                block[i].index = base_index + i;
                conns.push_back(&block[i]);
            }
            for (uint32_t i = chunk; i-- > 0;) {
                free_conns.push_back(base_index + i);
            }
            conn_chunks.push_back(std::move(block));
        }
        Connection& c = *conns[free_conns.back()];
        free_conns.pop_back();
        uint32_t index_keep = c.index;
        uint32_t gen = c.gen + 1;
        c = Connection{};
        c.index = index_keep;
        c.gen = gen;
        ++open_conns;
        return c;
    }

    // ---- receive ---------------------------------------------------------------------------

    // A receive for the room left in c's pipeline (backpressure, below).
    void arm_recv(Connection& c) {
        size_t staged = staged_bytes(c);
        auto limit = static_cast<uint32_t>(staged + recv_buffer_size < pipeline_pause_bytes
                                               ? pipeline_pause_bytes - staged
                                               : recv_buffer_size);
        io_uring_sqe* sqe = ring.sqe();
        prep_limited_recv(sqe, c.fd, recv_buffer_group, limit, shared.features.recv_limit);
        sqe->user_data = pack(Op::recv, c.gen, c.index);
        c.recv_armed = true;
    }

    void on_recv(const io_uring_cqe& cqe) {
        bool has_buffer = (cqe.flags & IORING_CQE_F_BUFFER) != 0;
        uint16_t bid = static_cast<uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
        Connection* c = lookup(cqe.user_data);
        if (c == nullptr || c->fd < 0 || c->state == State::closing) {
            if (has_buffer) {
                buffers.recycle(bid);
            }
            return;
        }
        bool more = (cqe.flags & IORING_CQE_F_MORE) != 0;
        if (!more) {
            c->recv_armed = false;
        }
        if (cqe.res > 0 && has_buffer) {
            on_bytes(*c, std::string_view(buffers.buffer(bid), static_cast<size_t>(cqe.res)));
            buffers.recycle(bid);
        } else if (has_buffer) {
            buffers.recycle(bid);
        }
        if (c->state == State::free || c->state == State::closing) {
            return;
        }
        if (cqe.res == 0) {
            on_peer_eof(*c);
            return;
        }
        if (cqe.res == -ENOBUFS) {
            // The ring ran dry for a moment (every connection of the shard draws from it). The
            // re-armed receive goes in after this iteration's buffers are published back.
            stats.recv_no_buffers.fetch_add(1, std::memory_order_relaxed);
        } else if (cqe.res < 0) {
            close_for_error(*c, "recv_failed", -cqe.res);
            return;
        }
        keep_reading(*c);
    }

    void on_peer_eof(Connection& c) {
        c.peer_eof = true;
        // Requests already complete are still answered, pipelined ones included (a client may
        // half-close after sending): on_send closes once they are. Anything else ends here.
        if (c.state == State::spooling || c.state == State::sending) {
            return;
        }
        close_connection(c);
    }

    // ---- backpressure ----------------------------------------------------------------------
    //
    // A connection handles one request at a time: bytes behind it (pipelined requests) are
    // staged unparsed. Every receive is armed for the room left under pipeline_pause_bytes
    // (arm_recv) and ends by itself once it is used; while a connection waits for its answer
    // with the stage full, it is not re-armed, and answers draining the stage re-arm it. So a
    // client's pipeline costs the shard a bounded buffer and waits in the client's own socket
    // buffers; no receive needs cancelling, and nothing is dropped.

    static size_t staged_bytes(const Connection& c) {
        return c.staging != nullptr ? c.staging->size - c.staged_from : 0;
    }

    static bool pipeline_full(const Connection& c) {
        return (c.state == State::spooling || c.state == State::sending) &&
               staged_bytes(c) >= pipeline_pause_bytes;
    }

    // After c's receive ended or its pipeline drained: re-arms the receive unless the stage is
    // full (a pause, counted once) or the input is over.
    void keep_reading(Connection& c) {
        if (!is_open(c) || c.input_cut || c.recv_armed || c.peer_eof) {
            return;
        }
        if (pipeline_full(c)) {
            if (!c.recv_paused) {
                c.recv_paused = true;
                stats.pipeline_pauses.fetch_add(1, std::memory_order_relaxed);
            }
            return;
        }
        c.recv_paused = false;
        arm_recv(c);
    }

    // Input c cannot hold (past pipeline_max_bytes, or no memory to stage it): what is staged
    // stays, further bytes are dropped. The answer owed for a request in progress is still
    // sent, with the close; without one the connection closes now.
    void cut_input(Connection& c) {
        stats.pipeline_overflows.fetch_add(1, std::memory_order_relaxed);
        log_close(c, overflow_close_log, "pipeline_overflow", 0);
        c.input_cut = true; // not re-armed; what a live receive still brings is dropped
        c.keep_alive = false;
        if (c.state == State::spooling) {
            return; // respond() closes: keep_alive is off
        }
        if (c.state == State::sending) {
            c.close_after_send = true;
            return;
        }
        close_connection(c);
    }

    // A receive or a send failed (the peer reset the connection, mostly).
    void close_for_error(Connection& c, std::string_view what, int error) {
        stats.connection_errors.fetch_add(1, std::memory_order_relaxed);
        if (c.state == State::sending && c.req != nullptr && c.req->queued) {
            stats.unanswered_jobs.fetch_add(1, std::memory_order_relaxed);
        }
        log_close(c, error_close_log, what, error);
        close_connection(c);
    }

    // One line per close for a reason, throttled: a flood of them costs a counter each. A job
    // whose answer will not reach its sender (being written, or its 202 failed) is named: the
    // sender will likely send it again.
    void log_close(const Connection& c, LogThrottle& throttle, std::string_view reason, int error) {
        if (!throttle.allow(now_mono, close_log_interval_ns)) {
            return;
        }
        // A reset is the client's doing; input the shard could not hold is its own limit.
        Level level = error != 0 ? Level::info : Level::warn;
        LogLine line(level, "connection closed", now_unix);
        line.field("reason", reason);
        if (error != 0) {
            line.field("error", std::string_view(std::strerror(error)));
        }
        add_peer(line, c);
        line.field("staged_bytes", static_cast<int64_t>(staged_bytes(c)));
        if (c.req != nullptr && (c.state == State::spooling || c.req->queued)) {
            char id[queue::job_id_text_size];
            c.req->id.format(id);
            line.field("unanswered_job", std::string_view(id, sizeof id));
        }
        if (throttle.held_back != 0) {
            line.field("lines_held_back", static_cast<int64_t>(throttle.held_back));
            throttle.held_back = 0;
        }
        log(line);
    }

    // Bytes arrived for c: parse them in place when nothing is staged, else add them to the
    // staging buffer. Whatever cannot be used now is staged before the receive buffer goes back.
    void on_bytes(Connection& c, std::string_view in) {
        if (c.state == State::lingering || c.input_cut) {
            return; // discarded: the connection is closing
        }
        if (c.staging != nullptr) {
            if (!stage(c, in)) {
                cut_input(c);
                return;
            }
            drive_staged(c);
            return;
        }
        size_t used = process(c, in);
        if (used < in.size() && is_open(c) && c.state != State::lingering) {
            if (!stage(c, in.substr(used))) {
                cut_input(c);
            }
        }
    }

    static bool is_open(const Connection& c) {
        return c.state != State::free && c.state != State::closing;
    }

    bool stage(Connection& c, std::string_view bytes) {
        size_t have = staged_bytes(c);
        if (have + bytes.size() > cfg.server.header_bytes + pipeline_max_bytes) {
            return false;
        }
        if (c.staging == nullptr) {
            c.staging = pool.acquire(bytes.size());
            if (c.staging == nullptr) {
                return false;
            }
        } else if (c.staging->room() < bytes.size()) {
            // Compact first; grow only if the unparsed bytes still do not fit.
            if (c.staged_from != 0) {
                std::memmove(c.staging->data(), c.staging->data() + c.staged_from, have);
                c.staging->size = have;
                c.staged_from = 0;
            }
            if (c.staging->room() < bytes.size()) {
                Buffer* bigger = pool.grow(c.staging, have + bytes.size());
                if (bigger == nullptr) {
                    return false;
                }
                c.staging = bigger;
            }
        }
        c.staging->append(bytes.data(), bytes.size());
        return true;
    }

    // Parses what is staged as far as the state allows.
    void drive_staged(Connection& c) {
        while (c.staging != nullptr && is_open(c)) {
            std::string_view pending = c.staging->view().substr(c.staged_from);
            size_t used = process(c, pending);
            if (c.staging == nullptr || !is_open(c)) {
                return;
            }
            c.staged_from += used;
            if (c.staged_from == c.staging->size) {
                pool.release(c.staging);
                c.staging = nullptr;
                c.staged_from = 0;
                return;
            }
            if (used == 0) {
                return;
            }
        }
    }

    // Feeds bytes to the request state machine; returns how many it used. Stops when a
    // request is complete and waiting for its answer, or when more bytes are needed.
    size_t process(Connection& c, std::string_view in) {
        size_t total = 0;
        while (total < in.size() && is_open(c)) {
            size_t n = 0;
            if (c.state == State::reading_head) {
                n = on_head_bytes(c, in.substr(total));
            } else if (c.state == State::reading_proxy) {
                n = on_proxy_bytes(c, in.substr(total));
            } else if (c.state == State::reading_body) {
                n = on_body_bytes(c, in.substr(total));
            } else if (c.state == State::lingering) {
                return in.size();
            }
            if (n == 0) {
                break;
            }
            total += n;
        }
        return total;
    }

    // ---- PROXY header ----------------------------------------------------------------------

    // A connection's first bytes when proxy_protocol is on. Nothing is answered to a bad header:
    // the peer is not speaking HTTP yet, and the connection is closed.
    size_t on_proxy_bytes(Connection& c, std::string_view in) {
        admit::ProxyResult r = admit::parse_proxy(in, *proxy_mode);
        if (r.status == 0) {
            return 0;
        }
        if (r.status < 0) {
            stats.proxy_refused.fetch_add(1, std::memory_order_relaxed);
            LogLine line(Level::info, "PROXY header refused", now_unix);
            line.field("error", r.error);
            add_peer(line, c);
            log(line);
            close_connection(c);
            return in.size();
        }
        if (!r.local) {
            c.peer = r.source;
        }
        header_timers.remove(c);
        c.state = State::reading_head;
        if (!count_client(c)) {
            close_connection(c);
            return in.size();
        }
        idle_timers.push(c, now_mono + idle_timers.length_ns);
        return static_cast<size_t>(r.status);
    }

    // ---- request head ----------------------------------------------------------------------

    size_t on_head_bytes(Connection& c, std::string_view in) {
        http::RequestHead head;
        http::HeadResult r = http::parse_head(in, c.scanned, limits, header_scratch, head);
        if (r.error != http::Error::none) {
            reject_malformed(c, r.error, r.detail);
            return in.size();
        }
        if (r.consumed == 0) {
            if (c.timer == &idle_timers) {
                // The first bytes of a head start its deadline; it does not move after that, so
                // a client trickling bytes is cut off at header timeout.
                idle_timers.remove(c);
                header_timers.push(c, now_mono + header_timers.length_ns);
            }
            c.scanned = in.size();
            return 0;
        }
        c.scanned = 0;
        stats.requests.fetch_add(1, std::memory_order_relaxed);
        on_head(c, head);
        return r.consumed;
    }

    void on_head(Connection& c, const http::RequestHead& head) {
        if (c.timer != nullptr) {
            c.timer->remove(c);
        }
        c.keep_alive = head.keep_alive;
        bool has_body =
            head.framing == http::BodyFraming::chunked ||
            (head.framing == http::BodyFraming::content_length && head.content_length > 0);
        if (draining) {
            respond(c, 503, body_unavailable, retry_after_header, true);
            return;
        }
        if (head.path == "/healthz") {
            bool is_head = head.method == "HEAD";
            if (head.method != "GET" && !is_head) {
                respond(c, 405, body_method_not_allowed, "Allow: GET, HEAD\r\n", has_body);
                return;
            }
            respond(c, 200, "ok", {}, has_body, "text/plain", is_head);
            return;
        }
        // Who is asking, before anything else is spent on them.
        const base::PeerAddress client =
            snap.trusted_proxies().empty()
                ? c.peer
                : admit::client_address(c.peer, head.headers, snap.trusted_proxies());
        if (snap.deny().contains(client)) {
            refuse_denied(c, client, has_body);
            return;
        }
        const config::Route* route = snap.match(head.path);
        if (route == nullptr) {
            respond(c, 404, body_not_found, {}, has_body);
            return;
        }
        if (!route->allows_method(head.method)) {
            respond(c, 405, body_method_not_allowed, route->allow_header, has_body);
            return;
        }
        Request* req = acquire_request();
        c.req = req;
        req->route = route;
        req->id = ids.next(now_unix);
        req->received_ns = now_unix;
        req->client = client;
        if (!route->allow.empty() && !route->allow.contains(client)) {
            reject(c, 403, base::RejectReason::ip_denied, head.headers, has_body);
            return;
        }
        // The per-client limit comes before any byte of the body is hashed: a flood costs a
        // table lookup.
        if (route->per_ip_limit &&
            !admit_rate(c, admit::rate_key(route->key_seed ^ shared.key_secret, client),
                        *route->per_ip_limit, head.headers, has_body)) {
            return;
        }
        req->keys = {};
        req->ordering_key.reset();
        req->ordering_ts.reset();
        req->dedup_held = false;
        req->queued = false;
        if (route->config->dedup || route->config->ordering) {
            read_keys(*req, &head, {});
        }
        req->framing = head.framing;
        req->remaining = head.content_length;
        req->body_bytes = 0;
        req->chunked.reset();
        req->verify.reset();
        if (head.framing == http::BodyFraming::content_length &&
            head.content_length > cfg.server.body_bytes) {
            // Decided from Content-Length before reading any of the body.
            reject(c, 413, base::RejectReason::body_too_large, head.headers, true);
            return;
        }
        verify::Reason reason = route->verifier->begin(head.headers, now_unix, req->verify);
        if (reason != verify::Reason::ok) {
            reject(c, 401, verify::reject_reason_of(reason), head.headers, has_body);
            return;
        }
        // Stored with the job: the request's fields less those the route does not keep.
        std::span<const http::Header> stored(
            stored_headers.data(),
            http::select_stored(head.headers, route->stored_fields, stored_headers));
        queue::JobMeta meta{req->id, route->config->name, now_unix, req->client,
                            route->config->dedup.has_value() ||
                                route->config->ordering.has_value()};
        size_t head_size = queue::job_record_head_size(meta.route, stored, meta.with_keys);
        size_t body_room =
            head.framing == http::BodyFraming::chunked ? chunked_initial_room : head.content_length;
        req->record = pool.acquire(head_size + body_room);
        if (req->record == nullptr) {
            respond(c, 503, body_unavailable, retry_after_header, true);
            return;
        }
        req->record->size = queue::encode_job_head(
            meta, stored, std::span<uint8_t>(req->record->data(), req->record->capacity));
        req->body_start = req->record->size;
        if (!has_body) {
            complete_body(c);
            return;
        }
        c.state = State::reading_body;
        body_timers.push(c, now_mono + body_timers.length_ns);
        if (head.expect_continue) {
            c.continue_bytes_sent = 0;
            start_continue(c);
        }
    }

    // ---- request body ----------------------------------------------------------------------

    size_t on_body_bytes(Connection& c, std::string_view in) {
        Request& req = *c.req;
        if (req.framing == http::BodyFraming::content_length) {
            size_t take =
                in.size() < req.remaining ? in.size() : static_cast<size_t>(req.remaining);
            if (!append_body(c, in.substr(0, take))) {
                return in.size();
            }
            req.remaining -= take;
            if (req.remaining == 0) {
                complete_body(c);
            }
            return take;
        }
        http::ChunkedDecoder::Step step = req.chunked.feed(in);
        if (step.error != http::Error::none) {
            reject_malformed(c, step.error, step.detail);
            return in.size();
        }
        if (!step.data.empty()) {
            if (req.body_bytes + step.data.size() > cfg.server.body_bytes) {
                reject(c, 413, base::RejectReason::body_too_large, {}, true);
                return in.size();
            }
            if (!append_body(c, step.data)) {
                return in.size();
            }
        }
        if (step.done) {
            complete_body(c);
        }
        return step.consumed;
    }

    bool append_body(Connection& c, std::string_view data) {
        Request& req = *c.req;
        if (req.record->room() < data.size()) {
            size_t want = req.record->capacity * 2;
            if (want < req.record->size + data.size()) {
                want = req.record->size + data.size();
            }
            Buffer* bigger = pool.grow(req.record, want);
            if (bigger == nullptr) {
                respond(c, 503, body_unavailable, retry_after_header, true);
                return false;
            }
            req.record = bigger;
        }
        req.record->append(data.data(), data.size());
        req.body_bytes += data.size();
        req.route->verifier->update(req.verify, base::as_bytes(data));
        return true;
    }

    void complete_body(Connection& c) {
        Request& req = *c.req;
        if (c.timer != nullptr) {
            c.timer->remove(c);
        }
        std::span<uint8_t> record = req.record->bytes();
        const verify::Verifier& verifier = *req.route->verifier;
        verify::Reason reason = verifier.finish(req.verify, {record, req.body_start});
        stats.ed25519_checks.fetch_add(req.verify.ed25519_checks, std::memory_order_relaxed);
        if (reason != verify::Reason::ok) {
            reject(c, 401, verify::reject_reason_of(reason), {}, false);
            return;
        }
        // The route's limit counts verified requests only: forged ones cannot spend it.
        if (req.route->route_limit &&
            !admit_rate(c, admit::route_rate_key(req.route->key_seed ^ shared.key_secret),
                        *req.route->route_limit, {}, false)) {
            return;
        }
        std::array<char, verify::max_handshake_answer> answer;
        if (std::string_view hs = verifier.handshake(record.subspan(req.body_start), answer);
            !hs.empty()) {
            // The provider checking the endpoint (Slack url_verification, Discord PING): answered
            // after verification, never enqueued.
            stats.handshakes.fetch_add(1, std::memory_order_relaxed);
            respond(c, 200, hs, {}, !c.keep_alive);
            return;
        }
        if (!admit_keys(c, record)) {
            return;
        }
        queue::seal_record(record);
        config::Durability durability =
            req.route->config->durability.value_or(cfg.spool.durability);
        if (!spool.append(record, uint64_t(c.gen) << 32 | c.index, durability)) {
            settle_keys(req, false);
            respond(c, 503, body_unavailable, retry_after_header, !c.keep_alive);
            return;
        }
        c.state = State::spooling;
    }

    // ---- rate limits -----------------------------------------------------------------------

    // Counts the request against a limit; refuses it (429 with Retry-After in whole seconds)
    // and returns false when the limit is spent.
    bool admit_rate(Connection& c, uint64_t key, const admit::Limit& limit,
                    std::span<const http::Header> headers, bool close) {
        admit::RateLimiter::Decision d = shared.limiter->check(key, limit, now_mono);
        if (d.allowed) {
            return true;
        }
        char retry_after[40];
        int n = std::snprintf(retry_after, sizeof retry_after, "Retry-After: %lld\r\n",
                              static_cast<long long>(d.retry_after_s));
        reject(c, 429, base::RejectReason::rate_limited, headers, close,
               std::string_view(retry_after, n > 0 ? static_cast<size_t>(n) : 0));
        return false;
    }

    // ---- dedup and ordering ----------------------------------------------------------------

    // Start-up: a job recovered from the spool is remembered as if it had just been accepted,
    // under the dedup window its route has now, so that a restart does not forget.
    void remember_keys(const queue::JobRecord& rec) {
        const config::Route* route = nullptr;
        for (const config::Route& r : snap.routes()) {
            if (r.config->name == rec.route) {
                route = &r;
            }
        }
        if (route == nullptr) {
            return;
        }
        const int64_t now = base::unix_ns();
        if (rec.keys.has_dedup && route->config->dedup && shared.dedup != nullptr) {
            shared.dedup->remember(rec.keys.dedup_key, rec.keys.body, rec.id,
                                   rec.received_at_ns + route->config->dedup->window_ns, now);
        }
        if (rec.keys.has_ordering && route->config->ordering && shared.ordering != nullptr) {
            shared.ordering->advance(rec.keys.ordering_key, rec.keys.ordering_ts, now);
        }
    }

    // Reads the keys whose field references this stage can see: header, query and path ones
    // from the head (while its views are valid: head set), json ones from the complete body.
    void read_keys(Request& req, const http::RequestHead* head, std::string_view body) {
        const config::RouteConfig& rc = *req.route->config;
        auto value = [&](const config::FieldRef& ref) -> std::optional<std::string_view> {
            if ((ref.kind == config::FieldRef::Kind::json) != (head == nullptr)) {
                return std::nullopt; // read at the other stage
            }
            return head != nullptr ? queue::head_field(ref, *head, *req.route)
                                   : queue::json_field(ref, body);
        };
        auto key = [&](std::string_view v) {
            return queue::fingerprint(base::as_bytes(v), req.route->key_seed);
        };
        if (rc.dedup) {
            if (auto v = value(rc.dedup->key)) {
                req.keys.has_dedup = true;
                req.keys.dedup_key = key(*v);
            }
        }
        if (rc.ordering) {
            if (auto v = value(rc.ordering->key)) {
                req.ordering_key = key(*v);
            }
            if (auto v = value(rc.ordering->timestamp)) {
                req.ordering_ts = queue::parse_timestamp(*v);
            }
        }
    }

    // With the body complete and verified: reads the json keys, answers a duplicate, a conflict
    // or a stale event, and otherwise claims the dedup key and fills the record's keys block.
    // Returns false when the request has been answered.
    bool admit_keys(Connection& c, std::span<uint8_t> record) {
        Request& req = *c.req;
        const config::RouteConfig& rc = *req.route->config;
        if (!rc.dedup && !rc.ordering) {
            return true;
        }
        std::string_view body(reinterpret_cast<const char*>(record.data()) + req.body_start,
                              record.size() - req.body_start);
        read_keys(req, nullptr, body);
        if (rc.dedup && !req.keys.has_dedup) {
            // Nothing to deduplicate by: accepted as it is, and counted.
            stats.dedup_unkeyed.fetch_add(1, std::memory_order_relaxed);
        }
        if (req.keys.has_dedup) {
            req.keys.body = queue::fingerprint(base::as_bytes(body));
            queue::DedupTable::Claim claim =
                shared.dedup->claim(req.keys.dedup_key, req.keys.body, req.id,
                                    req.received_ns + rc.dedup->window_ns, now_unix);
            switch (claim.outcome) {
            case queue::DedupTable::Outcome::claimed:
                req.dedup_claim = claim.ticket;
                req.dedup_held = true;
                break;
            case queue::DedupTable::Outcome::duplicate:
                stats.duplicates.fetch_add(1, std::memory_order_relaxed);
                answer_job(c, 200, claim.first, "duplicate");
                return false;
            case queue::DedupTable::Outcome::conflict:
                reject(c, 409, base::RejectReason::conflict, {}, false);
                return false;
            case queue::DedupTable::Outcome::in_flight:
                stats.dedup_in_flight.fetch_add(1, std::memory_order_relaxed);
                respond(c, 503, body_in_progress, retry_after_header, !c.keep_alive);
                return false;
            }
        }
        if (rc.ordering) {
            req.keys.has_ordering = req.ordering_key.has_value() && req.ordering_ts.has_value();
            if (!req.keys.has_ordering) {
                stats.ordering_unkeyed.fetch_add(1, std::memory_order_relaxed);
            } else {
                req.keys.ordering_key = *req.ordering_key;
                req.keys.ordering_ts = *req.ordering_ts;
                if (shared.ordering->stale(req.keys.ordering_key, req.keys.ordering_ts, now_unix)) {
                    settle_keys(req, false);
                    reject(c, 409, base::RejectReason::stale, {}, false);
                    return false;
                }
            }
        }
        queue::set_record_keys(record, req.keys);
        return true;
    }

    // The job is durable (the keys take effect) or was not written (the dedup key is free).
    void settle_keys(Request& req, bool durable) {
        if (req.dedup_held) {
            if (durable) {
                shared.dedup->commit(req.dedup_claim);
            } else {
                shared.dedup->abandon(req.dedup_claim);
            }
            req.dedup_held = false;
        }
        if (durable && req.keys.has_ordering &&
            !shared.ordering->advance(req.keys.ordering_key, req.keys.ordering_ts, now_unix)) {
            stats.ordering_unrecorded.fetch_add(1, std::memory_order_relaxed);
        }
    }

    // 202 {"id":..,"status":"queued"} or 200 {"id":<first>,"status":"duplicate"}.
    void answer_job(Connection& c, uint16_t status, const queue::JobId& id,
                    std::string_view state) {
        char text[queue::job_id_text_size];
        id.format(text);
        base::FixedBuffer<96> body;
        base::JsonWriter json(body);
        json.begin_object()
            .key("id")
            .string(std::string_view(text, sizeof text))
            .key("status")
            .string(state)
            .end_object();
        respond(c, status, body.view(), {}, !c.keep_alive);
    }

    void on_spooled(uint64_t cookie, bool durable) {
        uint32_t i = static_cast<uint32_t>(cookie);
        if (i >= conns.size()) {
            return;
        }
        Connection& c = *conns[i];
        if (c.gen != static_cast<uint32_t>(cookie >> 32) || c.req == nullptr) {
            return;
        }
        settle_keys(*c.req, durable);
        if (c.abandoned) {
            // The peer went away while its job was being written; the job stands (it is on
            // disk if durable), only the answer is lost (named when the close was logged). Now
            // the record buffer can go, and the slot too once its close has completed.
            if (durable) {
                stats.unanswered_jobs.fetch_add(1, std::memory_order_relaxed);
            }
            release_request(c);
            c.abandoned = false;
            if (c.state != State::closing) {
                free_connection(c);
            }
            return;
        }
        if (!durable) {
            respond(c, 503, body_unavailable, retry_after_header, !c.keep_alive);
            return;
        }
        stats.jobs_queued.fetch_add(1, std::memory_order_relaxed);
        c.req->queued = true;
        answer_job(c, 202, c.req->id, "queued");
    }

    // ---- answers ---------------------------------------------------------------------------

    void reject_malformed(Connection& c, http::Error error, std::string_view detail) {
        uint16_t status = http::status_of(error);
        LogLine line(Level::warn, "request refused", now_unix);
        line.field("reason", status == 431 ? std::string_view("headers_too_large")
                                           : std::string_view("malformed"))
            .field("detail", detail)
            .field("status", static_cast<int64_t>(status));
        add_peer(line, c);
        log(line);
        respond(c, status, body_bad_request, {}, true);
    }

    // Refuses the current request (c.req is set). `close` when its body is left unread.
    // One log line and one count per route and reason; the webhook.rejected event will join
    // them here.
    void reject(Connection& c, uint16_t status, base::RejectReason reason,
                std::span<const http::Header> headers, bool close, std::string_view extra = {}) {
        stats.rejected[base::index(reason)].fetch_add(1, std::memory_order_relaxed);
        c.req->route->counters->rejected[base::index(reason)].fetch_add(1,
                                                                        std::memory_order_relaxed);
        LogLine line(Level::warn, "webhook rejected", now_unix);
        line.field("reason", base::reject_reason_code(reason))
            .field("status", static_cast<int64_t>(status))
            .field("route", std::string_view(c.req->route->config->name));
        add_peer(line, c);
        char id[26];
        c.req->id.format(id);
        line.field("request_id", std::string_view(id, sizeof id));
        // Never a body, never a secret: only fields that identify the sender, with signature
        // values cut short. After the body, the head is gone from the receive buffers; the
        // stored copy in the record is read back instead (this path only).
        std::span<const http::Header> shown = headers;
        if (headers.empty() && c.req->record != nullptr &&
            c.req->record->size >= c.req->body_start) {
            queue::seal_record(c.req->record->bytes());
            queue::JobRecord stored;
            size_t size = 0;
            size_t n = 0;
            if (queue::decode_record(c.req->record->bytes(), stored, size) ==
                queue::DecodeStatus::ok) {
                stored.for_each_header([&](std::string_view name, std::string_view value) {
                    if (n < stored_headers.size()) {
                        stored_headers[n++] = {name, value};
                    }
                });
            }
            shown = {stored_headers.data(), n};
        }
        http::log_headers(line, shown, c.req->route->stored_fields);
        log(line);
        respond(c, status, reject_body(reason), extra, close);
    }

    static std::string_view reject_body(base::RejectReason reason) {
        switch (reason) {
        case base::RejectReason::body_too_large:
            return body_too_large;
        case base::RejectReason::conflict:
            return body_conflict;
        case base::RejectReason::stale:
            return body_stale;
        case base::RejectReason::ip_denied:
            return body_forbidden;
        case base::RejectReason::rate_limited:
            return body_rate_limited;
        default:
            return body_unauthorized;
        }
    }

    void add_peer(LogLine& line, const Connection& c) {
        char ip[INET6_ADDRSTRLEN];
        line.field("peer", c.peer.format_ip(ip));
        if (c.req != nullptr && !(c.req->client == c.peer)) {
            line.field("client", c.req->client.format_ip(ip));
        }
    }

    // server.deny: refused on every path, before any route is looked up.
    void refuse_denied(Connection& c, const base::PeerAddress& client, bool has_body) {
        stats.rejected[base::index(base::RejectReason::ip_denied)].fetch_add(
            1, std::memory_order_relaxed);
        LogLine line(Level::warn, "request refused", now_unix);
        line.field("reason", base::reject_reason_code(base::RejectReason::ip_denied))
            .field("status", int64_t{403});
        add_peer(line, c);
        char ip[INET6_ADDRSTRLEN];
        line.field("client", client.format_ip(ip));
        log(line);
        respond(c, 403, body_forbidden, {}, has_body);
    }

    void log(LogLine& line) {
        if (!base::log_enabled(Level::warn)) {
            return;
        }
        if (!logs.append(line.finish())) {
            stats.log_lines_dropped.fetch_add(1, std::memory_order_relaxed);
        }
    }

    void queue_output(Connection& c, uint16_t status, std::string_view body, std::string_view extra,
                      bool close, std::string_view content_type = "application/json",
                      bool head_only = false) {
        http::Response r;
        r.status = status;
        r.body = body;
        r.extra_headers = extra;
        r.close = close;
        r.content_type = content_type;
        r.head_only = head_only;
        size_t n = http::write_response(std::span<char>(c.out, sizeof c.out), r, date.view());
        if (n == 0) {
            // Impossible with the fixed answers above: they are all far smaller than out.
            std::abort();
        }
        c.out_len = static_cast<uint16_t>(n);
        c.out_sent = 0;
        stats.responses[status / 100 < 6 ? status / 100 : 5].fetch_add(1,
                                                                       std::memory_order_relaxed);
    }

    // The final answer to the current request; afterwards the connection either reads the next
    // request or closes (lingering when input may be unread).
    void respond(Connection& c, uint16_t status, std::string_view body, std::string_view extra,
                 bool close, std::string_view content_type = "application/json",
                 bool head_only = false) {
        if (c.timer != nullptr) {
            c.timer->remove(c);
        }
        // After the client's EOF, an answer with nothing staged behind it is the last.
        close = close || !c.keep_alive || draining || (c.peer_eof && staged_bytes(c) == 0);
        queue_output(c, status, body, extra, close, content_type, head_only);
        c.close_after_send = close;
        c.state = State::sending;
        // A 100 Continue still on its way goes first; its completion starts this answer.
        if (!c.continue_inflight) {
            start_send(c);
        }
    }

    // The interim answer comes from a constant, so that the final answer can be written into
    // c.out while the interim one is still being sent.
    static constexpr std::string_view continue_response = "HTTP/1.1 100 Continue\r\n\r\n";

    void start_continue(Connection& c) {
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_send(sqe, c.fd, continue_response.data() + c.continue_bytes_sent,
                           continue_response.size() - c.continue_bytes_sent, MSG_NOSIGNAL);
        sqe->user_data = pack(Op::send_continue, c.gen, c.index);
        c.continue_inflight = true;
    }

    void on_send_continue(const io_uring_cqe& cqe) {
        Connection* c = lookup(cqe.user_data);
        if (c == nullptr || c->state == State::closing) {
            return;
        }
        c->continue_inflight = false;
        if (cqe.res < 0) {
            close_for_error(*c, "send_failed", -cqe.res);
            return;
        }
        c->continue_bytes_sent = static_cast<uint8_t>(c->continue_bytes_sent + cqe.res);
        if (c->continue_bytes_sent < continue_response.size()) {
            start_continue(*c);
            return;
        }
        stats.responses[1].fetch_add(1, std::memory_order_relaxed);
        if (c->state == State::sending && !c->send_inflight) {
            start_send(*c);
        }
    }

    void start_send(Connection& c) {
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_send(sqe, c.fd, c.out + c.out_sent, c.out_len - c.out_sent, MSG_NOSIGNAL);
        sqe->user_data = pack(Op::send, c.gen, c.index);
        c.send_inflight = true;
    }

    void on_send(const io_uring_cqe& cqe) {
        Connection* c = lookup(cqe.user_data);
        if (c == nullptr || c->state == State::closing) {
            return;
        }
        c->send_inflight = false;
        if (cqe.res < 0) {
            close_for_error(*c, "send_failed", -cqe.res);
            return;
        }
        c->out_sent = static_cast<uint16_t>(c->out_sent + cqe.res);
        if (c->out_sent < c->out_len) {
            start_send(*c);
            return;
        }
        release_request(*c);
        c->out_len = c->out_sent = 0;
        if (c->close_after_send) {
            start_linger(*c);
            return;
        }
        // The next request, if it is already staged (pipelined).
        c->state = State::reading_head;
        idle_timers.push(*c, now_mono + idle_timers.length_ns);
        drive_staged(*c);
        if (c->peer_eof && (c->state == State::reading_head || c->state == State::reading_body)) {
            // The client half-closed and every complete request it sent has its answer.
            close_connection(*c);
            return;
        }
        keep_reading(*c);
    }

    // ---- closing ---------------------------------------------------------------------------

    void start_linger(Connection& c) {
        if (c.peer_eof) {
            close_connection(c);
            return;
        }
        c.state = State::lingering;
        if (c.staging != nullptr) {
            pool.release(c.staging);
            c.staging = nullptr;
            c.staged_from = 0;
        }
        // The kernel runs a shutdown in a worker thread and looks its descriptor up only then;
        // closing before it completes would let it shut down whatever socket reuses the number
        // (another client's). So close_connection leaves the close to on_shutdown meanwhile.
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_shutdown(sqe, c.fd, SHUT_WR);
        sqe->user_data = pack(Op::shutdown, c.gen, c.index);
        c.shutdown_inflight = true;
        linger_timers.push(c, now_mono + linger_timers.length_ns);
        // Draining the input reads again, paused or cut.
        c.recv_paused = false;
        c.input_cut = false;
        if (!c.recv_armed) {
            arm_recv(c);
        }
    }

    void close_connection(Connection& c) {
        if (c.state == State::closing || c.state == State::free) {
            return;
        }
        if (c.timer != nullptr) {
            c.timer->remove(c);
        }
        if (c.staging != nullptr) {
            pool.release(c.staging);
            c.staging = nullptr;
        }
        bool in_spool = c.state == State::spooling;
        if (!in_spool) {
            release_request(c);
        }
        c.state = State::closing;
        c.abandoned = in_spool;
        // Cancel the multishot receive and any send, then close; hard-linked so that the close
        // runs whether or not there was anything to cancel.
        io_uring_sqe* cancel = ring.sqe();
        io_uring_prep_cancel_fd(cancel, c.fd, IORING_ASYNC_CANCEL_ALL);
        cancel->user_data = pack(Op::cancel, c.gen, c.index);
        if (c.shutdown_inflight) {
            return; // on_shutdown closes
        }
        cancel->flags |= IOSQE_IO_HARDLINK;
        submit_close(c);
    }

    void submit_close(Connection& c) {
        io_uring_sqe* close = ring.sqe();
        io_uring_prep_close(close, c.fd);
        close->user_data = pack(Op::close, c.gen, c.index);
        c.fd = -1;
    }

    void on_shutdown(const io_uring_cqe& cqe) {
        Connection* c = lookup(cqe.user_data);
        if (c == nullptr) {
            return;
        }
        c->shutdown_inflight = false;
        if (c->state == State::closing && c->fd >= 0) {
            submit_close(*c);
        }
    }

    void on_closed(const io_uring_cqe& cqe) {
        Connection* c = lookup(cqe.user_data);
        if (c == nullptr) {
            return;
        }
        shared.connections.fetch_sub(1, std::memory_order_relaxed);
        if (shared.per_client != nullptr) {
            shared.per_client->release(c->counted);
        }
        c->counted = {};
        if (c->abandoned) {
            // The slot stays until the spool group holding its record completes.
            c->state = State::spooling;
            c->fd = -1;
            return;
        }
        free_connection(*c);
    }

    void free_connection(Connection& c) {
        c.state = State::free;
        c.abandoned = false;
        free_conns.push_back(c.index);
        --open_conns;
    }

    Request* acquire_request() {
        if (free_requests == nullptr) {
            all_requests.push_back(std::make_unique<Request>());
            return all_requests.back().get();
        }
        Request* r = free_requests;
        free_requests = r->next_free;
        return r;
    }

    void release_request(Connection& c) {
        if (c.req == nullptr) {
            return;
        }
        settle_keys(*c.req, false);
        pool.release(c.req->record);
        c.req->record = nullptr;
        c.req->next_free = free_requests;
        free_requests = c.req;
        c.req = nullptr;
    }

    // ---- timers and drain ------------------------------------------------------------------

    void expire_timers() {
        expire(idle_timers, [this](Connection& c) { close_connection(c); });
        expire(header_timers, [this](Connection& c) { on_timeout(c); });
        expire(body_timers, [this](Connection& c) { on_timeout(c); });
        expire(linger_timers, [this](Connection& c) { close_connection(c); });
    }

    template <typename F>
    void expire(TimerList& list, F&& on_expired) {
        while (list.head != nullptr && list.head->deadline <= now_mono) {
            Connection& c = *list.head;
            list.remove(c);
            on_expired(c);
        }
    }

    void on_timeout(Connection& c) {
        const bool body = c.state == State::reading_body;
        (body ? stats.body_timeouts : stats.header_timeouts)
            .fetch_add(1, std::memory_order_relaxed);
        LogLine line(Level::info, "request timed out", now_unix);
        std::string_view phase = body                              ? "body"
                                 : c.state == State::reading_proxy ? "proxy"
                                                                   : "header";
        line.field("phase", phase);
        add_peer(line, c);
        log(line);
        if (c.state == State::reading_proxy || c.send_inflight || c.continue_inflight) {
            close_connection(c);
            return;
        }
        respond(c, 408, body_timeout, {}, true);
    }

    void start_drain() {
        draining = true;
        drain_deadline = now_mono + cfg.server.drain_timeout_ns;
        for (int& fd : listen_fds) {
            if (fd >= 0) {
                io_uring_sqe* cancel = ring.sqe();
                io_uring_prep_cancel_fd(cancel, fd, IORING_ASYNC_CANCEL_ALL);
                cancel->flags |= IOSQE_IO_HARDLINK;
                cancel->user_data = pack(Op::cancel, 0, 0);
                io_uring_sqe* close = ring.sqe();
                io_uring_prep_close(close, fd);
                close->user_data = pack(Op::close_unowned, 0, 0);
                fd = -1;
            }
        }
        // Idle keep-alive connections have nothing in flight: close them now.
        for (Connection* c : conns) {
            if ((c->state == State::reading_head && c->timer == &idle_timers) ||
                c->state == State::reading_proxy) {
                close_connection(*c);
            }
        }
    }

    bool drain_finished() {
        bool connections_done = open_conns == 0;
        if (!connections_done && now_mono >= drain_deadline) {
            for (Connection* c : conns) {
                if (is_open(*c) && c->state != State::spooling) {
                    close_connection(*c);
                }
            }
        }
        return (connections_done || now_mono >= drain_deadline + base::ns_per_s) && spool.idle() &&
               accepts_armed == 0;
    }
};

Shard::Shard(uint32_t index, ShardShared& shared, std::vector<int> listen_fds)
    : _impl(std::make_unique<Impl>(index, shared, std::move(listen_fds))) {}

Shard::~Shard() = default;

std::string Shard::init() {
    return _impl->init();
}

void Shard::run() {
    _impl->run();
}

const ShardStats& Shard::stats() const {
    return _impl->stats;
}

} // namespace portcullis::io
