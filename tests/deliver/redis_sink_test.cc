// RedisSink end to end: a real io_uring loop like the control plane's on one side, a real
// redis-server started by the test on the other (a temporary folder, a free port, no
// persistence), read back with a small blocking client of the test's own (through the RESP
// codec). Skipped, saying so, when redis-server is not installed (scripts/deps --test installs
// it).
#include "portcullis/deliver/redis_sink.hh"

#include "portcullis/base/time.hh"
#include "portcullis/queue/job_json.hh"
#include "portcullis/queue/record.hh"

#include "../tls/pki.hh"
#include "sink_loop.hh"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <map>
#include <netinet/in.h>
#include <optional>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace portcullis;
using deliver::RedisDelivery;
using deliver::RedisOutcome;
using deliver::RedisSink;
namespace fx = portcullis::tls::fixture;

using deliver::testing::drain_sink_until;
using deliver::testing::expect_untrusted;
using deliver::testing::start_ok;
using deliver::testing::stop_and_drain;

namespace {

constexpr int64_t ms = 1'000'000;
const std::string job_id = "01jd3v8x7e0k4s9q2m6b5n1c8h";

std::optional<std::string> find_program(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
    size_t at = 0;
    while (at <= dirs.size()) {
        const size_t colon = std::min(dirs.find(':', at), dirs.size());
        const std::string candidate = dirs.substr(at, colon - at) + "/" + name;
        if (::access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
        at = colon + 1;
    }
    return std::nullopt;
}

// A port nothing listens on now: bound, then closed (redis-server cannot take port 0).
uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

int connect_to(uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    // With a receive timeout a blocking recv returns EINTR, not a restart, when io_uring task
    // work for the test's ring lands on this thread: the client retries it.
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

// A reply as the test keeps it: the rendered top value and, for arrays, the elements.
struct Reply {
    deliver::resp::Type type = deliver::resp::Type::null;
    std::string text;
    int64_t integer = 0;
    std::vector<Reply> items;
};

Reply copy_of(const deliver::resp::Value& v) {
    Reply r{v.type, std::string(v.text), v.integer, {}};
    if (v.is_aggregate()) {
        deliver::resp::Elements e(v);
        deliver::resp::Value item;
        while (e.next(item)) {
            r.items.push_back(copy_of(item));
        }
    }
    return r;
}

// A blocking client of the test's own, to read back what the sink wrote (and to set things up).
class Client {
public:
    explicit Client(uint16_t port) : _fd(connect_to(port)) {}
    ~Client() {
        if (_fd >= 0) {
            ::close(_fd);
        }
    }
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;
    bool ok() const { return _fd >= 0; }

    Reply call(std::vector<std::string> args) {
        std::vector<std::string_view> views(args.begin(), args.end());
        std::string out(deliver::resp::command_size(views), '\0');
        deliver::resp::write_command(out.data(), views);
        std::string_view rest = out;
        while (!rest.empty()) {
            const ssize_t n = ::send(_fd, rest.data(), rest.size(), MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                ADD_FAILURE() << "send to redis failed";
                return {};
            }
            rest.remove_prefix(size_t(n));
        }
        deliver::resp::Limits limits;
        deliver::resp::Parser p(limits);
        for (;;) {
            deliver::resp::Value v;
            const deliver::resp::Step s = p.parse(_buf, v);
            if (s.status == deliver::resp::Status::done) {
                Reply r = copy_of(v);
                _buf.erase(0, s.consumed);
                return r;
            }
            if (s.status == deliver::resp::Status::error) {
                ADD_FAILURE() << "bad reply: " << s.detail;
                return {};
            }
            char chunk[65536];
            const ssize_t n = ::recv(_fd, chunk, sizeof chunk, 0);
            if (n < 0 && errno == EINTR) {
                continue; // the ring's task work on this thread (see connect_to)
            }
            if (n <= 0) {
                ADD_FAILURE() << "redis closed the connection";
                return {};
            }
            _buf.append(chunk, size_t(n));
        }
    }

    // XRANGE stream - +: each entry's id and fields.
    std::vector<std::pair<std::string, std::map<std::string, std::string>>>
    entries(const std::string& stream) {
        std::vector<std::pair<std::string, std::map<std::string, std::string>>> out;
        const Reply r = call({"XRANGE", stream, "-", "+"});
        for (const Reply& e : r.items) {
            std::map<std::string, std::string> fields;
            if (e.items.size() != 2) {
                ADD_FAILURE() << "an entry is not [id, fields]";
                continue;
            }
            const std::vector<Reply>& f = e.items[1].items;
            for (size_t i = 0; i + 1 < f.size(); i += 2) {
                fields[f[i].text] = f[i + 1].text;
            }
            out.emplace_back(e.items[0].text, std::move(fields));
        }
        return out;
    }

private:
    int _fd;
    std::string _buf;
};

// One redis-server of the test's, in a temporary folder, on a free port.
class RedisServer {
public:
    explicit RedisServer(std::vector<std::string> extra = {}) : _extra(std::move(extra)) {}
    ~RedisServer() { kill(SIGKILL); }
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    // Starts on a new free port, retrying when another process took it in between.
    bool start() {
        for (int attempt = 0; attempt < 5; ++attempt) {
            if (start_on(free_port())) {
                return true;
            }
        }
        return false;
    }

    // Starts again on the same port (after kill()).
    bool restart() { return start_on(_port); }

    bool start_on(uint16_t port) {
        _port = port;
        std::vector<std::string> args = {*find_program("redis-server"),
                                         "--port",
                                         std::to_string(port),
                                         "--bind",
                                         "127.0.0.1",
                                         "--save",
                                         "",
                                         "--appendonly",
                                         "no",
                                         "--dir",
                                         _dir.file(""),
                                         "--logfile",
                                         _dir.file("redis.log")};
        args.insert(args.end(), _extra.begin(), _extra.end());
        // Ready is what the server's own log says after this start, not a connection: another
        // process may hold the port (then this server exits), and a connect would reach it.
        const size_t log_offset = log_text().size();
        _pid = ::fork();
        if (_pid == 0) {
            std::vector<char*> argv;
            for (std::string& a : args) {
                argv.push_back(a.data());
            }
            argv.push_back(nullptr);
            const int null = ::open("/dev/null", O_RDWR);
            ::dup2(null, 1);
            ::dup2(null, 2);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < end) {
            int status = 0;
            if (::waitpid(_pid, &status, WNOHANG) == _pid) {
                _pid = -1;
                return false; // the port was taken, or the arguments refused
            }
            if (log_text().find("Ready to accept connections", log_offset) != std::string::npos) {
                return true;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return false;
    }

    void kill(int sig) {
        if (_pid > 0) {
            ::kill(_pid, sig);
            ::waitpid(_pid, nullptr, 0);
            _pid = -1;
        }
    }

    uint16_t port() const { return _port; }
    const fx::TempDir& dir() const { return _dir; }
    std::string log_text() const {
        std::ifstream in(_dir.file("redis.log"));
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }
    void set_extra(std::vector<std::string> extra) { _extra = std::move(extra); }

private:
    fx::TempDir _dir;
    std::vector<std::string> _extra;
    pid_t _pid = -1;
    uint16_t _port = 0;
};

struct Result {
    uint64_t cookie = 0;
    RedisOutcome::Kind kind = RedisOutcome::Kind::retry;
    std::string error;
    std::string entry_id;
};

// A stored job: its record encoded as the spool does, then decoded.
struct StoredJob {
    std::vector<uint8_t> bytes;
    queue::JobRecord record;

    StoredJob(std::string_view route, const std::vector<http::Header>& headers,
              std::string_view body, int64_t received_at_ns) {
        queue::JobMeta meta;
        meta.route = route;
        meta.received_at_ns = received_at_ns;
        bytes = queue::make_job_record(meta, headers, body);
        size_t size = 0;
        EXPECT_EQ(queue::decode_record(bytes, record, size), queue::DecodeStatus::ok);
    }
};

// A redis-server speaking TLS only on `port`, its certificate for localhost signed by a
// private CA (ca_file). start() is false when this redis-server does not start with TLS.
struct RedisTlsServer {
    fx::TempDir pki;
    std::string ca_file;
    RedisServer server;
    uint16_t port = 0;

    bool start() {
        auto ca_spec = fx::valid_now("test ca", {});
        ca_spec.ca = true;
        auto ca = fx::make_cert(ca_spec, fx::key_of(fx::KeyKind::p256));
        ca_file = pki.write("ca.pem", fx::pem_of(ca.get()));
        auto leaf =
            fx::make_cert(fx::valid_now("redis", {"localhost"}), fx::key_of(fx::KeyKind::p256),
                          ca.get(), fx::key_of(fx::KeyKind::p256));
        const std::string cert = pki.write("redis.pem", fx::pem_of(leaf.get()));
        const std::string key = pki.write("redis.key", fx::pem_of(fx::key_of(fx::KeyKind::p256)));
        // The TLS port is the test's free port; the plain one is off.
        port = free_port();
        server.set_extra({"--tls-port", std::to_string(port), "--tls-cert-file", cert,
                          "--tls-key-file", key, "--tls-ca-cert-file", ca_file,
                          "--tls-auth-clients", "no"});
        // start_on takes the plain port: 0 turns it off.
        bool up = false;
        for (int attempt = 0; attempt < 3 && !up; ++attempt) {
            up = server.start_on(0);
        }
        return up;
    }
};

class RedisSinkTest : public ::testing::Test {
protected:
    void SetUp() override {
        io::Features f = io::probe_features();
        if (!f.available) {
            GTEST_SKIP() << "io_uring unusable here: " << f.unavailable;
        }
        if (!find_program("redis-server")) {
            GTEST_SKIP() << "redis-server is not installed (scripts/deps --test installs it)";
        }
        ASSERT_EQ(_ring.init(512, 0), "");
        _saved_pipe = std::signal(SIGPIPE, SIG_IGN);
    }

    void TearDown() override {
        if (_sink) {
            _sink->stop();
            drain_until([&] { return _sink->idle(); }, 2000 * ms);
            EXPECT_TRUE(_sink->idle());
            _sink.reset();
        }
        if (_saved_pipe != nullptr) {
            std::signal(SIGPIPE, _saved_pipe);
        }
    }

    static config::RedisSinkConfig config_for(uint16_t port, std::string host = "127.0.0.1") {
        config::RedisSinkConfig c;
        c.host = std::move(host);
        c.port = port;
        c.url = "redis://" + c.host + ":" + std::to_string(port);
        c.stream = "webhooks:{route}";
        c.maxlen = 1'000'000;
        return c;
    }

    // One delivery over rediss:// to localhost:port, the sink trusting `ca` (the sink's key) or
    // else system_ca (its options' store).
    Result tls_delivery(uint16_t port, std::optional<std::string> ca,
                        const std::string& system_ca) {
        auto cfg = config_for(port, "localhost");
        cfg.tls = true;
        cfg.ca = std::move(ca);
        deliver::RedisSinkOptions o;
        o.system_ca_file = system_ca;
        make(cfg, o);
        const StoredJob job("github", {}, "{\"tls\":true}", 0);
        return one(delivery(job, "{\"tls\":true}"));
    }

    void make(const config::RedisSinkConfig& cfg, deliver::RedisSinkOptions o = {}) {
        _sink = std::make_unique<RedisSink>(_ring, 5, "stream", cfg, std::move(o));
        ASSERT_EQ(_sink->init(base::mono_ns()), "");
    }

    RedisDelivery delivery(const StoredJob& job, std::string_view body) const {
        RedisDelivery d;
        d.job_id = job_id;
        d.route = job.record.route;
        d.received_at_unix_ns = job.record.received_at_ns;
        d.record = &job.record;
        d.body = {reinterpret_cast<const uint8_t*>(body.data()), body.size()};
        return d;
    }

    void start(const RedisDelivery& d, uint64_t cookie) { start_ok(*_sink, d, cookie); }

    void drain_until(const std::function<bool()>& cond, int64_t max_ns) {
        drain_sink_until(_ring, *_sink, cond, max_ns, [&](uint64_t cookie, const RedisOutcome& o) {
            _results.push_back({cookie, o.kind, std::string(o.error), std::string(o.entry_id)});
        });
    }

    std::vector<Result> run(size_t n, int64_t max_ns = 10'000 * ms) {
        drain_until([&] { return _results.size() >= n; }, max_ns);
        EXPECT_EQ(_results.size(), n);
        return _results;
    }

    Result one(const RedisDelivery& d, int64_t max_ns = 10'000 * ms) {
        _results.clear();
        start(d, 7);
        auto r = run(1, max_ns);
        _results.clear();
        return r.empty() ? Result{} : r[0];
    }

    io::Ring _ring;
    std::unique_ptr<RedisSink> _sink;
    std::vector<Result> _results;
    void (*_saved_pipe)(int) = nullptr;
};

std::string all_bytes() {
    std::string s;
    for (int i = 0; i < 256; ++i) {
        s.push_back(char(i));
    }
    return s + "\r\n*1\r\n$3\r\nEND\r\n" + s;
}

} // namespace

TEST_F(RedisSinkTest, XaddLandsWithBodyAndHeadersByteForByte) {
    RedisServer server;
    ASSERT_TRUE(server.start());
    make(config_for(server.port()));
    const std::vector<http::Header> headers = {{"Content-Type", "application/json"},
                                               {"X-GitHub-Event", "push"},
                                               {"X-Multi", "a"},
                                               {"x-multi", "b \"q\""}};
    const int64_t received = 1'800'000'000 * base::ns_per_s + 123 * ms;
    const std::string body = all_bytes();
    const StoredJob job("github", headers, body, received);
    const Result r = one(delivery(job, body));
    ASSERT_EQ(r.kind, RedisOutcome::Kind::delivered) << r.error;
    EXPECT_TRUE(r.error.empty());

    Client c(server.port());
    ASSERT_TRUE(c.ok());
    const auto entries = c.entries("webhooks:github");
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0].first, r.entry_id);
    const auto& f = entries[0].second;
    EXPECT_EQ(f.size(), 5u);
    EXPECT_EQ(f.at("id"), job_id);
    EXPECT_EQ(f.at("route"), "github");
    EXPECT_EQ(f.at("received_at"), "2027-01-15T08:00:00.123Z");
    EXPECT_EQ(f.at("headers"), "{\"content-type\":\"application/json\",\"x-github-event\":"
                               "\"push\",\"x-multi\":\"a, b \\\"q\\\"\"}");
    EXPECT_EQ(f.at("body"), body);
    EXPECT_EQ(_sink->stats().delivered, 1u);
}

TEST_F(RedisSinkTest, PipelinesManyXaddsOnOneConnection) {
    RedisServer server;
    ASSERT_TRUE(server.start());
    auto cfg = config_for(server.port());
    cfg.max_in_flight = 64;
    make(cfg);
    const StoredJob job("orders", {{"X-A", "1"}}, "", 0);
    constexpr size_t total = 2000;
    size_t started = 0;
    drain_until(
        [&] {
            while (started < total && _sink->has_room()) {
                const std::string body = "job " + std::to_string(started);
                start(delivery(job, body), started);
                ++started;
            }
            EXPECT_LE(_sink->in_flight(), 64u);
            return _results.size() == total;
        },
        30'000 * ms);
    ASSERT_EQ(_results.size(), total);
    for (const Result& r : _results) {
        ASSERT_EQ(r.kind, RedisOutcome::Kind::delivered) << r.error;
    }
    Client c(server.port());
    EXPECT_EQ(c.call({"XLEN", "webhooks:orders"}).integer, int64_t(total));
    // In order: the stream holds the bodies as they were started.
    const auto entries = c.entries("webhooks:orders");
    ASSERT_EQ(entries.size(), total);
    for (size_t i = 0; i < total; ++i) {
        EXPECT_EQ(entries[i].second.at("body"), "job " + std::to_string(i));
    }
    EXPECT_EQ(_sink->stats().connects, 1u);
    // Commands went out in batches, not one send each.
    EXPECT_LT(_sink->stats().sends, total / 4) << _sink->stats().sends;
}

TEST_F(RedisSinkTest, MaxlenTrimsTheStream) {
    // Small macro nodes, so that MAXLEN ~ trims close to the limit.
    RedisServer server({"--stream-node-max-entries", "10"});
    ASSERT_TRUE(server.start());
    auto cfg = config_for(server.port());
    cfg.maxlen = 20;
    make(cfg);
    const StoredJob job("github", {}, "x", 0);
    for (uint64_t i = 0; i < 200; ++i) {
        start(delivery(job, "x"), i);
    }
    const auto results = run(200);
    for (const Result& r : results) {
        ASSERT_EQ(r.kind, RedisOutcome::Kind::delivered) << r.error;
    }
    Client c(server.port());
    const int64_t len = c.call({"XLEN", "webhooks:github"}).integer;
    EXPECT_GE(len, 20);
    EXPECT_LE(len, 30);
}

TEST_F(RedisSinkTest, AuthWithPasswordAndWithAnAclUser) {
    RedisServer server({"--requirepass", "s3cret-pw", "--user", "alice", "on", ">alice-pw",
                        "~webhooks:*", "+@all"});
    ASSERT_TRUE(server.start());
    const StoredJob job("github", {}, "{}", 0);
    {
        auto cfg = config_for(server.port());
        cfg.password = config::Secret{.material = "s3cret-pw", .origin = "value"};
        make(cfg);
        const Result r = one(delivery(job, "{}"));
        EXPECT_EQ(r.kind, RedisOutcome::Kind::delivered) << r.error;
        _sink->stop();
        drain_until([&] { return _sink->idle(); }, 2000 * ms);
    }
    {
        auto cfg = config_for(server.port());
        cfg.user = "alice";
        cfg.password = config::Secret{.material = "alice-pw", .origin = "value"};
        cfg.db = 0;
        make(cfg);
        const Result r = one(delivery(job, "{}"));
        EXPECT_EQ(r.kind, RedisOutcome::Kind::delivered) << r.error;
    }
    Client c(server.port());
    EXPECT_EQ(c.call({"AUTH", "s3cret-pw"}).text, "OK");
    EXPECT_EQ(c.call({"XLEN", "webhooks:github"}).integer, 2);
}

TEST_F(RedisSinkTest, WrongPasswordIsAClearErrorWithoutThePassword) {
    RedisServer server({"--requirepass", "right-pw"});
    ASSERT_TRUE(server.start());
    auto cfg = config_for(server.port());
    cfg.user = "default";
    cfg.password = config::Secret{.material = "wrong-pw-123", .origin = "env:X"};
    make(cfg);
    const StoredJob job("github", {}, "{}", 0);
    const Result r = one(delivery(job, "{}"));
    EXPECT_EQ(r.kind, RedisOutcome::Kind::retry);
    EXPECT_NE(r.error.find("redis sink stream: AUTH as user default refused by 127.0.0.1:"),
              std::string::npos)
        << r.error;
    EXPECT_NE(r.error.find("WRONGPASS"), std::string::npos) << r.error;
    EXPECT_EQ(r.error.find("wrong-pw-123"), std::string::npos) << r.error;
    EXPECT_EQ(_sink->last_error(), r.error);
    EXPECT_GE(_sink->stats().auth_failures, 1u);
    EXPECT_FALSE(_sink->connected());
    // Meanwhile (the backoff) a delivery fails at once with the same error.
    const Result again = one(delivery(job, "{}"));
    EXPECT_EQ(again.kind, RedisOutcome::Kind::retry);
    EXPECT_NE(again.error.find("WRONGPASS"), std::string::npos) << again.error;
}

TEST_F(RedisSinkTest, NoPasswordOnAServerThatWantsOneRetriesSayingSo) {
    // Redis 7 refuses a command of more than 10 arguments from a client that has not
    // authenticated with a protocol error (not NOAUTH), and closes the connection.
    RedisServer server({"--requirepass", "right-pw"});
    ASSERT_TRUE(server.start());
    make(config_for(server.port()));
    const StoredJob job("github", {}, "{}", 0);
    const Result r = one(delivery(job, "{}"));
    EXPECT_EQ(r.kind, RedisOutcome::Kind::retry);
    EXPECT_EQ(r.error,
              "XADD refused: ERR Protocol error: unauthenticated multibulk length (the server "
              "wants AUTH: set the sink's credentials)");
}

TEST_F(RedisSinkTest, SelectsTheDatabase) {
    RedisServer server;
    ASSERT_TRUE(server.start());
    auto cfg = config_for(server.port());
    cfg.db = 3;
    make(cfg);
    const StoredJob job("github", {}, "{}", 0);
    const Result r = one(delivery(job, "{}"));
    ASSERT_EQ(r.kind, RedisOutcome::Kind::delivered) << r.error;
    Client c(server.port());
    EXPECT_EQ(c.call({"XLEN", "webhooks:github"}).integer, 0);
    EXPECT_EQ(c.call({"SELECT", "3"}).text, "OK");
    EXPECT_EQ(c.call({"XLEN", "webhooks:github"}).integer, 1);

    // A database the server does not have: a clear error naming the sink.
    cfg.db = 99;
    _sink->stop();
    drain_until([&] { return _sink->idle(); }, 2000 * ms);
    make(cfg);
    const Result bad = one(delivery(job, "{}"));
    EXPECT_EQ(bad.kind, RedisOutcome::Kind::retry);
    EXPECT_NE(bad.error.find("redis sink stream: SELECT 99 refused"), std::string::npos)
        << bad.error;
}

TEST_F(RedisSinkTest, WrongTypeRetriesWithTheErrorTextAndTheConnectionGoesOn) {
    RedisServer server;
    ASSERT_TRUE(server.start());
    Client c(server.port());
    EXPECT_EQ(c.call({"SET", "webhooks:github", "a string"}).text, "OK");
    make(config_for(server.port()));
    const StoredJob bad_job("github", {}, "{}", 0);
    const StoredJob good_job("stripe", {}, "{}", 0);
    start(delivery(bad_job, "{}"), 1);
    start(delivery(good_job, "{}"), 2);
    start(delivery(bad_job, "{}"), 3);
    auto results = run(3);
    ASSERT_EQ(results.size(), 3u);
    std::map<uint64_t, Result> by;
    for (const Result& r : results) {
        by[r.cookie] = r;
    }
    EXPECT_EQ(by[1].kind, RedisOutcome::Kind::retry);
    EXPECT_EQ(by[1].error,
              "XADD refused: WRONGTYPE Operation against a key holding the wrong kind of value");
    EXPECT_EQ(by[2].kind, RedisOutcome::Kind::delivered) << by[2].error;
    EXPECT_EQ(by[3].kind, RedisOutcome::Kind::retry);
    EXPECT_EQ(_sink->stats().error_replies, 2u);
    EXPECT_EQ(_sink->stats().connects, 1u);
    EXPECT_TRUE(_sink->connected());
}

TEST_F(RedisSinkTest, ServerKilledMidLoadFailsWhatIsInFlightAndReconnectsWhenBack) {
    RedisServer server;
    ASSERT_TRUE(server.start());
    auto cfg = config_for(server.port());
    cfg.max_in_flight = 256;
    deliver::RedisSinkOptions o;
    o.backoff_min_ns = 20 * ms;
    o.backoff_max_ns = 200 * ms;
    make(cfg, o);
    const std::string body(2048, 'b');
    const StoredJob job("github", {}, body, 0);
    uint64_t started = 0;
    bool killed = false;
    // Keep the window full; kill -9 the server once 500 are delivered.
    drain_until(
        [&] {
            size_t delivered = 0;
            for (const Result& r : _results) {
                delivered += r.kind == RedisOutcome::Kind::delivered ? 1 : 0;
            }
            while (!killed && _sink->has_room()) {
                start(delivery(job, body), started++);
            }
            // A window was just started: the kill finds it in flight.
            if (!killed && delivered >= 500) {
                server.kill(SIGKILL);
                killed = true;
            }
            return killed && _sink->in_flight() == 0;
        },
        30'000 * ms);
    ASSERT_TRUE(killed);
    EXPECT_EQ(_results.size(), started); // every delivery reported, exactly once
    size_t retried = 0;
    std::string error;
    for (const Result& r : _results) {
        if (r.kind == RedisOutcome::Kind::retry) {
            ++retried;
            error = r.error;
        }
    }
    EXPECT_GT(retried, 0u);
    EXPECT_FALSE(error.empty());
    EXPECT_GE(_sink->stats().disconnects, 1u);

    // While down, a delivery fails at once with what went wrong.
    const Result down = one(delivery(job, body));
    EXPECT_EQ(down.kind, RedisOutcome::Kind::retry);
    EXPECT_FALSE(down.error.empty());

    // Back on the same port: the sink reconnects by itself.
    ASSERT_TRUE(server.restart());
    drain_until([&] { return _sink->connected(); }, 5000 * ms);
    ASSERT_TRUE(_sink->connected());
    const Result back = one(delivery(job, body));
    EXPECT_EQ(back.kind, RedisOutcome::Kind::delivered) << back.error;
    EXPECT_GE(_sink->stats().connects, 2u);
}

TEST_F(RedisSinkTest, ConnectionRefusedFailsFastWithTheError) {
    const uint16_t port = free_port();
    make(config_for(port));
    const StoredJob job("github", {}, "{}", 0);
    const Result r = one(delivery(job, "{}"));
    EXPECT_EQ(r.kind, RedisOutcome::Kind::retry);
    EXPECT_EQ(r.error, "connect 127.0.0.1:" + std::to_string(port) + ": Connection refused");
}

TEST_F(RedisSinkTest, ResolvesAHostName) {
    RedisServer server;
    ASSERT_TRUE(server.start());
    make(config_for(server.port(), "localhost"));
    const StoredJob job("github", {}, "{}", 0);
    // Started before the first resolution answered: it waits for the connection.
    const Result r = one(delivery(job, "{}"));
    EXPECT_EQ(r.kind, RedisOutcome::Kind::delivered) << r.error;
    EXPECT_GE(_sink->stats().resolutions, 1u);
}

TEST_F(RedisSinkTest, RefusesABodyRedisCannotTake) {
    RedisServer server;
    ASSERT_TRUE(server.start());
    make(config_for(server.port()));
    const StoredJob job("github", {}, "", 0);
    RedisDelivery d = delivery(job, "");
    static const uint8_t byte = 0;
    d.body = {&byte, (size_t(512) << 20) + 1}; // never read: refused on its size
    std::string error;
    EXPECT_FALSE(_sink->start(d, 1, base::mono_ns(), error));
    EXPECT_NE(error.find("proto-max-bulk-len"), std::string::npos) << error;
    EXPECT_EQ(_sink->in_flight(), 0u);
}

TEST_F(RedisSinkTest, RedissVerifiesTheServerAndDelivers) {
    RedisTlsServer tls;
    if (!tls.start()) {
        GTEST_SKIP() << "this redis-server does not start with TLS (built without it?)";
    }
    const Result r = tls_delivery(tls.port, std::nullopt, tls.ca_file);
    EXPECT_EQ(r.kind, RedisOutcome::Kind::delivered) << r.error;
    EXPECT_EQ(_sink->stats().tls_handshakes, 1u);
    stop_and_drain(_ring, _sink);

    // A CA that did not sign the server's certificate: a TLS error, retry.
    fx::TempDir other;
    auto ca_spec = fx::valid_now("test ca", {});
    ca_spec.ca = true;
    auto other_ca = fx::make_cert(ca_spec, fx::key_of(fx::KeyKind::p384));
    const Result bad =
        tls_delivery(tls.port, std::nullopt, other.write("other.pem", fx::pem_of(other_ca.get())));
    EXPECT_EQ(bad.kind, RedisOutcome::Kind::retry);
    expect_untrusted(bad.error);
}

// `ca`: a server whose certificate a private CA signed is trusted with that CA's file, and
// refused with only the system's store (here another CA's file).
TEST_F(RedisSinkTest, TheCaKeyTrustsAPrivateCa) {
    RedisTlsServer tls;
    if (!tls.start()) {
        GTEST_SKIP() << "this redis-server does not start with TLS (built without it?)";
    }
    // The system's store: another CA.
    auto other_spec = fx::valid_now("test ca", {});
    other_spec.ca = true;
    auto other = fx::make_cert(other_spec, fx::key_of(fx::KeyKind::p384));
    const std::string system_ca = tls.pki.write("other.pem", fx::pem_of(other.get()));

    const Result trusted = tls_delivery(tls.port, tls.ca_file, system_ca);
    EXPECT_EQ(trusted.kind, RedisOutcome::Kind::delivered) << trusted.error;
    EXPECT_EQ(_sink->stats().tls_handshakes, 1u);
    stop_and_drain(_ring, _sink);

    const Result refused = tls_delivery(tls.port, std::nullopt, system_ca);
    EXPECT_EQ(refused.kind, RedisOutcome::Kind::retry);
    expect_untrusted(refused.error);
    EXPECT_EQ(_sink->stats().tls_handshakes, 0u);
}

TEST_F(RedisSinkTest, ACaFileThatIsMissingOrHoldsNoCertificateFailsInit) {
    fx::TempDir dir;
    const std::string empty = dir.write("empty.pem", "no certificate here\n");
    for (const std::string& file : {std::string("/nonexistent/ca.pem"), empty}) {
        auto cfg = config_for(6379);
        cfg.tls = true;
        cfg.ca = file;
        RedisSink sink(_ring, 0, "stream", cfg);
        EXPECT_EQ(sink.init(0), "sinks.stream.redis.ca: " + file +
                                    ": cannot be read or holds no PEM certificate");
    }
}

namespace {

// A server that reads one command's worth of bytes, answers `reply` and closes: what a broken
// or hostile server does.
class OneShotServer {
public:
    explicit OneShotServer(std::string reply) : _reply(std::move(reply)) {
        _listen = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::bind(_listen, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        EXPECT_EQ(::listen(_listen, 8), 0);
        socklen_t len = sizeof a;
        ::getsockname(_listen, reinterpret_cast<sockaddr*>(&a), &len);
        _port = ntohs(a.sin_port);
        _thread = std::thread([this] {
            const int fd = ::accept4(_listen, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                return;
            }
            char buf[4096];
            (void)::recv(fd, buf, sizeof buf, 0);
            (void)::send(fd, _reply.data(), _reply.size(), MSG_NOSIGNAL);
            ::close(fd);
        });
    }
    ~OneShotServer() {
        ::shutdown(_listen, SHUT_RDWR);
        _thread.join();
        ::close(_listen);
    }
    OneShotServer(const OneShotServer&) = delete;
    OneShotServer& operator=(const OneShotServer&) = delete;
    uint16_t port() const { return _port; }

private:
    std::string _reply;
    int _listen = -1;
    uint16_t _port = 0;
    std::thread _thread;
};

} // namespace

// The fixture's own check: a port another process listens on is not taken for the server's
// (a connect would reach that process; the server's log says it could not bind).
TEST_F(RedisSinkTest, TheFixtureDoesNotTakeAStrangerOnItsPortForItsServer) {
    const OneShotServer stranger("");
    RedisServer server;
    EXPECT_FALSE(server.start_on(stranger.port()));
}

TEST_F(RedisSinkTest, AServerThatBreaksTheProtocolOrClosesMidReplyFailsTheAttempt) {
    const StoredJob job("github", {}, "{}", 0);
    struct Case {
        std::string reply;
        std::string error;
    };
    const std::vector<Case> cases = {
        {"$15\r\n17180",
         "the server closed the connection in the middle of a reply (10 bytes of it received)"},
        {"?garbage\r\n", "bad reply from redis (unknown type byte)"},
        {"$15\r\n1718000000000-0\r\n+OK\r\n", "a reply to no command"},
        {"$3\r\nabcde\r\n", "bad reply from redis (bulk string not followed by CRLF)"},
        {"*1\r\n$" + std::to_string(64 * 1024) + "\r\n", "bad reply from redis (reply too large)"},
    };
    for (const Case& c : cases) {
        OneShotServer server(c.reply);
        make(config_for(server.port()));
        const Result r = one(delivery(job, "{}"));
        if (c.error == "a reply to no command") {
            // The XADD was answered; the extra reply then breaks the connection.
            EXPECT_EQ(r.kind, RedisOutcome::Kind::delivered) << r.error;
            drain_until([&] { return !_sink->last_error().empty(); }, 5000 * ms);
            EXPECT_EQ(_sink->last_error(), c.error);
        } else {
            EXPECT_EQ(r.kind, RedisOutcome::Kind::retry) << c.reply;
            EXPECT_EQ(r.error, c.error) << c.reply;
        }
        _sink->stop();
        drain_until([&] { return _sink->idle(); }, 2000 * ms);
    }
}
