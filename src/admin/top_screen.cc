#include "portcullis/admin/top_screen.hh"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace portcullis::admin {

namespace {

using Style = ScreenLine::Style;

std::string printf_string(const char* format, double v) {
    char buf[64];
    const int n = std::snprintf(buf, sizeof buf, format, v);
    return std::string(buf, n > 0 ? std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1) : 0);
}

std::string count_text(double v) {
    if (!std::isfinite(v)) {
        return std::isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf");
    }
    if (std::fabs(v) >= 1e15) {
        return printf_string("%.3g", v);
    }
    return printf_string("%.0f", v);
}

std::string optional_count(const std::optional<double>& v) {
    return v ? count_text(*v) : "-";
}

// Right-aligns s in a field of `width` (longer text is kept whole: the line is cut at the end).
std::string right(const std::string& s, size_t width) {
    return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}

std::string left(const std::string& s, size_t width) {
    return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

// Only printable ASCII reaches the terminal; the line is cut at `width`.
ScreenLine finish(std::string text, Style style, size_t width) {
    for (char& c : text) {
        if (c < 0x20 || c > 0x7e) {
            c = '?';
        }
    }
    if (text.size() > width) {
        text.resize(width);
    }
    while (!text.empty() && text.back() == ' ') {
        text.pop_back();
    }
    return {std::move(text), style};
}

// The width of the name column: the longest name, within bounds.
template <typename Rows>
size_t name_width(const Rows& rows, size_t heading) {
    size_t w = heading;
    for (const auto& r : rows) {
        w = std::max(w, r.name.size());
    }
    return std::min<size_t>(w, 32);
}

std::string cut_name(const std::string& name, size_t width) {
    return name.size() <= width ? name : name.substr(0, width - 1) + "~";
}

std::string reasons_text(const TopView::Route& r) {
    std::string out;
    size_t shown = 0;
    for (const auto& reason : r.reasons) {
        if (reason.total <= 0) {
            continue;
        }
        if (shown == 3) {
            out += ", ...";
            break;
        }
        if (shown > 0) {
            out += ", ";
        }
        out += reason.reason + " " + count_text(reason.total);
        if (reason.per_s > 0) {
            out += " (" + format_rate_value(reason.per_s) + "/s)";
        }
        ++shown;
    }
    return out.empty() ? "-" : out;
}

// rows cut to `budget` lines, the last one then saying how many more there are.
void append_fitted(std::vector<std::string>& out, std::vector<std::string> rows, size_t budget) {
    if (rows.size() > budget) {
        const size_t kept = budget == 0 ? 0 : budget - 1;
        const size_t more = rows.size() - kept;
        rows.resize(kept);
        if (budget > 0) {
            rows.push_back("  ... " + std::to_string(more) + " more");
        }
    }
    out.insert(out.end(), rows.begin(), rows.end());
}

} // namespace

std::string format_rate_value(double per_s) {
    if (!std::isfinite(per_s)) {
        return count_text(per_s);
    }
    if (per_s >= 1e6) {
        return printf_string("%.3g", per_s);
    }
    return printf_string(per_s >= 1000 ? "%.0f" : "%.1f", per_s);
}

std::string format_bytes(double bytes) {
    if (!std::isfinite(bytes) || bytes < 0) {
        return count_text(bytes);
    }
    static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    size_t u = 0;
    while (bytes >= 1024 && u + 1 < std::size(units)) {
        bytes /= 1024;
        ++u;
    }
    if (u == 0) {
        return printf_string("%.0f", bytes) + "B";
    }
    return printf_string(bytes >= 100 ? "%.0f" : "%.1f", bytes) + units[u];
}

std::string format_age(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) {
        return "-";
    }
    const auto s = static_cast<uint64_t>(std::min(seconds, 1e12));
    char buf[48];
    if (s < 60) {
        std::snprintf(buf, sizeof buf, "%llus", static_cast<unsigned long long>(s));
    } else if (s < 3600) {
        std::snprintf(buf, sizeof buf, "%llum%02llus", static_cast<unsigned long long>(s / 60),
                      static_cast<unsigned long long>(s % 60));
    } else if (s < 86400) {
        std::snprintf(buf, sizeof buf, "%lluh%02llum", static_cast<unsigned long long>(s / 3600),
                      static_cast<unsigned long long>(s / 60 % 60));
    } else {
        std::snprintf(buf, sizeof buf, "%llud%02lluh", static_cast<unsigned long long>(s / 86400),
                      static_cast<unsigned long long>(s / 3600 % 24));
    }
    return buf;
}

std::string format_latency(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) {
        return "-";
    }
    if (seconds < 1e-3) {
        return printf_string("%.0f", seconds * 1e6) + "us";
    }
    if (seconds < 1) {
        return printf_string(seconds < 0.1 ? "%.1f" : "%.0f", seconds * 1e3) + "ms";
    }
    return printf_string("%.2f", seconds) + "s";
}

