#include "portcullis/deliver/engine.hh"

#include "portcullis/base/file.hh"
#include "portcullis/base/json.hh"
#include "portcullis/base/log.hh"
#include "portcullis/base/time.hh"
#include "portcullis/queue/job_json.hh"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace portcullis::deliver {

using base::Level;
using base::LogLine;
using queue::JobInfo;
using queue::JobState;
using queue::JobTable;

namespace {

// A lease of the engine outlives its attempt's timeout by this much: the engine settles every
// attempt itself (an exec child is killed kill_grace after its timeout and lingers at most
// 1 s more), so the lease only runs out when a settlement was rolled back by a failed ledger
// group; then the job is tried again that much later.
constexpr int64_t lease_margin_ns = 60 * base::ns_per_s;
// Failed attempts are logged at most once a second per sink; the held-back count goes into the
// next line, and every attempt is counted.
constexpr int64_t failure_log_interval_ns = base::ns_per_s;
// A piece of a command's output in one log line: escaped, text stays well under a line's 4 KiB.
constexpr size_t output_piece = 1024;
// The exec headers files of a process killed before it could remove them.
constexpr std::string_view headers_prefix = "portcullis-headers-";

uint64_t random_seed() {
    uint64_t seed = 0;
    if (::getrandom(&seed, sizeof seed, GRND_NONBLOCK) != sizeof seed) {
        seed = static_cast<uint64_t>(base::mono_ns()) ^ static_cast<uint64_t>(::getpid());
    }
    return seed;
}

// Creates dir (0700) if needed and removes the headers files a killed process left in it.
std::string prepare_headers_dir(const std::string& dir) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        return "cannot create " + dir + ": " + std::strerror(errno);
    }
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
        return "cannot open " + dir + ": " + std::strerror(errno);
    }
    size_t removed = 0;
    while (const dirent* e = ::readdir(d)) {
        std::string_view name(e->d_name);
        if (name.starts_with(headers_prefix) && ::unlinkat(::dirfd(d), e->d_name, 0) == 0) {
            ++removed;
        }
    }
    ::closedir(d);
    if (removed != 0) {
        LogLine(Level::info, "exec headers files of an earlier run removed")
            .field("dir", dir)
            .field("files", static_cast<int64_t>(removed))
            .write();
    }
    return "";
}

} // namespace

// A network client (none for exec) and the ring slot it holds until it is destroyed.
struct Engine::Client {
    std::unique_ptr<HttpSink> http;
    std::unique_ptr<NatsSink> nats;
    std::unique_ptr<RedisSink> redis;
    uint8_t slot = 0;
    bool any() const { return http || nats || redis; }
};

struct Engine::Sink {
    // A copy: the engine keeps no reference into a snapshot (a reload frees the old one).
    config::SinkConfig cfg;
    size_t ca_digest = 0;         // of the `ca` file's contents: a new certificate is a change too
    uint32_t index = 0;           // the store's number
    bool active = true;           // configured (false: removed by a reload; its counters stay)
    std::vector<uint16_t> routes; // store route numbers delivering here
    size_t next_route = 0;        // where the next pump starts, in turn
    uint32_t concurrency = 1;
    int64_t timeout_ns = 0;
    uint32_t in_flight = 0;
    Breaker breaker;
    Pace pace;
    // The client of a network sink (exactly one, or none for exec): all have HttpSink's shape.
    Client client;
    base::LogThrottle failure_log;
    SinkCounts counts;
    base::Histogram duration;
    // A registered consumer's health probe (cfg.health): GET its health path on a client of its
    // own (one connection, its own ring slot). While the last probe failed the breaker is held
    // open: the jobs wait without spending attempts.
    Client probe;
    bool probing = false;
    int64_t probe_due_ns = 0;
    bool healthy = true;

    explicit Sink(const config::SinkConfig& c) : cfg(c), breaker(c.breaker) {}
};

// Calls f(client) with the network client of c (an Engine::Client), if there is one.
template <typename C, typename F>
void with_client(C& c, F&& f) {
    if (c.http) {
        f(*c.http);
    } else if (c.nats) {
        f(*c.nats);
    } else if (c.redis) {
        f(*c.redis);
    }
}

struct Engine::Delivery {
    bool busy = false;
    uint16_t generation = 0;
    uint32_t sink = 0;
    queue::JobId id;
    uint16_t route = 0;
    uint16_t attempt = 0;
    int64_t started_mono_ns = 0;
    // The record's variable parts, copied out of the store's read cache (which the next read
    // reuses), and the record viewing them: the sink reads them until the outcome.
    std::string storage;
    queue::JobRecord record;
    std::string headers_json;
    char id_text[queue::job_id_text_size] = {};
};

Engine::Engine(io::Ring& ring, const config::Snapshot& snapshot, queue::JobStore& store)
    : _ring(ring), _snap(&snapshot), _store(store), _jitter(random_seed()) {}

Engine::~Engine() = default;

