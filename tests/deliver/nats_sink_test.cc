// NatsSink end to end against a real `nats-server -js` the test starts (on a port a bound-then-
// closed socket chose, in a temporary folder, with a configuration file the test writes), and an
// io_uring loop like the control plane's. The test makes the JetStream stream itself through the
// protocol ($JS.API.STREAM.CREATE) and reads messages back ($JS.API.STREAM.MSG.GET) with a small
// blocking client of its own. Skipped only when nats-server is not installed (scripts/deps
// --test installs it).
#include "portcullis/deliver/nats_sink.hh"

#include "portcullis/base/encoding.hh"
#include "portcullis/base/json_pointer.hh"
#include "portcullis/base/time.hh"

#include "../tls/pki.hh"
#include "sink_loop.hh"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace portcullis;
using deliver::NatsDelivery;
using deliver::NatsOutcome;
using deliver::NatsSink;
namespace fx = portcullis::tls::fixture;
namespace nats = portcullis::deliver::nats;

using deliver::testing::drain_sink_until;
using deliver::testing::expect_untrusted;
using deliver::testing::start_ok;
using deliver::testing::stop_and_drain;

namespace {

constexpr int64_t ms = 1'000'000;
const std::string job_id = "01jd3v8x7e0k4s9q2m6b5n1c8h";
// nats-io/nkeys' test user.
const std::string user_seed = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU";
const std::string user_public = "UCK5N7N66OBOINFXAYC2ACJQYFSOD4VYNU6APEJTAVFZB2SVHLKGEW7L";

std::string nats_server_binary() {
    for (const char* p :
         {"/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"}) {
        if (::access(p, X_OK) == 0) {
            return p;
        }
    }
    return {};
}

uint16_t closed_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

// A blocking NATS client for the test's own requests (never portcullis's code path).
class Client {
public:
    ~Client() {
        if (_fd >= 0) {
            ::close(_fd);
        }
    }

    bool connect(uint16_t port, const std::string& credentials_json = {}) {
        _fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(port);
        if (::connect(_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            return false;
        }
        const nats::Frame info = next(2000);
        if (info.op != nats::Op::info) {
            return false;
        }
        write("CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true" +
              credentials_json + "}\r\nSUB _INBOX.test.* 1\r\nPING\r\n");
        return next(2000).op == nats::Op::pong;
    }

    bool subscribe(const std::string& subject) {
        write("SUB " + subject + " 2\r\nPING\r\n");
        return next(2000).op == nats::Op::pong;
    }

    // A request: its reply's payload, or nullopt on timeout or a status reply.
    std::optional<std::string> request(const std::string& subject, const std::string& payload) {
        const std::string reply = "_INBOX.test." + std::to_string(++_n);
        write("PUB " + subject + " " + reply + " " + std::to_string(payload.size()) + "\r\n" +
              payload + "\r\n");
        for (;;) {
            const nats::Frame f = next(5000);
            if (f.op == nats::Op::need_more || f.op == nats::Op::error || f.op == nats::Op::err) {
                return std::nullopt;
            }
            if (f.op == nats::Op::ping) {
                write("PONG\r\n");
            }
            if (f.op == nats::Op::msg && f.subject == reply) {
                if (!f.headers.empty() && nats::parse_header_status(f.headers).status != 0) {
                    return std::nullopt;
                }
                return std::string(f.payload);
            }
        }
    }

private:
    void write(const std::string& s) const {
        ASSERT_EQ(::send(_fd, s.data(), s.size(), MSG_NOSIGNAL), ssize_t(s.size()));
    }

    // The next frame, consumed (views valid until the next call), or need_more on timeout.
    nats::Frame next(int timeout_ms) {
        _buf.erase(0, _taken);
        _taken = 0;
        nats::Parser p({.max_control = 4096, .max_info = 65536, .max_message = 8 << 20});
        for (;;) {
            const nats::Frame f = p.feed(_buf);
            if (f.op != nats::Op::need_more) {
                _taken = f.consumed;
                return f;
            }
            pollfd pfd{_fd, POLLIN, 0};
            const int ready = ::poll(&pfd, 1, timeout_ms);
            if (ready < 0 && errno == EINTR) {
                continue; // io_uring task work for the test's ring, on this thread
            }
            if (ready <= 0) {
                return {};
            }
            char chunk[65536];
            const ssize_t n = ::recv(_fd, chunk, sizeof chunk, 0);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return {};
            }
            _buf.append(chunk, size_t(n));
        }
    }

