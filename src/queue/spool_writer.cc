#include "portcullis/queue/spool_writer.hh"

#include "portcullis/base/log.hh"
#include "portcullis/queue/segment.hh"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace portcullis::queue {

namespace {

using base::Level;
using base::LogLine;

// How long the spool refuses appends after a failed group before it tries the disk again.
constexpr int64_t failure_backoff_ns = 1'000'000'000;

std::string errno_text() {
    return std::strerror(errno);
}

} // namespace

SpoolWriter::~SpoolWriter() {
    if (_fd >= 0) {
        ::close(_fd);
    }
}

std::string SpoolWriter::open(const std::string& dir, uint32_t shard,
                              const config::SpoolConfig& cfg, const RecordCallback& on_record,
                              SpoolProgress* progress) {
    _dir = dir;
    _progress = progress;
    _shard = shard;
    _cfg = cfg;
    _pending.reserve(max_group);
    _inflight.reserve(max_group);
    _iovs.reserve(max_group);
    std::string shard_dir = dir + "/shard-" + std::to_string(shard);
    if (auto err = make_dir(shard_dir); !err.empty()) {
        return err;
    }
    ListResult listed = list_segments(dir);
    if (!listed.error.empty()) {
        return listed.error;
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
    if (_fd >= 0) {
        ::close(_fd);
        _fd = -1;
    }
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
    _fd = fd;
    _offset = segment_header_size;
    ++_stats.segments_opened;
    if (_progress != nullptr) {
        _progress->publish(_seq, _offset);
    }
    return {};
}

bool SpoolWriter::append(std::span<const uint8_t> record, uint64_t cookie, config::Durability d) {
    if (_failed_until_ns != 0 || _pending.size() >= max_group || _fd < 0) {
        return false;
    }
    _pending.push_back(Entry{{const_cast<uint8_t*>(record.data()), record.size()}, cookie, d});
    return true;
}

void SpoolWriter::submit_periodic_sync(io::Ring& ring, int64_t now_mono_ns) {
    if (_dirty && _inflight.empty() && !_sync_inflight &&
        now_mono_ns - _last_sync_ns >= batch_sync_interval_ns) {
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_fsync(sqe, _fd, IORING_FSYNC_DATASYNC);
        sqe->user_data = spool_sync_tag << 56 | 1;
        _sync_inflight = true;
        _dirty = false;
        _last_sync_ns = now_mono_ns;
    }
}

bool SpoolWriter::submit_group(io::Ring& ring) {
    size_t bytes = 0;
    for (const Entry& e : _pending) {
        bytes += e.iov.iov_len;
    }
    if (_offset > segment_header_size && _offset + bytes > _cfg.segment_size) {
        if (auto err = start_segment(); !err.empty()) {
            LogLine(Level::error, "spool: cannot rotate segment").field("error", err).write();
            _inflight.swap(_pending);
            _group_bytes = bytes;
            return false;
        }
    }
    _inflight.swap(_pending);
    _iovs.clear();
    _group_needs_sync = false;
    _group_needs_batch = false;
    for (const Entry& e : _inflight) {
        _iovs.push_back(e.iov);
        _group_needs_sync |= e.durability == config::Durability::fsync;
        _group_needs_batch |= e.durability == config::Durability::batch;
    }
    _group_offset = _offset;
    _group_bytes = bytes;
    _write_done = false;

    io_uring_sqe* w = ring.sqe();
    io_uring_prep_writev(w, _fd, _iovs.data(), static_cast<unsigned>(_iovs.size()), _offset);
    w->user_data = spool_write_tag << 56;
    if (_group_needs_sync) {
        w->flags |= IOSQE_IO_LINK;
        io_uring_sqe* s = ring.sqe();
        io_uring_prep_fsync(s, _fd, IORING_FSYNC_DATASYNC);
        s->user_data = spool_sync_tag << 56;
    }
    return true;
}

void SpoolWriter::fail_group(int64_t now_mono_ns) {
    // Cut whatever part of the group reached the file so that no partial record remains: the
    // failure path is rare and may block.
    if (_fd >= 0 && ::ftruncate(_fd, static_cast<off_t>(_group_offset)) == 0) {
        ::fdatasync(_fd);
    }
    _offset = _group_offset;
    enter_failure(now_mono_ns);
}

void SpoolWriter::enter_failure(int64_t now_mono_ns) {
    _failed_until_ns = now_mono_ns + failure_backoff_ns;
    LogLine(Level::error, "spool: write failed; answering 503 until the disk takes writes again")
        .field("shard", static_cast<int64_t>(_shard))
        .write();
}

} // namespace portcullis::queue
