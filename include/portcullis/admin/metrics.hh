// GET /metrics (SPEC sections 5 and 9): the Prometheus text format 0.0.4, written on the control
// plane's thread from counters the shards own (each on its own cache lines, written with relaxed
// atomics by its shard only) and from the control plane's own state. A scrape sums; the shards
// never lock or wait for it.
//
//   std::string out;
//   Exposition e(out);
//   e.family("portcullis_requests_total", "counter", "Requests answered, by route and code.");
//   e.sample("portcullis_requests_total", {{"route", "github"}, {"code", "202"}}, 12);
//   write_shard_metrics(e, snapshot, views, now_unix_ns);   // the shards' part
#pragma once

#include "portcullis/base/histogram.hh"
#include "portcullis/config/snapshot.hh"
#include "portcullis/ingest/route_stats.hh"
#include "portcullis/ingest/webhook.hh"
#include "portcullis/queue/spool_writer.hh"

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::admit {
class ConnectionCounts;
class RateLimiter;
} // namespace portcullis::admit

namespace portcullis::io {
struct ShardStats;
} // namespace portcullis::io

namespace portcullis::admin {

// The Content-Type of a scrape.
inline constexpr std::string_view metrics_content_type = "text/plain; version=0.0.4; charset=utf-8";

struct Label {
    std::string_view name;
    std::string_view value; // escaped when written
};

// Writes the text format into a string. Family names are the caller's constants (valid metric
// names); label values may be anything and are escaped (backslash, double quote, line feed).
class Exposition {
public:
    explicit Exposition(std::string& out) : _out(out) {}

    // The HELP and TYPE lines of a family ("counter", "gauge", "histogram"), once, before its
    // samples.
    void family(std::string_view name, std::string_view type, std::string_view help);
    void sample(std::string_view name, std::initializer_list<Label> labels, uint64_t value);
    void sample(std::string_view name, std::initializer_list<Label> labels, int64_t value);
    void sample(std::string_view name, std::initializer_list<Label> labels, double value);
    // The series of a histogram family `name` (durations in seconds): name_bucket with a
    // cumulative count per `le` bound and "+Inf", then name_sum and name_count.
    void histogram(std::string_view name, std::initializer_list<Label> labels,
                   const base::HistogramTotal& h);

private:
    void head(std::string_view name, std::string_view suffix, std::initializer_list<Label> labels,
              Label extra = {});
    std::string& _out;
};

// Appends v escaped as a label value (no quotes).
void escape_label_value(std::string& out, std::string_view v);

// What the control plane reads of one shard: its counters and its spool's. All are written by
// the shard alone with relaxed atomics.
struct ShardView {
    const io::ShardStats* stats = nullptr;
    const ingest::Stats* ingest = nullptr;
    const ingest::RouteStatsTable* routes = nullptr; // by Route::slot
    const ingest::RouteStats* unmatched = nullptr;   // requests that matched no route
    const queue::SpoolMetrics* spool = nullptr;
};

// The process-wide sources beyond the shards (each may be null).
struct SharedSources {
    const admit::RateLimiter* limiter = nullptr;
    const admit::ConnectionCounts* per_client = nullptr;
    const queue::DedupTable* dedup = nullptr;
    const queue::OrderingTable* ordering = nullptr;
    // Certificates' names and expiry (Unix seconds), the expiry stored again by the main
    // thread when SIGHUP reloads the files.
    struct Certificate {
        std::string name; // the first SNI name, else the file
        const std::atomic<int64_t>* not_after = nullptr;
    };
    std::vector<Certificate> certificates;
    const std::atomic<uint32_t>* connections_open = nullptr; // io::ShardShared::connections
};

// The `route` label of requests that matched no route.
inline constexpr std::string_view unmatched_route_label = "(none)";

// Requests, refusals, bytes, durations, connections, TLS, dedup, ordering, rate limits, spool
// commits: the families the shards' counters feed, summed over shards.
void write_shard_metrics(Exposition& e, const config::Snapshot& snapshot,
                         std::span<const ShardView> shards, const SharedSources& shared);

// True when a shard's spool refuses writes now (healthz: degraded).
bool spool_refusing(std::span<const ShardView> shards);

} // namespace portcullis::admin
