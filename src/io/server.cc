#include "portcullis/io/server.hh"

#include "portcullis/admin/control_plane.hh"

#include <openssl/rand.h>

#include "portcullis/base/address.hh"
#include "portcullis/base/log.hh"
#include "portcullis/base/time.hh"
#include "portcullis/io/fd_budget.hh"
#include "portcullis/io/notify.hh"
#include "portcullis/io/reload.hh"
#include "portcullis/io/shard.hh"
#include "portcullis/queue/segment.hh"
#include "portcullis/tls/server.hh"

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <future>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace portcullis::io {

namespace {

// Keys the dedup table holds: 64 bytes each (one cache line), so 64 MiB of address space, taken
// from the system only as buckets are first written. Past it, a full bucket forgets the key that
// would expire first.
constexpr size_t dedup_entries = size_t{1} << 20;
// Ordering keys: 16 MiB.
constexpr size_t ordering_entries = size_t{1} << 18;
// Rate-limit keys (clients and routes): 8 bytes each, 8 MiB; a full bucket evicts.
constexpr size_t rate_limit_keys = size_t{1} << 20;
// Event slots per producing thread (about 450 bytes each): what a shard may emit between two
// turns of the control plane's loop (50 ms at most) before it drops and counts.
constexpr size_t event_queue_slots = 4096;
constexpr int64_t rate_limit_sweep_ns = int64_t{24} * 3600 * base::ns_per_s;
// The main thread wakes at least this often between signals: the rate-limit sweep's check, the
// TLS ticket-key schedule and freeing replaced certificates. More often when systemd's watchdog
// wants a ping sooner (WATCHDOG_USEC / 2).
constexpr int64_t main_tick_ns = 5 * base::ns_per_s;

using base::Level;
using base::LogLine;

constexpr int listen_backlog = 4096;

bool resolve(const config::ListenAddress& a, sockaddr_storage& ss, socklen_t& len) {
    std::string host = a.host == "localhost" ? "127.0.0.1" : a.host;
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    std::memset(&ss, 0, sizeof ss);
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(a.port);
        len = sizeof(sockaddr_in);
        return true;
    }
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(a.port);
        len = sizeof(sockaddr_in6);
        return true;
    }
    return false;
}

void pin_to_core(unsigned shard) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
        return;
    }
    unsigned usable = static_cast<unsigned>(CPU_COUNT(&allowed));
    if (usable == 0) {
        return;
    }
    unsigned want = shard % usable;
    for (int cpu = 0, seen = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (CPU_ISSET(cpu, &allowed) && static_cast<unsigned>(seen++) == want) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            pthread_setaffinity_np(pthread_self(), sizeof one, &one);
            return;
        }
    }
}

// One line per certificate: what SNI chooses it by, and when it expires (a warning within
// tls::expiry_warning_s).
void log_certificates(const tls::Server& server, std::string_view what) {
    for (const tls::CertificateInfo& info : server.certificates()) {
        LogLine line(info.warnings.empty() ? Level::info : Level::warn, std::string(what));
        std::string names;
        for (const std::string& name : info.names) {
            names += (names.empty() ? "" : ",") + name;
        }
        char expiry[24];
        line.field("cert", info.cert_file)
            .field("key_type", info.key_type)
            .field("names", names)
            .field("not_after", base::format_rfc3339(info.not_after * base::ns_per_s, expiry));
        for (const std::string& w : info.warnings) {
            line.field("warning", w);
        }
        line.write();
    }
}

