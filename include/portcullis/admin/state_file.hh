// The framing the control plane's state files share (tokens.state, admin/token_store.hh;
// consumers.state, admin/consumer_store.hh): text, one record a line, between a version line and
// a checksum line over every byte before it,
//
//   portcullis-tokens 1
//   token ci-reader 3f0c... 1796000000000000000 0 jobs:read:*
//   sha256 9a1b...(64 hex, of every byte before this line)
//
// replaced whole, atomically and durably, so that a crash leaves the old set or the new one. Each
// store keeps its record lines' grammar; the walk, the seal and the file handling are here.
//
//   constexpr StateFile tokens{"tokens.state", "portcullis-tokens 1", "token", 1024, 0640};
//   std::string err = walk_state(tokens, text, path, [&](std::string_view line) {
//       return parse_my_line(line);                    // "" or why, without the file and line
//   });
//   std::string text = seal_state(tokens, "token a ...\ntoken b ...\n");
//   err = write_state_file(tokens, spool_dir, text);
//   err = read_state_file(tokens, spool_dir, [&](std::string_view text, const std::string& path) {
//       return parse_my_state(text, path);
//   });
#pragma once

#include "portcullis/admin/auth.hh"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::admin {

struct StateFile {
    std::string_view name;         // in the spool folder: "tokens.state"
    std::string_view version_line; // the first line: "portcullis-tokens 1"
    std::string_view kind;         // one record, in errors: "token" (plural: kind + "s")
    size_t max_records;
    unsigned mode; // of the file written (0600 for one that holds secrets)
};

// Walks a sealed file's text: checks the version line, calls on_record with each record line
// (without its newline) in order, and checks the checksum line. on_record returns "" or why the
// line is wrong. Returns "" or "<path>:<line>: <why>": the wrong version, more than max_records
// lines, on_record's why, a missing or wrong checksum, text after it, a last line without its
// newline, an empty text. Stops at the first error.
std::string walk_state(const StateFile& file, std::string_view text, const std::string& path,
                       const std::function<std::string(std::string_view record)>& on_record);

// The file's text: the version line, then records (lines each ended by '\n'), then the checksum
// line.
std::string seal_state(const StateFile& file, std::string_view records);

// Reads <dir>/<file.name> and returns parse(its text, its path): "" or the error. A missing file
// holds no record: parse is not called and "" returned.
std::string read_state_file(
    const StateFile& file, const std::string& dir,
    const std::function<std::string(std::string_view text, const std::string& path)>& parse);
// Replaces <dir>/<file.name> with text, atomically and durably (written with file.mode,
// fdatasynced, renamed, the folder fsynced: base::replace_file) before it returns. Blocking: for
// the control-plane thread, whose writes of state are rare. Returns "" or the error; on error the
// old file stays.
std::string write_state_file(const StateFile& file, const std::string& dir, std::string_view text);

// The record lines' common fields.
// Splits at single spaces; an empty field (two spaces, a leading or trailing one) is kept empty
// so that the caller refuses it.
std::vector<std::string_view> state_fields(std::string_view line);
// A decimal int64 >= 0 without sign or leading zero (but "0"), as Unix nanoseconds are written.
bool parse_state_time(std::string_view s, int64_t& out);
// A SHA-256 as 64 lowercase hex characters (one spelling per digest, as written).
bool parse_state_digest(std::string_view s, TokenDigest& out);

} // namespace portcullis::admin