std::vector<ScreenLine> render_screen(const ScreenInput& in, size_t width, size_t height) {
    std::vector<ScreenLine> lines;
    const TopView* v = in.view;

    std::string title = "portcullis";
    if (v != nullptr && !v->version.empty()) {
        title += " " + v->version;
    }
    if (v != nullptr && v->uptime_s) {
        title += "  up " + format_age(static_cast<double>(*v->uptime_s));
    }
    title += "  " + in.url;
    if (!in.clock.empty()) {
        title += "  " + in.clock;
    }
    if (in.keys_hint) {
        title += "  (q: quit)";
    }
    lines.push_back(finish(title, Style::title, width));
    if (!in.status.empty()) {
        lines.push_back(finish(in.status, Style::alert, width));
    }
    if (v == nullptr) {
        if (height != 0 && lines.size() > height) {
            lines.resize(height);
        }
        return lines;
    }

    std::string summary = "connections " + optional_count(v->connections_open) + " open";
    summary += "  |  TLS handshakes/s";
    if (v->tls_per_s.empty()) {
        summary += " -";
    }
    for (const auto& [result, per_s] : v->tls_per_s) {
        summary += " " + result + " " + format_rate_value(per_s);
    }
    summary += "  |  spool " + (v->spool_bytes ? format_bytes(*v->spool_bytes) : "-") + ", " +
               (v->spool_free_bytes ? format_bytes(*v->spool_free_bytes) : "-") + " free";
    if (v->spool_refusing) {
        summary += ", REFUSING WRITES";
    }
    lines.push_back(finish(summary, v->spool_refusing ? Style::alert : Style::plain, width));

    // Routes.
    const size_t rw = name_width(v->routes, 5);
    std::vector<std::string> route_rows;
    for (const auto& r : v->routes) {
        std::string row = left(cut_name(r.name, rw), rw);
        row += right(format_rate_value(r.requests_per_s), 8);
        row += right(format_rate_value(r.per_s_2xx), 7);
        row += right(format_rate_value(r.per_s_4xx), 7);
        row += right(format_rate_value(r.per_s_5xx), 7);
        row += right(count_text(r.requests), 10);
        row += right(optional_count(r.queued), 8);
        row += right(optional_count(r.leased), 7);
        row += right(optional_count(r.dead), 7);
        row += right(r.oldest_age_s ? format_age(*r.oldest_age_s) : "-", 8);
        row += "  " + reasons_text(r);
        route_rows.push_back(std::move(row));
    }
    std::string route_heading = left("ROUTE", rw) + right("REQ/S", 8) + right("2XX/S", 7) +
                                right("4XX/S", 7) + right("5XX/S", 7) + right("REQUESTS", 10) +
                                right("QUEUED", 8) + right("LEASED", 7) + right("DEAD", 7) +
                                right("OLDEST", 8) + "  REFUSALS (total, rate)";

    // Sinks.
    const size_t sw = name_width(v->sinks, 4);
    std::vector<std::string> sink_rows;
    for (const auto& s : v->sinks) {
        std::string row = left(cut_name(s.name, sw), sw);
        row += right(s.breaker_open ? "open" : "closed", 9);
        row += right(format_rate_value(s.delivered_per_s), 13);
        row += right(format_rate_value(s.retried_per_s), 11);
        row += right(count_text(s.delivered), 11);
        row += right(count_text(s.dead), 7);
        row += right(s.p99_s ? format_latency(*s.p99_s) : "-", 9);
        sink_rows.push_back(std::move(row));
    }
    std::string sink_heading = left("SINK", sw) + right("BREAKER", 9) + right("DELIVERED/S", 13) +
                               right("RETRIED/S", 11) + right("DELIVERED", 11) + right("DEAD", 7) +
                               right("P99", 9);

    std::vector<std::string> event_rows;
    const bool pane = in.events_state == ScreenInput::Events::live;
    if (pane) {
        if (in.events == nullptr || in.events->empty()) {
            event_rows.push_back("(none since top started)");
        } else {
            // The newest first, like a log read from the top.
            for (auto it = in.events->rbegin(); it != in.events->rend(); ++it) {
                event_rows.push_back(*it);
            }
        }
    }

    // Lines beside the rows: blank + heading per section.
    const size_t fixed = lines.size() + 2 + (sink_rows.empty() ? 0 : 2) + (pane ? 2 : 0);
    size_t route_budget = route_rows.size();
    size_t sink_budget = sink_rows.size();
    size_t event_budget = event_rows.size();
    if (height != 0) {
        const size_t avail = height > fixed ? height - fixed : 0;
        // Routes first, keeping room for two sinks; then sinks; events get what is left.
        route_budget =
            std::min(route_rows.size(),
                     std::max<size_t>(
                         avail > 0 ? 1 : 0,
                         avail - std::min<size_t>(sink_rows.size(), std::min<size_t>(avail, 2))));
        sink_budget = std::min(sink_rows.size(), avail - route_budget);
        event_budget = std::min(event_rows.size(), avail - route_budget - sink_budget);
    }

    std::vector<std::string> body;
    lines.push_back(finish("", Style::plain, width));
    lines.push_back(finish(route_heading, Style::heading, width));
    append_fitted(body, std::move(route_rows), route_budget);
    for (auto& row : body) {
        lines.push_back(finish(std::move(row), Style::plain, width));
    }
    if (!sink_rows.empty()) {
        lines.push_back(finish("", Style::plain, width));
        lines.push_back(finish(sink_heading, Style::heading, width));
        for (size_t i = 0; i < v->sinks.size() && i < sink_budget; ++i) {
            const bool last_cut = i + 1 == sink_budget && sink_budget < v->sinks.size();
            const std::string text =
                last_cut ? "  ... " + std::to_string(v->sinks.size() - i) + " more" : sink_rows[i];
            lines.push_back(finish(
                text, v->sinks[i].breaker_open && !last_cut ? Style::alert : Style::plain, width));
        }
    }
    if (pane) {
        lines.push_back(finish("", Style::plain, width));
        lines.push_back(finish("RECENT EVENTS", Style::heading, width));
        body.clear();
        append_fitted(body, std::move(event_rows), event_budget);
        for (auto& row : body) {
            lines.push_back(finish(std::move(row), Style::plain, width));
        }
    }
    if (height != 0 && lines.size() > height) {
        lines.resize(height);
    }
    return lines;
}

std::string screen_text(const std::vector<ScreenLine>& lines) {
    std::string out;
    for (const ScreenLine& l : lines) {
        out += l.text;
        out.push_back('\n');
    }
    return out;
}

} // namespace portcullis::admin
