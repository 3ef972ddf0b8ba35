// The webhook path (ingest::Ingest) driven the way a shard's connection drives it
// (src/io/exchange.cc), from one connection's bytes, with a few fixed configurations.
//
// Input format:
//   byte 0      bits 0-1: configuration (0 providers, 1 admission, 2 keys; 3 is 0 again);
//               bits 4-6: receive size, the bytes a read hands over at once
//               (1, 2, 7, 31, 100, 1000, 16384 or all that is left)
//   byte 1      the peer address (an index into `peers` below)
//   bytes 2-7   one byte of options per request: request i uses byte 2 + i, requests after
//               the sixth use byte 7:
//                 bits 0-1  the spool: 0 durable, 1 write failed, 2 enqueue refused,
//                           3 durable, reported after the next request has been handled
//                 bit 2     the shard is draining
//                 bit 3     sign: the target adds the headers that make the request pass its
//                           route's verification (the signature over the de-chunked body,
//                           computed here with BoringSSL, independently of src/)
//                 bits 4-5  the clock moves before the request: 0, 1 s, 31 s, 2 h
//                 bits 6-7  the signed timestamp: now, now - 60 s, now - 301 s, now + 301 s
//   bytes 8-    the connection's bytes: pipelined HTTP/1.1 requests, heads and bodies
//               (Content-Length or chunked), at most eight requests
//
// What is checked (abort on violation): every request ingest decides ends with an answer (or
// with a record in the spool whose spooled() sets one) whose status is 200..599, whose body is
// non-empty unless it is a HEAD answer, and whose views point into the Answer itself, at
// constants or at the snapshot's Allow header (the snapshot lives as long as the server); an
// answer decided before the body was read closes the connection; a 202 only
// after spooled(true) for a record that was enqueued, naming that record's id; a 200 duplicate
// names a job that was answered 202 before; every enqueued record decodes, names the matched
// route, carries the client address and the de-chunked body and the route's durability; no log
// line and no answer carries a configured secret, and no log line carries a body of 16 bytes or
// more (unless the input itself holds them where a line may show them); once every request is
// released, sending any dedup-route request again never meets 503 in_progress (no claim was
// left behind).
//
// Seeds: fuzz/ingest-corpus/, one file per case (a route of each scheme, chunked bodies, dedup
// pairs, admission); INGEST_FUZZ_TRACE=1 prints each answer, to see what an input reaches.
#include "portcullis/base/address.hh"
#include "portcullis/base/buffer_pool.hh"
#include "portcullis/base/encoding.hh"
#include "portcullis/base/log.hh"
#include "portcullis/config/config.hh"
#include "portcullis/config/snapshot.hh"
#include "portcullis/http/parser.hh"
#include "portcullis/ingest/webhook.hh"
#include "portcullis/queue/dedup.hh"
#include "portcullis/queue/job_id.hh"
#include "portcullis/queue/record.hh"

#include <openssl/curve25519.h>
#include <openssl/digest.h>
#include <openssl/hmac.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// The first and last bytes of the executable's image (GNU ld and lld define both): the
// answers' constant texts live between them.
extern "C" const char __ehdr_start[]; // NOLINT(bugprone-reserved-identifier)
extern "C" const char _end[];         // NOLINT(bugprone-reserved-identifier)

namespace {

namespace base = portcullis::base;
namespace config = portcullis::config;
namespace http = portcullis::http;
namespace ingest = portcullis::ingest;
namespace queue = portcullis::queue;
namespace admit = portcullis::admit;

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "ingest_fuzz: invariant violated: %s\n", what);
        std::abort();
    }
}

constexpr int64_t ns_per_s = 1'000'000'000;
constexpr int64_t start_unix_ns = 1'760'000'000 * ns_per_s;
constexpr int64_t start_mono_ns = 1'000 * ns_per_s;
constexpr size_t control_bytes = 8;
constexpr size_t max_requests = 8;

// Secrets, set in the environment at start as a deployment would.
constexpr const char* github_secret = "fuzz-github-secret-8d1f0c7a";
constexpr const char* stripe_secret = "whsec_fuzzstripe0b9e5c2d7a41";
constexpr const char* slack_secret = "fuzz-slack-signing-3e7a9b2c";
constexpr const char* standard_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr const char* hmac_secret = "fuzz-hmac-secret-41c6e0d95b";
constexpr const char* shared_secret = "fuzz-shared-token-5f3c9a1e7b2d";

// Providers: one route per signing scheme, dedup by delivery ids and json keys, ordering by a
// json timestamp.
constexpr const char* yaml_providers = R"(server:
  deny: ["203.0.113.0/24"]
  limits: {body_bytes: 4096}
