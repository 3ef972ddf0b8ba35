// The validated configuration: what `portcullis check` prints and what every shard serves from.
// A Config is immutable once loaded; reload builds a whole new one (SPEC section 6).
//
//   auto loaded = config::load("/etc/portcullis");
//   if (!loaded.ok()) { for (auto& e : loaded.errors) print(e.format()); return 2; }
//   const Config& cfg = *loaded.config;
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::config {

// Where a value came from, for messages: "file:line:column".
struct SourceMark {
    std::string file;
    int line = 0;   // 1-based
    int column = 0; // 1-based
};

// One finding of the loader or the validator. format() gives
// "portcullis.yaml:12:7: routes.github.verify.scheme: unknown scheme \"gitlab\" (expected one of
// ...)".
struct Diagnostic {
    SourceMark mark;
    std::string key_path; // dotted, list items as [i]: "routes.github.verify.secrets[1]"
    std::string message;
    // A warning about a secret that resolved to nothing (an unset env var, an empty file): a
    // start serves without it, a reload refuses (it would disarm a route that works).
    bool secret_unset = false;
    std::string format() const;
};

// An IPv4 or IPv6 network. IPv4 is kept as an IPv4-mapped IPv6 address (::ffff:a.b.c.d) with
// prefix_len + 96, so one comparison serves both families.
struct Cidr {
    std::array<uint8_t, 16> addr{};
    uint8_t prefix_len = 0; // 0..128, in the mapped space
    std::string text;       // as written, for messages
    bool operator==(const Cidr&) const = default;
};

// host:port; host is an IPv4 literal, a bracketed IPv6 literal or "localhost". Port 0 asks the
// kernel for an ephemeral port (tests).
struct ListenAddress {
    std::string host; // without the brackets: "0.0.0.0", "::1", "localhost"
    uint16_t port = 0;
    std::string text; // as written
};

enum class SecretSource : uint8_t { env, file, value };

// A secret is resolved at load: `{env: NAME}` reads the environment, `{file: PATH}` reads the
// file (one trailing newline stripped), `{value: "..."}` is taken as written and warned about.
struct Secret {
    std::string material; // never logged, never printed
    SecretSource source = SecretSource::value;
    std::string origin; // "env:GITHUB_WEBHOOK_SECRET", "file:/etc/...", "value": safe to print
    // A live reload restarts a sink whose configuration changed (deliver::Engine::reconfigure).
    bool operator==(const Secret&) const = default;
};

// N requests per period: `20/s`, `100/min`, `5000/h`.
struct Rate {
    uint64_t count = 0;
    int64_t period_ns = 0;
    // A live reload restarts a sink whose configuration changed (deliver::Engine::reconfigure).
    bool operator==(const Rate&) const = default;
};

// `header:NAME`, `json:/pointer`, `query:NAME`, `path:PARAM`.
struct FieldRef {
    enum class Kind : uint8_t { header, json, query, path };
    Kind kind = Kind::header;
    std::string name; // header names lowercased; json pointers as written
    std::string text; // as written
    bool operator==(const FieldRef&) const = default;
};

enum class Scheme : uint8_t {
    github,
    stripe,
    slack,
    standard,
    shopify,
    hmac,
    shared_secret,
    ed25519,
    none,
};

enum class Encoding : uint8_t { hex, base64 };
enum class Algorithm : uint8_t { sha256, sha512, sha1 };

struct VerifyConfig {
    Scheme scheme = Scheme::none;
    std::vector<Secret> secrets;
    std::optional<int64_t> tolerance_ns; // overrides the scheme's window
    // `hmac` and `shared_secret` options; empty when not set. Header names are lowercased. The
    // loader fills the defaults: shared_secret's header (x-callback-secret) and hmac's template
    // ("{body}", or "{timestamp}.{body}" with a timestamp_header).
    std::string header;
    std::string prefix;
    Encoding encoding = Encoding::hex;
    Algorithm algorithm = Algorithm::sha256;
    std::string timestamp_header;
    std::string signed_template; // `template`, e.g. "{timestamp}.{body}"
    SourceMark mark;             // of the `verify` key
};

enum class Durability : uint8_t {
    fsync, // answer after fdatasync
    batch, // answer after write; fdatasync within 10 ms
    none,  // answer after write; the kernel flushes when it will
};

struct DedupConfig {
    FieldRef key;
    int64_t window_ns = 0;
    bool operator==(const DedupConfig&) const = default;
};

struct OrderingConfig {
    FieldRef key;
    FieldRef timestamp;
    bool operator==(const OrderingConfig&) const = default;
};

struct RateLimitConfig {
    std::optional<Rate> per_ip;
    uint32_t burst = 0; // 0: the per_ip count of one period
    std::optional<Rate> route;
    bool operator==(const RateLimitConfig&) const = default;
};

struct RouteConfig {
    std::string name;                 // [a-z0-9_-]{1,64}
    std::string path;                 // exact, with optional {param} segments
    std::vector<std::string> methods; // upper case; default [POST]
    VerifyConfig verify;
    std::optional<DedupConfig> dedup;
    std::optional<OrderingConfig> ordering;
    std::optional<RateLimitConfig> rate_limit;
    std::vector<Cidr> allow; // empty: everyone
    uint32_t max_attempts = 10;
    std::optional<Durability> durability; // overrides spool.durability
    // Credentials stored with the jobs after all (`keep_headers`): lowercase names out of
    // http::credential_names. The others are left out of the spool, and so out of every lease.
    std::vector<std::string> keep_headers;
    // Push delivery (SPEC section 8): the names of the sinks every job of this route goes to, in
    // the order written; each name is one of Config::sinks. Empty: no push delivery.
    std::vector<std::string> deliver;
    // One job at a time, in arrival order, per sequence: a sequence is the jobs sharing a value
    // of ordering.key when the route has `ordering`, else the whole route. Only with deliver.
    bool ordered = false;
    SourceMark mark;
};

enum class ProxyProtocol : uint8_t { off, v1, v2, any };

enum class TlsVersion : uint8_t { v1_2, v1_3 };

// One certificate of server.tls: a PEM file holding the leaf then its chain, and the PEM private
// key. Paths are as resolved against the configuration's directory.
struct TlsCertificate {
    std::string cert;
    std::string key;
    SourceMark mark; // of the list item
};

// server.tls (SPEC section 4a): listeners that speak TLS, with the same routes and answers as
// the plain ones.
struct TlsConfig {
    std::vector<ListenAddress> listen;
    std::vector<TlsCertificate> certificates; // chosen by SNI; the first is the default
    TlsVersion min_version = TlsVersion::v1_2;
    bool session_tickets = true;
    // Ticket keys are replaced this often; a ticket stays valid for one more period.
    int64_t ticket_rotation_ns = int64_t{12} * 3600 * 1'000'000'000;
};

struct ServerConfig {
    std::vector<ListenAddress> listen; // default ["0.0.0.0:8080"]
    uint32_t shards = 0;               // 0: auto, one per core
    uint32_t max_connections = 10000;
    uint32_t max_connections_per_ip = 256;
    std::vector<Cidr> deny;
    int64_t drain_timeout_ns = 10'000'000'000;
    uint32_t header_bytes = 16 * 1024;
    uint32_t headers = 64;
    uint64_t body_bytes = 1024 * 1024;
    int64_t header_timeout_ns = 10'000'000'000;
    int64_t body_timeout_ns = 30'000'000'000;
    int64_t idle_timeout_ns = 60'000'000'000;
    std::vector<Cidr> trusted_proxies;
    ProxyProtocol proxy_protocol = ProxyProtocol::off;
    std::optional<TlsConfig> tls; // set when server.tls has at least one listener
};

struct AdminConfig {
    std::optional<ListenAddress> listen; // default 127.0.0.1:9090
    // Open control-plane connections at most (1..65536); past it a connection is closed at once.
    // Kept apart from server.max_connections: the file-descriptor budget counts both.
    uint32_t max_connections = 256;
    // GET /events: the ring buffer of recent events (replayed from Last-Event-ID), 100..1000000;
    // the streams open at once, 1..1024 (they count against max_connections too); the bytes that
    // may wait behind a stream's send in flight before the subscriber is cut, 64KiB..256MiB.
    struct Events {
        uint32_t buffer = 10000;
        uint32_t subscribers = 16;
        size_t backlog = size_t{4} << 20;
    } events;
    // Registered consumers (POST /v1/consumers, SPEC section 10): how often one with a
    // health_path is probed, 1s..24h.
    struct Consumers {
        int64_t health_interval_ns = 30'000'000'000;
    } consumers;
};

struct SpoolConfig {
    std::string dir = "./var/spool";
    Durability durability = Durability::fsync;
    uint64_t segment_size = 64ull * 1024 * 1024;
    int64_t retention_ns = 72ll * 3600 * 1'000'000'000;
};

// One field of an http sink's `headers`, name as written (compare it case-insensitively).
struct SinkHeader {
    std::string name;
    std::string value;
    // A live reload restarts a sink whose configuration changed (deliver::Engine::reconfigure).
    bool operator==(const SinkHeader&) const = default;
};

// sinks.NAME.http: POST (or `method`) each job to a URL.
struct HttpSinkConfig {
    std::string url;                  // as written, for messages and the summary
    bool tls = false;                 // https://
    std::string host;                 // lowercased; an IPv6 literal without its brackets
    uint16_t port = 80;               // default 80, or 443 with https
    std::string path_and_query = "/"; // as written (percent escapes kept); "/" when none
    std::string method = "POST";      // an RFC 9110 token, upper-cased at load
    int64_t timeout_ns = 10'000'000'000;
    uint32_t concurrency = 16; // requests in flight, 1..4096
    std::optional<Rate> rate;  // a token bucket over deliveries; none: unlimited
    // Added to every delivery, in order. Never one portcullis sets itself (Portcullis-*, Host,
    // Content-Length, hop-by-hop fields; webhook-id/-timestamp/-signature with signing).
    std::vector<SinkHeader> headers;
    std::optional<std::string> ca; // PEM CA file, resolved against the configuration's folder;
                                   // none: the system's store. Only with https.
    // Standard Webhooks v1 signing keys (`sign.secrets`): whsec_<base64>, base64 after the
    // prefix being the HMAC key. Empty: deliveries are not signed. A secret whose env or file
    // is unset has empty material (warned at load).
    std::vector<Secret> sign_secrets;
    // A live reload restarts a sink whose configuration changed (deliver::Engine::reconfigure).
    bool operator==(const HttpSinkConfig&) const = default;
};

// sinks.NAME.exec: run a command per job, without a shell.
struct ExecSinkConfig {
    // argv; command[0] is an absolute path (never looked up on PATH, so that check and serve
    // run the same file whatever their environment). Non-empty; no NUL in any argument.
    std::vector<std::string> command;
    uint32_t concurrency = 1; // processes at once, 1..256
    int64_t timeout_ns = 60'000'000'000;
    // A live reload restarts a sink whose configuration changed (deliver::Engine::reconfigure).
    bool operator==(const ExecSinkConfig&) const = default;
};

// sinks.NAME.nats: publish to NATS JetStream.
struct NatsSinkConfig {
    std::string url;  // as written
    bool tls = false; // tls://
    std::string host; // lowercased; an IPv6 literal without its brackets
    uint16_t port = 4222;
    // The subject, with {route} standing for the route's name: dot-separated tokens of
    // printable ASCII, no wildcards (* >), not starting with $.
    std::string subject;
    // credentials: at most one kind is set: user with password, token, or nkey_seed (a user
    // seed, SU...). All unset: no authentication.
    std::string user; // empty unless user/password
    std::optional<Secret> password;
    std::optional<Secret> token;
    std::optional<Secret> nkey_seed;
    uint32_t max_in_flight = 256;  // publishes awaiting their acknowledgement, 1..65536
    std::optional<std::string> ca; // PEM CA file, resolved against the configuration's folder;
                                   // none: the system's store. Only with tls://.
    // A live reload restarts a sink whose configuration changed (deliver::Engine::reconfigure).
    bool operator==(const NatsSinkConfig&) const = default;
};

// sinks.NAME.redis: XADD to a Redis stream.
struct RedisSinkConfig {
    std::string url;  // as written
    bool tls = false; // rediss://
    std::string host; // lowercased; an IPv6 literal without its brackets
    uint16_t port = 6379;
    uint32_t db = 0; // the URL's path: redis://host/3 selects database 3
    // The stream's key, with {route} standing for the route's name: printable ASCII, no spaces.
    std::string stream;
    uint64_t maxlen = 1'000'000; // MAXLEN ~, > 0
    // credentials: a password alone (AUTH password) or with a user (AUTH user password).
    std::string user; // empty: the default user
    std::optional<Secret> password;
    uint32_t max_in_flight = 256;  // XADDs awaiting their reply, 1..65536
    std::optional<std::string> ca; // PEM CA file, resolved against the configuration's folder;
                                   // none: the system's store. Only with rediss://.
    // A live reload restarts a sink whose configuration changed (deliver::Engine::reconfigure).
    bool operator==(const RedisSinkConfig&) const = default;
};

// One entry of `sinks` (SPEC section 8). Exactly the member that kind names is set.
// sinks.NAME.breaker: the circuit breaker of one sink (SPEC section 8).
struct BreakerConfig {
    uint32_t failures = 5;                // consecutive failed attempts that open it, 1..1000
    int64_t cooldown_ns = 30'000'000'000; // open this long before one probe, 100ms..1h
    // A live reload restarts a sink whose configuration changed (deliver::Engine::reconfigure).
    bool operator==(const BreakerConfig&) const = default;
};

// The health probe of a registered consumer's sink (never written in the configuration: see
// admin/consumer_store.hh): GET path on the sink's host every interval; while the answer is not
// 2xx the sink's breaker is held open.
struct HealthProbeConfig {
    std::string path; // starts with '/'
    int64_t interval_ns = 30'000'000'000;
    bool operator==(const HealthProbeConfig&) const = default;
};

struct SinkConfig {
    enum class Kind : uint8_t { http, exec, nats, redis };
    std::string name; // [a-z0-9_-]{1,64}, or consumer:<name> for a registered consumer's
    Kind kind = Kind::http;
    BreakerConfig breaker;
    std::optional<HealthProbeConfig> health; // registered consumers' http sinks only
    std::optional<HttpSinkConfig> http;
    std::optional<ExecSinkConfig> exec;
    std::optional<NatsSinkConfig> nats;
    std::optional<RedisSinkConfig> redis;
    SourceMark mark; // of the sink's name
};

struct TokenConfig {
    std::string name;
    SourceMark mark; // of its name, for messages
    std::array<uint8_t, 32> sha256{};
    std::vector<std::string> scopes;
};

struct Config {
    ServerConfig server;
    AdminConfig admin;
    SpoolConfig spool;
    std::vector<RouteConfig> routes; // in the order they appear
    std::vector<SinkConfig> sinks;   // in the order they appear
    std::vector<TokenConfig> tokens;
    std::map<std::string, std::string> integrity; // file name -> "sha256:<hex>"
    std::vector<std::string> files;               // the YAML files read, in merge order
    std::string directory; // the directory given to -c or the file's folder; "" for load_text
};

struct LoadResult {
    std::optional<Config> config;     // set when errors is empty
    std::vector<Diagnostic> errors;   // each names file:line:column and the key path
    std::vector<Diagnostic> warnings; // `check --strict` fails on these
    bool ok() const { return config.has_value() && errors.empty(); }
};

// Loads a YAML file or a directory of *.yaml files (name order, deep-merged). Reads the
// environment and secret files; never throws.
LoadResult load(const std::string& path);

// Loads from YAML text held in memory (tests, fuzzing). `name` stands for the file in messages.
LoadResult load_text(const std::string& name, const std::string& yaml);

// The default window of each scheme that has one (stripe, slack, standard, ed25519: 300 s).
std::optional<int64_t> default_tolerance_ns(Scheme s);

std::string_view scheme_name(Scheme s);
std::string_view durability_name(Durability d);
std::string_view proxy_protocol_name(ProxyProtocol p);
std::string_view sink_kind_name(SinkConfig::Kind k); // "http", "exec", "nats", "redis"

// The parsers the loader uses for single values, for the rest of the program (the admin API, the
// CLI). Each returns std::nullopt on error and then, when why is not null, sets it to a message
// fragment ("host bits set beyond /8: did you mean 10.0.0.0/8?").

// "10.0.0.0/8", "2001:db8::/32", "::ffff:10.0.0.0/104", or a bare address (a host route).
std::optional<Cidr> parse_cidr(std::string_view text, std::string* why = nullptr);
// "0.0.0.0:8080", "[::1]:9090", "localhost:8080".
std::optional<ListenAddress> parse_listen_address(std::string_view text,
                                                  std::string* why = nullptr);
// True when binding a and b would collide: the same address and port, or a wildcard host
// (0.0.0.0, ::) and anything on the same port; localhost counts as 127.0.0.1 and ::1. Port 0
// never collides: each bind gets its own ephemeral port.
bool listen_overlaps(const ListenAddress& a, const ListenAddress& b);
// "header:X-GitHub-Delivery", "json:/data/id", "query:id", "path:job_id". A path ref is checked
// here only for its name's shape; whether the route's path has that parameter is the caller's.
std::optional<FieldRef> parse_field_ref(std::string_view text, std::string* why = nullptr);
// An RFC 9110 token (header names, methods).
bool is_token(std::string_view s);
// 1 to 64 characters of [a-z0-9_-]: the names of routes, sinks and tokens (those in the
// configuration and those minted through POST /v1/tokens).
bool is_name(std::string_view s);
// The names a registered consumer's token and sink take (POST /v1/consumers): "consumer:" and
// the consumer's name, which is_name accepts and is at most max_consumer_name long, so that the
// whole stays within 64 characters. A colon never appears in a configured name: no clash.
constexpr std::string_view consumer_prefix = "consumer:";
constexpr size_t max_consumer_name = 64 - consumer_prefix.size();
bool is_consumer_name(std::string_view s);
// [a-z0-9_]+: the name of a route path's {param} segment, and of a path:PARAM reference.
bool is_param_name(std::string_view s);

} // namespace portcullis::config
