#include "portcullis/io/fd_budget.hh"

#include "portcullis/base/log.hh"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <limits>

namespace portcullis::io {

namespace {

std::string limit_text(uint64_t v) {
    return v == std::numeric_limits<uint64_t>::max() ? "unlimited" : std::to_string(v);
}

} // namespace

std::string FdBudget::describe() const {
    return std::to_string(public_connections) + " public connections + " +
           std::to_string(admin_connections) + " control-plane connections + " +
           std::to_string(spool) + " spool files + " +
           (sinks == 0 ? std::string() : std::to_string(sinks) + " sink descriptors + ") +
           std::to_string(base + shards + control_plane) + " others";
}

FdBudget fd_budget(const config::Config& cfg, unsigned shards, uint64_t segments) {
    FdBudget b;
    b.base = fd_base_allowance;
    // Each shard binds its own socket on every address (SO_REUSEPORT), TLS or plain.
    const uint64_t addresses =
        cfg.server.listen.size() + (cfg.server.tls ? cfg.server.tls->listen.size() : 0);
    b.shards = uint64_t{shards} * (addresses + fd_per_shard);
    b.public_connections = cfg.server.max_connections;
    if (cfg.admin.listen) {
        b.control_plane = fd_control_plane;
        b.admin_connections = uint64_t{cfg.admin.max_connections} + 1;
        b.spool = segments + fd_spool_reserve;
    }
    for (const config::SinkConfig& s : cfg.sinks) {
        if (s.http) {
            b.sinks += s.http->concurrency;
        } else if (s.exec) {
            b.sinks += uint64_t{s.exec->concurrency} * fd_per_exec_child;
        }
    }
    return b;
}

FdFit fit_fd_limit(const FdBudget& needed, FdLimit limit) {
    FdFit fit;
    const uint64_t n = needed.total();
    if (n <= limit.soft) {
        return fit;
    }
    if (n <= limit.hard) {
        fit.raise_to = limit.hard;
        return fit;
    }
    fit.error = "file descriptors: the configuration needs " + std::to_string(n) + " (" +
                needed.describe() + ") but RLIMIT_NOFILE allows " + limit_text(limit.soft) +
                " (hard limit " + limit_text(limit.hard) +
                "): raise the limit (ulimit -n, systemd LimitNOFILE=) or lower "
                "server.max_connections, admin.max_connections or a sink's concurrency";
    return fit;
}

FdLimit current_fd_limit() {
    rlimit r{};
    if (getrlimit(RLIMIT_NOFILE, &r) != 0) {
        return {};
    }
    auto value = [](rlim_t v) {
        return v == RLIM_INFINITY ? std::numeric_limits<uint64_t>::max() : uint64_t{v};
    };
    return {value(r.rlim_cur), value(r.rlim_max)};
}

std::string apply_fd_budget(const FdBudget& needed) {
    const FdLimit limit = current_fd_limit();
    const FdFit fit = fit_fd_limit(needed, limit);
    if (!fit.error.empty()) {
        return fit.error;
    }
    uint64_t soft = limit.soft;
    if (fit.raise_to) {
        rlimit r{};
        getrlimit(RLIMIT_NOFILE, &r);
        r.rlim_cur = r.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &r) != 0) {
            return "file descriptors: cannot raise RLIMIT_NOFILE from " + limit_text(limit.soft) +
                   " to " + limit_text(*fit.raise_to) + ": " + std::strerror(errno);
        }
        soft = *fit.raise_to;
        base::LogLine(base::Level::info, "file descriptors: soft limit raised")
            .field("from", static_cast<int64_t>(limit.soft))
            .field("to", limit_text(soft))
            .field("needed", static_cast<int64_t>(needed.total()))
            .write();
    }
    base::LogLine(base::Level::info, "file descriptors")
        .field("needed", static_cast<int64_t>(needed.total()))
        .field("public_connections", static_cast<int64_t>(needed.public_connections))
        .field("admin_connections", static_cast<int64_t>(needed.admin_connections))
        .field("spool", static_cast<int64_t>(needed.spool))
        .field("limit", limit_text(soft))
        .write();
    return {};
}

} // namespace portcullis::io
