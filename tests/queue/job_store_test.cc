#include "portcullis/queue/job_store.hh"

#include "portcullis/queue/segment.hh"

#include "../snapshot_from_yaml.hh"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::queue;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<config::Snapshot> build(const std::string& spool_dir) {
    return snapshot_from_yaml("spool: {dir: " + spool_dir +
                              "}\nroutes:\n  github:\n    path: /webhooks/github\n"
                              "    verify: {scheme: none}\n");
}

constexpr int64_t base_received_ns = 1795353480000000000;
constexpr int64_t now_ns = 1795353490000000000;

JobId id_of(uint8_t n) {
    JobId id;
    id.bytes[0] = 1; // ids sort by time first: a fixed high byte keeps them in n's order
    id.bytes[15] = n;
    return id;
}

std::vector<uint8_t> job(uint8_t n, size_t body_bytes = 100, std::string_view route = "github") {
    JobMeta meta;
    meta.id = id_of(n);
    meta.route = route;
    meta.received_at_ns = base_received_ns + n;
    meta.peer = *base::PeerAddress::parse("192.0.2.1", 1000);
    http::Header headers[] = {{"X-GitHub-Delivery", "d"}};
    return make_job_record(meta, headers, std::string(body_bytes, static_cast<char>('a' + n % 26)));
}

// A spool folder with shard 0's segments written by hand, as a shard's writer would.
class JobStoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/job_store_test.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        _dir = tmpl;
        fs::create_directories(_dir + "/shard-0");
        _snap = build(_dir);
        ASSERT_NE(_snap, nullptr);
    }
    void TearDown() override { fs::remove_all(_dir); }

    // Starts segment seq with its header; returns its path.
    std::string start(uint64_t seq) {
        std::string path = segment_path(_dir, 0, seq);
        std::vector<uint8_t> h(segment_header_size);
        encode_segment_header(0, std::span<uint8_t, segment_header_size>(h.data(), h.size()));
        write_at(path, 0, h);
        return path;
    }
    // Appends records; returns each one's offset.
    std::vector<uint64_t> append(const std::string& path, uint8_t first, uint8_t count) {
        std::vector<uint64_t> offsets;
        for (uint8_t n = first; n < first + count; ++n) {
            offsets.push_back(fs::file_size(path));
            write_at(path, offsets.back(), job(n));
        }
        return offsets;
    }
    static void write_at(const std::string& path, uint64_t offset,
                         const std::vector<uint8_t>& bytes) {
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)),
                  static_cast<ssize_t>(bytes.size()));
        ::close(fd);
    }
    // Sets one bit of a record's u32 payload length (bytes 4..7 of its prefix).
    static void flip_length_bit(const std::string& path, uint64_t record_offset, int bit) {
        int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        uint8_t b = 0;
        const auto at = static_cast<off_t>(record_offset + 4 + bit / 8);
        ASSERT_EQ(::pread(fd, &b, 1, at), 1);
        b ^= static_cast<uint8_t>(1u << (bit % 8));
        ASSERT_EQ(::pwrite(fd, &b, 1, at), 1);
        ::close(fd);
    }
    std::string open_store() {
        return _store.open(*_snap, std::span<const SpoolProgress>(&_progress, 1), now_ns);
    }
    bool indexed(uint8_t n) const { return _store.table().find(id_of(n)).has_value(); }

    std::string _dir;
    std::unique_ptr<config::Snapshot> _snap;
    SpoolProgress _progress;
    JobStore _store;
};

} // namespace

TEST_F(JobStoreTest, SkipsARecordWhoseLengthRunsPastTheEndOfAFinishedSegment) {
    // The reproduction: a flipped bit in the length of a record in the middle of a segment the
    // writer has moved past (after a restart it always starts a new one) makes that record
    // claim more bytes than the file holds. Only it is lost; every later job is indexed.
    std::string path = start(1);
    std::vector<uint64_t> at = append(path, 1, 10);
    flip_length_bit(path, at[4], 19); // +512 KiB: past the end of this 2 KiB file
    start(2);
    _progress.publish(2, segment_header_size);
    ASSERT_EQ(open_store(), "");
    EXPECT_EQ(_store.table().size(), 9u);
    EXPECT_FALSE(indexed(5));
    for (uint8_t n : {1, 4, 6, 10}) {
        EXPECT_TRUE(indexed(n)) << "job " << int{n};
    }
    EXPECT_EQ(_store.stats().damaged_regions, 1u);
    EXPECT_EQ(_store.stats().damaged_bytes, at[5] - at[4]);
}