routes:
  gh: {path: /gh, verify: {scheme: github, secrets: [{env: FUZZ_GITHUB_SECRET}]}, dedup: {window: 1h}}
  stripe:
    path: /stripe
    verify: {scheme: stripe, secrets: [{env: FUZZ_STRIPE_SECRET}]}
    dedup: {window: 1h}
    ordering: {key: "json:/data/object/id", timestamp: "json:/created"}
  slack: {path: /slack, verify: {scheme: slack, secrets: [{env: FUZZ_SLACK_SECRET}]}, dedup: {window: 1h}}
  std: {path: /std, verify: {scheme: standard, secrets: [{env: FUZZ_STANDARD_SECRET}]}, dedup: {window: 10m}}
  acme:
    path: "/acme/{tenant}"
    verify:
      scheme: hmac
      header: X-Acme-Signature
      prefix: "sha256="
      encoding: hex
      algorithm: sha256
      timestamp_header: X-Acme-Timestamp
      template: "{timestamp}.{body}"
      secrets: [{env: FUZZ_HMAC_SECRET}]
    dedup: {key: "header:X-Acme-Delivery", window: 1h}
    ordering: {key: "path:tenant", timestamp: "json:/updated_at"}
  open: {path: /open, methods: [POST, PUT], verify: {scheme: none}}
)";

// Admission: allow and deny lists, proxies, rate limits, a small body limit, few headers.
constexpr const char* yaml_admission = R"(server:
  deny: ["203.0.113.0/24", "2001:db8:bad::/48"]
  limits: {body_bytes: 64, headers: 16, header_bytes: 1KiB}
  client_ip: {trusted_proxies: ["10.0.0.0/8"]}
routes:
  office: {path: /office, verify: {scheme: none}, allow: ["10.1.0.0/16", "192.0.2.0/28", "2001:db8::/32"]}
  limited:
    path: /limited
    verify: {scheme: github, secrets: [{env: FUZZ_GITHUB_SECRET}]}
    rate_limit: {per_ip: 2/min, burst: 2, route: 3/min}
  once: {path: /once, verify: {scheme: none}, dedup: {key: "query:id", window: 1m}, durability: batch}
  ordered: {path: "/ordered/{key}", verify: {scheme: none}, ordering: {key: "path:key", timestamp: "header:X-Ts"}}
  token:
    path: /token
    verify: {scheme: shared_secret, header: X-Token, secrets: [{env: FUZZ_SHARED_SECRET}]}
    keep_headers: [Authorization]
    dedup: {key: "json:/id", window: 1h}
)";

// Keys: Ed25519 (Discord, Standard Webhooks' v1a), HMAC in base64 over SHA-512, json keys for
// both dedup and ordering, a spool default other than fsync.
constexpr const char* yaml_keys = R"(server:
  limits: {body_bytes: 1KiB}
spool: {durability: none}
routes:
  discord: {path: /discord, verify: {scheme: ed25519, secrets: [{env: FUZZ_ED25519_PUBLIC}]}, dedup: {key: "json:/id", window: 1h}}
  svix:
    path: /svix
    verify: {scheme: standard, secrets: [{env: FUZZ_STANDARD_SECRET}, {env: FUZZ_STANDARD_PUBLIC}]}
    ordering: {key: "json:/key", timestamp: "json:/ts"}
  b64:
    path: /b64
    methods: [POST, PATCH]
    verify: {scheme: hmac, header: X-Sig, encoding: base64, algorithm: sha512, secrets: [{env: FUZZ_HMAC_SECRET}]}
    dedup: {key: "json:/id", window: 1h}
    ordering: {key: "json:/key", timestamp: "json:/ts"}
  gh: {path: /gh, verify: {scheme: github, secrets: [{env: FUZZ_GITHUB_SECRET}]}, dedup: {key: "header:X-GitHub-Delivery", window: 1h}, durability: fsync}
)";

constexpr std::array<const char*, 8> peers = {
    "192.0.2.10", "192.0.2.11",  "10.1.2.3",        "203.0.113.9",
    "10.0.0.1",   "2001:db8::1", "2001:db8:bad::5", "::1",
};
constexpr std::array<size_t, 8> receive_sizes = {1, 2, 7, 31, 100, 1000, 16384, SIZE_MAX};

struct Keys {
    std::array<uint8_t, 64> discord_private{};
    std::array<uint8_t, 64> standard_private{};
    std::string discord_public_hex;
    std::string standard_public; // whpk_<base64>
};

