// The webhook path without a ring: every answer of SPEC section 4 that is about a webhook,
// driven from a parsed head and body bytes, with the clock set by the test and a fake spool
// hand-off that holds records until the test says how their write ended. (Malformed HTTP, 400
// and 431, is the HTTP layer's: tests/http and the integration tests.)
#include "portcullis/ingest/webhook.hh"

#include "../snapshot_from_yaml.hh"
#include "portcullis/base/time.hh"
#include "portcullis/queue/record.hh"

#include <gtest/gtest.h>
#include <openssl/hmac.h>

#include <cstdlib>
#include <memory>
#include <netinet/in.h>
#include <string>
#include <vector>

namespace {

using portcullis::base::PeerAddress;
using portcullis::ingest::Answer;
using portcullis::ingest::Clock;
using portcullis::ingest::Ingest;
using portcullis::ingest::Next;
using portcullis::ingest::Tables;
using portcullis::ingest::Webhook;
using ingest_outcome = portcullis::ingest::EnqueueOutcome;
namespace config = portcullis::config;
namespace http = portcullis::http;
namespace queue = portcullis::queue;
namespace admit = portcullis::admit;
namespace base = portcullis::base;
namespace ingest = portcullis::ingest;

constexpr const char* secret = "ingest-test-secret";

constexpr const char* yaml = R"(server:
  deny: ["203.0.113.0/24"]
  limits: {body_bytes: 2048}
routes:
  gh: {path: /gh, verify: {scheme: github, secrets: [{env: INGEST_TEST_SECRET}]}}
  open: {path: /open, verify: {scheme: none}}
  office: {path: /office, verify: {scheme: none}, allow: ["10.1.0.0/16"]}
  limited: {path: /limited, verify: {scheme: none}, rate_limit: {per_ip: 2/min, burst: 2}}
  once: {path: /once, verify: {scheme: none}, dedup: {key: "header:X-Id", window: 1h}}
  ordered: {path: /ordered, verify: {scheme: none}, ordering: {key: "header:X-Key", timestamp: "json:/ts"}}
  kept: {path: "/kept/{name}", verify: {scheme: none}, keep_headers: [Authorization, Cookie], dedup: {key: "json:/delivery", window: 1h}}
  bypath: {path: "/bypath/{id}", verify: {scheme: none}, dedup: {key: "path:id", window: 1h}}
)";

// The spool hand-off: takes records (or refuses them when told to) and keeps what it was given.
struct FakeHost final : portcullis::ingest::Host {
    struct Enqueued {
        std::vector<uint8_t> record;
        uint64_t cookie;
        config::Durability durability;
    };
    bool refuse = false;
    std::vector<Enqueued> enqueued;
    std::vector<std::string> lines;
    std::vector<base::Event> events;

    bool enqueue(std::span<const uint8_t> record, uint64_t cookie,
                 config::Durability durability) override {
        if (refuse) {
            return false;
        }
        enqueued.push_back({{record.begin(), record.end()}, cookie, durability});
        return true;
    }
    void log(base::LogLine& line) override { lines.emplace_back(line.finish()); }
    void event(const base::Event& e) override { events.push_back(e); }
};

PeerAddress address(const char* text) {
    auto a = PeerAddress::parse(text);
    EXPECT_TRUE(a.has_value()) << text;
    return a.value_or(PeerAddress{});
}

std::string hmac_hex(std::string_view body) {
    uint8_t mac[32];
    unsigned len = 0;
    HMAC(EVP_sha256(), secret, std::strlen(secret), reinterpret_cast<const uint8_t*>(body.data()),
         body.size(), mac, &len);
    static constexpr char digits[] = "0123456789abcdef";
    std::string hex;
    for (unsigned i = 0; i < len; ++i) {
        hex += digits[mac[i] >> 4];
        hex += digits[mac[i] & 15];
    }
    return hex;
}

class IngestTest : public ::testing::Test {
protected:
    void SetUp() override {
        setenv("INGEST_TEST_SECRET", secret, 1);
        snap = snapshot_from_yaml(yaml);
        ASSERT_NE(snap, nullptr);
        clock.unix_ns = 1'760'000'000 * base::ns_per_s;
        clock.mono_ns = 1'000 * base::ns_per_s;
        ingest = std::make_unique<Ingest>(*snap, Tables{&dedup, &ordering, &limiter, 0x5eed}, clock,
                                          host, pool, 3);
    }

