// The control plane (SPEC section 5): its own listener (admin.listen), its own thread and ring,
// never a socket shared with the public plane. It serves GET /healthz and the pull API over the
// JobStore: lease (with long polls), ack, nack, job state, dead letters and replay, jobs enqueued
// from inside (handed to a shard, which commits them with its webhooks), each behind the bearer
// tokens of the configuration; and with sinks it runs the delivery engine
// (deliver/engine.hh) on the same ring, its settlements in the same ledger.
//
//   ControlPlane cp(*snapshot, features, spool_progress);   // one SpoolProgress per shard
//   if (auto err = cp.init(listen_fd); !err.empty()) { ... }   // after the shards' init
//   std::thread t([&] { cp.run(stop); });                      // until stop is set
//
// Answers that promise a state change (ack, nack, replay) are sent only after the ledger holds
// it (fdatasync), so that an answered ack survives kill -9. A request's work is done on the
// control-plane thread; the shards never wait for it.
#pragma once

#include "portcullis/admin/metrics.hh"
#include "portcullis/base/event.hh"
#include "portcullis/config/snapshot.hh"
#include "portcullis/ingest/control_job.hh"
#include "portcullis/io/reload.hh"
#include "portcullis/io/ring.hh"
#include "portcullis/queue/spool_progress.hh"

#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace portcullis::admin {

class ControlPlane {
public:
    // progress: one per shard, published by the shards' spool writers (the JobStore indexes
    // what they have committed); it must outlive the control plane.
    ControlPlane(const config::Snapshot& snapshot, const io::Features& features,
                 std::span<const queue::SpoolProgress> progress);
    ~ControlPlane();
    ControlPlane(const ControlPlane&) = delete;
    ControlPlane& operator=(const ControlPlane&) = delete;

    // GET /events: the queues the other threads hand their events through (one per producing
    // thread, each outliving the control plane). Before init(); without it only the control
    // plane's own events (job.leased, job.acked, deliveries...) are streamed.
    void set_event_queues(std::span<base::EventQueue* const> queues);
    // Reloads (io/reload.hh), before init(): the control plane takes up each snapshot published
    // in live between two turns and says so in use; events name routes by their slot; POST
    // /v1/reload asks the main thread through desk. All must outlive the control plane.
    void follow_reloads(const std::atomic<const config::Snapshot*>& live, io::SnapshotUse& use,
                        const config::RouteSlots& slots, io::ReloadDesk& desk);
    // The main thread, before it publishes a reload: what the job index would refuse of next
    // (a route's `ordered` changed, no delivery lane left), "" when nothing. Safe between
    // reloads: what it reads changes only when the control plane takes a snapshot up, which the
    // reload waits for.
    std::string check_reload(const config::Snapshot& next) const;
    // POST /v1/routes/{route}/jobs: how to reach each shard (ingest/control_job.hh), which must
    // outlive the control plane's run(); run() must end only after the shards' loops have (it
    // then refuses the jobs they did not take). Before run(); without it the endpoint is 503.
    void set_shards(std::span<const ingest::ShardPort> ports);

    // Start-up (blocking): the ring and the job index (spool segments and ledger). Takes
    // listen_fd. Returns "" or the error.
    std::string init(int listen_fd);
    // What GET /metrics and /healthz read of the shards and the shared tables (before run()):
    // counters the shards own, summed at each scrape. Without it they show the control
    // plane's own state only.
    void observe(std::vector<ShardView> shards, SharedSources shared);
    // Serves until stop is set; then answers waiting long polls with what they have and returns.
    void run(const std::atomic<bool>& stop);

private:
    struct Impl;
    std::unique_ptr<Impl> _impl;
};

} // namespace portcullis::admin