TEST_F(JobStoreTest, SkipsDamageInsideTheCommittedPartOfTheSegmentBeingWritten) {
    std::string path = start(1);
    std::vector<uint64_t> at = append(path, 1, 10);
    flip_length_bit(path, at[2], 19);
    _progress.publish(1, fs::file_size(path));
    ASSERT_EQ(open_store(), "");
    EXPECT_EQ(_store.table().size(), 9u);
    EXPECT_FALSE(indexed(3));
    EXPECT_TRUE(indexed(10));
    EXPECT_EQ(_store.stats().damaged_regions, 1u);

    // Damage in what is appended later is skipped the same way while tailing.
    std::vector<uint64_t> more = append(path, 11, 5);
    flip_length_bit(path, more[1], 12);
    _progress.publish(1, fs::file_size(path));
    EXPECT_EQ(_store.poll(), 4u);
    EXPECT_FALSE(indexed(12));
    EXPECT_TRUE(indexed(15));
    EXPECT_EQ(_store.stats().damaged_regions, 2u);
}

TEST_F(JobStoreTest, IndexesOnlyWhatTheWriterHasCommitted) {
    std::string path = start(1);
    std::vector<uint64_t> at = append(path, 1, 3);
    _progress.publish(1, at[2]); // the third record's group is still being written
    ASSERT_EQ(open_store(), "");
    EXPECT_EQ(_store.table().size(), 2u);
    EXPECT_FALSE(indexed(3));
    EXPECT_EQ(_store.poll(), 0u);
    _progress.publish(1, fs::file_size(path));
    EXPECT_EQ(_store.poll(), 1u);
    EXPECT_TRUE(indexed(3));
    EXPECT_EQ(_store.stats().damaged_regions, 0u);
}

TEST_F(JobStoreTest, AGroupThatFailedAndWasCutOffIsNeverIndexedAndWhatReplacesItIs) {
    // The writer wrote job 2, its fdatasync failed (answered 503), it cut the file back and
    // wrote job 3 (a different size) where job 2 was. A reader that had taken job 2 would
    // resume in the middle of job 3 and miss it.
    std::string path = start(1);
    std::vector<uint64_t> at = append(path, 1, 2);
    _progress.publish(1, at[1]);
    ASSERT_EQ(open_store(), "");
    EXPECT_EQ(_store.poll(), 0u);
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(at[1])), 0);
    std::vector<uint8_t> replacement = job(3, 900);
    write_at(path, at[1], replacement);
    _progress.publish(1, at[1] + replacement.size());
    EXPECT_EQ(_store.poll(), 1u);
    EXPECT_TRUE(indexed(1));
    EXPECT_FALSE(indexed(2));
    EXPECT_TRUE(indexed(3));
    EXPECT_EQ(_store.stats().damaged_regions, 0u);
}

TEST_F(JobStoreTest, ASegmentFinishesWhenTheWriterMovesOn) {
    std::string first = start(1);
    append(first, 1, 2);
    _progress.publish(1, fs::file_size(first));
    ASSERT_EQ(open_store(), "");
    EXPECT_EQ(_store.table().size(), 2u);
    // The writer's last group of segment 1, then it rotates: segment 2 exists before its first
    // group is committed.
    append(first, 3, 1);
    _progress.publish(1, fs::file_size(first));
    std::string second = start(2);
    append(second, 4, 1);
    EXPECT_EQ(_store.poll(), 1u) << "segment 2 holds nothing committed yet";
    _progress.publish(2, segment_header_size);
    EXPECT_EQ(_store.poll(), 0u);
    append(second, 5, 1);
    _progress.publish(2, fs::file_size(second));
    EXPECT_EQ(_store.poll(), 2u);
    for (uint8_t n = 1; n <= 5; ++n) {
        EXPECT_TRUE(indexed(n)) << "job " << int{n};
    }
}

// ---- push delivery: one table per sink, each its own ledger lane ----

namespace {

constexpr const char* sinks_yaml = R"(
sinks:
  app: {http: {url: "http://127.0.0.1:9/a"}}
  bus: {http: {url: "http://127.0.0.1:9/b"}}
routes:
  github: {path: /webhooks/github, verify: {scheme: none}, deliver: [app, bus], max_attempts: 3}
  plain: {path: /webhooks/plain, verify: {scheme: none}}
  seq: {path: /webhooks/seq, verify: {scheme: none}, deliver: [bus], ordered: true}
)";