// After a reload read the certificates again: `expiry` (what /metrics and /healthz show)
// follows the certificates now in use; each is logged and published.
void certificates_reloaded(const tls::Server& server, std::span<std::atomic<int64_t>> expiry,
                           base::EventQueue* events) {
    size_t n = 0;
    for (const tls::CertificateInfo& info : server.certificates()) {
        if (n < expiry.size()) {
            expiry[n++].store(info.not_after, std::memory_order_relaxed);
        }
    }
    log_certificates(server, "TLS certificate reloaded");
    if (events == nullptr) {
        return;
    }
    const int64_t now = base::unix_ns();
    for (const tls::CertificateInfo& info : server.certificates()) {
        base::Event e = base::Event::make(base::EventType::tls_certificate_reloaded, now);
        e.set_text(info.cert_file);
        e.number = info.not_after;
        events->try_push(e);
    }
}

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const std::string& n : names) {
        out += (out.empty() ? "" : ",") + n;
    }
    return out;
}

// The reload's log line and event (config.reloaded or config.rejected).
void report_reload(const ReloadOutcome& o, std::string_view trigger, base::EventQueue* events) {
    base::Event e = base::Event::make(o.ok ? base::EventType::config_reloaded
                                           : base::EventType::config_rejected,
                                      base::unix_ns());
    if (!o.ok) {
        LogLine(Level::error, "configuration reload refused")
            .field("trigger", trigger)
            .field("error", o.errors.front())
            .field("errors", static_cast<int64_t>(o.errors.size()))
            .field("generation", static_cast<int64_t>(o.generation))
            .write();
        e.set_text(o.errors.front());
    } else {
        LogLine line(o.errors.empty() ? Level::info : Level::warn, "configuration reloaded");
        line.field("trigger", trigger)
            .field("generation", static_cast<int64_t>(o.generation))
            .field("routes", static_cast<int64_t>(o.routes))
            .milliseconds("took_ms", o.took_ns)
            .field("added", joined(o.added))
            .field("removed", joined(o.removed))
            .field("changed", joined(o.changed));
        if (!o.errors.empty()) {
            line.field("warning", o.errors.front());
        }
        line.write();
        e.number = static_cast<int64_t>(o.generation);
        e.attempt = static_cast<uint32_t>(o.routes);
    }
    if (events != nullptr) {
        events->try_push(e);
    }
}

// STATUS= of the READY=1 that ends a reload: systemctl status shows which way it went.
std::string reload_status(const ReloadOutcome& o, std::string_view trigger) {
    if (!o.ok) {
        return "reload (" + std::string(trigger) + ") refused, generation " +
               std::to_string(o.generation) +
               " still serving: " + (o.errors.empty() ? std::string() : o.errors.front());
    }
    return "reloaded (" + std::string(trigger) + "): generation " + std::to_string(o.generation) +
           ", " + std::to_string(o.routes) + (o.routes == 1 ? " route" : " routes");
}

// What /metrics and /healthz read of the shards: their own counters, summed at each scrape.
std::vector<admin::ShardView> metric_views(const std::vector<std::unique_ptr<Shard>>& shards) {
    std::vector<admin::ShardView> views;
    views.reserve(shards.size());
    for (const auto& s : shards) {
        views.push_back({&s->stats(), &s->ingest_stats(), &s->route_stats(), &s->unmatched_stats(),
                         &s->spool_metrics()});
    }
    return views;
}

admin::SharedSources metric_sources(const ShardShared& shared, const tls::Server* tls,
                                    std::span<const std::atomic<int64_t>> expiry) {
    admin::SharedSources out;
    out.limiter = shared.limiter;
    out.per_client = shared.per_client;
    out.dedup = shared.dedup;
    out.ordering = shared.ordering;
    out.connections_open = &shared.connections;
    if (tls != nullptr) {
        // Named by their first SNI name (a label never holds a path).
        size_t n = 0;
        for (const tls::CertificateInfo& info : tls->certificates()) {
            if (n == expiry.size()) {
                break;
            }
            out.certificates.push_back(
                {info.names.empty() ? "certificate-" + std::to_string(n + 1) : info.names.front(),
                 &expiry[n]});
            ++n;
        }
    }
    return out;
}

} // namespace

unsigned usable_cores() {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
        return 1;
    }
    int n = CPU_COUNT(&allowed);
    return n > 0 ? static_cast<unsigned>(n) : 1;
}