namespace {

// The contents of a sink's `ca` file (0 without one, or unreadable: its client says why).
size_t ca_digest(const config::SinkConfig& c) {
    const std::optional<std::string>* ca = c.http    ? &c.http->ca
                                           : c.nats  ? &c.nats->ca
                                           : c.redis ? &c.redis->ca
                                                     : nullptr;
    std::string text;
    if (ca == nullptr || !ca->has_value() ||
        base::read_regular_file(**ca, 16 * 1024 * 1024, text).has_value()) {
        return 0;
    }
    return std::hash<std::string>{}(text);
}

// Everything but where it was written: moving a sink in its file changes nothing.
bool same_sink(const config::SinkConfig& a, const config::SinkConfig& b) {
    return a.name == b.name && a.kind == b.kind && a.breaker == b.breaker && a.health == b.health &&
           a.http == b.http && a.exec == b.exec && a.nats == b.nats && a.redis == b.redis;
}

} // namespace

std::string Engine::make_client(const config::SinkConfig& c, int64_t now_mono_ns, Client& out,
                                uint32_t& concurrency, int64_t& timeout_ns) {
    const size_t kind = c.http ? 0 : c.nats ? 1 : c.redis ? 2 : 3;
    if (kind < 3) {
        std::array<bool, 256>& used = _slot_used[kind];
        auto free = std::find(used.begin(), used.end(), false);
        if (free == used.end()) {
            return "sinks." + c.name +
                   ": 256 clients of its kind are still closing; reload again in a moment";
        }
        out.slot = static_cast<uint8_t>(free - used.begin());
        *free = true;
    }
    if (c.http) {
        concurrency = c.http->concurrency;
        timeout_ns = c.http->timeout_ns;
        out.http = std::make_unique<HttpSink>(_ring, out.slot, c.name, *c.http);
    } else if (c.nats) {
        concurrency = c.nats->max_in_flight;
        timeout_ns = NatsSinkOptions{}.publish_timeout_ns;
        out.nats = std::make_unique<NatsSink>(_ring, out.slot, c.name, *c.nats);
    } else if (c.redis) {
        concurrency = c.redis->max_in_flight;
        timeout_ns = RedisSinkOptions{}.timeout_ns;
        out.redis = std::make_unique<RedisSink>(_ring, out.slot, c.name, *c.redis);
    } else {
        // The loader gives every sink exactly one kind: this one is exec.
        concurrency = c.exec->concurrency;
        timeout_ns = c.exec->timeout_ns;
        return "";
    }
    std::string err;
    with_client(out, [&](auto& client) { err = client.init(now_mono_ns); });
    if (!err.empty()) {
        // A failed init() has put nothing on the ring: the client can go at once.
        release_slot(out);
        out = Client{};
        return "sinks." + c.name + ": " + err;
    }
    return "";
}

void Engine::release_slot(const Client& c) {
    const size_t kind = c.http ? 0 : c.nats ? 1 : c.redis ? 2 : 3;
    if (kind < 3) {
        _slot_used[kind][c.slot] = false;
    }
}

std::string Engine::start_probe_client(Sink& s, int64_t now_mono_ns) {
    if (s.probe.any()) {
        with_client(s.probe, [](auto& client) { client.stop(); });
        _retired.push_back(std::make_unique<Client>(std::move(s.probe)));
        s.probe = Client{};
    }
    s.probing = false;
    s.healthy = true;
    s.probe_due_ns = now_mono_ns;
    if (!s.cfg.health || !s.cfg.http) {
        return "";
    }
    std::array<bool, 256>& used = _slot_used[0];
    auto free = std::find(used.begin(), used.end(), false);
    if (free == used.end()) {
        return "sinks." + s.cfg.name + ": 256 http clients are still closing: no health probe";
    }
    config::HttpSinkConfig probe = *s.cfg.http;
    probe.method = "GET";
    probe.path_and_query = s.cfg.health->path;
    probe.url = (probe.tls ? "https://" : "http://") + probe.host + ":" +
                std::to_string(probe.port) + probe.path_and_query;
    probe.concurrency = 1;
    // A probe that outlives the interval would only delay the next one.
    probe.timeout_ns = std::min<int64_t>(s.cfg.health->interval_ns, 5 * base::ns_per_s);
    probe.rate.reset();
    probe.headers.clear();
    probe.sign_secrets.clear();
    s.probe.slot = static_cast<uint8_t>(free - used.begin());
    *free = true;
    s.probe.http = std::make_unique<HttpSink>(_ring, s.probe.slot, s.cfg.name + " health", probe);
    if (std::string err = s.probe.http->init(now_mono_ns); !err.empty()) {
        release_slot(s.probe);
        s.probe = Client{};
        return "sinks." + s.cfg.name + " health probe: " + err;
    }
    return "";
}

void Engine::probe_health(Sink& s, int64_t now_mono_ns) {
    if (!s.probe.http || s.probing || now_mono_ns < s.probe_due_ns || !s.probe.http->has_room()) {
        return;
    }
    s.probe_due_ns = now_mono_ns + s.cfg.health->interval_ns;
    HttpDelivery d{.job_id = "health-probe", .route = "health", .attempt = 1};
    std::string why;
    if (s.probe.http->start(d, s.index, now_mono_ns, why)) {
        s.probing = true;
    }
}

