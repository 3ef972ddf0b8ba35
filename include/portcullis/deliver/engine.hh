// The delivery engine (SPEC section 8): pushes every job of a route to each sink the route
// delivers to, on the control plane's thread and ring, next to the pull API.
//
//   Engine engine(ring, snapshot, store);                 // store: the control plane's JobStore
//   if (auto err = engine.init(now_mono); !err.empty()) { fail(err); }
//   // each loop iteration, after store.poll():
//   engine.pump(now_unix, now_mono);                       // start what may start
//   ring.submit_and_wait(engine.wait_limit_ns(now_unix, now_mono, limit));
//   ring.for_each_cqe([&](const io_uring_cqe& c) {
//       if (Engine::owns(c.user_data)) { engine.on_cqe(c, now_unix, now_mono); }
//   });
//   // the ledger: a group must be fdatasynced when engine.wants_sync(); around it
//   engine.group_taken(); ... engine.group_resolved(durable);
//
// Each (job, sink) pair is a lane: a JobTable of its own in the JobStore (store.sink_table(i)),
// whose state the ledger keeps like the pull API's. A delivery attempt is a lease of the job in
// the sink's table (attempts + 1), held until the attempt's outcome: delivered -> ack; retry or
// failure -> nack with retry_delay_ns (past the route's max_attempts the table moves it to the
// dead letters); refused by the application (HTTP 4xx other than 408 and 429) -> bury, dead at
// once. The table records each change as a ledger op, and the control plane writes and
// fdatasyncs them: a settlement counts (stats, the next job of an ordered sequence) only once
// durable. After a crash the leases of the dead process are void (JobStore::open expires them),
// so an attempt in flight runs again with the next attempt number; a job whose success was
// durable never does.
//
// Per sink: `concurrency` attempts in flight, the circuit breaker (policy.hh), the optional pace
// of `rate`. A registered consumer's sink with a health path (SinkConfig::health) is probed
// every interval with a GET on a client of its own: a non-2xx answer, a timeout or a connection
// error holds its breaker open (jobs wait, no attempt spent) until a probe passes again. Jobs are
// taken from the sink's routes in turn, oldest first within a route.
//
// Sinks are numbered as the JobStore numbers them (by name, for the life of the process: the
// start configuration's order, then each name a reload adds): the number is Event::sink, the
// index of store.sink_table() and what sink_index() returns. The engine copies what it needs of
// each sink's configuration and keeps no reference into a Snapshot once reconfigure() returns.
//
// Live reload (reconfigure(), after JobStore::reconfigure, on the control plane's thread):
// - a sink added is created and init()ed as at start (one that comes back keeps its counters);
// - a sink removed: its attempts in flight are abandoned (connections closed, exec children
//   killed) and their leases voided at once, so the jobs wait in its table (JobStore reports
//   them), each with the attempt counted, as after a kill -9; its counters are logged;
// - a sink whose configuration changed (any key, or the contents of its `ca` file): its new
//   client is built first (if that fails the old one stays, and the error is returned); then
//   the old one goes as a removed sink's does and the jobs it had in flight run again at once
//   on the new one, under the same number, table and counters; the breaker starts closed;
// - an unchanged sink is left alone: its attempts in flight finish;
// - every sink's routes are recomputed: the routes the store gives it (JobStore::route_sinks),
//   and any other route its table still has jobs of (a route removed, or no longer delivering
//   to it: what was queued for it is still delivered).
// A network client is destroyed once its cancelled operations are in (idle): until then its
// ring slot is not given to another.
#pragma once

#include "portcullis/base/event.hh"
#include "portcullis/base/histogram.hh"
#include "portcullis/config/snapshot.hh"
#include "portcullis/deliver/exec_runner.hh"
#include "portcullis/deliver/http_sink.hh"
#include "portcullis/deliver/nats_sink.hh"
#include "portcullis/deliver/policy.hh"
#include "portcullis/deliver/redis_sink.hh"
#include "portcullis/io/ring.hh"
#include "portcullis/queue/job_store.hh"

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::base {
class StringBuffer;
template <typename Buffer>
class JsonWriter;
} // namespace portcullis::base

