// Engine::reconfigure end to end: a JobStore on a spool written by hand, the engine on a real
// io_uring loop as the control plane runs it (poll, pump, wait, dispatch, commit the ledger),
// and blocking HTTP/1.1 receivers on threads of the test, on 127.0.0.1 with kernel-chosen ports.
#include "portcullis/deliver/engine.hh"

#include "portcullis/base/time.hh"
#include "portcullis/queue/job_store.hh"
#include "portcullis/queue/segment.hh"

#include "../snapshot_from_yaml.hh"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace portcullis;
using deliver::Engine;
using deliver::EngineReload;
using queue::JobStore;
using queue::ReloadReport;
namespace fs = std::filesystem;

namespace {

constexpr int64_t ms = 1'000'000;

// Answers 200 to every request, or (stall) reads it and never answers. Records the job id and
// attempt of each request it read.
class Receiver {
public:
    explicit Receiver(bool stall = false) : _stall(stall) {
        _listen = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::bind(_listen, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        EXPECT_EQ(::listen(_listen, 64), 0);
        socklen_t len = sizeof a;
        ::getsockname(_listen, reinterpret_cast<sockaddr*>(&a), &len);
        _port = ntohs(a.sin_port);
        _accepter = std::thread([this] { accept_loop(); });
    }
    ~Receiver() {
        {
            std::lock_guard lock(_mutex);
            _stopping = true;
            for (int fd : _fds) {
                ::shutdown(fd, SHUT_RDWR);
            }
        }
        ::shutdown(_listen, SHUT_RDWR);
        _accepter.join();
        for (auto& t : _threads) {
            t.join();
        }
        for (int fd : _fds) {
            ::close(fd);
        }
        ::close(_listen);
    }
    Receiver(const Receiver&) = delete;
    Receiver& operator=(const Receiver&) = delete;

    std::string url() const { return "http://127.0.0.1:" + std::to_string(_port) + "/hook"; }
    // "<job id>/<attempt>" of each request read, in order.
    std::vector<std::string> got() {
        std::lock_guard lock(_mutex);
        return _got;
    }
    size_t count() { return got().size(); }

private:
    void accept_loop() {
        while (true) {
            const int fd = ::accept4(_listen, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                return;
            }
            std::lock_guard lock(_mutex);
            if (_stopping) {
                ::close(fd);
                return;
            }
            _fds.push_back(fd);
            _threads.emplace_back([this, fd] { serve(fd); });
        }
    }
    static std::string field(const std::string& head, const std::string& name) {
        const size_t at = head.find("\r\n" + name + ": ");
        if (at == std::string::npos) {
            return "";
        }
        const size_t from = at + 4 + name.size();
        return head.substr(from, head.find("\r\n", from) - from);
    }
    void serve(int fd) {
        std::string in;
        char buf[4096];
        while (true) {
            const size_t end = in.find("\r\n\r\n");
            if (end != std::string::npos) {
                const std::string head = in.substr(0, end + 2);
                const size_t body = std::stoul(field(head, "Content-Length"));
                if (in.size() >= end + 4 + body) {
                    in.erase(0, end + 4 + body);
                    {
                        std::lock_guard lock(_mutex);
                        _got.push_back(field(head, "Portcullis-Job-Id") + "/" +
                                       field(head, "Portcullis-Attempt"));
                    }
                    if (!_stall) {
                        const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                        if (::send(fd, ok.data(), ok.size(), MSG_NOSIGNAL) < 0) {
                            return;
                        }
                    }
                    continue;
                }
            }
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) {
                return;
            }
            in.append(buf, static_cast<size_t>(n));
        }
    }