std::string bound_address(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
        return "?";
    }
    return base::PeerAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss)).to_string();
}

// count sockets bound to one address: one per shard, which SO_REUSEPORT lets share the port.
// A single socket (one shard, the control plane) does without it, so that a second process
// cannot join the port unnoticed: its bind fails with "Address already in use".
std::vector<int> open_listeners(const config::ListenAddress& address, unsigned count,
                                std::string& error) {
    std::vector<int> fds;
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (!resolve(address, ss, len)) {
        error = "cannot listen on " + address.text + ": not an IP address";
        return {};
    }
    for (unsigned i = 0; i < count; ++i) {
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
                  (count == 1 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0) &&
                  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 &&
                  bind(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0 &&
                  listen(fd, listen_backlog) == 0;
        if (!ok) {
            error = "cannot listen on " + address.text + ": " + std::strerror(errno);
            if (fd >= 0) {
                close(fd);
            }
            for (int f : fds) {
                close(f);
            }
            return {};
        }
        if (i == 0) {
            // Port 0: the other shards' sockets join the port the kernel chose.
            socklen_t l = sizeof ss;
            getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &l);
        }
        fds.push_back(fd);
    }
    return fds;
}

int serve(std::unique_ptr<config::Snapshot> snapshot, const std::string& path) {
    // Before any thread: it unsets $NOTIFY_SOCKET and the watchdog's variables.
    ServiceNotifier notify = ServiceNotifier::from_environment();
    ShardShared shared;
    // Every route name's counters and events keep one number for the life of the process.
    config::RouteSlots route_slots;
    const unsigned shards =
        snapshot->config().server.shards != 0 ? snapshot->config().server.shards : usable_cores();
    // The shards', then the control plane's.
    const size_t readers = shards + (snapshot->config().admin.listen ? 1 : 0);
    auto uses = std::make_unique<SnapshotUse[]>(readers);
    shared.uses = uses.get();
    Reloader reloader(path, shared, readers, route_slots, std::move(snapshot));
    ReloadDesk reload_desk;
    // What a reload cannot change (restart_needed): read from the start configuration.
    const config::Config& cfg = reloader.current().config();
    shared.features = probe_features();
    if (!shared.features.available) {
        LogLine(Level::error, "cannot start: " + shared.features.unavailable).write();
        return 1;
    }
    if (!shared.features.missing.empty()) {
        LogLine(Level::error, "cannot start: " + shared.features.missing).write();
        return 1;
    }
    queue::SpoolLock spool_lock;
    if (auto err = spool_lock.acquire(cfg.spool.dir); !err.empty()) {
        LogLine(Level::error, "cannot start: " + err).write();
        return 1;
    }
    // What the spool holds that is not the spool's is left alone, but said: a segment renamed
    // by hand would otherwise hide its jobs without a word.
    const queue::ListResult on_disk = queue::list_segments(cfg.spool.dir);
    for (const std::string& entry : on_disk.unrecognised) {
        LogLine(Level::warn, "spool: unrecognised entry ignored")
            .field("dir", cfg.spool.dir)
            .field("entry", entry)
            .write();
    }
    // Before any socket: the planes' connections and the spool's files must fit under
    // RLIMIT_NOFILE together, or a flood on one plane could take descriptors another needs.
    // (A spool that cannot be listed counts as empty here; the control plane reports it.)
    if (auto err = apply_fd_budget(fd_budget(cfg, shards, on_disk.segments.size())); !err.empty()) {
        LogLine(Level::error, "cannot start: " + err).write();
        return 1;
    }
    auto spool_progress = std::make_unique<queue::SpoolProgress[]>(shards);
    shared.spool_progress = spool_progress.get();
    // GET /events: one queue per shard, and the last one this thread's (certificate reloads).
    std::vector<std::unique_ptr<base::EventQueue>> event_queues;
    std::vector<base::EventQueue*> event_queue_list;
    if (cfg.admin.listen) {
        for (unsigned i = 0; i <= shards; ++i) {
            event_queues.push_back(std::make_unique<base::EventQueue>(event_queue_slots));
            event_queue_list.push_back(event_queues.back().get());
        }
        shared.events = event_queue_list.data();
    }
    base::EventQueue* main_events = cfg.admin.listen ? event_queue_list.back() : nullptr;

    // The dedup and ordering tables and the rate limiter, shared by the shards: made whether or
    // not a route uses them now, since a reload may add one that does. Their memory is mapped
    // zeroed and taken from the system only as buckets are first written.
    auto dedup = std::make_unique<queue::DedupTable>(dedup_entries);
    auto ordering = std::make_unique<queue::OrderingTable>(ordering_entries);
    auto limiter = std::make_unique<admit::RateLimiter>(rate_limit_keys);
    shared.dedup = dedup.get();
    shared.ordering = ordering.get();
    shared.limiter = limiter.get();
    std::unique_ptr<admit::ConnectionCounts> per_client;
    if (cfg.server.max_connections_per_ip < cfg.server.max_connections) {
        per_client = std::make_unique<admit::ConnectionCounts>(cfg.server.max_connections);
    }
    shared.per_client = per_client.get();
    RAND_bytes(reinterpret_cast<uint8_t*>(&shared.key_secret), sizeof shared.key_secret);

    // Signals are taken by this thread with sigwait; the shards never see them.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    sigaddset(&signals, SIGUSR1); // the control plane: consumers.state changed
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    // The certificates, before any socket: a certificate that cannot be used stops start-up.
    std::unique_ptr<tls::Server> tls_server;
    if (cfg.server.tls) {
        tls_server = std::make_unique<tls::Server>();
        if (auto err = tls_server->init(*cfg.server.tls, shards, base::mono_ns()); !err.empty()) {
            LogLine(Level::error, "cannot start: server.tls: " + err).write();
            return 1;
        }
        log_certificates(*tls_server, "TLS certificate");
        shared.tls = tls_server.get();
    }
    // Each certificate's expiry as /metrics and /healthz show it: set now, and on each reload.
    std::vector<std::atomic<int64_t>> cert_expiry(tls_server ? tls_server->certificates().size()
                                                             : 0);
    if (tls_server) {
        size_t n = 0;
        for (const tls::CertificateInfo& info : tls_server->certificates()) {
            cert_expiry[n++].store(info.not_after, std::memory_order_relaxed);
        }
    }

    // listeners[shard] = that shard's socket for each listen address, the plain ones first
    std::vector<std::vector<int>> listeners(shards);
    std::vector<std::string> addresses;
    std::vector<std::string> tls_addresses;
    auto listen_on = [&](const config::ListenAddress& a, std::vector<std::string>& bound) {
        std::string error;
        std::vector<int> fds = open_listeners(a, shards, error);
        if (fds.empty()) {
            LogLine(Level::error, "cannot start: " + error).write();
            return false;
        }
        bound.push_back(bound_address(fds[0]));
        for (unsigned s = 0; s < shards; ++s) {
            listeners[s].push_back(fds[s]);
        }
        return true;
    };
    for (const config::ListenAddress& a : cfg.server.listen) {
        if (!listen_on(a, addresses)) {
            return 1;
        }
    }
    const size_t tls_from = cfg.server.listen.size();
    if (cfg.server.tls) {
        for (const config::ListenAddress& a : cfg.server.tls->listen) {
            if (!listen_on(a, tls_addresses)) {
                return 1;
            }
        }
    }

    // Each shard creates its ring on its own thread (SINGLE_ISSUER wants the creator to be the
    // submitter), reports how its start-up went, and waits for the go.
    std::vector<std::unique_ptr<Shard>> all;
    std::vector<std::thread> threads;
    std::vector<std::promise<std::string>> ready(shards);
    std::promise<bool> go;
    std::shared_future<bool> go_future = go.get_future().share();
    for (unsigned s = 0; s < shards; ++s) {
        all.push_back(std::make_unique<Shard>(s, shared, listeners[s], tls_from));
    }
    for (unsigned s = 0; s < shards; ++s) {
        threads.emplace_back([&, s] {
            pin_to_core(s);
            ready[s].set_value(all[s]->init());
            if (go_future.get()) {
                all[s]->run();
            }
        });
    }
    std::string failure;
    for (unsigned s = 0; s < shards; ++s) {
        std::string err = ready[s].get_future().get();
        if (!err.empty() && failure.empty()) {
            failure = "shard " + std::to_string(s) + ": " + err;
        }
    }
    // The control plane indexes the spool once the shards have recovered it, before they serve.
    std::unique_ptr<admin::ControlPlane> control;
    std::string admin_address;
    std::atomic<bool> control_stop{false};
    std::thread control_thread;
    if (failure.empty() && cfg.admin.listen) {
        std::string error;
        std::vector<int> fds = open_listeners(*cfg.admin.listen, 1, error);
        if (fds.empty()) {
            failure = "admin.listen: " + error;
        } else {
            admin_address = bound_address(fds[0]);
            control = std::make_unique<admin::ControlPlane>(
                reloader.current(), shared.features,
                std::span<const queue::SpoolProgress>(spool_progress.get(), shards));
            control->set_event_queues(event_queue_list);
            control->follow_reloads(shared.snapshot, uses[shards], route_slots, reload_desk);
            std::vector<ingest::ShardPort> ports;
            ports.reserve(all.size());
            for (auto& shard : all) {
                ports.push_back(shard->port());
            }
            control->set_shards(ports);
            // Its thread indexes the spool too: the allocator gives memory back to the thread
            // that took it, and what indexing a deep spool takes is freed by the control
            // plane's own loop (retention), never by this thread, which only waits for signals.
            std::promise<std::string> control_ready;
            control_thread = std::thread([&, fd = fds[0]] {
                control_ready.set_value(control->init(fd));
                if (go_future.get()) {
                    control->run(control_stop);
                }
            });
            if (auto err = control_ready.get_future().get(); !err.empty()) {
                failure = "control plane: " + err;
            }
            control->observe(metric_views(all),
                             metric_sources(shared, tls_server.get(), cert_expiry));
        }
    }
    reloader.on_publish([&all, &control] {
        for (const auto& shard : all) {
            shard->wake();
        }
        if (control) {
            control->wake();
        }
    });
    go.set_value(failure.empty());
    if (!failure.empty()) {
        for (auto& t : threads) {
            t.join();
        }
        if (control_thread.joinable()) {
            control_thread.join();
        }
        LogLine(Level::error, "cannot start: " + failure).write();
        return 1;
    }
    for (const std::string& a : addresses) {
        LogLine(Level::info, "listening")
            .field("plane", "public")
            .field("address", a)
            .field("shards", static_cast<int64_t>(shards))
            .write();
    }
    for (const std::string& a : tls_addresses) {
        LogLine(Level::info, "listening")
            .field("plane", "public")
            .field("transport", "tls")
            .field("address", a)
            .field("shards", static_cast<int64_t>(shards))
            .write();
    }
    if (control) {
        LogLine(Level::info, "listening")
            .field("plane", "admin")
            .field("address", admin_address)
            .write();
    }
    // Every listener is open and the spool recovered (each shard's init, then the control
    // plane's index): systemd may start what is ordered after us.
    {
        std::string status = "listening on " + joined(addresses);
        if (!tls_addresses.empty()) {
            status += (addresses.empty() ? "" : ", ") + std::string("TLS ") + joined(tls_addresses);
        }
        status += " (" + std::to_string(shards) + (shards == 1 ? " shard)" : " shards)");
        if (control) {
            status += ", admin " + admin_address;
        }
        notify.ready(status);
    }

    // This thread waits for signals; between them it sweeps the rate-limit table of rested
    // keys once a day (see admit::RateLimiter: no slot may stay untouched for 76 days).
    int64_t next_sweep = base::mono_ns() + rate_limit_sweep_ns;
    uint64_t served_reloads = 0; // POST /v1/reload tickets answered
    while (true) {
        const timespec wake = notify.wait_at_most(main_tick_ns, base::mono_ns());
        int sig = sigtimedwait(&signals, nullptr, &wake);
        notify.watchdog(base::mono_ns());
        if (tls_server) {
            tls_server->tick(base::mono_ns());
        }
        reloader.collect();
        if (sig < 0) {
            if (base::mono_ns() >= next_sweep) {
                const size_t forgotten = limiter->forget_rested(base::mono_ns());
                next_sweep = base::mono_ns() + rate_limit_sweep_ns;
                LogLine(Level::info, "rate-limit sweep")
                    .field("forgotten", static_cast<int64_t>(forgotten))
                    .field("evictions", static_cast<int64_t>(limiter->evictions()))
                    .write();
            }
            continue;
        }
        if (sig == SIGHUP) {
            // POST /v1/reload sends SIGHUP too: one reload serves every request made before it.
            const uint64_t asked = reload_desk.asked(ReloadDesk::Errand::reload);
            notify.reloading("reloading " + path);
            ReloadOutcome outcome =
                reloader.reload(tls_server.get(), [&](const config::Snapshot& next) {
                    return control ? control->check_reload(next) : std::string();
                });
            if (outcome.certificates_reloaded) {
                certificates_reloaded(*tls_server, cert_expiry, main_events);
            }
            const std::string_view trigger =
                asked != 0 && asked != served_reloads ? "api" : "SIGHUP";
            report_reload(outcome, trigger, main_events);
            notify.ready(reload_status(outcome, trigger));
            served_reloads = asked;
            reload_desk.done(ReloadDesk::Errand::reload, asked, outcome);
            continue;
        }
        if (sig == SIGUSR1) {
            // POST or DELETE /v1/consumers: the configuration in use, with the consumers the
            // state file lists now (the configuration's files are not read).
            const uint64_t asked = reload_desk.asked(ReloadDesk::Errand::consumers);
            ReloadOutcome outcome = reloader.republish([&](const config::Snapshot& next) {
                return control ? control->check_reload(next) : std::string();
            });
            if (outcome.ok) {
                LogLine(Level::info, "configuration republished with the registered consumers")
                    .field("generation", static_cast<int64_t>(outcome.generation))
                    .write();
            } else {
                LogLine(Level::error, "consumers not taken up")
                    .field("error", outcome.errors.empty() ? "" : outcome.errors.front())
                    .write();
            }
            reload_desk.done(ReloadDesk::Errand::consumers, asked, outcome);
            continue;
        }
        LogLine(Level::info, "draining")
            .field("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT")
            .field("timeout_ms", reloader.current().config().server.drain_timeout_ns / 1'000'000)
            .write();
        // systemd stops timing the watchdog here; the drain is bounded by drain_timeout, which
        // TimeoutStopSec= of the unit must exceed.
        notify.stopping(
            "draining (" + std::string(sig == SIGTERM ? "SIGTERM" : "SIGINT") + "), up to " +
            std::to_string(reloader.current().config().server.drain_timeout_ns / base::ns_per_ms) +
            " ms");
        shared.draining.store(true, std::memory_order_relaxed);
        break;
    }
    for (auto& t : threads) {
        t.join();
    }
    if (control_thread.joinable()) {
        control_stop.store(true, std::memory_order_relaxed);
        control_thread.join();
    }
    // Counters of all shards, summed for the last line (as /metrics sums them).
    auto total = [&](auto counter) { return static_cast<int64_t>(io::total(all, counter)); };
    auto total_ingest = total;
    // The refusals of each route that had any, by reason code: what an operator reads first
    // after a provider reported failed deliveries.
    for (const config::Route& route : reloader.current().routes()) {
        LogLine line(Level::info, "route refusals");
        line.field("route", std::string_view(route.config->name));
        bool any = false;
        line.object("rejected");
        for (size_t i = 0; i < base::reject_reason_count; ++i) {
            uint64_t n = 0;
            for (auto& shard : all) {
                if (const ingest::RouteStats* b = shard->route_stats().find(route.slot)) {
                    n += b->rejected[i].load(std::memory_order_relaxed);
                }
            }
            if (n != 0) {
                line.field(base::reject_reason_code(static_cast<base::RejectReason>(i)),
                           static_cast<int64_t>(n));
                any = true;
            }
        }
        line.end_object();
        if (any) {
            line.write();
        }
    }
    LogLine stopped(Level::info, "stopped");
    stopped.field("jobs_queued", total_ingest(&ingest::Stats::jobs_queued))
        .field("handshakes", total_ingest(&ingest::Stats::handshakes))
        .field("ed25519_checks", total_ingest(&ingest::Stats::ed25519_checks))
        .field("connections", total(&ShardStats::accepted_connections))
        .field("refused_max_connections", total(&ShardStats::refused_connections))
        .field("refused_per_ip", total(&ShardStats::refused_per_client))
        .field("header_timeouts", total(&ShardStats::header_timeouts))
        .field("body_timeouts", total(&ShardStats::body_timeouts))
        .field("connection_errors", total(&ShardStats::connection_errors))
        .field("pipeline_pauses", total(&ShardStats::pipeline_pauses))
        .field("pipeline_overflows", total(&ShardStats::pipeline_overflows))
        .field("recv_no_buffers", total(&ShardStats::recv_no_buffers))
        .field("unanswered_jobs", total(&ShardStats::unanswered_jobs))
        .field("log_lines_dropped", total(&ShardStats::log_lines_dropped));
    if (reloader.current().config().server.proxy_protocol != config::ProxyProtocol::off) {
        stopped.field("proxy_refused", total(&ShardStats::proxy_refused));
    }
    if (tls_server) {
        stopped.field("tls_handshakes", total(&ShardStats::tls_handshakes))
            .field("tls_resumed", total(&ShardStats::tls_resumed))
            .field("tls_not_tls", total(&ShardStats::tls_not_tls))
            .field("tls_handshake_failures", total(&ShardStats::tls_handshake_failures))
            .field("tls_handshake_timeouts", total(&ShardStats::tls_handshake_timeouts))
            .field("tls_handshake_aborted", total(&ShardStats::tls_handshake_aborted))
            .field("tls_record_errors", total(&ShardStats::tls_record_errors))
            .field("tls_certificate_reloads",
                   static_cast<int64_t>(tls_server->stats().reloads.load()))
            .field("tls_ticket_rotations",
                   static_cast<int64_t>(tls_server->stats().ticket_rotations.load()));
    }
    if (per_client) {
        stopped.field("per_ip_untracked", static_cast<int64_t>(per_client->untracked()));
    }
    stopped.field("rate_limit_evictions", static_cast<int64_t>(limiter->evictions()))
        .field("duplicates", total_ingest(&ingest::Stats::duplicates))
        .field("dedup_in_flight", total_ingest(&ingest::Stats::dedup_in_flight))
        .field("dedup_unkeyed", total_ingest(&ingest::Stats::dedup_unkeyed))
        .field("dedup_evictions", static_cast<int64_t>(dedup->table().evictions()))
        .field("ordering_unkeyed", total_ingest(&ingest::Stats::ordering_unkeyed))
        .field("ordering_unrecorded", total_ingest(&ingest::Stats::ordering_unrecorded))
        .field("ordering_evictions", static_cast<int64_t>(ordering->table().evictions()));
    stopped.write();
    return 0;
}

} // namespace portcullis::io