// The same sinks in the other order, and a third one.
constexpr const char* reordered_yaml = R"(
sinks:
  deploy: {http: {url: "http://127.0.0.1:9/d"}}
  bus: {http: {url: "http://127.0.0.1:9/b"}}
  app: {http: {url: "http://127.0.0.1:9/a"}}
routes:
  github: {path: /webhooks/github, verify: {scheme: none}, deliver: [bus, app], max_attempts: 3}
  plain: {path: /webhooks/plain, verify: {scheme: none}, deliver: [deploy]}
  seq: {path: /webhooks/seq, verify: {scheme: none}, deliver: [bus], ordered: true}
)";

class JobStoreLanesTest : public JobStoreTest {
protected:
    // Opens a new store (as a restart does) on the spool with this configuration.
    std::string reopen(const char* yaml = sinks_yaml, int64_t now = now_ns) {
        _store2.reset();
        _snap2 = snapshot_from_yaml("spool: {dir: " + _dir + ", retention: 1s}\n" + yaml);
        if (_snap2 == nullptr) {
            return "bad configuration";
        }
        _store2 = std::make_unique<JobStore>();
        return _store2->open(*_snap2, {}, now);
    }
    JobStore& s() { return *_store2; }
    // Segment 1 with jobs 1..3 of github, 4 of plain; segment 2 (the newest) empty.
    void write_jobs() {
        std::string path = start(1);
        for (uint8_t n = 1; n <= 3; ++n) {
            write_at(path, fs::file_size(path), job(n));
        }
        write_at(path, fs::file_size(path), job(4, 100, "plain"));
        start(2);
    }
    size_t sink(std::string_view name) {
        const auto& sinks = _snap2->config().sinks;
        for (size_t i = 0; i < sinks.size(); ++i) {
            if (sinks[i].name == name) {
                return i;
            }
        }
        ADD_FAILURE() << "no sink " << name;
        return 0;
    }
    std::string state(const JobTable& t, uint8_t n) {
        auto j = t.find(id_of(n));
        return j ? std::string(state_name(j->state)) + "/" + std::to_string(j->attempts) : "none";
    }
    std::vector<JobInfo> lease(JobTable& t, const char* route, size_t max = 10) {
        std::vector<JobInfo> out;
        t.lease(static_cast<uint16_t>(s().route_index(route)), max, 30 * ns_per_s, now_ns, out);
        return out;
    }

    std::unique_ptr<config::Snapshot> _snap2;
    std::unique_ptr<JobStore> _store2;
};

} // namespace

TEST_F(JobStoreLanesTest, AJobIsInThePullTableAndInTheTableOfEachSinkOfItsRoute) {
    write_jobs();
    ASSERT_EQ(reopen(), "");
    ASSERT_EQ(s().sink_count(), 2u);
    for (uint8_t n = 1; n <= 3; ++n) {
        EXPECT_EQ(state(s().table(), n), "queued/0");
        EXPECT_EQ(state(s().sink_table(sink("app")), n), "queued/0");
        EXPECT_EQ(state(s().sink_table(sink("bus")), n), "queued/0");
    }
    EXPECT_EQ(state(s().table(), 4), "queued/0");
    EXPECT_EQ(state(s().sink_table(sink("app")), 4), "none");
    EXPECT_EQ(state(s().sink_table(sink("bus")), 4), "none");
    EXPECT_EQ(s().sink_lane(sink("app")), 1);
    EXPECT_EQ(s().sink_lane(sink("bus")), 2);
    EXPECT_TRUE(fs::exists(_dir + "/lanes"));
}

TEST_F(JobStoreLanesTest, ASinksSettlementsSurviveARestartInItsLaneOnly) {
    write_jobs();
    ASSERT_EQ(reopen(), "");
    JobTable& app = s().sink_table(sink("app"));
    ASSERT_EQ(lease(app, "github", 2).size(), 2u);
    ASSERT_EQ(app.ack(id_of(1), now_ns), JobTable::Settle::ok);
    ASSERT_EQ(app.bury(id_of(2), now_ns), JobTable::Settle::ok);
    EXPECT_TRUE(s().has_pending_ops());
    ASSERT_TRUE(s().commit(true));
    EXPECT_FALSE(s().has_pending_ops());
    for (const char* yaml : {sinks_yaml, reordered_yaml, sinks_yaml}) {
        ASSERT_EQ(reopen(yaml), "");
        EXPECT_EQ(state(s().sink_table(sink("app")), 1), "done/1") << yaml;
        EXPECT_EQ(state(s().sink_table(sink("app")), 2), "dead/1") << yaml;
        EXPECT_EQ(state(s().sink_table(sink("bus")), 1), "queued/0") << yaml;
        EXPECT_EQ(state(s().sink_table(sink("bus")), 2), "queued/0") << yaml;
        EXPECT_EQ(state(s().table(), 1), "queued/0") << yaml;
    }
    // The sink added by the other configuration kept its number too.
    std::ifstream f(_dir + "/lanes");
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("\n1 app\n2 bus\n3 deploy\n"), std::string::npos) << text;
}

