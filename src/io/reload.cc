#include "portcullis/io/reload.hh"

#include "portcullis/admin/consumer_store.hh"
#include "portcullis/admin/token_store.hh"
#include "portcullis/base/time.hh"
#include "portcullis/tls/server.hh"

#include <algorithm>
#include <thread>
#include <unordered_map>

namespace portcullis::io {

namespace {

// How long a reload waits for every reader to take the new snapshot up: a shard turns at least
// every 50 ms, so only a wedged one is still behind after this.
constexpr int64_t take_up_wait_ns = 5 * base::ns_per_s;

std::string addresses(const std::vector<config::ListenAddress>& list) {
    std::string out;
    for (const config::ListenAddress& a : list) {
        out += (out.empty() ? "" : ",") + a.text;
    }
    return out.empty() ? "(none)" : out;
}

bool same(const std::vector<config::ListenAddress>& a,
          const std::vector<config::ListenAddress>& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                      [](const config::ListenAddress& x, const config::ListenAddress& y) {
                          return x.host == y.host && x.port == y.port;
                      });
}

// Whether a route serves differently under b than under a (where it is written aside).
bool same_route(const config::RouteConfig& a, const config::RouteConfig& b) {
    const config::VerifyConfig& va = a.verify;
    const config::VerifyConfig& vb = b.verify;
    const bool same_verify =
        va.scheme == vb.scheme && va.secrets == vb.secrets && va.tolerance_ns == vb.tolerance_ns &&
        va.header == vb.header && va.prefix == vb.prefix && va.encoding == vb.encoding &&
        va.algorithm == vb.algorithm && va.timestamp_header == vb.timestamp_header &&
        va.signed_template == vb.signed_template;
    return same_verify && a.path == b.path && a.methods == b.methods && a.dedup == b.dedup &&
           a.ordering == b.ordering && a.rate_limit == b.rate_limit && a.allow == b.allow &&
           a.max_attempts == b.max_attempts && a.durability == b.durability &&
           a.keep_headers == b.keep_headers && a.deliver == b.deliver && a.ordered == b.ordered;
}

std::string changed(std::string_view key, const std::string& was, const std::string& now) {
    return std::string(key) + " changed (" + was + " -> " + now + "): it needs a restart";
}

// cfg with the consumers <cfg.spool.dir>/consumers.state lists (admin::apply_consumers).
// Returns "" or the error.
std::string with_consumers(config::Config& cfg) {
    std::vector<admin::Consumer> consumers;
    if (std::string why = admin::read_consumer_state(cfg.spool.dir, consumers); !why.empty()) {
        return why;
    }
    return admin::apply_consumers(cfg, consumers);
}

} // namespace

uint64_t ReloadDesk::ask(Errand e) {
    std::lock_guard lock(_mutex);
    return ++of(e).asked;
}

std::optional<ReloadOutcome> ReloadDesk::outcome(Errand e, uint64_t ticket) {
    std::lock_guard lock(_mutex);
    const Tickets& t = of(e);
    if (t.served < ticket) {
        return std::nullopt;
    }
    return t.last;
}

uint64_t ReloadDesk::asked(Errand e) {
    std::lock_guard lock(_mutex);
    return of(e).asked;
}

void ReloadDesk::done(Errand e, uint64_t served, const ReloadOutcome& outcome) {
    std::lock_guard lock(_mutex);
    Tickets& t = of(e);
    t.served = std::max(t.served, served);
    t.last = outcome;
    if (e == Errand::reload) {
        ++(outcome.ok ? _taken : _refused);
    }
}

std::pair<uint64_t, uint64_t> ReloadDesk::counts() {
    std::lock_guard lock(_mutex);
    return {_taken, _refused};
}

