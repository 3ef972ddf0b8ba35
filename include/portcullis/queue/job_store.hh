// The control plane's view of the spool: every job of every shard in a JobTable, found by tailing
// the shards' segment files, with lease and ack state made durable in the ledger. Owned by the
// control-plane thread; the shards know nothing of it (the spool files are the only interface).
//
//   JobStore store;
//   if (auto err = store.open(snapshot, shards, now); !err.empty()) { ... }  // after the shards
//   store.poll(now);                           // each loop iteration: pick up new jobs
//   store.table().lease(route, 10, vis, now, jobs);
//   JobRecord rec; std::string buf;
//   store.read(jobs[0].where, buf, rec);       // the record, body and all
//   store.commit(sync);                        // the table's pending ops into the ledger
//   store.retire(now);                         // now and then: delete settled old segments
//
// Tailing. A shard appends records to its newest segment and starts the next one when it is
// full; a segment is finished once the next one exists (the writer never goes back). poll()
// reads what each shard's newest segment gained since the last call and decodes whole records;
// a partial record at the end is a write still in progress, read again next time. It may see a
// record a moment before the shard's fdatasync completes: a consumer can then get a job whose
// sender is still waiting for its 202 (and, if the disk fails, gets a 503 and sends it again).
// At least once allows exactly that; it never loses a job that was answered 202.
//
// The ledger (<spool dir>/ledger.log, ledger.hh) holds what happened to jobs. commit(true)
// fdatasyncs it, so that an answered ack survives kill -9; leases are written without waiting
// (a lost lease only means a redelivery with the same attempt number).
#pragma once

#include "portcullis/config/snapshot.hh"
#include "portcullis/queue/job_table.hh"
#include "portcullis/queue/record.hh"

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace portcullis::queue {

struct StoreStats {
    uint64_t jobs_found = 0;       // records indexed (start-up and tailing)
    uint64_t unknown_routes = 0;   // records of routes the configuration no longer has
    uint64_t ledger_ops = 0;       // written since start
    uint64_t segments_deleted = 0; // by retention
    uint64_t ledger_errors = 0;    // failed writes or fdatasyncs of the ledger
};

class JobStore {
public:
    JobStore() = default;
    JobStore(const JobStore&) = delete;
    JobStore& operator=(const JobStore&) = delete;
    ~JobStore();

    // Start-up, blocking: indexes every segment of every shard folder, replays the ledger (cutting
    // a torn tail, reported in the log), and opens it for appending. Returns "" or the error.
    std::string open(const config::Snapshot& snapshot, int64_t now_ns);

    // Indexes the records the shards have written since the last call. Returns how many.
    size_t poll();

    // Reads the record at where into buf and decodes it into rec (views into buf). False if it
    // cannot be read or does not decode (logged once per call).
    bool read(const JobLocation& where, std::string& buf, JobRecord& rec);

    // Writes the table's pending ops to the ledger, and fdatasyncs it when sync is set (acks,
    // nacks, replays: what an answer promises). False on an I/O error: the caller answers 503.
    bool commit(bool sync);

    // Deletes the segments whose jobs are all done or dead and whose newest job is older than
    // spool.retention, never a shard's newest segment. Returns how many.
    size_t retire(int64_t now_ns);

    JobTable& table() { return *_table; }
    const JobTable& table() const { return *_table; }
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
    };

    // Adds the records advance() found to the table, oldest first.
    void add_found();
    std::string index_segment(uint32_t shard, uint64_t seq, const std::string& path);
    // Reads from the segment's indexed end to its current end and indexes the whole records.
    size_t advance(uint32_t shard, uint64_t seq, Segment& seg);
    int segment_fd(uint32_t shard, uint64_t seq, Segment& seg);

    std::string _dir;
    int64_t _retention_ns = 0;
    std::vector<std::string> _route_names;
    std::unique_ptr<JobTable> _table;
    std::map<std::pair<uint32_t, uint64_t>, Segment> _segments;
    std::vector<Tail> _tails; // by shard
    int _ledger_fd = -1;
    std::vector<uint8_t> _ledger_buf;
    std::string _scratch;
    std::vector<Found> _found;
    StoreStats _stats;
};

} // namespace portcullis::queue
