#include "portcullis/admin/control_plane.hh"

#include "portcullis/admin/auth.hh"
#include "portcullis/admin/event_stream.hh"
#include "portcullis/admin/metrics.hh"
#include "portcullis/admin/request.hh"
#include "portcullis/base/address.hh"
#include "portcullis/base/doorbell.hh"
#include "portcullis/base/json.hh"
#include "portcullis/base/json_pointer.hh"
#include "portcullis/base/log.hh"
#include "portcullis/base/time.hh"
#include "portcullis/config/units.hh"
#include "portcullis/deliver/engine.hh"
#include "portcullis/http/error_bodies.hh"
#include "portcullis/http/parser.hh"
#include "portcullis/http/response.hh"
#include "portcullis/ingest/control_job.hh"
#include "portcullis/queue/job_json.hh"
#include "portcullis/queue/job_store.hh"
#include "portcullis/queue/keys.hh"
#include "portcullis/verify/verifier.hh"

#include "build_info.hh"
#include "control_consumers.hh"
#include "control_tokens.hh"

#include <openssl/mem.h>

#include <csignal>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <numeric>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace portcullis::admin {

namespace {

using base::Level;
using base::LogLine;
using queue::JobId;
using queue::JobInfo;
using queue::JobTable;

constexpr unsigned ring_entries = 256;
constexpr size_t recv_size = 16 * 1024;
// Control-plane requests are small JSON documents (a bulk ack of 1000 ids is about 30 KiB). With
// the head (16 KiB at most) this bounds what one connection holds, and admin.max_connections
// what they all hold; a job's body (POST /v1/routes/{route}/jobs) may take up to
// server.limits.body_bytes instead, as it would on the public plane.
constexpr size_t max_body_bytes = 64 * 1024;
constexpr uint32_t max_lease = 1000;
constexpr int64_t default_visibility_ns = 30 * base::ns_per_s;
constexpr int64_t max_visibility_ns = 12 * 3600 * base::ns_per_s;
constexpr int64_t max_wait_ns = 60 * base::ns_per_s;
constexpr size_t max_bulk_ids = 1000;
constexpr size_t dead_letter_page = 100;
// The loop's wait: short while long polls are parked (they see new jobs this late at most),
// long otherwise.
constexpr int64_t poll_tick_ns = 2'000'000;
constexpr int64_t idle_tick_ns = 50'000'000;
constexpr int64_t poll_interval_ns = 1'000'000;
// Retention runs a quarter of spool.retention apart, between these.
constexpr int64_t retire_min_interval_ns = 100'000'000;
constexpr int64_t retire_max_interval_ns = 10 * base::ns_per_s;
// On a clean stop, attempts in flight get this long to finish and be settled; what is still
// running then is abandoned (its lease is void at the next start: it runs again).
constexpr int64_t delivery_drain_ns = 5 * base::ns_per_s;
// Connection deadlines (server.timeouts) are looked at this often: they are seconds long.
constexpr int64_t timer_scan_interval_ns = 10'000'000;
// After an accept fails for want of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM), the next one
// waits this long instead of failing in a loop.
constexpr int64_t accept_backoff_ns = 50'000'000;
// GET /events: a comment line this often keeps proxies from closing a quiet stream; a
// subscriber with more than admin.events.backlog bytes waiting behind its send in flight (which
// waits on its socket's buffer, set to events_socket_buffer) is cut.
constexpr int64_t events_keepalive_ns = 15 * base::ns_per_s;
constexpr size_t events_socket_buffer = 64 * 1024;

enum class Op : uint8_t {
    accept = 1,
    recv,
    send,
    shutdown,
    close,
    ledger_write,
    ledger_sync,
    doorbell, // ControlPlane::wake: a reload was published
};

constexpr uint64_t pack(Op op, uint32_t gen, uint32_t index) {
    return uint64_t(op) << 56 | uint64_t(gen & 0xffffff) << 32 | index;
}

// What a connection is waiting for, and so which of server.timeouts runs: idle (the next
// request, from the end of the last answer or the accept), head (from its first byte), body
// (from the end of the head). None runs while a request is being answered (a long poll waits
// for its own deadline).
enum class Phase : uint8_t { idle, head, body, busy };

// Refusals are counted by kind (the stop line) and logged at most once a second per kind
// (base::LogThrottle): a flood cannot fill the log.
enum class Refusal : uint8_t {
    max_connections,
    accept_failed,
    header_timeout,
    body_timeout,
    unauthorized_before_body, // 401 from the head alone: the body is not read
    unauthorized,             // 401 once the body was in
    duplicate_authorization,  // 400
    malformed,                // 400 (the head), 431, 411
    body_too_large,           // 413
    token_refused,            // POST/DELETE /v1/tokens refused: 403 (escalation), 409 (name)
    count,
};

struct RefusalInfo {
    std::string_view reason;  // in the log line
    std::string_view counter; // in the stop line
};

constexpr RefusalInfo refusal_info[] = {
    {"max_connections", "refused_max_connections"},
    {"accept_failed", "accept_errors"},
    {"header_timeout", "header_timeouts"},
    {"body_timeout", "body_timeouts"},
    {"unauthorized", "unauthorized_before_body"},
    {"unauthorized", "unauthorized"},
    {"duplicate_authorization", "duplicate_authorization"},
    {"malformed", "malformed"},
    {"body_too_large", "body_too_large"},
    {"token_refused", "tokens_refused"},
};
static_assert(std::size(refusal_info) == size_t(Refusal::count));

// The route of POST /v1/routes/{route}/jobs, or nullopt for any other path (an empty name, or
// one with a slash, is no route: 404).
std::optional<std::string_view> enqueue_route(std::string_view path) {
    constexpr std::string_view prefix = "/v1/routes/";
    constexpr std::string_view suffix = "/jobs";
    if (path.size() <= prefix.size() + suffix.size() || !path.starts_with(prefix) ||
        !path.ends_with(suffix)) {
        return std::nullopt;
    }
    std::string_view route =
        path.substr(prefix.size(), path.size() - prefix.size() - suffix.size());
    if (route.find('/') != std::string_view::npos) {
        return std::nullopt;
    }
    return route;
}

// Every other /v1/ path needs a token; /healthz and unknown paths (404) do not.
bool needs_token(std::string_view path) {
    return path.starts_with("/v1/") || path == "/events";
}

struct Conn {
    int fd = -1;
    uint32_t index = 0;
    uint32_t gen = 0;
    bool open = false;
    bool recv_armed = false;
    bool sending = false;
    bool close_after = false;
    bool waiting = false;      // a parked long poll
    bool enqueuing = false;    // its job is in a shard's hands: the answer comes from there
    bool needs_sync = false;   // its answer promises a state change: send after fdatasync
    bool answer_ready = false; // out holds an answer not yet started
    int inflight = 0;          // recv and send operations not yet completed
    bool closing = false;      // shut down; the slot is free once nothing is in flight
    Phase phase = Phase::idle;
    int64_t phase_ends_ns = 0; // monotonic: when the phase's timeout ends it (idle, head, body)
    std::string in;
    std::string out;
    size_t sent = 0;
    std::array<char, recv_size> rbuf;
    // GET /events: a stream, from the id next_event on; frames wait in pending while out is
    // being sent (the kernel reads out until the send completes).
    bool streaming = false;
    uint64_t next_event = 0;
    TypeMask event_types = all_types;
    std::string pending;
    // The parked lease.
    uint16_t route = 0;
    uint32_t max = 0;
    int64_t visibility_ns = 0;
    int64_t deadline_ns = 0;
    // A parked POST /v1/reload: its ReloadDesk ticket.
    uint64_t reload_ticket = 0;
};

std::string_view settle_error(JobTable::Settle s) {
    switch (s) {
    case JobTable::Settle::ok:
    case JobTable::Settle::already_done:
        return "";
    case JobTable::Settle::not_leased:
        return "not_leased";
    case JobTable::Settle::not_dead:
        return "not_dead";
    case JobTable::Settle::dead:
        return "dead";
    case JobTable::Settle::unknown:
        break;
    }
    return "not_found";
}

// A job enqueued through the control plane, with the storage its views point into and the
// connection waiting for its answer.
struct Enqueue final : ingest::ControlJob {
    std::string bytes; // route, token, the header fields and the body, back to back
    std::vector<http::Header> fields;
    uint32_t index = 0; // the connection
    uint32_t gen = 0;
    bool close = false; // the request asked for the connection to close after the answer
};

} // namespace

struct ControlPlane::Impl {
    // The configuration in force: the main thread's reload replaces it (take_up_snapshot).
    const config::Snapshot* snap;
    // Reloads (follow_reloads); null without them (the snapshot never changes).
    const std::atomic<const config::Snapshot*>* live = nullptr;
    io::SnapshotUse* use = nullptr;
    const config::RouteSlots* route_slots = nullptr;
    std::unique_ptr<config::RouteSlots> own_slots; // without follow_reloads
    io::ReloadDesk* reload_desk = nullptr;
    std::vector<uint32_t> reload_waiting; // conns parked on POST /v1/reload
    base::Doorbell doorbell;              // wakes the loop when a reload is published
    uint64_t built_from = 1;              // the generation the store and the engine were built from
    io::Features features;
    std::span<const queue::SpoolProgress> progress; // one per shard
    io::Ring ring;
    int listen_fd = -1;
    queue::JobStore store;
    std::unique_ptr<deliver::Engine> engine; // with sinks only
    TokenSet tokens;
    MintedTokens minted; // as <spool dir>/tokens.state holds them (tokens has them too)
    // Registered consumers (control_consumers.hh): their tokens are in tokens, their sinks in
    // the snapshot. consumer_conn: the connection waiting for the change in progress.
    ConsumerRegistry consumers;
    uint32_t consumer_conn = 0;
    uint32_t consumer_conn_gen = 0;
    http::DateCache date;
    http::Limits limits;
    std::vector<http::Header> header_scratch;
    std::vector<std::unique_ptr<Conn>> conns;
    std::vector<uint32_t> free_conns;
    std::vector<uint32_t> ready; // conns with an answer to send once the ledger is committed
    std::vector<uint32_t> waiting;
    struct Waiter {
        uint32_t index;
        uint32_t gen;
    };
    std::vector<Waiter> sync_next;    // answers for the next ledger group
    std::vector<Waiter> sync_waiting; // answers of the group in flight
    bool ledger_inflight = false;
    bool ledger_sync = false;
    bool ledger_failed = false;
    int ledger_error = 0; // errno of the group's failure; 0 for a short write
    size_t ledger_bytes = 0;
    int64_t last_poll_ns = 0;
    std::vector<JobInfo> jobs;
    // A lease's answer body, built here and copied into the connection's buffer: kept between
    // leases (up to lease_body_keep), so that a thousand jobs' JSON is not allocated and freed
    // again each time (with the allocator's decommit set to immediate, see serve, that churn cost
    // a draining consumer a quarter of its jobs/s).
    std::string lease_body;
    static constexpr size_t lease_body_keep = 4 * 1024 * 1024;
    int64_t started_ns = 0;
    int64_t now = 0;
    int64_t last_retire_ns = 0;
    int64_t retire_interval_ns = retire_max_interval_ns;
    bool accept_armed = false;
    // Connections: admin.max_connections caps the slots in use (open, or closing with
    // operations in flight), hence the descriptors this thread holds.
    uint32_t max_connections = 0;
    int64_t now_mono = 0;
    int64_t next_timer_scan_ns = 0;
    int64_t accept_paused_until_ns = 0;
    uint64_t accepted = 0;
    uint64_t idle_closed = 0;
    std::array<uint64_t, size_t(Refusal::count)> refusals{};
    std::array<base::LogThrottle, size_t(Refusal::count)> throttles{};
    // GET /events.
    std::vector<base::EventQueue*> event_queues;
    std::unique_ptr<EventBuffer> events;
    std::vector<base::Event> event_scratch;
    std::vector<uint32_t> event_order; // event_scratch's indices, in the order of their times
    bool events_flowing = false;       // the last turn's drain found events: poll the queues often
    bool spool_growing = false;        // the last tailing of the spool found jobs: tail it often
    std::vector<uint32_t> streams;     // conns streaming events (closed ones are dropped lazily)
    int64_t next_keepalive_ns = 0;
    uint64_t streams_opened = 0;
    uint64_t streams_cut = 0;     // a subscriber that could not keep up
    uint64_t streams_refused = 0; // over admin.events.subscribers
    uint64_t events_lost = 0;     // frames a subscriber missed (the buffer wrapped under it)
    base::LogThrottle cut_log;
    // POST /v1/routes/{route}/jobs: each shard's inbox, outbox and doorbell, the jobs in their
    // hands (owned here until they come back), how many each holds, and the next to ask.
    std::vector<ingest::ShardPort> shard_ports;
    std::unordered_map<const ingest::ControlJob*, std::unique_ptr<Enqueue>> enqueues;
    std::vector<size_t> shard_load;
    size_t next_shard = 0;
    uint64_t enqueues_answered = 0;   // by a shard
    uint64_t enqueues_busy = 0;       // 503: every shard held control_jobs_per_shard jobs
    uint64_t enqueues_unanswered = 0; // the client was gone when its answer came
    uint64_t enqueues_stopped = 0;    // 503: the shards stopped before they took it