    // Sends one request through the path the way a connection does: head, the body in pieces
    // of `piece` bytes, end of body. Returns the last step.
    Next send(Webhook& w, const std::string& head_text, std::string_view body = {},
              const char* peer = "192.0.2.10", bool draining = false, size_t piece = 100) {
        w.peer = address(peer);
        w.cookie = ++cookies;
        head_bytes = head_text;
        http::Limits limits;
        headers.resize(64);
        http::RequestHead head;
        http::HeadResult r = http::parse_head(head_bytes, 0, limits, headers, head);
        EXPECT_EQ(r.error, http::Error::none) << head_text;
        EXPECT_EQ(r.consumed, head_bytes.size()) << head_text;
        Next next = ingest->head(w, head, draining);
        while (next == Next::read_body && !body.empty()) {
            size_t n = body.size() < piece ? body.size() : piece;
            next = ingest->body(w, body.substr(0, n));
            body.remove_prefix(n);
        }
        if (next == Next::read_body) {
            next = ingest->end_of_body(w);
        }
        return next;
    }

    static std::string post(const std::string& path, std::string_view body,
                            const std::string& extra = {}) {
        return "POST " + path +
               " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
               extra + "\r\n";
    }
    static std::string github(std::string_view body, const std::string& signature) {
        return post("/gh", body,
                    "X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=" + signature + "\r\n");
    }

    // The answer's fields, as one string to compare.
    static std::string shown(const Answer& a) {
        return std::to_string(a.status) + " " + std::string(a.body) +
               (a.extra_headers.empty() ? "" : " | " + std::string(a.extra_headers)) +
               (a.close ? " [close]" : "");
    }

    // The id a 200/202 answer names.
    static std::string answered_id(const Answer& a) {
        std::string_view body = a.body;
        size_t at = body.find(R"("id":")");
        EXPECT_NE(at, std::string_view::npos) << body;
        return std::string(body.substr(at + 6, queue::job_id_text_size));
    }

    static std::string record_id(const FakeHost::Enqueued& e) {
        queue::JobRecord rec;
        size_t size = 0;
        EXPECT_EQ(queue::decode_record(e.record, rec, size), queue::DecodeStatus::ok);
        char text[queue::job_id_text_size];
        rec.id.format(text);
        return {text, sizeof text};
    }

    std::unique_ptr<config::Snapshot> snap;
    Clock clock;
    FakeHost host;
    base::BufferPool pool;
    queue::DedupTable dedup{1024};
    queue::OrderingTable ordering{1024};
    admit::RateLimiter limiter{1024};
    std::unique_ptr<Ingest> ingest;
    std::string head_bytes;
    std::vector<http::Header> headers;
    uint64_t cookies = 0;
};

TEST_F(IngestTest, AcceptedAnsweredOnlyOnceDurable) {
    Webhook w;
    const std::string body = R"({"action":"opened"})";
    ASSERT_EQ(send(w, github(body, hmac_hex(body)), body), Next::spooling);
    ASSERT_EQ(host.enqueued.size(), 1u);
    EXPECT_EQ(host.enqueued[0].cookie, w.cookie);
    EXPECT_EQ(host.enqueued[0].durability, config::Durability::fsync);
    EXPECT_EQ(w.answer.status, 0) << "no answer before the spool reports";

    queue::JobRecord rec;
    size_t size = 0;
    ASSERT_EQ(queue::decode_record(host.enqueued[0].record, rec, size), queue::DecodeStatus::ok);
    EXPECT_EQ(rec.route, "gh");
    EXPECT_EQ(rec.body, body);
    EXPECT_EQ(rec.received_at_ns, clock.unix_ns) << "the injected clock stamps the job";

    ingest->spooled(w, true);
    EXPECT_EQ(w.answer.status, 202);
    EXPECT_EQ(w.answer.body,
              R"({"id":")" + record_id(host.enqueued[0]) + R"(","status":"queued"})");
    EXPECT_FALSE(w.answer.close);
    EXPECT_TRUE(w.queued);
    EXPECT_EQ(ingest->stats().jobs_queued.load(), 1u);
    ingest->release(w);
}

TEST_F(IngestTest, FailedWriteAnswers503WithRetryAfter) {
    Webhook w;
    ASSERT_EQ(send(w, post("/open", "{}"), "{}"), Next::spooling);
    ingest->spooled(w, false);
    EXPECT_EQ(shown(w.answer), R"(503 {"error":"unavailable"} | Retry-After: 1)"
                               "\r\n");
    EXPECT_FALSE(w.queued);
    EXPECT_EQ(ingest->stats().jobs_queued.load(), 0u);
    ingest->release(w);
}

TEST_F(IngestTest, SpoolThatRefusesAnswers503AtOnce) {
    host.refuse = true;
    Webhook w;
    ASSERT_EQ(send(w, post("/open", "{}"), "{}"), Next::answer);
    EXPECT_EQ(shown(w.answer), R"(503 {"error":"unavailable"} | Retry-After: 1)"
                               "\r\n");
    ingest->release(w);
}

TEST_F(IngestTest, DrainingTakesNoNewWork) {
    Webhook w;
    ASSERT_EQ(send(w, post("/open", "{}"), "{}", "192.0.2.10", true), Next::answer);
    EXPECT_EQ(shown(w.answer), R"(503 {"error":"unavailable"} | Retry-After: 1)"
                               "\r\n [close]");
    EXPECT_TRUE(host.enqueued.empty());
    ingest->release(w);
}

