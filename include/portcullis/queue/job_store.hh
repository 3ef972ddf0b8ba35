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
#pragma once

#include "portcullis/config/snapshot.hh"
#include "portcullis/queue/job_table.hh"
#include "portcullis/queue/record.hh"
#include "portcullis/queue/spool_progress.hh"

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
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
    // One table per sink of the configuration, by its index in config().sinks.
    size_t sink_count() const { return _tables.size() - 1; }
    JobTable& sink_table(size_t sink) { return *_tables[sink + 1]; }
    const JobTable& sink_table(size_t sink) const { return *_tables[sink + 1]; }
    // The ledger lane of a sink (1..255), by its index in config().sinks.
    uint8_t sink_lane(size_t sink) const { return _lanes[sink + 1]; }
    // The route number of a name in the table, or -1.
    int route_index(std::string_view name) const;
    std::string_view route_name(uint16_t route) const;
    size_t routes() const { return _route_names.size(); }
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
        int64_t received_at_ns;
        JobLocation where;
        uint64_t order_key;
    };

    // Adds the records advance() found to the table, oldest first.
    void add_found();
    std::string index_segment(uint32_t shard, uint64_t seq, const std::string& path);
    // Reads from the segment's indexed end to its current end and indexes the whole records.
    size_t advance(uint32_t shard, uint64_t seq, Segment& seg);
    int segment_fd(uint32_t shard, uint64_t seq, Segment& seg);
    // Logs and counts a stretch of a segment that holds no valid record.
    void note_damage(const std::string& path, uint64_t offset, uint64_t length,
                     std::string_view why);
    // Truncates ledger.log to _ledger_end; on success clears _ledger_torn.
    void cut_ledger();

    std::string _dir;
    std::span<const SpoolProgress> _progress;
    int64_t _retention_ns = 0;
    std::vector<std::string> _route_names;
    std::vector<bool> _route_ordered;
    std::vector<std::vector<uint16_t>> _route_sinks; // by route: the sinks it delivers to
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
    std::string _scratch;
    std::string _cache; // read(): bytes of one segment from _cache_from
    uint32_t _cache_shard = 0;
    uint64_t _cache_segment = 0; // 0: empty (segments count from 1)
    uint64_t _cache_from = 0;
    std::vector<Found> _found;
    StoreStats _stats;
};

} // namespace portcullis::queue
