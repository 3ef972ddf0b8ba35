// What befell one route's requests on one shard: answers by status code, refusals by reason,
// the time from head to answer, the body bytes received; and the outcomes of the jobs enqueued
// on it through the control plane. Each shard's Ingest owns one block per route slot
// (config::RouteSlots: a route name keeps its block across reloads) plus one for requests that
// matched no route, each on its own cache lines, written by that shard only with relaxed
// atomics; /metrics and the stop line sum the shards' blocks (one source of truth).
//
//   const RouteStats* s = ingest.route_stats().find(route->slot);   // null: none yet
//   s->answered[status_slot(202)].load(std::memory_order_relaxed);
#pragma once

#include "portcullis/base/histogram.hh"
#include "portcullis/base/reject_reason.hh"
#include "portcullis/config/snapshot.hh"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace portcullis::ingest {

// The status codes the public plane answers, each a label value of its own; anything else is
// counted under its class ("2xx" .. "5xx"), so that the label set stays bounded.
inline constexpr std::array<uint16_t, 17> answered_codes = {
    100, 200, 202, 400, 401, 403, 404, 405, 408, 409, 411, 413, 415, 429, 431, 501, 503,
};
inline constexpr size_t status_slot_count = answered_codes.size() + 5; // + "1xx" .. "5xx"

constexpr size_t status_slot(uint16_t status) {
    for (size_t i = 0; i < answered_codes.size(); ++i) {
        if (answered_codes[i] == status) {
            return i;
        }
    }
    const size_t cls = status / 100;
    return answered_codes.size() + (cls >= 1 && cls <= 5 ? cls - 1 : 4);
}

// The `code` label of a slot: "202", or "4xx".
std::string_view status_slot_label(size_t slot);

// What became of a job enqueued through the control plane (POST /v1/routes/{route}/jobs), for
// portcullis_enqueues_total{route, outcome}.
enum class EnqueueOutcome : uint8_t {
    queued,      // 202: durable
    duplicate,   // 200: a copy of a job inside the route's dedup window
    conflict,    // 409: the same dedup key with another body
    stale,       // 409: not newer than the newest event of its ordering key
    in_progress, // 503: the first copy was being written
    unavailable, // 503: the spool refused the write, or the shard is draining
    refused,     // anything else (a route this shard's configuration does not have, ...)
    count,
};
inline constexpr size_t enqueue_outcome_count = static_cast<size_t>(EnqueueOutcome::count);
inline constexpr std::array<std::string_view, enqueue_outcome_count> enqueue_outcome_names = {
    "queued", "duplicate", "conflict", "stale", "in_progress", "unavailable", "refused",
};

struct alignas(64) RouteStats {
    std::array<std::atomic<uint64_t>, status_slot_count> answered{};
    std::array<std::atomic<uint64_t>, base::reject_reason_count> rejected{};
    std::atomic<uint64_t> body_bytes{0}; // received, before verification
    base::Histogram duration;            // head complete -> answer written
    // Jobs enqueued through the control plane, by outcome (not in answered or rejected).
    std::array<std::atomic<uint64_t>, enqueue_outcome_count> enqueued{};
};

// One shard's blocks by route slot. Blocks come in chunks that are made when a snapshot with new
// slots is taken up (a reload, not a request) and never move or go until the table does, so a
// scrape on another thread may read any block it finds.
class RouteStatsTable {
public:
    static constexpr size_t chunk_blocks = 64;

    RouteStatsTable() = default;
    ~RouteStatsTable();
    RouteStatsTable(const RouteStatsTable&) = delete;
    RouteStatsTable& operator=(const RouteStatsTable&) = delete;

    // Makes the blocks of slots [0, slots) exist. The owning thread only.
    void reserve(size_t slots);
    // The owner's block of a reserved slot.
    RouteStats& at(size_t slot) {
        return _chunks[slot / chunk_blocks].load(std::memory_order_relaxed)[slot % chunk_blocks];
    }
    // Any thread: the block of slot, or nullptr when this shard has not made it yet.
    const RouteStats* find(size_t slot) const;

private:
    static constexpr size_t chunk_count = config::RouteSlots::capacity / chunk_blocks;
    std::array<std::atomic<RouteStats*>, chunk_count> _chunks{};
};

} // namespace portcullis::ingest