    Impl(const config::Snapshot& s, const io::Features& f, std::span<const queue::SpoolProgress> p)
        : snap(&s), features(f), progress(p) {}

    std::string init(int fd) {
        listen_fd = fd;
        if (std::string err = doorbell.open(); !err.empty()) {
            return err;
        }
        // Created here, disabled, and enabled by the control-plane thread as run() starts, so
        // that it may take the shards' flags (SINGLE_ISSUER binds the ring to the task that
        // enables it, DEFER_TASKRUN needs that): with sinks this ring carries every delivery,
        // and the flags halve the kernel's cost per request (measured with the HTTP sink
        // against nginx: about 19 us without them, 10 us with, as wrk).
        if (auto err = ring.init(ring_entries, features.setup_flags() | IORING_SETUP_R_DISABLED);
            !err.empty()) {
            return err;
        }
        std::string why;
        auto set = TokenSet::from_config(snap->config().tokens, &why);
        if (!set) {
            return "tokens: " + why;
        }
        tokens = std::move(*set);
        if (std::string err = minted.load(snap->config().spool.dir, tokens); !err.empty()) {
            return err;
        }
        if (std::string err = consumers.load(snap->config().spool.dir, tokens); !err.empty()) {
            return err;
        }
        max_connections = snap->config().admin.max_connections;
        now = base::unix_ns();
        now_mono = base::mono_ns();
        started_ns = now;
        last_retire_ns = now;
        header_scratch.resize(64);
        retire_interval_ns = std::clamp(snap->config().spool.retention_ns / 4,
                                        retire_min_interval_ns, retire_max_interval_ns);
        if (std::string err = store.open(*snap, progress, now); !err.empty()) {
            return err;
        }
        init_events();
        if (!snap->config().sinks.empty()) {
            if (std::string err = start_engine(); !err.empty()) {
                return err;
            }
        }
        return "";
    }

    // The delivery engine, made when the first sink is configured (at start or by a reload) and
    // kept from then on: sinks a reload retires still route their completions through it.
    std::string start_engine() {
        engine = std::make_unique<deliver::Engine>(ring, *snap, store);
        engine->on_event([this](const base::Event& e) {
            if (e.type == base::EventType::job_delivered || e.type == base::EventType::job_dead) {
                events_unsynced.push_back(e); // a settlement: shown once durable
            } else {
                publish_own(e);
            }
        });
        return engine->init(now_mono);
    }

    // The loop's wait: new jobs are found by polling the spool, so with sinks (whose jobs
    // should leave as soon as they are in) or parked long polls it is short.
    int64_t loop_wait_ns() const {
        // While events flow, the shards' queues (4,096 slots each) are drained every 2 ms, not
        // every idle turn: a burst would fill them in 50 ms.
        // While the spool grows, it is tailed every tick too: after a 50 ms sleep, a busy shard's
        // records (about 2,300 at 44,000/s) were indexed in one run of 4-8 ms, and a shard on
        // the same CPU waited that long for it (the 3-6 ms episodes behind p99 at 80% load,
        // bench/load/latency).
        const bool idle = waiting.empty() && reload_waiting.empty() && !consumers.pending() &&
                          !(engine && engine->has_sinks()) && !events_flowing && enqueues.empty() &&
                          !spool_growing;
        const int64_t wait = idle ? idle_tick_ns : poll_tick_ns;
        return engine ? engine->wait_limit_ns(now, now_mono, wait) : wait;
    }

    // One pass over the loop's CQEs, with the clocks read first.
    void take_completions() {
        now = base::unix_ns();
        now_mono = base::mono_ns();
        ring.for_each_cqe([this](const io_uring_cqe& cqe) { dispatch(cqe); });
    }

    // Shutdown of the engine: attempts in flight finish (and are settled) for a while, then the
    // rest is abandoned and the engine's operations are collected.
    void stop_engine() {
        const int64_t until = base::mono_ns() + delivery_drain_ns;
        while (!engine->drain() && base::mono_ns() < until) {
            ring.submit_and_wait(engine->wait_limit_ns(now, now_mono, poll_tick_ns));
            take_completions();
            engine->pump(now, now_mono);
            send_ready();
        }
        engine->stop();
        while (!engine->idle()) {
            ring.submit_and_wait(poll_tick_ns);
            take_completions();
        }
        engine->log_stopped();
    }