struct World {
    Keys keys;
    std::vector<std::unique_ptr<config::Snapshot>> snapshots;
    std::vector<std::string> secrets; // every configured secret, as text
};

World* world = nullptr;
// INGEST_FUZZ_TRACE=1: one line per answer on stderr, to see what a seed reaches.
bool trace = false;

void trace_answer(const ingest::Answer& a, const char* when) {
    if (trace) {
        std::fprintf(stderr, "  %s: %u %.*s%s\n", when, a.status, static_cast<int>(a.body.size()),
                     a.body.data(), a.close ? " [close]" : "");
    }
}

std::unique_ptr<config::Snapshot> build(const char* name, const char* yaml) {
    config::LoadResult loaded = config::load_text(name, yaml);
    if (!loaded.ok()) {
        std::fprintf(stderr, "ingest_fuzz: %s: %s\n", name,
                     loaded.errors.empty() ? "?" : loaded.errors[0].format().c_str());
        std::abort();
    }
    std::string error;
    auto snap = config::Snapshot::build(std::move(*loaded.config), error);
    if (snap == nullptr) {
        std::fprintf(stderr, "ingest_fuzz: %s: %s\n", name, error.c_str());
        std::abort();
    }
    return snap;
}

// ---- signing ------------------------------------------------------------------------------

std::string hmac(const EVP_MD* md, std::string_view key,
                 std::initializer_list<std::string_view> parts) {
    std::string message;
    for (std::string_view p : parts) {
        message += p;
    }
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    HMAC(md, key.data(), key.size(), reinterpret_cast<const uint8_t*>(message.data()),
         message.size(), mac, &len);
    return {reinterpret_cast<const char*>(mac), len};
}

std::string ed25519(const std::array<uint8_t, 64>& private_key,
                    std::initializer_list<std::string_view> parts) {
    std::string message;
    for (std::string_view p : parts) {
        message += p;
    }
    uint8_t sig[64];
    ED25519_sign(sig, reinterpret_cast<const uint8_t*>(message.data()), message.size(),
                 private_key.data());
    return {reinterpret_cast<const char*>(sig), sizeof sig};
}

std::string hex_of(std::string_view bytes) {
    return base::hex(base::as_bytes(bytes));
}
std::string base64_of(std::string_view bytes) {
    return base::base64(base::as_bytes(bytes));
}

const EVP_MD* digest_of(config::Algorithm a) {
    switch (a) {
    case config::Algorithm::sha1:
        return EVP_sha1();
    case config::Algorithm::sha512:
        return EVP_sha512();
    case config::Algorithm::sha256:
        break;
    }
    return EVP_sha256();
}

using HeaderLines = std::vector<std::pair<std::string, std::string>>;

// The headers that make `body` pass rc's verification with timestamp ts (Unix seconds).
HeaderLines sign(const config::RouteConfig& rc, std::string_view body, int64_t ts) {
    const config::VerifyConfig& v = rc.verify;
    if (v.secrets.empty()) {
        return {};
    }
    const std::string& secret = v.secrets.front().material;
    const std::string t = std::to_string(ts);
    switch (v.scheme) {
    case config::Scheme::github:
        return {{"X-Hub-Signature-256", "sha256=" + hex_of(hmac(EVP_sha256(), secret, {body}))}};
    case config::Scheme::stripe:
        return {{"Stripe-Signature",
                 "t=" + t + ",v1=" + hex_of(hmac(EVP_sha256(), secret, {t, ".", body}))}};
    case config::Scheme::slack:
        return {{"X-Slack-Request-Timestamp", t},
                {"X-Slack-Signature",
                 "v0=" + hex_of(hmac(EVP_sha256(), secret, {"v0:", t, ":", body}))}};
    case config::Scheme::standard: {
        // The id follows the body's length, so that two bodies of one length make a dedup
        // conflict and the same body a duplicate.
        const std::string id = "msg_fuzz" + std::to_string(body.size() % 4);
        std::string signatures;
        for (const config::Secret& s : v.secrets) {
            std::string_view text = s.material;
            if (text.starts_with("whsec_")) {
                std::vector<uint8_t> key(base::base64_decoded_max_size(text.size()));
                key.resize(base::base64_decode(text.substr(6), key).value_or(0));
                std::string_view k(reinterpret_cast<const char*>(key.data()), key.size());
                signatures += " v1," + base64_of(hmac(EVP_sha256(), k, {id, ".", t, ".", body}));
            } else if (text == world->keys.standard_public) {
                signatures += " v1a," + base64_of(ed25519(world->keys.standard_private,
                                                          {id, ".", t, ".", body}));
            }
        }
        return {{"webhook-id", id},
                {"webhook-timestamp", t},
                {"webhook-signature", signatures.substr(1)}};
    }
    case config::Scheme::shopify:
        return {{"X-Shopify-Hmac-Sha256", base64_of(hmac(EVP_sha256(), secret, {body}))}};
    case config::Scheme::hmac: {
        std::string prefix = v.signed_template;
        if (size_t at = prefix.find("{timestamp}"); at != std::string::npos) {
            prefix.replace(at, 11, t);
        }
        prefix.resize(prefix.size() - std::string_view("{body}").size()); // {body} comes last
        std::string mac = hmac(digest_of(v.algorithm), secret, {prefix, body});
        HeaderLines lines;
        if (!v.timestamp_header.empty()) {
            lines.emplace_back(v.timestamp_header, t);
        }
        lines.emplace_back(
            v.header,
            v.prefix + (v.encoding == config::Encoding::hex ? hex_of(mac) : base64_of(mac)));
        return lines;
    }
    case config::Scheme::shared_secret:
        return {{v.header, secret}};
    case config::Scheme::ed25519:
        return {{"X-Signature-Ed25519", hex_of(ed25519(world->keys.discord_private, {t, body}))},
                {"X-Signature-Timestamp", t}};
    case config::Scheme::none:
        break;
    }
    return {};
}