std::string restart_needed(const config::Config& running, const config::Config& next) {
    const config::ServerConfig& a = running.server;
    const config::ServerConfig& b = next.server;
    if (!same(a.listen, b.listen)) {
        return changed("server.listen", addresses(a.listen), addresses(b.listen));
    }
    if (a.shards != b.shards) {
        return changed("server.shards", std::to_string(a.shards), std::to_string(b.shards));
    }
    if (a.max_connections != b.max_connections) {
        return changed("server.max_connections", std::to_string(a.max_connections),
                       std::to_string(b.max_connections));
    }
    if (a.max_connections_per_ip != b.max_connections_per_ip) {
        return changed("server.max_connections_per_ip", std::to_string(a.max_connections_per_ip),
                       std::to_string(b.max_connections_per_ip));
    }
    if (a.tls.has_value() != b.tls.has_value()) {
        return changed("server.tls", a.tls ? "set" : "not set", b.tls ? "set" : "not set");
    }
    if (a.tls) {
        if (!same(a.tls->listen, b.tls->listen)) {
            return changed("server.tls.listen", addresses(a.tls->listen), addresses(b.tls->listen));
        }
        // The files are read again on every reload; which files, and how the contexts are
        // built, is fixed at start.
        const bool same_files =
            std::equal(a.tls->certificates.begin(), a.tls->certificates.end(),
                       b.tls->certificates.begin(), b.tls->certificates.end(),
                       [](const config::TlsCertificate& x, const config::TlsCertificate& y) {
                           return x.cert == y.cert && x.key == y.key;
                       });
        if (!same_files) {
            return "server.tls.certificates changed (other files): it needs a restart (a reload "
                   "reads the same files again)";
        }
        if (a.tls->min_version != b.tls->min_version ||
            a.tls->session_tickets != b.tls->session_tickets ||
            a.tls->ticket_rotation_ns != b.tls->ticket_rotation_ns) {
            return "server.tls.min_version, session_tickets or ticket_rotation changed: it needs "
                   "a restart";
        }
    }
    const auto admin_listen = [](const config::AdminConfig& c) {
        return c.listen ? c.listen->text : std::string("(none)");
    };
    if (running.admin.listen.has_value() != next.admin.listen.has_value() ||
        (running.admin.listen && (running.admin.listen->host != next.admin.listen->host ||
                                  running.admin.listen->port != next.admin.listen->port))) {
        return changed("admin.listen", admin_listen(running.admin), admin_listen(next.admin));
    }
    if (running.admin.max_connections != next.admin.max_connections) {
        return changed("admin.max_connections", std::to_string(running.admin.max_connections),
                       std::to_string(next.admin.max_connections));
    }
    if (running.admin.events.buffer != next.admin.events.buffer) {
        return changed("admin.events.buffer", std::to_string(running.admin.events.buffer),
                       std::to_string(next.admin.events.buffer));
    }
    if (running.spool.dir != next.spool.dir) {
        return changed("spool.dir", running.spool.dir, next.spool.dir);
    }
    if (running.spool.segment_size != next.spool.segment_size) {
        return changed("spool.segment_size", std::to_string(running.spool.segment_size),
                       std::to_string(next.spool.segment_size));
    }
    if (running.spool.retention_ns != next.spool.retention_ns) {
        return changed("spool.retention",
                       std::to_string(running.spool.retention_ns / base::ns_per_s) + "s",
                       std::to_string(next.spool.retention_ns / base::ns_per_s) + "s");
    }
    return "";
}

Reloader::Reloader(std::string path, ShardShared& shared, size_t readers, config::RouteSlots& slots,
                   std::unique_ptr<config::Snapshot> first)
    : _path(std::move(path)), _shared(shared), _readers(readers), _slots(slots),
      _current(std::move(first)) {
    // The start configuration's routes take slots 0..n-1, as Snapshot::build numbered them.
    _current->number(1, _slots);
    _shared.snapshot.store(_current.get(), std::memory_order_release);
}

Reloader::~Reloader() = default;

ReloadOutcome Reloader::reload(tls::Server* tls,
                               const std::function<std::string(const config::Snapshot&)>& check) {
    const int64_t started = base::mono_ns();
    ReloadOutcome out = begin();
    if (!out.errors.empty()) {
        return out;
    }
    config::LoadResult loaded = config::load(_path);
    if (!loaded.ok()) {
        for (const config::Diagnostic& d : loaded.errors) {
            out.errors.push_back(d.format());
        }
        if (out.errors.empty()) {
            out.errors.push_back(_path + ": the configuration could not be loaded");
        }
        return out;
    }
    // What a start only warns about, a reload refuses: a secret that resolves to nothing would
    // disarm a route (or a sink) that works now.
    for (const config::Diagnostic& d : loaded.warnings) {
        if (d.secret_unset) {
            out.errors.push_back(d.format());
        }
    }
    if (!out.errors.empty()) {
        return out;
    }
    if (std::string why = restart_needed(_current->config(), *loaded.config); !why.empty()) {
        out.errors.push_back(_path + ": " + why);
        return out;
    }
    // Minted tokens outlive reloads: a configured token may not take one's name.
    std::vector<admin::MintedToken> minted;
    if (std::string why = admin::read_token_state(loaded.config->spool.dir, minted); !why.empty()) {
        out.errors.push_back(why);
        return out;
    }
    for (const config::TokenConfig& t : loaded.config->tokens) {
        for (const admin::MintedToken& m : minted) {
            if (m.name == t.name) {
                config::Diagnostic d{t.mark, "tokens." + t.name,
                                     "a minted token has this name (revoke it with DELETE "
                                     "/v1/tokens/" +
                                         t.name + ", or rename this one)"};
                out.errors.push_back(d.format());
                return out;
            }
        }
    }
    // So do registered consumers: their sinks join the new configuration.
    if (std::string why = with_consumers(*loaded.config); !why.empty()) {
        out.errors.push_back(why);
        return out;
    }
    std::string error;
    std::unique_ptr<config::Snapshot> next =
        config::Snapshot::build(std::move(*loaded.config), error);
    if (!next) {
        out.errors.push_back(_path + ": " + error);
        return out;
    }
    publish(std::move(next), check, tls, started, out);
    return out;
}