    void run(const std::atomic<bool>& stop) {
        // liburing 2.3's header declares io_uring_enable_rings but its library lacks it.
        if (long rc = ::syscall(__NR_io_uring_register, ring.raw()->ring_fd,
                                IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
            rc < 0) {
            // Without its ring the control plane cannot serve: the whole process stops, as
            // on SIGTERM (the main thread waits for that signal).
            LogLine(Level::error, "control plane: cannot enable its ring; stopping")
                .field("error", std::strerror(errno))
                .write();
            ::kill(::getpid(), SIGTERM);
            return;
        }
        arm_accept();
        arm_doorbell();
        while (!stop.load(std::memory_order_relaxed)) {
            ring.submit_and_wait(loop_wait_ns());
            take_completions();
            date.update(now);
            take_up_snapshot();
            answer_reloads();
            answer_consumer_change();
            if (!accept_armed && now_mono >= accept_paused_until_ns) {
                arm_accept();
            }
            expire_timers();
            collect_enqueues();
            // Tailing costs a stat and an fstat per shard: at most once a millisecond.
            if (now - last_poll_ns >= poll_interval_ns) {
                last_poll_ns = now;
                spool_growing = store.poll() > 0;
            }
            serve_waiting(false);
            if (engine) {
                engine->pump(now, now_mono);
            }
            if (now - last_retire_ns >= retire_interval_ns) {
                last_retire_ns = now;
                store.retire(now);
            }
            pump_events();
            send_ready();
        }
        // Drain: parked long polls get what there is (nothing), enqueues their answer (the shards
        // have stopped: what they did not take is refused), the ledger group in flight
        // completes, what is left of the ledger is written, then the loop ends.
        serve_waiting(true);
        collect_enqueues();
        refuse_enqueues();
        send_ready();
        if (engine) {
            stop_engine();
        }
        while (ledger_inflight) {
            ring.submit_and_wait(idle_tick_ns);
            ring.for_each_cqe([this](const io_uring_cqe& cqe) { dispatch(cqe); });
        }
        store.commit(true);
        ring.submit_and_wait(0);
        for (auto& c : conns) {
            if (c->open && c->fd >= 0) {
                ::close(c->fd);
            }
        }
        ::close(listen_fd);
        LogLine line(Level::info, "control plane stopped");
        line.field("connections", static_cast<int64_t>(accepted));
        for (size_t i = 0; i < refusals.size(); ++i) {
            line.field(refusal_info[i].counter, static_cast<int64_t>(refusals[i]));
        }
        line.field("idle_closed", static_cast<int64_t>(idle_closed));
        line.field("enqueues", static_cast<int64_t>(enqueues_answered))
            .field("enqueues_busy", static_cast<int64_t>(enqueues_busy))
            .field("enqueues_unanswered", static_cast<int64_t>(enqueues_unanswered))
            .field("enqueues_stopped", static_cast<int64_t>(enqueues_stopped));
        log_event_counts(line);
        line.write();
    }

    // ---- connections -------------------------------------------------------------------

    void arm_doorbell() {
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_read(sqe, doorbell.fd(), &doorbell.count, sizeof doorbell.count, 0);
        sqe->user_data = pack(Op::doorbell, 0, 0);
    }

    void arm_accept() {
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_accept(sqe, listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        sqe->user_data = pack(Op::accept, 0, 0);
        accept_armed = true;
    }

    void dispatch(const io_uring_cqe& cqe) {
        if (engine && deliver::Engine::owns(cqe.user_data)) {
            engine->on_cqe(cqe, now, now_mono);
            return;
        }
        auto op = static_cast<Op>(cqe.user_data >> 56);
        uint32_t gen = static_cast<uint32_t>(cqe.user_data >> 32) & 0xffffff;
        uint32_t index = static_cast<uint32_t>(cqe.user_data);
        if (op == Op::ledger_write || op == Op::ledger_sync) {
            on_ledger(op, cqe.res);
            return;
        }
        if (op == Op::accept) {
            on_accept(cqe.res);
            return;
        }
        if (op == Op::doorbell) {
            arm_doorbell(); // what it rang for is taken up at the top of the turn
            return;
        }
        if (index >= conns.size()) {
            return;
        }
        Conn& c = *conns[index];
        if (op == Op::shutdown) {
            return;
        }
        if (op == Op::close) {
            c.open = false;
            release_if_idle(c);
            return;
        }
        --c.inflight;
        if (c.gen != gen || !c.open) {
            release_if_idle(c);
            return;
        }
        if (op == Op::recv) {
            c.recv_armed = false;
            if (cqe.res <= 0) {
                close_conn(c);
                return;
            }
            c.in.append(c.rbuf.data(), static_cast<size_t>(cqe.res));
            process(c);
        } else if (op == Op::send) {
            c.sending = false;
            if (cqe.res <= 0) {
                close_conn(c);
                return;
            }
            c.sent += static_cast<size_t>(cqe.res);
            if (c.sent < c.out.size()) {
                start_send(c);
                return;
            }
            c.out.clear();
            c.sent = 0;
            if (c.streaming) {
                stream_sent(c);
                return;
            }
            if (c.close_after) {
                close_conn(c);
                return;
            }
            process(c);
        }
    }

    // A closed connection's slot (and its buffers) may be reused only once the kernel is done
    // with every operation that pointed into them. Its buffers are given back then, so that what
    // a connection grew to is not kept for the next one.
    void release_if_idle(Conn& c) {
        if (c.closing && !c.open && c.inflight == 0) {
            c.closing = false;
            std::string().swap(c.in);
            std::string().swap(c.out);
            std::string().swap(c.pending);
            free_conns.push_back(c.index);
        }
    }

    void on_accept(int res) {
        accept_armed = false;
        if (res < 0) {
            if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
                accept_paused_until_ns = now_mono + accept_backoff_ns;
                refuse(Refusal::accept_failed, -1, std::strerror(-res));
                return; // run() re-arms it after the pause
            }
            arm_accept(); // the client gave up before it was accepted (ECONNABORTED...)
            return;
        }
        arm_accept();
        // Past the cap the connection is closed at once, before it costs anything more than
        // the descriptor it holds for this moment (the budget counts that one).
        if (conns.size() - free_conns.size() >= max_connections) {
            refuse(Refusal::max_connections, res);
            ::close(res);
            return;
        }
        ++accepted;
        open_conn(res);
    }

    void open_conn(int fd) {
        uint32_t index;
        if (!free_conns.empty()) {
            index = free_conns.back();
            free_conns.pop_back();
        } else {
            index = static_cast<uint32_t>(conns.size());
            conns.push_back(std::make_unique<Conn>());
            conns.back()->index = index;
        }
        Conn& c = *conns[index];
        c.fd = fd;
        c.gen = (c.gen + 1) & 0xffffff;
        c.open = true;
        c.recv_armed = c.sending = c.close_after = c.waiting = c.enqueuing = false;
        c.needs_sync = c.answer_ready = c.closing = c.streaming = false;
        c.pending.clear();
        c.inflight = 0;
        c.in.clear();
        c.out.clear();
        c.sent = 0;
        c.phase = Phase::busy;
        enter(c, Phase::idle);
        arm_recv(c);
    }

    void enter(Conn& c, Phase phase) {
        if (c.phase == phase) {
            return;
        }
        c.phase = phase;
        const config::ServerConfig& t = snap->config().server;
        switch (phase) {
        case Phase::idle:
            c.phase_ends_ns = now_mono + t.idle_timeout_ns;
            return;
        case Phase::head:
            c.phase_ends_ns = now_mono + t.header_timeout_ns;
            return;
        case Phase::body:
            c.phase_ends_ns = now_mono + t.body_timeout_ns;
            return;
        case Phase::busy:
            c.phase_ends_ns = 0;
            return;
        }
    }

    // server.timeouts: a head or a body not in by its deadline gets 408 and the connection is
    // closed; a connection idle past timeouts.idle is closed without an answer.
    void expire_timers() {
        if (now_mono < next_timer_scan_ns) {
            return;
        }
        next_timer_scan_ns = now_mono + timer_scan_interval_ns;
        for (auto& p : conns) {
            Conn& c = *p;
            if (!c.open || c.closing || c.phase == Phase::busy || c.phase_ends_ns > now_mono) {
                continue;
            }
            if (c.phase == Phase::idle) {
                ++idle_closed;
                close_conn(c);
                continue;
            }
            refuse(c.phase == Phase::head ? Refusal::header_timeout : Refusal::body_timeout, c.fd);
            answer(c, 408, http::error_body::timeout, {}, true);
        }
    }

    // Counts a refusal and logs it, at most once a second per kind. fd (when not -1) names the
    // peer; detail is an errno text.
    void refuse(Refusal r, int fd, std::string_view detail = {}) {
        const auto i = static_cast<size_t>(r);
        ++refusals[i];
        base::LogThrottle& t = throttles[i];
        if (!t.allow(now_mono, base::ns_per_s)) {
            return;
        }
        const bool connection = r == Refusal::max_connections || r == Refusal::accept_failed;
        LogLine line(Level::warn, connection ? "control plane: connection refused"
                                             : "control plane: request refused");
        line.field("reason", refusal_info[i].reason);
        if (fd >= 0) {
            sockaddr_storage ss{};
            socklen_t len = sizeof ss;
            if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
                line.field("peer",
                           base::PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss))
                               .to_string());
            }
        }
        if (!detail.empty()) {
            line.field("error", detail);
        }
        line.field("count", static_cast<int64_t>(refusals[i]));
        if (t.held_back != 0) {
            line.field("lines_held_back", static_cast<int64_t>(t.held_back));
            t.held_back = 0;
        }
        line.write();
    }

    void arm_recv(Conn& c) {
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_recv(sqe, c.fd, c.rbuf.data(), c.rbuf.size(), 0);
        sqe->user_data = pack(Op::recv, c.gen, c.index);
        c.recv_armed = true;
        ++c.inflight;
    }

    void start_send(Conn& c) {
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_send(sqe, c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
        sqe->user_data = pack(Op::send, c.gen, c.index);
        c.sending = true;
        ++c.inflight;
    }

    void close_conn(Conn& c) {
        if (!c.open || c.closing) {
            return;
        }
        c.gen = (c.gen + 1) & 0xffffff; // completions still in flight are ignored
        c.waiting = false;
        c.closing = true;
        // Shutting the socket down ends a pending receive at once; then the close.
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_shutdown(sqe, c.fd, SHUT_RDWR);
        sqe->flags |= IOSQE_IO_LINK;
        sqe->user_data = pack(Op::shutdown, c.gen, c.index);
        sqe = ring.sqe();
        io_uring_prep_close(sqe, c.fd);
        sqe->user_data = pack(Op::close, c.gen, c.index);
        c.fd = -1;
    }

    // Parses and answers the requests in c.in, one at a time: the next waits for the answer.
    void process(Conn& c) {
        if (c.streaming && c.open && !c.closing) {
            // An event stream reads only to see the client go: what it sends is dropped.
            c.in.clear();
            if (!c.recv_armed) {
                arm_recv(c);
            }
            return;
        }
        if (!c.open || c.closing || c.sending || c.waiting || c.enqueuing || c.answer_ready) {
            return;
        }
        if (c.in.empty()) {
            enter(c, Phase::idle);
            if (!c.recv_armed) {
                arm_recv(c);
            }
            return;
        }
        http::RequestHead head;
        http::HeadResult r = http::parse_head(c.in, 0, limits, header_scratch, head);
        if (r.error != http::Error::none) {
            refuse(Refusal::malformed, c.fd);
            answer(c, http::status_of(r.error), http::error_body::bad_request, {}, true);
            return;
        }
        if (r.consumed == 0) {
            if (c.in.size() > limits.header_bytes) {
                refuse(Refusal::malformed, c.fd);
                answer(c, 431, http::error_body::bad_request, {}, true);
                return;
            }
            enter(c, Phase::head);
            if (!c.recv_armed) {
                arm_recv(c);
            }
            return;
        }
        uint64_t length =
            head.framing == http::BodyFraming::content_length ? head.content_length : 0;
        const bool complete = c.in.size() - r.consumed >= length;
        // A request that will be refused for its token is answered from its head, before its
        // body is read (and the connection closed, the body unread): a client without a token
        // costs one head. Checked before the size, so that it learns nothing else either.
        const std::optional<std::string_view> enqueue_to = enqueue_route(head.path);
        if (!complete && needs_token(head.path)) {
            const Grant* who = authenticate(c, head, true);
            if (who == nullptr ||
                (enqueue_to && !may_enqueue(c, *who, head.method, *enqueue_to, true))) {
                return;
            }
        }
        if (head.framing == http::BodyFraming::chunked) {
            refuse(Refusal::malformed, c.fd);
            answer(c, 411, R"({"error":"length_required"})", {}, true);
            return;
        }
        if (length > (enqueue_to ? snap->config().server.body_bytes : max_body_bytes)) {
            refuse(Refusal::body_too_large, c.fd);
            answer(c, 413, http::error_body::too_large, {}, true);
            return;
        }
        if (!complete) {
            enter(c, Phase::body);
            if (!c.recv_armed) {
                arm_recv(c);
            }
            return;
        }
        enter(c, Phase::busy);
        std::string_view body(c.in.data() + r.consumed, length);
        bool keep_alive = head.keep_alive;
        handle(c, head, body);
        c.close_after = c.close_after || !keep_alive;
        c.in.erase(0, r.consumed + length);
        if (!c.recv_armed && !c.close_after) {
            arm_recv(c);
        }
    }

    // The token of a request (whose path needs one): its Grant, or nullptr once the request has
    // been answered 400 (two Authorization headers: which one did a proxy in front check?) or 401.
    // Before the body, the answer closes the connection.
    const Grant* authenticate(Conn& c, const http::RequestHead& head, bool before_body) {
        const verify::HeaderMatch auth = verify::find_single_header(head.headers, "authorization");
        if (auth.repeated) {
            refuse(Refusal::duplicate_authorization, c.fd);
            answer(c, 400,
                   R"({"error":"bad_request","detail":"authorization: more than one header"})", {},
                   before_body);
            return nullptr;
        }
        const Grant* who =
            tokens.authenticate(auth.header != nullptr ? auth.header->value : "", now);
        if (who == nullptr) {
            refuse(before_body ? Refusal::unauthorized_before_body : Refusal::unauthorized, c.fd);
            answer(c, 401, http::error_body::unauthorized, "WWW-Authenticate: Bearer\r\n",
                   before_body);
        }
        return who;
    }

    // ---- answers -----------------------------------------------------------------------

    void answer(Conn& c, uint16_t status, std::string_view body, std::string_view extra = {},
                bool close = false) {
        write_answer(c, status, body, extra, close);
        ready.push_back(c.index);
    }

    // c.out = the answer, ready to be sent (answer() also queues it).
    void write_answer(Conn& c, uint16_t status, std::string_view body, std::string_view extra,
                      bool close) {
        http::Response r;
        r.status = status;
        r.body = body;
        r.extra_headers = extra;
        r.close = close;
        c.out.resize(body.size() + extra.size() + 256);
        size_t n = http::write_response(c.out, r, date.view());
        c.out.resize(n);
        c.sent = 0;
        c.close_after = close;
        c.answer_ready = true;
        enter(c, Phase::busy);
    }

    void answer_access(Conn& c, Access a) {
        switch (a) {
        case Access::unauthorized:
            answer(c, 401, http::error_body::unauthorized, "WWW-Authenticate: Bearer\r\n");
            return;
        case Access::forbidden:
            answer(c, 403, http::error_body::forbidden);
            return;
        case Access::not_found:
        case Access::granted:
            answer(c, 404, http::error_body::not_found);
            return;
        }
    }

    // Answers that promise nothing durable go out at once. Those that do (ack, nack, replay)
    // wait for the ledger group that holds their ops: one append and one linked fdatasync
    // through the ring, at most one group in flight, the next one gathering meanwhile.
    void send_ready() {
        std::vector<uint32_t> now_ready;
        now_ready.swap(ready);
        for (uint32_t i : now_ready) {
            Conn& c = *conns[i];
            if (!c.open || c.closing || !c.answer_ready) {
                continue;
            }
            if (c.needs_sync) {
                sync_next.push_back({i, c.gen});
                continue;
            }
            c.answer_ready = false;
            start_send(c);
        }
        flush_ledger();
    }

    void flush_ledger() {
        const bool settlements = engine && engine->wants_sync();
        // Events of settlements wait for a durable group: their ops are made durable even when
        // no answer waits (a death by lease expiry).
        const bool told = !events_unsynced.empty();
        if (ledger_inflight ||
            (!store.has_pending_ops() && sync_next.empty() && !settlements && !told)) {
            return;
        }
        std::span<const uint8_t> bytes = store.take_ops();
        if (engine) {
            engine->group_taken();
        }
        ledger_bytes = bytes.size();
        ledger_failed = false;
        ledger_error = 0;
        // A settlement counts once durable: like an answered ack, it waits for an fdatasync.
        ledger_sync = !sync_next.empty() || settlements || told;
        sync_waiting.swap(sync_next);
        sync_next.clear();
        if (ledger_sync) {
            // A group without an fdatasync promises nothing: its events wait for the next one.
            events_in_group.swap(events_unsynced);
            events_unsynced.clear();
        }
        if (!bytes.empty()) {
            io_uring_sqe* sqe = ring.sqe();
            // The file is opened O_APPEND: the offset is ignored, writes go to its end.
            io_uring_prep_write(sqe, store.ledger_fd(), bytes.data(),
                                static_cast<unsigned>(bytes.size()), 0);
            sqe->user_data = pack(Op::ledger_write, 0, 0);
            if (ledger_sync) {
                sqe->flags |= IOSQE_IO_LINK;
            }
        }
        if (ledger_sync) {
            io_uring_sqe* sqe = ring.sqe();
            io_uring_prep_fsync(sqe, store.ledger_fd(), IORING_FSYNC_DATASYNC);
            sqe->user_data = pack(Op::ledger_sync, 0, 0);
        }
        ledger_inflight = !bytes.empty() || ledger_sync;
    }

    void on_ledger(Op op, int res) {
        if (op == Op::ledger_write) {
            if (res < 0 || static_cast<size_t>(res) != ledger_bytes) {
                // A short write leaves a torn record at the end: ops_failed() cuts it. The
                // linked fdatasync reports -ECANCELED; the group fails either way.
                ledger_failed = true;
                ledger_error = res < 0 ? -res : 0;
            }
            if (ledger_sync) {
                return; // the fdatasync completes the group
            }
        } else if (res < 0 && !ledger_failed) {
            ledger_failed = true;
            ledger_error = -res;
        }
        ledger_inflight = false;
        if (!ledger_failed && store.ops_written()) {
            if (engine) {
                engine->group_resolved(true);
            }
            for (const base::Event& e : events_in_group) {
                publish_own(e);
            }
            events_in_group.clear();
            release_waiters(sync_waiting, false);
            return;
        }
        // Nothing the group promised may be answered 200, nor shown by the table: its changes
        // and those gathered since are rolled back, and every answer waiting for the ledger is
        // refused, wherever it waits (this group, the next one, or not yet queued for one).
        std::string_view why = ledger_error != 0 ? std::strerror(ledger_error)
                               : ledger_failed   ? "short write"
                                                 : "a torn record before the group was not cut";
        size_t undone = store.ops_failed();
        if (engine) {
            engine->group_resolved(false);
        }
        events_in_group.clear(); // what they told of was undone
        events_unsynced.clear();
        LogLine(Level::error, "ledger write failed: changes rolled back, their answers refused")
            .field("path", store.ledger_path())
            .field("error", why)
            .field("undone", static_cast<int64_t>(undone))
            .write();
        release_waiters(sync_waiting, true);
        release_waiters(sync_next, true);
        for (uint32_t i : ready) {
            Conn& c = *conns[i];
            if (c.open && !c.closing && c.answer_ready && c.needs_sync) {
                refuse_unsynced(c); // send_ready() sends it
            }
        }
    }

    // The answer of a settling request whose ops are not durable: 503, retry.
    void refuse_unsynced(Conn& c) {
        write_answer(c, 503, http::error_body::unavailable, "Retry-After: 1\r\n", c.close_after);
        c.needs_sync = false;
    }

    // Sends the answers that waited for a ledger group: as they are, or refused.
    void release_waiters(std::vector<Waiter>& waiters, bool refuse) {
        for (const Waiter& w : waiters) {
            Conn& c = *conns[w.index];
            if (!c.open || c.closing || c.gen != w.gen || !c.answer_ready) {
                continue;
            }
            if (refuse) {
                refuse_unsynced(c);
            }
            c.answer_ready = false;
            c.needs_sync = false;
            start_send(c);
        }
        waiters.clear();
    }

    // ---- requests ----------------------------------------------------------------------

    void handle(Conn& c, const http::RequestHead& head, std::string_view body) {
        std::string_view path = head.path;
        if (path == "/healthz") {
            if (head.method != "GET") {
                answer(c, 405, http::error_body::method_not_allowed, "Allow: GET\r\n");
                return;
            }
            healthz(c);
            return;
        }
        if (path == "/metrics") {
            metrics(c, head);
            return;
        }
        if (!needs_token(path)) {
            answer(c, 404, http::error_body::not_found);
            return;
        }
        const Grant* who = authenticate(c, head, false);
        if (who == nullptr) {
            return;
        }
        auto method_is = [&](std::string_view m) {
            if (head.method == m) {
                return true;
            }
            answer(c, 405, http::error_body::method_not_allowed,
                   m == "GET" ? "Allow: GET\r\n" : "Allow: POST\r\n");
            return false;
        };
        if (path == "/events") {
            if (method_is("GET")) {
                open_stream(c, *who, head);
            }
            return;
        }
        if (path == "/v1/lease") {
            if (method_is("POST")) {
                lease(c, *who, body);
            }
            return;
        }
        if (path == "/v1/ack" || path == "/v1/nack") {
            if (method_is("POST")) {
                settle_many(c, *who, body, path == "/v1/ack");
            }
            return;
        }
        if (path == "/v1/reload") {
            if (method_is("POST")) {
                reload(c, *who);
            }
            return;
        }
        if (path == "/v1/tokens" || path.starts_with("/v1/tokens/")) {
            token_request(c, *who, head.method, path, body);
            return;
        }
        if (path == "/v1/consumers" || path.starts_with("/v1/consumers/")) {
            consumer_request(c, *who, head.method, path, body);
            return;
        }
        if (path == "/v1/dead-letters") {
            if (method_is("GET")) {
                dead_letters(c, *who, head.query);
            }
            return;
        }
        if (const std::optional<std::string_view> route = enqueue_route(path)) {
            if (may_enqueue(c, *who, head.method, *route, false)) {
                enqueue(c, *who, head, *route, body);
            }
            return;
        }
        std::string_view rest;
        if (path.starts_with("/v1/jobs/")) {
            rest = path.substr(9);
            size_t slash = rest.find('/');
            std::string_view id = rest.substr(0, slash);
            std::string_view action = slash == std::string_view::npos ? "" : rest.substr(slash);
            if (action.empty()) {
                if (method_is("GET")) {
                    job_state(c, *who, id);
                }
                return;
            }
            if (action == "/ack" || action == "/nack") {
                if (method_is("POST")) {
                    settle_one(c, *who, id, body, action == "/ack");
                }
                return;
            }
        } else if (path.starts_with("/v1/dead-letters/") && path.ends_with("/replay")) {
            std::string_view id = path.substr(17, path.size() - 17 - 7);
            if (method_is("POST")) {
                replay(c, *who, id, head.query);
            }
            return;
        }
        answer(c, 404, http::error_body::not_found);
    }

    // ---- reload (POST /v1/reload; SIGHUP's path) ------------------------------------------

    // Top of each turn: a configuration the main thread published is taken up between two
    // requests, so that each request is served under one configuration.
    void take_up_snapshot() {
        if (live == nullptr) {
            return;
        }
        const config::Snapshot* next = live->load(std::memory_order_acquire);
        if (next == snap) {
            return;
        }
        std::string why;
        std::optional<TokenSet> set = TokenSet::from_config(next->config().tokens, &why);
        if (set) {
            tokens = std::move(*set);
            minted.add_tokens(tokens); // minted tokens outlive reloads
            consumers.add_tokens(tokens);
        } else {
            LogLine(Level::error, "control plane: tokens of the reloaded configuration refused; "
                                  "the previous tokens stay")
                .field("error", why)
                .write();
        }
        // The job index and the sinks: checked by the reload before it was published
        // (check_reload), so only the lanes file's write may fail here.
        queue::ReloadReport report;
        if (std::string err = store.reconfigure(*next, now, report); !err.empty()) {
            LogLine(Level::error, "control plane: the job index did not take the reload; the "
                                  "routes and sinks it knew stay")
                .field("error", err)
                .write();
        } else {
            log_store_reload(report);
            built_from = next->generation();
        }
        snap = next;
        if (built_from == next->generation()) {
            if (engine) {
                log_engine_reload(engine->reconfigure(*snap, now, now_mono));
            } else if (!snap->config().sinks.empty()) {
                if (std::string err = start_engine(); !err.empty()) {
                    LogLine(Level::error, "control plane: sinks not started after reload")
                        .field("error", err)
                        .write();
                }
            }
            std::vector<std::string> sinks;
            for (size_t k = 0; k < store.sink_count(); ++k) {
                sinks.emplace_back(store.sink_name(k));
            }
            events->set_sinks(std::move(sinks));
        }
        // The job index and the engine keep what they were built from (sinks, their routes):
        // that snapshot stays held until they take up a newer one.
        use->oldest.store(std::min(built_from, snap->generation()), std::memory_order_release);
        use->current.store(snap->generation(), std::memory_order_release);
    }

    void log_store_reload(const queue::ReloadReport& r) {
        auto names = [](const std::vector<std::string>& list) {
            std::string out;
            for (const std::string& n : list) {
                out += (out.empty() ? "" : ",") + n;
            }
            return out;
        };
        for (const queue::ReloadReport::SinkGone& gone : r.sinks_removed) {
            LogLine(gone.pending != 0 ? Level::warn : Level::info,
                    "sink removed by reload; its pending deliveries wait for it to return")
                .field("sink", gone.name)
                .field("pending", static_cast<int64_t>(gone.pending))
                .write();
        }
        if (r.routes_removed.empty() && r.routes_added.empty() && r.routes_changed.empty() &&
            r.sinks_added.empty()) {
            return;
        }
        LogLine(Level::info, "control plane: reload taken up")
            .field("routes_added", names(r.routes_added))
            .field("routes_removed", names(r.routes_removed))
            .field("routes_changed", names(r.routes_changed))
            .field("sinks_added", names(r.sinks_added))
            .field("removed_route_pending", static_cast<int64_t>(r.removed_route_pending))
            .field("backfilled", static_cast<int64_t>(r.backfilled))
            .field("recovered", static_cast<int64_t>(r.recovered))
            .write();
    }

    void log_engine_reload(const deliver::EngineReload& r) {
        if (!r.error.empty()) {
            LogLine(Level::error, "control plane: sinks of the reload not started")
                .field("error", r.error)
                .write();
        }
        if (r.added.empty() && r.removed.empty() && r.changed.empty()) {
            return;
        }
        std::string added;
        std::string removed;
        std::string changed;
        for (const std::string& n : r.added) {
            added += (added.empty() ? "" : ",") + n;
        }
        for (const std::string& n : r.removed) {
            removed += (removed.empty() ? "" : ",") + n;
        }
        for (const std::string& n : r.changed) {
            changed += (changed.empty() ? "" : ",") + n;
        }
        LogLine(Level::info, "sinks reloaded")
            .field("added", added)
            .field("removed", removed)
            .field("changed", changed)
            .field("attempts_run_again", static_cast<int64_t>(r.cancelled))
            .write();
    }

    void reload(Conn& c, const Grant& who) {
        if (Access a = authorize(&who, "admin", "reload"); a != Access::granted) {
            answer_access(c, a);
            return;
        }
        if (reload_desk == nullptr) {
            answer(c, 503, R"({"error":"unavailable","detail":"reload is not available"})");
            return;
        }
        c.reload_ticket = reload_desk->ask(io::ReloadDesk::Errand::reload);
        c.waiting = true;
        reload_waiting.push_back(c.index);
        // The main thread takes signals; it serves every ticket asked before its load started.
        ::kill(::getpid(), SIGHUP);
    }

    // Answers the parked POST /v1/reload whose reload is done.
    void answer_reloads() {
        if (reload_waiting.empty()) {
            return;
        }
        std::vector<uint32_t> still;
        for (uint32_t i : reload_waiting) {
            Conn& c = *conns[i];
            if (!c.open || !c.waiting) {
                continue;
            }
            std::optional<io::ReloadOutcome> o =
                reload_desk->outcome(io::ReloadDesk::Errand::reload, c.reload_ticket);
            if (!o) {
                still.push_back(i);
                continue;
            }
            c.waiting = false;
            std::string out;
            base::StringBuffer buf(out);
            base::JsonWriter w(buf);
            if (o->ok) {
                char ms[32];
                const int n =
                    std::snprintf(ms, sizeof ms, "%.3f", static_cast<double>(o->took_ns) / 1e6);
                const std::string_view took_ms(ms, n > 0 ? static_cast<size_t>(n) : 0);
                w.begin_object()
                    .key("reloaded")
                    .boolean(true)
                    .key("generation")
                    .number(static_cast<int64_t>(o->generation))
                    .key("routes")
                    .number(static_cast<int64_t>(o->routes))
                    .key("took_ms")
                    .raw(took_ms)
                    .end_object();
                answer(c, 200, out);
                continue;
            }
            w.begin_object()
                .key("error")
                .string("reload_refused")
                .key("detail")
                .string(o->errors.front())
                .key("errors")
                .begin_array();
            for (const std::string& e : o->errors) {
                w.string(e);
            }
            w.end_array().end_object();
            answer(c, 422, out);
        }
        reload_waiting.swap(still);
    }

    // ---- the admin collections (consumers, tokens) ---------------------------------------

    // The methods and the scope of an admin collection (GET, POST) or of one of its members
    // (DELETE): 405 for another method, then admin:<action>. False once the answer is given.
    bool admit_admin(Conn& c, const Grant& who, std::string_view method, bool collection,
                     std::string_view action) {
        const std::string_view allow = collection ? "Allow: GET, POST\r\n" : "Allow: DELETE\r\n";
        if (collection ? method != "GET" && method != "POST" : method != "DELETE") {
            answer(c, 405, http::error_body::method_not_allowed, allow);
            return false;
        }
        if (Access a = authorize(&who, "admin", action); a != Access::granted) {
            answer_access(c, a);
            return false;
        }
        return true;
    }

    // ---- consumers (POST, GET /v1/consumers, DELETE /v1/consumers/{name}) ----------------

    ConsumerContext consumer_context() {
        return ConsumerContext{*snap, tokens, reload_desk, now,
                               [this](const base::Event& e) { publish_own(e); }};
    }

    void consumer_request(Conn& c, const Grant& who, std::string_view method, std::string_view path,
                          std::string_view body) {
        if (!admit_admin(c, who, method, path == "/v1/consumers", "consumers")) {
            return;
        }
        if (method == "GET") {
            if (engine) {
                engine->reports(sink_reports);
            } else {
                sink_reports.clear();
            }
            const ConsumerAnswer a = consumers.list(sink_reports);
            answer(c, a.status, a.body);
            return;
        }
        ConsumerContext cx = consumer_context();
        ConsumerAnswer a = method == "POST" ? consumers.register_consumer(body, who, cx)
                                            : consumers.remove(path.substr(14), who, cx);
        if (a.status == 0) {
            // The state file holds the change; the main thread publishes it.
            c.waiting = true;
            consumer_conn = c.index;
            consumer_conn_gen = c.gen;
            return;
        }
        answer(c, a.status, a.body, a.extra_headers);
    }

    // Answers the change in progress once the main thread has published it (or refused).
    void answer_consumer_change() {
        if (!consumers.pending()) {
            return;
        }
        ConsumerContext cx = consumer_context();
        std::optional<ConsumerAnswer> a = consumers.poll(cx);
        if (!a) {
            return;
        }
        Conn& c = *conns[consumer_conn];
        if (c.open && c.waiting && c.gen == consumer_conn_gen) {
            c.waiting = false;
            answer(c, a->status, a->body, a->extra_headers);
        }
        OPENSSL_cleanse(a->body.data(), a->body.size());
    }

    // ---- POST /v1/routes/{route}/jobs -------------------------------------------------------
    //
    // The job goes to one shard (round robin: the dedup and ordering tables are shared, so any
    // shard decides a key as well as another) through its inbox, and the shard's doorbell wakes
    // it; its answer comes back through the shard's outbox, which every loop turn drains (the
    // loop then turns every 2 ms). Nothing here waits for a shard.

    // The method, the scope and the route, from the head: answered (and false) when refused;
    // before the body is read the answer closes the connection, the body unread. A route that
    // does not exist is 404, as one outside the token's scopes is.
    bool may_enqueue(Conn& c, const Grant& who, std::string_view method, std::string_view route,
                     bool before_body) {
        if (method != "POST") {
            answer(c, 405, http::error_body::method_not_allowed, "Allow: POST\r\n", before_body);
            return false;
        }
        Access a = authorize(&who, "jobs", "enqueue", route);
        if (a == Access::granted && !has_route(route)) {
            a = Access::not_found;
        }
        switch (a) {
        case Access::granted:
            return true;
        case Access::forbidden:
            answer(c, 403, http::error_body::forbidden, {}, before_body);
            return false;
        case Access::unauthorized: // authenticated already
        case Access::not_found:
            answer(c, 404, http::error_body::not_found, {}, before_body);
            return false;
        }
        return false;
    }

    bool has_route(std::string_view name) const {
        return std::any_of(snap->routes().begin(), snap->routes().end(),
                           [&](const config::Route& r) { return r.config->name == name; });
    }

    void enqueue(Conn& c, const Grant& who, const http::RequestHead& head, std::string_view route,
                 std::string_view body) {
        if (head.headers.size() > snap->config().server.headers) {
            // What a webhook of the route could not carry either (server.limits.headers).
            answer(c, 431, http::error_body::bad_request);
            return;
        }
        // The next shard with room; none (or no shard at all) is 503, as a full spool is.
        size_t shard = shard_ports.size();
        for (size_t i = 0; i < shard_ports.size(); ++i) {
            const size_t s = (next_shard + i) % shard_ports.size();
            if (shard_load[s] < ingest::control_jobs_per_shard) {
                shard = s;
                break;
            }
        }
        if (shard == shard_ports.size()) {
            ++enqueues_busy;
            answer(c, 503, http::error_body::unavailable, "Retry-After: 1\r\n");
            return;
        }
        next_shard = (shard + 1) % shard_ports.size();
        auto job = std::make_unique<Enqueue>();
        // One string holds what the views point into: its size is known first, so that it is
        // not moved while they are taken.
        size_t size = route.size() + who.name().size() + body.size();
        for (const http::Header& h : head.headers) {
            size += h.name.size() + h.value.size();
        }
        job->bytes.reserve(size);
        auto keep = [&](std::string_view text) {
            const size_t at = job->bytes.size();
            job->bytes.append(text);
            return std::string_view(job->bytes).substr(at, text.size());
        };
        job->route = keep(route);
        job->token = keep(who.name());
        for (const http::Header& h : head.headers) {
            const std::string_view name = keep(h.name);
            job->fields.push_back({name, keep(h.value)});
        }
        job->headers = job->fields;
        job->body = keep(body);
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        if (getpeername(c.fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
            job->peer = base::PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss));
        }
        job->index = c.index;
        job->gen = c.gen;
        job->close = !head.keep_alive;
        const ingest::ShardPort& port = shard_ports[shard];
        if (!port.inbox->try_push(job.get())) {
            // Cannot happen: the load counts what the inbox holds.
            ++enqueues_busy;
            answer(c, 503, http::error_body::unavailable, "Retry-After: 1\r\n");
            return;
        }
        ++shard_load[shard];
        const ingest::ControlJob* key = job.get();
        enqueues.emplace(key, std::move(job));
        port.doorbell->ring();
        c.enqueuing = true;
    }

    // The jobs the shards have handed back: each connection still waiting gets its answer. The
    // store indexes a queued job before its 202 goes, so that a lease right after it finds it.
    void collect_enqueues() {
        bool polled = false;
        for (size_t s = 0; s < shard_ports.size(); ++s) {
            ingest::ControlJob* done = nullptr;
            while (shard_ports[s].outbox->try_pop(done)) {
                --shard_load[s];
                auto it = enqueues.find(done);
                if (it == enqueues.end()) {
                    continue; // cannot happen: every job handed out is here
                }
                ++enqueues_answered;
                if (done->status == 202 && !polled) {
                    store.poll();
                    polled = true;
                }
                answer_enqueue(*it->second, done->status, done->answer(), done->extra_headers());
                enqueues.erase(it);
            }
        }
    }

    void answer_enqueue(const Enqueue& job, uint16_t status, std::string_view body,
                        std::string_view extra) {
        Conn& c = *conns[job.index];
        if (!c.open || c.closing || c.gen != job.gen || !c.enqueuing) {
            ++enqueues_unanswered; // the job stands; only its answer is lost
            return;
        }
        c.enqueuing = false;
        answer(c, status, body, extra, job.close);
    }

    // At the stop, once the shards have: the jobs none of them took are refused.
    void refuse_enqueues() {
        for (const auto& [key, job] : enqueues) {
            ++enqueues_stopped;
            answer_enqueue(*job, 503, http::error_body::unavailable, "Retry-After: 1\r\n");
        }
        enqueues.clear();
    }

    // ---- minted tokens (POST, GET /v1/tokens, DELETE /v1/tokens/{name}; control_tokens.hh) --

    void token_request(Conn& c, const Grant& who, std::string_view method, std::string_view path,
                       std::string_view body) {
        if (!admit_admin(c, who, method, path == "/v1/tokens", "tokens")) {
            return;
        }
        TokenContext cx{*snap, tokens, now, [this](const base::Event& e) { publish_own(e); }};
        TokenAnswer a = method == "GET"    ? minted.list(*snap)
                        : method == "POST" ? minted.mint(body, who, cx)
                                           : minted.revoke(path.substr(11), who, cx);
        if (a.refused) {
            refuse(Refusal::token_refused, c.fd, a.detail);
        }
        answer(c, a.status, a.body);
        OPENSSL_cleanse(a.body.data(), a.body.size()); // a minted token's plaintext
    }

    // The job named by id text, if the token may act on it: else the answer has been given.
    std::optional<JobInfo> job_for(Conn& c, const Grant& who, std::string_view id_text,
                                   std::string_view action) {
        if (!who.allows_some_route("jobs", action)) {
            answer_access(c, Access::forbidden);
            return std::nullopt;
        }
        std::optional<JobId> id = JobId::parse(id_text);
        std::optional<JobInfo> job = id ? store.table().find(*id) : std::nullopt;
        if (!job || !who.allows("jobs", action, store.route_name(job->route))) {
            answer(c, 404, http::error_body::not_found);
            return std::nullopt;
        }
        return job;
    }

    // ---- metrics (GET /metrics) and what /healthz shows of them ---------------------------

    std::vector<ShardView> metric_shards;
    SharedSources metric_shared;
    std::vector<deliver::SinkReport> sink_reports; // scratch

    void metrics(Conn& c, const http::RequestHead& head) {
        if (head.method != "GET") {
            answer(c, 405, http::error_body::method_not_allowed, "Allow: GET\r\n");
            return;
        }
        const Grant* who = authenticate(c, head, false);
        if (who == nullptr) {
            return;
        }
        if (Access a = authorize(who, "metrics", "read"); a != Access::granted) {
            answer_access(c, a);
            return;
        }
        std::string text;
        Exposition e(text);
        write_shard_metrics(e, *snap, metric_shards, metric_shared);
        write_plane_metrics(e);
        http::Response r;
        r.status = 200;
        r.body = text;
        r.content_type = metrics_content_type;
        c.out.resize(text.size() + 256);
        c.out.resize(http::write_response(c.out, r, date.view()));
        c.sent = 0;
        c.close_after = false;
        c.answer_ready = true;
        enter(c, Phase::busy);
        ready.push_back(c.index);
    }

    // The families the control plane itself holds: jobs, spool, sinks, the build, the
    // configuration.
    void write_plane_metrics(Exposition& e) {
        e.family("portcullis_config_generation", "gauge",
                 "The configuration in use: 1 at start, one more per reload taken.");
        e.sample("portcullis_config_generation", {}, snap->generation());
        if (reload_desk != nullptr) {
            const auto [taken, refused] = reload_desk->counts();
            e.family("portcullis_config_reloads_total", "counter",
                     "Reloads (SIGHUP, POST /v1/reload), by result.");
            e.sample("portcullis_config_reloads_total", {{"result", "taken"}}, taken);
            e.sample("portcullis_config_reloads_total", {{"result", "refused"}}, refused);
        }
        e.family("portcullis_tokens", "gauge",
                 "Control-plane tokens, by source (the configuration, or minted).");
        e.sample("portcullis_tokens", {{"source", "config"}},
                 static_cast<uint64_t>(snap->config().tokens.size()));
        e.sample("portcullis_tokens", {{"source", "minted"}}, static_cast<uint64_t>(minted.size()));
        e.family("portcullis_jobs", "gauge", "Jobs of the pull API by route and state.");
        for (size_t i = 0; i < store.routes(); ++i) {
            const auto r = static_cast<uint16_t>(i);
            const queue::RouteDepth d = store.table().depth(r);
            const std::string_view route = store.route_name(r);
            e.sample("portcullis_jobs", {{"route", route}, {"state", "queued"}},
                     static_cast<uint64_t>(d.queued));
            e.sample("portcullis_jobs", {{"route", route}, {"state", "leased"}},
                     static_cast<uint64_t>(d.leased));
            e.sample("portcullis_jobs", {{"route", route}, {"state", "dead"}},
                     static_cast<uint64_t>(d.dead));
        }
        e.family("portcullis_jobs_oldest_age_seconds", "gauge",
                 "Age of the oldest job waiting for a consumer or a sink (queued, or waiting for "
                 "a retry), by route; 0 when none waits.");
        for (size_t i = 0; i < store.routes(); ++i) {
            const auto r = static_cast<uint16_t>(i);
            int64_t oldest = store.table().oldest_waiting_ns(r);
            for (size_t k = 0; k < store.sink_count(); ++k) {
                if (!store.sink_active(k)) {
                    continue; // a sink a reload removed: its jobs wait for its return
                }
                const int64_t at = store.sink_table(k).oldest_waiting_ns(r);
                if (at != 0 && (oldest == 0 || at < oldest)) {
                    oldest = at;
                }
            }
            const int64_t age = oldest == 0 ? 0 : std::max<int64_t>(0, now - oldest);
            e.sample("portcullis_jobs_oldest_age_seconds", {{"route", store.route_name(r)}},
                     static_cast<double>(age) / 1e9);
        }
        e.family("portcullis_spool_bytes", "gauge", "Bytes of the spool's segments.");
        e.sample("portcullis_spool_bytes", {}, static_cast<uint64_t>(store.spool_bytes()));
        if (const int64_t free_bytes = spool_free_bytes(); free_bytes >= 0) {
            e.family("portcullis_spool_free_bytes", "gauge",
                     "Bytes free for unprivileged users on the spool's file system.");
            e.sample("portcullis_spool_free_bytes", {}, free_bytes);
        }
        if (engine) {
            engine->reports(sink_reports);
            e.family("portcullis_deliveries_total", "counter",
                     "Delivery attempts settled (durable in the ledger), by sink and outcome.");
            for (const deliver::SinkReport& s : sink_reports) {
                e.sample("portcullis_deliveries_total",
                         {{"sink", s.name}, {"outcome", "delivered"}}, s.counts.delivered);
                e.sample("portcullis_deliveries_total", {{"sink", s.name}, {"outcome", "retried"}},
                         s.counts.retried);
                e.sample("portcullis_deliveries_total", {{"sink", s.name}, {"outcome", "dead"}},
                         s.counts.dead);
                e.sample("portcullis_deliveries_total", {{"sink", s.name}, {"outcome", "refused"}},
                         s.counts.refused);
                e.sample("portcullis_deliveries_total",
                         {{"sink", s.name}, {"outcome", "unreadable"}}, s.counts.unreadable);
            }
            e.family("portcullis_sink_breaker_open", "gauge",
                     "1 while a sink's circuit breaker is open or half-open (jobs wait).");
            for (const deliver::SinkReport& s : sink_reports) {
                e.sample("portcullis_sink_breaker_open", {{"sink", s.name}},
                         uint64_t{s.breaker_open ? 1U : 0U});
            }
            e.family("portcullis_delivery_duration_seconds", "histogram",
                     "Time of a delivery attempt, from its start to its outcome, by sink.");
            for (const deliver::SinkReport& s : sink_reports) {
                base::HistogramTotal h;
                h.add(*s.duration);
                e.histogram("portcullis_delivery_duration_seconds", {{"sink", s.name}}, h);
            }
        } else {
            sink_reports.clear();
        }
        consumers.write_metrics(e, sink_reports);
        e.family("portcullis_io_uring_feature", "gauge",
                 "io_uring features in use (1) or not offered by the kernel (0).");
        const std::pair<std::string_view, bool> used[] = {
            {"single_issuer", features.single_issuer},
            {"defer_taskrun", features.defer_taskrun},
            {"multishot_accept", features.multishot_accept},
            {"multishot_recv", features.multishot_recv},
            {"recv_limit", features.recv_limit},
            {"buf_ring", features.buf_ring},
        };
        for (const auto& [name, on] : used) {
            e.sample("portcullis_io_uring_feature", {{"feature", name}}, uint64_t{on ? 1U : 0U});
        }
        e.family("portcullis_start_time_seconds", "gauge", "When the process started (Unix time).");
        e.sample("portcullis_start_time_seconds", {}, started_ns / base::ns_per_s);
        e.family("portcullis_build_info", "gauge", "The build: always 1, its version a label.");
        e.sample("portcullis_build_info", {{"version", PORTCULLIS_VERSION}}, uint64_t{1});
    }

    int64_t spool_free_bytes() const {
        struct statvfs fs {};
        if (::statvfs(snap->config().spool.dir.c_str(), &fs) != 0) {
            return -1;
        }
        return static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
    }

    // /healthz's status: degraded (still 200) while a sink's breaker is open or a shard's spool
    // refuses writes.
    bool degraded() {
        if (spool_refusing(metric_shards)) {
            return true;
        }
        if (engine) {
            engine->reports(sink_reports);
            for (const deliver::SinkReport& s : sink_reports) {
                if (s.breaker_open) {
                    return true;
                }
            }
        }
        return false;
    }

    // /healthz's "certificates": each TLS certificate's expiry.
    void health_certificates(base::JsonWriter<base::StringBuffer>& w) const {
        if (metric_shared.certificates.empty()) {
            return;
        }
        w.key("certificates").begin_object();
        for (const SharedSources::Certificate& cert : metric_shared.certificates) {
            const int64_t not_after = cert.not_after->load(std::memory_order_relaxed);
            w.key(cert.name)
                .begin_object()
                .key("not_after")
                .number(not_after)
                .key("expires_in_s")
                .number(not_after - now / base::ns_per_s)
                .end_object();
        }
        w.end_object();
    }

    void healthz(Conn& c) {
        std::string out;
        base::StringBuffer buf(out);
        base::JsonWriter w(buf);
        w.begin_object()
            .key("status")
            .string(degraded() ? "degraded" : "ok")
            .key("uptime_s")
            .number((now - started_ns) / base::ns_per_s)
            .key("shards")
            .number(static_cast<int64_t>(progress.size()))
            .key("routes")
            .begin_object();
        for (size_t i = 0; i < store.routes(); ++i) {
            const auto r = static_cast<uint16_t>(i);
            queue::RouteDepth d = store.table().depth(r);
            w.key(store.route_name(r))
                .begin_object()
                .key("queued")
                .number(static_cast<int64_t>(d.queued))
                .key("leased")
                .number(static_cast<int64_t>(d.leased))
                .key("dead")
                .number(static_cast<int64_t>(d.dead))
                .end_object();
        }
        w.end_object().key("sinks").begin_object();
        if (engine) {
            engine->write_health(w);
            engine->reports(sink_reports);
        } else {
            sink_reports.clear();
        }
        w.end_object();
        consumers.write_health(w, sink_reports);
        const int64_t free_bytes = spool_free_bytes();
        w.key("spool")
            .begin_object()
            .key("bytes")
            .number(static_cast<int64_t>(store.spool_bytes()))
            .key("free_bytes")
            .number(free_bytes)
            .end_object()
            .key("io_uring")
            .begin_object()
            .key("single_issuer")
            .boolean(features.single_issuer)
            .key("defer_taskrun")
            .boolean(features.defer_taskrun)
            .key("multishot_accept")
            .boolean(features.multishot_accept)
            .key("multishot_recv")
            .boolean(features.multishot_recv)
            .key("recv_limit")
            .boolean(features.recv_limit)
            .key("buf_ring")
            .boolean(features.buf_ring)
            .end_object();
        health_certificates(w);
        w.end_object();
        answer(c, 200, out);
    }

    void lease(Conn& c, const Grant& who, std::string_view body) {
        auto route_name = json_plain(body, "/route", base::JsonType::string);
        if (!route_name) {
            answer(c, 400, R"({"error":"bad_request","detail":"route: a string is required"})");
            return;
        }
        if (Access a = authorize(&who, "jobs", "consume", *route_name); a != Access::granted) {
            answer_access(c, a);
            return;
        }
        int route = store.route_index(*route_name);
        if (route < 0) {
            answer(c, 404, http::error_body::not_found);
            return;
        }
        int64_t max = 1;
        if (integer_field(body, "/max", 1, max_lease, max) == Field::bad) {
            answer(c, 400, R"({"error":"bad_request","detail":"max: an integer from 1 to 1000"})");
            return;
        }
        int64_t visibility = default_visibility_ns;
        int64_t wait = 0;
        if (duration_field(body, "/visibility", base::ns_per_ms, max_visibility_ns, visibility) ==
                Field::bad ||
            duration_field(body, "/wait", 0, max_wait_ns, wait) == Field::bad) {
            answer(c, 400,
                   R"({"error":"bad_request","detail":"visibility: 1ms to 12h, wait: 0s to 60s"})");
            return;
        }
        c.route = static_cast<uint16_t>(route);
        c.max = static_cast<uint32_t>(max);
        c.visibility_ns = visibility;
        c.deadline_ns = now + wait;
        if (!try_lease(c, wait == 0)) {
            c.waiting = true;
            waiting.push_back(c.index);
        }
    }

    // Leases for c's parked request; answers and returns true when there were jobs or `always`.
    bool try_lease(Conn& c, bool always) {
        jobs.clear();
        store.table().lease(c.route, c.max, c.visibility_ns, now, jobs);
        emit_expired_deaths();
        if (jobs.empty() && !always) {
            return false;
        }
        std::string& out = lease_body;
        out.assign(R"({"jobs":[)");
        bool first = true;
        for (const JobInfo& j : jobs) {
            queue::JobRecord rec;
            if (!store.read(j.where, rec) || rec.id != j.id) {
                // The record is gone from under the index (a group that failed after it was
                // seen): there is nothing to deliver; settle it so it is not leased again.
                char text[queue::job_id_text_size];
                j.id.format(text);
                LogLine(Level::error, "job record unreadable; dropped")
                    .field("job", std::string_view(text, sizeof text))
                    .write();
                store.table().ack(j.id, now);
                continue;
            }
            if (!first) {
                out.push_back(',');
            }
            first = false;
            queue::append_job_json(out, rec, j.attempts);
            emit_job(base::EventType::job_leased, j);
        }
        out += "]}";
        answer(c, 200, out);
        if (out.capacity() > lease_body_keep) {
            std::string().swap(out);
        }
        return true;
    }

    void serve_waiting(bool all) {
        if (waiting.empty()) {
            return;
        }
        std::vector<uint32_t> still;
        for (uint32_t i : waiting) {
            Conn& c = *conns[i];
            if (!c.open || !c.waiting) {
                continue;
            }
            if (try_lease(c, all || now >= c.deadline_ns)) {
                c.waiting = false;
            } else {
                still.push_back(i);
            }
        }
        waiting.swap(still);
    }

    // A nack's optional {"delay":"10s"}; false when it is malformed (answered 400).
    bool read_delay(Conn& c, std::string_view body, std::optional<int64_t>& delay) {
        int64_t d = 0;
        Field f = duration_field(body, "/delay", 0, max_visibility_ns, d);
        if (f == Field::bad) {
            answer(c, 400, R"({"error":"bad_request","detail":"delay: 0s to 12h"})");
            return false;
        }
        if (f == Field::ok) {
            delay = d;
        }
        return true;
    }

    void settle_one(Conn& c, const Grant& who, std::string_view id, std::string_view body,
                    bool ack) {
        std::optional<JobInfo> job = job_for(c, who, id, "consume");
        if (!job) {
            return;
        }
        std::optional<int64_t> delay;
        if (!ack && !read_delay(c, body, delay)) {
            return;
        }
        JobTable::Settle s =
            ack ? store.table().ack(job->id, now) : store.table().nack(job->id, delay, now);
        std::string_view error = settle_error(s);
        if (!error.empty()) {
            std::string out = R"({"error":")" + std::string(error) + "\"}";
            answer(c, s == JobTable::Settle::unknown ? 404 : 409, out);
            return;
        }
        if (s == JobTable::Settle::ok) {
            emit_settled(job->id, ack);
        }
        answer_state(c, job->id);
        c.needs_sync = true;
    }

    // {"id":..,"route":..,"state":..,"attempts":..,"received_at":..}; enqueued_by (the token of
    // a job enqueued through the control plane) when given.
    void write_state(base::JsonWriter<base::StringBuffer>& w, const JobInfo& j,
                     bool deliveries = false, std::string_view enqueued_by = {}) {
        char text[queue::job_id_text_size];
        j.id.format(text);
        char at[24];
        w.begin_object()
            .key("id")
            .string(std::string_view(text, sizeof text))
            .key("route")
            .string(store.route_name(j.route))
            .key("state")
            .string(queue::state_name(deliveries && engine ? engine->overall(j) : j.state))
            .key("attempts")
            .number(j.attempts)
            .key("received_at")
            .string(base::format_rfc3339(j.received_at_ns, at));
        if (!enqueued_by.empty()) {
            w.key("enqueued_by").string(enqueued_by);
        }
        if (j.due_ns > now &&
            (j.state == queue::JobState::leased || j.state == queue::JobState::queued)) {
            w.key(j.state == queue::JobState::leased ? "lease_expires_at" : "not_before")
                .string(base::format_rfc3339(j.due_ns, at));
        }
        if (deliveries && engine) {
            w.key("deliveries").begin_object();
            engine->write_deliveries(w, j.id, j.route);
            w.end_object();
        }
        w.end_object();
    }

    // The job's state; for a route with sinks, also where it stands with each of them. With
    // source, a job enqueued through the control plane names its token (read from its record).
    void answer_state(Conn& c, JobId id, bool source = false) {
        std::optional<JobInfo> j = store.table().find(id);
        queue::JobRecord rec;
        const bool read = source && store.read(j->where, rec) && rec.id == j->id;
        std::string out;
        base::StringBuffer buf(out);
        base::JsonWriter w(buf);
        write_state(w, *j, true, read ? rec.source : std::string_view());
        answer(c, 200, out);
    }

    void job_state(Conn& c, const Grant& who, std::string_view id) {
        if (std::optional<JobInfo> job = job_for(c, who, id, "read")) {
            answer_state(c, job->id, true);
        }
    }

    void replay(Conn& c, const Grant& who, std::string_view id, std::string_view query) {
        std::optional<JobInfo> job = job_for(c, who, id, "replay");
        if (!job) {
            return;
        }
        JobTable* table = table_for(c, query);
        if (table == nullptr) {
            return;
        }
        JobTable::Settle s = table->replay(job->id, now);
        if (s != JobTable::Settle::ok) {
            answer(c, s == JobTable::Settle::unknown ? 404 : 409,
                   R"({"error":")" + std::string(settle_error(s)) + "\"}");
            return;
        }
        const std::optional<std::string_view> sink = queue::query_param(query, "sink");
        emit_job(base::EventType::job_replayed, *job,
                 sink && engine ? static_cast<uint16_t>(engine->sink_index(*sink))
                                : base::Event::none);
        answer_state(c, job->id);
        c.needs_sync = true;
    }

    void settle_many(Conn& c, const Grant& who, std::string_view body, bool ack) {
        if (!who.allows_some_route("jobs", "consume")) {
            answer_access(c, Access::forbidden);
            return;
        }
        base::JsonLookup ids = base::json_find(body, "/ids");
        std::vector<std::string_view> list;
        if (ids.status != base::JsonStatus::found || ids.value.type != base::JsonType::array ||
            !base::json_plain_strings(ids.value.raw, list) || list.size() > max_bulk_ids) {
            answer(c, 400,
                   R"({"error":"bad_request","detail":"ids: an array of up to 1000 job ids"})");
            return;
        }
        std::optional<int64_t> delay;
        if (!ack && !read_delay(c, body, delay)) {
            return;
        }
        std::string settled;
        std::string failed;
        base::StringBuffer sb(settled);
        base::StringBuffer fb(failed);
        base::JsonWriter sw(sb);
        base::JsonWriter fw(fb);
        sw.begin_array();
        fw.begin_array();
        for (std::string_view text : list) {
            std::optional<JobId> id = JobId::parse(text);
            std::optional<JobInfo> job = id ? store.table().find(*id) : std::nullopt;
            JobTable::Settle s = JobTable::Settle::unknown;
            if (job && who.allows("jobs", "consume", store.route_name(job->route))) {
                s = ack ? store.table().ack(*id, now) : store.table().nack(*id, delay, now);
            }
            std::string_view error = settle_error(s);
            if (s == JobTable::Settle::ok) {
                emit_settled(*id, ack);
            }
            if (error.empty()) {
                sw.string(text);
            } else {
                fw.begin_object().key("id").string(text).key("error").string(error).end_object();
            }
        }
        sw.end_array();
        fw.end_array();
        answer(c, 200, R"({"settled":)" + settled + R"(,"failed":)" + failed + "}");
        c.needs_sync = true;
    }

    // The table of ?sink=NAME (a sink's deliveries) or, without one, the pull API's. Null when
    // the sink is unknown: then the answer (404) has been given.
    JobTable* table_for(Conn& c, std::string_view query) {
        std::optional<std::string_view> sink = queue::query_param(query, "sink");
        if (!sink) {
            return &store.table();
        }
        int index = engine ? engine->sink_index(*sink) : -1;
        if (index < 0) {
            answer(c, 404, R"({"error":"not_found","detail":"no such sink"})");
            return nullptr;
        }
        return &store.sink_table(static_cast<size_t>(index));
    }

    void dead_letters(Conn& c, const Grant& who, std::string_view query) {
        std::string_view route_name = queue::query_param(query, "route").value_or("");
        JobId after;
        if (std::optional<std::string_view> text = queue::query_param(query, "after")) {
            std::optional<JobId> id = JobId::parse(*text);
            if (!id) {
                answer(c, 400, R"({"error":"bad_request","detail":"after: a job id"})");
                return;
            }
            after = *id;
        }
        if (!who.allows_some_route("jobs", "read")) {
            answer_access(c, Access::forbidden);
            return;
        }
        JobTable* table = table_for(c, query);
        if (table == nullptr) {
            return;
        }
        jobs.clear();
        if (!route_name.empty()) {
            int route = store.route_index(route_name);
            if (route < 0 || !who.allows("jobs", "read", route_name)) {
                answer(c, 404, http::error_body::not_found);
                return;
            }
            table->dead_letters(static_cast<uint16_t>(route), after, dead_letter_page, jobs);
        } else {
            for (size_t i = 0; i < store.routes(); ++i) {
                const auto r = static_cast<uint16_t>(i);
                if (who.allows("jobs", "read", store.route_name(r))) {
                    table->dead_letters(r, after, dead_letter_page, jobs);
                }
            }
            std::sort(jobs.begin(), jobs.end(),
                      [](const JobInfo& a, const JobInfo& b) { return a.id < b.id; });
            if (jobs.size() > dead_letter_page) {
                jobs.resize(dead_letter_page);
            }
        }
        std::string out;
        base::StringBuffer buf(out);
        base::JsonWriter w(buf);
        w.begin_object().key("jobs").begin_array();
        for (const JobInfo& j : jobs) {
            write_state(w, j);
        }
        w.end_array();
        if (jobs.size() == dead_letter_page) {
            char text[queue::job_id_text_size];
            jobs.back().id.format(text);
            w.key("next").string(std::string_view(text, sizeof text));
        }
        w.end_object();
        answer(c, 200, out);
    }
    // ---- GET /events -------------------------------------------------------------------

    void init_events() {
        EventNames names;
        if (route_slots == nullptr) {
            // Without reloads the start configuration's slots are its indexes.
            own_slots = std::make_unique<config::RouteSlots>();
            for (const config::Route& r : snap->routes()) {
                own_slots->assign(r.config->name);
            }
            route_slots = own_slots.get();
        }
        names.routes = route_slots;
        for (size_t k = 0; k < store.sink_count(); ++k) {
            names.sinks.emplace_back(store.sink_name(k)); // by the numbers events carry
        }
        events =
            std::make_unique<EventBuffer>(snap->config().admin.events.buffer, std::move(names));
        next_keepalive_ns = now_mono + events_keepalive_ns;
    }

    // Settlements' events (job.acked|nacked|dead|replayed|delivered) are shown only once the
    // ledger group holding them is durable, and never when it is rolled back: those gathered
    // since the last group was taken, and those of the group in flight.
    std::vector<base::Event> events_unsynced;
    std::vector<base::Event> events_in_group;

    // An event of this thread's (the pull API): a lease is shown at once, a settlement once
    // durable.
    void emit_job(base::EventType type, const JobInfo& j, uint16_t sink = base::Event::none) {
        base::Event e = base::Event::make(type, now);
        e.route = j.route;
        e.sink = sink;
        e.attempt = j.attempts;
        char text[queue::job_id_text_size];
        j.id.format(text);
        e.set_id(std::string_view(text, sizeof text));
        if (type == base::EventType::job_leased) {
            publish_own(e);
        } else {
            events_unsynced.push_back(e);
        }
    }

    // job.dead of the jobs whose last lease ran out (found by lease()), once durable.
    void emit_expired_deaths() {
        dead_scratch.clear();
        store.table().take_expired_deaths(dead_scratch);
        for (const JobInfo& j : dead_scratch) {
            emit_job(base::EventType::job_dead, j);
        }
    }
    std::vector<JobInfo> dead_scratch;

    // A settled job's event: acked, nacked, or dead when the nack spent its last attempt.
    void emit_settled(JobId id, bool ack) {
        if (std::optional<JobInfo> j = store.table().find(id)) {
            emit_job(ack                                 ? base::EventType::job_acked
                     : j->state == queue::JobState::dead ? base::EventType::job_dead
                                                         : base::EventType::job_nacked,
                     *j);
        }
    }

    // GET /events: 200 text/event-stream, the replay after Last-Event-ID, then live.
    void open_stream(Conn& c, const Grant& who, const http::RequestHead& head) {
        if (Access a = authorize(&who, "events", "read"); a != Access::granted) {
            answer_access(c, a);
            return;
        }
        TypeMask types = all_types;
        if (std::optional<std::string_view> t = queue::query_param(head.query, "types")) {
            std::string why;
            std::optional<TypeMask> parsed = parse_types(*t, &why);
            if (!parsed) {
                answer(c, 400, error_json(why));
                return;
            }
            types = *parsed;
        }
        std::optional<uint64_t> last_id;
        const verify::HeaderMatch h = verify::find_single_header(head.headers, "last-event-id");
        if (h.repeated) {
            answer(c, 400, error_json("last-event-id: more than one header"));
            return;
        }
        if (h.header != nullptr && !h.header->value.empty()) {
            last_id = parse_last_event_id(h.header->value);
            if (!last_id) {
                answer(c, 400, error_json("last-event-id: a decimal event id"));
                return;
            }
        }
        size_t open_streams = 0;
        for (uint32_t i : streams) {
            open_streams += conns[i]->streaming && conns[i]->open && !conns[i]->closing ? 1 : 0;
        }
        if (open_streams >= snap->config().admin.events.subscribers) {
            ++streams_refused;
            answer(c, 503, R"({"error":"unavailable","detail":"too many event streams"})",
                   "Retry-After: 5\r\n");
            return;
        }
        drain_event_queues(); // the replay includes what the shards have handed over so far
        ++streams_opened;
        c.streaming = true;
        c.event_types = types;
        c.next_event = events->next_after(last_id);
        c.out = "HTTP/1.1 200 OK\r\nDate: ";
        c.out += date.view();
        c.out += "\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                 "X-Accel-Buffering: no\r\n\r\n";
        if (last_id && c.next_event != *last_id + 1) {
            // The events after last_id are gone (or it is another run's id): say so, in a
            // comment an EventSource ignores, then replay what is held.
            c.out += ": last-event-id " + std::to_string(*last_id) +
                     " is not in the buffer; replaying from the oldest held, " +
                     std::to_string(events->oldest()) + "\n\n";
        }
        collect_for(c, c.out);
        c.sent = 0;
        c.answer_ready = true;
        enter(c, Phase::busy);
        ready.push_back(c.index);
        streams.push_back(c.index);
        // A small kernel buffer, so that a reader that stops is seen (and cut) after a bounded
        // backlog rather than after megabytes of kernel memory.
        int sndbuf = static_cast<int>(events_socket_buffer);
        ::setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    }

    static std::string error_json(std::string_view detail) {
        std::string out;
        base::StringBuffer buf(out);
        base::JsonWriter w(buf);
        w.begin_object()
            .key("error")
            .string("bad_request")
            .key("detail")
            .string(detail)
            .end_object();
        return out;
    }

    void collect_for(Conn& c, std::string& out) {
        if (uint64_t lost = events->collect(c.next_event, c.event_types, out); lost != 0) {
            events_lost += lost;
            out += ": " + std::to_string(lost) + " events lost (the buffer wrapped)\n\n";
        }
    }

    // The other threads' events, numbered in the order of their times. Most turns only one
    // queue holds any (one shard's, already in order): they go straight into the buffer. Else
    // each queue is in order and a stable sort of their indices merges them, ties in queue order.
    // Returns whether there were any.
    bool drain_event_queues() {
        base::EventQueue* only = nullptr;
        size_t holding = 0;
        for (base::EventQueue* q : event_queues) {
            if (!q->empty()) {
                only = q;
                ++holding;
            }
        }
        if (holding <= 1) {
            return only != nullptr && events->take(*only) != 0;
        }
        event_scratch.clear();
        base::Event e;
        for (base::EventQueue* q : event_queues) {
            while (q->try_pop(e)) {
                event_scratch.push_back(e);
            }
        }
        event_order.resize(event_scratch.size());
        std::iota(event_order.begin(), event_order.end(), uint32_t{0});
        std::stable_sort(event_order.begin(), event_order.end(), [this](uint32_t a, uint32_t b) {
            return event_scratch[a].ts_ns < event_scratch[b].ts_ns;
        });
        for (uint32_t i : event_order) {
            events->publish(event_scratch[i]);
        }
        return !event_scratch.empty();
    }

    // An event of this thread's: after what the others handed over before it.
    void publish_own(const base::Event& e) {
        drain_event_queues();
        events->publish(e);
    }

    // Each loop turn: the other threads' events into the buffer, then to every stream (or a
    // keep-alive comment every 15 s); a stream whose backlog passed the bound is cut.
    void pump_events() {
        // Only the turn's own drain says whether events flow: one made for an event of this
        // thread's (publish_own) right after it finds the queues empty however busy they are.
        events_flowing = drain_event_queues();
        const bool keepalive = now_mono >= next_keepalive_ns;
        if (keepalive) {
            next_keepalive_ns = now_mono + events_keepalive_ns;
        }
        size_t kept = 0;
        for (uint32_t i : streams) {
            Conn& c = *conns[i];
            if (!c.open || c.closing || !c.streaming) {
                continue;
            }
            streams[kept++] = i;
            if (c.answer_ready) {
                continue; // the head is not sent yet: collected once it is
            }
            collect_for(c, c.pending);
            if (keepalive) {
                c.pending += ": keep-alive\n\n";
            }
            // What waits behind the send in flight: it grows only while the reader does not read
            // (frames gathered while no send is in flight go out at once, however many).
            if (c.sending && c.pending.size() > snap->config().admin.events.backlog) {
                cut_stream(c);
                continue;
            }
            if (!c.sending && !c.pending.empty()) {
                c.out.swap(c.pending);
                c.pending.clear();
                c.sent = 0;
                start_send(c);
            }
        }
        streams.resize(kept);
    }

    // A stream's send finished: the next frames, if any.
    void stream_sent(Conn& c) {
        collect_for(c, c.pending);
        if (!c.pending.empty()) {
            c.out.swap(c.pending);
            c.pending.clear();
            start_send(c);
        }
        if (!c.recv_armed) {
            arm_recv(c);
        }
    }

    void cut_stream(Conn& c) {
        ++streams_cut;
        if (cut_log.allow(now_mono, base::ns_per_s)) {
            LogLine line(Level::warn,
                         "control plane: event stream cut; the subscriber fell behind");
            line.field("backlog_bytes",
                       static_cast<int64_t>(c.pending.size() + c.out.size() - c.sent))
                .field("count", static_cast<int64_t>(streams_cut));
            if (cut_log.held_back != 0) {
                line.field("lines_held_back", static_cast<int64_t>(cut_log.held_back));
                cut_log.held_back = 0;
            }
            line.write();
        }
        c.pending.clear();
        close_conn(c);
    }

    void log_event_counts(LogLine& line) const {
        uint64_t dropped = 0;
        for (const base::EventQueue* q : event_queues) {
            dropped += q->dropped();
        }
        line.field("events", static_cast<int64_t>(events->newest()))
            .field("events_dropped", static_cast<int64_t>(dropped))
            .field("events_lost", static_cast<int64_t>(events_lost))
            .field("event_streams", static_cast<int64_t>(streams_opened))
            .field("event_streams_cut", static_cast<int64_t>(streams_cut))
            .field("event_streams_refused", static_cast<int64_t>(streams_refused));
    }
};