// ---- the spool and the log ----------------------------------------------------------------

struct Enqueued {
    std::vector<uint8_t> record;
    uint64_t cookie = 0;
    config::Durability durability = config::Durability::fsync;
};

struct FakeHost final : ingest::Host {
    bool refuse = false;
    size_t attempts = 0;
    std::vector<Enqueued> enqueued;
    std::vector<std::string> lines;

    bool enqueue(std::span<const uint8_t> record, uint64_t cookie,
                 config::Durability durability) override {
        ++attempts;
        if (refuse) {
            return false;
        }
        enqueued.push_back({{record.begin(), record.end()}, cookie, durability});
        return true;
    }
    void log(base::LogLine& line) override { lines.emplace_back(line.finish()); }
};

// ---- checks -------------------------------------------------------------------------------

// Whether needle occurs in haystack, without memcmp and without coverage instrumentation: the
// checks look for the secrets, and libFuzzer would otherwise learn them from the comparisons
// (its memcmp hooks, trace-cmp) and put them into inputs.
__attribute__((no_sanitize("coverage"))) bool contains(std::string_view haystack,
                                                       std::string_view needle) {
    if (needle.size() > haystack.size()) {
        return false;
    }
    for (size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
        size_t j = 0;
        while (j < needle.size() && haystack[i + j] == needle[j]) {
            ++j;
        }
        if (j == needle.size()) {
            return true;
        }
    }
    return false;
}

bool in_static(std::string_view v) {
    return v.data() >= __ehdr_start && v.data() + v.size() <= _end;
}

bool in_answer(std::string_view v, const ingest::Answer& a) {
    auto* lo = reinterpret_cast<const char*>(&a);
    return v.data() >= lo && v.data() + v.size() <= lo + sizeof a;
}

bool inside(std::string_view v, std::string_view room) {
    return v.data() >= room.data() && v.data() + v.size() <= room.data() + room.size();
}

// Where an answer's views may point: the answer, constants, or what the snapshot holds for
// as long as it serves (a route's Allow header).
bool placed(std::string_view v, const ingest::Answer& a, const config::Snapshot& snap) {
    if (v.empty() || in_answer(v, a) || in_static(v)) {
        return true;
    }
    for (const config::Route& r : snap.routes()) {
        if (inside(v, r.allow_header)) {
            return true;
        }
    }
    return false;
}

std::string id_text(const queue::JobId& id) {
    char text[queue::job_id_text_size];
    id.format(text);
    return {text, sizeof text};
}

// The id an answer body {"id":"...","status":"..."} names, or "".
std::string answered_id(std::string_view body, std::string_view status) {
    constexpr std::string_view open = R"({"id":")";
    const std::string close = R"(","status":")" + std::string(status) + R"("})";
    if (!body.starts_with(open) || !body.ends_with(close) ||
        body.size() != open.size() + queue::job_id_text_size + close.size()) {
        return {};
    }
    return std::string(body.substr(open.size(), queue::job_id_text_size));
}

