// The append side of one shard's spool: records accepted during a loop iteration go out as one
// group commit (one writev and, for durability fsync, one linked fdatasync) through the shard's
// ring, and their waiters learn the outcome together when it completes. Up to max_inflight
// groups are in flight at once: while a group's fdatasync runs, the records that arrived
// meanwhile go out as the next group right away, so the disk is kept busy instead of answering
// one group per fdatasync.
//
//   SpoolWriter w;
//   if (auto err = w.open(dir, shard, cfg); !err.empty()) { ... }   // start-up: recovers
//   w.append(record_bytes, cookie);                                   // request path
//   w.flush(ring, now_mono_ns);                                       // once per iteration
//   w.on_cqe(cqe, [](uint64_t cookie, bool durable) { ... });         // completions
//
// What "durable" means with several groups in flight:
// - Writes are serialized: a group's writev is submitted only once the previous group's writev
//   has completed (usually within the same loop iteration: a buffered write completes inline).
//   So no group's bytes reach the file before an earlier group's (a crash never leaves a hole
//   of zeros under later records), and every fdatasync covers all earlier groups' bytes too.
//   Only the fdatasyncs overlap, which is where the time goes.
// - A group is answered durable when its own fdatasync (linked after its own write, so started
//   after that write completed) succeeded, and only after every earlier group was answered:
//   answers, and the progress mark the control plane indexes up to, go strictly in group order,
//   so the mark is always the end of a contiguous run of durable groups.
// - Every slot of the pipeline writes and syncs through an open file description of its own.
//   The kernel reports a writeback error once per description: two fdatasyncs in flight on one
//   description could hand one group's error to the other, and the group whose pages were lost
//   would be answered durable. With one description per slot every fdatasync in flight when the
//   error is recorded reports it.
// - A failed or short write, or a failed fdatasync, fails its group and every later one in
//   flight (their bytes lie past the cut). Each is answered 503 once all its completions are in
//   (the kernel may still read its records until then), and the file is cut back to the first
//   failed group only once nothing is in flight, so that no write lands after the cut.
//
// Rotation never blocks the shard on the disk. Once a segment is half full, the next one is
// prepared through the ring under the name next-segment in the shard's folder: created, its header
// written and fdatasync'ed, one description per slot opened. When the segment is full and its
// groups are in, a rename to the next number and an fsync of the folder (linked) make it the
// segment; groups wait for both. Creating a segment in place (open, write, two fsyncs on the
// shard's thread: 0.3-0.5 ms of stall under load on the test VM) remains the fallback when the
// preparation failed or is not done yet (segments of a few records).
#pragma once

#include "portcullis/base/histogram.hh"
#include "portcullis/config/config.hh"
#include "portcullis/io/ring.hh"
#include "portcullis/queue/segment.hh"
#include "portcullis/queue/spool_progress.hh"

#include <algorithm>
#include <array>
#include <atomic>
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
constexpr uint64_t spool_prepare_tag = 0xf3; // preparing and renaming the next segment

inline bool is_spool_tag(uint64_t tag) {
    return tag == spool_write_tag || tag == spool_sync_tag || tag == spool_prepare_tag;
}

// What /metrics and /healthz read of a shard's spool from the control plane's thread: written
// by the shard only, relaxed atomics on their own cache lines.
struct alignas(64) SpoolMetrics {
    base::Histogram commit_duration;   // a group's submission -> durable (write + fdatasync)
    std::atomic<bool> refusing{false}; // the disk failed recently: appends are answered 503
};

struct SpoolStats {
    uint64_t records = 0; // made durable (or written, without fsync)
    uint64_t bytes = 0;
    uint64_t groups = 0;   // group commits
    uint64_t failures = 0; // groups answered 503
    uint64_t segments_opened = 0;
    uint64_t recovered_records = 0; // valid records found at start, in the segments read
    uint64_t segments_not_read = 0; // older than remember_since_unix_ns: nothing to recover
    uint64_t cut_tail_bytes = 0;    // torn tails cut at start
    uint64_t deepest_inflight = 0;  // the most groups in flight at once
    uint64_t overlapped_groups = 0; // groups submitted while an earlier one was in flight
};