void Engine::health_result(Sink& s, bool ok, uint16_t status, std::string_view error,
                           int64_t now_unix_ns) {
    s.probing = false;
    if (ok == s.healthy) {
        return; // events on changes only
    }
    s.healthy = ok;
    s.breaker.hold(!ok);
    std::string_view consumer = s.cfg.name;
    if (consumer.starts_with(config::consumer_prefix)) {
        consumer.remove_prefix(config::consumer_prefix.size());
    }
    LogLine line(ok ? Level::info : Level::warn,
                 ok ? "consumer healthy: delivery resumes" : "consumer unhealthy: delivery waits",
                 now_unix_ns);
    line.field("consumer", consumer).field("path", s.cfg.health->path);
    if (status != 0) {
        line.field("status", static_cast<int64_t>(status));
    }
    if (!ok && !error.empty()) {
        line.field("error", error);
    }
    line.write();
    if (_on_event) {
        base::Event e = base::Event::make(ok ? base::EventType::consumer_healthy
                                             : base::EventType::consumer_unhealthy,
                                          now_unix_ns);
        e.sink = static_cast<uint16_t>(s.index);
        e.status = status;
        e.set_text(consumer);
        _on_event(e);
    }
    note_transition(s, now_unix_ns);
}

std::string Engine::add_sink(const config::SinkConfig& c, int64_t now_mono_ns) {
    const int number = _store.sink_index(c.name);
    if (number < 0) {
        return "sinks." + c.name + ": the job store has no table for it (reconfigure it first)";
    }
    const auto n = static_cast<size_t>(number);
    if (_sinks.size() <= n) {
        _sinks.resize(n + 1);
    }
    if (!_sinks[n]) {
        _sinks[n] = std::make_unique<Sink>(c);
    }
    Sink& s = *_sinks[n];
    s.cfg = c;
    s.ca_digest = ca_digest(c);
    s.index = static_cast<uint32_t>(n);
    s.active = true;
    s.in_flight = 0;
    s.breaker = Breaker(c.breaker);
    s.pace = c.http && c.http->rate ? Pace(*c.http->rate) : Pace();
    if (std::string err = make_client(c, now_mono_ns, s.client, s.concurrency, s.timeout_ns);
        !err.empty()) {
        return err;
    }
    return start_probe_client(s, now_mono_ns);
}

std::string Engine::ensure_exec() {
    const bool any_exec = std::any_of(_sinks.begin(), _sinks.end(), [](const auto& s) {
        return s && s->active && s->cfg.exec.has_value();
    });
    if (!any_exec || _exec) {
        return "";
    }
    std::string dir = _snap->config().spool.dir + "/exec";
    if (std::string err = prepare_headers_dir(dir); !err.empty()) {
        return err;
    }
    _exec = std::make_unique<ExecRunner>(_ring, dir);
    return "";
}

void Engine::recompute_routes() {
    for (auto& sp : _sinks) {
        if (!sp || !sp->active) {
            continue;
        }
        Sink& s = *sp;
        const JobTable& table = _store.sink_table(s.index);
        s.routes.clear();
        for (size_t r = 0; r < _store.routes(); ++r) {
            const auto route = static_cast<uint16_t>(r);
            const std::vector<uint16_t>& sinks = _store.route_sinks(route);
            const queue::RouteDepth d = table.depth(route);
            // What its table still holds of a route that no longer sends it jobs is delivered.
            if (std::find(sinks.begin(), sinks.end(), s.index) != sinks.end() ||
                d.queued + d.leased != 0) {
                s.routes.push_back(route);
            }
        }
        s.next_route = 0;
    }
}

std::string Engine::init(int64_t now_mono_ns) {
    for (const config::SinkConfig& c : _snap->config().sinks) {
        if (std::string err = add_sink(c, now_mono_ns); !err.empty()) {
            return err;
        }
    }
    recompute_routes();
    return ensure_exec();
}

bool Engine::has_sinks() const {
    return std::any_of(_sinks.begin(), _sinks.end(), [](const auto& s) { return s && s->active; });
}

size_t Engine::retire(Sink& s, int64_t now_unix_ns) {
    size_t cancelled = 0;
    for (uint32_t i = 0; i < _deliveries.size(); ++i) {
        Delivery& d = *_deliveries[i];
        if (!d.busy || d.sink != s.index) {
            continue;
        }
        if (s.cfg.exec && _exec) {
            _exec->abandon(uint64_t{d.generation} << 32 | i);
        }
        d.busy = false;
        _free.push_back(i);
        ++cancelled;
    }
    s.in_flight = 0;
    for (Client* c : {&s.client, &s.probe}) {
        if (c->any()) {
            // Nothing more is reported for its requests; its operations complete through
            // on_cqe().
            with_client(*c, [](auto& client) { client.stop(); });
            _retired.push_back(std::make_unique<Client>(std::move(*c)));
            *c = Client{};
        }
    }
    s.probing = false;
    // The attempts will never be settled: their jobs are queued again now, with the attempt
    // counted (as a restart voids the leases of the process before it), not after the lease.
    _store.sink_table(s.index).expire_leases(now_unix_ns);
    return cancelled;
}

