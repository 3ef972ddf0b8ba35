#include "portcullis/queue/job_store.hh"

#include "portcullis/base/log.hh"
#include "portcullis/queue/ledger.hh"
#include "portcullis/queue/segment.hh"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace portcullis::queue {

namespace {

using base::Level;
using base::LogLine;

std::string errno_text() {
    return std::strerror(errno);
}

// Ledgers past this many bytes are compacted at start-up (48 bytes an op: about 1.4 M ops).
constexpr uint64_t ledger_compact_bytes = 64ull * 1024 * 1024;
// How much read() reads at a time when the record asked for is not in its buffer.
constexpr uint64_t read_ahead_bytes = 1024 * 1024;

} // namespace

JobStore::~JobStore() {
    for (auto& [key, seg] : _segments) {
        if (seg.fd >= 0) {
            ::close(seg.fd);
        }
    }
    if (_ledger_fd >= 0) {
        ::close(_ledger_fd);
    }
}

int JobStore::route_index(std::string_view name) const {
    for (size_t i = 0; i < _route_names.size(); ++i) {
        if (_route_names[i] == name) {
            return static_cast<int>(i);
        }
    }
    return -1;
}

std::string_view JobStore::route_name(uint16_t route) const {
    return route < _route_names.size() ? std::string_view(_route_names[route]) : "";
}

uint64_t JobStore::spool_bytes() const {
    uint64_t n = 0;
    for (const auto& [key, seg] : _segments) {
        n += seg.size;
    }
    return n;
}

std::string JobStore::open(const config::Snapshot& snapshot, int64_t now_ns) {
    const config::Config& cfg = snapshot.config();
    _dir = cfg.spool.dir;
    _retention_ns = cfg.spool.retention_ns;
    std::vector<uint32_t> max_attempts;
    for (const config::Route& r : snapshot.routes()) {
        _route_names.push_back(r.config->name);
        max_attempts.push_back(r.config->max_attempts);
    }
    _table = std::make_unique<JobTable>(std::move(max_attempts));

    ListResult listed = list_segments(_dir);
    if (!listed.error.empty()) {
        return listed.error;
    }
    for (const SegmentFile& f : listed.segments) {
        if (auto err = index_segment(f.shard, f.seq, f.path); !err.empty()) {
            return err;
        }
        if (_tails.size() <= f.shard) {
            _tails.resize(f.shard + 1);
        }
        _tails[f.shard].seq = std::max(_tails[f.shard].seq, f.seq);
    }

    add_found(); // before the ledger: its ops apply to these jobs
    const std::string ledger = _dir + "/ledger.log";
    LedgerRecovery rec = recover_ledger(ledger);
    if (!rec.error.empty()) {
        return rec.error;
    }
    if (rec.cut_bytes != 0) {
        LogLine(Level::warn, "ledger: cut torn tail")
            .field("path", ledger)
            .field("bytes", static_cast<int64_t>(rec.cut_bytes))
            .write();
    }
    for (const LedgerOp& op : rec.ops) {
        _table->apply(op);
    }
    if (rec.valid_bytes > ledger_compact_bytes) {
        // Most of a long ledger is about jobs long settled or deleted: keep what still matters.
        if (auto err = write_ledger_snapshot(ledger, _table->snapshot_ops()); !err.empty()) {
            return err;
        }
    }
    _ledger_fd = ::open(ledger.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (_ledger_fd < 0) {
        return "cannot open " + ledger + ": " + errno_text();
    }
    // The ledger may have just been created: its name must be durable before an ack's
    // fdatasync of its bytes is, or a power cut takes the whole file.
    if (auto err = sync_dir(_dir); !err.empty()) {
        return err;
    }
    LogLine(Level::info, "job index ready")
        .field("jobs", static_cast<int64_t>(_table->size()))
        .field("ledger_ops", static_cast<int64_t>(rec.ops.size()))
        .write();
    retire(now_ns);
    return {};
}

std::string JobStore::index_segment(uint32_t shard, uint64_t seq, const std::string& path) {
    Segment& seg = _segments[{shard, seq}];
    if (segment_fd(shard, seq, seg) < 0) {
        return "cannot open " + path + ": " + errno_text();
    }
    advance(shard, seq, seg);
    return {};
}

int JobStore::segment_fd(uint32_t shard, uint64_t seq, Segment& seg) {
    if (seg.fd < 0) {
        seg.fd = ::open(segment_path(_dir, shard, seq).c_str(), O_RDONLY | O_CLOEXEC);
    }
    return seg.fd;
}

size_t JobStore::advance(uint32_t shard, uint64_t seq, Segment& seg) {
    int fd = segment_fd(shard, seq, seg);
    if (fd < 0) {
        return 0;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        return 0;
    }
    uint64_t end = static_cast<uint64_t>(st.st_size);
    uint64_t from = seg.size < segment_header_size ? segment_header_size : seg.size;
    if (end <= from) {
        seg.size = from;
        return 0;
    }
    _scratch.resize(end - from);
    ssize_t got = ::pread(fd, _scratch.data(), _scratch.size(), static_cast<off_t>(from));
    if (got <= 0) {
        return 0;
    }
    std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(_scratch.data()),
                                   static_cast<size_t>(got));
    size_t found = 0;
    size_t at = 0;
    while (at < bytes.size()) {
        JobRecord rec;
        size_t size = 0;
        DecodeStatus status = decode_record(bytes.subspan(at), rec, size);
        if (status != DecodeStatus::ok) {
            // A write in progress (truncated) is read again next time. Anything else is damage
            // the shard's recovery reports at its next start; skip to the next record here.
            if (status == DecodeStatus::truncated) {
                break;
            }
            size_t next = at + 1;
            while (next < bytes.size() &&
                   decode_record(bytes.subspan(next), rec, size) != DecodeStatus::ok) {
                ++next;
            }
            if (next >= bytes.size()) {
                break;
            }
            at = next;
            continue;
        }
        int route = route_index(rec.route);
        if (route < 0) {
            ++_stats.unknown_routes;
        } else {
            _found.push_back({rec.id,
                              static_cast<uint16_t>(route),
                              rec.received_at_ns,
                              {shard, seq, from + at, static_cast<uint32_t>(size)}});
            ++found;
        }
        seg.newest_ns = std::max(seg.newest_ns, rec.received_at_ns);
        at += size;
    }
    seg.size = from + at;
    return found;
}