TEST_F(IngestTest, Healthz) {
    Webhook w;
    ASSERT_EQ(send(w, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), Next::answer);
    EXPECT_EQ(shown(w.answer), "200 ok");
    EXPECT_EQ(w.answer.content_type, "text/plain");
    ingest->release(w);

    // HEAD gets the same answer; the HTTP layer leaves its body out.
    ASSERT_EQ(send(w, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), Next::answer);
    EXPECT_EQ(shown(w.answer), "200 ok");
    ingest->release(w);

    ASSERT_EQ(send(w, post("/healthz", "x")), Next::answer);
    EXPECT_EQ(shown(w.answer), R"(405 {"error":"method_not_allowed"} | Allow: GET, HEAD)"
                               "\r\n [close]")
        << "the unread body closes the connection";
    ingest->release(w);
}

TEST_F(IngestTest, UnknownPathAndWrongMethod) {
    Webhook w;
    ASSERT_EQ(send(w, post("/v1/lease", "")), Next::answer);
    EXPECT_EQ(shown(w.answer), R"(404 {"error":"not_found"})");
    ingest->release(w);

    ASSERT_EQ(send(w, "GET /open HTTP/1.1\r\nHost: x\r\n\r\n"), Next::answer);
    EXPECT_EQ(w.answer.status, 405);
    EXPECT_NE(w.answer.extra_headers.find("Allow: POST"), std::string_view::npos)
        << w.answer.extra_headers;
    ingest->release(w);
    EXPECT_TRUE(host.enqueued.empty());
}

TEST_F(IngestTest, ForgedSignatureIsRefusedAndLoggedWithoutSecrets) {
    Webhook w;
    const std::string body = R"({"secret_in_body":"s3"})";
    const std::string forged = hmac_hex("something else");
    ASSERT_EQ(send(w, github(body, forged), body), Next::answer);
    EXPECT_EQ(shown(w.answer), R"(401 {"error":"unauthorized"})");
    EXPECT_TRUE(host.enqueued.empty());
    EXPECT_EQ(ingest->stats().rejected[base::index(base::RejectReason::signature_mismatch)].load(),
              1u);
    ASSERT_EQ(host.lines.size(), 1u);
    const std::string& line = host.lines[0];
    EXPECT_NE(line.find(R"("msg":"webhook rejected")"), std::string::npos) << line;
    EXPECT_NE(line.find(R"("route":"gh")"), std::string::npos) << line;
    EXPECT_EQ(line.find("secret_in_body"), std::string::npos) << "no body in logs: " << line;
    EXPECT_EQ(line.find(forged), std::string::npos) << "no whole signature in logs: " << line;
    EXPECT_EQ(line.find(secret), std::string::npos) << line;
    ingest->release(w);
}

TEST_F(IngestTest, MissingSignatureIsRefusedAtTheHead) {
    Webhook w;
    w.peer = address("192.0.2.10");
    head_bytes = post("/gh", "{}");
    http::Limits limits;
    headers.resize(64);
    http::RequestHead head;
    ASSERT_EQ(http::parse_head(head_bytes, 0, limits, headers, head).error, http::Error::none);
    ASSERT_EQ(ingest->head(w, head, false), Next::answer) << "refused before any body byte";
    EXPECT_EQ(shown(w.answer), R"(401 {"error":"unauthorized"} [close])");
    ingest->release(w);
}