class SpoolWriter {
public:
    // Records one group can hold; a full group refuses appends until it is flushed.
    static constexpr size_t max_group = 1024;
    // Groups in flight at once, each with its own slot (iovecs, records, file description).
    // Chosen by measurement (README, "The spool"): 2 overlaps one group's fdatasync with the
    // next group's collection; more in flight makes the groups smaller, and every extra
    // fdatasync costs the shard's process CPU (io-wq) for the same jobs.
    static constexpr size_t max_inflight = 2;
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
    // Only the shard's newest segment can end in a torn write; the others are read only for
    // on_record, and only when written to at or after remember_since_unix_ns (their mtime): a
    // deep spool whose jobs are older than every dedup window is not read twice at start.
    std::string open(const std::string& dir, uint32_t shard, const config::SpoolConfig& cfg,
                     const RecordCallback& on_record = {}, SpoolProgress* progress = nullptr,
                     int64_t remember_since_unix_ns = INT64_MIN);

    // Queues a sealed record. `record` must stay valid until the cookie is reported. Returns
    // false when the spool cannot take it now (group full, or the disk failed recently): the
    // caller answers 503.
    bool append(std::span<const uint8_t> record, uint64_t cookie, config::Durability d);

    // Submits the pending records as a group when a slot is free and the previous group's write
    // has completed; for durability batch, also the periodic fdatasync (due groups wait for it).
    // Call once per loop iteration, before the ring's submit. `done` is called as in on_cqe()
    // when a group fails before it reaches the ring (segment rotation failed).
    template <typename F>
    void flush(io::Ring& ring, int64_t now_mono_ns, F&& done);

    // Handles a CQE whose tag is_spool_tag() (for a group, the low bits of user_data name its
    // slot, the same for its write and its sync); calls done(cookie, durable) for every record
    // of each group that completed, in group order.
    template <typename F>
    void on_cqe(const io_uring_cqe& cqe, int64_t now_mono_ns, F&& done);

    // How long the caller's loop may wait for events before the periodic fdatasync of
    // durability batch is due, at most `limit`: a shard that goes quiet right after a write must
    // still sync it within the window, not at its next tick.
    int64_t wait_limit_ns(int64_t now_mono_ns, int64_t limit) const {
        if (!_dirty || _inflight_groups != 0 || _sync_inflight) {
            return limit; // nothing to sync, or a completion wakes the loop first
        }
        return std::clamp<int64_t>(_last_sync_ns + batch_sync_interval_ns - now_mono_ns,
                                   min_wait_ns, limit);
    }

    bool idle() const {
        return _inflight_groups == 0 && _pending.empty() && !_sync_inflight && _next_waiting == 0;
    }
    // idle(), and no record answered under durability batch still waits for its fdatasync: what
    // a writer must be before its shard stops, since nothing would sync that data afterwards (a
    // power cut within the kernel's write-back delay would lose jobs answered 202). Keep calling
    // flush() until then: the periodic sync is due within batch_sync_interval_ns, and
    // wait_limit_ns() wakes the loop for it.
    bool drained() const { return idle() && !_dirty; }
    bool healthy() const { return _failed_until_ns == 0; }
    // append() would refuse for want of room only: the next group is full while the groups in
    // flight complete (the caller holds the record back and offers it again).
    bool full() const { return healthy() && !_failing && _pending.size() >= max_group; }
    const SpoolStats& stats() const { return _stats; }
    const SpoolMetrics& metrics() const { return _metrics; }
    // Seconds the caller should put in Retry-After when append() refuses.
    static constexpr int retry_after_s = 1;

private:
    // The shortest wait wait_limit_ns() gives: a zero timeout would not wait at all.
    static constexpr int64_t min_wait_ns = 1'000;
    // user_data: the tag in the top byte, the slot from bit 1, bit 0 for the periodic sync.
    static constexpr uint64_t periodic_sync_bit = 1;
    static constexpr int slot_shift = 1;

    struct Entry {
        iovec iov;
        uint64_t cookie;
        config::Durability durability;
    };

    // One group commit, from its submission until it is answered. Its slot is reused only
    // after that, once every completion of its SQEs is in: a late CQE never meets another
    // group, and its iovecs and records stay valid as long as the kernel may read them.
    struct Group {
        std::vector<Entry> entries;
        std::vector<iovec> iovs;
        uint64_t number = 0; // counts groups since open(): orders them
        uint64_t offset = 0;
        size_t bytes = 0;
        bool needs_sync = false;  // some record is fsync: the write is linked to an fdatasync
        bool needs_batch = false; // some record is batch: the periodic fdatasync covers it
        bool write_pending = false;
        bool sync_pending = false;
        bool failed = false;
        int64_t submitted_ns = 0; // monotonic
    };

