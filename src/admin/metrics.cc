#include "portcullis/admin/metrics.hh"

#include "portcullis/admit/connection_counts.hh"
#include "portcullis/admit/rate_limit.hh"
#include "portcullis/base/reject_reason.hh"
#include "portcullis/io/shard.hh"
#include "portcullis/queue/dedup.hh"

#include <array>
#include <charconv>

namespace portcullis::admin {

namespace {

void append_number(std::string& out, uint64_t v) {
    std::array<char, 24> buf;
    auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
    out.append(buf.data(), r.ptr);
}

void append_number(std::string& out, int64_t v) {
    std::array<char, 24> buf;
    auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
    out.append(buf.data(), r.ptr);
}

// Fixed notation, the shortest that reads back the same ("0.0001", not "1e-04").
void append_number(std::string& out, double v) {
    std::array<char, 64> buf;
    auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v, std::chars_format::fixed);
    if (r.ec != std::errc{}) {
        r = std::to_chars(buf.data(), buf.data() + buf.size(), v); // huge: exponent notation
    }
    out.append(buf.data(), r.ptr);
}

// The `le` labels of the fixed buckets, in seconds, formatted once.
const std::array<std::string, base::histogram_buckets>& bucket_labels() {
    static const std::array<std::string, base::histogram_buckets> labels = [] {
        std::array<std::string, base::histogram_buckets> l;
        for (size_t i = 0; i < base::histogram_bounds_ns.size(); ++i) {
            append_number(l[i], static_cast<double>(base::histogram_bounds_ns[i]) / 1e9);
        }
        l.back() = "+Inf";
        return l;
    }();
    return labels;
}

} // namespace

void escape_label_value(std::string& out, std::string_view v) {
    for (char c : v) {
        switch (c) {
        case '\\':
            out += "\\\\";
            break;
        case '"':
            out += "\\\"";
            break;
        case '\n':
            out += "\\n";
            break;
        default:
            out += c;
        }
    }
}

void Exposition::family(std::string_view name, std::string_view type, std::string_view help) {
    _out.append("# HELP ").append(name).append(" ");
    // HELP text escapes backslash and line feed only.
    for (char c : help) {
        if (c == '\\') {
            _out += "\\\\";
        } else if (c == '\n') {
            _out += "\\n";
        } else {
            _out += c;
        }
    }
    _out.append("\n# TYPE ").append(name).append(" ").append(type).append("\n");
}

void Exposition::head(std::string_view name, std::string_view suffix,
                      std::initializer_list<Label> labels, Label extra) {
    _out.append(name).append(suffix);
    if (labels.size() == 0 && extra.name.empty()) {
        _out += ' ';
        return;
    }
    _out += '{';
    bool first = true;
    auto one = [&](const Label& l) {
        if (!first) {
            _out += ',';
        }
        first = false;
        _out.append(l.name).append("=\"");
        escape_label_value(_out, l.value);
        _out += '"';
    };
    for (const Label& l : labels) {
        one(l);
    }
    if (!extra.name.empty()) {
        one(extra);
    }
    _out += "} ";
}

void Exposition::sample(std::string_view name, std::initializer_list<Label> labels,
                        uint64_t value) {
    head(name, {}, labels);
    append_number(_out, value);
    _out += '\n';
}

void Exposition::sample(std::string_view name, std::initializer_list<Label> labels, int64_t value) {
    head(name, {}, labels);
    append_number(_out, value);
    _out += '\n';
}

void Exposition::sample(std::string_view name, std::initializer_list<Label> labels, double value) {
    head(name, {}, labels);
    append_number(_out, value);
    _out += '\n';
}

void Exposition::histogram(std::string_view name, std::initializer_list<Label> labels,
                           const base::HistogramTotal& h) {
    const auto& les = bucket_labels();
    uint64_t cumulative = 0;
    for (size_t i = 0; i < base::histogram_buckets; ++i) {
        cumulative += h.counts[i];
        head(name, "_bucket", labels, {"le", les[i]});
        append_number(_out, cumulative);
        _out += '\n';
    }
    head(name, "_sum", labels);
    append_number(_out, static_cast<double>(h.sum_ns) / 1e9);
    _out += '\n';
    head(name, "_count", labels);
    append_number(_out, cumulative);
    _out += '\n';
}