void Engine::collect_retired() {
    std::erase_if(_retired, [this](const std::unique_ptr<Client>& c) {
        bool idle = true;
        with_client(*c, [&](const auto& client) { idle = client.idle(); });
        if (idle) {
            release_slot(*c);
        }
        return idle;
    });
}

EngineReload Engine::reconfigure(const config::Snapshot& next, int64_t now_unix_ns,
                                 int64_t now_mono_ns) {
    EngineReload out;
    auto fail = [&](const std::string& err) { out.error += out.error.empty() ? err : "; " + err; };
    _snap = &next;
    std::vector<bool> configured(_sinks.size(), false);
    for (const config::SinkConfig& c : next.config().sinks) {
        const int number = _store.sink_index(c.name);
        if (number >= 0 && static_cast<size_t>(number) < configured.size()) {
            configured[static_cast<size_t>(number)] = true;
        }
        Sink* s = number >= 0 && static_cast<size_t>(number) < _sinks.size()
                      ? _sinks[static_cast<size_t>(number)].get()
                      : nullptr;
        if (s == nullptr || !s->active) {
            out.added.push_back(c.name);
            if (std::string err = add_sink(c, now_mono_ns); !err.empty()) {
                fail(err);
            }
            continue;
        }
        const size_t digest = ca_digest(c);
        // One whose client could not start at the last reload is tried again.
        const bool running = s->cfg.exec.has_value() || s->client.any();
        if (same_sink(s->cfg, c) && s->ca_digest == digest && running) {
            continue;
        }
        // The new client first: if it cannot start, the sink goes on as it was.
        Client fresh;
        uint32_t concurrency = 1;
        int64_t timeout_ns = 0;
        if (std::string err = make_client(c, now_mono_ns, fresh, concurrency, timeout_ns);
            !err.empty()) {
            fail(err + " (its previous configuration stays in use)");
            continue;
        }
        out.changed.push_back(c.name);
        out.cancelled += retire(*s, now_unix_ns);
        s->client = std::move(fresh);
        s->cfg = c;
        s->ca_digest = digest;
        s->concurrency = concurrency;
        s->timeout_ns = timeout_ns;
        s->breaker = Breaker(c.breaker);
        s->pace = c.http && c.http->rate ? Pace(*c.http->rate) : Pace();
        if (std::string err = start_probe_client(*s, now_mono_ns); !err.empty()) {
            fail(err);
        }
    }
    for (size_t n = 0; n < configured.size(); ++n) {
        Sink* s = _sinks[n].get();
        if (s == nullptr || !s->active || configured[n]) {
            continue;
        }
        const size_t cancelled = retire(*s, now_unix_ns);
        out.cancelled += cancelled;
        s->active = false;
        out.removed.push_back(s->cfg.name);
        LogLine(Level::info, "sink removed")
            .field("sink", s->cfg.name)
            .field("delivered", static_cast<int64_t>(s->counts.delivered))
            .field("retried", static_cast<int64_t>(s->counts.retried))
            .field("dead", static_cast<int64_t>(s->counts.dead))
            .field("refused", static_cast<int64_t>(s->counts.refused))
            .field("attempts_cancelled", static_cast<int64_t>(cancelled))
            .write();
    }
    recompute_routes();
    if (std::string err = ensure_exec(); !err.empty()) {
        fail(err);
    }
    return out;
}

uint32_t Engine::acquire_delivery() {
    if (_free.empty()) {
        _deliveries.push_back(std::make_unique<Delivery>());
        return static_cast<uint32_t>(_deliveries.size() - 1);
    }
    uint32_t i = _free.back();
    _free.pop_back();
    return i;
}

void Engine::pump(int64_t now_unix_ns, int64_t now_mono_ns) {
    if (_exec) {
        _exec->tick(now_mono_ns);
    }
    collect_retired();
    for (auto& s : _sinks) {
        if (s && s->active) {
            with_client(s->client, [&](auto& client) { client.tick(now_mono_ns); });
            if (s->probe.http) {
                s->probe.http->tick(now_mono_ns);
                if (!_draining) {
                    probe_health(*s, now_mono_ns);
                }
            }
        }
    }
    if (_draining) {
        return;
    }
    for (auto& sp : _sinks) {
        if (!sp || !sp->active) {
            continue;
        }
        Sink& s = *sp;
        // A sink whose client could not start (a reload) has its jobs wait.
        if (s.routes.empty() || (s.cfg.exec ? !_exec : !s.client.any())) {
            continue;
        }
        // Each lease call takes what may start at once: all free slots while the breaker is
        // closed, one (the probe) when half-open, one per pace slot.
        size_t idle_routes = 0;
        while (s.in_flight < s.concurrency && idle_routes < s.routes.size()) {
            if (!s.breaker.admits(now_mono_ns, s.in_flight)) {
                break;
            }
            note_transition(s, now_unix_ns);
            if (s.pace.next_ns() > now_mono_ns) {
                break;
            }
            size_t room = s.concurrency - s.in_flight;
            if (s.breaker.state() != Breaker::State::closed || s.pace.next_ns() != 0) {
                room = 1;
            }
            const uint16_t route = s.routes[s.next_route];
            s.next_route = (s.next_route + 1) % s.routes.size();
            _leased.clear();
            JobTable& table = _store.sink_table(s.index);
            table.lease(route, room, s.timeout_ns + lease_margin_ns, now_unix_ns, _leased);
            _expired.clear();
            table.take_expired_deaths(_expired); // an attempt that outlived its lease
            for (const JobInfo& j : _expired) {
                char text[queue::job_id_text_size];
                j.id.format(text);
                job_event(base::EventType::job_dead, s, j.route, j.attempts,
                          std::string_view(text, sizeof text), now_unix_ns);
            }
            if (_leased.empty()) {
                ++idle_routes;
                continue;
            }
            idle_routes = 0;
            for (const JobInfo& j : _leased) {
                s.pace.take(now_mono_ns);
                start(s, acquire_delivery(), j, now_unix_ns, now_mono_ns);
            }
        }
    }
}