TEST_F(JobStoreLanesTest, ASegmentIsRetiredOnlyOnceEveryLaneIsDoneWithIt) {
    write_jobs();
    ASSERT_EQ(reopen(), "");
    // plain has no sinks: the pull API must settle job 4; github's pull lane is optional.
    ASSERT_EQ(lease(s().table(), "plain").size(), 1u);
    ASSERT_EQ(s().table().ack(id_of(4), now_ns), JobTable::Settle::ok);
    for (const char* name : {"app", "bus"}) {
        JobTable& t = s().sink_table(sink(name));
        for (const JobInfo& j : lease(t, "github")) {
            ASSERT_EQ(t.ack(j.id, now_ns), JobTable::Settle::ok);
        }
        ASSERT_TRUE(s().commit(true));
        EXPECT_EQ(s().retire(now_ns), name == std::string("app") ? 0u : 1u) << name;
    }
    EXPECT_FALSE(fs::exists(segment_path(_dir, 0, 1)));
}

TEST_F(JobStoreLanesTest, AnOptionalPullLaneHoldsASegmentOnlyForWhatItLeased) {
    write_jobs();
    ASSERT_EQ(reopen(), "");
    ASSERT_EQ(s().table().ack(id_of(4), now_ns), JobTable::Settle::ok);
    ASSERT_EQ(lease(s().table(), "github", 1).size(), 1u); // job 1, by the pull API
    for (const char* name : {"app", "bus"}) {
        JobTable& t = s().sink_table(sink(name));
        for (const JobInfo& j : lease(t, "github")) {
            ASSERT_EQ(t.ack(j.id, now_ns), JobTable::Settle::ok);
        }
    }
    ASSERT_TRUE(s().commit(true));
    EXPECT_EQ(s().retire(now_ns), 0u) << "the pull API leased job 1 and has not settled it";
    ASSERT_EQ(s().table().ack(id_of(1), now_ns), JobTable::Settle::ok);
    ASSERT_TRUE(s().commit(true));
    EXPECT_EQ(s().retire(now_ns), 1u);
}

TEST_F(JobStoreLanesTest, SinkLeasesAreVoidAfterARestart) {
    write_jobs();
    ASSERT_EQ(reopen(), "");
    ASSERT_EQ(lease(s().sink_table(sink("app")), "github", 1).size(), 1u);
    ASSERT_EQ(lease(s().table(), "plain").size(), 1u);
    ASSERT_TRUE(s().commit(true));
    ASSERT_EQ(reopen(), "");
    EXPECT_EQ(s().stats().leases_voided, 1u);
    EXPECT_EQ(state(s().sink_table(sink("app")), 1), "queued/1");
    EXPECT_EQ(state(s().table(), 4), "leased/1") << "the pull API's leases run their course";
    std::vector<JobInfo> again = lease(s().sink_table(sink("app")), "github", 1);
    ASSERT_EQ(again.size(), 1u);
    EXPECT_EQ(again[0].id, id_of(1)) << "delivered again first";
    EXPECT_EQ(again[0].attempts, 2);
}

