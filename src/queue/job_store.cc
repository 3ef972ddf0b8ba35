#include "portcullis/queue/job_store.hh"

#include "portcullis/base/log.hh"
#include "portcullis/base/memory.hh"
#include "portcullis/base/zeroed_pages.hh"
#include "portcullis/queue/lanes.hh"
#include "portcullis/queue/ledger.hh"
#include "portcullis/queue/segment.hh"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <system_error>
#include <thread>
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
// What advance() keeps of its read buffer between polls.
constexpr size_t scratch_keep_bytes = 4 * 1024 * 1024;

// Start-up reads each segment once, from the page cache the readahead fills: mapped rather than
// copied (pread's copy was 40% of the time to index a deep spool). Only while open() runs,
// when no writer appends to a segment or cuts one (the shards wait for the index to serve).
class SegmentMap {
public:
    SegmentMap() = default;
    SegmentMap(const SegmentMap&) = delete;
    SegmentMap& operator=(const SegmentMap&) = delete;
    ~SegmentMap() {
        if (_addr != MAP_FAILED) {
            ::munmap(_addr, _length);
        }
    }
    // Bytes [from, end) of the file, or nothing when it cannot be mapped (then read it).
    std::span<const uint8_t> open(int fd, uint64_t end, uint64_t from) {
        _length = end;
        _addr = ::mmap(nullptr, _length, PROT_READ, MAP_PRIVATE, fd, 0);
        if (_addr == MAP_FAILED) {
            return {};
        }
        ::madvise(_addr, _length, MADV_SEQUENTIAL);
        return {static_cast<const uint8_t*>(_addr) + from, end - from};
    }

private:
    void* _addr = MAP_FAILED;
    size_t _length = 0;
};
// How much read() reads at a time when the record asked for is not in its buffer.
constexpr uint64_t read_ahead_bytes = 1024 * 1024;

// Start-up's reading ahead, on a thread of its own: it asks the page cache for the segments
// after the one being scanned, up to lead_bytes past it. A WILLNEED blocks once the device's
// queue is full, so asked for by the scanning thread it made reading and indexing take turns
// (start-up took the disk's time plus the index's); from here the disk reads while the scan
// runs. 10 M jobs: 0.68-0.73x dd's rate before, 0.83-0.87x after (bench/spool/deep).
class ReadAhead {
public:
    static constexpr uint64_t lead_bytes = 256ull * 1024 * 1024;

    explicit ReadAhead(const std::vector<SegmentFile>& segments) : _segments(segments) {
        try {
            _thread = std::thread([this] { run(); });
        } catch (const std::system_error&) {
            // No thread to spare: the scan's own readahead (MADV_SEQUENTIAL) still reads.
        }
    }
    ReadAhead(const ReadAhead&) = delete;
    ReadAhead& operator=(const ReadAhead&) = delete;
    ~ReadAhead() {
        _scanning.store(SIZE_MAX, std::memory_order_release);
        _scanning.notify_one();
        if (_thread.joinable()) {
            _thread.join();
        }
    }

    // The scan has reached segment i.
    void scanning(size_t i) {
        _scanning.store(i, std::memory_order_release);
        _scanning.notify_one();
    }

private:
    void run() {
        // before[i]: the bytes of the segments before i.
        std::vector<uint64_t> before(_segments.size() + 1, 0);
        for (size_t i = 0; i < _segments.size(); ++i) {
            before[i + 1] = before[i] + _segments[i].size;
        }
        for (size_t i = 1; i < _segments.size(); ++i) {
            size_t at = _scanning.load(std::memory_order_acquire);
            while (at < i && before[i] - before[at] > lead_bytes) {
                _scanning.wait(at, std::memory_order_acquire);
                at = _scanning.load(std::memory_order_acquire);
            }
            if (at == SIZE_MAX) {
                return;
            }
            if (at >= i) {
                continue; // the scan got there first
            }
            const int fd = ::open(_segments[i].path.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                continue; // the scan reports it
            }
            // One WILLNEED reads at most the device's readahead window (read_ahead_kb, 128 KiB
            // by default): ask for the segment in pieces no larger.
            constexpr off_t piece = 128 * 1024;
            for (off_t off = 0; off < static_cast<off_t>(_segments[i].size); off += piece) {
                ::posix_fadvise(fd, off, piece, POSIX_FADV_WILLNEED);
            }
            ::close(fd);
        }
    }

    const std::vector<SegmentFile>& _segments;
    std::atomic<size_t> _scanning{0};
    std::thread _thread;
};

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
    auto it = _route_by_name.find(name);
    return it == _route_by_name.end() ? -1 : static_cast<int>(it->second);
}