void Engine::start(Sink& s, uint32_t index, const JobInfo& job, int64_t now_unix_ns,
                   int64_t now_mono_ns) {
    Delivery& d = *_deliveries[index];
    d.busy = true;
    d.generation = static_cast<uint16_t>(d.generation + 1);
    d.sink = s.index;
    d.id = job.id;
    d.route = job.route;
    d.attempt = job.attempts;
    d.started_mono_ns = now_mono_ns;
    job.id.format(d.id_text);
    ++s.in_flight;
    const uint64_t cookie = uint64_t{d.generation} << 32 | index;

    queue::JobRecord rec;
    if (!_store.read(job.where, rec) || rec.id != job.id) {
        // Gone from under the index (a group that failed after it was seen): nothing to
        // deliver. Settled so that it is not taken again, as the pull API does.
        LogLine(Level::error, "job record unreadable; dropped", now_unix_ns)
            .field("sink", s.cfg.name)
            .field("job", std::string_view(d.id_text, sizeof d.id_text))
            .write();
        ++s.counts.unreadable;
        _store.sink_table(s.index).ack(job.id, now_unix_ns);
        --s.in_flight;
        d.busy = false;
        _free.push_back(index);
        return;
    }
    // One copy of the route, headers and body into the delivery's own buffer (reused: no
    // allocation once it has grown to the largest job).
    d.storage.clear();
    d.storage.append(rec.route).append(rec.headers_block).append(rec.body);
    d.record = rec;
    d.record.route = std::string_view(d.storage).substr(0, rec.route.size());
    d.record.headers_block =
        std::string_view(d.storage).substr(rec.route.size(), rec.headers_block.size());
    d.record.body = std::string_view(d.storage).substr(rec.route.size() + rec.headers_block.size(),
                                                       rec.body.size());

    std::string error;
    bool started = false;
    Outcome refusal = Outcome::retry;
    if (s.client.any()) {
        auto deliver = [&](auto& client, auto request) {
            request.job_id = std::string_view(d.id_text, sizeof d.id_text);
            request.route = d.record.route;
            if constexpr (requires { request.attempt; }) {
                request.attempt = d.attempt;
            }
            request.received_at_unix_ns = d.record.received_at_ns;
            request.record = &d.record;
            request.body = std::span(reinterpret_cast<const uint8_t*>(d.record.body.data()),
                                     d.record.body.size());
            started = client.start(request, cookie, now_mono_ns, error);
        };
        if (s.client.http) {
            deliver(*s.client.http, HttpDelivery{});
        } else if (s.client.nats) {
            deliver(*s.client.nats, NatsDelivery{});
        } else {
            deliver(*s.client.redis, RedisDelivery{});
        }
        // What a client refuses with room to spare (a stored header the request writer cannot
        // send, a body over the server's limit) will never pass.
        refusal = Outcome::refused;
    } else {
        d.headers_json.clear();
        queue::append_headers_json(d.headers_json, d.record);
        char ip[INET6_ADDRSTRLEN];
        ExecJob e;
        e.command = s.cfg.exec->command;
        e.job_id = std::string_view(d.id_text, sizeof d.id_text);
        e.route = d.record.route;
        e.attempt = d.attempt;
        e.received_at_unix_ns = d.record.received_at_ns;
        e.source_ip = d.record.peer.format_ip(ip);
        e.body =
            std::span(reinterpret_cast<const uint8_t*>(d.record.body.data()), d.record.body.size());
        e.headers_json = d.headers_json;
        e.timeout_ns = s.timeout_ns;
        started = _exec->start(e, cookie, now_mono_ns, error);
    }
    if (!started) {
        finish(cookie, now_unix_ns, now_mono_ns, refusal, -1, error);
    }
}