void JobStore::add_found() {
    // Shards write side by side; ids sort by time first, so consumers get jobs oldest first
    // whichever shard took them.
    std::sort(_found.begin(), _found.end(),
              [](const Found& a, const Found& b) { return a.id < b.id; });
    for (const Found& f : _found) {
        if (_table->add(f.id, f.route, f.received_at_ns, f.where)) {
            ++_stats.jobs_found;
        }
    }
    _found.clear();
}

size_t JobStore::poll() {
    size_t found = 0;
    for (uint32_t shard = 0; shard < _tails.size(); ++shard) {
        Tail& tail = _tails[shard];
        if (tail.seq == 0) {
            continue;
        }
        while (true) {
            Segment& seg = _segments[{shard, tail.seq}];
            found += advance(shard, tail.seq, seg);
            // The next segment exists: this one is finished. Read its last bytes, then move on.
            struct stat st {};
            std::string next = segment_path(_dir, shard, tail.seq + 1);
            if (::stat(next.c_str(), &st) != 0) {
                break;
            }
            found += advance(shard, tail.seq, seg);
            ++tail.seq;
        }
    }
    add_found();
    return found;
}

bool JobStore::read(const JobLocation& where, JobRecord& rec) {
    auto it = _segments.find({where.shard, where.segment});
    if (it == _segments.end() || where.offset + where.size > it->second.size) {
        return false;
    }
    const bool cached = _cache_shard == where.shard && _cache_segment == where.segment &&
                        where.offset >= _cache_from &&
                        where.offset + where.size <= _cache_from + _cache.size();
    if (!cached) {
        // Leases hand out jobs in the order they were written, so the next ones are usually
        // right after this one: read ahead, up to the indexed end of the segment.
        int fd = segment_fd(where.shard, where.segment, it->second);
        if (fd < 0) {
            return false;
        }
        const uint64_t want = std::min<uint64_t>(std::max<uint64_t>(where.size, read_ahead_bytes),
                                                 it->second.size - where.offset);
        _cache.resize(want);
        ssize_t got = ::pread(fd, _cache.data(), _cache.size(), static_cast<off_t>(where.offset));
        if (got < static_cast<ssize_t>(where.size)) {
            _cache_segment = 0;
            _cache.clear();
            return false;
        }
        _cache.resize(static_cast<size_t>(got));
        _cache_shard = where.shard;
        _cache_segment = where.segment;
        _cache_from = where.offset;
    }
    size_t size = 0;
    const auto* p = reinterpret_cast<const uint8_t*>(_cache.data()) + (where.offset - _cache_from);
    return decode_record({p, where.size}, rec, size) == DecodeStatus::ok && size == where.size;
}

std::span<const uint8_t> JobStore::take_ops() {
    std::vector<LedgerOp>& ops = _table->pending_ops();
    _ledger_buf.resize(ops.size() * ledger_record_size);
    for (size_t i = 0; i < ops.size(); ++i) {
        encode_ledger_op(ops[i],
                         std::span<uint8_t, ledger_record_size>(
                             _ledger_buf.data() + i * ledger_record_size, ledger_record_size));
    }
    _stats.ledger_ops += ops.size();
    ops.clear();
    return _ledger_buf;
}

bool JobStore::commit(bool sync) {
    std::span<const uint8_t> bytes = take_ops();
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::write(_ledger_fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            ++_stats.ledger_errors;
            return false;
        }
        done += static_cast<size_t>(n);
    }
    if (sync && ::fdatasync(_ledger_fd) != 0) {
        ++_stats.ledger_errors;
        return false;
    }
    return true;
}

size_t JobStore::retire(int64_t now_ns) {
    size_t deleted = 0;
    std::vector<uint32_t> synced; // shard folders to fsync, so that a deletion stays done
    for (auto it = _segments.begin(); it != _segments.end();) {
        auto [shard, seq] = it->first;
        Segment& seg = it->second;
        bool newest = shard < _tails.size() && _tails[shard].seq <= seq;
        if (newest || seg.newest_ns + _retention_ns > now_ns ||
            _table->unsettled_in_segment(shard, seq) != 0) {
            ++it;
            continue;
        }
        std::string path = segment_path(_dir, shard, seq);
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
            LogLine(Level::error, "spool: cannot delete a retired segment")
                .field("segment", path)
                .field("error", errno_text())
                .write();
            ++it;
            continue;
        }
        if (seg.fd >= 0) {
            ::close(seg.fd);
        }
        _table->drop_segment(shard, seq);
        LogLine(Level::info, "spool: segment retired")
            .field("segment", path)
            .field("bytes", static_cast<int64_t>(seg.size))
            .write();
        it = _segments.erase(it);
        ++deleted;
        ++_stats.segments_deleted;
        if (std::find(synced.begin(), synced.end(), shard) == synced.end()) {
            synced.push_back(shard);
        }
    }
    for (uint32_t shard : synced) {
        sync_dir(_dir + "/shard-" + std::to_string(shard));
    }
    return deleted;
}

} // namespace portcullis::queue