// raw_has_secret: the input itself holds a secret (an answer may echo what the client sent).
void check_answer(const ingest::Answer& a, const config::Snapshot& snap, bool raw_has_secret) {
    check(a.status >= 200 && a.status <= 599, "status in 200..599");
    check(!a.body.empty(), "every answer has a body (the HTTP layer drops it for HEAD)");
    check(placed(a.body, a, snap) && placed(a.extra_headers, a, snap) &&
              placed(a.content_type, a, snap),
          "answer views point into the answer, at constants or into the snapshot");
    check(!a.content_type.empty(), "a content type");
    check(a.extra_headers.empty() || a.extra_headers.ends_with("\r\n"),
          "extra headers are whole lines");
    for (const std::string& s : world->secrets) {
        check(raw_has_secret || !contains(a.body, s), "no secret in an answer");
    }
}

// ---- one connection -----------------------------------------------------------------------

struct Options {
    uint8_t spool = 0;
    bool draining = false;
    bool sign = false;
    int64_t clock_step_ns = 0;
    int64_t signed_skew_s = 0;
};

Options options_of(uint8_t b) {
    constexpr std::array<int64_t, 4> steps = {0, ns_per_s, 31 * ns_per_s, 7200 * ns_per_s};
    constexpr std::array<int64_t, 4> skews = {0, -60, -301, 301};
    return {static_cast<uint8_t>(b & 3), (b & 4) != 0, (b & 8) != 0, steps[(b >> 4) & 3],
            skews[(b >> 6) & 3]};
}

// A request that reached ingest, kept for the replay at the end.
struct Sent {
    std::string head;
    std::string body;
};

// One exchange: a pooled webhook and what the target remembers about it.
struct Exchange {
    ingest::Webhook* w = nullptr;
    bool spooling = false;
    bool answered = false;
    size_t due = 0; // the request after which its spool outcome is reported
    bool durable = false;
    size_t record = 0; // its index in host.enqueued, when spooling
};

class Connection {
public:
    Connection(const config::Snapshot& snap, const base::PeerAddress& peer, bool raw_has_secret)
        : _snap(snap), _peer(peer), _raw_has_secret(raw_has_secret),
          _ingest(snap, ingest::Tables{&_dedup, &_ordering, &_limiter, 0x5eed}, _clock, _host,
                  _pool, 3) {
        _clock.unix_ns = start_unix_ns;
        _clock.mono_ns = start_mono_ns;
        const config::Config& cfg = snap.config();
        _limits.header_bytes = cfg.server.header_bytes;
        _limits.max_headers = cfg.server.headers;
        _scratch.resize(cfg.server.headers);
        _signed_scratch.resize(cfg.server.headers);
        for (ingest::Webhook& w : *_hooks) {
            _free.push_back(&w);
        }
    }