    // The next segment's preparation and rotation (see the top of this file). Steps move on in
    // flush(), which has the ring; completions land in on_prepare_cqe().
    enum class Next : uint8_t {
        none,         // nothing prepared; flush() starts
        opening,      // its openat is in flight
        opened,       // created: flush() writes the header and opens the other descriptions
        initialising, // header write + fdatasync and the other openats in flight
        ready,        // a full segment rotates to it
        renaming,     // rename + folder fsync in flight; groups wait
        failed,       // given up until a segment is created in place
    };
    enum class Step : uint8_t { open_first = 1, header, header_sync, open_more, rename, dir_sync };
    static uint64_t prepare_data(Step step, size_t slot) {
        return spool_prepare_tag << 56 | uint64_t{static_cast<uint8_t>(step)} << 8 | slot;
    }
    void advance_next(io::Ring& ring);
    void on_prepare_cqe(const io_uring_cqe& cqe);
    // Closes the prepared descriptions and removes next-segment; logs `why` and the failed step
    // unless it is null.
    void discard_next(const char* why);
    void adopt_next();

    std::string start_segment();
    void close_segment();
    // start_segment() for a group that does not fit; logs and returns false if it failed.
    bool rotate();
    size_t slot_at(size_t age) const { return (_oldest + age) % max_inflight; }
    // Moves the pending records into a free slot and submits them.
    void submit_group(io::Ring& ring, size_t bytes, int64_t now_mono_ns);
    void submit_periodic_sync(io::Ring& ring, int64_t now_mono_ns);
    // Refuses appends for a while after the disk failed, so that a full disk is not hammered.
    void enter_failure(int64_t now_mono_ns);
    // Fails the group in `slot` and every later one in flight.
    void fail_from(size_t slot, int64_t now_mono_ns);
    // Once nothing is in flight after a failure: cuts the file back to the first failed group.
    void cut_failed_tail();
    // Syncs every description of the segment, results ignored: an error already answered for
    // is not reported again, to a later group, through a description that had not seen it.
    void consume_reported_errors();
    // Answers the oldest groups whose completions are all in, in order.
    template <typename F>
    void answer_settled(F&& done);

    std::string _dir;
    uint32_t _shard = 0;
    config::SpoolConfig _cfg;
    // The current segment, once per slot (fds[0] also carries the periodic sync); -1 when none.
    std::array<int, max_inflight> _fds = [] {
        std::array<int, max_inflight> none{};
        none.fill(-1); // never descriptor 0: a writer never opened must not close stdin
        return none;
    }();
    uint64_t _seq = 0;
    uint64_t _offset = 0; // where the next group goes in the current segment
    std::vector<Entry> _pending;
    std::array<Group, max_inflight> _groups;
    size_t _oldest = 0; // slot of the oldest group in flight
    size_t _inflight_groups = 0;
    uint64_t _groups_submitted = 0;
    // After a failure: nothing is submitted until the groups in flight are in, then the file
    // is cut back to _cut (the offset of the first failed group).
    bool _failing = false;
    uint64_t _cut = 0;
    // durability batch: data written but not yet fdatasync'ed (none never sets it: it leaves
    // flushing to the kernel), and the last group that wrote such data.
    bool _dirty = false;
    uint64_t _dirty_group = 0;
    bool _sync_inflight = false;
    int64_t _last_sync_ns = 0;
    int64_t _failed_until_ns = 0;
    SpoolStats _stats;
    SpoolMetrics _metrics;
    SpoolProgress* _progress = nullptr;

    Next _next = Next::none;
    std::array<int, max_inflight> _next_fds = [] {
        std::array<int, max_inflight> none{};
        none.fill(-1);
        return none;
    }();
    int _next_waiting = 0; // completions of the step in flight still to come
    int _next_error = 0;   // the first errno among them
    Step _next_failed_step = Step::open_first;
    bool _renamed = false;  // the rename in flight succeeded
    std::string _next_path; // <shard folder>/next-segment
    std::string _rename_to; // the segment it becomes, while the rename is in flight
    int _dir_fd = -1;       // the shard folder, fsync'ed after the rename
    std::array<uint8_t, segment_header_size> _next_header{};
};

