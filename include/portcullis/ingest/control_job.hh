// A job enqueued from inside (POST /v1/routes/{route}/jobs) on its way from the control plane to
// a shard and back. The control plane authorizes the request, fills in a ControlJob, pushes its
// address into one shard's inbox and rings that shard's doorbell; the shard drains its inbox at
// the top of its loop, builds the record (Ingest::submit) and hands it to its spool like any
// webhook's; once the spool has answered (or the job was refused before it) the shard writes the
// outcome into the same object and pushes its address into its outbox, which the control plane
// drains every loop turn before answering the waiting connection.
//
//   ControlJob* job = ...;                       // control plane: owned by it throughout
//   if (port.inbox->try_push(job)) { port.doorbell->ring(); }
//   ...
//   ControlJob* done; while (port.outbox->try_pop(done)) { answer(done->status, done->answer()); }
//
// Ownership never moves: the control plane frees a job only once the shard has handed it back
// (or once the shards have stopped), so the shard may read the request's views until then and
// write the outcome without allocating. The control plane keeps at most
// control_jobs_per_shard jobs in one shard's hands, so the outbox (as big) never refuses one.
#pragma once

#include "portcullis/base/address.hh"
#include "portcullis/base/doorbell.hh"
#include "portcullis/base/spsc_queue.hh"
#include "portcullis/http/header.hh"
#include "portcullis/ingest/route_stats.hh"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace portcullis::ingest {

struct ControlJob {
    // The request: set by the control plane before the push, read-only for the shard. The views
    // point into storage the control plane keeps until the job comes back.
    std::string_view route; // a route's name
    std::string_view token; // the name of the token that sent it: the job's source
    base::PeerAddress peer; // the control-plane client
    std::span<const http::Header> headers;
    std::string_view body;

    // The outcome: written by the shard before it pushes the job into its outbox.
    uint8_t shard = 0;
    uint16_t status = 0;
    EnqueueOutcome outcome = EnqueueOutcome::refused;
    uint8_t answer_size = 0;
    uint8_t extra_size = 0;
    std::array<char, 160> answer_text{}; // the answer's JSON body ({"id":..,"status":..})
    std::array<char, 40> extra_text{};   // its extra header lines (Retry-After: 1\r\n)

    std::string_view answer() const { return {answer_text.data(), answer_size}; }
    std::string_view extra_headers() const { return {extra_text.data(), extra_size}; }
};

// Jobs one shard holds at once (its inbox and its outbox have this many slots each).
inline constexpr size_t control_jobs_per_shard = 256;

using ControlJobQueue = base::SpscQueue<ControlJob*>;

// How the control plane reaches one shard: its inbox (control plane -> shard), its outbox
// (shard -> control plane) and its doorbell. The shard owns all three.
struct ShardPort {
    ControlJobQueue* inbox = nullptr;
    ControlJobQueue* outbox = nullptr;
    const base::Doorbell* doorbell = nullptr;
};

} // namespace portcullis::ingest