int JobStore::sink_index(std::string_view name) const {
    for (size_t i = 0; i < _sink_names.size(); ++i) {
        if (_sink_names[i] == name) {
            return static_cast<int>(i);
        }
    }
    return -1;
}

RouteOptions JobStore::pull_options(size_t r) const {
    return {_route_max_attempts[r], !_route_sinks[r].empty(), _route_ordered[r]};
}

RouteOptions JobStore::sink_options(size_t r) const {
    return {_route_max_attempts[r], false, _route_ordered[r]};
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

std::string JobStore::open(const config::Snapshot& snapshot,
                           std::span<const SpoolProgress> progress, int64_t now_ns) {
    const config::Config& cfg = snapshot.config();
    _progress = progress;
    _dir = cfg.spool.dir;
    _retention_ns = cfg.spool.retention_ns;
    std::vector<std::string> sink_names;
    for (const config::SinkConfig& sink : cfg.sinks) {
        sink_names.push_back(sink.name);
    }
    _sink_names = sink_names;
    _sink_active.assign(sink_names.size(), true);
    // The pull API's table, then one per sink: each has every route (route numbers are shared)
    // and holds the jobs of the routes that deliver to its sink.
    std::vector<RouteOptions> pull_routes;
    std::vector<RouteOptions> sink_routes;
    for (const config::Route& r : snapshot.routes()) {
        _route_by_name.emplace(r.config->name, static_cast<uint16_t>(_route_names.size()));
        _route_names.push_back(r.config->name);
        _route_ordered.push_back(r.config->ordered);
        _route_max_attempts.push_back(r.config->max_attempts);
        _route_configured.push_back(true);
        std::vector<uint16_t> sinks;
        for (const std::string& name : r.config->deliver) {
            auto it = std::find(sink_names.begin(), sink_names.end(), name);
            if (it != sink_names.end()) {
                sinks.push_back(static_cast<uint16_t>(it - sink_names.begin()));
            }
        }
        _route_sinks.push_back(std::move(sinks));
        pull_routes.push_back(pull_options(_route_names.size() - 1));
        sink_routes.push_back(sink_options(_route_names.size() - 1));
    }
    const std::string lanes_path = _dir + "/" + std::string(lanes_file_name);
    std::vector<LaneName> lanes_listed;
    if (auto err = read_lanes(_dir, lanes_listed); !err.empty()) {
        return err;
    }
    LaneAssignment lanes = assign_lanes(std::move(lanes_listed), sink_names, lanes_path);
    if (!lanes.error.empty()) {
        return lanes.error;
    }
    _tables.push_back(std::make_unique<JobTable>(std::move(pull_routes)));
    _lanes.push_back(0);
    for (size_t i = 0; i < sink_names.size(); ++i) {
        _tables.push_back(std::make_unique<JobTable>(sink_routes));
        _lanes.push_back(lanes.sink_lanes[i]);
    }
    _group_counts.assign(_tables.size(), 0);
    // Which table the ledger's ops of each lane go to: a sink's only if the file already gave
    // its number to that name (a number just given, or taken back from a sink no longer
    // configured, has no op of this sink yet).
    std::array<JobTable*, max_lane + 1> by_lane{};
    std::array<bool, max_lane + 1> known_lane{};
    by_lane[0] = _tables[0].get();
    known_lane[0] = true;
    for (const LaneName& l : lanes.listed) {
        known_lane[l.lane] = true;
        for (size_t i = 0; i < sink_names.size(); ++i) {
            if (sink_names[i] == l.sink && lanes.sink_lanes[i] == l.lane) {
                by_lane[l.lane] = _tables[i + 1].get();
            }
        }
    }

    ListResult listed = list_segments(_dir);
    if (!listed.error.empty()) {
        return listed.error;
    }
    _opening = true;
    {
        ReadAhead ahead(listed.segments);
        for (size_t i = 0; i < listed.segments.size(); ++i) {
            const SegmentFile& f = listed.segments[i];
            ahead.scanning(i);
            if (auto err = index_segment(f.shard, f.seq, f.path); !err.empty()) {
                return err;
            }
            if (_tails.size() <= f.shard) {
                _tails.resize(f.shard + 1);
            }
            _tails[f.shard].seq = std::max(_tails[f.shard].seq, f.seq);
        }
    }
    _opening = false;

    add_found(); // before the ledger: its ops apply to these jobs
    const std::string ledger = _dir + "/ledger.log";
    LedgerRecovery rec = recover_ledger(ledger);
    if (!rec.error.empty()) {
        return rec.error;
    }
    if (rec.cut_bytes != 0) {
        LogLine(Level::warn, "ledger: cut torn tail")
            .field("path", ledger)
            .field("offset", static_cast<int64_t>(rec.valid_bytes))
            .field("bytes", static_cast<int64_t>(rec.cut_bytes))
            .write();
    }
    for (const LedgerDamage& d : rec.damaged) {
        // The ops in it are lost (a job may be delivered once more); those after it are kept.
        ++_stats.ledger_damaged_regions;
        LogLine(Level::error, "ledger: damaged records skipped")
            .field("path", ledger)
            .field("offset", static_cast<int64_t>(d.offset))
            .field("bytes", static_cast<int64_t>(d.length))
            .write();
    }
    std::array<uint64_t, max_lane + 1> unlisted{};
    for (const LedgerOp& op : rec.ops) {
        if (JobTable* t = by_lane[op.lane]) {
            t->apply(op);
        } else if (known_lane[op.lane]) {
            ++_stats.ledger_ops_ignored; // a sink no longer configured
        } else {
            ++unlisted[op.lane];
        }
    }
    for (unsigned lane = 1; lane <= max_lane; ++lane) {
        if (unlisted[lane] != 0) {
            std::string err = ledger;
            err += ": " + std::to_string(unlisted[lane]);
            err += " ops of delivery lane " + std::to_string(lane);
            err += ", which " + lanes_path;
            err += " does not list (was it removed or edited?); not started, nothing changed";
            return err;
        }
    }
    if (_stats.ledger_ops_ignored != 0) {
        LogLine(Level::info, "ledger: ops of sinks no longer configured ignored")
            .field("path", ledger)
            .field("ops", static_cast<int64_t>(_stats.ledger_ops_ignored))
            .write();
    }
    // The engine that held the sinks' leases is gone: deliver those jobs again at once.
    for (size_t t = 1; t < _tables.size(); ++t) {
        _stats.leases_voided += _tables[t]->expire_leases(now_ns);
    }
    if (rec.valid_bytes > ledger_compact_bytes || lanes.reclaimed) {
        // Most of a long ledger is about jobs long settled or deleted: keep what still matters.
        // Lanes taken back from sinks no longer configured must lose their old ops before the
        // lanes file gives them to another.
        std::vector<LedgerOp> ops;
        for (size_t t = 0; t < _tables.size(); ++t) {
            for (LedgerOp op : _tables[t]->snapshot_ops()) {
                op.lane = _lanes[t];
                ops.push_back(op);
            }
        }
        if (auto err = write_ledger_snapshot(ledger, ops); !err.empty()) {
            return err;
        }
    }
    _lanes_listed = lanes.lanes;
    if (lanes.changed) {
        // Before any op of a new lane can be written.
        if (auto err = write_lanes(_dir, lanes.lanes); !err.empty()) {
            return err;
        }
        for (size_t i = 0; i < sink_names.size(); ++i) {
            LogLine(Level::info, "ledger: delivery lane")
                .field("sink", sink_names[i])
                .field("lane", static_cast<int64_t>(lanes.sink_lanes[i]))
                .write();
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
        .field("jobs", static_cast<int64_t>(_tables[0]->size()))
        .field("sinks", static_cast<int64_t>(sink_count()))
        .field("ledger_ops", static_cast<int64_t>(rec.ops.size()))
        .field("leases_voided", static_cast<int64_t>(_stats.leases_voided))
        .field("damaged_regions", static_cast<int64_t>(_stats.damaged_regions))
        .write();
    retire(now_ns);
    base::release_free_memory(); // what indexing a deep spool used and freed
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
    // What may be read: a segment its shard's writer has moved past (or one of an earlier run)
    // is final, to its end; of the one it appends to, only what it has committed. A group being
    // written, or one that failed and is being cut off again, is never indexed, so that every
    // byte read here is final and damage can be told from a write in progress.
    uint64_t end = static_cast<uint64_t>(st.st_size);
    if (shard < _progress.size()) {
        const SpoolProgress::Mark mark = _progress[shard].read();
        if (mark.seq < seq) {
            return 0; // created, not yet committed to
        }
        if (mark.seq == seq) {
            end = std::min(end, mark.end);
        }
    }
    uint64_t from = std::max<uint64_t>(seg.size, segment_header_size);
    if (end <= from) {
        seg.size = from;
        return 0;
    }
    std::span<const uint8_t> bytes;
    SegmentMap map;
    if (_opening) {
        bytes = map.open(fd, end, from);
    }
    if (bytes.empty()) {
        uint8_t* buf = _scratch.room(end - from);
        ssize_t got = ::pread(fd, buf, end - from, static_cast<off_t>(from));
        if (got <= 0) {
            return 0;
        }
        bytes = {buf, static_cast<size_t>(got)};
    }
    const uint64_t got = bytes.size();
    size_t found = 0;
    ScanReport r = scan_records(bytes, from, [&](uint64_t offset, const JobRecord& rec) {
        seg.newest_ns = std::max(seg.newest_ns, rec.received_at_ns);
        int route = route_index(rec.route);
        if (route < 0) {
            ++_stats.unknown_routes;
            // Kept by name: a reload that adds the route indexes them (recover_unknown).
            auto it = _unknown.find(rec.route);
            if (it == _unknown.end()) {
                it = _unknown
                         .emplace(std::string(rec.route), std::set<std::pair<uint32_t, uint64_t>>())
                         .first;
            }
            it->second.emplace(shard, seq);
            return;
        }
        add_record(shard, seq, offset, bytes.data() + (offset - from), rec,
                   static_cast<uint16_t>(route));
        ++found;
    });
    // The same damage the shard's recovery and `spool verify` report: skipped, not a reason to
    // stop reading the segment.
    const std::string path = segment_path(_dir, shard, seq);
    for (const CorruptRegion& c : r.corrupt) {
        note_damage(path, c.offset, c.length, describe(c.why));
    }
    if (r.tail_bytes != 0 && !r.tail_all_zero) {
        note_damage(path, r.valid_end, r.tail_bytes, describe(r.tail_why));
    }
    seg.size = from + got;
    // A backlog is read a whole segment at once; tailing needs a few KiB. Do not keep tens of
    // MiB for the next poll.
    _scratch.trim(scratch_keep_bytes);
    return found;
}

void JobStore::add_record(uint32_t shard, uint64_t seq, uint64_t offset, const uint8_t* at,
                          const JobRecord& rec, uint16_t route) {
    // The body is the record's last field: the record ends where it does.
    const auto* start = reinterpret_cast<const char*>(at);
    const auto size = static_cast<uint32_t>(rec.body.data() + rec.body.size() - start);
    // An ordered route's sequence: the jobs sharing an ordering key (the low half of its
    // fingerprint is plenty to tell keys apart), or the whole route (0) without one.
    const uint64_t order_key =
        _route_ordered[route] && rec.keys.has_ordering ? rec.keys.ordering_key.lo : 0;
    _found.push_back({rec.id, route, {shard, seq, offset, size}, order_key});
}

void JobStore::note_damage(const std::string& path, uint64_t offset, uint64_t length,
                           std::string_view why) {
    ++_stats.damaged_regions;
    _stats.damaged_bytes += length;
    LogLine(Level::error, "job index: damaged records skipped")
        .field("segment", path)
        .field("offset", static_cast<int64_t>(offset))
        .field("bytes", static_cast<int64_t>(length))
        .field("why", why)
        .write();
}

void JobStore::FoundList::push_back(const Found& f) {
    if ((_size + 1) * sizeof(Found) > _bytes) {
        const size_t bytes = std::max(_bytes * 2, first_bytes);
        void* grown = _data == nullptr ? base::map_zeroed(bytes)
                                       : ::mremap(_data, _bytes, bytes, MREMAP_MAYMOVE);
        if (grown == MAP_FAILED) {
            std::abort(); // as std::vector would throw: the system is out of memory
        }
        _data = static_cast<Found*>(grown);
        _bytes = bytes;
    }
    _data[_size++] = f;
}

void JobStore::FoundList::trim() {
    if (_bytes > first_bytes) {
        release();
    }
}

void JobStore::FoundList::release() {
    if (_data != nullptr) {
        base::unmap_zeroed(_data, _bytes);
    }
    _data = nullptr;
    _size = 0;
    _bytes = 0;
}

void JobStore::add_found() {
    // Shards write side by side; ids sort by time first, so consumers get jobs oldest first
    // whichever shard took them.
    // Each shard's records come nearly in id order: the sort mostly confirms it, with a compare
    // of two words rather than a memcmp call.
    auto key = [](const JobId& id) {
        uint64_t hi;
        uint64_t lo;
        std::memcpy(&hi, id.bytes.data(), 8);
        std::memcpy(&lo, id.bytes.data() + 8, 8);
        return std::pair(__builtin_bswap64(hi), __builtin_bswap64(lo));
    };
    auto before = [&](const Found& a, const Found& b) { return key(a.id) < key(b.id); };
    if (!std::is_sorted(_found.begin(), _found.end(), before)) {
        std::sort(_found.begin(), _found.end(), before);
    }
    if (_found.size() > reserve_from) {
        // A start-up (or a long backlog): the tables take it all at once, with no growth.
        std::vector<size_t> per_route(_route_names.size(), 0);
        for (const Found& f : _found) {
            ++per_route[f.route];
        }
        for (size_t t = 0; t < _tables.size(); ++t) {
            std::vector<size_t> mine(per_route.size(), 0);
            for (size_t r = 0; r < per_route.size(); ++r) {
                const auto& sinks = _route_sinks[r];
                if (t == 0 || std::find(sinks.begin(), sinks.end(), t - 1) != sinks.end()) {
                    mine[r] = per_route[r];
                }
            }
            _tables[t]->reserve(mine);
        }
    }
    constexpr size_t ahead = 8;
    for (size_t i = 0; i < _found.size(); ++i) {
        const Found& f = _found[i];
        if (i + ahead < _found.size()) {
            _tables[0]->prefetch(_found[i + ahead].id);
        }
        if (_tables[0]->add(f.id, f.route, f.where, f.order_key)) {
            ++_stats.jobs_found;
        }
        for (uint16_t sink : _route_sinks[f.route]) {
            _tables[sink + 1]->add(f.id, f.route, f.where, f.order_key);
        }
    }
    _found.clear();
    _found.trim();
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
    if (_ledger_end < 0) {
        struct stat st {};
        if (::fstat(_ledger_fd, &st) == 0) {
            _ledger_end = st.st_size;
        }
    }
    if (_ledger_torn) {
        cut_ledger();
    }
    _ledger_buf.clear();
    _group_ops = 0;
    for (size_t t = 0; t < _tables.size(); ++t) {
        const std::vector<LedgerOp>& ops = _tables[t]->pending_ops();
        _ledger_buf.resize((_group_ops + ops.size()) * ledger_record_size);
        for (LedgerOp op : ops) {
            op.lane = _lanes[t];
            encode_ledger_op(
                op, std::span<uint8_t, ledger_record_size>(
                        _ledger_buf.data() + _group_ops * ledger_record_size, ledger_record_size));
            ++_group_ops;
        }
        _group_counts[t] = ops.size();
        _tables[t]->ops_taken();
    }
    return _ledger_buf;
}

bool JobStore::has_pending_ops() const {
    return std::any_of(_tables.begin(), _tables.end(),
                       [](const auto& t) { return !t->pending_ops().empty(); });
}

bool JobStore::ops_written() {
    if (_ledger_torn) {
        return false;
    }
    for (size_t t = 0; t < _tables.size(); ++t) {
        _tables[t]->ops_durable(_group_counts[t]);
        _group_counts[t] = 0;
    }
    _stats.ledger_ops += _group_ops;
    if (_ledger_end >= 0) {
        _ledger_end += static_cast<int64_t>(_group_ops * ledger_record_size);
    }
    _group_ops = 0;
    return true;
}

size_t JobStore::ops_failed() {
    ++_stats.ledger_errors;
    // A short append leaves a torn record, which recovery would take for the end of the file:
    // the next group's ops would be cut with it. A whole group whose fdatasync failed goes too,
    // since the table no longer has its changes.
    _ledger_torn = true;
    cut_ledger();
    _group_ops = 0;
    size_t undone = 0;
    for (size_t t = 0; t < _tables.size(); ++t) {
        undone += _tables[t]->ops_failed();
        _group_counts[t] = 0;
    }
    return undone;
}

void JobStore::cut_ledger() {
    if (_ledger_end < 0) {
        _ledger_torn = false; // its size was never known (fstat failed): nothing to cut back to
        return;
    }
    if (::ftruncate(_ledger_fd, _ledger_end) != 0) {
        LogLine(Level::error, "ledger: cannot cut a failed write")
            .field("path", ledger_path())
            .field("size", _ledger_end)
            .field("error", errno_text())
            .write();
        return;
    }
    _ledger_torn = false;
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
            ops_failed();
            return false;
        }
        done += static_cast<size_t>(n);
    }
    if (sync && ::fdatasync(_ledger_fd) != 0) {
        ops_failed();
        return false;
    }
    if (!ops_written()) {
        ops_failed();
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
        // Every lane must be done with it: the pull API's and each sink's.
        const uint32_t in_shard = shard;
        const uint64_t in_seq = seq;
        // A dormant table (a sink a reload removed) holds nothing back, as after a restart.
        bool unsettled = false;
        for (size_t t = 0; t < _tables.size() && !unsettled; ++t) {
            unsettled = (t == 0 || _sink_active[t - 1]) &&
                        _tables[t]->unsettled_in_segment(in_shard, in_seq) != 0;
        }
        if (newest || seg.newest_ns + _retention_ns > now_ns || unsettled) {
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
        for (const auto& t : _tables) {
            t->drop_segment(shard, seq);
        }
        for (auto& [name, segments] : _unknown) {
            segments.erase({shard, seq});
        }
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
    if (deleted != 0) {
        // Its jobs' entries are gone (and the tables compact once most are): return the memory.
        base::release_free_memory();
    }
    return deleted;
}

} // namespace portcullis::queue

// ---- live reload -----------------------------------------------------------------------------

namespace portcullis::queue {

namespace {

std::string at_key(const config::SourceMark& mark, const std::string& key, const std::string& why) {
    return config::Diagnostic{mark, key, why}.format();
}

bool contains(const std::vector<uint16_t>& v, uint16_t x) {
    return std::find(v.begin(), v.end(), x) != v.end();
}

} // namespace

std::string JobStore::check_reconfigure(const config::Snapshot& next) const {
    size_t new_names = 0;
    for (const config::Route& r : next.routes()) {
        const config::RouteConfig& rc = *r.config;
        const int route = route_index(rc.name);
        if (route < 0) {
            ++new_names;
            continue;
        }
        const bool was = _route_ordered[static_cast<size_t>(route)];
        if (was != rc.ordered) {
            return at_key(rc.mark, "routes." + rc.name + ".ordered",
                          std::string("changed (") + (was ? "true" : "false") + " -> " +
                              (rc.ordered ? "true" : "false") +
                              "): ordering cannot change while portcullis runs (the sequences "
                              "of its queued jobs are built as they are indexed); restart to "
                              "change it");
        }
    }
    if (_route_names.size() + new_names > UINT16_MAX) {
        return "routes: more than " + std::to_string(UINT16_MAX) +
               " route names since portcullis started; restart to add more";
    }
    std::vector<std::string> names;
    for (const config::SinkConfig& sink : next.config().sinks) {
        names.push_back(sink.name);
    }
    const std::string lanes_path = _dir + "/" + std::string(lanes_file_name);
    LaneAssignment lanes = assign_lanes(_lanes_listed, names, lanes_path);
    if (!lanes.error.empty()) {
        return lanes.error;
    }
    if (lanes.reclaimed) {
        // Taking back a lane needs the ledger compacted without its ops: a start-up's job.
        for (size_t i = 0; i < names.size(); ++i) {
            const bool listed = std::any_of(_lanes_listed.begin(), _lanes_listed.end(),
                                            [&](const LaneName& l) { return l.sink == names[i]; });
            if (!listed) {
                return at_key(next.config().sinks[i].mark, "sinks." + names[i],
                              "no delivery lane left (" + lanes_path +
                                  " lists 255 sink names); restart to give it the lane of a "
                                  "sink no longer configured");
            }
        }
    }
    return "";
}

uint16_t JobStore::add_route(const std::string& name, uint32_t max_attempts, bool ordered) {
    const auto route = static_cast<uint16_t>(_route_names.size());
    _route_by_name.emplace(name, route);
    _route_names.push_back(name);
    _route_ordered.push_back(ordered);
    _route_max_attempts.push_back(max_attempts);
    _route_configured.push_back(true);
    _route_sinks.emplace_back();
    _tables[0]->add_route(pull_options(route));
    for (size_t t = 1; t < _tables.size(); ++t) {
        _tables[t]->add_route(sink_options(route));
    }
    return route;
}

std::string JobStore::reconfigure(const config::Snapshot& next, int64_t now_ns,
                                  ReloadReport& report) {
    report = {};
    if (std::string err = check_reconfigure(next); !err.empty()) {
        return err;
    }
    const config::Config& cfg = next.config();
    std::vector<std::string> names;
    for (const config::SinkConfig& sink : cfg.sinks) {
        names.push_back(sink.name);
    }
    // The one thing that can fail, first: the lanes file must name a new sink's lane before any
    // op of it is written (as at start).
    const std::string lanes_path = _dir + "/" + std::string(lanes_file_name);
    LaneAssignment lanes = assign_lanes(_lanes_listed, names, lanes_path);
    if (!lanes.error.empty()) {
        return lanes.error;
    }
    if (lanes.changed) {
        if (std::string err = write_lanes(_dir, lanes.lanes); !err.empty()) {
            return err;
        }
        _lanes_listed = lanes.lanes;
    }
    _retention_ns = cfg.spool.retention_ns;

    // Sinks, by name: a new name gets the next number, a table and its lane.
    const std::vector<bool> was_active = _sink_active;
    std::vector<bool> active(_sink_names.size(), false);
    std::vector<uint16_t> number_of(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
        int n = sink_index(names[i]);
        if (n < 0) {
            n = static_cast<int>(_sink_names.size());
            _sink_names.push_back(names[i]);
            _sink_active.push_back(false);
            active.push_back(false);
            std::vector<RouteOptions> options;
            for (size_t r = 0; r < _route_names.size(); ++r) {
                options.push_back(sink_options(r));
            }
            _tables.push_back(std::make_unique<JobTable>(std::move(options)));
            _lanes.push_back(lanes.sink_lanes[i]);
            _group_counts.push_back(0);
            LogLine(Level::info, "ledger: delivery lane")
                .field("sink", names[i])
                .field("lane", static_cast<int64_t>(lanes.sink_lanes[i]))
                .write();
        }
        active[static_cast<size_t>(n)] = true;
        number_of[i] = static_cast<uint16_t>(n);
    }
    auto unsettled = [](const JobTable& t, size_t r, bool optional) {
        const RouteDepth d = t.depth(static_cast<uint16_t>(r));
        return d.leased + (optional ? 0 : d.queued);
    };
    for (size_t n = 0; n < _sink_names.size(); ++n) {
        const bool was = n < was_active.size() && was_active[n];
        if (active[n] && !was) {
            report.sinks_added.push_back(_sink_names[n]);
            // A table back from dormancy: leases of attempts the engine cancelled are void, as
            // at a start (it has none left after its own reconfigure; this is the safety net).
            _stats.leases_voided += _tables[n + 1]->expire_leases(now_ns);
        } else if (!active[n] && was) {
            size_t pending = 0;
            for (size_t r = 0; r < _route_names.size(); ++r) {
                pending += unsettled(*_tables[n + 1], r, false);
            }
            report.sinks_removed.push_back({_sink_names[n], pending});
        }
    }

    // Routes, by name: a new name gets the next number in every table.
    const std::vector<std::vector<uint16_t>> old_sinks = _route_sinks;
    std::vector<bool> configured(_route_names.size(), false);
    std::vector<std::string> new_names;
    for (const config::Route& r : next.routes()) {
        const config::RouteConfig& rc = *r.config;
        std::vector<uint16_t> sinks;
        for (const std::string& name : rc.deliver) {
            auto it = std::find(names.begin(), names.end(), name);
            if (it != names.end()) {
                sinks.push_back(number_of[static_cast<size_t>(it - names.begin())]);
            }
        }
        int route = route_index(rc.name);
        if (route < 0) {
            route = add_route(rc.name, rc.max_attempts, rc.ordered);
            configured.push_back(true);
            new_names.push_back(rc.name);
            report.routes_added.push_back(rc.name);
        } else {
            const auto i = static_cast<size_t>(route);
            if (!_route_configured[i]) {
                report.routes_added.push_back(rc.name); // back after a removal
            } else if (_route_max_attempts[i] != rc.max_attempts || _route_sinks[i] != sinks) {
                report.routes_changed.push_back(rc.name);
            }
            configured[i] = true;
        }
        const auto i = static_cast<size_t>(route);
        _route_max_attempts[i] = rc.max_attempts;
        _route_sinks[i] = std::move(sinks);
    }
    for (size_t r = 0; r < _route_names.size(); ++r) {
        if (!configured[r]) {
            if (_route_configured[r]) {
                report.routes_removed.push_back(_route_names[r]);
            }
            // Records a shard still on the old configuration writes go where the route's jobs
            // went, while those sinks are configured.
            std::erase_if(_route_sinks[r], [&](uint16_t n) { return !active[n]; });
        }
        _route_configured[r] = configured[r];
    }
    _sink_active = active;
    std::vector<RouteOptions> pull;
    std::vector<RouteOptions> sink;
    for (size_t r = 0; r < _route_names.size(); ++r) {
        pull.push_back(pull_options(r));
        sink.push_back(sink_options(r));
    }
    _tables[0]->set_routes(pull);
    for (size_t t = 1; t < _tables.size(); ++t) {
        _tables[t]->set_routes(sink);
    }
    report.recovered = recover_unknown(new_names);
    // A sink new to a route (or back, or new) gets the route's jobs the spool holds, as a
    // restart would give them to it (its lane has no op of them).
    for (size_t n = 0; n < _sink_names.size(); ++n) {
        if (!active[n]) {
            continue;
        }
        const bool was = n < was_active.size() && was_active[n];
        std::vector<bool> routes(_route_names.size(), false);
        bool any = false;
        for (size_t r = 0; r < _route_names.size(); ++r) {
            const auto sink = static_cast<uint16_t>(n);
            if (contains(_route_sinks[r], sink) &&
                (!was || r >= old_sinks.size() || !contains(old_sinks[r], sink))) {
                routes[r] = true;
                any = true;
            }
        }
        if (any) {
            report.backfilled += backfill(n, routes);
        }
    }
    for (size_t r = 0; r < _route_names.size(); ++r) {
        if (configured[r] || std::find(report.routes_removed.begin(), report.routes_removed.end(),
                                       _route_names[r]) == report.routes_removed.end()) {
            continue;
        }
        report.removed_route_pending += unsettled(*_tables[0], r, !_route_sinks[r].empty());
        for (size_t n = 0; n < _sink_names.size(); ++n) {
            if (_sink_active[n]) {
                report.removed_route_pending += unsettled(*_tables[n + 1], r, false);
            }
        }
    }
    for (const ReloadReport::SinkGone& gone : report.sinks_removed) {
        if (gone.pending != 0) {
            LogLine(Level::warn, "sink removed with deliveries pending; kept until it comes back")
                .field("sink", gone.name)
                .field("pending", static_cast<int64_t>(gone.pending))
                .write();
        }
    }
    return "";
}

size_t JobStore::recover_unknown(const std::vector<std::string>& names) {
    std::set<std::pair<uint32_t, uint64_t>> segments;
    for (const std::string& name : names) {
        auto it = _unknown.find(name);
        if (it != _unknown.end()) {
            segments.insert(it->second.begin(), it->second.end());
            _unknown.erase(it);
        }
    }
    // Only up to what advance() has indexed: the rest is read as usual, the route known now.
    for (const auto& key : segments) {
        // Named copies: a lambda below takes them (clang 14 cannot capture structured bindings).
        const auto shard = key.first;
        const auto seq = key.second;
        auto it = _segments.find({shard, seq});
        if (it == _segments.end() || it->second.size <= segment_header_size) {
            continue;
        }
        Segment& seg = it->second;
        const int fd = segment_fd(shard, seq, seg);
        if (fd < 0) {
            continue;
        }
        uint8_t* buf = _scratch.room(seg.size - segment_header_size);
        const ssize_t got = ::pread(fd, buf, seg.size - segment_header_size,
                                    static_cast<off_t>(segment_header_size));
        if (got <= 0) {
            continue;
        }
        std::span<const uint8_t> bytes(buf, static_cast<size_t>(got));
        // Its damage was logged and counted when advance() read it.
        scan_records(bytes, segment_header_size, [&](uint64_t offset, const JobRecord& rec) {
            if (std::find(names.begin(), names.end(), rec.route) == names.end()) {
                return;
            }
            const int route = route_index(rec.route);
            add_record(shard, seq, offset, bytes.data() + (offset - segment_header_size), rec,
                       static_cast<uint16_t>(route));
        });
    }
    _scratch.trim(scratch_keep_bytes);
    const size_t found = _found.size();
    add_found();
    return found;
}

size_t JobStore::backfill(size_t sink, const std::vector<bool>& routes) {
    // The pull API's table has every indexed job of every route, whatever its state.
    std::vector<JobInfo> jobs;
    _tables[0]->jobs_of(routes, jobs);
    std::sort(jobs.begin(), jobs.end(),
              [](const JobInfo& a, const JobInfo& b) { return a.id < b.id; });
    JobTable& table = *_tables[sink + 1];
    size_t added = 0;
    JobRecord rec;
    for (const JobInfo& j : jobs) {
        uint64_t order_key = 0;
        if (_route_ordered[j.route]) {
            if (table.find(j.id)) {
                continue; // already there: spare the read
            }
            // The table keeps no ordering key: the record has it. One that cannot be read is
            // added all the same: the engine finds it unreadable and says so.
            if (read(j.where, rec) && rec.id == j.id && rec.keys.has_ordering) {
                order_key = rec.keys.ordering_key.lo;
            }
        }
        if (table.add(j.id, j.route, j.where, order_key)) {
            ++added;
        }
    }
    return added;
}

} // namespace portcullis::queue