template <typename F>
void SpoolWriter::on_cqe(const io_uring_cqe& cqe, int64_t now_mono_ns, F&& done) {
    const uint64_t tag = cqe.user_data >> 56;
    if (tag == spool_prepare_tag) {
        on_prepare_cqe(cqe);
        return;
    }
    if (tag == spool_sync_tag && (cqe.user_data & periodic_sync_bit) != 0) {
        // Periodic fdatasync of durability batch, not tied to a group; nothing else is in flight.
        _sync_inflight = false;
        if (cqe.res < 0) {
            enter_failure(now_mono_ns);
            consume_reported_errors();
        }
        return;
    }
    const size_t slot = (cqe.user_data & 0xff'ffff'ffff'ffff) >> slot_shift;
    if (slot >= max_inflight) {
        return;
    }
    Group& g = _groups[slot];
    if (tag == spool_write_tag && g.write_pending) {
        g.write_pending = false;
        if (!g.failed && (cqe.res < 0 || static_cast<size_t>(cqe.res) != g.bytes)) {
            // A short or failed write: the linked fdatasync (if any) is cancelled, or runs,
            // and its completion is awaited either way before the slot is reused.
            fail_from(slot, now_mono_ns);
        } else if (!g.failed && !g.needs_sync && g.needs_batch) {
            _dirty = true;
            _dirty_group = g.number;
        }
        if (!g.failed && !g.sync_pending) {
            _metrics.commit_duration.record(now_mono_ns - g.submitted_ns);
        }
    } else if (tag == spool_sync_tag && g.sync_pending) {
        g.sync_pending = false;
        if (!g.failed && cqe.res < 0) {
            // After a failed fdatasync the page cache may claim the data is clean while the
            // disk does not have it: nothing of this group may be acknowledged.
            fail_from(slot, now_mono_ns);
        } else if (!g.failed) {
            // The fdatasync started after this group's write, which started after every
            // earlier group's write had completed: batch data written before is covered.
            if (_dirty && _dirty_group < g.number) {
                _dirty = false;
            }
            _last_sync_ns = now_mono_ns;
            _metrics.commit_duration.record(now_mono_ns - g.submitted_ns);
        }
    }
    answer_settled(done);
    if (_failing && _inflight_groups == 0) {
        cut_failed_tail();
    }
}

template <typename F>
void SpoolWriter::flush(io::Ring& ring, int64_t now_mono_ns, F&& done) {
    if (_failed_until_ns != 0 && now_mono_ns >= _failed_until_ns) {
        _failed_until_ns = 0;
        _metrics.refusing.store(false, std::memory_order_relaxed);
    }
    if (_failing || _sync_inflight) {
        return; // groups wait for the failed ones to be in, or for the periodic sync
    }
    advance_next(ring);
    if (_dirty && now_mono_ns - _last_sync_ns >= batch_sync_interval_ns) {
        // durability batch: the sync is due; it waits for the groups in flight (it must cover
        // their writes) and new groups wait for it, so that a constant stream cannot starve it.
        if (_inflight_groups == 0) {
            submit_periodic_sync(ring, now_mono_ns);
        }
        return;
    }
    if (_pending.empty() || _inflight_groups == max_inflight) {
        return;
    }
    if (_inflight_groups != 0 && _groups[slot_at(_inflight_groups - 1)].write_pending) {
        return; // writes are serialized (see the top of this file)
    }
    size_t bytes = 0;
    for (const Entry& e : _pending) {
        bytes += e.iov.iov_len;
    }
    // A full segment rotates; so does none, after a rotation failed (retried after the back-off).
    if (_fds[0] < 0 || (_offset > segment_header_size && _offset + bytes > _cfg.segment_size)) {
        if (_inflight_groups != 0 || _next == Next::renaming) {
            return; // the old segment's groups complete before it is closed
        }
        if (_dirty && _fds[0] >= 0) {
            // durability batch: what this segment holds unsynced is synced before it is left,
            // since the periodic fdatasync goes to the segment being written, never back here.
            submit_periodic_sync(ring, now_mono_ns);
            return;
        }
        if (_fds[0] >= 0 && _next == Next::ready) {
            _next = Next::renaming;
            advance_next(ring);
            return;
        }
        if (!rotate()) {
            enter_failure(now_mono_ns);
            ++_stats.failures;
            for (const Entry& e : _pending) {
                done(e.cookie, false);
            }
            _pending.clear();
            return;
        }
    }
    submit_group(ring, bytes, now_mono_ns);
}

template <typename F>
void SpoolWriter::answer_settled(F&& done) {
    while (_inflight_groups != 0) {
        Group& g = _groups[_oldest];
        if (g.write_pending || g.sync_pending) {
            return;
        }
        const bool durable = !g.failed;
        if (durable) {
            if (_progress != nullptr) {
                _progress->publish(_seq, g.offset + g.bytes);
            }
            ++_stats.groups;
            _stats.records += g.entries.size();
            _stats.bytes += g.bytes;
        } else {
            ++_stats.failures;
        }
        for (const Entry& e : g.entries) {
            done(e.cookie, durable);
        }
        g.entries.clear();
        _oldest = (_oldest + 1) % max_inflight;
        --_inflight_groups;
    }
}

} // namespace portcullis::queue
