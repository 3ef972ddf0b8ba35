// Spool segment files: naming, listing, scanning and start-up recovery. Start-up and offline
// tools only: plain blocking I/O, errors returned as strings, no exceptions.
//
//   auto listed = list_segments(spool_dir);
//   if (!listed.error.empty()) { fail(listed.error); }
//   for (const SegmentFile& seg : listed.segments) {
//       std::string error;
//       ScanReport r = recover_segment(seg.path, [&](uint64_t offset, const JobRecord& rec) {
//           requeue(seg, offset, rec);
//       }, error);
//       if (r.tail_bytes != 0) { log("cut N torn bytes"); }
//   }
//
// Layout: <spool dir>/shard-<k>/<seq as 16 lowercase hex digits>.seg, k in decimal. A segment
// starts with a 16-byte header, "PCSPOOL1", u32 version (1), u32 shard, little-endian; records
// (record.hh) follow back to back.
#pragma once

#include "portcullis/base/file.hh"

#include "portcullis/queue/record.hh"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::queue {

constexpr size_t segment_header_size = 16;
constexpr uint8_t segment_magic[8] = {'P', 'C', 'S', 'P', 'O', 'O', 'L', '1'};
constexpr uint32_t segment_version = 1;

struct SegmentFile {
    uint32_t shard;
    uint64_t seq;
    std::string path;
    uint64_t size;
};

struct ListResult {
    std::vector<SegmentFile> segments;
    // Entries the spool does not know, relative to dir ("zzz.seg", "shard-abc", "shard-0/x"),
    // sorted: neither serve nor the tools read them. A folder's contents are not listed.
    std::vector<std::string> unrecognised;
    std::string error; // empty on success
};

// The files the spool's own folder holds besides the shard folders.
constexpr std::string_view ledger_file_name = "ledger.log";
constexpr std::string_view ledger_snapshot_file_name = "ledger.log.tmp"; // compaction's
constexpr std::string_view lock_file_name = "portcullis.lock";
// In a shard folder: the segment its writer prepares ahead (created, header written and synced)
// and renames to its number when the current one is full. Not a segment: nothing reads it, and
// one left by a crash holds no record; the writer replaces it at start.
constexpr std::string_view next_segment_file_name = "next-segment";

// The largest sequence number a segment may have: the writer starts the next one after it.
constexpr uint64_t max_segment_seq = UINT64_MAX - 1;

// All segments under dir (every shard-<k> folder), sorted by shard then seq. Names that are not
// exactly what segment_path writes are not segments (listed in unrecognised); dir or a shard
// folder that cannot be read is an error.
ListResult list_segments(const std::string& dir);
std::string segment_path(const std::string& dir, uint32_t shard, uint64_t seq);
// fsyncs a directory (base/file.hh), so that a file created, renamed or removed in it stays so
// after a crash.
using base::sync_dir;
// mkdir -p (mode 0750), fsyncing the parent of each folder it creates so that the new names
// survive a power cut. Returns "" or the error naming the folder.
std::string make_dir(const std::string& path);

// One serving process per spool: `serve` holds an exclusive flock on <dir>/portcullis.lock (with
// its pid in it) for as long as it runs. A second one on the same spool would write the same
// segments and ledger; it is refused instead. The kernel drops the lock when the process ends,
// however it ends, so a kill -9 leaves nothing to clean up.
class SpoolLock {
public:
    SpoolLock() = default;
    ~SpoolLock();
    SpoolLock(const SpoolLock&) = delete;
    SpoolLock& operator=(const SpoolLock&) = delete;
    // Creates dir if needed. Returns "" or the error, naming the holder's pid when known.
    std::string acquire(const std::string& dir);

private:
    int _fd = -1;
};
void encode_segment_header(uint32_t shard, std::span<uint8_t, segment_header_size> out);

struct CorruptRegion {
    uint64_t offset;
    uint64_t length;
    DecodeStatus why; // what the decoder said at offset
};

struct ScanReport {
    uint64_t records = 0; // valid records
    // Offset just past the last valid record; the header size when there is none, 0 when the
    // image is shorter than the header.
    uint64_t valid_end = 0;
    uint64_t size = 0;                  // bytes scanned
    std::vector<CorruptRegion> corrupt; // invalid bytes between valid records (skipped)
    uint64_t tail_bytes = 0;            // invalid or partial bytes after the last valid record
    DecodeStatus tail_why = DecodeStatus::ok; // what the decoder said at the tail's start
    // The tail is only zero bytes (preallocated space), not a torn write.
    bool tail_all_zero = false;
    uint32_t shard = 0;       // as the header says, for the caller to compare with the folder
    std::string header_error; // non-empty if the segment header is wrong
    bool tail_cut = false;    // recover_segment truncated the file to valid_end
    bool removed = false;     // recover_segment removed a file too short to hold a header
};

using RecordCallback = std::function<void(uint64_t offset, const JobRecord& record)>;

// Scans a segment image. The header is checked and reported, but records are still read after
// a bad one (a flipped bit there should not hide the jobs). Records are decoded from the header
// on; at an invalid record the scan searches forward for the next offset where a record decodes
// (resync): the bytes skipped form a CorruptRegion; invalid bytes with no valid record after
// them are the tail. Calls on_record (may be empty) for each valid record, in order. Pure: reads
// only the image.
ScanReport scan_segment(std::span<const uint8_t> image, const RecordCallback& on_record);

// The record part of scan_segment, for any stretch of a segment: bytes are the segment's bytes
// from offset base on (base >= segment_header_size, at a record boundary). The report's offsets
// are the segment's; size is base + bytes.size(); header fields are left empty. The one scanner
// of records: recovery, the offline tools and the control plane's index all read through it,
// so that they agree on what a damaged segment holds.
ScanReport scan_records(std::span<const uint8_t> bytes, uint64_t base,
                        const RecordCallback& on_record);

// Reads a whole file and scans it. On a read error, error is set and the report is empty.
ScanReport scan_segment_file(const std::string& path, const RecordCallback& on_record,
                             std::string& error);

// Start-up recovery: scans the file (calling on_record like scan_segment) and, if there is a
// tail, truncates the file to valid_end and fdatasyncs it, so that appends continue after the
// last whole record and readers never meet a torn one. error is only for I/O failures; what was
// found and done is in the report, for the caller's "cut N torn bytes" line. Cautious cases:
//   - corrupt regions in the middle are left for readers to skip;
//   - a segment whose header is wrong (another version, a flipped bit) is not modified;
//   - a tail that starts with a whole record with a right checksum but unknown contents
//     (bad_fields: written by a newer version?) is not a torn write and is not cut;
//   - a file shorter than its header (a crash while creating it) cannot hold a record and is
//     removed (removed = true).
ScanReport recover_segment(const std::string& path, const RecordCallback& on_record,
                           std::string& error);
ScanReport recover_segment(const std::string& path, std::string& error);

} // namespace portcullis::queue