void Engine::on_cqe(const io_uring_cqe& cqe, int64_t now_unix_ns, int64_t now_mono_ns) {
    if (ExecRunner::owns(cqe.user_data)) {
        _exec->on_cqe(cqe, now_mono_ns, [&](uint64_t cookie, const ExecOutcome& o) {
            Outcome outcome =
                o.kind == ExecOutcome::Kind::delivered ? Outcome::delivered : Outcome::retry;
            std::string detail;
            if (o.kind != ExecOutcome::Kind::delivered) {
                detail = std::string(exec_outcome_name(o.kind));
                if (o.signal != 0) {
                    detail += ", signal " + std::to_string(o.signal);
                } else {
                    detail += ", exit " + std::to_string(o.exit_status);
                }
            }
            if (o.kind != ExecOutcome::Kind::delivered || !o.stderr_head.empty()) {
                log_exec_output(*_deliveries[static_cast<uint32_t>(cookie)], o, now_unix_ns);
            }
            finish(cookie, now_unix_ns, now_mono_ns, outcome, -1, detail);
        });
        return;
    }
    for (auto& sp : _sinks) {
        if (!sp || !sp->active) {
            continue;
        }
        if (sp->probe.http && sp->probe.http->owns(cqe.user_data)) {
            Sink& s = *sp;
            s.probe.http->on_cqe(cqe, now_mono_ns, [&](uint64_t, const HttpOutcome& o) {
                health_result(s, o.kind == HttpOutcome::Kind::delivered, o.status, o.error,
                              now_unix_ns);
            });
            return;
        }
        bool handled = false;
        with_client(sp->client, [&](auto& client) {
            if (!client.owns(cqe.user_data)) {
                return;
            }
            handled = true;
            client.on_cqe(cqe, now_mono_ns, [&](uint64_t cookie, const auto& o) {
                using Kind = typename std::decay_t<decltype(o)>::Kind;
                Outcome outcome = o.kind == Kind::delivered ? Outcome::delivered : Outcome::retry;
                if constexpr (requires { Kind::rejected; }) {
                    outcome = o.kind == Kind::rejected ? Outcome::refused : outcome;
                }
                std::string detail;
                int64_t retry_after_ns = -1;
                if constexpr (requires { o.status; }) {
                    if (o.status != 0) {
                        detail = "HTTP " + std::to_string(o.status);
                    }
                    retry_after_ns = o.retry_after_ns;
                }
                if (!o.error.empty()) {
                    detail += detail.empty() ? "" : ", ";
                    detail += o.error;
                }
                finish(cookie, now_unix_ns, now_mono_ns, outcome, retry_after_ns, detail);
            });
        });
        if (handled) {
            return;
        }
    }
    // A client a reload retired: its cancelled operations come in; it reports nothing more.
    for (auto& c : _retired) {
        with_client(*c, [&](auto& client) {
            if (client.owns(cqe.user_data)) {
                client.on_cqe(cqe, now_mono_ns, [](uint64_t, const auto&) {});
            }
        });
    }
}

// The command's own words: the first 4 KiB of each stream, in lines of output_piece bytes, since
// a log line is one write of at most 4 KiB (atomic on a pipe, so lines of threads never mix).
void Engine::log_exec_output(const Delivery& d, const ExecOutcome& o, int64_t now_unix_ns) const {
    const Sink& s = *_sinks[d.sink];
    const std::string_view job(d.id_text, sizeof d.id_text);
    const Level level = o.kind == ExecOutcome::Kind::delivered ? Level::info : Level::warn;
    LogLine(level, "exec delivery output", now_unix_ns)
        .field("sink", s.cfg.name)
        .field("job", job)
        .field("attempt", static_cast<int64_t>(d.attempt))
        .field("outcome", exec_outcome_name(o.kind))
        .field("stdout_bytes", static_cast<int64_t>(o.stdout_bytes))
        .field("stderr_bytes", static_cast<int64_t>(o.stderr_bytes))
        .write();
    for (auto [name, head] : {std::pair{"stdout", o.stdout_head}, {"stderr", o.stderr_head}}) {
        for (size_t at = 0, part = 1; at < head.size(); at += output_piece, ++part) {
            LogLine(level, "exec delivery output", now_unix_ns)
                .field("sink", s.cfg.name)
                .field("job", job)
                .field("stream", name)
                .field("part", static_cast<int64_t>(part))
                .field("text", head.substr(at, output_piece))
                .write();
        }
    }
}

void Engine::finish(uint64_t cookie, int64_t now_unix_ns, int64_t now_mono_ns, Outcome outcome,
                    int64_t retry_after_ns, std::string_view detail) {
    const auto index = static_cast<uint32_t>(cookie);
    Delivery& d = *_deliveries[index];
    if (!d.busy || d.generation != static_cast<uint16_t>(cookie >> 32)) {
        return;
    }
    Sink& s = *_sinks[d.sink];
    JobTable& table = _store.sink_table(s.index);
    bool dead = false;
    std::optional<JobInfo> after; // a retried job's state: dead, or queued until its next attempt
    if (outcome == Outcome::delivered) {
        table.ack(d.id, now_unix_ns);
    } else if (outcome == Outcome::refused) {
        table.bury(d.id, now_unix_ns);
        dead = true;
    } else {
        table.nack(d.id, retry_delay_ns(d.attempt, retry_after_ns, _jitter), now_unix_ns);
        after = table.find(d.id);
        dead = after && after->state == JobState::dead;
    }
    // A refusal is the application working: it answered. Only a failure counts against the
    // breaker.
    s.breaker.record(outcome != Outcome::retry, now_mono_ns);
    s.duration.record(now_mono_ns - d.started_mono_ns);
    note_transition(s, now_unix_ns);
    _unsynced.push_back({s.index, outcome, dead});
    if (outcome == Outcome::delivered || dead) {
        job_event(dead ? base::EventType::job_dead : base::EventType::job_delivered, s, d.route,
                  d.attempt, std::string_view(d.id_text, sizeof d.id_text), now_unix_ns);
    }
    if (outcome != Outcome::delivered &&
        s.failure_log.allow(now_mono_ns, failure_log_interval_ns)) {
        LogLine line(dead ? Level::error : Level::warn,
                     dead ? "delivery failed; dead-lettered" : "delivery failed; will retry",
                     now_unix_ns);
        line.field("sink", s.cfg.name)
            .field("route", _store.route_name(d.route))
            .field("job", std::string_view(d.id_text, sizeof d.id_text))
            .field("attempt", static_cast<int64_t>(d.attempt))
            .field("error", detail);
        if (!dead && after) {
            char at[24];
            line.field("next_attempt_at", base::format_rfc3339(after->due_ns, at));
        }
        if (s.failure_log.held_back != 0) {
            line.field("lines_held_back", static_cast<int64_t>(s.failure_log.held_back));
            s.failure_log.held_back = 0;
        }
        line.write();
    }
    --s.in_flight;
    d.busy = false;
    _free.push_back(index);
}