    // Runs the connection over `in`, `receive` bytes at a time.
    void run(std::string_view in, std::span<const uint8_t> flags, size_t receive) {
        size_t n = 0;
        while (!in.empty() && n < max_requests && !_closed) {
            const Options o = options_of(flags[n < flags.size() ? n : flags.size() - 1]);
            size_t used = request(in, o, receive, n);
            settle(n);
            if (used == 0) {
                break;
            }
            in.remove_prefix(used);
            ++n;
        }
        settle(SIZE_MAX);
        check(_inflight.empty(), "every exchange released");
        replay();
    }

private:
    // One request from the front of `in`; returns the bytes it used (0: the connection ends).
    size_t request(std::string_view in, const Options& o, size_t receive, size_t n) {
        _clock.unix_ns += o.clock_step_ns;
        _clock.mono_ns += o.clock_step_ns;
        http::RequestHead head;
        const http::HeadResult r = http::parse_head(in, 0, _limits, _scratch, head);
        if (r.error != http::Error::none || r.consumed == 0) {
            return 0; // 400/431/505, or a head that never ends: the HTTP layer's answers
        }
        std::string_view rest = in.substr(r.consumed);
        std::string head_text(in.substr(0, r.consumed));
        // The body as the route will see it, for the signature and the checks.
        bool whole = true;
        std::string body = plain_body(head, rest, whole);
        if (o.sign) {
            if (const config::Route* route = _snap.match(head.path); route != nullptr) {
                HeaderLines lines =
                    sign(*route->config, body, _clock.unix_ns / ns_per_s + o.signed_skew_s);
                std::string text = head_text.substr(0, head_text.size() - 2);
                for (const auto& [name, value] : lines) {
                    text.append(name).append(": ").append(value).append("\r\n");
                }
                text += "\r\n";
                http::RequestHead signed_head;
                http::HeadResult s =
                    http::parse_head(text, 0, _limits, _signed_scratch, signed_head);
                if (s.error == http::Error::none && s.consumed == text.size()) {
                    _signed_text = std::move(text);
                    head = signed_head;
                    head_text = _signed_text;
                }
            }
        }

        Exchange ex;
        check(!_free.empty(), "a free webhook");
        ex.w = _free.back();
        _free.pop_back();
        ex.w->peer = _peer;
        ex.w->cookie = ++_cookies;
        const bool has_body =
            head.framing == http::BodyFraming::chunked ||
            (head.framing == http::BodyFraming::content_length && head.content_length > 0);
        const size_t lines_before = _host.lines.size();
        const size_t attempts_before = _host.attempts;
        const size_t enqueued_before = _host.enqueued.size();
        _host.refuse = o.spool == 2;

        ingest::Next next = _ingest.head(*ex.w, head, o.draining);
        if (next == ingest::Next::answer && has_body) {
            check(ex.w->answer.close, "an answer before the body closes the connection");
        }
        // Kept for the replay: a request that reached a dedup route with its whole body.
        const config::Route* route = ex.w->route;
        size_t used = r.consumed;
        bool complete = true;
        if (next == ingest::Next::read_body) {
            used += feed_body(ex, head, rest, receive, next, complete);
        }
        if (!complete) {
            // The body never ended (the input did) or its framing was malformed: the HTTP
            // layer answers 408/400 and the exchange is dropped.
            if (trace) {
                std::fprintf(stderr, "  dropped: the body did not end, or its framing is bad\n");
            }
            _ingest.release(*ex.w);
            _free.push_back(ex.w);
            check(_host.attempts == attempts_before, "nothing enqueued without a whole body");
            check_logs(lines_before, head_text, body);
            _closed = true;
            return 0;
        }
        if (route != nullptr && route->config->dedup && whole && _sent.size() < max_requests) {
            _sent.push_back({head_text, body});
        }
        if (next == ingest::Next::spooling) {
            check(_host.enqueued.size() == enqueued_before + 1 &&
                      _host.attempts == attempts_before + 1,
                  "spooling: exactly one record enqueued");
            const Enqueued& e = _host.enqueued.back();
            check(e.cookie == ex.w->cookie, "the record carries the webhook's cookie");
            check_record(e, *ex.w, body);
            ex.spooling = true;
            ex.record = _host.enqueued.size() - 1;
            ex.durable = o.spool != 1;
            ex.due = o.spool == 3 ? n + 1 : n;
        } else {
            check(next == ingest::Next::answer, "answer, read_body or spooling");
            check(_host.enqueued.size() == enqueued_before, "no record enqueued for an answer");
            check(_host.attempts == attempts_before || (o.spool == 2 && ex.w->answer.status == 503),
                  "a refused enqueue answers 503");
            answered(ex);
        }
        check_logs(lines_before, head_text, body);
        const bool ends = !head.keep_alive || o.draining || (ex.answered && ex.w->answer.close);
        _inflight.push_back(ex);
        if (ends) {
            _closed = true;
        }
        return used;
    }

    // The body after the transfer coding is removed, as far as the input holds it.
    // whole: the input holds all of it.
    static std::string plain_body(const http::RequestHead& head, std::string_view rest,
                                  bool& whole) {
        if (head.framing == http::BodyFraming::content_length) {
            whole = rest.size() >= head.content_length;
            return std::string(rest.substr(0, head.content_length));
        }
        std::string body;
        whole = head.framing != http::BodyFraming::chunked;
        if (!whole) {
            http::ChunkedDecoder dec;
            for (;;) {
                http::ChunkedDecoder::Step s = dec.feed(rest);
                body.append(s.data);
                rest.remove_prefix(s.consumed);
                if (s.error != http::Error::none || s.done || s.consumed == 0) {
                    whole = s.error == http::Error::none && s.done;
                    break;
                }
            }
        }
        return body;
    }

