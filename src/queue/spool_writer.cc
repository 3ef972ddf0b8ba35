#include "portcullis/queue/spool_writer.hh"

#include "portcullis/base/log.hh"
#include "portcullis/io/fd_budget.hh"
#include "portcullis/queue/segment.hh"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <iterator>
#include <sys/stat.h>
#include <unistd.h>

namespace portcullis::queue {

namespace {

using base::Level;
using base::LogLine;

// The file descriptor budget counts one descriptor of the open segment per group in flight, as
// many of the prepared next segment, and the shard folder twice (held for the rename's fsync,
// and opened again when a segment is created in place).
static_assert(io::fd_per_shard == 20 + 2 * SpoolWriter::max_inflight,
              "io::fd_per_shard must follow SpoolWriter::max_inflight");

// How long the spool refuses appends after a failed group before it tries the disk again.
constexpr int64_t failure_backoff_ns = 1'000'000'000;

std::string errno_text() {
    return std::strerror(errno);
}

} // namespace

SpoolWriter::~SpoolWriter() {
    close_segment();
    if (_next != Next::none && _next != Next::failed) {
        discard_next(nullptr);
    }
    if (_dir_fd >= 0) {
        ::close(_dir_fd);
    }
}

void SpoolWriter::close_segment() {
    for (int& fd : _fds) {
        if (fd >= 0) {
            ::close(fd);
        }
        fd = -1;
    }
}

std::string SpoolWriter::open(const std::string& dir, uint32_t shard,
                              const config::SpoolConfig& cfg, const RecordCallback& on_record,
                              SpoolProgress* progress, int64_t remember_since_unix_ns) {
    _dir = dir;
    _progress = progress;
    _shard = shard;
    _cfg = cfg;
    _fds.fill(-1);
    _pending.reserve(max_group);
    for (Group& g : _groups) {
        g.entries.reserve(max_group);
        g.iovs.reserve(max_group);
    }
    std::string shard_dir = dir + "/shard-" + std::to_string(shard);
    if (auto err = make_dir(shard_dir); !err.empty()) {
        return err;
    }
    // A next segment a crash left holds no record: it is prepared again.
    _next_path = shard_dir + "/" + std::string(next_segment_file_name);
    ::unlink(_next_path.c_str());
    _dir_fd = ::open(shard_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (_dir_fd < 0) {
        return "cannot open " + shard_dir + ": " + errno_text();
    }
    ListResult listed = list_segments(dir);
    if (!listed.error.empty()) {
        return listed.error;
    }
    uint64_t newest = 0;
    for (const SegmentFile& seg : listed.segments) {
        if (seg.shard == shard) {
            newest = std::max(newest, seg.seq);
        }
    }
    for (const SegmentFile& seg : listed.segments) {
        if (seg.shard != shard) {
            continue;
        }
        if (seg.seq > max_segment_seq) {
            return seg.path + ": the largest segment number there is; no segment can follow it" +
                   " (was the file renamed?)";
        }
        _seq = std::max(_seq, seg.seq);
        struct stat st {};
        if (seg.seq != newest && remember_since_unix_ns != INT64_MIN &&
            ::stat(seg.path.c_str(), &st) == 0 &&
            static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec <
                remember_since_unix_ns) {
            // Finished before the last start (a newer segment follows) and older than anything
            // on_record keeps: the control plane's index still reads and checks it.
            ++_stats.segments_not_read;
            continue;
        }
        std::string error;
        ScanReport report = recover_segment(seg.path, on_record, error);
        if (!error.empty()) {
            return seg.path + ": " + error;
        }
        _stats.recovered_records += report.records;
        if (report.tail_cut) {
            _stats.cut_tail_bytes += report.tail_bytes;
            LogLine(Level::warn, "spool: cut torn tail")
                .field("segment", seg.path)
                .field("offset", static_cast<int64_t>(report.valid_end))
                .field("bytes", static_cast<int64_t>(report.tail_bytes))
                .write();
        }
        for (const CorruptRegion& c : report.corrupt) {
            LogLine(Level::error, "spool: corrupt region skipped")
                .field("segment", seg.path)
                .field("offset", static_cast<int64_t>(c.offset))
                .field("bytes", static_cast<int64_t>(c.length))
                .field("why", describe(c.why))
                .write();
        }
        if (!report.header_error.empty()) {
            LogLine(Level::error, "spool: bad segment header")
                .field("segment", seg.path)
                .field("error", report.header_error)
                .write();
        }
    }
    // Segments written before a restart stay as they are; new records go to a new segment.
    return start_segment();
}

std::string SpoolWriter::start_segment() {
    close_segment();
    ++_seq;
    std::string path = segment_path(_dir, _shard, _seq);
    // Rotation is the one place the append side blocks: once per segment_size of records.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) {
        return "cannot create segment " + path + ": " + errno_text();
    }
    uint8_t header[segment_header_size];
    encode_segment_header(_shard, std::span<uint8_t, segment_header_size>(header));
    if (::pwrite(fd, header, sizeof header, 0) != static_cast<ssize_t>(sizeof header) ||
        ::fdatasync(fd) != 0) {
        std::string err = "cannot initialise segment " + path + ": " + errno_text();
        ::close(fd);
        ::unlink(path.c_str());
        return err;
    }
    // The new file's name must be durable too, or a crash could take its records with it.
    if (std::string err = sync_dir(_dir + "/shard-" + std::to_string(_shard)); !err.empty()) {
        ::close(fd);
        ::unlink(path.c_str());
        return err;
    }
    _fds[0] = fd;
    // The other slots' descriptions of the same file (see the top of spool_writer.hh).
    for (size_t i = 1; i < max_inflight; ++i) {
        _fds[i] = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        if (_fds[i] < 0) {
            std::string err = "cannot open segment " + path + ": " + errno_text();
            close_segment();
            ::unlink(path.c_str());
            return err;
        }
    }
    _offset = segment_header_size;
    ++_stats.segments_opened;
    if (_progress != nullptr) {
        _progress->publish(_seq, _offset);
    }
    return {};
}

bool SpoolWriter::rotate() {
    if (auto err = start_segment(); !err.empty()) {
        LogLine(Level::error, "spool: cannot rotate segment").field("error", err).write();
        return false;
    }
    if (_next == Next::failed) {
        _next = Next::none; // the disk took a segment again: prepare the next one ahead
    }
    return true;
}

void SpoolWriter::advance_next(io::Ring& ring) {
    switch (_next) {
    case Next::none: {
        if (_fds[0] < 0 || _dir_fd < 0 || _offset < _cfg.segment_size / 2) {
            return; // not yet half full, or no segment to rotate from (the next is made in place)
        }
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_openat(sqe, AT_FDCWD, _next_path.c_str(),
                             O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        sqe->user_data = prepare_data(Step::open_first, 0);
        _next = Next::opening;
        _next_waiting = 1;
        _next_error = 0;
        return;
    }
    case Next::opened: {
        encode_segment_header(_shard, std::span<uint8_t, segment_header_size>(_next_header));
        if (io_uring_sq_space_left(ring.raw()) < 2) {
            io_uring_submit(ring.raw()); // the write and its fdatasync in one submission
        }
        io_uring_sqe* w = ring.sqe();
        io_uring_prep_write(w, _next_fds[0], _next_header.data(), segment_header_size, 0);
        w->flags |= IOSQE_IO_LINK;
        w->user_data = prepare_data(Step::header, 0);
        io_uring_sqe* s = ring.sqe();
        io_uring_prep_fsync(s, _next_fds[0], IORING_FSYNC_DATASYNC);
        s->user_data = prepare_data(Step::header_sync, 0);
        for (size_t i = 1; i < max_inflight; ++i) {
            io_uring_sqe* o = ring.sqe();
            io_uring_prep_openat(o, AT_FDCWD, _next_path.c_str(), O_WRONLY | O_CLOEXEC, 0);
            o->user_data = prepare_data(Step::open_more, i);
        }
        _next = Next::initialising;
        _next_waiting = 2 + static_cast<int>(max_inflight - 1);
        return;
    }
    case Next::renaming: {
        if (_next_waiting != 0) {
            return; // in flight
        }
        _rename_to = segment_path(_dir, _shard, _seq + 1);
        if (io_uring_sq_space_left(ring.raw()) < 2) {
            io_uring_submit(ring.raw()); // the rename and its fsync in one submission
        }
        io_uring_sqe* r = ring.sqe();
        io_uring_prep_renameat(r, AT_FDCWD, _next_path.c_str(), AT_FDCWD, _rename_to.c_str(), 0);
        r->flags |= IOSQE_IO_LINK;
        r->user_data = prepare_data(Step::rename, 0);
        io_uring_sqe* s = ring.sqe();
        io_uring_prep_fsync(s, _dir_fd, 0);
        s->user_data = prepare_data(Step::dir_sync, 0);
        _next_waiting = 2;
        _next_error = 0;
        _renamed = false;
        return;
    }
    case Next::opening:
    case Next::initialising:
    case Next::ready:
    case Next::failed:
        return;
    }
}

void SpoolWriter::on_prepare_cqe(const io_uring_cqe& cqe) {
    if (_next_waiting == 0) {
        return;
    }
    --_next_waiting;
    const auto step = static_cast<Step>((cqe.user_data >> 8) & 0xff);
    const size_t slot = cqe.user_data & 0xff;
    int error = cqe.res < 0 ? -cqe.res : 0;
    if (step == Step::header && cqe.res >= 0 && cqe.res != static_cast<int>(segment_header_size)) {
        error = EIO; // a short write of the header
    }
    if (error == 0 && (step == Step::open_first || step == Step::open_more) &&
        slot < max_inflight) {
        _next_fds[slot] = cqe.res;
    }
    _renamed = _renamed || (step == Step::rename && error == 0);
    // A linked operation cancelled by its predecessor's failure reports that failure, not its own.
    if (error != 0 && error != ECANCELED && _next_error == 0) {
        _next_error = error;
        _next_failed_step = step;
    }
    if (_next_waiting != 0) {
        return;
    }
    if (_next_error != 0) {
        if (_renamed) {
            ::unlink(_rename_to.c_str()); // renamed, but the name may not last: it holds no record
        }
        discard_next(_next == Next::renaming ? "spool: cannot rename the next segment"
                                             : "spool: cannot prepare the next segment");
        return;
    }
    switch (_next) {
    case Next::opening:
        _next = Next::opened;
        return;
    case Next::initialising:
        _next = Next::ready;
        return;
    case Next::renaming:
        adopt_next();
        return;
    default:
        return;
    }
}

void SpoolWriter::discard_next(const char* why) {
    for (int& fd : _next_fds) {
        if (fd >= 0) {
            ::close(fd);
        }
        fd = -1;
    }
    ::unlink(_next_path.c_str()); // holds no record
    if (why != nullptr) {
        static constexpr const char* step_names[] = {
            "", "create", "write header", "fdatasync header", "open", "rename", "fsync folder"};
        static_assert(std::size(step_names) == static_cast<size_t>(Step::dir_sync) + 1);
        LogLine(Level::warn, why)
            .field("shard", static_cast<int64_t>(_shard))
            .field("step", step_names[static_cast<size_t>(_next_failed_step)])
            .field("error", std::strerror(_next_error))
            .field("then", "the next segment is created in place when this one is full")
            .write();
    }
    _next = Next::failed;
}

void SpoolWriter::adopt_next() {
    close_segment();
    _fds = _next_fds;
    _next_fds.fill(-1);
    ++_seq;
    _offset = segment_header_size;
    ++_stats.segments_opened;
    if (_progress != nullptr) {
        _progress->publish(_seq, _offset);
    }
    _next = Next::none;
}

bool SpoolWriter::append(std::span<const uint8_t> record, uint64_t cookie, config::Durability d) {
    if (_failed_until_ns != 0 || _failing || _pending.size() >= max_group) {
        return false;
    }
    _pending.push_back(Entry{{const_cast<uint8_t*>(record.data()), record.size()}, cookie, d});
    return true;
}

void SpoolWriter::submit_periodic_sync(io::Ring& ring, int64_t now_mono_ns) {
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_fsync(sqe, _fds[0], IORING_FSYNC_DATASYNC);
    sqe->user_data = spool_sync_tag << 56 | periodic_sync_bit;
    _sync_inflight = true;
    _dirty = false;
    _last_sync_ns = now_mono_ns;
}

void SpoolWriter::submit_group(io::Ring& ring, size_t bytes, int64_t now_mono_ns) {
    const size_t slot = slot_at(_inflight_groups);
    Group& g = _groups[slot];
    g.entries.swap(_pending); // both keep their reserved capacity: no allocation
    g.iovs.clear();
    g.needs_sync = false;
    g.needs_batch = false;
    for (const Entry& e : g.entries) {
        g.iovs.push_back(e.iov);
        g.needs_sync |= e.durability == config::Durability::fsync;
        g.needs_batch |= e.durability == config::Durability::batch;
    }
    g.number = ++_groups_submitted;
    g.offset = _offset;
    g.bytes = bytes;
    g.write_pending = true;
    g.sync_pending = g.needs_sync;
    g.failed = false;
    g.submitted_ns = now_mono_ns;
    _offset += bytes;
    if (_inflight_groups != 0) {
        ++_stats.overlapped_groups;
    }
    ++_inflight_groups;
    _stats.deepest_inflight = std::max<uint64_t>(_stats.deepest_inflight, _inflight_groups);

    const uint64_t slot_bits = uint64_t{slot} << slot_shift;
    if (g.needs_sync && io_uring_sq_space_left(ring.raw()) < 2) {
        // The write and its fdatasync must go in one submission: Ring::sqe() submitting the
        // queue between them would end the link, and the fdatasync could run before the write.
        io_uring_submit(ring.raw());
    }
    io_uring_sqe* w = ring.sqe();
    io_uring_prep_writev(w, _fds[slot], g.iovs.data(), static_cast<unsigned>(g.iovs.size()),
                         g.offset);
    w->user_data = spool_write_tag << 56 | slot_bits;
    if (g.needs_sync) {
        w->flags |= IOSQE_IO_LINK;
        io_uring_sqe* s = ring.sqe();
        io_uring_prep_fsync(s, _fds[slot], IORING_FSYNC_DATASYNC);
        s->user_data = spool_sync_tag << 56 | slot_bits;
    }
}

void SpoolWriter::fail_from(size_t slot, int64_t now_mono_ns) {
    const uint64_t offset = _groups[slot].offset;
    for (size_t age = (slot + max_inflight - _oldest) % max_inflight; age < _inflight_groups;
         ++age) {
        _groups[slot_at(age)].failed = true;
    }
    if (!_failing || offset < _cut) {
        _cut = offset;
    }
    if (!_failing) {
        _failing = true;
        enter_failure(now_mono_ns);
    }
}

void SpoolWriter::cut_failed_tail() {
    // Cut whatever part of the failed groups reached the file so that no partial record
    // remains: nothing is in flight, so no write lands after the cut. The failure path is rare
    // and may block.
    if (_fds[0] >= 0 && ::ftruncate(_fds[0], static_cast<off_t>(_cut)) == 0) {
        ::fdatasync(_fds[0]);
    }
    consume_reported_errors();
    _offset = _cut;
    _failing = false;
}

void SpoolWriter::consume_reported_errors() {
    for (int fd : _fds) {
        if (fd >= 0) {
            ::fdatasync(fd);
        }
    }
}

void SpoolWriter::enter_failure(int64_t now_mono_ns) {
    _failed_until_ns = now_mono_ns + failure_backoff_ns;
    _metrics.refusing.store(true, std::memory_order_relaxed);
    LogLine(Level::error, "spool: write failed; answering 503 until the disk takes writes again")
        .field("shard", static_cast<int64_t>(_shard))
        .write();
}

} // namespace portcullis::queue
