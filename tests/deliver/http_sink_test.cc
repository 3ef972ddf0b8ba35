// HttpSink end to end: a real io_uring loop like the control plane's on one side, a small
// blocking HTTP/1.1 server on threads of the test on the other (plain, or TLS with certificates
// from tests/tls/pki), on 127.0.0.1 with a port the kernel chose.
#include "portcullis/deliver/http_sink.hh"

#include "portcullis/base/time.hh"
#include "portcullis/verify/verifier.hh"

#include "../tls/pki.hh"
#include "../verify/harness.hh"
#include "sink_loop.hh"

#include <gtest/gtest.h>

#include <openssl/ssl.h>

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <functional>
#include <map>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <optional>
#include <random>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace portcullis;
using deliver::HttpDelivery;
using deliver::HttpOutcome;
using deliver::HttpSink;
namespace fx = portcullis::tls::fixture;

using deliver::testing::drain_sink_until;
using deliver::testing::start_ok;

namespace {

constexpr int64_t ms = 1'000'000;
const std::string job_id = "01jd3v8x7e0k4s9q2m6b5n1c8h";

// ---------------------------------------------------------------------------------------------
// The test's server

struct Received {
    std::string request_line;
    std::vector<std::pair<std::string, std::string>> fields; // in order, as sent
    std::string body;
    int conn = 0;    // which accepted connection (1, 2, ...)
    int on_conn = 0; // which request on that connection (1, 2, ...)