namespace {

template <typename F>
uint64_t sum(std::span<const ShardView> shards, F&& f) {
    uint64_t n = 0;
    for (const ShardView& s : shards) {
        n += f(s);
    }
    return n;
}

uint64_t load(const std::atomic<uint64_t>& a) {
    return a.load(std::memory_order_relaxed);
}

uint64_t shard_total(std::span<const ShardView> shards,
                     std::atomic<uint64_t> io::ShardStats::*counter) {
    return sum(shards, [&](const ShardView& s) { return load(s.stats->*counter); });
}

uint64_t ingest_total(std::span<const ShardView> shards,
                      std::atomic<uint64_t> ingest::Stats::*counter) {
    return sum(shards, [&](const ShardView& s) { return load(s.ingest->*counter); });
}

uint64_t rejected_total(std::span<const ShardView> shards, base::RejectReason r) {
    return sum(shards,
               [&](const ShardView& s) { return load(s.ingest->rejected[base::index(r)]); });
}

void write_routes(Exposition& e, const config::Snapshot& snap, std::span<const ShardView> shards) {
    // r < routes: the snapshot's route r; r == routes: requests that matched no route. A shard
    // that has not taken up a reload's new route yet has no block for it: it counts nothing.
    const size_t routes = snap.routes().size();
    auto name_of = [&](size_t r) {
        return r < routes ? std::string_view(snap.routes()[r].config->name) : unmatched_route_label;
    };
    auto block = [&](const ShardView& s, size_t r) -> const ingest::RouteStats* {
        return r < routes ? s.routes->find(snap.routes()[r].slot) : s.unmatched;
    };
    auto route_sum = [&](size_t r, auto&& f) {
        return sum(shards, [&](const ShardView& s) {
            const ingest::RouteStats* b = block(s, r);
            return b != nullptr ? f(*b) : uint64_t{0};
        });
    };

    e.family("portcullis_requests_total", "counter",
             "Requests answered on the public plane, by route and status code.");
    for (size_t r = 0; r <= routes; ++r) {
        for (size_t slot = 0; slot < ingest::status_slot_count; ++slot) {
            const uint64_t n =
                route_sum(r, [&](const ingest::RouteStats& rs) { return load(rs.answered[slot]); });
            if (n != 0) {
                e.sample("portcullis_requests_total",
                         {{"route", name_of(r)}, {"code", ingest::status_slot_label(slot)}}, n);
            }
        }
    }
    e.family("portcullis_rejections_total", "counter",
             "Webhooks refused, by route and reason code (SPEC section 3).");
    for (size_t r = 0; r <= routes; ++r) {
        for (size_t i = 0; i < base::reject_reason_count; ++i) {
            const uint64_t n =
                route_sum(r, [&](const ingest::RouteStats& rs) { return load(rs.rejected[i]); });
            if (n != 0) {
                e.sample("portcullis_rejections_total",
                         {{"route", name_of(r)},
                          {"reason", base::reject_reason_code(static_cast<base::RejectReason>(i))}},
                         n);
            }
        }
    }
    e.family("portcullis_enqueues_total", "counter",
             "Jobs enqueued through the control plane (POST /v1/routes/{route}/jobs) that a "
             "shard answered, by route and outcome.");
    for (size_t r = 0; r <= routes; ++r) {
        for (size_t i = 0; i < ingest::enqueue_outcome_count; ++i) {
            const uint64_t n =
                route_sum(r, [&](const ingest::RouteStats& rs) { return load(rs.enqueued[i]); });
            if (n != 0) {
                e.sample("portcullis_enqueues_total",
                         {{"route", name_of(r)}, {"outcome", ingest::enqueue_outcome_names[i]}}, n);
            }
        }
    }
    e.family("portcullis_received_body_bytes_total", "counter",
             "Body bytes received on the public plane, by route, before verification.");
    for (size_t r = 0; r < routes; ++r) {
        e.sample("portcullis_received_body_bytes_total", {{"route", name_of(r)}},
                 route_sum(r, [](const ingest::RouteStats& rs) { return load(rs.body_bytes); }));
    }
    e.family("portcullis_request_duration_seconds", "histogram",
             "Time from a request's complete head to its answer, by route.");
    for (size_t r = 0; r <= routes; ++r) {
        base::HistogramTotal h;
        for (const ShardView& s : shards) {
            if (const ingest::RouteStats* b = block(s, r)) {
                h.add(b->duration);
            }
        }
        if (r < routes || h.count() != 0) {
            e.histogram("portcullis_request_duration_seconds", {{"route", name_of(r)}}, h);
        }
    }
}

void counter(Exposition& e, std::string_view name, std::string_view help, uint64_t value) {
    e.family(name, "counter", help);
    e.sample(name, {}, value);
}

} // namespace

