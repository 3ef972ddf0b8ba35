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

// One JSON object per job and per line (append_job_json), in (shard, seq, offset) order, only
// the jobs of `route` if given. Damage is reported on err and skipped: the valid records around
// it are still dumped, and the exit code is then spool_exit_damaged.
int spool_dump(const std::string& dir, std::optional<std::string> route, std::ostream& out,
               std::ostream& err);

// Appends the dump's JSON object for one job (no newline):
// {"id","route","received_at" (RFC 3339 UTC, ms),"source_ip","headers":{lowercased name: value,
// repeated names joined with ", " in order},"body","body_encoding":"utf8"|"base64"}. The body is
// kept as a JSON string when it is well-formed UTF-8, standard base64 otherwise.
void append_job_json(const JobRecord& record, std::string& out);

} // namespace portcullis::queue