ReloadOutcome
Reloader::republish(const std::function<std::string(const config::Snapshot&)>& check) {
    const int64_t started = base::mono_ns();
    ReloadOutcome out = begin();
    if (!out.errors.empty()) {
        return out;
    }
    config::Config cfg = _current->config();
    if (std::string why = with_consumers(cfg); !why.empty()) {
        out.errors.push_back(why);
        return out;
    }
    std::string error;
    std::unique_ptr<config::Snapshot> next = config::Snapshot::build(std::move(cfg), error);
    if (!next) {
        out.errors.push_back(error);
        return out;
    }
    publish(std::move(next), check, nullptr, started, out);
    return out;
}

ReloadOutcome Reloader::begin() const {
    ReloadOutcome out;
    out.generation = _current->generation();
    out.routes = _current->routes().size();
    if (!taken_up(out.generation)) {
        // What the readers hold is still changing: checks against it would race.
        out.errors.push_back("the previous reload is still being taken up by a shard or the "
                             "control plane; try again");
    }
    return out;
}

void Reloader::publish(std::unique_ptr<config::Snapshot> next,
                       const std::function<std::string(const config::Snapshot&)>& check,
                       tls::Server* tls, int64_t started, ReloadOutcome& out) {
    if (check) {
        if (std::string why = check(*next); !why.empty()) {
            out.errors.push_back(why);
            return;
        }
    }
    if (std::string why = next->fits(_slots); !why.empty()) {
        out.errors.push_back(_path + ": " + why);
        return;
    }
    // The last step that may refuse: the certificates, read again from their files.
    if (tls != nullptr) {
        if (std::string why = tls->reload(); !why.empty()) {
            out.errors.push_back("server.tls: " + why);
            return;
        }
        out.certificates_reloaded = true;
    }
    // What changed, by route name.
    std::unordered_map<std::string_view, const config::RouteConfig*> before;
    for (const config::Route& r : _current->routes()) {
        before.emplace(r.config->name, r.config);
    }
    for (const config::Route& r : next->routes()) {
        auto it = before.find(r.config->name);
        if (it == before.end()) {
            out.added.push_back(r.config->name);
        } else {
            if (!same_route(*it->second, *r.config)) {
                out.changed.push_back(r.config->name);
            }
            before.erase(it);
        }
    }
    for (const config::Route& r : _current->routes()) {
        if (before.contains(r.config->name)) {
            out.removed.push_back(r.config->name);
        }
    }
    next->number(_current->generation() + 1, _slots);
    const uint64_t generation = next->generation();
    _shared.snapshot.store(next.get(), std::memory_order_release);
    _retired.push_back(std::move(_current));
    _current = std::move(next);
    // Every reader uses it for new work before the reload is said done: POST /v1/reload's
    // caller may send to a new route at once.
    if (_wake) {
        _wake(); // the shards' doorbells: an idle shard would wait for its 50 ms tick
    }
    const int64_t deadline = base::mono_ns() + take_up_wait_ns;
    while (!taken_up(generation) && base::mono_ns() < deadline) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    out.ok = true;
    out.generation = generation;
    out.routes = _current->routes().size();
    out.took_ns = base::mono_ns() - started;
    if (!taken_up(generation)) {
        out.errors.push_back("a reader had not taken the new configuration up after 5 s");
    }
    collect();
}

bool Reloader::taken_up(uint64_t generation) const {
    for (size_t i = 0; i < _readers; ++i) {
        if (_shared.uses[i].current.load(std::memory_order_acquire) < generation) {
            return false;
        }
    }
    return true;
}

void Reloader::collect() {
    uint64_t oldest = _current->generation();
    for (size_t i = 0; i < _readers; ++i) {
        oldest = std::min(oldest, _shared.uses[i].oldest.load(std::memory_order_acquire));
    }
    std::erase_if(_retired, [&](const std::unique_ptr<config::Snapshot>& s) {
        return s->generation() < oldest;
    });
}

} // namespace portcullis::io
