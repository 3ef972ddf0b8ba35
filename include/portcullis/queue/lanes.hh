// Delivery lanes: the numbers by which ledger ops name the sink they settle (LedgerOp::lane).
// Lane 0 is the pull API; each sink gets a number 1..255 the first time a configuration names
// it, kept in <spool dir>/lanes, one "<number> <sink name>" a line. The number belongs to the
// NAME, never to a position in the configuration: reordering, adding or removing sinks never
// applies one sink's settlements to another.
//
//   LaneAssignment a = assign_lanes(read, {"app", "bus"});   // read: read_lanes(dir, ...)
//   if (!a.error.empty()) { fail(a.error); }
//   ...apply ledger ops of lane L only to the sink a.listed names L, if it is configured...
//   if (a.changed) { write_lanes(dir, a.lanes); }           // before any op of a new lane
//
// A sink no longer configured keeps its number (its ops in the ledger are ignored, like ops of
// deleted jobs, and count again if it comes back): numbers are reused only when all 255 are
// taken, and then only those of sinks not configured, after the caller has compacted the ledger
// so that none of their ops is left (LaneAssignment::reclaimed). More than 255 configured sinks
// is an error. A damaged file is an error naming the file and line: never guessed around.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::queue {

constexpr std::string_view lanes_file_name = "lanes";
constexpr unsigned max_lane = 255;

struct LaneName {
    uint8_t lane = 0; // 1..255
    std::string sink;
    bool operator==(const LaneName&) const = default;
};

// Parses a lanes file's text: lines "<number> <sink name>", '#' comment lines and empty lines.
// Returns "" or "<path>:<line>: <why>" (a bad line, a number out of 1..255, a number or a name
// listed twice, a last line without its newline).
std::string parse_lanes(std::string_view text, const std::string& path, std::vector<LaneName>& out);
// The file's text, in lane order.
std::string format_lanes(const std::vector<LaneName>& lanes);

// Reads <dir>/lanes into out (a missing file lists nothing). Returns "" or the error.
std::string read_lanes(const std::string& dir, std::vector<LaneName>& out);
// Replaces <dir>/lanes: writes lanes.tmp, fdatasyncs it, renames it over lanes and fsyncs dir,
// so that a crash leaves the old file or the new one. Returns "" or the error (path, errno
// text); on error the old file is untouched.
std::string write_lanes(const std::string& dir, const std::vector<LaneName>& lanes);

struct LaneAssignment {
    std::vector<uint8_t> sink_lanes; // the lane of each sink given, in order
    std::vector<LaneName> listed;    // as read: the lanes the ledger's ops may carry
    std::vector<LaneName> lanes;     // what the file must say from now on
    bool changed = false;            // lanes != listed: write it before any op of a new lane
    // Numbers of sinks no longer configured were given to new sinks: the ledger may still hold
    // ops of the old owners, so it must be compacted (without them) before lanes is written.
    bool reclaimed = false;
    std::string error; // "" on success
};

// Gives every sink of sinks (names, as configured) its number: the one listed, else the lowest
// number never listed, else (all 255 listed) the number of the first listed sink that is not
// configured. path is for the error when even that is not enough.
LaneAssignment assign_lanes(std::vector<LaneName> listed, std::span<const std::string> sinks,
                            const std::string& path);

} // namespace portcullis::queue