    bool _stall;
    int _listen = -1;
    uint16_t _port = 0;
    std::thread _accepter;
    std::mutex _mutex;
    bool _stopping = false;
    std::vector<int> _fds;
    std::vector<std::thread> _threads;
    std::vector<std::string> _got;
};

constexpr int64_t base_received_ns = 1795353480000000000;

queue::JobId id_of(uint8_t n) {
    queue::JobId id;
    id.bytes[0] = 1;
    id.bytes[15] = n;
    return id;
}

std::string text_of(uint8_t n) {
    char text[queue::job_id_text_size];
    id_of(n).format(text);
    return {text, sizeof text};
}

class EngineReloadTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/engine_reload_test.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        _dir = tmpl;
        fs::create_directories(_dir + "/shard-0");
        ASSERT_EQ(_ring.init(256, 0), "");
    }
    void TearDown() override {
        stop_engine();
        fs::remove_all(_dir);
    }

    // Shard 0's segment seq with its header (no shard runs: every byte is final).
    void start_segment(uint64_t seq) {
        std::vector<uint8_t> h(queue::segment_header_size);
        queue::encode_segment_header(
            0, std::span<uint8_t, queue::segment_header_size>(h.data(), h.size()));
        append(seq, h);
    }
    void append(uint64_t seq, const std::vector<uint8_t>& bytes) {
        const int fd = ::open(queue::segment_path(_dir, 0, seq).c_str(),
                              O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
        ::close(fd);
    }
    void write_job(uint64_t seq, uint8_t n, const std::string& route) {
        queue::JobMeta meta;
        meta.id = id_of(n);
        meta.route = route;
        meta.received_at_ns = base_received_ns + n;
        meta.peer = *base::PeerAddress::parse("192.0.2.1", 1000);
        append(seq, queue::make_job_record(meta, {}, "{\"n\":" + std::to_string(n) + "}"));
    }
    // Jobs 1..3 of github in segment 1; segment 2 is the newest.
    void write_jobs() {
        start_segment(1);
        for (uint8_t n = 1; n <= 3; ++n) {
            write_job(1, n, "github");
        }
        start_segment(2);
    }

    const config::Snapshot& snapshot(const std::string& yaml) {
        _snaps.push_back(snapshot_from_yaml("spool: {dir: " + _dir + "}\n" + yaml));
        EXPECT_NE(_snaps.back(), nullptr);
        return *_snaps.back();
    }
    // A start: the store opens the spool, and the engine starts when there are sinks.
    void open(const std::string& yaml) {
        stop_engine();
        _store = std::make_unique<JobStore>();
        const config::Snapshot& snap = snapshot(yaml);
        ASSERT_EQ(_store->open(snap, {}, base::unix_ns()), "");
        if (!snap.config().sinks.empty()) {
            _engine = std::make_unique<Engine>(_ring, snap, *_store);
            ASSERT_EQ(_engine->init(base::mono_ns()), "");
        }
    }
    // A reload as the control plane makes it: the store, then the engine (created by the
    // first sink).
    EngineReload reload(const std::string& yaml, ReloadReport& report) {
        const config::Snapshot& next = snapshot(yaml);
        EXPECT_EQ(_store->check_reconfigure(next), "");
        EXPECT_EQ(_store->reconfigure(next, base::unix_ns(), report), "");
        EngineReload out;
        if (_engine) {
            out = _engine->reconfigure(next, base::unix_ns(), base::mono_ns());
        } else if (!next.config().sinks.empty()) {
            _engine = std::make_unique<Engine>(_ring, next, *_store);
            out.error = _engine->init(base::mono_ns());
        }
        return out;
    }
    // The control plane's loop, until cond() or max_ms.
    bool run_until(const std::function<bool()>& cond, int64_t max_ms = 5000) {
        const int64_t end = base::mono_ns() + max_ms * ms;
        while (!cond()) {
            if (base::mono_ns() > end) {
                return false;
            }
            turn();
        }
        return true;
    }
    void turn() {
        int64_t now = base::unix_ns();
        int64_t mono = base::mono_ns();
        _store->poll();
        _engine->pump(now, mono);
        _ring.submit_and_wait(_engine->wait_limit_ns(now, mono, 5 * ms));
        now = base::unix_ns();
        mono = base::mono_ns();
        _ring.for_each_cqe([&](const io_uring_cqe& c) {
            ASSERT_TRUE(Engine::owns(c.user_data));
            _engine->on_cqe(c, now, mono);
        });
        if (_store->has_pending_ops() || _engine->wants_sync()) {
            _engine->group_taken();
            _engine->group_resolved(_store->commit(true));
        }
    }
    void stop_engine() {
        if (_engine) {
            _engine->stop();
            const int64_t end = base::mono_ns() + 2000 * ms;
            while (!_engine->idle() && base::mono_ns() < end) {
                _ring.submit_and_wait(5 * ms);
                _ring.for_each_cqe([&](const io_uring_cqe& c) {
                    _engine->on_cqe(c, base::unix_ns(), base::mono_ns());
                });
            }
            EXPECT_TRUE(_engine->idle());
            _engine.reset();
        }
        if (_store) {
            EXPECT_TRUE(_store->commit(true));
        }
    }
    std::string state(const std::string& sink, uint8_t n) {
        const int number = _store->sink_index(sink);
        if (number < 0) {
            return "no sink";
        }
        auto j = _store->sink_table(static_cast<size_t>(number)).find(id_of(n));
        return j ? std::string(queue::state_name(j->state)) + "/" + std::to_string(j->attempts)
                 : "none";
    }
    bool all(const std::string& sink, const std::string& want) {
        for (uint8_t n = 1; n <= 3; ++n) {
            if (state(sink, n) != want) {
                return false;
            }
        }
        return true;
    }
    uint64_t delivered(std::string_view sink) {
        std::vector<deliver::SinkReport> reports;
        _engine->reports(reports);
        for (const auto& r : reports) {
            if (r.name == sink) {
                return r.counts.delivered;
            }
        }
        return UINT64_MAX;
    }

    std::string _dir;
    io::Ring _ring;
    std::vector<std::unique_ptr<config::Snapshot>> _snaps;
    std::unique_ptr<JobStore> _store;
    std::unique_ptr<Engine> _engine;
};

