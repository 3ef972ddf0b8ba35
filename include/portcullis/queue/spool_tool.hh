// The offline spool tools behind `portcullis spool verify --dir DIR` and
// `portcullis spool dump --dir DIR [--route R]`. They only read the spool (a running appliance
// may be writing it; a record in flight then shows as a torn tail) and write to the streams
// given, so that tests can capture them.
//
//   return queue::spool_verify(dir, std::cout, std::cerr);
#pragma once

#include "portcullis/queue/record.hh"

#include <optional>
#include <ostream>
#include <string>

namespace portcullis::queue {

// Exit codes of both tools.
constexpr int spool_exit_ok = 0;
constexpr int spool_exit_damaged = 1; // corruption, a torn tail, a bad header, a segment that
                                      // could not be read
constexpr int spool_exit_no_dir = 2;  // the dir is missing or unreadable

// For every segment: records, bytes, corrupt regions, tail; then totals, the spool's bytes and
// the free bytes of its file system (statvfs), and a final human summary line. Zero-filled tails
// (preallocated space) are reported but are not damage.
int spool_verify(const std::string& dir, std::ostream& out, std::ostream& err);

// One JSON object per job and per line (append_job_json of job_json.hh, without "attempt"), in
// (shard, seq, offset) order, only the jobs of `route` if given. Damage is reported on err and
// skipped: the valid records around it are still dumped, and the exit code is then
// spool_exit_damaged.
int spool_dump(const std::string& dir, std::optional<std::string> route, std::ostream& out,
               std::ostream& err);

} // namespace portcullis::queue