    // Feeds the body `receive` bytes at a time as reads would bring them; returns the bytes of
    // input used. complete is false when the body did not end or its framing was refused.
    size_t feed_body(Exchange& ex, const http::RequestHead& head, std::string_view rest,
                     size_t receive, ingest::Next& next, bool& complete) {
        size_t available = 0; // bytes received so far
        size_t consumed = 0;  // of those, used
        auto receive_more = [&] {
            if (available == rest.size()) {
                return false;
            }
            available = rest.size() - available < receive ? rest.size() : available + receive;
            return true;
        };
        if (head.framing == http::BodyFraming::content_length) {
            uint64_t remaining = head.content_length;
            while (remaining > 0) {
                if (consumed == available && !receive_more()) {
                    complete = false;
                    return consumed;
                }
                std::string_view in = rest.substr(consumed, available - consumed);
                size_t take = in.size() < remaining ? in.size() : static_cast<size_t>(remaining);
                next = _ingest.body(*ex.w, in.substr(0, take));
                if (next != ingest::Next::read_body) {
                    // Refused mid-body: the rest is not read, so the connection must close.
                    check(next == ingest::Next::answer && ex.w->answer.close,
                          "an answer mid-body closes the connection");
                    return available;
                }
                consumed += take;
                remaining -= take;
            }
            next = _ingest.end_of_body(*ex.w);
            return consumed;
        }
        check(head.framing == http::BodyFraming::chunked, "a body is sized or chunked");
        http::ChunkedDecoder dec;
        for (;;) {
            std::string_view in = rest.substr(consumed, available - consumed);
            http::ChunkedDecoder::Step step = dec.feed(in);
            if (step.error != http::Error::none) {
                complete = false;
                return available;
            }
            if (!step.data.empty()) {
                next = _ingest.body(*ex.w, step.data);
                if (next != ingest::Next::read_body) {
                    check(next == ingest::Next::answer && ex.w->answer.close,
                          "an answer mid-body closes the connection");
                    return available;
                }
            }
            consumed += step.consumed;
            if (step.done) {
                next = _ingest.end_of_body(*ex.w);
                return consumed;
            }
            if (consumed == available && !receive_more()) {
                complete = false;
                return consumed;
            }
            if (step.consumed == 0 && step.data.empty() && !receive_more()) {
                complete = false;
                return consumed;
            }
        }
    }

    void check_record(const Enqueued& e, const ingest::Webhook& w, std::string_view body) {
        queue::JobRecord rec;
        size_t size = 0;
        check(queue::decode_record(e.record, rec, size) == queue::DecodeStatus::ok,
              "an enqueued record decodes");
        check(size == e.record.size(), "one record, whole");
        check(w.route != nullptr && rec.route == w.route->config->name, "it names the route");
        check(rec.body == body, "it holds the de-chunked body");
        check(rec.peer == w.client, "it holds the client");
        check(rec.id == w.id && rec.received_at_ns == _clock.unix_ns, "its id and time");
        check(e.durability == w.route->config->durability.value_or(_snap.config().spool.durability),
              "the route's durability");
    }

    void check_logs(size_t from, std::string_view head_text, std::string_view body) {
        const bool body_shown_elsewhere = body.size() < 16 || contains(head_text, body);
        for (size_t i = from; i < _host.lines.size(); ++i) {
            const std::string& line = _host.lines[i];
            if (!_raw_has_secret) {
                for (const std::string& s : world->secrets) {
                    check(!contains(line, s), "no secret in a log line");
                }
            }
            if (!body_shown_elsewhere) {
                check(!contains(line, body), "no body in a log line");
            }
        }
    }

    // An answer ingest has set (at once or through spooled()).
    void answered(Exchange& ex) {
        const ingest::Answer& a = ex.w->answer;
        trace_answer(a, "answer");
        check_answer(a, _snap, _raw_has_secret);
        check(a.status != 202, "202 only from spooled(true)");
        if (a.status == 200) {
            std::string id = answered_id(a.body, "duplicate");
            if (!id.empty()) {
                check(_queued_ids.contains(id), "a duplicate names a job answered 202");
            }
        }
        ex.answered = true;
    }

    // Reports the spool's outcome for exchanges due by request n, then sends (releases) the
    // answered ones in request order, as the connection's pump does.
    void settle(size_t n) {
        for (Exchange& ex : _inflight) {
            if (!ex.spooling || ex.due > n) {
                continue;
            }
            const uint64_t queued_before = _ingest.stats().jobs_queued.load();
            _ingest.spooled(*ex.w, ex.durable);
            ex.spooling = false;
            ex.answered = true;
            const ingest::Answer& a = ex.w->answer;
            trace_answer(a, "spooled");
            check_answer(a, _snap, _raw_has_secret);
            if (ex.durable) {
                check(a.status == 202 && ex.w->queued, "durable: 202");
                const std::string id = answered_id(a.body, "queued");
                queue::JobRecord rec;
                size_t size = 0;
                check(queue::decode_record(_host.enqueued[ex.record].record, rec, size) ==
                          queue::DecodeStatus::ok,
                      "the record still decodes");
                check(id == id_text(rec.id), "the 202 names the record's id");
                check(_ingest.stats().jobs_queued.load() == queued_before + 1, "counted once");
                _queued_ids.insert(id);
            } else {
                check(a.status == 503 && !ex.w->queued, "a failed write: 503");
            }
        }
        while (!_inflight.empty() && _inflight.front().answered) {
            _ingest.release(*_inflight.front().w);
            _free.push_back(_inflight.front().w);
            _inflight.erase(_inflight.begin());
        }
    }