TEST_F(JobStoreLanesTest, AFailedGroupRollsBackEveryTablesShare) {
    write_jobs();
    ASSERT_EQ(reopen(), "");
    JobTable& app = s().sink_table(sink("app"));
    JobTable& bus = s().sink_table(sink("bus"));
    ASSERT_EQ(lease(app, "github", 1).size(), 1u);
    ASSERT_EQ(lease(bus, "github", 1).size(), 1u);
    ASSERT_EQ(lease(s().table(), "plain").size(), 1u);
    ASSERT_TRUE(s().commit(true));
    ASSERT_EQ(app.ack(id_of(1), now_ns), JobTable::Settle::ok);
    ASSERT_EQ(bus.nack(id_of(1), 0, now_ns), JobTable::Settle::ok);
    ASSERT_EQ(s().table().ack(id_of(4), now_ns), JobTable::Settle::ok);
    const size_t before = fs::file_size(s().ledger_path());
    std::span<const uint8_t> bytes = s().take_ops();
    EXPECT_EQ(bytes.size(), 3 * ledger_record_size);
    // The write reaches the file, its fdatasync fails: the group is cut and rolled back.
    ASSERT_EQ(::write(s().ledger_fd(), bytes.data(), bytes.size()),
              static_cast<ssize_t>(bytes.size()));
    EXPECT_EQ(s().ops_failed(), 3u);
    EXPECT_EQ(fs::file_size(s().ledger_path()), before);
    EXPECT_EQ(state(app, 1), "leased/1");
    EXPECT_EQ(state(bus, 1), "leased/1");
    EXPECT_EQ(state(s().table(), 4), "leased/1");
    EXPECT_FALSE(s().has_pending_ops());
    // The retries are written, and what a restart reads is what was answered.
    ASSERT_EQ(app.ack(id_of(1), now_ns), JobTable::Settle::ok);
    ASSERT_TRUE(s().commit(true));
    ASSERT_EQ(reopen(), "");
    EXPECT_EQ(state(s().sink_table(sink("app")), 1), "done/1");
    EXPECT_EQ(state(s().sink_table(sink("bus")), 1), "queued/1");
    EXPECT_EQ(state(s().table(), 4), "leased/1");
}

TEST_F(JobStoreLanesTest, OpsOfALaneTheLanesFileDoesNotListStopTheStart) {
    write_jobs();
    ASSERT_EQ(reopen(), "");
    JobTable& bus = s().sink_table(sink("bus"));
    ASSERT_EQ(lease(bus, "github", 1).size(), 1u);
    ASSERT_TRUE(s().commit(true));
    fs::remove(_dir + "/lanes");
    std::string err = reopen();
    EXPECT_NE(err.find("delivery lane 2, which " + _dir + "/lanes does not list"),
              std::string::npos)
        << err;
    // A damaged file names its line.
    std::ofstream(_dir + "/lanes") << "1 app\n2 bus\n2x\n";
    err = reopen();
    EXPECT_NE(err.find(_dir + "/lanes:3: "), std::string::npos) << err;
}

TEST_F(JobStoreLanesTest, AnOrderedRouteDeliversOneJobAtATimePerOrderingKey) {
    std::string path = start(1);
    for (uint8_t n = 1; n <= 4; ++n) {
        std::vector<uint8_t> rec = job(n, 100, "seq");
        write_at(path, fs::file_size(path), rec);
    }
    start(2);
    ASSERT_EQ(reopen(), "");
    JobTable& bus = s().sink_table(sink("bus"));
    std::vector<JobInfo> got = lease(bus, "seq");
    ASSERT_EQ(got.size(), 1u) << "no ordering key: the whole route is one sequence";
    EXPECT_EQ(got[0].id, id_of(1));
    ASSERT_EQ(bus.ack(id_of(1), now_ns), JobTable::Settle::ok);
    EXPECT_EQ(lease(bus, "seq").size(), 0u);
    ASSERT_TRUE(s().commit(true));
    got = lease(bus, "seq");
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].id, id_of(2));
    ASSERT_TRUE(s().commit(true));
    // A restart: 2's lease is void, and it is delivered again before 3.
    ASSERT_EQ(reopen(), "");
    got = lease(s().sink_table(sink("bus")), "seq");
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].id, id_of(2));
    EXPECT_EQ(got[0].attempts, 2);
}

// ---- live reload: JobStore::reconfigure ----

namespace {

// sinks_yaml after a reload: bus changed routes, app gone, deploy new, plain removed, extra new.
constexpr const char* reloaded_yaml = R"(
sinks:
  deploy: {http: {url: "http://127.0.0.1:9/d"}}
  bus: {http: {url: "http://127.0.0.1:9/b"}}
routes:
  extra: {path: /webhooks/extra, verify: {scheme: none}, deliver: [deploy]}
  github: {path: /webhooks/github, verify: {scheme: none}, deliver: [bus, deploy], max_attempts: 5}
  seq: {path: /webhooks/seq, verify: {scheme: none}, deliver: [bus], ordered: true}
)";

class JobStoreReloadTest : public JobStoreLanesTest {
protected:
    // Reconfigures the running store (s()) with yaml; the snapshot is kept alive in _next.
    std::string reload(const char* yaml, ReloadReport& report) {
        _next.push_back(snapshot_from_yaml("spool: {dir: " + _dir + ", retention: 1s}\n" + yaml));
        if (_next.back() == nullptr) {
            return "bad configuration";
        }
        return s().reconfigure(*_next.back(), now_ns, report);
    }
    size_t number(std::string_view sink) {
        const int n = s().sink_index(sink);
        EXPECT_GE(n, 0) << sink;
        return static_cast<size_t>(n);
    }
    std::string lanes_text() {
        std::ifstream f(_dir + "/lanes");
        return {(std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>()};
    }
    static std::string join(const std::vector<std::string>& v) {
        std::string out;
        for (const std::string& x : v) {
            out += (out.empty() ? "" : ",") + x;
        }
        return out;
    }

    std::vector<std::unique_ptr<config::Snapshot>> _next;
};

} // namespace

