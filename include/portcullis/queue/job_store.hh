// The control plane's view of the spool: every job of every shard in a JobTable, found by tailing
// the shards' segment files, with lease and ack state made durable in the ledger. Owned by the
// control-plane thread; the shards know nothing of it (the spool files are the only interface).
//
//   JobStore store;
//   if (auto err = store.open(snapshot, shards, now); !err.empty()) { ... }  // after the shards
//   store.poll(now);                           // each loop iteration: pick up new jobs
//   store.table().lease(route, 10, vis, now, jobs);
//   JobRecord rec;
//   store.read(jobs[0].where, rec);            // the record, body and all
//   store.sink_table(0).lease(route, 10, vis, now, jobs);   // push delivery, one table a sink
//   if (store.has_pending_ops()) {
//       auto ops = store.take_ops();           // every table's pending ops, for the ledger
//       ...append ops to ledger_fd() and fdatasync...
//       if (!ok || !store.ops_written()) { store.ops_failed(); }   // rolls the tables back
//   }
//   store.retire(now);                         // now and then: delete settled old segments
//
// Tailing. A shard appends records to its newest segment and starts the next one when it is
// full; a segment is finished once the next one exists (the writer never goes back). Each
// shard's writer publishes how far its newest segment is committed (SpoolProgress: the end of
// the last group that completed, durable under durability fsync); poll() indexes the whole
// records up to there. So a consumer never gets a job before its sender got the 202, never one
// of a group that failed (answered 503 and cut off again by the writer), and every byte read is
// final: a record that does not decode is damage, skipped (resynchronising at the next valid
// record, with the same scanner as the shard's recovery and `spool verify`), logged and counted.
//
// The ledger (<spool dir>/ledger.log, ledger.hh) holds what happened to jobs. The control plane
// fdatasyncs it before answering an ack, so that an answered ack survives kill -9; leases are
// answered without waiting (a lost lease only means a redelivery with the same attempt number).
// A group of ops that cannot be written or synced is rolled back in the table (job_table.hh)
// and cut from the end of ledger.log, so that neither memory nor the file keeps a change that
// was answered 503, and the ops appended later are not hidden behind a torn record.
//
// Lanes. The pull API has one JobTable (table(), lane 0); each configured sink has its own
// (sink_table(i), i indexing config().sinks), holding the jobs of the routes that deliver to
// it, each (job, sink) settled on its own. Every op in the ledger carries its table's lane: a
// sink's lane is the number <spool dir>/lanes gives its name (lanes.hh), so reordering or
// renaming sinks never applies one sink's settlements to another. Ops of a sink no longer
// configured are ignored at start-up (and gone after the next compaction); an op of a lane the
// lanes file does not list is an error (the file was lost or edited: never guessed around).
// On a route with sinks the pull lane is optional (RouteOptions::optional): a segment is kept
// while any table has a job of it unsettled, which for the pull lane means leased and not yet
// acked or dead. The previous process's sink leases are void at open: each sink table's leased
// jobs go back to the queue, ready now, to be delivered again with their next attempt.
//
// Live reload (reconfigure(), on the control plane's thread between two turns of its loop).
// The store numbers routes and sinks by NAME for the life of the process: a name seen for the
// first time gets the next number, and a number never moves or goes to another name, so every
// table, lease and event keeps meaning the same thing across reloads (at start the numbers are
// the configuration's order, as before).
// - A route added: a new number in every table. Records of it the spool already holds (written
//   by a shard that switched to the new configuration before the control plane did, or kept
//   from a configuration that had it) are indexed then, as a restart would.
// - A route removed: keeps its number and its jobs, still leasable, and still delivered by the
//   sinks whose tables have them; its records written after that go to the sinks it delivered
//   to when it was removed (shards still on the old configuration).
// - A route changed: max_attempts applies from each job's next outcome; deliver applies to the
//   jobs indexed from then on, and a sink added to it gets the route's jobs the spool holds
//   (below). A sink taken off a route keeps delivering what its table holds of it. ordered
//   cannot change live (check_reconfigure refuses it: sequences are built as jobs are added).
// - A sink added gets a lane (the lanes file written durably before any op of it, as open()
//   does) and a table holding every job of its routes that the spool still holds: the same as a
//   restart gives a sink new to the ledger (README: "whose lane starts from every job still in
//   the spool"). A sink that comes back gets its own table back (its settlements stand, as
//   after a restart), with the jobs of its routes indexed while it was away.
// - A sink removed: its table stays, dormant (its lane's ops are still written for what was in
//   flight, and ignored at the next start like those of any sink no longer configured); it
//   holds no segment back (as after a restart), and its unsettled jobs are reported
//   (ReloadReport::sinks_removed), not silently dropped.
#pragma once

