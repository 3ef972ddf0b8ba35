// The process's file descriptors, budgeted at start-up so that no plane can take what another
// needs: the public plane's server.max_connections, the control plane's admin.max_connections
// (capped on its own, so that no amount of control-plane traffic reaches the public plane's
// share), the spool's files and the sinks' connections and children, all under RLIMIT_NOFILE.
//
//   FdBudget need = fd_budget(cfg, shards, segments_on_disk);
//   FdFit fit = fit_fd_limit(need.total(), current_fd_limit());
//   if (!fit.error.empty()) { refuse to start; }
//   if (fit.raise_to) { setrlimit(soft = *fit.raise_to); }
#pragma once

#include "portcullis/config/config.hh"

#include <cstdint>
#include <optional>
#include <string>

namespace portcullis::io {

// Descriptors that are not connections or spool segments: stdio, the spool lock, what the
// libraries open, a file being opened or renamed.
inline constexpr uint64_t fd_base_allowance = 32;
// Per shard, on top of its listening sockets: its ring, its doorbell (an eventfd), its open
// segment and the next one prepared (one descriptor each per group commit in flight,
// queue::SpoolWriter::max_inflight, checked there), the shard folder (held, and once more while a
// segment is created in place), and room for sockets accepted past server.max_connections that
// wait in the ring for their close.
inline constexpr uint64_t fd_per_shard = 24;
// The control plane's own: its ring, its listener, the ledger, its doorbell (an eventfd), and a
// file it may open for a moment (the ledger's compaction, a folder to fsync).
inline constexpr uint64_t fd_control_plane = 6;
// The control plane keeps every segment of the spool open; segments created while serving take
// descriptors from this reserve (256 segments: 16 GiB at the default spool.segment_size).
inline constexpr uint64_t fd_spool_reserve = 256;
// A running exec child holds 4 in portcullis (pidfd, stdin, stdout, stderr) and 3 more while it
// starts (the child's pipe ends) plus its headers file: 8 (deliver/exec_runner.hh).
inline constexpr uint64_t fd_per_exec_child = 8;

struct FdBudget {
    uint64_t base = 0;               // fd_base_allowance
    uint64_t shards = 0;             // (plain and TLS listen addresses + fd_per_shard) per shard
    uint64_t public_connections = 0; // server.max_connections
    uint64_t control_plane = 0;      // fd_control_plane
    // admin.max_connections, plus one: a connection past the cap is accepted before it is
    // closed.
    uint64_t admin_connections = 0;
    uint64_t spool = 0; // the segments on disk at start + fd_spool_reserve
    // Push delivery: an http sink's connections (its concurrency) and an exec sink's children
    // (fd_per_exec_child each, times its concurrency).
    uint64_t sinks = 0;

    uint64_t total() const {
        return base + shards + public_connections + control_plane + admin_connections + spool +
               sinks;
    }
    // "10000 public connections + 257 control-plane connections + 256 spool files + 64 sink
    // descriptors + 59 others" (the sinks' part only when there are sinks).
    std::string describe() const;
};

FdBudget fd_budget(const config::Config& cfg, unsigned shards, uint64_t segments);

struct FdLimit {
    uint64_t soft = 0;
    uint64_t hard = 0; // UINT64_MAX for RLIM_INFINITY
};

struct FdFit {
    std::optional<uint64_t> raise_to; // set when the soft limit must be raised: to the hard limit
    std::string error;                // set when even the hard limit is too low
};

// Whether `needed` descriptors fit under `limit`. When the soft limit is too low and the hard one
// is high enough, the soft limit is raised to the hard one (the usual practice of servers, and
// room for what the budget cannot foresee, such as spool growth past the reserve).
FdFit fit_fd_limit(const FdBudget& needed, FdLimit limit);

// getrlimit(RLIMIT_NOFILE).
FdLimit current_fd_limit();

// Checks the budget and raises the soft limit if it has to, logging what it did. Returns "" or
// the error, which names the figures, the limit and the keys to change.
std::string apply_fd_budget(const FdBudget& needed);

} // namespace portcullis::io