TEST_F(JobStoreReloadTest, NumbersStayWithTheirNamesAndNewNamesComeNext) {
    write_jobs();
    ASSERT_EQ(reopen(), "");
    const int github = s().route_index("github");
    const int plain = s().route_index("plain");
    const int seq = s().route_index("seq");
    ReloadReport report;
    ASSERT_EQ(reload(reloaded_yaml, report), "");
    EXPECT_EQ(s().route_index("github"), github);
    EXPECT_EQ(s().route_index("plain"), plain) << "a removed route keeps its number";
    EXPECT_EQ(s().route_index("seq"), seq);
    EXPECT_EQ(s().route_index("extra"), 3) << "a new name comes after every number given";
    EXPECT_EQ(s().route_name(3), "extra");
    EXPECT_EQ(s().sink_index("app"), 0);
    EXPECT_EQ(s().sink_index("bus"), 1);
    EXPECT_EQ(s().sink_index("deploy"), 2) << "written first, numbered last: numbers are names'";
    EXPECT_FALSE(s().sink_active(0));
    EXPECT_TRUE(s().sink_active(1));
    EXPECT_TRUE(s().sink_active(2));
    EXPECT_EQ(s().sink_lane(2), 3);
    EXPECT_NE(lanes_text().find("\n1 app\n2 bus\n3 deploy\n"), std::string::npos) << lanes_text();
    EXPECT_EQ(join(report.routes_added), "extra");
    EXPECT_EQ(join(report.routes_removed), "plain");
    EXPECT_EQ(join(report.routes_changed), "github");
    EXPECT_EQ(join(report.sinks_added), "deploy");
    ASSERT_EQ(report.sinks_removed.size(), 1u);
    EXPECT_EQ(report.sinks_removed[0].name, "app");
    EXPECT_EQ(report.sinks_removed[0].pending, 3u) << "github's 3 jobs were queued for app";
    EXPECT_EQ(report.removed_route_pending, 1u) << "plain's job 4, for the pull API";
    // Every table has every route: a job of the new route can be added and leased anywhere.
    EXPECT_EQ(s().table().routes(), 4u);
    EXPECT_EQ(s().sink_table(number("app")).routes(), 4u);
    EXPECT_EQ(s().sink_table(number("deploy")).routes(), 4u);
}

TEST_F(JobStoreReloadTest, ASinkNewToARouteGetsTheJobsTheSpoolHoldsAsARestartWouldGiveIt) {
    write_jobs();
    ASSERT_EQ(reopen(), "");
    // The pull API settles job 1 before the reload: the new sink still gets it (its lane has no
    // op of it), exactly as after a restart.
    ASSERT_EQ(lease(s().table(), "github", 1).size(), 1u);
    ASSERT_EQ(s().table().ack(id_of(1), now_ns), JobTable::Settle::ok);
    ASSERT_TRUE(s().commit(true));
    ReloadReport report;
    ASSERT_EQ(reload(reloaded_yaml, report), "");
    EXPECT_EQ(report.backfilled, 3u);
    const size_t deploy = number("deploy");
    std::vector<std::string> live;
    for (uint8_t n = 1; n <= 4; ++n) {
        live.push_back(state(s().sink_table(deploy), n));
    }
    EXPECT_EQ(join(live), "queued/0,queued/0,queued/0,none");
    // github gained max_attempts 5 in every lane: a job past 3 attempts is not dead.
    JobTable& bus = s().sink_table(number("bus"));
    for (int attempt = 1; attempt <= 4; ++attempt) {
        std::vector<JobInfo> got = lease(bus, "github");
        ASSERT_EQ(got.size(), 3u) << attempt;
        for (const JobInfo& j : got) {
            ASSERT_EQ(bus.nack(j.id, 0, now_ns), JobTable::Settle::ok);
        }
    }
    EXPECT_EQ(state(bus, 1), "queued/4");
    ASSERT_TRUE(s().commit(true));
    // A restart with the new configuration: the new sink's table is the one the reload built.
    ASSERT_EQ(reopen(reloaded_yaml), "");
    std::vector<std::string> restarted;
    for (uint8_t n = 1; n <= 4; ++n) {
        restarted.push_back(state(s().sink_table(sink("deploy")), n));
    }
    EXPECT_EQ(join(restarted), join(live));
}