#include "portcullis/config/snapshot.hh"
#include "portcullis/queue/job_table.hh"
#include "portcullis/queue/lanes.hh"
#include "portcullis/queue/record.hh"
#include "portcullis/queue/spool_progress.hh"

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace portcullis::queue {

struct StoreStats {
    uint64_t jobs_found = 0;       // records indexed (start-up and tailing)
    uint64_t unknown_routes = 0;   // records of routes the configuration no longer has
    uint64_t ledger_ops = 0;       // written since start (their group written or synced)
    uint64_t segments_deleted = 0; // by retention
    uint64_t ledger_errors = 0;    // failed writes or fdatasyncs of the ledger
    uint64_t damaged_regions = 0;  // stretches of segments that hold no valid record, skipped
    uint64_t damaged_bytes = 0;
    uint64_t ledger_damaged_regions = 0; // skipped at start-up
    uint64_t ledger_ops_ignored = 0;     // start-up: of lanes whose sink is not configured
    uint64_t leases_voided = 0;          // start-up: sink leases of the previous process
};

// What a reload changed in the store, for its log line.
struct ReloadReport {
    struct SinkGone {
        std::string name;
        size_t pending = 0; // jobs queued or leased in its table: not delivered while it is gone
    };
    std::vector<std::string> routes_added; // new names, and removed ones that came back
    std::vector<std::string> routes_removed;
    std::vector<std::string> routes_changed; // max_attempts or deliver
    std::vector<std::string> sinks_added;
    std::vector<SinkGone> sinks_removed;
    // Deliveries still owed for the removed routes: jobs queued or leased in a sink's table, and
    // in the pull API's (all of them on a route without sinks, else those it leased).
    size_t removed_route_pending = 0;
    size_t backfilled = 0; // jobs given to a sink's table that a route newly delivers to it
    size_t recovered = 0;  // records of routes new to the store that the spool already held
};

class JobStore {
public:
    JobStore() = default;
    JobStore(const JobStore&) = delete;
    JobStore& operator=(const JobStore&) = delete;
    ~JobStore();

    // Start-up, blocking: indexes every segment of every shard folder, replays the ledger (cutting
    // a torn tail, reported in the log), and opens it for appending. Returns "" or the error.
    // progress: one per shard, published by the shards' writers, which have opened the spool
    // first; it must outlive the store. Shards without one are taken as stopped (every segment
    // final).
    std::string open(const config::Snapshot& snapshot, std::span<const SpoolProgress> progress,
                     int64_t now_ns);

    // Live reload: what reconfigure(next) would refuse, checked before the reload is committed
    // ("" when nothing). Refused: a route whose `ordered` changes, more than 65,535 route names
    // in the life of the process, a sink for which no delivery lane is left without compacting
    // the ledger (restart). Reads no file.
    std::string check_reconfigure(const config::Snapshot& next) const;
    // Switches to next (see "Live reload" above); the store does not keep a reference to it.
    // Returns "" or the error, and then nothing changed: the lanes file could not be written,
    // or check_reconfigure's refusal. Blocking I/O: the lanes file when a sink is new; the
    // records of a route new to the store (read from the spool); those of ordered routes given
    // to a new sink (their ordering keys). Call it before the engine's reconfigure.
    std::string reconfigure(const config::Snapshot& next, int64_t now_ns, ReloadReport& report);

    // Indexes the records the shards have written since the last call. Returns how many.
    size_t poll();

    // Reads the record at where and decodes it into rec, whose views stay valid until the next
    // call. Reads ahead (1 MiB), so that the jobs of one lease, written one after the other, come
    // from one pread. False if it cannot be read or does not decode.
    bool read(const JobLocation& where, JobRecord& rec);

    // The table's pending ops, encoded for one append to ledger_fd() (opened O_APPEND); the
    // bytes stay valid until the next call. The control plane writes them through its ring and
    // fdatasyncs before answering what they promise. One group at a time: ops_written() or
    // ops_failed() before the next call.
    std::span<const uint8_t> take_ops();
    // Whether any table (the pull API's or a sink's) has ops for take_ops().
    bool has_pending_ops() const;
    // The group's append (and fdatasync, if one was asked for) completed. False if it cannot
    // count: a failed group's torn bytes before it could not be cut, so that recovery would stop
    // short of it; then call ops_failed().
    bool ops_written();
    // The group's append or fdatasync failed: cuts ledger.log back to its end before the group,
    // rolls every table back (JobTable::ops_failed) and counts the error. Returns how many
    // changes were undone.
    size_t ops_failed();
    int ledger_fd() const { return _ledger_fd; }
    std::string ledger_path() const { return _dir + "/ledger.log"; }
    // The same with blocking I/O (shutdown): writes, and fdatasyncs when sync is set. False on
    // an I/O error.
    bool commit(bool sync);

    // Deletes the segments whose jobs are all done or dead and whose newest job is older than
    // spool.retention, never a shard's newest segment. Returns how many.
    size_t retire(int64_t now_ns);

    // The pull API's table (lane 0).
    JobTable& table() { return *_tables[0]; }
    const JobTable& table() const { return *_tables[0]; }
    // One table per sink, by the sink's number: its index in the start configuration's sinks,
    // then one more for each name a reload adds. Sinks removed by a reload keep their number
    // and table (dormant: sink_active() false).
    size_t sink_count() const { return _tables.size() - 1; }
    JobTable& sink_table(size_t sink) { return *_tables[sink + 1]; }
    const JobTable& sink_table(size_t sink) const { return *_tables[sink + 1]; }
    // The ledger lane of a sink (1..255), by its number.
    uint8_t sink_lane(size_t sink) const { return _lanes[sink + 1]; }
    // The number of a sink's name (configured or not), or -1.
    int sink_index(std::string_view name) const;
    std::string_view sink_name(size_t sink) const { return _sink_names[sink]; }
    // Whether the current configuration has the sink.
    bool sink_active(size_t sink) const { return _sink_active[sink]; }
    // The route number of a name in the table, or -1 (a hash lookup).
    int route_index(std::string_view name) const;
    std::string_view route_name(uint16_t route) const;
    size_t routes() const { return _route_names.size(); }
    // Whether the current configuration has the route (removed ones keep their number).
    bool route_configured(uint16_t route) const { return _route_configured[route]; }
    // The sinks whose tables get the route's jobs as they are indexed, by sink number.
    const std::vector<uint16_t>& route_sinks(uint16_t route) const { return _route_sinks[route]; }
    uint64_t spool_bytes() const;
    const StoreStats& stats() const { return _stats; }

private:
    struct Segment {
        uint64_t size = 0;     // bytes indexed (the valid end)
        int64_t newest_ns = 0; // received_at of its newest record
        int fd = -1;           // open for reading, once needed
    };
    struct Tail {
        uint64_t seq = 0; // the shard's newest segment, 0 before it has one
    };

    struct Found {
        JobId id;
        uint16_t route;
        JobLocation where;
        uint64_t order_key;
    };
    // Past this many found at once (a start-up, a backlog), the tables reserve room for them all.
    static constexpr size_t reserve_from = 4096;

    // Adds the records advance() found to the table, oldest first.
    void add_found();
    std::string index_segment(uint32_t shard, uint64_t seq, const std::string& path);
    // Reads from the segment's indexed end to its current end and indexes the whole records.
    size_t advance(uint32_t shard, uint64_t seq, Segment& seg);
    int segment_fd(uint32_t shard, uint64_t seq, Segment& seg);
    // Queues a record found at offset (at: its first byte in memory) for add_found().
    void add_record(uint32_t shard, uint64_t seq, uint64_t offset, const uint8_t* at,
                    const JobRecord& rec, uint16_t route);
    // Logs and counts a stretch of a segment that holds no valid record.
    void note_damage(const std::string& path, uint64_t offset, uint64_t length,
                     std::string_view why);
    // Truncates ledger.log to _ledger_end; on success clears _ledger_torn.
    void cut_ledger();
    // The options every table has for route r (the pull API's lane is optional on a route with
    // sinks).
    RouteOptions pull_options(size_t r) const;
    RouteOptions sink_options(size_t r) const;
    // A new route name: its number, in every table. Returns it.
    uint16_t add_route(const std::string& name, uint32_t max_attempts, bool ordered);
    // Indexes the records of these (now known) route names that advance() skipped as unknown.
    size_t recover_unknown(const std::vector<std::string>& names);
    // Gives sink the jobs of the flagged routes that the pull table has (every indexed job).
    size_t backfill(size_t sink, const std::vector<bool>& routes);

    struct NameHash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };

    std::string _dir;
    std::span<const SpoolProgress> _progress;
    int64_t _retention_ns = 0;
    std::vector<std::string> _route_names;
    std::unordered_map<std::string, uint16_t, NameHash, std::equal_to<>> _route_by_name;
    std::vector<bool> _route_ordered;
    std::vector<uint32_t> _route_max_attempts;
    std::vector<bool> _route_configured;
    std::vector<std::vector<uint16_t>> _route_sinks; // by route: the sinks it delivers to
    std::vector<std::string> _sink_names;            // by sink number
    std::vector<bool> _sink_active;
    std::vector<LaneName> _lanes_listed; // what <dir>/lanes says
    // Records of route names the store does not know, by name: the segments holding them (a
    // reload that adds the name indexes them then). Bounded by the names configurations had.
    std::map<std::string, std::set<std::pair<uint32_t, uint64_t>>, std::less<>> _unknown;
    // [0] the pull API's, then one per sink; each table's lane, and its share of the group.
    std::vector<std::unique_ptr<JobTable>> _tables;
    std::vector<uint8_t> _lanes;
    std::vector<size_t> _group_counts;
    std::map<std::pair<uint32_t, uint64_t>, Segment> _segments;
    std::vector<Tail> _tails; // by shard
    int _ledger_fd = -1;
    std::vector<uint8_t> _ledger_buf;
    // The group taken and not yet resolved (every table's share).
    size_t _group_ops = 0;
    // ledger.log's size after the last group written: where a failed group is cut. -1 until
    // the first take_ops() reads it.
    int64_t _ledger_end = -1;
    bool _ledger_torn = false; // a failed group's bytes could not be cut yet
    // Where advance() reads a segment: grown without zero-filling (the read overwrites it).
    class ReadBuffer {
    public:
        uint8_t* room(size_t bytes) {
            if (bytes > _capacity) {
                _data = std::make_unique_for_overwrite<uint8_t[]>(bytes);
                _capacity = bytes;
            }
            return _data.get();
        }
        void trim(size_t keep) {
            if (_capacity > keep) {
                _data.reset();
                _capacity = 0;
            }
        }

    private:
        std::unique_ptr<uint8_t[]> _data;
        size_t _capacity = 0;
    };
    ReadBuffer _scratch;
    bool _opening = false; // open() maps the segments (no writer touches them then)
    std::string _cache;    // read(): bytes of one segment from _cache_from
    uint32_t _cache_shard = 0;
    uint64_t _cache_segment = 0; // 0: empty (segments count from 1)
    uint64_t _cache_from = 0;
    // What advance() found, for add_found(): a few records a poll, the whole spool at start-up.
    // Pages of its own (grown by mremap, no copy), given back whole to the system once a
    // start-up's list is added: tens of bytes a job must not stay in the allocator's free lists.
    class FoundList {
    public:
        FoundList() = default;
        FoundList(const FoundList&) = delete;
        FoundList& operator=(const FoundList&) = delete;
        ~FoundList() { release(); }
        void push_back(const Found& f);
        size_t size() const { return _size; }
        Found* begin() { return _data; }
        Found* end() { return _data + _size; }
        const Found& operator[](size_t i) const { return _data[i]; }
        void clear() { _size = 0; }
        // Unmaps it when it grew past its first mapping (a poll's few records stay in that).
        void trim();

    private:
        static constexpr size_t first_bytes = size_t{1} << 20;
        void release();
        Found* _data = nullptr;
        size_t _size = 0;
        size_t _bytes = 0; // mapped
    };
    FoundList _found;
    StoreStats _stats;
};

} // namespace portcullis::queue