TEST_F(IngestTest, AllowAndDenyLists) {
    Webhook w;
    ASSERT_EQ(send(w, post("/office", "{}"), "{}", "10.1.2.3"), Next::spooling);
    ingest->spooled(w, true);
    ingest->release(w);

    ASSERT_EQ(send(w, post("/office", "{}"), "{}", "192.0.2.1"), Next::answer);
    EXPECT_EQ(shown(w.answer), R"(403 {"error":"forbidden"} [close])");
    ingest->release(w);

    // server.deny is checked before any route is looked up (unknown paths included); only
    // /healthz, for load balancers, is answered before it.
    for (const char* path : {"/open", "/nowhere"}) {
        ASSERT_EQ(send(w, post(path, ""), {}, "203.0.113.9"), Next::answer) << path;
        EXPECT_EQ(shown(w.answer), R"(403 {"error":"forbidden"})") << path;
        ingest->release(w);
    }
    ASSERT_EQ(send(w, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", {}, "203.0.113.9"), Next::answer);
    EXPECT_EQ(shown(w.answer), "200 ok");
    ingest->release(w);
    EXPECT_EQ(host.enqueued.size(), 1u);
}

TEST_F(IngestTest, RateLimitAnswers429WithRetryAfterUntilTheClockMoves) {
    Webhook w;
    for (int i = 0; i < 2; ++i) {
        ASSERT_EQ(send(w, post("/limited", "{}"), "{}"), Next::spooling) << i;
        ingest->spooled(w, true);
        ingest->release(w);
    }
    ASSERT_EQ(send(w, post("/limited", "{}"), "{}"), Next::answer);
    EXPECT_EQ(w.answer.status, 429);
    EXPECT_EQ(w.answer.body, R"({"error":"rate_limited"})");
    EXPECT_EQ(w.answer.extra_headers, "Retry-After: 30\r\n") << "2/min: one every 30 s";
    ingest->release(w);

    // Another client has its own bucket; the same one is allowed again once the clock moves.
    ASSERT_EQ(send(w, post("/limited", "{}"), "{}", "192.0.2.11"), Next::spooling);
    ingest->spooled(w, true);
    ingest->release(w);
    clock.mono_ns += 30 * base::ns_per_s;
    ASSERT_EQ(send(w, post("/limited", "{}"), "{}"), Next::spooling);
    ingest->spooled(w, true);
    ingest->release(w);
}

TEST_F(IngestTest, BodyOverTheLimit) {
    Webhook w;
    const std::string big(3000, 'x');
    // Declared: refused from Content-Length, before any of the body is read.
    ASSERT_EQ(send(w, post("/open", big)), Next::answer);
    EXPECT_EQ(shown(w.answer), R"(413 {"error":"body_too_large"} [close])");
    ingest->release(w);

    // Chunked: refused when the bytes pass the limit.
    w.peer = address("192.0.2.10");
    head_bytes = "POST /open HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    http::Limits limits;
    headers.resize(64);
    http::RequestHead head;
    ASSERT_EQ(http::parse_head(head_bytes, 0, limits, headers, head).error, http::Error::none);
    ASSERT_EQ(ingest->head(w, head, false), Next::read_body);
    EXPECT_EQ(ingest->body(w, std::string_view(big).substr(0, 2000)), Next::read_body);
    ASSERT_EQ(ingest->body(w, std::string_view(big).substr(0, 100)), Next::answer);
    EXPECT_EQ(shown(w.answer), R"(413 {"error":"body_too_large"} [close])");
    ingest->release(w);
    EXPECT_TRUE(host.enqueued.empty());
}

TEST_F(IngestTest, DedupDuplicateConflictAndInProgress) {
    Webhook first, second;
    ASSERT_EQ(send(first, post("/once", "{}", "X-Id: d1\r\n"), "{}"), Next::spooling);
    // While the first copy is being written its outcome is unknown.
    ASSERT_EQ(send(second, post("/once", "{}", "X-Id: d1\r\n"), "{}"), Next::answer);
    EXPECT_EQ(shown(second.answer), R"(503 {"error":"in_progress"} | Retry-After: 1)"
                                    "\r\n");
    ingest->release(second);

    ingest->spooled(first, true);
    ASSERT_EQ(first.answer.status, 202);
    const std::string id = answered_id(first.answer);
    ingest->release(first);

    ASSERT_EQ(send(second, post("/once", "{}", "X-Id: d1\r\n"), "{}"), Next::answer);
    EXPECT_EQ(shown(second.answer), R"(200 {"id":")" + id + R"(","status":"duplicate"})");
    ingest->release(second);

    ASSERT_EQ(send(second, post("/once", "[]", "X-Id: d1\r\n"), "[]"), Next::answer);
    EXPECT_EQ(shown(second.answer), R"(409 {"error":"conflict"})");
    ingest->release(second);
    EXPECT_EQ(host.enqueued.size(), 1u);
    EXPECT_EQ(ingest->stats().duplicates.load(), 1u);
}

TEST_F(IngestTest, DedupKeyIsFreedWhenTheWriteFails) {
    Webhook w;
    ASSERT_EQ(send(w, post("/once", "{}", "X-Id: d2\r\n"), "{}"), Next::spooling);
    ingest->spooled(w, false);
    ingest->release(w);
    // The provider's retry is a first copy again, not a duplicate of a job that never was.
    ASSERT_EQ(send(w, post("/once", "{}", "X-Id: d2\r\n"), "{}"), Next::spooling);
    ingest->spooled(w, true);
    EXPECT_EQ(w.answer.status, 202);
    ingest->release(w);
}

TEST_F(IngestTest, DedupClaimGivenBackWhenTheExchangeEndsUnwritten) {
    Webhook w;
    ASSERT_EQ(send(w, post("/once", "{}", "X-Id: d3\r\n"), "{}"), Next::spooling);
    // The connection went and the spool said nothing yet: release gives the claim back.
    ingest->release(w);
    ASSERT_EQ(send(w, post("/once", "{}", "X-Id: d3\r\n"), "{}"), Next::spooling);
    ingest->release(w);
}

TEST_F(IngestTest, OrderingRefusesStaleEvents) {
    Webhook w;
    ASSERT_EQ(send(w, post("/ordered", R"({"ts":20})", "X-Key: k\r\n"), R"({"ts":20})"),
              Next::spooling);
    ingest->spooled(w, true);
    ingest->release(w);
    ASSERT_EQ(send(w, post("/ordered", R"({"ts":10})", "X-Key: k\r\n"), R"({"ts":10})"),
              Next::answer);
    EXPECT_EQ(shown(w.answer), R"(409 {"error":"stale"})");
    ingest->release(w);
    ASSERT_EQ(send(w, post("/ordered", R"({"ts":30})", "X-Key: k\r\n"), R"({"ts":30})"),
              Next::spooling);
    ingest->spooled(w, true);
    ingest->release(w);
}

TEST_F(IngestTest, RecoveredJobsAreRememberedForDedup) {
    Webhook w;
    ASSERT_EQ(send(w, post("/once", "{}", "X-Id: d4\r\n"), "{}"), Next::spooling);
    ingest->spooled(w, true);
    const std::string id = answered_id(w.answer);
    ingest->release(w);
    const std::vector<uint8_t> record = host.enqueued[0].record;

    // A restart: fresh tables, the spool's record remembered at start-up.
    queue::DedupTable fresh{1024};
    queue::OrderingTable fresh_ordering{1024};
    Ingest restarted(*snap, Tables{&fresh, &fresh_ordering, &limiter, 0x5eed}, clock, host, pool,
                     3);
    queue::JobRecord rec;
    size_t size = 0;
    ASSERT_EQ(queue::decode_record(record, rec, size), queue::DecodeStatus::ok);
    restarted.remember(rec);
    ingest.reset();
    w.peer = address("192.0.2.10");
    head_bytes = post("/once", "{}", "X-Id: d4\r\n");
    http::Limits limits;
    headers.resize(64);
    http::RequestHead head;
    ASSERT_EQ(http::parse_head(head_bytes, 0, limits, headers, head).error, http::Error::none);
    ASSERT_EQ(restarted.head(w, head, false), Next::read_body);
    ASSERT_EQ(restarted.body(w, "{}"), Next::read_body);
    ASSERT_EQ(restarted.end_of_body(w), Next::answer);
    EXPECT_EQ(shown(w.answer), R"(200 {"id":")" + id + R"(","status":"duplicate"})");
    restarted.release(w);
}

TEST_F(IngestTest, BodyArrivingInAnyPiecesVerifiesTheSame) {
    const std::string body(1500, 'b');
    for (size_t piece : {1u, 7u, 512u, 1500u}) {
        Webhook w;
        ASSERT_EQ(send(w, github(body, hmac_hex(body)), body, "192.0.2.10", false, piece),
                  Next::spooling)
            << piece;
        ingest->spooled(w, true);
        ingest->release(w);
    }
}

// A chunked body has no declared length: its record starts at 16 KiB and grows as the body
// arrives. Every byte ends up in the record, in order, and the signature over them holds.
TEST_F(IngestTest, ChunkedBodyGrowsTheRecordAndKeepsEveryByte) {
    auto roomy = snapshot_from_yaml("server:\n  limits: {body_bytes: 1MiB}\nroutes:\n"
                                    "  gh: {path: /gh, verify: {scheme: github, secrets: "
                                    "[{env: INGEST_TEST_SECRET}]}}\n");
    ASSERT_NE(roomy, nullptr);
    Ingest big(*roomy, Tables{&dedup, &ordering, &limiter, 0x5eed}, clock, host, pool, 3);
    std::string body;
    for (int i = 0; body.size() < 100'000; ++i) {
        body += "{\"n\":" + std::to_string(i) + "},";
    }
    Webhook w;
    w.peer = address("192.0.2.10");
    head_bytes = "POST /gh HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 "X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=" +
                 hmac_hex(body) + "\r\n\r\n";
    http::Limits limits;
    headers.resize(64);
    http::RequestHead head;
    ASSERT_EQ(http::parse_head(head_bytes, 0, limits, headers, head).error, http::Error::none);
    ASSERT_EQ(big.head(w, head, false), Next::read_body);
    for (size_t at = 0; at < body.size(); at += 4096) {
        ASSERT_EQ(big.body(w, std::string_view(body).substr(at, 4096)), Next::read_body) << at;
    }
    ASSERT_EQ(big.end_of_body(w), Next::spooling);
    ASSERT_EQ(host.enqueued.size(), 1u);
    queue::JobRecord rec;
    size_t size = 0;
    ASSERT_EQ(queue::decode_record(host.enqueued[0].record, rec, size), queue::DecodeStatus::ok);
    EXPECT_EQ(rec.body, body);
    big.spooled(w, true);
    EXPECT_EQ(w.answer.status, 202);
    big.release(w);
}

// ---- jobs enqueued through the control plane (Ingest::submit) --------------------------------

class SubmitTest : public IngestTest {
protected:
    // Submits a job as a shard does for the control plane, with the client 127.0.0.1.
    Next submit(Webhook& w, std::string_view route, std::string_view body,
                std::vector<http::Header> fields = {}, bool draining = false,
                const char* peer = "127.0.0.1") {
        w.peer = address(peer);
        w.cookie = ++cookies;
        submitted_headers = std::move(fields);
        return ingest->submit(w, route, submitted_headers, body, "ops", draining);
    }
    queue::JobRecord decoded(size_t i) {
        queue::JobRecord rec;
        size_t size = 0;
        EXPECT_EQ(queue::decode_record(host.enqueued.at(i).record, rec, size),
                  queue::DecodeStatus::ok);
        return rec;
    }
    uint64_t enqueued(std::string_view route, ingest_outcome o) {
        for (const config::Route& r : snap->routes()) {
            if (r.config->name == route) {
                return ingest->route_stats().find(r.slot)->enqueued[static_cast<size_t>(o)].load();
            }
        }
        return ingest->unmatched_stats().enqueued[static_cast<size_t>(o)].load();
    }
    std::vector<http::Header> submitted_headers;
};

// A route that verifies signatures takes a job without one: the token is the credential. The
// record names the token and the control-plane client; the answer comes once durable.
TEST_F(SubmitTest, SkipsVerificationAndRecordsTheToken) {
    Webhook w;
    const std::string body = "\x00\xff binary \r\n";
    ASSERT_EQ(submit(w, "gh", body, {{"Host", "admin"}, {"X-Trigger", "manual"}}), Next::spooling);
    ASSERT_EQ(host.enqueued.size(), 1u);
    EXPECT_EQ(host.enqueued[0].cookie, w.cookie);
    EXPECT_EQ(w.answer.status, 0) << "no answer before the spool reports";
    const queue::JobRecord rec = decoded(0);
    EXPECT_EQ(rec.route, "gh");
    EXPECT_EQ(rec.body, body);
    EXPECT_EQ(rec.source, "ops");
    char ip[INET6_ADDRSTRLEN];
    EXPECT_EQ(rec.peer.format_ip(ip), std::string_view("127.0.0.1"));
    EXPECT_EQ(rec.received_at_ns, clock.unix_ns);

    ingest->spooled(w, true);
    EXPECT_EQ(w.answer.status, 202);
    EXPECT_EQ(w.answer.body,
              R"({"id":")" + record_id(host.enqueued[0]) + R"(","status":"queued"})");
    EXPECT_EQ(ingest->enqueue_answered(w), ingest_outcome::queued);
    EXPECT_EQ(enqueued("gh", ingest_outcome::queued), 1u);
    // Not a public-plane request: no answer counted there, no webhook.received.
    for (const auto& a : ingest->route_stats().find(0)->answered) {
        EXPECT_EQ(a.load(), 0u);
    }
    ASSERT_EQ(host.events.size(), 2u);
    EXPECT_EQ(host.events[0].type, base::EventType::job_enqueued);
    EXPECT_EQ(host.events[0].text_view(), "ops");
    EXPECT_EQ(host.events[0].status, 202);
    EXPECT_EQ(host.events[0].number, static_cast<int64_t>(body.size()));
    EXPECT_EQ(host.events[0].id_view(), record_id(host.enqueued[0]));
    EXPECT_EQ(host.events[1].type, base::EventType::job_queued);
    EXPECT_EQ(host.events[1].shard, 3);
    ingest->release(w);
    EXPECT_TRUE(w.source.empty()) << "a released webhook is a public one again";
}

// The token is never stored, nor any other credential, even where keep_headers keeps them for
// webhooks; hop-by-hop fields go as for any webhook.
TEST_F(SubmitTest, StoresNoCredentialWhateverKeepHeadersSays) {
    Webhook w;
    ASSERT_EQ(submit(w, "kept", "{}",
                     {{"Authorization", "Bearer pct_secret"},
                      {"Cookie", "s=1"},
                      {"Connection", "keep-alive"},
                      {"Content-Type", "application/json"}}),
              Next::spooling);
    std::vector<std::string> stored;
    decoded(0).for_each_header([&](std::string_view n, std::string_view v) {
        stored.push_back(std::string(n) + "=" + std::string(v));
    });
    EXPECT_EQ(stored, std::vector<std::string>{"Content-Type=application/json"});
    ingest->spooled(w, true);
    ingest->release(w);
}

// allow, deny and rate limits guard the public plane; a job from inside passes them all.
TEST_F(SubmitTest, NoAdmissionByAddressOrRate) {
    for (const char* route : {"office", "limited", "limited", "limited", "open"}) {
        Webhook w;
        ASSERT_EQ(submit(w, route, "{}", {}, false, "203.0.113.9"), Next::spooling) << route;
        ingest->spooled(w, true);
        ingest->release(w);
    }
    EXPECT_EQ(host.enqueued.size(), 5u);
}

// The route's dedup from the JSON body: a second copy is a duplicate of the first job (the
// answer and the event name it), another body under the key a conflict, logged with the token
// and never counted as a public-plane rejection. Public webhooks meet the same keys.
TEST_F(SubmitTest, DedupAppliesAcrossBothPlanes) {
    Webhook first, second;
    ASSERT_EQ(submit(first, "kept", R"({"delivery":"k1"})"), Next::spooling);
    ASSERT_EQ(submit(second, "kept", R"({"delivery":"k1"})"), Next::answer);
    EXPECT_EQ(shown(second.answer), R"(503 {"error":"in_progress"} | Retry-After: 1)"
                                    "\r\n");
    EXPECT_EQ(ingest->enqueue_answered(second), ingest_outcome::in_progress);
    ingest->release(second);
    ingest->spooled(first, true);
    EXPECT_EQ(ingest->enqueue_answered(first), ingest_outcome::queued);
    const std::string id = answered_id(first.answer);
    ingest->release(first);

    host.events.clear();
    ASSERT_EQ(submit(second, "kept", R"({"delivery":"k1"})"), Next::answer);
    EXPECT_EQ(shown(second.answer), R"(200 {"id":")" + id + R"(","status":"duplicate"})");
    EXPECT_EQ(ingest->enqueue_answered(second), ingest_outcome::duplicate);
    ASSERT_EQ(host.events.size(), 1u);
    EXPECT_EQ(host.events[0].type, base::EventType::job_enqueued);
    EXPECT_EQ(host.events[0].status, 200);
    EXPECT_EQ(host.events[0].id_view(), id) << "the event names the job it is a copy of";
    ingest->release(second);

    host.events.clear();
    ASSERT_EQ(submit(second, "kept", R"({"delivery":"k1","other":1})"), Next::answer);
    EXPECT_EQ(shown(second.answer), R"(409 {"error":"conflict"})");
    EXPECT_EQ(ingest->enqueue_answered(second), ingest_outcome::conflict);
    EXPECT_TRUE(host.events.empty()) << "no webhook.rejected for a job from inside";
    ASSERT_FALSE(host.lines.empty());
    EXPECT_NE(host.lines.back().find(R"("msg":"enqueue refused")"), std::string::npos)
        << host.lines.back();
    EXPECT_NE(host.lines.back().find(R"("token":"ops")"), std::string::npos) << host.lines.back();
    EXPECT_NE(host.lines.back().find(R"("reason":"conflict")"), std::string::npos);
    ingest->release(second);
    for (const auto& r : ingest->route_stats().find(0)->rejected) {
        EXPECT_EQ(r.load(), 0u);
    }
    EXPECT_EQ(ingest->stats().rejected[base::index(base::RejectReason::conflict)].load(), 0u);

    // A webhook of the public plane with the same delivery is a duplicate of the job too.
    Webhook hook;
    ASSERT_EQ(send(hook, post("/kept/x", R"({"delivery":"k1"})"), R"({"delivery":"k1"})"),
              Next::answer);
    EXPECT_EQ(shown(hook.answer), R"(200 {"id":")" + id + R"(","status":"duplicate"})");
    ingest->release(hook);
    EXPECT_EQ(enqueued("kept", ingest_outcome::queued), 1u);
    EXPECT_EQ(enqueued("kept", ingest_outcome::duplicate), 1u);
    EXPECT_EQ(enqueued("kept", ingest_outcome::conflict), 1u);
    EXPECT_EQ(enqueued("kept", ingest_outcome::in_progress), 1u);
}

// The ordering key from a header given with the job, its timestamp from the JSON body.
TEST_F(SubmitTest, OrderingFromHeadersAndBody) {
    Webhook w;
    ASSERT_EQ(submit(w, "ordered", R"({"ts":20})", {{"X-Key", "k"}}), Next::spooling);
    ingest->spooled(w, true);
    ingest->release(w);
    ASSERT_EQ(submit(w, "ordered", R"({"ts":10})", {{"X-Key", "k"}}), Next::answer);
    EXPECT_EQ(shown(w.answer), R"(409 {"error":"stale"})");
    EXPECT_EQ(ingest->enqueue_answered(w), ingest_outcome::stale);
    ingest->release(w);
    // Without the header the job has no ordering key: accepted, and counted as unkeyed.
    ASSERT_EQ(submit(w, "ordered", R"({"ts":5})"), Next::spooling);
    EXPECT_EQ(ingest->stats().ordering_unkeyed.load(), 1u);
    ingest->spooled(w, true);
    ingest->release(w);
}

// A path field cannot be read (the request was not made to the route's path): the job is
// accepted without a dedup key, as a webhook without one is.
TEST_F(SubmitTest, PathKeysCannotBeReadSoTheJobIsUnkeyed) {
    for (int i = 0; i < 2; ++i) {
        Webhook w;
        ASSERT_EQ(submit(w, "bypath", "{}"), Next::spooling) << i;
        EXPECT_FALSE(decoded(host.enqueued.size() - 1).keys.has_dedup);
        ingest->spooled(w, true);
        ingest->release(w);
    }
    EXPECT_EQ(ingest->stats().dedup_unkeyed.load(), 2u);
}

TEST_F(SubmitTest, RefusalsAndTheirOutcomes) {
    Webhook w;
    ASSERT_EQ(submit(w, "nosuchroute", "{}"), Next::answer);
    EXPECT_EQ(shown(w.answer), R"(404 {"error":"not_found"})");
    EXPECT_EQ(ingest->enqueue_answered(w), ingest_outcome::refused);
    EXPECT_EQ(enqueued("nosuchroute", ingest_outcome::refused), 1u) << "under no route";
    ingest->release(w);

    ASSERT_EQ(submit(w, "open", "{}", {}, true), Next::answer);
    EXPECT_EQ(shown(w.answer), R"(503 {"error":"unavailable"} | Retry-After: 1)"
                               "\r\n");
    EXPECT_EQ(ingest->enqueue_answered(w), ingest_outcome::unavailable);
    ingest->release(w);

    ASSERT_EQ(submit(w, "open", std::string(2049, 'x')), Next::answer);
    EXPECT_EQ(shown(w.answer), R"(413 {"error":"body_too_large"})");
    EXPECT_EQ(ingest->enqueue_answered(w), ingest_outcome::refused);
    ingest->release(w);
    ASSERT_EQ(submit(w, "open", std::string(2048, 'x')), Next::spooling) << "at the limit";
    ingest->spooled(w, false);
    EXPECT_EQ(shown(w.answer), R"(503 {"error":"unavailable"} | Retry-After: 1)"
                               "\r\n");
    EXPECT_EQ(ingest->enqueue_answered(w), ingest_outcome::unavailable);
    ingest->release(w);

    host.refuse = true;
    ASSERT_EQ(submit(w, "open", "{}"), Next::answer);
    EXPECT_EQ(w.answer.status, 503);
    EXPECT_EQ(ingest->enqueue_answered(w), ingest_outcome::unavailable);
    ingest->release(w);
    EXPECT_EQ(enqueued("open", ingest_outcome::unavailable), 3u);
    EXPECT_EQ(enqueued("open", ingest_outcome::refused), 1u);
}

} // namespace

// A reload between requests: a request in progress finishes under the snapshot it started with
// (its route, its body limit), the next one gets the new snapshot, and the old snapshot is held
// exactly as long as a request uses it. A route that keeps its name keeps its counters.
TEST_F(IngestTest, ReloadKeepsRequestsInProgressOnTheirSnapshot) {
    config::RouteSlots slots;
    snap->number(1, slots);
    auto next = snapshot_from_yaml(R"(routes:
  new: {path: /new, verify: {scheme: none}}
  open: {path: /open, verify: {scheme: none}}
)");
    ASSERT_NE(next, nullptr);
    ASSERT_EQ(next->fits(slots), "");
    next->number(2, slots);
    EXPECT_EQ(next->routes()[1].slot, snap->routes()[1].slot) << "open keeps its slot";
    EXPECT_EQ(next->routes()[0].slot, snap->routes().size()) << "new gets the next one";

    // Started under generation 1, body still to come.
    Webhook slow;
    slow.peer = address("192.0.2.10");
    head_bytes =
        post("/gh", "{}",
             "X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=" + hmac_hex("{}") + "\r\n");
    http::Limits limits;
    headers.resize(64);
    http::RequestHead head;
    ASSERT_EQ(http::parse_head(head_bytes, 0, limits, headers, head).error, http::Error::none);
    ASSERT_EQ(ingest->head(slow, head, false), Next::read_body);

    ingest->use(*next);
    EXPECT_EQ(ingest->oldest_generation(), 1u) << "the slow request holds generation 1";
    Webhook w;
    EXPECT_EQ(send(w, post("/gh", "{}"), "{}"), Next::answer);
    EXPECT_EQ(w.answer.status, 404) << "new requests get the new routes";
    ingest->release(w);
    Webhook fresh;
    EXPECT_EQ(send(fresh, post("/new", "{}"), "{}"), Next::spooling);
    ingest->spooled(fresh, true);
    EXPECT_EQ(fresh.answer.status, 202);
    ingest->answered(fresh, 202);
    ingest->release(fresh);

    // The slow one completes under its route of generation 1.
    EXPECT_EQ(ingest->body(slow, "{}"), Next::read_body);
    EXPECT_EQ(ingest->end_of_body(slow), Next::spooling);
    ingest->spooled(slow, true);
    EXPECT_EQ(slow.answer.status, 202);
    EXPECT_EQ(ingest->oldest_generation(), 1u);
    ingest->release(slow);
    EXPECT_EQ(ingest->oldest_generation(), 2u) << "generation 1 is free once its request ends";

    const ingest::RouteStats* counted = ingest->route_stats().find(next->routes()[0].slot);
    ASSERT_NE(counted, nullptr);
    EXPECT_EQ(counted->answered[ingest::status_slot(202)].load(), 1u);
}