TEST_F(JobStoreReloadTest, RecordsOfARouteTheStoreDidNotKnowAreIndexedWhenAReloadAddsIt) {
    // A shard on the new configuration writes a job of `extra` before the control plane
    // switches: the store skips it as unknown, then must index it when `extra` arrives.
    std::string path = start(1);
    write_at(path, fs::file_size(path), job(1));
    write_at(path, fs::file_size(path), job(2, 100, "extra"));
    start(2);
    ASSERT_EQ(reopen(), "");
    EXPECT_EQ(s().stats().unknown_routes, 1u);
    EXPECT_FALSE(s().table().find(id_of(2)).has_value());
    ReloadReport report;
    ASSERT_EQ(reload(reloaded_yaml, report), "");
    EXPECT_EQ(report.recovered, 1u);
    EXPECT_EQ(state(s().table(), 2), "queued/0");
    EXPECT_EQ(state(s().sink_table(number("deploy")), 2), "queued/0") << "extra delivers there";
    EXPECT_EQ(state(s().sink_table(number("deploy")), 1), "queued/0") << "github, backfilled";
}

TEST_F(JobStoreReloadTest, ARemovedSinksJobsAreReportedKeptAndCountAgainWhenItComesBack) {
    write_jobs();
    ASSERT_EQ(reopen(), "");
    JobTable& app = s().sink_table(sink("app"));
    ASSERT_EQ(lease(app, "github", 2).size(), 2u); // 1 and 2 in flight
    ASSERT_EQ(app.ack(id_of(1), now_ns), JobTable::Settle::ok);
    ASSERT_TRUE(s().commit(true));
    ReloadReport report;
    ASSERT_EQ(reload(reloaded_yaml, report), "");
    ASSERT_EQ(report.sinks_removed.size(), 1u);
    EXPECT_EQ(report.sinks_removed[0].pending, 2u) << "2 leased, 3 queued; 1 delivered";
    // Its table is dormant: what it had stays, and it holds no segment back (as after a
    // restart without it). The pull lane of github is optional, bus and deploy settle.
    for (const char* name : {"bus", "deploy"}) {
        JobTable& t = s().sink_table(number(name));
        for (const JobInfo& j : lease(t, "github")) {
            ASSERT_EQ(t.ack(j.id, now_ns), JobTable::Settle::ok);
        }
    }
    ASSERT_EQ(lease(s().table(), "plain").size(), 1u);
    ASSERT_EQ(s().table().ack(id_of(4), now_ns), JobTable::Settle::ok);
    ASSERT_TRUE(s().commit(true));
    EXPECT_EQ(state(s().sink_table(number("app")), 2), "leased/1");
    // Restarted with the old configuration (app back) before the retention ran: app's lane has
    // 1 delivered, 2's lease void, 3 queued, exactly what bringing it back live gives.
    ASSERT_EQ(reopen(sinks_yaml), "");
    std::vector<std::string> restarted;
    for (uint8_t n = 1; n <= 3; ++n) {
        restarted.push_back(state(s().sink_table(sink("app")), n));
    }
    EXPECT_EQ(join(restarted), "done/1,queued/1,queued/0");
    ASSERT_EQ(reload(reloaded_yaml, report), "");
    ASSERT_EQ(reload(sinks_yaml, report), "");
    EXPECT_EQ(join(report.sinks_added), "app");
    std::vector<std::string> back;
    for (uint8_t n = 1; n <= 3; ++n) {
        back.push_back(state(s().sink_table(number("app")), n));
    }
    EXPECT_EQ(join(back), join(restarted));
}

TEST_F(JobStoreReloadTest, ADormantTableHoldsNoSegmentBack) {
    write_jobs();
    ASSERT_EQ(reopen(), "");
    ReloadReport report;
    // Only github's jobs for bus, settled; app removed with github's 3 jobs queued.
    ASSERT_EQ(reload(R"(
sinks:
  bus: {http: {url: "http://127.0.0.1:9/b"}}
routes:
  github: {path: /webhooks/github, verify: {scheme: none}, deliver: [bus]}
  plain: {path: /webhooks/plain, verify: {scheme: none}}
)",
                     report),
              "");
    JobTable& bus = s().sink_table(number("bus"));
    for (const JobInfo& j : lease(bus, "github")) {
        ASSERT_EQ(bus.ack(j.id, now_ns), JobTable::Settle::ok);
    }
    ASSERT_EQ(lease(s().table(), "plain").size(), 1u);
    ASSERT_EQ(s().table().ack(id_of(4), now_ns), JobTable::Settle::ok);
    ASSERT_TRUE(s().commit(true));
    EXPECT_EQ(s().retire(now_ns), 1u);
}