    // With nothing in flight, no dedup key may still be claimed: every dedup-route request sent
    // again gets anything but 503 in_progress.
    void replay() {
        for (const Sent& s : _sent) {
            http::RequestHead head;
            const http::HeadResult r = http::parse_head(s.head, 0, _limits, _scratch, head);
            check(r.error == http::Error::none && r.consumed == s.head.size(), "replay parses");
            ingest::Webhook& w = *_free.back();
            w.peer = _peer;
            w.cookie = ++_cookies;
            _host.refuse = false;
            ingest::Next next = _ingest.head(w, head, false);
            if (next == ingest::Next::read_body) {
                if (!s.body.empty()) {
                    next = _ingest.body(w, s.body);
                }
                if (next == ingest::Next::read_body) {
                    next = _ingest.end_of_body(w);
                }
            }
            if (next == ingest::Next::spooling) {
                _ingest.spooled(w, false);
            }
            trace_answer(w.answer, "replay");
            check(w.answer.body != R"({"error":"in_progress"})",
                  "no dedup claim outlives its release");
            _ingest.release(w);
        }
    }

    const config::Snapshot& _snap;
    const base::PeerAddress _peer;
    const bool _raw_has_secret;
    ingest::Clock _clock;
    FakeHost _host;
    base::BufferPool _pool;
    queue::DedupTable _dedup{16};
    queue::OrderingTable _ordering{16};
    admit::RateLimiter _limiter{16};
    ingest::Ingest _ingest;
    http::Limits _limits;
    std::vector<http::Header> _scratch;
    std::vector<http::Header> _signed_scratch;
    std::string _signed_text;
    std::unique_ptr<std::array<ingest::Webhook, max_requests + 1>> _hooks =
        std::make_unique<std::array<ingest::Webhook, max_requests + 1>>();
    std::vector<ingest::Webhook*> _free;
    std::vector<Exchange> _inflight;
    std::vector<Sent> _sent;
    std::set<std::string> _queued_ids;
    uint64_t _cookies = 0;
    bool _closed = false;
};

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    world = new World;
    trace = std::getenv("INGEST_FUZZ_TRACE") != nullptr;
    Keys& k = world->keys;
    std::array<uint8_t, 32> pub{};
    std::array<uint8_t, 32> seed{};
    seed.fill(0x5a);
    ED25519_keypair_from_seed(pub.data(), k.discord_private.data(), seed.data());
    k.discord_public_hex = base::hex(pub);
    seed.fill(0xa5);
    ED25519_keypair_from_seed(pub.data(), k.standard_private.data(), seed.data());
    k.standard_public = "whpk_" + base::base64(pub);

    const std::array<std::pair<const char*, std::string>, 8> env = {{
        {"FUZZ_GITHUB_SECRET", github_secret},
        {"FUZZ_STRIPE_SECRET", stripe_secret},
        {"FUZZ_SLACK_SECRET", slack_secret},
        {"FUZZ_STANDARD_SECRET", standard_secret},
        {"FUZZ_HMAC_SECRET", hmac_secret},
        {"FUZZ_SHARED_SECRET", shared_secret},
        {"FUZZ_ED25519_PUBLIC", k.discord_public_hex},
        {"FUZZ_STANDARD_PUBLIC", k.standard_public},
    }};
    for (const auto& [name, value] : env) {
        setenv(name, value.c_str(), 1);
    }
    // The public keys are no secrets; the others must never be shown.
    world->secrets = {github_secret,   stripe_secret, slack_secret,
                      standard_secret, hmac_secret,   shared_secret};
    world->snapshots.push_back(build("providers.yaml", yaml_providers));
    world->snapshots.push_back(build("admission.yaml", yaml_admission));
    world->snapshots.push_back(build("keys.yaml", yaml_keys));
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < control_bytes) {
        return 0;
    }
    const config::Snapshot& snap = *world->snapshots[(data[0] & 3) % world->snapshots.size()];
    const size_t receive = receive_sizes[(data[0] >> 4) & 7];
    const base::PeerAddress peer = base::PeerAddress::parse(peers[data[1] % peers.size()], 40000)
                                       .value_or(base::PeerAddress{});
    const std::string_view in(reinterpret_cast<const char*>(data) + control_bytes,
                              size - control_bytes);
    bool raw_has_secret = false;
    for (const std::string& s : world->secrets) {
        raw_has_secret = raw_has_secret || contains(in, s);
    }
    auto conn = std::make_unique<Connection>(snap, peer, raw_has_secret);
    conn->run(in, std::span<const uint8_t>(data + 2, control_bytes - 2), receive);
    return 0;
}