ControlPlane::ControlPlane(const config::Snapshot& snapshot, const io::Features& features,
                           std::span<const queue::SpoolProgress> progress)
    : _impl(std::make_unique<Impl>(snapshot, features, progress)) {}

ControlPlane::~ControlPlane() = default;

void ControlPlane::observe(std::vector<ShardView> shards, SharedSources shared) {
    _impl->metric_shards = std::move(shards);
    _impl->metric_shared = std::move(shared);
}

std::string ControlPlane::init(int listen_fd) {
    return _impl->init(listen_fd);
}

void ControlPlane::set_event_queues(std::span<base::EventQueue* const> queues) {
    _impl->event_queues.assign(queues.begin(), queues.end());
}

void ControlPlane::follow_reloads(const std::atomic<const config::Snapshot*>& live,
                                  io::SnapshotUse& use, const config::RouteSlots& slots,
                                  io::ReloadDesk& desk) {
    _impl->live = &live;
    _impl->use = &use;
    _impl->route_slots = &slots;
    _impl->reload_desk = &desk;
    use.oldest.store(_impl->snap->generation(), std::memory_order_release);
    use.current.store(_impl->snap->generation(), std::memory_order_release);
}

std::string ControlPlane::check_reload(const config::Snapshot& next) const {
    return _impl->store.check_reconfigure(next);
}

void ControlPlane::wake() const {
    _impl->doorbell.ring();
}

void ControlPlane::set_shards(std::span<const ingest::ShardPort> ports) {
    _impl->shard_ports.assign(ports.begin(), ports.end());
    _impl->shard_load.assign(ports.size(), 0);
}

void ControlPlane::run(const std::atomic<bool>& stop) {
    _impl->run(stop);
}

} // namespace portcullis::admin
