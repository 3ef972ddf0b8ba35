// The append side of one shard's spool: records accepted during a loop iteration go out as one
// group commit (one writev and, for durability fsync, one linked fdatasync) through the shard's
// ring, and their waiters learn the outcome together when it completes. At most one group is in
// flight; records arriving meanwhile form the next group.
//
//   SpoolWriter w;
//   if (auto err = w.open(dir, shard, cfg); !err.empty()) { ... }   // start-up: recovers
//   w.append(record_bytes, cookie);                                   // request path
//   w.flush(ring, now_mono_ns);                                       // once per iteration
//   w.on_cqe(cqe, [](uint64_t cookie, bool durable) { ... });         // completions
#pragma once

#include "portcullis/config/config.hh"
#include "portcullis/io/ring.hh"
#include "portcullis/queue/segment.hh"
#include "portcullis/queue/spool_progress.hh"

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <sys/uio.h>
#include <vector>

namespace portcullis::queue {

// Tags of this writer's SQEs in the top byte of user_data; the caller routes CQEs whose tag
// is one of these to on_cqe().
constexpr uint64_t spool_write_tag = 0xf1;
constexpr uint64_t spool_sync_tag = 0xf2;

struct SpoolStats {
    uint64_t records = 0; // made durable (or written, without fsync)
    uint64_t bytes = 0;
    uint64_t groups = 0;   // group commits
    uint64_t failures = 0; // groups answered 503
    uint64_t segments_opened = 0;
    uint64_t recovered_records = 0; // valid records found at start
    uint64_t cut_tail_bytes = 0;    // torn tails cut at start
};

class SpoolWriter {
public:
    // Records one group can hold; a full group refuses appends until it is flushed.
    static constexpr size_t max_group = 1024;
    // durability batch: the longest a written record waits for its fdatasync.
    static constexpr int64_t batch_sync_interval_ns = 10'000'000;

    SpoolWriter() = default;
    SpoolWriter(const SpoolWriter&) = delete;
    SpoolWriter& operator=(const SpoolWriter&) = delete;
    ~SpoolWriter();

    // Start-up: creates <dir>/shard-<k>/, recovers its segments (cutting torn tails, reported
    // through the log; on_record sees every valid record) and starts a new segment. Blocking
    // I/O; returns "" or the error. progress (may be null) is told, from then on, the segment
    // and the end of every group that completes.
    std::string open(const std::string& dir, uint32_t shard, const config::SpoolConfig& cfg,
                     const RecordCallback& on_record = {}, SpoolProgress* progress = nullptr);

    // Queues a sealed record. `record` must stay valid until the cookie is reported. Returns
    // false when the spool cannot take it now (group full, or the disk failed recently): the
    // caller answers 503.
    bool append(std::span<const uint8_t> record, uint64_t cookie, config::Durability d);

    // Submits the pending group if none is in flight; for durability batch, also the periodic
    // fdatasync. Call once per loop iteration, before the ring's submit. `done` is called as
    // in on_cqe() when a group fails before it reaches the ring (segment rotation failed).
    template <typename F>
    void flush(io::Ring& ring, int64_t now_mono_ns, F&& done);

    // Handles a CQE tagged spool_write_tag or spool_sync_tag; calls done(cookie, durable) for
    // every record of a group that completed.
    template <typename F>
    void on_cqe(const io_uring_cqe& cqe, int64_t now_mono_ns, F&& done);

    // How long the caller's loop may wait for events before the periodic fdatasync of
    // durability batch is due, at most `limit`: a shard that goes quiet right after a write must
    // still sync it within the window, not at its next tick.
    int64_t wait_limit_ns(int64_t now_mono_ns, int64_t limit) const {
        if (!_dirty || !_inflight.empty() || _sync_inflight) {
            return limit; // nothing to sync, or a completion wakes the loop first
        }
        return std::clamp<int64_t>(_last_sync_ns + batch_sync_interval_ns - now_mono_ns,
                                   min_wait_ns, limit);
    }

    bool idle() const { return _inflight.empty() && _pending.empty() && !_sync_inflight; }
    bool healthy() const { return _failed_until_ns == 0; }
    const SpoolStats& stats() const { return _stats; }
    // Seconds the caller should put in Retry-After when append() refuses.
    static constexpr int retry_after_s = 1;

private:
    // The shortest wait wait_limit_ns() gives: a zero timeout would not wait at all.
    static constexpr int64_t min_wait_ns = 1'000;