void Engine::job_event(base::EventType type, const Sink& s, uint16_t route, uint16_t attempt,
                       std::string_view id_text, int64_t now_unix_ns) const {
    if (!_on_event) {
        return;
    }
    base::Event e = base::Event::make(type, now_unix_ns);
    e.route = route;
    e.sink = static_cast<uint16_t>(s.index);
    e.attempt = attempt;
    e.set_id(id_text);
    _on_event(e);
}

void Engine::note_transition(Sink& s, int64_t now_unix_ns) {
    Breaker::Transition t = s.breaker.take_transition();
    if (t == Breaker::Transition::none) {
        return;
    }
    std::string_view msg = t == Breaker::Transition::opened        ? "sink breaker opened"
                           : t == Breaker::Transition::half_opened ? "sink breaker half-open"
                                                                   : "sink breaker closed";
    LogLine line(t == Breaker::Transition::opened ? Level::warn : Level::info, msg, now_unix_ns);
    line.field("sink", s.cfg.name);
    if (_on_event && t != Breaker::Transition::half_opened) {
        base::Event e = base::Event::make(t == Breaker::Transition::opened
                                              ? base::EventType::sink_breaker_opened
                                              : base::EventType::sink_breaker_closed,
                                          now_unix_ns);
        e.sink = static_cast<uint16_t>(s.index);
        e.number = static_cast<int64_t>(s.breaker.consecutive_failures());
        _on_event(e);
    }
    if (t == Breaker::Transition::opened) {
        line.field("consecutive_failures", static_cast<int64_t>(s.breaker.consecutive_failures()))
            .field("cooldown_ms", s.cfg.breaker.cooldown_ns / 1'000'000);
    }
    line.write();
}

int64_t Engine::wait_limit_ns(int64_t now_unix_ns, int64_t now_mono_ns, int64_t limit) const {
    int64_t wait = limit;
    for (const auto& sp : _sinks) {
        if (!sp || !sp->active) {
            continue;
        }
        const Sink& s = *sp;
        with_client(s.client,
                    [&](const auto& client) { wait = client.wait_limit_ns(now_mono_ns, wait); });
        if (s.probe.http) {
            wait = s.probe.http->wait_limit_ns(now_mono_ns, wait);
            if (!s.probing && !_draining) {
                wait = std::min(wait, s.probe_due_ns - now_mono_ns);
            }
        }
        if (s.in_flight >= s.concurrency || _draining) {
            continue;
        }
        if (s.breaker.state() == Breaker::State::open) {
            wait = std::min(wait, s.breaker.reopens_at_ns() - now_mono_ns);
            continue;
        }
        if (s.pace.next_ns() > now_mono_ns) {
            wait = std::min(wait, s.pace.next_ns() - now_mono_ns);
            continue;
        }
        for (uint16_t r : s.routes) {
            wait = std::min(wait, _store.sink_table(s.index).next_change_ns(r) - now_unix_ns);
        }
    }
    if (_exec) {
        wait = _exec->wait_limit_ns(now_mono_ns, wait);
    }
    return std::max<int64_t>(wait, 0);
}

void Engine::group_taken() {
    _in_group.insert(_in_group.end(), _unsynced.begin(), _unsynced.end());
    _unsynced.clear();
}

void Engine::group_resolved(bool durable) {
    if (durable) {
        for (const Settled& st : _in_group) {
            SinkCounts& c = _sinks[st.sink]->counts;
            if (st.outcome == Outcome::delivered) {
                ++c.delivered;
            } else if (st.dead) {
                ++c.dead;
                c.refused += st.outcome == Outcome::refused ? 1 : 0;
            } else {
                ++c.retried;
            }
        }
    }
    // On a failure the table rolled the settlements back (and those made since): the jobs stay
    // leased by this engine until their lease runs out, then run again.
    _in_group.clear();
    if (!durable) {
        _unsynced.clear();
    }
}

bool Engine::drain() {
    _draining = true;
    return std::all_of(_sinks.begin(), _sinks.end(),
                       [](const auto& s) { return !s || s->in_flight == 0; });
}