    int _fd = -1;
    std::string _buf;
    size_t _taken = 0;
    int _n = 0;
};

// nats-server -js in a temporary folder, on a port of its own.
class NatsServer {
public:
    // `extra`: configuration lines (authorization, tls, max_payload).
    explicit NatsServer(std::string extra = {}) : _extra(std::move(extra)) {}
    ~NatsServer() { kill(); }

    // Starts the server (again, on the same port and store, after kill()). False when it did not
    // come up: the binary's log is in log().
    bool start() {
        for (int attempt = 0; attempt < 5; ++attempt) {
            if (_port == 0 || attempt > 0) {
                _port = closed_port();
            }
            _dir.write("nats.conf", "listen: 127.0.0.1:" + std::to_string(_port) +
                                        "\njetstream { store_dir: \"" + _dir.file("js") + "\" }\n" +
                                        _extra + "\n");
            const std::string binary = nats_server_binary();
            const std::string conf = _dir.file("nats.conf");
            const std::string log = _dir.file("nats.log");
            const size_t log_offset = log_text().size();
            _pid = ::fork();
            if (_pid == 0) {
                const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
                ::dup2(fd, 1);
                ::dup2(fd, 2);
                ::execl(binary.c_str(), binary.c_str(), "-c", conf.c_str(), nullptr);
                ::_exit(127);
            }
            if (wait_ready(log_offset)) {
                return true;
            }
            kill();
            if (_keep_port) {
                return false;
            }
        }
        return false;
    }

    // Starts again on the same port (after kill()), with the same store.
    bool restart() {
        _keep_port = true;
        return start();
    }

    void kill() {
        if (_pid > 0) {
            ::kill(_pid, SIGKILL);
            ::waitpid(_pid, nullptr, 0);
            _pid = -1;
        }
    }

    uint16_t port() const { return _port; }
    const fx::TempDir& dir() const { return _dir; }
    std::string log_text() const {
        std::ifstream in(_dir.file("nats.log"));
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }

private:
    // Ready is what the server's own log says after this start (from `log_offset`), not a
    // connection: another process may hold the port (then this server exits), and a connect
    // would reach it.
    bool wait_ready(size_t log_offset) {
        const int64_t end = base::mono_ns() + 10'000 * ms;
        while (base::mono_ns() < end) {
            int status = 0;
            if (::waitpid(_pid, &status, WNOHANG) == _pid) {
                _pid = -1;
                return false; // exited: the port was taken, or the configuration is wrong
            }
            if (log_text().find("Server is ready", log_offset) != std::string::npos) {
                return true;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return false;
    }

    std::string _extra;
    fx::TempDir _dir;
    uint16_t _port = 0;
    pid_t _pid = -1;
    bool _keep_port = false;
};

struct Result {
    uint64_t cookie = 0;
    NatsOutcome::Kind kind = NatsOutcome::Kind::retry;
    std::string error;
    bool duplicate = false;
    uint64_t seq = 0;
};

class NatsSinkTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (nats_server_binary().empty()) {
            GTEST_SKIP() << "nats-server is not installed (scripts/deps --test installs it)";
        }
        io::Features f = io::probe_features();
        if (!f.available) {
            GTEST_SKIP() << "io_uring unusable here: " << f.unavailable;
        }
        ASSERT_EQ(_ring.init(256, 0), "");
        _saved_pipe = std::signal(SIGPIPE, SIG_IGN);
    }

    void TearDown() override {
        if (_sink) {
            _sink->stop();
            drain_until([&] { return _sink->idle(); }, 2000 * ms);
            EXPECT_TRUE(_sink->idle());
            _sink.reset();
        }
        std::signal(SIGPIPE, _saved_pipe);
    }

    static config::NatsSinkConfig cfg_for(uint16_t port) {
        config::NatsSinkConfig c;
        c.host = "127.0.0.1";
        c.port = port;
        c.url = "nats://127.0.0.1:" + std::to_string(port);
        c.subject = "webhooks.{route}";
        c.max_in_flight = 64;
        return c;
    }

    static deliver::NatsSinkOptions fast() {
        deliver::NatsSinkOptions o;
        o.publish_timeout_ns = 3000 * ms;
        o.reconnect_min_ns = 20 * ms;
        o.reconnect_max_ns = 200 * ms;
        return o;
    }