namespace portcullis::deliver {

// Settled attempts of one sink, counted once their ledger group is durable.
struct SinkCounts {
    uint64_t delivered = 0;
    uint64_t retried = 0;    // failed attempts that will run again
    uint64_t dead = 0;       // moved to the dead letters (attempts exhausted or refused)
    uint64_t refused = 0;    // of which refused by the application at once (HTTP 4xx)
    uint64_t unreadable = 0; // records that could not be read back: dropped, logged
};

// One sink as /metrics and /healthz see it (views valid while the engine lives).
struct SinkReport {
    std::string_view name;
    SinkCounts counts;
    bool breaker_open = false;                 // open or half-open: jobs wait
    const base::Histogram* duration = nullptr; // attempts, start to outcome
    int8_t healthy = -1; // with a health probe (a registered consumer's): 1 or 0; else -1
};

// What Engine::reconfigure did, for the reload's log line.
struct EngineReload {
    std::vector<std::string> added, removed, changed; // sink names
    size_t cancelled = 0; // attempts in flight abandoned (removed or changed sinks): run again
    // "" or why sinks could not start ("sinks.NAME...: why", joined by "; "): a new one waits
    // without a client (its jobs queue), a changed one keeps its previous configuration.
    std::string error;
};

class Engine {
public:
    Engine(io::Ring& ring, const config::Snapshot& snapshot, queue::JobStore& store);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Start-up (blocking): the exec headers folder (<spool.dir>/exec, 0700, emptied of what a
    // killed process left), each HTTP sink's client. Returns "" or the error. Also for an engine
    // created by a reload (the first sink added): store must know the snapshot's sinks.
    std::string init(int64_t now_mono_ns);

    // Live reload: see above. next must outlive the engine or the next reconfigure().
    EngineReload reconfigure(const config::Snapshot& next, int64_t now_unix_ns,
                             int64_t now_mono_ns);

    bool has_sinks() const;

    // Runs the sinks' timers (timeouts) and starts the attempts that may start now.
    void pump(int64_t now_unix_ns, int64_t now_mono_ns);

    static bool owns(uint64_t user_data) {
        const uint64_t tag = user_data >> 56;
        return ExecRunner::owns(user_data) || tag == http_tag || tag == nats_tag ||
               tag == redis_tag;
    }
    void on_cqe(const io_uring_cqe& cqe, int64_t now_unix_ns, int64_t now_mono_ns);

    // How long the loop may sleep before pump() or a sink has something to do, at most limit.
    int64_t wait_limit_ns(int64_t now_unix_ns, int64_t now_mono_ns, int64_t limit) const;

    // Settlements were made since the last group_taken(): the next ledger group must be synced.
    bool wants_sync() const { return !_unsynced.empty(); }
    // The control plane took the table's pending ops (settlements included) as one group.
    void group_taken();
    // That group is durable (true) or failed and was rolled back (false).
    void group_resolved(bool durable);

    // Shutdown: stops starting attempts (pump() still runs the sinks' timers). Returns true
    // once nothing is in flight.
    bool drain();
    // Then: abandons what is still in flight (children killed, connections closed; their leases
    // are void at the next start) and cancels the sinks' operations; dispatch CQEs until idle().
    void stop();
    bool idle() const;

    // /healthz's "sinks" object members.
    void write_health(base::JsonWriter<base::StringBuffer>& w) const;
    // GET /v1/jobs/{id}'s "deliveries" object: the job's state in each sink of its route.
    void write_deliveries(base::JsonWriter<base::StringBuffer>& w, queue::JobId id,
                          uint16_t route) const;
    // A job's state over every lane of its route, from its pull-API state: leased if an attempt
    // (or a pull lease) is in flight, else queued if a lane waits, else dead if a lane is dead,
    // else done. The pull API's lane counts on a route with sinks only once it was leased.
    queue::JobState overall(const queue::JobInfo& pull) const;
    // The number of a configured sink (the store's), or -1.
    int sink_index(std::string_view name) const;
    // Whether the sink delivers jobs of route.
    bool delivers(size_t sink, uint16_t route) const;
    // The stop line's fields.
    void log_stopped() const;
    // Every configured sink, by number (the same counters as the stop line).
    void reports(std::vector<SinkReport>& out) const;

    // Where job.delivered, job.dead (of a sink) and sink.breaker_* events go (GET /events):
    // called on the control-plane thread, as they happen.
    void on_event(std::function<void(const base::Event&)> f) { _on_event = std::move(f); }

private:
    struct Sink;
    struct Delivery;
    struct Client;

    // Creates (or brings back) the sink of c under its store number, with its client.
    std::string add_sink(const config::SinkConfig& c, int64_t now_mono_ns);
    // Builds and init()s c's network client (none for exec), taking a ring slot; sets the
    // sink-kind limits. On error the client is gone and its slot free.
    std::string make_client(const config::SinkConfig& c, int64_t now_mono_ns, Client& out,
                            uint32_t& concurrency, int64_t& timeout_ns);
    // Abandons the sink's attempts in flight and voids their leases; its client is stopped and
    // kept until idle. Returns how many attempts.
    size_t retire(Sink& s, int64_t now_unix_ns);
    void release_slot(const Client& c);
    // Destroys the retired clients that are idle.
    void collect_retired();
    void recompute_routes();
    // The health probe of a registered consumer's sink (SinkConfig::health): (re)starts its
    // client, the sink counted healthy until a probe says otherwise; retires any earlier one.
    std::string start_probe_client(Sink& s, int64_t now_mono_ns);
    // Starts a probe when one is due and none is in flight.
    void probe_health(Sink& s, int64_t now_mono_ns);
    // A probe's outcome: on a change, holds or releases the breaker, logs, and tells
    // (consumer.healthy, consumer.unhealthy).
    void health_result(Sink& s, bool ok, uint16_t status, std::string_view error,
                       int64_t now_unix_ns);
    // Creates the exec runner when an exec sink is configured and there is none.
    std::string ensure_exec();

    // Starts one attempt of job in delivery slot index; an attempt that cannot start is
    // settled at once (finish()).
    void start(Sink& s, uint32_t index, const queue::JobInfo& job, int64_t now_unix_ns,
               int64_t now_mono_ns);
    uint32_t acquire_delivery();
    // How an attempt ended, whatever the sink's kind.
    enum class Outcome : uint8_t { delivered, retry, refused };
    void finish(uint64_t cookie, int64_t now_unix_ns, int64_t now_mono_ns, Outcome outcome,
                int64_t retry_after_ns, std::string_view detail);
    void note_transition(Sink& s, int64_t now_unix_ns);
    // job.delivered or job.dead (GET /events) of one of the sink's jobs.
    void job_event(base::EventType type, const Sink& s, uint16_t route, uint16_t attempt,
                   std::string_view id_text, int64_t now_unix_ns) const;
    void log_exec_output(const Delivery& d, const ExecOutcome& o, int64_t now_unix_ns) const;

    io::Ring& _ring;
    const config::Snapshot* _snap;
    queue::JobStore& _store;
    // By sink number; null for numbers never configured while the engine ran. A removed sink's
    // entry stays (inactive), with its counters.
    std::vector<std::unique_ptr<Sink>> _sinks;
    std::vector<std::unique_ptr<Client>> _retired; // stopped, until idle
    // Ring slots (the second byte of user_data) in use, by kind: http, nats, redis.
    std::array<std::array<bool, 256>, 3> _slot_used{};
    std::vector<std::unique_ptr<Delivery>> _deliveries; // stable addresses while in flight
    std::vector<uint32_t> _free;
    std::unique_ptr<ExecRunner> _exec;
    Jitter _jitter;
    std::vector<queue::JobInfo> _leased;  // scratch
    std::vector<queue::JobInfo> _expired; // scratch: deaths by lease expiry
    // Settlements by sink and kind, not yet durable: made since the last group was taken, and
    // those of the group in flight.
    struct Settled {
        uint32_t sink;
        Outcome outcome;
        bool dead; // moved to the dead letters
    };
    std::vector<Settled> _unsynced;
    std::vector<Settled> _in_group;
    std::function<void(const base::Event&)> _on_event;
    bool _draining = false;
};

} // namespace portcullis::deliver