void Engine::stop() {
    _draining = true;
    if (_exec) {
        _exec->stop();
    }
    for (auto& s : _sinks) {
        if (s) {
            with_client(s->client, [](auto& client) { client.stop(); });
            with_client(s->probe, [](auto& client) { client.stop(); });
        }
    }
}

bool Engine::idle() const {
    if (_exec && !_exec->idle()) {
        return false;
    }
    auto idle = [](const Client& c) {
        bool done = true;
        with_client(c, [&](const auto& client) { done = client.idle(); });
        return done;
    };
    return std::all_of(_sinks.begin(), _sinks.end(),
                       [&](const auto& s) { return !s || (idle(s->client) && idle(s->probe)); }) &&
           std::all_of(_retired.begin(), _retired.end(), [&](const auto& c) { return idle(*c); });
}

void Engine::write_health(base::JsonWriter<base::StringBuffer>& w) const {
    for (const auto& sp : _sinks) {
        if (!sp || !sp->active) {
            continue;
        }
        const Sink& s = *sp;
        size_t queued = 0;
        size_t dead = 0;
        for (uint16_t r : s.routes) {
            queue::RouteDepth depth = _store.sink_table(s.index).depth(r);
            queued += depth.queued;
            dead += depth.dead;
        }
        w.key(s.cfg.name)
            .begin_object()
            .key("kind")
            .string(config::sink_kind_name(s.cfg.kind))
            .key("breaker")
            .string(breaker_state_name(s.breaker.state()))
            .key("consecutive_failures")
            .number(static_cast<int64_t>(s.breaker.consecutive_failures()))
            .key("in_flight")
            .number(static_cast<int64_t>(s.in_flight))
            .key("queued")
            .number(static_cast<int64_t>(queued))
            .key("dead")
            .number(static_cast<int64_t>(dead))
            .key("delivered")
            .number(static_cast<int64_t>(s.counts.delivered));
        if (s.cfg.health) {
            w.key("healthy").boolean(s.healthy);
        }
        w.end_object();
    }
}

void Engine::write_deliveries(base::JsonWriter<base::StringBuffer>& w, queue::JobId id,
                              uint16_t route) const {
    for (const auto& sp : _sinks) {
        if (!sp || !delivers(sp->index, route)) {
            continue;
        }
        std::optional<JobInfo> j = _store.sink_table(sp->index).find(id);
        if (!j) {
            continue;
        }
        w.key(sp->cfg.name)
            .begin_object()
            .key("state")
            .string(queue::state_name(j->state))
            .key("attempts")
            .number(j->attempts)
            .end_object();
    }
}

JobState Engine::overall(const JobInfo& pull) const {
    bool any_sink = false;
    bool leased = false;
    bool queued = false;
    bool dead = false;
    auto count = [&](JobState st) {
        leased = leased || st == JobState::leased;
        queued = queued || st == JobState::queued;
        dead = dead || st == JobState::dead;
    };
    for (const auto& sp : _sinks) {
        if (!sp || !delivers(sp->index, pull.route)) {
            continue;
        }
        if (std::optional<JobInfo> j = _store.sink_table(sp->index).find(pull.id)) {
            any_sink = true;
            count(j->state);
        }
    }
    if (!any_sink || pull.attempts > 0 || pull.state != JobState::queued) {
        count(pull.state);
    }
    return leased   ? JobState::leased
           : queued ? JobState::queued
           : dead   ? JobState::dead
                    : JobState::done;
}

int Engine::sink_index(std::string_view name) const {
    for (const auto& s : _sinks) {
        if (s && s->active && s->cfg.name == name) {
            return static_cast<int>(s->index);
        }
    }
    return -1;
}

bool Engine::delivers(size_t sink, uint16_t route) const {
    if (sink >= _sinks.size() || !_sinks[sink] || !_sinks[sink]->active) {
        return false;
    }
    const Sink& s = *_sinks[sink];
    return std::find(s.routes.begin(), s.routes.end(), route) != s.routes.end();
}

void Engine::reports(std::vector<SinkReport>& out) const {
    out.clear();
    for (const auto& sp : _sinks) {
        if (!sp || !sp->active) {
            continue;
        }
        out.push_back({sp->cfg.name, sp->counts, sp->breaker.state() != Breaker::State::closed,
                       &sp->duration,
                       static_cast<int8_t>(sp->cfg.health ? (sp->healthy ? 1 : 0) : -1)});
    }
}

void Engine::log_stopped() const {
    for (const auto& sp : _sinks) {
        if (!sp || !sp->active) {
            continue;
        }
        const Sink& s = *sp;
        LogLine(Level::info, "sink stopped")
            .field("sink", s.cfg.name)
            .field("delivered", static_cast<int64_t>(s.counts.delivered))
            .field("retried", static_cast<int64_t>(s.counts.retried))
            .field("dead", static_cast<int64_t>(s.counts.dead))
            .field("refused", static_cast<int64_t>(s.counts.refused))
            .field("unreadable", static_cast<int64_t>(s.counts.unreadable))
            .field("breaker_opened", static_cast<int64_t>(s.breaker.times_opened()))
            .write();
    }
}

} // namespace portcullis::deliver