    void make(const config::NatsSinkConfig& cfg, deliver::NatsSinkOptions o = fast()) {
        _sink = std::make_unique<NatsSink>(_ring, 2, "bus", cfg, std::move(o));
        ASSERT_EQ(_sink->init(base::mono_ns()), "");
    }

    // A stream holding webhooks.> (file storage, so that it survives a restart).
    static void create_stream(uint16_t port, const std::string& credentials = {}) {
        Client c;
        ASSERT_TRUE(c.connect(port, credentials));
        const auto r = c.request("$JS.API.STREAM.CREATE.HOOKS",
                                 R"({"name":"HOOKS","subjects":["webhooks.>"],"storage":"file",)"
                                 R"("duplicate_window":120000000000})");
        ASSERT_TRUE(r.has_value());
        ASSERT_NE(r->find("\"config\""), std::string::npos) << *r;
    }

    // The stored message at seq: its headers block and its body.
    static std::pair<std::string, std::string> stored(uint16_t port, uint64_t seq) {
        Client c;
        EXPECT_TRUE(c.connect(port));
        const auto r =
            c.request("$JS.API.STREAM.MSG.GET.HOOKS", "{\"seq\":" + std::to_string(seq) + "}");
        EXPECT_TRUE(r.has_value());
        if (!r) {
            return {};
        }
        auto field = [&](const char* pointer) {
            const base::JsonLookup l = base::json_find(*r, pointer);
            if (l.status != base::JsonStatus::found) {
                return std::string();
            }
            std::string b64(l.value.raw.size(), '\0');
            b64.resize(*base::json_unescape(l.value.raw, b64));
            std::string out(b64.size(), '\0');
            const auto n = base::base64_decode(
                b64, std::span(reinterpret_cast<uint8_t*>(out.data()), out.size()));
            out.resize(n.value_or(0));
            return out;
        };
        return {field("/message/hdrs"), field("/message/data")};
    }

    NatsDelivery delivery(std::string_view body, std::string_view id = job_id) {
        NatsDelivery d;
        d.job_id = id;
        d.route = "github";
        d.attempt = 1;
        d.received_at_unix_ns = 1'800'000'000 * base::ns_per_s + 123 * ms;
        d.headers = _headers;
        d.body = {reinterpret_cast<const uint8_t*>(body.data()), body.size()};
        return d;
    }

    void start(const NatsDelivery& d, uint64_t cookie) { start_ok(*_sink, d, cookie); }

    void drain_until(const std::function<bool()>& cond, int64_t max_ns) {
        drain_sink_until(_ring, *_sink, cond, max_ns, [&](uint64_t cookie, const NatsOutcome& o) {
            _results.push_back({cookie, o.kind, std::string(o.error), o.duplicate, o.seq});
        });
    }

    std::vector<Result> run(size_t n, int64_t max_ns = 10'000 * ms) {
        drain_until([&] { return _results.size() >= n; }, max_ns);
        EXPECT_EQ(_results.size(), n);
        std::vector<Result> r;
        r.swap(_results);
        return r;
    }

    Result one(const NatsDelivery& d, int64_t max_ns = 10'000 * ms) {
        start(d, 7);
        auto r = run(1, max_ns);
        return r.empty() ? Result{} : r[0];
    }

    bool connected_within(int64_t max_ns) {
        drain_until([&] { return _sink->connected(); }, max_ns);
        return _sink->connected();
    }

    io::Ring _ring;
    std::unique_ptr<NatsSink> _sink;
    std::vector<http::Header> _headers;
    std::vector<Result> _results;
    void (*_saved_pipe)(int) = nullptr;
};

} // namespace

