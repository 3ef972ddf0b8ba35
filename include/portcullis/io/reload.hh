// Reloading the configuration while serving (SPEC section 6): SIGHUP and POST /v1/reload.
//
// The main thread loads the same -c path again, builds the new snapshot and validates all of it
// (schema, secrets, integrity pins, certificates, keys that need a restart) before anything
// changes; a refusal leaves the old configuration serving. Then it publishes the snapshot with
// one atomic store (ShardShared::snapshot) and waits until every reader (each shard, the control
// plane) uses it for new work: readers take it up at the top of their loop, so nothing on the
// request path takes a lock. A request in progress keeps the snapshot it started with
// (ingest::Webhook::snap). Old snapshots are freed by the main thread once no reader holds one
// that old any more (SnapshotUse::oldest): quiescent-state reclamation with the generation
// number as the epoch.
//
//   Reloader reloader(path, shared, readers, slots, std::move(first));
//   uint64_t asked = desk.asked(ReloadDesk::Errand::reload);        // SIGHUP
//   ReloadOutcome o = reloader.reload(tls_server, check);
//   desk.done(ReloadDesk::Errand::reload, asked, o);
//   reloader.collect();                                           // now and then
#pragma once

#include "portcullis/config/snapshot.hh"
#include "portcullis/io/shard.hh"

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace portcullis::tls {
class Server;
}

namespace portcullis::io {

// What one reload did, as the log, the event and POST /v1/reload's answer tell it.
struct ReloadOutcome {
    bool ok = false;
    uint64_t generation = 0; // in use now (the new one, or the old one when refused)
    size_t routes = 0;
    int64_t took_ns = 0; // from the start of the load to every reader using the snapshot
    std::vector<std::string> errors;                  // when refused: the first is the headline
    std::vector<std::string> added, removed, changed; // route names
    bool certificates_reloaded = false;
};

// POST /v1/reload's way to the main thread, and POST or DELETE /v1/consumers'. The control
// plane asks (and sends the process a signal, which only the main thread takes) and polls for the
// outcome between its turns; it never waits. One run serves every request asked before it
// started.
class ReloadDesk {
public:
    enum class Errand : uint8_t {
        reload,    // SIGHUP: load the configuration's files again (Reloader::reload)
        consumers, // SIGUSR1: consumers.state was written; publish the configuration in use
                   // again with the consumers it lists now (Reloader::republish)
    };

    // Control plane: a ticket for a run that will start after this call.
    uint64_t ask(Errand e);
    // Control plane: the outcome once a run that started after the ticket was asked is done.
    std::optional<ReloadOutcome> outcome(Errand e, uint64_t ticket);
    // Main thread: the tickets a run starting now serves.
    uint64_t asked(Errand e);
    void done(Errand e, uint64_t served, const ReloadOutcome& outcome);
    // Reloads done since the start: {taken, refused}.
    std::pair<uint64_t, uint64_t> counts();

private:
    struct Tickets {
        uint64_t asked = 0;
        uint64_t served = 0;
        ReloadOutcome last;
    };

    std::mutex _mutex;   // the control plane and the main thread only, never a shard
    Tickets _tickets[2]; // by Errand
    uint64_t _taken = 0;
    uint64_t _refused = 0;

    Tickets& of(Errand e) { return _tickets[static_cast<size_t>(e)]; }
};

// "" or why next cannot replace running without a restart, naming the key: listen addresses,
// the shard count, the spool, and what was sized at start (connection caps, event buffer).
std::string restart_needed(const config::Config& running, const config::Config& next);

class Reloader {
public:
    // readers: the shards, then the control plane if there is one (shared.uses has as many).
    Reloader(std::string path, ShardShared& shared, size_t readers, config::RouteSlots& slots,
             std::unique_ptr<config::Snapshot> first);
    ~Reloader();
    Reloader(const Reloader&) = delete;
    Reloader& operator=(const Reloader&) = delete;

    // Loads and validates the configuration, then publishes it and waits (bounded) until every
    // reader uses it. tls: the certificates are read again as the last step that may refuse.
    // check: what the control plane's job index would refuse (ControlPlane::check_reload).
    ReloadOutcome reload(tls::Server* tls,
                         const std::function<std::string(const config::Snapshot&)>& check);
    // Publishes the configuration in use again with the consumers <spool dir>/consumers.state
    // lists now (admin::apply_consumers), without reading the configuration's files: an edit
    // not yet reloaded is not taken up by a registration. Same checks and wait as reload().
    ReloadOutcome republish(const std::function<std::string(const config::Snapshot&)>& check);
    // Frees the snapshots no reader holds any more.
    void collect();
    // Called once a snapshot is published, to wake the readers at once.
    void on_publish(std::function<void()> wake) { _wake = std::move(wake); }
    const config::Snapshot& current() const { return *_current; }

private:
    std::string _path;
    ShardShared& _shared;
    size_t _readers;
    config::RouteSlots& _slots;
    std::unique_ptr<config::Snapshot> _current;
    std::vector<std::unique_ptr<config::Snapshot>> _retired;
    std::function<void()> _wake;

    // Whether every reader uses generation (or a newer one) for new work.
    bool taken_up(uint64_t generation) const;
    // The start of reload() and republish(): the outcome so far (the generation in use), with an
    // error when the readers are still taking the last one up.
    ReloadOutcome begin() const;
    // The end of reload() and republish(): check, fits, what changed, publish, wait.
    void publish(std::unique_ptr<config::Snapshot> next,
                 const std::function<std::string(const config::Snapshot&)>& check, tls::Server* tls,
                 int64_t started, ReloadOutcome& out);
};

} // namespace portcullis::io
