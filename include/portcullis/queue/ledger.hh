// The job ledger: an append-only file of lease/ack/nack/dead/replay/expire records that makes
// the job table's states survive a restart (the spool holds the jobs; the ledger holds what
// happened to them).
//
// Runtime (the control plane, through its ring; no allocation):
//   for (const LedgerOp& op : table.pending_ops()) {
//       encode_ledger_op(op, std::span<uint8_t, ledger_record_size>(buf + n, ledger_record_size));
//       n += ledger_record_size;
//   }
//   table.pending_ops().clear();        // then write buf at the end of the file and fdatasync
//
// Start-up (blocking):
//   LedgerRecovery r = recover_ledger(path);          // cuts a torn tail, skips damage
//   if (!r.error.empty()) { fail(r.error); }
//   ...add() every job found in the spool...
//   for (const LedgerOp& op : r.ops) { table.apply(op); }
//   write_ledger_snapshot(path, table.snapshot_ops()); // compaction, when the file has grown
//
// Record layout, 48 bytes, little-endian:
//   u8[4] magic "PCL1", u8 kind, u8 lane, u16 attempts, i64 at_ns, i64 due_ns,
//   u8[16] job id, u64 XXH3_64bits of the 40 bytes before it.
// The lane says whose settlement it is: 0 the pull API (the only lane before push delivery, when
// the byte was reserved and always 0, so older ledgers read unchanged), 1..255 a sink, by the
// number <spool dir>/lanes gives its name (lanes.hh).
// A record stands alone, so that a torn write damages at most the last one and recovery can cut
// exactly there, and a damaged record in the middle costs only itself.
#pragma once

#include "portcullis/queue/job_id.hh"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

namespace portcullis::queue {

constexpr size_t ledger_record_size = 48;

// One state change of one job. Each op carries the job's resulting attempts and timer, so that
// applying it needs nothing but the job's existence: the ledger replays without a clock.
struct LedgerOp {
    enum class Kind : uint8_t {
        lease = 1, // -> leased, due_ns = lease deadline
        ack,       // -> done
        nack,      // -> queued, due_ns = not-before
        dead,      // -> dead (nack or expiry past max_attempts)
        replay,    // dead -> queued, attempts 0, ready now
        expire,    // lease ran out -> queued, ready now
    };
    Kind kind = Kind::ack;
    uint8_t lane = 0;      // 0: the pull API; else a sink's lane (lanes.hh)
    uint16_t attempts = 0; // after the change
    JobId id;
    int64_t at_ns = 0;  // Unix ns of the change (for operators reading a dump)
    int64_t due_ns = 0; // lease: deadline; nack: not-before; otherwise 0

    bool operator==(const LedgerOp&) const = default;
};

// "lease", "ack", ...; "unknown" for a value outside the enum.
std::string_view kind_name(LedgerOp::Kind kind);

void encode_ledger_op(const LedgerOp& op, std::span<uint8_t, ledger_record_size> out);

// Refuses (nullopt) a bad magic, a checksum mismatch or an unknown kind; any lane reads. Only the
// first ledger_record_size bytes are read; fewer is a refusal.
std::optional<LedgerOp> decode_ledger_op(std::span<const uint8_t> in);

// A stretch of the ledger that holds no valid record, with valid records after it.
struct LedgerDamage {
    uint64_t offset;
    uint64_t length;
};

struct LedgerScan {
    std::vector<LedgerOp> ops;         // the valid records, in file order
    std::vector<LedgerDamage> damaged; // skipped; each is followed by a valid record
    uint64_t valid_end = 0;            // just past the last valid record
    uint64_t tail_bytes = 0;           // after valid_end: a torn write (nothing valid follows)
    uint64_t size = 0;                 // bytes scanned
    // A record with a right checksum that this version cannot read (an unknown kind): written
    // by a newer version. The scan stops there.
    std::optional<uint64_t> unreadable_at;
};

// Reads up to n bytes at offset into buf; returns how many (0 at the end) or -1 (errno set).
using LedgerRead = std::function<ssize_t(uint8_t* buf, size_t n, uint64_t offset)>;

// The one reader of ledger bytes (recovery, `spool verify`, the fuzz target). Records are read
// in order; at one that does not check (bad magic, bad checksum, partial), the scan searches
// forward byte by byte for the next offset where a record checks (a flipped byte damages one
// record; a lost or shifted stretch is found again), so that damage in the middle costs only
// the records it hit. Invalid bytes with no valid record after them are the tail: what a crash
// in the middle of an append leaves. Reads through read (size bytes in all) about 1 MiB at a
// time; sets error (with the errno text) and stops on a read failure.
LedgerScan scan_ledger(uint64_t size, const LedgerRead& read, std::string& error);
// The same over bytes in memory.
LedgerScan scan_ledger(std::span<const uint8_t> image);

struct LedgerRecovery {
    std::vector<LedgerOp> ops;         // the valid records, in file order
    std::vector<LedgerDamage> damaged; // skipped stretches in the middle, left in the file
    uint64_t valid_bytes = 0;          // the file's size after recovery
    uint64_t cut_bytes = 0;            // the torn tail, truncated
    std::string error;                 // empty on success
};

// Start-up, blocking I/O. Scans the ledger (scan_ledger) and truncates a torn tail away (then
// fdatasync), so that appends continue after the last whole record. Damage in the middle is
// skipped and left in place (reported in damaged): the valid ops after it are kept. Neither
// loses anything the guarantees need: a lost ack or lease only means a redelivery.
// A missing file is an empty ledger. One case is an error rather than a cut: a record with a
// right checksum that this version cannot read (an unknown kind), written by a newer version; the
// file is left untouched for the operator.
LedgerRecovery recover_ledger(const std::string& path);

// Compaction: writes ops to path + ".tmp", fdatasyncs it, renames it over path and fsyncs the
// directory, so that a crash at any point leaves either the old ledger or the new one. Returns
// "" or the error (with the errno text and the path); on error path is untouched.
std::string write_ledger_snapshot(const std::string& path, const std::vector<LedgerOp>& ops);

} // namespace portcullis::queue