TEST_F(NatsSinkTest, PublishIsAcknowledgedWithBodyAndHeaders) {
    NatsServer server;
    ASSERT_TRUE(server.start());
    create_stream(server.port());
    _headers = {{"Content-Type", "application/json"},
                {"X-GitHub-Event", "push"},
                {"Authorization", "Bearer secret"},
                {"Portcullis-Job-Id", "spoofed"},
                {"Nats-Msg-Id", "spoofed"},
                {"Connection", "x-hop"},
                {"X-Hop", "1"}};
    make(cfg_for(server.port()));
    std::string body = "{\"a\":1}\r\n";
    body.push_back('\0');
    body += "\xff binary";
    const Result r = one(delivery(body));
    ASSERT_EQ(r.kind, NatsOutcome::Kind::delivered) << r.error;
    EXPECT_EQ(r.seq, 1u);
    EXPECT_FALSE(r.duplicate);
    const auto [hdrs, data] = stored(server.port(), 1);
    EXPECT_EQ(data, body);
    EXPECT_EQ(hdrs, "NATS/1.0\r\n"
                    "Content-Type: application/json\r\n"
                    "X-GitHub-Event: push\r\n"
                    "Portcullis-Job-Id: " +
                        job_id +
                        "\r\n"
                        "Portcullis-Attempt: 1\r\n"
                        "Portcullis-Route: github\r\n"
                        "Portcullis-Received-At: 2027-01-15T08:00:00.123Z\r\n"
                        "Nats-Msg-Id: " +
                        job_id + "\r\n\r\n");
    EXPECT_EQ(_sink->stats().connects, 1u);
    EXPECT_EQ(_sink->stats().delivered, 1u);
}

TEST_F(NatsSinkTest, ManyInFlightAreAllAcknowledged) {
    NatsServer server;
    ASSERT_TRUE(server.start());
    create_stream(server.port());
    make(cfg_for(server.port()));
    ASSERT_TRUE(connected_within(5000 * ms));
    std::vector<std::string> ids;
    for (int i = 0; i < 64; ++i) {
        ids.push_back(job_id.substr(0, 20) + std::to_string(100000 + i));
    }
    const uint64_t sends_before = _sink->stats().sends;
    for (int i = 0; i < 64; ++i) {
        start(delivery("body " + std::to_string(i), ids[size_t(i)]), uint64_t(i));
    }
    EXPECT_FALSE(_sink->has_room());
    std::string error;
    EXPECT_FALSE(_sink->start(delivery("x"), 99, base::mono_ns(), error));
    const auto results = run(64);
    std::vector<bool> seen(64);
    for (const Result& r : results) {
        EXPECT_EQ(r.kind, NatsOutcome::Kind::delivered) << r.error;
        seen[r.cookie] = true;
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), true), 64);
    // Started in one turn, they left together: not the first alone and the rest after it.
    EXPECT_EQ(_sink->stats().sends - sends_before, 1u);
}

TEST_F(NatsSinkTest, DuplicateWithinTheWindowIsAcknowledgedAsDuplicate) {
    NatsServer server;
    ASSERT_TRUE(server.start());
    create_stream(server.port());
    make(cfg_for(server.port()));
    const Result a = one(delivery("first"));
    ASSERT_EQ(a.kind, NatsOutcome::Kind::delivered) << a.error;
    EXPECT_FALSE(a.duplicate);
    const Result b = one(delivery("first"));
    ASSERT_EQ(b.kind, NatsOutcome::Kind::delivered) << b.error;
    EXPECT_TRUE(b.duplicate);
    EXPECT_EQ(b.seq, a.seq);
    EXPECT_EQ(_sink->stats().duplicates, 1u);
}

// Two appliances accept the same provider delivery: two job ids, one dedup key. The stream
// stores it once.
TEST_F(NatsSinkTest, TheDedupKeyIsTheMessageId) {
    NatsServer server;
    ASSERT_TRUE(server.start());
    create_stream(server.port());
    make(cfg_for(server.port()));
    queue::JobRecord rec;
    rec.keys.has_dedup = true;
    rec.keys.dedup_key = {0x0123456789abcdefull, 0xfedcba9876543210ull};
    NatsDelivery d = delivery("same", "01jd3v8x7e0k4s9q2m6b5n1aaa");
    d.record = &rec;
    const Result a = one(d);
    ASSERT_EQ(a.kind, NatsOutcome::Kind::delivered) << a.error;
    d.job_id = "01jd3v8x7e0k4s9q2m6b5n1bbb";
    const Result b = one(d);
    ASSERT_EQ(b.kind, NatsOutcome::Kind::delivered) << b.error;
    EXPECT_TRUE(b.duplicate);
    const auto [hdrs, data] = stored(server.port(), a.seq);
    EXPECT_NE(hdrs.find("\r\nNats-Msg-Id: 0123456789abcdeffedcba9876543210\r\n"), std::string::npos)
        << hdrs;
}