    std::optional<std::string> field(std::string_view lower) const {
        for (const auto& [n, v] : fields) {
            if (n.size() == lower.size() &&
                std::equal(n.begin(), n.end(), lower.begin(),
                           [](char a, char b) { return http::ascii_lower(a) == b; })) {
                return v;
            }
        }
        return std::nullopt;
    }
};

struct Reply {
    std::string bytes;        // sent as is
    bool close_after = false; // close once sent
    bool drop = false;        // close without answering
    bool stall = false;       // never answer (until the server stops)
    int delay_ms = 0;         // before answering
};

Reply status(int code, const std::string& extra = {}, const std::string& body = "ok") {
    return {"HTTP/1.1 " + std::to_string(code) + " X\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body};
}

using Handler = std::function<Reply(const Received&)>;

class TestServer {
public:
    explicit TestServer(Handler handler, SSL_CTX* tls = nullptr)
        : _handler(std::move(handler)), _tls(tls) {
        _listen = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        const int one = 1;
        ::setsockopt(_listen, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        EXPECT_EQ(::bind(_listen, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        EXPECT_EQ(::listen(_listen, 128), 0);
        socklen_t len = sizeof a;
        ::getsockname(_listen, reinterpret_cast<sockaddr*>(&a), &len);
        _port = ntohs(a.sin_port);
        _accepter = std::thread([this] { accept_loop(); });
    }

    ~TestServer() {
        {
            std::lock_guard lock(_mutex);
            _stopping = true;
            for (int fd : _fds) {
                ::shutdown(fd, SHUT_RDWR);
            }
        }
        _wake.notify_all();
        ::shutdown(_listen, SHUT_RDWR);
        _accepter.join();
        for (auto& t : _threads) {
            t.join();
        }
        ::close(_listen);
    }

    uint16_t port() const { return _port; }
    int accepted() {
        std::lock_guard lock(_mutex);
        return _accepted;
    }
    int max_open() {
        std::lock_guard lock(_mutex);
        return _max_open;
    }
    std::vector<Received> requests() {
        std::lock_guard lock(_mutex);
        return _requests;
    }

private:
    struct Io {
        int fd;
        SSL* ssl;
        long read(char* p, size_t n) const {
            return ssl != nullptr ? SSL_read(ssl, p, int(n)) : ::recv(fd, p, n, 0);
        }
        bool write(std::string_view s) const {
            while (!s.empty()) {
                const long n = ssl != nullptr ? SSL_write(ssl, s.data(), int(s.size()))
                                              : ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
                if (n <= 0) {
                    return false;
                }
                s.remove_prefix(size_t(n));
            }
            return true;
        }
    };

    void accept_loop() {
        for (;;) {
            const int fd = ::accept4(_listen, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                return;
            }
            std::lock_guard lock(_mutex);
            if (_stopping) {
                ::close(fd);
                return;
            }
            const int conn = ++_accepted;
            ++_open;
            _max_open = std::max(_max_open, _open);
            _fds.push_back(fd);
            _threads.emplace_back([this, fd, conn] { serve(fd, conn); });
        }
    }

    void serve(int fd, int conn) {
        SSL* ssl = nullptr;
        if (_tls != nullptr) {
            ssl = SSL_new(_tls);
            SSL_set_fd(ssl, fd);
            if (SSL_accept(ssl) != 1) {
                SSL_free(ssl);
                ssl = nullptr;
                finish(fd);
                return;
            }
        }
        const Io io{fd, ssl};
        std::string buf;
        for (int n = 1;; ++n) {
            Received r;
            if (!read_request(io, buf, r)) {
                break;
            }
            r.conn = conn;
            r.on_conn = n;
            {
                std::lock_guard lock(_mutex);
                _requests.push_back(r);
            }
            const Reply reply = _handler(r);
            if (reply.stall) {
                std::unique_lock lock(_mutex);
                _wake.wait(lock, [this] { return _stopping; });
                break;
            }
            if (reply.delay_ms > 0) {
                std::this_thread::sleep_for(std::chrono::milliseconds(reply.delay_ms));
            }
            if (reply.drop) {
                break;
            }
            if (!io.write(reply.bytes) || reply.close_after) {
                break;
            }
        }
        if (ssl != nullptr) {
            SSL_free(ssl);
        }
        finish(fd);
    }

    void finish(int fd) {
        std::lock_guard lock(_mutex);
        --_open;
        std::erase(_fds, fd);
        ::close(fd);
    }

    // Reads one request: head to the empty line, then Content-Length bytes.
    static bool read_request(const Io& io, std::string& buf, Received& r) {
        char chunk[65536];
        size_t end;
        while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
            const long n = io.read(chunk, sizeof chunk);
            if (n <= 0) {
                return false;
            }
            buf.append(chunk, size_t(n));
        }
        const std::string head = buf.substr(0, end);
        buf.erase(0, end + 4);
        size_t line_end = head.find("\r\n");
        r.request_line = head.substr(0, line_end);
        size_t length = 0;
        while (line_end != std::string::npos) {
            const size_t start = line_end + 2;
            line_end = head.find("\r\n", start);
            const std::string line = head.substr(start, line_end - start);
            const size_t colon = line.find(':');
            std::string name = line.substr(0, colon);
            std::string value = line.substr(colon + 1);
            value.erase(0, value.find_first_not_of(' '));
            if (http::name_equals(name, "content-length")) {
                length = std::stoul(value);
            }
            r.fields.emplace_back(std::move(name), std::move(value));
        }
        while (buf.size() < length) {
            const long n = io.read(chunk, sizeof chunk);
            if (n <= 0) {
                return false;
            }
            buf.append(chunk, size_t(n));
        }
        r.body = buf.substr(0, length);
        buf.erase(0, length);
        return true;
    }

    Handler _handler;
    SSL_CTX* _tls;
    int _listen = -1;
    uint16_t _port = 0;
    std::thread _accepter;
    std::mutex _mutex;
    std::condition_variable _wake;
    bool _stopping = false;
    int _accepted = 0;
    int _open = 0;
    int _max_open = 0;
    std::vector<int> _fds;
    std::vector<std::thread> _threads;
    std::vector<Received> _requests;
};

// A port nothing listens on: bound, then closed.
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

// ---------------------------------------------------------------------------------------------
// The loop

struct Result {
    uint64_t cookie = 0;
    HttpOutcome::Kind kind = HttpOutcome::Kind::retry;
    uint16_t status = 0;
    int64_t retry_after_ns = -1;
    std::string error;
    std::string body_head;
    int64_t duration_ns = 0;
    bool reused = false;
};

std::atomic<int64_t> fake_unix_ns{1'800'000'000 * base::ns_per_s};
int64_t fake_clock() {
    return fake_unix_ns.load();
}

class HttpSinkTest : public ::testing::Test {
protected:
    void SetUp() override {
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

    config::HttpSinkConfig plain(uint16_t port, std::string host = "127.0.0.1") {
        config::HttpSinkConfig c;
        c.host = std::move(host);
        c.port = port;
        c.url = "http://" + c.host + ":" + std::to_string(port) + "/hooks/in?x=1";
        c.path_and_query = "/hooks/in?x=1";
        c.timeout_ns = 5000 * ms;
        c.concurrency = 4;
        return c;
    }

    void make(const config::HttpSinkConfig& cfg, deliver::HttpSinkOptions o = {}) {
        o.unix_now_ns = fake_clock;
        _sink = std::make_unique<HttpSink>(_ring, 3, "app", cfg, std::move(o));
        ASSERT_EQ(_sink->init(base::mono_ns()), "");
    }

    HttpDelivery delivery(std::string_view body = "{\"a\":1}") {
        HttpDelivery d;
        d.job_id = job_id;
        d.route = "github";
        d.attempt = 2;
        d.received_at_unix_ns = 1'800'000'000 * base::ns_per_s + 123 * ms;
        d.headers = _headers;
        d.body = {reinterpret_cast<const uint8_t*>(body.data()), body.size()};
        return d;
    }

    void start(const HttpDelivery& d, uint64_t cookie) { start_ok(*_sink, d, cookie); }

    // Runs the loop until cond() or max_ns.
    void drain_until(const std::function<bool()>& cond, int64_t max_ns) {
        drain_sink_until(_ring, *_sink, cond, max_ns, [&](uint64_t cookie, const HttpOutcome& o) {
            _results.push_back({cookie, o.kind, o.status, o.retry_after_ns, std::string(o.error),
                                std::string(o.body_head), o.duration_ns, o.reused});
        });
    }

    // Runs the loop until n outcomes are in; returns them.
    std::vector<Result> run(size_t n, int64_t max_ns = 10'000 * ms) {
        drain_until([&] { return _results.size() >= n; }, max_ns);
        EXPECT_EQ(_results.size(), n);
        return _results;
    }

    Result one(const HttpDelivery& d, int64_t max_ns = 10'000 * ms) {
        _results.clear();
        start(d, 7);
        auto r = run(1, max_ns);
        _results.clear();
        return r.empty() ? Result{} : r[0];
    }

    io::Ring _ring;
    std::unique_ptr<HttpSink> _sink;
    std::vector<http::Header> _headers;
    std::vector<Result> _results;
    void (*_saved_pipe)(int) = nullptr;
};

std::string random_bytes(size_t n, unsigned seed) {
    std::mt19937 gen(seed);
    std::string s(n, '\0');
    for (char& c : s) {
        c = static_cast<char>(gen() & 0xff);
    }
    return s;
}

} // namespace

TEST_F(HttpSinkTest, SendsTheBodyByteForByte) {
    TestServer server([](const Received&) { return status(200); });
    make(plain(server.port()));
    const std::vector<size_t> sizes = {0, 1, 1000, 65537, 1 << 20};
    for (size_t i = 0; i < sizes.size(); ++i) {
        const std::string body = random_bytes(sizes[i], unsigned(i));
        const Result r = one(delivery(body));
        EXPECT_EQ(r.kind, HttpOutcome::Kind::delivered) << r.error;
        ASSERT_EQ(server.requests().size(), i + 1);
        const Received got = server.requests()[i];
        EXPECT_EQ(got.request_line, "POST /hooks/in?x=1 HTTP/1.1");
        EXPECT_EQ(got.body.size(), body.size());
        EXPECT_TRUE(got.body == body) << "body of " << body.size() << " bytes differs";
        EXPECT_EQ(got.field("content-length"), std::to_string(body.size()));
        EXPECT_EQ(got.field("host"), "127.0.0.1:" + std::to_string(server.port()));
    }
}

TEST_F(HttpSinkTest, ForwardsTheWebhooksFieldsAndNoOthers) {
    TestServer server([](const Received&) { return status(200); });
    auto cfg = plain(server.port());
    cfg.headers = {{"X-Env", "prod"}};
    make(cfg);
    _headers = {{"Content-Type", "application/json"},
                {"Connection", "X-Hop, keep-alive"},
                {"X-Hop", "named by Connection"},
                {"X-GitHub-Event", "push"},
                {"Keep-Alive", "timeout=5"},
                {"Proxy-Connection", "keep-alive"},
                {"TE", "trailers"},
                {"Trailer", "X-T"},
                {"Transfer-Encoding", "chunked"},
                {"Upgrade", "h2c"},
                {"Expect", "100-continue"},
                {"Host", "sender.example"},
                {"Content-Length", "999"},
                {"Authorization", "Bearer secret"},
                {"Proxy-Authorization", "Basic x"},
                {"Cookie", "session=1"},
                {"Portcullis-Job-Id", "spoofed"},
                {"portcullis-attempt", "99"},
                {"Portcullis-Anything", "spoofed"},
                {"x-env", "from the sender"},
                {"webhook-id", "sender's own"},
                {"X-Hub-Signature-256", "sha256=abc"}};
    const Result r = one(delivery());
    ASSERT_EQ(r.kind, HttpOutcome::Kind::delivered) << r.error;
    const Received got = server.requests().at(0);
    std::vector<std::string> names;
    for (const auto& [n, v] : got.fields) {
        names.push_back(n);
    }
    // In order: Host, the kept fields as sent, the sink's, portcullis's, the framing.
    const std::vector<std::string> expected = {"Host",
                                               "Content-Type",
                                               "X-GitHub-Event",
                                               "webhook-id", // kept: this sink does not sign
                                               "X-Hub-Signature-256",
                                               "X-Env",
                                               "Portcullis-Job-Id",
                                               "Portcullis-Attempt",
                                               "Portcullis-Route",
                                               "Portcullis-Received-At",
                                               "Content-Length",
                                               "Connection"};
    EXPECT_EQ(names, expected);
    EXPECT_EQ(got.field("x-env"), "prod");
    EXPECT_EQ(got.field("connection"), "keep-alive");
    EXPECT_EQ(got.field("portcullis-job-id"), job_id);
    EXPECT_EQ(got.field("portcullis-attempt"), "2");
    EXPECT_EQ(got.field("portcullis-route"), "github");
    // The exec sink's format: RFC 3339 UTC, milliseconds.
    EXPECT_EQ(got.field("portcullis-received-at"), "2027-01-15T08:00:00.123Z");
}

TEST_F(HttpSinkTest, ReadsTheFieldsOfAStoredRecord) {
    TestServer server([](const Received&) { return status(200); });
    make(plain(server.port()));
    const std::vector<http::Header> stored = {{"X-A", "1"}, {"Cookie", "c=1"}, {"X-B", "2"}};
    queue::JobMeta meta;
    meta.route = "github";
    const std::vector<uint8_t> bytes = queue::make_job_record(meta, stored, "payload");
    queue::JobRecord rec;
    size_t size = 0;
    ASSERT_EQ(queue::decode_record(bytes, rec, size), queue::DecodeStatus::ok);
    HttpDelivery d = delivery();
    d.record = &rec;
    d.body = {reinterpret_cast<const uint8_t*>(rec.body.data()), rec.body.size()};
    const Result r = one(d);
    ASSERT_EQ(r.kind, HttpOutcome::Kind::delivered) << r.error;
    const Received got = server.requests().at(0);
    EXPECT_EQ(got.fields.at(1).first, "X-A");
    EXPECT_EQ(got.fields.at(2).first, "X-B");
    EXPECT_FALSE(got.field("cookie"));
    EXPECT_EQ(got.body, "payload");
}

TEST_F(HttpSinkTest, RefusesARequestTheWriterCannotWrite) {
    TestServer server([](const Received&) { return status(200); });
    make(plain(server.port()));
    _headers = {{"X-Evil", "a\r\nInjected: 1"}};
    std::string error;
    EXPECT_FALSE(_sink->start(delivery(), 1, base::mono_ns(), error));
    EXPECT_NE(error.find("bad_header_value"), std::string::npos) << error;
    EXPECT_NE(error.find("X-Evil"), std::string::npos) << error;
    EXPECT_EQ(error.find("Injected"), std::string::npos) << "a value in the message: " << error;
    EXPECT_EQ(_sink->in_flight(), 0u);
    EXPECT_EQ(_sink->stats().refused, 1u);
}

TEST_F(HttpSinkTest, SignsEachAttemptWithAFreshTimestamp) {
    TestServer server([](const Received&) { return status(200); });
    const std::string secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    auto cfg = plain(server.port());
    cfg.sign_secrets = {{secret, config::SecretSource::env, "env:APP_SIGNING_SECRET"}};
    make(cfg);
    _headers = {{"webhook-id", "sender's"},
                {"Webhook-Timestamp", "1"},
                {"webhook-signature", "v1,spoofed"}};
    const std::string body = random_bytes(5000, 9);
    const int64_t t1 = fake_unix_ns.load();
    ASSERT_EQ(one(delivery(body)).kind, HttpOutcome::Kind::delivered);
    fake_unix_ns += 90 * base::ns_per_s;
    ASSERT_EQ(one(delivery(body)).kind, HttpOutcome::Kind::delivered);
    const auto got = server.requests();
    ASSERT_EQ(got.size(), 2u);
    auto verifier = verify::harness::make(config::Scheme::standard, {secret});
    for (size_t i = 0; i < 2; ++i) {
        const int64_t ts = (t1 + int64_t(i) * 90 * base::ns_per_s) / base::ns_per_s;
        size_t webhook_fields = 0;
        std::vector<http::Header> fields;
        for (const auto& [n, v] : got[i].fields) {
            fields.push_back({n, v});
            webhook_fields += n.rfind("webhook-", 0) == 0 || n.rfind("Webhook-", 0) == 0;
        }
        EXPECT_EQ(webhook_fields, 3u) << "the sender's webhook-* fields are dropped";
        EXPECT_EQ(got[i].field("webhook-id"), job_id);
        EXPECT_EQ(got[i].field("webhook-timestamp"), std::to_string(ts));
        EXPECT_EQ(
            verify::harness::run_verifier(*verifier, fields, got[i].body, ts * base::ns_per_s),
            verify::Reason::ok);
    }
    EXPECT_NE(got[0].field("webhook-signature"), got[1].field("webhook-signature"));
}

TEST_F(HttpSinkTest, ReusesAKeptAliveConnection) {
    TestServer server([](const Received&) { return status(200); });
    make(plain(server.port()));
    const Result a = one(delivery());
    const Result b = one(delivery());
    EXPECT_EQ(a.kind, HttpOutcome::Kind::delivered);
    EXPECT_EQ(b.kind, HttpOutcome::Kind::delivered);
    EXPECT_FALSE(a.reused);
    EXPECT_TRUE(b.reused);
    EXPECT_EQ(server.accepted(), 1);
    EXPECT_EQ(_sink->stats().reuses, 1u);
    EXPECT_EQ(_sink->open_connections(), 1u);
}

TEST_F(HttpSinkTest, NoticesThatTheServerClosedAnIdleConnection) {
    // Answers, then closes without saying so (an idle timeout on the server's side).
    TestServer server([](const Received&) {
        Reply r = status(200);
        r.close_after = true;
        return r;
    });
    make(plain(server.port()));
    ASSERT_EQ(one(delivery()).kind, HttpOutcome::Kind::delivered);
    drain_until([&] { return _sink->open_connections() == 0; }, 2000 * ms);
    EXPECT_EQ(_sink->open_connections(), 0u);
    EXPECT_EQ(_sink->stats().idle_closed, 1u);
    const Result b = one(delivery());
    EXPECT_EQ(b.kind, HttpOutcome::Kind::delivered) << b.error;
    EXPECT_FALSE(b.reused);
    EXPECT_EQ(server.accepted(), 2);
    EXPECT_EQ(_sink->stats().stale_retries, 0u);
}

TEST_F(HttpSinkTest, SendsAgainOnAFreshConnectionWhenAReusedOneWasClosed) {
    // The second request on a connection meets a close (the race of an idle timeout): the sink
    // sends it again on a new connection, and the outcome is the new connection's.
    TestServer server([](const Received& r) {
        if (r.on_conn == 2) {
            Reply drop;
            drop.drop = true;
            return drop;
        }
        return status(200);
    });
    make(plain(server.port()));
    ASSERT_EQ(one(delivery()).kind, HttpOutcome::Kind::delivered);
    const Result b = one(delivery("second"));
    EXPECT_EQ(b.kind, HttpOutcome::Kind::delivered) << b.error;
    EXPECT_FALSE(b.reused);
    EXPECT_EQ(server.accepted(), 2);
    EXPECT_EQ(_sink->stats().stale_retries, 1u);
    const auto got = server.requests();
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[2].body, "second");
    EXPECT_EQ(got[2].conn, 2);
}

TEST_F(HttpSinkTest, DoesNotSendAgainWhenAFreshConnectionCloses) {
    TestServer server([](const Received&) {
        Reply drop;
        drop.drop = true;
        return drop;
    });
    make(plain(server.port()));
    const Result r = one(delivery());
    EXPECT_EQ(r.kind, HttpOutcome::Kind::retry);
    EXPECT_NE(r.error.find("closed the connection (no_response)"), std::string::npos) << r.error;
    EXPECT_EQ(server.accepted(), 1);
}

TEST_F(HttpSinkTest, ClassifiesStatuses) {
    std::atomic<int> next{0};
    struct Case {
        std::string reply;
        HttpOutcome::Kind kind;
        uint16_t status;
        int64_t retry_after_ns;
    };
    const std::vector<Case> cases = {
        {status(200).bytes, HttpOutcome::Kind::delivered, 200, -1},
        {"HTTP/1.1 204 No Content\r\n\r\n", HttpOutcome::Kind::delivered, 204, -1},
        {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\n" + status(202).bytes,
         HttpOutcome::Kind::delivered, 202, -1},
        {status(404, {}, "no such hook").bytes, HttpOutcome::Kind::rejected, 404, -1},
        {status(400).bytes, HttpOutcome::Kind::rejected, 400, -1},
        {status(408).bytes, HttpOutcome::Kind::retry, 408, -1},
        {status(429, "Retry-After: 7\r\n").bytes, HttpOutcome::Kind::retry, 429,
         7 * base::ns_per_s},
        // fake clock: 2027-01-15T08:00:00Z, and later tests move it; a date 2 minutes ahead.
        {status(503, "Retry-After: DATE\r\n").bytes, HttpOutcome::Kind::retry, 503,
         120 * base::ns_per_s},
        {status(500, "Retry-After: 9\r\n").bytes, HttpOutcome::Kind::retry, 500, -1},
        {status(301, "Location: /elsewhere\r\n").bytes, HttpOutcome::Kind::retry, 301, -1},
    };
    fake_unix_ns = 1'800'000'000 * base::ns_per_s;
    std::string date = "Fri, 15 Jan 2027 08:02:00 GMT";
    TestServer server([&](const Received&) {
        Reply r;
        r.bytes = cases[size_t(next++)].reply;
        const size_t at = r.bytes.find("DATE");
        if (at != std::string::npos) {
            r.bytes.replace(at, 4, date);
        }
        return r;
    });
    make(plain(server.port()));
    for (const Case& c : cases) {
        const Result r = one(delivery());
        EXPECT_EQ(r.kind, c.kind) << c.reply << " " << r.error;
        EXPECT_EQ(r.status, c.status) << c.reply;
        EXPECT_EQ(r.retry_after_ns, c.retry_after_ns) << c.reply;
        EXPECT_EQ(r.error.empty(), c.kind == HttpOutcome::Kind::delivered) << r.error;
    }
    EXPECT_EQ(server.accepted(), 1) << "every answer kept the connection";
    const auto s = _sink->stats();
    EXPECT_EQ(s.delivered, 3u);
    EXPECT_EQ(s.rejected, 2u);
    EXPECT_EQ(s.retried, 5u);
}

TEST_F(HttpSinkTest, KeepsTheStartOfTheBodyForTheLog) {
    const std::string long_body(5000, 'z');
    TestServer server([&](const Received&) { return status(422, {}, "bad field: " + long_body); });
    make(plain(server.port()));
    const Result r = one(delivery());
    EXPECT_EQ(r.kind, HttpOutcome::Kind::rejected);
    EXPECT_EQ(r.body_head.size(), HttpSink::body_head_bytes);
    EXPECT_EQ(r.body_head.substr(0, 11), "bad field: ");
}

TEST_F(HttpSinkTest, ReadsChunkedAndCloseDelimitedResponses) {
    std::atomic<int> n{0};
    TestServer server([&](const Received&) {
        Reply r;
        if (n++ == 0) {
            r.bytes = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        } else {
            r.bytes = "HTTP/1.0 200 OK\r\n\r\nuntil the end";
            r.close_after = true;
        }
        return r;
    });
    make(plain(server.port()));
    const Result a = one(delivery());
    EXPECT_EQ(a.kind, HttpOutcome::Kind::delivered) << a.error;
    EXPECT_EQ(a.body_head, "hello world");
    const Result b = one(delivery());
    EXPECT_EQ(b.kind, HttpOutcome::Kind::delivered) << b.error;
    EXPECT_TRUE(b.reused);
    EXPECT_EQ(b.body_head, "until the end");
    drain_until([&] { return _sink->open_connections() == 0; }, 1000 * ms);
    EXPECT_EQ(_sink->open_connections(), 0u) << "a body read until close ends the connection";
}

TEST_F(HttpSinkTest, HonoursConnectionClose) {
    TestServer server([](const Received&) { return status(200, "Connection: close\r\n"); });
    make(plain(server.port()));
    EXPECT_EQ(one(delivery()).kind, HttpOutcome::Kind::delivered);
    EXPECT_EQ(one(delivery()).kind, HttpOutcome::Kind::delivered);
    EXPECT_EQ(server.accepted(), 2);
    EXPECT_EQ(_sink->stats().reuses, 0u);
}

TEST_F(HttpSinkTest, AMalformedResponseIsARetry) {
    TestServer server([](const Received&) { return Reply{"HTTP/1.1 200 OK\nX: y\n\n"}; });
    make(plain(server.port()));
    const Result r = one(delivery());
    EXPECT_EQ(r.kind, HttpOutcome::Kind::retry);
    EXPECT_EQ(r.error, "bad response (bare_lf)");
    EXPECT_EQ(_sink->stats().bad_responses, 1u);
}

TEST_F(HttpSinkTest, TimesOutAStalledServer) {
    TestServer server([](const Received&) {
        Reply r;
        r.stall = true;
        return r;
    });
    auto cfg = plain(server.port());
    cfg.timeout_ns = 300 * ms;
    make(cfg);
    const Result r = one(delivery());
    EXPECT_EQ(r.kind, HttpOutcome::Kind::retry);
    EXPECT_EQ(r.error, "timeout after 300 ms (waiting for the response)");
    EXPECT_GE(r.duration_ns, 300 * ms);
    EXPECT_LT(r.duration_ns, 3000 * ms);
    EXPECT_EQ(_sink->stats().timeouts, 1u);
    EXPECT_EQ(_sink->open_connections(), 0u);
}

TEST_F(HttpSinkTest, ARefusedConnectionIsARetry) {
    const uint16_t port = closed_port();
    make(plain(port));
    const Result r = one(delivery());
    EXPECT_EQ(r.kind, HttpOutcome::Kind::retry);
    EXPECT_EQ(r.error, "connect 127.0.0.1:" + std::to_string(port) + ": Connection refused");
    EXPECT_EQ(_sink->stats().connect_failures, 1u);
    EXPECT_EQ(_sink->open_connections(), 0u);
}

TEST_F(HttpSinkTest, ResolvesANameOffTheLoop) {
    TestServer server([](const Received&) { return status(200); });
    // localhost may come back as ::1 first, where nothing listens: the next address is tried.
    make(plain(server.port(), "localhost"));
    const Result r = one(delivery());
    EXPECT_EQ(r.kind, HttpOutcome::Kind::delivered) << r.error;
    EXPECT_EQ(_sink->stats().resolutions, 1u);
    EXPECT_EQ(server.requests().at(0).field("host"), "localhost:" + std::to_string(server.port()));
}

TEST_F(HttpSinkTest, ReResolvesPeriodically) {
    TestServer server([](const Received&) { return status(200); });
    deliver::HttpSinkOptions o;
    o.resolve_interval_ns = 50 * ms;
    make(plain(server.port(), "localhost"), o);
    drain_until([&] { return _sink->stats().resolutions >= 3; }, 3000 * ms);
    EXPECT_GE(_sink->stats().resolutions, 3u);
    EXPECT_EQ(one(delivery()).kind, HttpOutcome::Kind::delivered);
}

TEST_F(HttpSinkTest, AnUnresolvableNameIsARetry) {
    make(plain(8080, "no-such-host.invalid"));
    const Result r = one(delivery());
    EXPECT_EQ(r.kind, HttpOutcome::Kind::retry);
    // The resolver's answer, or the timeout while waiting for it: either names resolution.
    EXPECT_TRUE(r.error.find("resolve no-such-host.invalid: ") == 0 ||
                r.error.find("(resolving)") != std::string::npos)
        << r.error;
}

TEST_F(HttpSinkTest, RespectsTheConcurrencyCap) {
    TestServer server([](const Received&) {
        Reply r = status(200);
        r.delay_ms = 100;
        return r;
    });
    auto cfg = plain(server.port());
    cfg.concurrency = 3;
    make(cfg);
    // 12 deliveries, started whenever there is room.
    size_t started = 0;
    const int64_t end = base::mono_ns() + 10'000 * ms;
    while (_results.size() < 12 && base::mono_ns() < end) {
        while (started < 12 && _sink->has_room()) {
            start(delivery(), started++);
        }
        std::string error;
        if (started < 12) {
            EXPECT_FALSE(_sink->start(delivery(), 99, base::mono_ns(), error));
            EXPECT_EQ(error, "all 3 connections are busy");
        }
        EXPECT_LE(_sink->open_connections(), 3u);
        const size_t before = _results.size();
        drain_until([&] { return _results.size() > before; }, 2000 * ms);
    }
    ASSERT_EQ(_results.size(), 12u);
    for (const Result& r : _results) {
        EXPECT_EQ(r.kind, HttpOutcome::Kind::delivered) << r.error;
    }
    EXPECT_LE(server.max_open(), 3);
    EXPECT_EQ(server.accepted(), 3) << "each connection carried several requests";
}

TEST_F(HttpSinkTest, StopReportsNothingAndEndsIdle) {
    TestServer server([](const Received&) {
        Reply r;
        r.stall = true;
        return r;
    });
    make(plain(server.port()));
    start(delivery(), 1);
    start(delivery(), 2);
    drain_until([&] { return server.requests().size() == 2; }, 2000 * ms);
    _sink->stop();
    drain_until([&] { return _sink->idle(); }, 2000 * ms);
    EXPECT_TRUE(_sink->idle());
    EXPECT_TRUE(_results.empty());
    EXPECT_EQ(_sink->open_connections(), 0u);
}

// ---------------------------------------------------------------------------------------------
// https

namespace {

struct Pki {
    fx::TempDir dir;
    bssl::UniquePtr<X509> ca;
    bssl::UniquePtr<X509> other_ca;
    std::string ca_file;
    std::string other_ca_file;

    Pki() {
        auto ca_spec = fx::valid_now("test ca", {});
        ca_spec.ca = true;
        ca = fx::make_cert(ca_spec, fx::key_of(fx::KeyKind::p256));
        other_ca = fx::make_cert(ca_spec, fx::key_of(fx::KeyKind::p384));
        ca_file = dir.write("ca.pem", fx::pem_of(ca.get()));
        other_ca_file = dir.write("other.pem", fx::pem_of(other_ca.get()));
    }

    // A server context whose certificate names `dns`, issued by the test CA.
    bssl::UniquePtr<SSL_CTX> server(const std::string& dns) const {
        auto leaf = fx::make_cert(fx::valid_now("leaf", {dns}), fx::key_of(fx::KeyKind::p256),
                                  ca.get(), fx::key_of(fx::KeyKind::p256));
        bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
        SSL_CTX_use_certificate(ctx.get(), leaf.get());
        SSL_CTX_use_PrivateKey(ctx.get(), fx::key_of(fx::KeyKind::p256));
        return ctx;
    }
};

} // namespace

TEST_F(HttpSinkTest, DeliversOverHttpsWithTheSinksCa) {
    Pki pki;
    auto ctx = pki.server("localhost");
    TestServer server([](const Received&) { return status(200); }, ctx.get());
    auto cfg = plain(server.port(), "localhost");
    cfg.tls = true;
    cfg.ca = pki.ca_file;
    make(cfg);
    const std::string body = random_bytes(200'000, 3);
    const Result a = one(delivery(body));
    EXPECT_EQ(a.kind, HttpOutcome::Kind::delivered) << a.error;
    const Result b = one(delivery("second"));
    EXPECT_EQ(b.kind, HttpOutcome::Kind::delivered) << b.error;
    EXPECT_TRUE(b.reused);
    const auto got = server.requests();
    ASSERT_EQ(got.size(), 2u);
    EXPECT_TRUE(got[0].body == body);
    EXPECT_EQ(got[1].body, "second");
    EXPECT_EQ(server.accepted(), 1);
    EXPECT_EQ(_sink->stats().tls_handshakes, 1u);
}

TEST_F(HttpSinkTest, RefusesACertificateForAnotherName) {
    Pki pki;
    auto ctx = pki.server("other.test");
    TestServer server([](const Received&) { return status(200); }, ctx.get());
    auto cfg = plain(server.port(), "localhost");
    cfg.tls = true;
    cfg.ca = pki.ca_file;
    make(cfg);
    const Result r = one(delivery());
    EXPECT_EQ(r.kind, HttpOutcome::Kind::retry);
    EXPECT_EQ(r.error, "tls: the server's certificate is not for localhost (wrong host name)");
    EXPECT_TRUE(server.requests().empty());
    EXPECT_EQ(_sink->stats().tls_failures, 1u);
}

TEST_F(HttpSinkTest, RefusesACertificateFromAnUntrustedCa) {
    Pki pki;
    auto ctx = pki.server("localhost");
    TestServer server([](const Received&) { return status(200); }, ctx.get());
    auto cfg = plain(server.port(), "localhost");
    cfg.tls = true;
    cfg.ca = pki.other_ca_file;
    make(cfg);
    const Result r = one(delivery());
    EXPECT_EQ(r.kind, HttpOutcome::Kind::retry);
    EXPECT_EQ(r.error.find("tls: the server's certificate is not trusted ("), 0u) << r.error;
    EXPECT_TRUE(server.requests().empty());
}

TEST_F(HttpSinkTest, AnUnreadableCaFileFailsInit) {
    auto cfg = plain(443, "localhost");
    cfg.tls = true;
    cfg.ca = "/nonexistent/ca.pem";
    HttpSink sink(_ring, 0, "app", cfg);
    EXPECT_EQ(sink.init(0),
              "sinks.app.http.ca: /nonexistent/ca.pem: cannot be read or holds no PEM certificate");
}
