// `portcullis top`'s model: what it reads of one /metrics scrape (Scrape), and what it shows,
// made from two scrapes and the time between them (TopView): rates per second, totals and
// states. No I/O; the clock is the caller's.
//
//   Scrape before, now;
//   if (!read_scrape(body, now, error)) { ... }      // error: "line 12: bad_value"
//   now.taken_ns = base::mono_ns();
//   TopView v = make_view(&before, now, base::unix_ns() / base::ns_per_s);
//   // v.routes[i].requests_per_s, v.sinks[j].p99_s, ...
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portcullis::admin {

// Cumulative histogram buckets: (upper bound `le`, observations <= le), in increasing le,
// +Inf last when present.
using HistogramBuckets = std::vector<std::pair<double, double>>;

struct Scrape {
    struct Route {
        std::map<std::string, double> codes;    // `code` label ("202", "4xx") -> answers
        std::map<std::string, double> refusals; // `reason` -> refused webhooks
        std::optional<double> queued, leased, dead;
        std::optional<double> oldest_age_s; // portcullis_jobs_oldest_age_seconds, when served
    };
    struct Sink {
        std::map<std::string, double> outcomes; // delivered, retried, dead, refused, unreadable
        bool breaker_open = false;
        HistogramBuckets duration;
    };
    std::map<std::string, Route> routes;
    std::map<std::string, Sink> sinks;
    std::map<std::string, double> tls_handshakes; // `result` -> handshakes, resumed or not
    std::optional<double> connections_open;
    std::optional<double> spool_bytes, spool_free_bytes, spool_refusing;
    std::optional<double> start_time_s; // Unix time
    std::string version;                // portcullis_build_info's label
    int64_t taken_ns = 0;               // monotonic time of the scrape (the caller's)
};

// Reads a /metrics body into out (which it clears first). False, with error "line N: code",
// when the body is not the text format (see MetricsTextReader); families top does not show are
// skipped.
bool read_scrape(std::string_view body, Scrape& out, std::string& error);

// The q-quantile (0..1) of a cumulative histogram, interpolated linearly inside the bucket that
// holds it as Prometheus's histogram_quantile does (from 0 for the first bucket). nullopt
// without observations. When it falls in +Inf, the largest finite bound (a floor).
std::optional<double> histogram_quantile(double q, const HistogramBuckets& buckets);

struct TopView {
    struct Route {
        std::string name;
        double requests_per_s = 0;
        double per_s_2xx = 0, per_s_4xx = 0, per_s_5xx = 0;
        double requests = 0; // answers since the server started
        double refused = 0;  // refusals since the server started
        double refused_per_s = 0;
        // Reasons, the fastest-growing first, then the most frequent: (reason, total, per s).
        struct Reason {
            std::string reason;
            double total = 0;
            double per_s = 0;
        };
        std::vector<Reason> reasons;
        std::optional<double> queued, leased, dead, oldest_age_s;
    };
    struct Sink {
        std::string name;
        bool breaker_open = false;
        double delivered_per_s = 0, retried_per_s = 0;
        double delivered = 0, dead = 0;
        // Of the attempts between the two scrapes when there were any, else of all so far.
        std::optional<double> p99_s;
    };
    std::vector<Route> routes; // by name, the unmatched "(none)" last
    std::vector<Sink> sinks;   // by name
    // TLS handshakes per second by result; empty when the server counted none at all.
    std::vector<std::pair<std::string, double>> tls_per_s;
    double tls_total = 0;
    std::optional<double> connections_open;
    std::optional<double> spool_bytes, spool_free_bytes;
    bool spool_refusing = false;
    std::optional<int64_t> uptime_s;
    std::string version;
    double interval_s = 0; // between the two scrapes; 0: one scrape, no rates yet
};

// The view of `now`, with rates against `before` (null: the first scrape, rates 0). A counter
// that went down (the server restarted) counts from 0, as Prometheus's rate() does.
TopView make_view(const Scrape* before, const Scrape& now, int64_t now_unix_s);

} // namespace portcullis::admin