TEST_F(NatsSinkTest, NoStreamIsARetryWithAClearError) {
    NatsServer server;
    ASSERT_TRUE(server.start());
    create_stream(server.port());
    auto cfg = cfg_for(server.port());
    cfg.subject = "elsewhere.{route}";
    make(cfg);
    const Result r = one(delivery("x"));
    EXPECT_EQ(r.kind, NatsOutcome::Kind::retry);
    EXPECT_EQ(r.error, "no JetStream stream for subject elsewhere.github");
    EXPECT_EQ(_sink->stats().no_stream, 1u);
    // The connection stays usable.
    EXPECT_TRUE(_sink->connected());
}

TEST_F(NatsSinkTest, WrongPasswordIsAClearError) {
    NatsServer server("authorization { user: hooks, password: right }");
    ASSERT_TRUE(server.start());
    auto cfg = cfg_for(server.port());
    cfg.user = "hooks";
    cfg.password = config::Secret{.material = "wrong", .origin = "value"};
    make(cfg);
    const Result r = one(delivery("x"));
    EXPECT_EQ(r.kind, NatsOutcome::Kind::retry);
    EXPECT_NE(r.error.find("Authorization Violation"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("sinks.bus.nats.credentials"), std::string::npos) << r.error;
    EXPECT_EQ(r.error.find("wrong"), std::string::npos) << r.error;
    EXPECT_FALSE(_sink->connected());
    EXPECT_EQ(_sink->stats().connects, 0u);
    // While down, a publish fails at once with the reason.
    const Result f = one(delivery("y"));
    EXPECT_EQ(f.kind, NatsOutcome::Kind::retry);
    EXPECT_NE(f.error.find("Authorization Violation"), std::string::npos) << f.error;
}

TEST_F(NatsSinkTest, UserAndPassword) {
    NatsServer server("authorization { user: hooks, password: right }");
    ASSERT_TRUE(server.start());
    create_stream(server.port(), R"(,"user":"hooks","pass":"right")");
    auto cfg = cfg_for(server.port());
    cfg.user = "hooks";
    cfg.password = config::Secret{.material = "right", .origin = "value"};
    make(cfg);
    const Result r = one(delivery("x"));
    EXPECT_EQ(r.kind, NatsOutcome::Kind::delivered) << r.error;
}

TEST_F(NatsSinkTest, TokenAuth) {
    NatsServer server("authorization { token: s3cr3t }");
    ASSERT_TRUE(server.start());
    create_stream(server.port(), R"(,"auth_token":"s3cr3t")");
    auto cfg = cfg_for(server.port());
    cfg.token = config::Secret{.material = "s3cr3t", .origin = "value"};
    make(cfg);
    const Result r = one(delivery("x"));
    EXPECT_EQ(r.kind, NatsOutcome::Kind::delivered) << r.error;
    // And a wrong token is refused.
    _sink->stop();
    drain_until([&] { return _sink->idle(); }, 2000 * ms);
    cfg.token->material = "nope";
    make(cfg);
    const Result w = one(delivery("x"));
    EXPECT_EQ(w.kind, NatsOutcome::Kind::retry);
    EXPECT_NE(w.error.find("Authorization Violation"), std::string::npos) << w.error;
}

TEST_F(NatsSinkTest, NKeyAuth) {
    // The test creates the stream as a second, password user: the nkey user is portcullis.
    NatsServer server("authorization { users = [ { nkey: " + user_public +
                      " }, { user: admin, password: pw } ] }");
    ASSERT_TRUE(server.start());
    create_stream(server.port(), R"(,"user":"admin","pass":"pw")");
    auto cfg = cfg_for(server.port());
    cfg.nkey_seed = config::Secret{.material = user_seed, .origin = "env:NATS_SEED"};
    make(cfg);
    const Result r = one(delivery("x"));
    EXPECT_EQ(r.kind, NatsOutcome::Kind::delivered) << r.error;
}

TEST_F(NatsSinkTest, BadSeedFailsInit) {
    auto cfg = cfg_for(4222);
    cfg.nkey_seed =
        config::Secret{.material = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORSBU",
                       .origin = "value"};
    NatsSink sink(_ring, 0, "bus", cfg);
    const std::string err = sink.init(base::mono_ns());
    EXPECT_NE(err.find("sinks.bus.nats.credentials.nkey_seed"), std::string::npos) << err;
    EXPECT_EQ(err.find("SUAM"), std::string::npos) << err;
}

TEST_F(NatsSinkTest, HeadersNatsCannotCarryRefuseTheJob) {
    NatsServer server;
    ASSERT_TRUE(server.start());
    make(cfg_for(server.port()));
    _headers = {{"X-Evil", "a\r\nNats-Msg-Id: forged"}};
    std::string error;
    EXPECT_FALSE(_sink->start(delivery("x"), 1, base::mono_ns(), error));
    EXPECT_NE(error.find("X-Evil"), std::string::npos) << error;
    EXPECT_NE(error.find("CR or LF"), std::string::npos) << error;
    EXPECT_EQ(error.find("forged"), std::string::npos) << error;
    EXPECT_EQ(_sink->in_flight(), 0u);
}

TEST_F(NatsSinkTest, LargerThanMaxPayloadIsRefused) {
    NatsServer server("max_payload: 2048");
    ASSERT_TRUE(server.start());
    create_stream(server.port());
    make(cfg_for(server.port()));
    // Held for the first connection: refused once the server's INFO says its limit.
    start(delivery(std::string(4000, 'a')), 1);
    const Result held = run(1)[0];
    EXPECT_EQ(held.kind, NatsOutcome::Kind::rejected);
    EXPECT_NE(held.error.find("max_payload of 2048"), std::string::npos) << held.error;
    // Once known: start() refuses it.
    std::string error;
    EXPECT_FALSE(_sink->start(delivery(std::string(4000, 'a')), 2, base::mono_ns(), error));
    EXPECT_NE(error.find("max_payload of 2048"), std::string::npos) << error;
    const Result small = one(delivery("fits"));
    EXPECT_EQ(small.kind, NatsOutcome::Kind::delivered) << small.error;
}

TEST_F(NatsSinkTest, ServerKilledMidLoadThenBack) {
    NatsServer server;
    ASSERT_TRUE(server.start());
    create_stream(server.port());
    make(cfg_for(server.port()));
    ASSERT_TRUE(connected_within(5000 * ms));
    for (int i = 0; i < 64; ++i) {
        start(delivery(std::string(20000, char('a' + i % 26)),
                       job_id.substr(0, 20) + std::to_string(200000 + i)),
              uint64_t(i));
    }
    server.kill();
    const auto results = run(64);
    size_t retried = 0;
    for (const Result& r : results) {
        if (r.kind == NatsOutcome::Kind::retry) {
            ++retried;
            EXPECT_FALSE(r.error.empty());
        }
    }
    EXPECT_GT(retried, 0u);
    EXPECT_FALSE(_sink->connected());
    // Down: fails fast.
    const Result down = one(delivery("down"));
    EXPECT_EQ(down.kind, NatsOutcome::Kind::retry);
    EXPECT_NE(down.error.find("not connected"), std::string::npos) << down.error;
    ASSERT_TRUE(server.restart());
    ASSERT_TRUE(connected_within(5000 * ms));
    const Result back = one(delivery("back"));
    EXPECT_EQ(back.kind, NatsOutcome::Kind::delivered) << back.error;
    EXPECT_GE(_sink->stats().connects, 2u);
    EXPECT_GE(_sink->stats().disconnects, 1u);
}

// A plain subscriber on the subject and no stream: the publish reaches a responder that never
// answers, so no acknowledgement comes and the publish times out.
TEST_F(NatsSinkTest, AnUnansweredPublishTimesOut) {
    NatsServer server;
    ASSERT_TRUE(server.start());
    Client silent;
    ASSERT_TRUE(silent.connect(server.port()));
    ASSERT_TRUE(silent.subscribe("webhooks.github"));
    auto o = fast();
    o.publish_timeout_ns = 300 * ms;
    make(cfg_for(server.port()), o);
    const Result r = one(delivery("x"));
    EXPECT_EQ(r.kind, NatsOutcome::Kind::retry);
    EXPECT_EQ(r.error, "timeout after 300 ms waiting for the acknowledgement");
    EXPECT_EQ(_sink->stats().timeouts, 1u);
    EXPECT_TRUE(_sink->connected());
}

namespace {

struct TlsFiles {
    fx::TempDir dir;
    std::string ca_file, cert_file, key_file;
    // ca_key: another kind makes another CA (the names are the same).
    explicit TlsFiles(fx::KeyKind ca_key = fx::KeyKind::p256) {
        auto ca_spec = fx::valid_now("test ca", {});
        ca_spec.ca = true;
        auto ca = fx::make_cert(ca_spec, fx::key_of(ca_key));
        auto leaf = fx::make_cert(fx::valid_now("leaf", {"localhost"}),
                                  fx::key_of(fx::KeyKind::p256), ca.get(), fx::key_of(ca_key));
        ca_file = dir.write("ca.pem", fx::pem_of(ca.get()));
        cert_file = dir.write("leaf.pem", fx::pem_of(leaf.get()));
        key_file = dir.write("leaf.key", fx::pem_of(fx::key_of(fx::KeyKind::p256)));
    }
    std::string conf() const {
        return "tls { cert_file: \"" + cert_file + "\", key_file: \"" + key_file + "\" }";
    }
};

} // namespace

// tls:// and nats:// to a server that requires TLS: the client upgrades after INFO. No stream
// (the test's own client speaks no TLS): the 503 answer shows the whole round trip went through.
TEST_F(NatsSinkTest, TlsAfterInfo) {
    TlsFiles tls;
    NatsServer server(tls.conf());
    ASSERT_TRUE(server.start());
    for (bool scheme_tls : {true, false}) {
        auto cfg = cfg_for(server.port());
        cfg.host = "localhost";
        cfg.tls = scheme_tls;
        auto o = fast();
        o.system_ca_file = tls.ca_file;
        make(cfg, o);
        const Result r = one(delivery("x"));
        EXPECT_EQ(r.kind, NatsOutcome::Kind::retry);
        EXPECT_EQ(r.error, "no JetStream stream for subject webhooks.github") << scheme_tls;
        EXPECT_EQ(_sink->stats().tls_handshakes, 1u);
        EXPECT_TRUE(_sink->connected());
        _sink->stop();
        drain_until([&] { return _sink->idle(); }, 2000 * ms);
        _sink.reset();
    }
}

// `ca`: a server whose certificate a private CA signed is trusted with that CA's file, and
// refused with only the system's store (here another CA's file).
TEST_F(NatsSinkTest, TheCaKeyTrustsAPrivateCa) {
    TlsFiles tls;
    TlsFiles system(fx::KeyKind::p384);
    NatsServer server(tls.conf());
    ASSERT_TRUE(server.start());
    for (bool with_ca : {true, false}) {
        auto cfg = cfg_for(server.port());
        cfg.host = "localhost";
        cfg.tls = true;
        if (with_ca) {
            cfg.ca = tls.ca_file;
        }
        auto o = fast();
        o.system_ca_file = system.ca_file;
        make(cfg, o);
        const Result r = one(delivery("x"));
        EXPECT_EQ(r.kind, NatsOutcome::Kind::retry);
        if (with_ca) {
            EXPECT_EQ(r.error, "no JetStream stream for subject webhooks.github");
            EXPECT_EQ(_sink->stats().tls_handshakes, 1u);
        } else {
            expect_untrusted(r.error);
            EXPECT_EQ(_sink->stats().tls_handshakes, 0u);
        }
        stop_and_drain(_ring, _sink);
    }
}

TEST_F(NatsSinkTest, ACaFileThatIsMissingOrHoldsNoCertificateFailsInit) {
    fx::TempDir dir;
    const std::string empty = dir.write("empty.pem", "no certificate here\n");
    for (const std::string& file : {std::string("/nonexistent/ca.pem"), empty}) {
        auto cfg = cfg_for(4222);
        cfg.tls = true;
        cfg.ca = file;
        NatsSink sink(_ring, 0, "bus", cfg, fast());
        EXPECT_EQ(sink.init(0),
                  "sinks.bus.nats.ca: " + file + ": cannot be read or holds no PEM certificate");
    }
}

TEST_F(NatsSinkTest, TlsWithAnUntrustedCertificateIsAClearError) {
    TlsFiles tls;
    NatsServer server(tls.conf());
    ASSERT_TRUE(server.start());
    auto cfg = cfg_for(server.port());
    cfg.host = "localhost";
    cfg.tls = true;
    auto o = fast();
    TlsFiles other(fx::KeyKind::p384);
    o.system_ca_file = other.ca_file;
    make(cfg, o);
    const Result r = one(delivery("x"));
    EXPECT_EQ(r.kind, NatsOutcome::Kind::retry);
    EXPECT_NE(r.error.find("not trusted"), std::string::npos) << r.error;
}