std::string sinks_yaml(const std::vector<std::pair<std::string, std::string>>& sinks) {
    std::string y = "sinks:\n";
    for (const auto& [name, url] : sinks) {
        y.append("  ").append(name).append(": {http: {url: \"").append(url);
        y.append("\", timeout: 30s}}\n");
    }
    return y;
}

} // namespace

TEST_F(EngineReloadTest, AReloadAddingARouteAndASinkDeliversThroughTheNewSink) {
    Receiver a;
    Receiver b;
    write_jobs();
    open(sinks_yaml({{"a", a.url()}}) +
         "routes:\n  github: {path: /github, verify: {scheme: none}, deliver: [a]}\n");
    ASSERT_TRUE(run_until([&] { return all("a", "done/1"); })) << state("a", 1);
    ReloadReport report;
    EngineReload r =
        reload(sinks_yaml({{"a", a.url()}, {"b", b.url()}}) +
                   "routes:\n"
                   "  github: {path: /github, verify: {scheme: none}, deliver: [a, b]}\n"
                   "  extra: {path: /extra, verify: {scheme: none}, deliver: [b]}\n",
               report);
    EXPECT_EQ(r.error, "");
    ASSERT_EQ(r.added.size(), 1u);
    EXPECT_EQ(r.added[0], "b");
    EXPECT_TRUE(r.changed.empty()) << "a is unchanged";
    EXPECT_EQ(report.backfilled, 3u);
    // A job of the new route, written by a shard after the switch.
    write_job(2, 4, "extra");
    ASSERT_TRUE(run_until([&] { return b.count() == 4 && state("b", 4) == "done/1"; }))
        << b.count();
    const std::vector<std::string> got = b.got();
    const std::set<std::string> ids(got.begin(), got.end());
    for (uint8_t n = 1; n <= 4; ++n) {
        EXPECT_TRUE(ids.contains(text_of(n) + "/1")) << int{n};
    }
    EXPECT_TRUE(all("b", "done/1"));
    EXPECT_EQ(a.count(), 3u) << "a got nothing twice, and nothing of extra";
    EXPECT_EQ(delivered("a"), 3u);
    EXPECT_EQ(delivered("b"), 4u);
}