    struct Entry {
        iovec iov;
        uint64_t cookie;
        config::Durability durability;
    };

    std::string start_segment();
    // Moves the pending records into flight; false if the segment could not be rotated.
    bool submit_group(io::Ring& ring);
    void submit_periodic_sync(io::Ring& ring, int64_t now_mono_ns);
    // Refuses appends for a while after the disk failed, so that a full disk is not hammered.
    void enter_failure(int64_t now_mono_ns);
    // Ends the in-flight group: tells every waiter, then forgets it.
    template <typename F>
    void complete_group(bool durable, int64_t now_mono_ns, F&& done);
    void fail_group(int64_t now_mono_ns);

    std::string _dir;
    uint32_t _shard = 0;
    config::SpoolConfig _cfg;
    int _fd = -1;
    uint64_t _seq = 0;
    uint64_t _offset = 0; // end of the durable-or-written data in the current segment
    uint64_t _group_offset = 0;
    size_t _group_bytes = 0;
    bool _group_needs_sync = false;  // some record is fsync: the group's write is linked to one
    bool _group_needs_batch = false; // some record is batch: the periodic fdatasync covers it
    bool _write_done = false;        // in-flight group: the write completed, the fsync is pending
    std::vector<Entry> _pending;
    std::vector<Entry> _inflight;
    std::vector<iovec> _iovs; // of the in-flight group, stable until its write completes
    // durability batch: data written but not yet fdatasync'ed (none never sets it: it leaves
    // flushing to the kernel)
    bool _dirty = false;
    bool _sync_inflight = false;
    int64_t _last_sync_ns = 0;
    int64_t _failed_until_ns = 0;
    SpoolStats _stats;
    SpoolProgress* _progress = nullptr;
};

template <typename F>
void SpoolWriter::on_cqe(const io_uring_cqe& cqe, int64_t now_mono_ns, F&& done) {
    uint64_t tag = cqe.user_data >> 56;
    if (tag == spool_sync_tag && (cqe.user_data & 1) != 0) {
        // Periodic fdatasync of durability batch, not tied to a group.
        _sync_inflight = false;
        if (cqe.res < 0) {
            enter_failure(now_mono_ns);
        }
        return;
    }
    if (tag == spool_write_tag) {
        if (cqe.res < 0 || static_cast<size_t>(cqe.res) != _group_bytes) {
            // A short or failed write: the linked fdatasync (if any) is cancelled and reports
            // -ECANCELED, which is ignored below because the group is already settled.
            fail_group(now_mono_ns);
            complete_group(false, now_mono_ns, done);
            return;
        }
        _offset = _group_offset + _group_bytes;
        _write_done = true;
        if (!_group_needs_sync) {
            _dirty |= _group_needs_batch;
            complete_group(true, now_mono_ns, done);
        }
        return;
    }
    if (tag == spool_sync_tag) {
        if (!_write_done || _inflight.empty()) {
            return; // cancelled after a failed write
        }
        if (cqe.res < 0) {
            // After a failed fdatasync the page cache may claim the data is clean while the
            // disk does not have it: nothing of this group may be acknowledged.
            fail_group(now_mono_ns);
            complete_group(false, now_mono_ns, done);
            return;
        }
        _dirty = false;
        _last_sync_ns = now_mono_ns;
        complete_group(true, now_mono_ns, done);
    }
}

template <typename F>
void SpoolWriter::flush(io::Ring& ring, int64_t now_mono_ns, F&& done) {
    if (_failed_until_ns != 0 && now_mono_ns >= _failed_until_ns) {
        _failed_until_ns = 0;
    }
    if (_inflight.empty() && !_pending.empty() && !_sync_inflight && !submit_group(ring)) {
        complete_group(false, now_mono_ns, done);
    }
    submit_periodic_sync(ring, now_mono_ns);
}

template <typename F>
void SpoolWriter::complete_group(bool durable, int64_t, F&& done) {
    if (durable) {
        if (_progress != nullptr) {
            _progress->publish(_seq, _offset);
        }
        ++_stats.groups;
        _stats.records += _inflight.size();
        _stats.bytes += _group_bytes;
    } else {
        ++_stats.failures;
    }
    for (const Entry& e : _inflight) {
        done(e.cookie, durable);
    }
    _inflight.clear();
    _write_done = false;
    _group_bytes = 0;
}

} // namespace portcullis::queue