void write_shard_metrics(Exposition& e, const config::Snapshot& snapshot,
                         std::span<const ShardView> shards, const SharedSources& shared) {
    write_routes(e, snapshot, shards);
    using S = io::ShardStats;
    using I = ingest::Stats;
    counter(e, "portcullis_jobs_accepted_total", "Jobs made durable and answered 202.",
            ingest_total(shards, &I::jobs_queued));
    counter(e, "portcullis_handshakes_total",
            "Provider handshakes answered after verification (never enqueued).",
            ingest_total(shards, &I::handshakes));

    e.family("portcullis_connections_total", "counter",
             "Connections accepted on the public plane.");
    e.sample("portcullis_connections_total", {}, shard_total(shards, &S::accepted_connections));
    e.family("portcullis_connections_refused_total", "counter",
             "Connections refused at accept, by cause.");
    e.sample("portcullis_connections_refused_total", {{"cause", "max_connections"}},
             shard_total(shards, &S::refused_connections));
    e.sample("portcullis_connections_refused_total", {{"cause", "max_connections_per_ip"}},
             shard_total(shards, &S::refused_per_client));
    e.sample("portcullis_connections_refused_total", {{"cause", "proxy_protocol"}},
             shard_total(shards, &S::proxy_refused));
    e.family("portcullis_connections_closed_total", "counter",
             "Connections closed by the server for cause (timeouts, errors, overflows).");
    e.sample("portcullis_connections_closed_total", {{"cause", "header_timeout"}},
             shard_total(shards, &S::header_timeouts));
    e.sample("portcullis_connections_closed_total", {{"cause", "body_timeout"}},
             shard_total(shards, &S::body_timeouts));
    e.sample("portcullis_connections_closed_total", {{"cause", "connection_error"}},
             shard_total(shards, &S::connection_errors));
    e.sample("portcullis_connections_closed_total", {{"cause", "pipeline_overflow"}},
             shard_total(shards, &S::pipeline_overflows));
    if (shared.connections_open != nullptr) {
        e.family("portcullis_connections_open", "gauge", "Connections open on the public plane.");
        e.sample("portcullis_connections_open", {},
                 static_cast<uint64_t>(shared.connections_open->load(std::memory_order_relaxed)));
    }

    e.family("portcullis_tls_handshakes_total", "counter",
             "TLS handshakes on the public plane, by result and whether a ticket resumed them.");
    e.sample("portcullis_tls_handshakes_total", {{"result", "ok"}, {"resumed", "false"}},
             shard_total(shards, &S::tls_handshakes));
    e.sample("portcullis_tls_handshakes_total", {{"result", "ok"}, {"resumed", "true"}},
             shard_total(shards, &S::tls_resumed));
    e.sample("portcullis_tls_handshakes_total", {{"result", "failed"}, {"resumed", "false"}},
             shard_total(shards, &S::tls_handshake_failures));
    e.sample("portcullis_tls_handshakes_total", {{"result", "not_tls"}, {"resumed", "false"}},
             shard_total(shards, &S::tls_not_tls));
    e.sample("portcullis_tls_handshakes_total", {{"result", "timeout"}, {"resumed", "false"}},
             shard_total(shards, &S::tls_handshake_timeouts));
    e.sample("portcullis_tls_handshakes_total", {{"result", "aborted"}, {"resumed", "false"}},
             shard_total(shards, &S::tls_handshake_aborted));
    counter(e, "portcullis_tls_record_errors_total",
            "TLS connections closed for a bad record after the handshake.",
            shard_total(shards, &S::tls_record_errors));
    if (!shared.certificates.empty()) {
        e.family("portcullis_certificate_expiry_timestamp_seconds", "gauge",
                 "When each TLS certificate expires (Unix time), by its first name.");
        for (const SharedSources::Certificate& c : shared.certificates) {
            e.sample("portcullis_certificate_expiry_timestamp_seconds", {{"name", c.name}},
                     c.not_after->load(std::memory_order_relaxed));
        }
    }

    counter(e, "portcullis_dedup_duplicates_total", "Requests answered 200 duplicate.",
            ingest_total(shards, &I::duplicates));
    counter(e, "portcullis_dedup_conflicts_total",
            "Requests answered 409: a known dedup key with another body.",
            rejected_total(shards, base::RejectReason::conflict));
    counter(e, "portcullis_dedup_unkeyed_total",
            "Requests on a dedup route without the key (accepted, not deduplicated).",
            ingest_total(shards, &I::dedup_unkeyed));
    counter(e, "portcullis_dedup_in_flight_total",
            "Requests answered 503 while the first copy was being written.",
            ingest_total(shards, &I::dedup_in_flight));
    counter(e, "portcullis_dedup_evictions_total",
            "Dedup keys forgotten before their window ended (table full).",
            shared.dedup != nullptr ? shared.dedup->table().evictions() : 0);
    counter(e, "portcullis_ordering_stale_total", "Requests answered 409 stale.",
            rejected_total(shards, base::RejectReason::stale));
    counter(e, "portcullis_ordering_unkeyed_total",
            "Requests on an ordering route without key or timestamp (accepted).",
            ingest_total(shards, &I::ordering_unkeyed));
    counter(e, "portcullis_ordering_evictions_total", "Ordering keys forgotten (table full).",
            shared.ordering != nullptr ? shared.ordering->table().evictions() : 0);
    counter(e, "portcullis_rate_limited_total", "Requests answered 429.",
            rejected_total(shards, base::RejectReason::rate_limited));
    counter(e, "portcullis_rate_limit_evictions_total",
            "Rate-limit keys evicted from a full bucket (they get a full burst again).",
            shared.limiter != nullptr ? shared.limiter->evictions() : 0);
    counter(e, "portcullis_log_lines_dropped_total",
            "Log lines the shards dropped rather than wait for the log.",
            shard_total(shards, &S::log_lines_dropped));

    e.family("portcullis_spool_commit_duration_seconds", "histogram",
             "Time of the spool's group commits, from submission to durable (write + fdatasync).");
    base::HistogramTotal commits;
    for (const ShardView& s : shards) {
        commits.add(s.spool->commit_duration);
    }
    e.histogram("portcullis_spool_commit_duration_seconds", {}, commits);
    e.family("portcullis_spool_refusing", "gauge",
             "1 while a shard's spool refuses writes after a disk error (answers 503).");
    e.sample("portcullis_spool_refusing", {}, uint64_t{spool_refusing(shards) ? 1U : 0U});
}

bool spool_refusing(std::span<const ShardView> shards) {
    for (const ShardView& s : shards) {
        if (s.spool->refusing.load(std::memory_order_relaxed)) {
            return true;
        }
    }
    return false;
}

} // namespace portcullis::admin
