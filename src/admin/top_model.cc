#include "portcullis/admin/top_model.hh"

#include "portcullis/admin/metrics_text.hh"

#include <algorithm>
#include <cmath>
#include <limits>

namespace portcullis::admin {

bool read_scrape(std::string_view body, Scrape& out, std::string& error) {
    const int64_t taken = out.taken_ns;
    out = Scrape{};
    out.taken_ns = taken;
    MetricsTextReader reader(body);
    MetricLine m;
    std::string route, sink, key;
    while (reader.next(m)) {
        if (m.kind != MetricLine::Kind::sample) {
            continue;
        }
        const std::string_view name = m.name;
        // Each family top shows, by the labels the control plane writes (README, "Metrics").
        if (name == "portcullis_requests_total") {
            if (m.label("route", route) && m.label("code", key)) {
                out.routes[route].codes[key] += m.value;
            }
        } else if (name == "portcullis_rejections_total") {
            if (m.label("route", route) && m.label("reason", key)) {
                out.routes[route].refusals[key] += m.value;
            }
        } else if (name == "portcullis_jobs") {
            if (m.label("route", route) && m.label("state", key)) {
                Scrape::Route& r = out.routes[route];
                if (key == "queued") {
                    r.queued = m.value;
                } else if (key == "leased") {
                    r.leased = m.value;
                } else if (key == "dead") {
                    r.dead = m.value;
                }
            }
        } else if (name == "portcullis_jobs_oldest_age_seconds") {
            if (m.label("route", route)) {
                out.routes[route].oldest_age_s = m.value;
            }
        } else if (name == "portcullis_deliveries_total") {
            if (m.label("sink", sink) && m.label("outcome", key)) {
                out.sinks[sink].outcomes[key] += m.value;
            }
        } else if (name == "portcullis_sink_breaker_open") {
            if (m.label("sink", sink)) {
                out.sinks[sink].breaker_open = m.value != 0;
            }
        } else if (name == "portcullis_delivery_duration_seconds_bucket") {
            double le = 0;
            if (m.label("sink", sink) && m.label("le", key) && parse_metric_value(key, le)) {
                out.sinks[sink].duration.emplace_back(le, m.value);
            }
        } else if (name == "portcullis_tls_handshakes_total") {
            if (m.label("result", key)) {
                out.tls_handshakes[key] += m.value;
            }
        } else if (name == "portcullis_connections_open") {
            out.connections_open = m.value;
        } else if (name == "portcullis_spool_bytes") {
            out.spool_bytes = m.value;
        } else if (name == "portcullis_spool_free_bytes") {
            out.spool_free_bytes = m.value;
        } else if (name == "portcullis_spool_refusing") {
            out.spool_refusing = m.value;
        } else if (name == "portcullis_start_time_seconds") {
            out.start_time_s = m.value;
        } else if (name == "portcullis_build_info") {
            m.label("version", out.version);
        }
    }
    if (!reader.error().empty()) {
        error = "line " + std::to_string(reader.line_number()) + ": " + std::string(reader.error());
        return false;
    }
    for (auto& [_, s] : out.sinks) {
        std::stable_sort(s.duration.begin(), s.duration.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
    }
    return true;
}

std::optional<double> histogram_quantile(double q, const HistogramBuckets& buckets) {
    if (buckets.empty() || !(q >= 0 && q <= 1)) {
        return std::nullopt;
    }
    const double total = buckets.back().second;
    if (!(total > 0)) {
        return std::nullopt;
    }
    const double rank = q * total;
    double lower = 0;
    double below = 0;
    double largest_finite = 0;
    for (const auto& [le, count] : buckets) {
        if (std::isinf(le)) {
            // Past every finite bound: the largest one is all that is known.
            return largest_finite;
        }
        largest_finite = le;
        if (count >= rank) {
            const double in_bucket = count - below;
            if (in_bucket <= 0) {
                return le;
            }
            return lower + (le - lower) * (rank - below) / in_bucket;
        }
        lower = le;
        below = count;
    }
    return largest_finite;
}

namespace {

// A counter's increase between two scrapes; from 0 when it went down (a restart).
double increase(double before, double now) {
    return now >= before ? now - before : now;
}

double lookup(const std::map<std::string, double>& m, const std::string& key) {
    auto it = m.find(key);
    return it == m.end() ? 0 : it->second;
}

double sum(const std::map<std::string, double>& m) {
    double total = 0;
    for (const auto& [_, v] : m) {
        total += v;
    }
    return total;
}

} // namespace

TopView make_view(const Scrape* before, const Scrape& now, int64_t now_unix_s) {
    TopView v;
    v.version = now.version;
    if (now.start_time_s && std::isfinite(*now.start_time_s)) {
        v.uptime_s = std::max<int64_t>(0, now_unix_s - static_cast<int64_t>(*now.start_time_s));
    }
    v.connections_open = now.connections_open;
    v.spool_bytes = now.spool_bytes;
    v.spool_free_bytes = now.spool_free_bytes;
    v.spool_refusing = now.spool_refusing.value_or(0) != 0;
    const double elapsed = before != nullptr && now.taken_ns > before->taken_ns
                               ? static_cast<double>(now.taken_ns - before->taken_ns) / 1e9
                               : 0;
    v.interval_s = elapsed;
    auto rate = [&](double was, double is) {
        return elapsed > 0 ? increase(was, is) / elapsed : 0;
    };

    static const Scrape::Route no_route;
    for (const auto& [name, r] : now.routes) {
        const Scrape::Route* prev = &no_route;
        if (before != nullptr) {
            auto it = before->routes.find(name);
            prev = it == before->routes.end() ? &no_route : &it->second;
        }
        TopView::Route row;
        row.name = name;
        for (const auto& [code, n] : r.codes) {
            const double per_s = rate(lookup(prev->codes, code), n);
            row.requests += n;
            row.requests_per_s += per_s;
            switch (code.empty() ? '\0' : code.front()) {
            case '2':
                row.per_s_2xx += per_s;
                break;
            case '4':
                row.per_s_4xx += per_s;
                break;
            case '5':
                row.per_s_5xx += per_s;
                break;
            default:
                break;
            }
        }
        for (const auto& [reason, n] : r.refusals) {
            const double per_s = rate(lookup(prev->refusals, reason), n);
            row.refused += n;
            row.refused_per_s += per_s;
            row.reasons.push_back({reason, n, per_s});
        }
        std::stable_sort(row.reasons.begin(), row.reasons.end(), [](const auto& a, const auto& b) {
            return a.per_s != b.per_s ? a.per_s > b.per_s : a.total > b.total;
        });
        row.queued = r.queued;
        row.leased = r.leased;
        row.dead = r.dead;
        row.oldest_age_s = r.oldest_age_s;
        v.routes.push_back(std::move(row));
    }
    // The map orders by name; the requests that matched no route go last.
    std::stable_partition(v.routes.begin(), v.routes.end(),
                          [](const TopView::Route& r) { return r.name != "(none)"; });

    static const Scrape::Sink no_sink;
    for (const auto& [name, s] : now.sinks) {
        const Scrape::Sink* prev = &no_sink;
        if (before != nullptr) {
            auto it = before->sinks.find(name);
            prev = it == before->sinks.end() ? &no_sink : &it->second;
        }
        TopView::Sink row;
        row.name = name;
        row.breaker_open = s.breaker_open;
        row.delivered = lookup(s.outcomes, "delivered");
        row.dead = lookup(s.outcomes, "dead");
        row.delivered_per_s = rate(lookup(prev->outcomes, "delivered"), row.delivered);
        row.retried_per_s = rate(lookup(prev->outcomes, "retried"), lookup(s.outcomes, "retried"));
        // The attempts of the interval when the buckets line up and some came, else all.
        HistogramBuckets recent;
        if (elapsed > 0 && prev->duration.size() == s.duration.size()) {
            for (size_t i = 0; i < s.duration.size(); ++i) {
                if (prev->duration[i].first != s.duration[i].first) {
                    recent.clear();
                    break;
                }
                recent.emplace_back(s.duration[i].first,
                                    increase(prev->duration[i].second, s.duration[i].second));
            }
        }
        row.p99_s = histogram_quantile(0.99, recent);
        if (!row.p99_s) {
            row.p99_s = histogram_quantile(0.99, s.duration);
        }
        v.sinks.push_back(std::move(row));
    }

    v.tls_total = sum(now.tls_handshakes);
    if (v.tls_total > 0) {
        for (const auto& [result, n] : now.tls_handshakes) {
            const double was = before != nullptr ? lookup(before->tls_handshakes, result) : 0;
            v.tls_per_s.emplace_back(result, rate(was, n));
        }
    }
    return v;
}

} // namespace portcullis::admin
