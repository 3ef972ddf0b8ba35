// One shard: a thread pinned to its core with its own ring, listeners, connections, timers,
// buffers and spool. It serves the public plane from an immutable config snapshot; nothing on
// its request path takes a lock, allocates after warm-up, or makes a syscall of its own.
//
//   ShardShared shared{snapshot, features};
//   Shard shard(0, shared, listen_fds);
//   if (auto err = shard.init(); !err.empty()) { ... }   // start-up: ring, buffers, spool
//   std::thread t([&] { shard.run(); });                   // returns after a drain
#pragma once

#include "portcullis/admit/connection_counts.hh"
#include "portcullis/admit/rate_limit.hh"
#include "portcullis/base/event.hh"
#include "portcullis/config/snapshot.hh"
#include "portcullis/ingest/control_job.hh"
#include "portcullis/ingest/webhook.hh"
#include "portcullis/io/ring.hh"
#include "portcullis/queue/dedup.hh"
#include "portcullis/queue/spool_progress.hh"
#include "portcullis/queue/spool_writer.hh"
#include "portcullis/tls/server.hh"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace portcullis::io {

// Which configuration generations one reader (a shard, the control plane) uses for new work
// and still holds for work in progress: what the reload waits on, and what frees old snapshots.
struct alignas(64) SnapshotUse {
    std::atomic<uint64_t> current{0};
    std::atomic<uint64_t> oldest{0};
};

// The state all shards share: immutable, or atomics.
struct ShardShared {
    // The configuration in force: replaced whole by a reload (io/server.cc), taken up by each
    // shard at the top of its loop. The snapshots themselves are owned by the main thread.
    std::atomic<const config::Snapshot*> snapshot{nullptr};
    // One per shard, indexed by shard, then the control plane's; null in tests without reload.
    SnapshotUse* uses = nullptr;
    Features features;
    std::atomic<bool> draining{false};
    std::atomic<uint32_t> connections{0};
    // Shared by all shards; null when no route dedups (orders).
    queue::DedupTable* dedup = nullptr;
    queue::OrderingTable* ordering = nullptr;
    // Shared by all shards; null when no route has a rate_limit.
    admit::RateLimiter* limiter = nullptr;
    // Open connections per client (server.max_connections_per_ip); null when the cap cannot
    // bind before max_connections does.
    admit::ConnectionCounts* per_client = nullptr;
    // Mixed into the keys of both tables: a random number of this process, so that outsiders
    // cannot aim at one client's bucket.
    uint64_t key_secret = 0;
    // One per shard, indexed by shard: how far its spool is committed, for the control plane.
    queue::SpoolProgress* spool_progress = nullptr;
    // The certificates and ticket keys of server.tls; null without TLS listeners.
    tls::Server* tls = nullptr;
    // One per shard, indexed by shard: its events for GET /events (the control plane drains
    // them); null without a control plane.
    base::EventQueue* const* events = nullptr;
};

// Counters of one shard, written by its thread only, read (racily, for reports) by others.
struct alignas(64) ShardStats {
    std::atomic<uint64_t> accepted_connections{0};
    std::atomic<uint64_t> refused_connections{0}; // over max_connections
    std::atomic<uint64_t> refused_per_client{0};  // over max_connections_per_ip
    std::atomic<uint64_t> proxy_refused{0};       // no valid PROXY header, or an untrusted peer
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> header_timeouts{0}; // slowloris: a head not whole in timeouts.header
    std::atomic<uint64_t> body_timeouts{0};   // slow POST: a body not whole in timeouts.body
    // Connection mechanics.
    std::atomic<uint64_t> connection_errors{0};  // closed: a receive or a send failed (reset)
    std::atomic<uint64_t> pipeline_pauses{0};    // reading stopped until answers drain a pipeline
    std::atomic<uint64_t> pipeline_overflows{0}; // closed: pipelined input that could not be held
    std::atomic<uint64_t> recv_no_buffers{0};    // the receive ring ran dry; receive re-armed
    std::atomic<uint64_t> unanswered_jobs{0};    // durable, but the connection was gone

    // TLS listeners.
    std::atomic<uint64_t> tls_handshakes{0};         // completed, full
    std::atomic<uint64_t> tls_resumed{0};            // completed, resumed from a ticket
    std::atomic<uint64_t> tls_not_tls{0};            // closed: the first bytes were not TLS
    std::atomic<uint64_t> tls_handshake_failures{0}; // closed: no common version, cipher, ...
    std::atomic<uint64_t> tls_handshake_timeouts{0}; // closed: no handshake in timeouts.header
    std::atomic<uint64_t> tls_handshake_aborted{0};  // the client closed or reset mid-handshake
    std::atomic<uint64_t> tls_record_errors{0};      // closed: a record failed after the handshake

    std::atomic<uint64_t> log_lines_dropped{0};
    // By status class: index status / 100.
    std::array<std::atomic<uint64_t>, 6> responses{};
};

class Shard {
public:
    // listen_fds: this shard's socket of each listen address; those from tls_from on are TLS
    // listeners (server.tls.listen).
    Shard(uint32_t index, ShardShared& shared, std::vector<int> listen_fds, size_t tls_from);
    ~Shard();
    Shard(const Shard&) = delete;
    Shard& operator=(const Shard&) = delete;

    // Start-up (blocking): ring, provided buffers, spool recovery. Returns "" or the error.
    std::string init();
    // The event loop; returns when a drain has finished.
    void run();

    const ShardStats& stats() const;
    // The counters of the webhook path (ingest/), of its routes by Route::slot, and of requests
    // that matched no route.
    const ingest::Stats& ingest_stats() const;
    const ingest::RouteStatsTable& route_stats() const;
    const ingest::RouteStats& unmatched_stats() const;
    // Its spool's commit latencies and whether it refuses writes.
    const queue::SpoolMetrics& spool_metrics() const;

    // Wakes its loop from any thread (its doorbell, base/doorbell.hh): it then drains the queues
    // other threads feed it, at the top of its loop. After init().
    void wake() const;
    // How the control plane hands it jobs enqueued from inside and gets them back
    // (ingest/control_job.hh); the queues and the doorbell live as long as the shard.
    ingest::ShardPort port();

private:
    struct Impl;
    std::unique_ptr<Impl> _impl;
};

// The sum of one counter over the shards (for the stop line and /metrics alike).
template <typename Shards>
uint64_t total(const Shards& shards, std::atomic<uint64_t> ShardStats::*counter) {
    uint64_t n = 0;
    for (const auto& s : shards) {
        n += (s->stats().*counter).load(std::memory_order_relaxed);
    }
    return n;
}

template <typename Shards>
uint64_t total(const Shards& shards, std::atomic<uint64_t> ingest::Stats::*counter) {
    uint64_t n = 0;
    for (const auto& s : shards) {
        n += (s->ingest_stats().*counter).load(std::memory_order_relaxed);
    }
    return n;
}

} // namespace portcullis::io
