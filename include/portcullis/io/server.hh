// The process around the shards: listening sockets, one pinned thread per shard, signals.
//
//   int status = io::serve(std::move(snapshot), path);   // returns after SIGTERM/SIGINT drained
#pragma once

#include "portcullis/config/snapshot.hh"

#include <memory>
#include <string>
#include <vector>

namespace portcullis::io {

// Runs the appliance until SIGTERM or SIGINT has drained it. Returns the process exit status:
// 0 after a clean drain, 1 when it could not start (io_uring unavailable, a listener or the
// spool failed), each with one log line saying why. SIGHUP (and POST /v1/reload) loads `path`
// again (io/reload.hh).
int serve(std::unique_ptr<config::Snapshot> snapshot, const std::string& path);

// Creates `count` SO_REUSEPORT listening sockets bound to address (port 0: the kernel picks one
// port, shared by all). Returns the fds, or an empty vector with error set.
std::vector<int> open_listeners(const config::ListenAddress& address, unsigned count,
                                std::string& error);

// The host:port a listening socket is bound to ("127.0.0.1:8080").
std::string bound_address(int fd);

// The cores this process may run on (sched_getaffinity), at least 1.
unsigned usable_cores();

} // namespace portcullis::io