TEST_F(EngineReloadTest, AReloadGivingTheFirstSinkCreatesTheEngine) {
    Receiver a;
    write_jobs();
    open("routes:\n  github: {path: /github, verify: {scheme: none}}\n");
    ASSERT_EQ(_engine, nullptr);
    ReloadReport report;
    EngineReload r = reload(sinks_yaml({{"a", a.url()}}) +
                                "routes:\n  github: {path: /github, verify: {scheme: none}, "
                                "deliver: [a]}\n",
                            report);
    EXPECT_EQ(r.error, "");
    ASSERT_NE(_engine, nullptr);
    EXPECT_TRUE(_engine->has_sinks());
    ASSERT_TRUE(run_until([&] { return all("a", "done/1"); })) << state("a", 1);
    EXPECT_EQ(a.count(), 3u);
}

TEST_F(EngineReloadTest, RemovingASinkWithAttemptsInFlightLosesNothing) {
    auto stalled = std::make_unique<Receiver>(/*stall=*/true);
    write_jobs();
    const std::string routes =
        "routes:\n  github: {path: /github, verify: {scheme: none}, deliver: [a]}\n";
    open(sinks_yaml({{"a", stalled->url()}}) + routes);
    ASSERT_TRUE(run_until([&] { return stalled->count() == 3; })) << stalled->count();
    EXPECT_TRUE(all("a", "leased/1"));
    ReloadReport report;
    EngineReload r = reload("routes:\n  github: {path: /github, verify: {scheme: none}}\n", report);
    EXPECT_EQ(r.error, "");
    ASSERT_EQ(r.removed.size(), 1u);
    EXPECT_EQ(r.cancelled, 3u);
    ASSERT_EQ(report.sinks_removed.size(), 1u);
    EXPECT_EQ(report.sinks_removed[0].name, "a");
    EXPECT_EQ(report.sinks_removed[0].pending, 3u);
    EXPECT_FALSE(_engine->has_sinks());
    EXPECT_EQ(_engine->sink_index("a"), -1);
    // The leases are void at once (an expire op each, written with the next group), and the
    // client's cancelled operations come in.
    EXPECT_TRUE(all("a", "queued/1"));
    ASSERT_TRUE(run_until([&] { return _engine->idle() && !_store->has_pending_ops(); }));
    // After a restart with `a` configured again (its receiver answering now) the jobs are still
    // owed to it and delivered, the attempt counted.
    stalled.reset();
    Receiver a;
    open(sinks_yaml({{"a", a.url()}}) + routes);
    EXPECT_TRUE(all("a", "queued/1"));
    ASSERT_TRUE(run_until([&] { return all("a", "done/2"); })) << state("a", 1);
    const std::vector<std::string> got = a.got();
    const std::set<std::string> ids(got.begin(), got.end());
    for (uint8_t n = 1; n <= 3; ++n) {
        EXPECT_TRUE(ids.contains(text_of(n) + "/2")) << int{n};
    }
}

TEST_F(EngineReloadTest, ChangingASinksUrlMidFlightSendsItsAttemptsToTheNewUrl) {
    Receiver stalled(/*stall=*/true);
    Receiver fixed;
    write_jobs();
    const std::string routes =
        "routes:\n  github: {path: /github, verify: {scheme: none}, deliver: [a]}\n";
    open(sinks_yaml({{"a", stalled.url()}}) + routes);
    ASSERT_TRUE(run_until([&] { return stalled.count() == 3; })) << stalled.count();
    ReloadReport report;
    EngineReload r = reload(sinks_yaml({{"a", fixed.url()}}) + routes, report);
    EXPECT_EQ(r.error, "");
    ASSERT_EQ(r.changed.size(), 1u);
    EXPECT_EQ(r.changed[0], "a");
    EXPECT_EQ(r.cancelled, 3u);
    EXPECT_TRUE(report.sinks_removed.empty()) << "the same sink, the same table";
    ASSERT_TRUE(run_until([&] { return all("a", "done/2"); })) << state("a", 1);
    EXPECT_EQ(fixed.count(), 3u);
    EXPECT_EQ(stalled.count(), 3u) << "nothing more went to the old url";
    EXPECT_EQ(delivered("a"), 3u);
    // Reloading the same configuration again changes nothing.
    r = reload(sinks_yaml({{"a", fixed.url()}}) + routes, report);
    EXPECT_TRUE(r.added.empty() && r.removed.empty() && r.changed.empty());
    EXPECT_EQ(r.cancelled, 0u);
}