TEST_F(JobStoreReloadTest, ChangingOrderedIsRefusedNamingTheRouteAndNothingChanges) {
    write_jobs();
    ASSERT_EQ(reopen(), "");
    std::string yaml = std::string(sinks_yaml);
    yaml.replace(yaml.find("ordered: true"), 13, "ordered: false");
    _next.push_back(snapshot_from_yaml("spool: {dir: " + _dir + "}\n" + yaml));
    ASSERT_NE(_next.back(), nullptr);
    const std::string err = s().check_reconfigure(*_next.back());
    EXPECT_NE(err.find("test.yaml:"), std::string::npos) << err;
    EXPECT_NE(err.find("routes.seq.ordered: changed (true -> false)"), std::string::npos) << err;
    ReloadReport report;
    EXPECT_EQ(s().reconfigure(*_next.back(), now_ns, report), err);
    EXPECT_TRUE(s().sink_active(sink("app")));
    EXPECT_EQ(s().route_index("seq"), 2);
}

TEST_F(JobStoreReloadTest, AThousandRoutesReconfigureQuickly) {
    auto routes_yaml = [](int from, int to, const char* deliver) {
        std::string y = "sinks:\n  a: {http: {url: \"http://127.0.0.1:9/a\"}}\n"
                        "  b: {http: {url: \"http://127.0.0.1:9/b\"}}\nroutes:\n";
        for (int i = from; i < to; ++i) {
            y += "  r" + std::to_string(i) + ": {path: /r" + std::to_string(i) +
                 ", verify: {scheme: none}, deliver: [" + deliver + "]}\n";
        }
        return y;
    };
    // 20,000 jobs over the 1,000 routes, indexed at open: every record looks its route up.
    std::string path = start(1);
    std::ofstream out(path, std::ios::binary | std::ios::app);
    for (int n = 0; n < 20000; ++n) {
        JobMeta meta;
        meta.id = id_of(0);
        meta.id.bytes[13] = static_cast<uint8_t>(n >> 8);
        meta.id.bytes[14] = static_cast<uint8_t>(n);
        const std::string route = "r" + std::to_string(n % 1000);
        meta.route = route;
        meta.received_at_ns = base_received_ns + n;
        meta.peer = *base::PeerAddress::parse("192.0.2.1", 1000);
        std::vector<uint8_t> rec = make_job_record(meta, {}, "x");
        out.write(reinterpret_cast<const char*>(rec.data()),
                  static_cast<std::streamsize>(rec.size()));
    }
    out.close();
    start(2);
    const std::string first = routes_yaml(0, 1000, "a");
    const std::string second = routes_yaml(500, 1500, "a, b"); // 500 removed, 500 new, 500 changed
    _snap2 = snapshot_from_yaml("spool: {dir: " + _dir + "}\n" + first);
    ASSERT_NE(_snap2, nullptr);
    _store2 = std::make_unique<JobStore>();
    auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(s().open(*_snap2, {}, now_ns), "");
    auto t1 = std::chrono::steady_clock::now();
    EXPECT_EQ(s().table().size(), 20000u);
    _next.push_back(snapshot_from_yaml("spool: {dir: " + _dir + "}\n" + second));
    ASSERT_NE(_next.back(), nullptr);
    ReloadReport report;
    auto t2 = std::chrono::steady_clock::now();
    ASSERT_EQ(s().reconfigure(*_next.back(), now_ns, report), "");
    auto t3 = std::chrono::steady_clock::now();
    EXPECT_EQ(report.routes_added.size(), 500u);
    EXPECT_EQ(report.routes_removed.size(), 500u);
    EXPECT_EQ(report.routes_changed.size(), 500u);
    EXPECT_EQ(report.backfilled, 10000u) << "b is new to r500..r999: their 10,000 jobs";
    EXPECT_EQ(s().route_index("r1499"), 1499);
    auto us = [](auto d) {
        return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    };
    std::printf("[ figures  ] open with 1,000 routes, 20,000 jobs: %lld us; reconfigure to 1,000 "
                "routes (500 new, 500 removed, 500 changed, 10,000 jobs backfilled): %lld us\n",
                static_cast<long long>(us(t1 - t0)), static_cast<long long>(us(t3 - t2)));
}
