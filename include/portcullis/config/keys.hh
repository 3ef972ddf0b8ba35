// Every key the configuration may hold: the loader's unknown-key check reads its allowed names
// from this table (loader_*.cc), `portcullis config-keys` prints it, and portcullis.yaml(5) is
// generated from it (scripts/man-pages). A key the loader reads is a row here, or it is refused.
//
//   path     dotted; `*` stands for a name the operator chooses (a route, a sink, a header, a
//            file), `[]` for the items of a list; `<secret>` is the shape every secret shares
//   type     what the value is, with its range
//   fallback the default when the key is absent, as written in YAML; "" when there is none
//   example  a valid value in YAML flow style (tests/config/keys_test.cc loads each one)
//   meaning  one or two sentences
//
// Within a mapping, the rows keep the order the loader's messages list the allowed keys in.
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace portcullis::config {

struct KeyDoc {
    std::string_view path;
    std::string_view type;
    std::string_view fallback;
    std::string_view example;
    std::string_view meaning;
};

// clang-format off
inline constexpr KeyDoc key_table[] = {
    // ---- top level --------------------------------------------------------------------------
    {"server", "mapping", "", "{}",
     "The public plane: where webhooks are accepted, and its limits."},
    {"admin", "mapping", "", "{}",
     "The control plane: the pull API, metrics, events, tokens and reload. It never shares a "
     "socket with the public plane."},
    {"spool", "mapping", "", "{}",
     "Where accepted jobs are written before portcullis answers 202."},
    {"routes", "mapping of routes", "", "{}",
     "One entry per webhook endpoint, by name."},
    {"sinks", "mapping of sinks", "", "{}",
     "Push delivery: where a route's jobs go onward, by name."},
    {"tokens", "mapping of tokens", "", "{}",
     "The control plane's bearer tokens, by name; only their SHA-256 is written here."},
    {"integrity", "mapping of file names to pins", "", "{}",
     "Files pinned by their SHA-256: a mismatch refuses to start or reload."},

    // ---- server -----------------------------------------------------------------------------
    {"server.listen", "list of addresses", "[\"0.0.0.0:8080\"]", "[\"127.0.0.1:8080\"]",
     "Addresses to accept webhooks on: IPv4 a.b.c.d:port, IPv6 [addr]:port or localhost:port. "
     "May be [] when server.tls.listen serves instead. Needs a restart."},
    {"server.shards", "auto, or a whole number from 1 to 256", "auto", "2",
     "Shards (a thread, an io_uring and a spool each); auto is one per usable core. Needs a "
     "restart."},
    {"server.max_connections", "whole number, 1 to 4294967295", "10000", "10000",
     "Open public connections at most, over all shards; past it a connection is closed at once. "
     "Needs a restart."},
    {"server.max_connections_per_ip", "whole number, 1 to 4294967295", "256", "256",
     "Open connections at most from one client address; peers in trusted_proxies are not "
     "capped. Needs a restart."},
    {"server.deny", "list of CIDRs", "[]", "[\"192.0.2.0/24\"]",
     "Networks refused on every route, before anything else is read."},
    {"server.drain_timeout", "duration", "10s", "10s",
     "On SIGTERM or SIGINT: how long in-flight requests are given to finish."},
    {"server.limits", "mapping", "", "{headers: 64}",
     "The size of a request."},
    {"server.limits.header_bytes", "size, 1KiB to 1MiB", "16KiB", "16KiB",
     "A request head larger than this gets 431."},
    {"server.limits.headers", "whole number, 1 to 1000", "64", "64",
     "A request with more header fields gets 431."},
    {"server.limits.body_bytes", "size, 1 byte to 1GiB", "1MiB", "1MiB",
     "A body larger than this gets 413."},
    {"server.timeouts", "mapping", "", "{idle: 60s}",
     "How long a connection may take; a slow client gets 408."},
    {"server.timeouts.header", "duration, at least 1ms", "10s", "10s",
     "Time to receive a request's head, from its first byte."},
    {"server.timeouts.body", "duration, at least 1ms", "30s", "30s",
     "Time to receive a request's body, from the end of its head."},
    {"server.timeouts.idle", "duration, at least 1ms", "60s", "60s",
     "How long a keep-alive connection may wait for its next request."},
    {"server.client_ip", "mapping", "", "{proxy_protocol: off}",
     "Who the client is when portcullis sits behind a load balancer."},
    {"server.client_ip.trusted_proxies", "list of CIDRs", "[]", "[\"10.0.0.0/8\"]",
     "Peers whose X-Forwarded-For (or PROXY header) is believed."},
    {"server.client_ip.proxy_protocol", "off, v1, v2 or any", "off", "v2",
     "The PROXY protocol on the public listeners: when on, every connection must start with a "
     "PROXY header of that version, and the address it names is the client."},
    {"server.tls", "mapping", "", "{session_tickets: true}",
     "TLS listeners: the same routes and answers over HTTPS (TLS 1.2 and 1.3). Off unless "
     "server.tls.listen names an address. Needs a restart."},
    {"server.tls.listen", "list of addresses", "[]", "[\"127.0.0.1:8443\"]",
     "Addresses to accept TLS connections on."},
    {"server.tls.certificates", "list of {cert, key}", "", "[{cert: c.pem, key: c.key}]",
     "Certificates chosen by SNI (an exact name, then a wildcard, then the first); at least one "
     "when server.tls.listen is set. SIGHUP rereads the files."},
    {"server.tls.certificates[].cert", "path", "", "c.pem",
     "PEM file holding the leaf certificate then its chain, relative to the configuration's "
     "folder."},
    {"server.tls.certificates[].key", "path", "", "c.key",
     "PEM private key (ECDSA, RSA of 2048 bits or more, or Ed25519; not encrypted)."},
    {"server.tls.min_version", "\"1.2\" or \"1.3\"", "\"1.2\"", "\"1.3\"",
     "The oldest TLS version offered; 1.0 and 1.1 never are."},
    {"server.tls.session_tickets", "true or false", "true", "false",
     "Resumption by session ticket; the ticket keys are shared by every shard and rotated every "
     "12 hours."},

    // ---- admin ------------------------------------------------------------------------------
    {"admin.listen", "address", "\"127.0.0.1:9090\"", "\"127.0.0.1:9090\"",
     "The control plane's address; it may not overlap server.listen. Keep it on loopback or a "
     "private network. Needs a restart."},
    {"admin.max_connections", "whole number, 1 to 65536", "256", "256",
     "Open control-plane connections at most; past it a connection is closed at once. Needs a "
     "restart."},
    {"admin.events", "mapping", "", "{subscribers: 16}",
     "GET /events: the server-sent event stream."},
    {"admin.events.buffer", "whole number, 100 to 1000000", "10000", "10000",
     "Recent events kept for replay from Last-Event-ID. Needs a restart."},
    {"admin.events.subscribers", "whole number, 1 to 1024", "16", "16",
     "Event streams open at once (they count against admin.max_connections too)."},
    {"admin.events.backlog", "size, 64KiB to 256MiB", "4MiB", "4MiB",
     "Bytes that may wait behind a stream's send in flight before the subscriber is cut."},
    {"admin.consumers", "mapping", "", "{health_interval: 30s}",
     "Consumers registered with POST /v1/consumers (kept in consumers.state)."},
    {"admin.consumers.health_interval", "duration, 1s to 24h", "30s", "30s",
     "How often a registered consumer with a health_path is probed; while the probe fails its "
     "sink waits."},

    // ---- spool ------------------------------------------------------------------------------
    {"spool.dir", "path", "./var/spool", "/var/lib/portcullis/spool",
     "The spool's folder, relative to the working directory; it also holds portcullis.lock, "
     "tokens.state and consumers.state. Needs a restart."},
    {"spool.durability", "fsync, batch or none", "fsync", "batch",
     "fsync: answer after fdatasync; batch: answer after write, fdatasync within 10 ms; none: "
     "answer after write, the kernel flushes when it will. Routes may override it."},
    {"spool.segment_size", "size, 1MiB to 4GiB", "64MiB", "64MiB",
     "Size of one spool segment file. Needs a restart."},
    {"spool.retention", "duration, at least 1ms", "72h", "72h",
     "How long finished jobs are kept before their segments are deleted. Needs a restart."},

    // ---- routes -----------------------------------------------------------------------------
    {"routes.*", "mapping", "", "{path: /y, verify: {scheme: none}}",
     "A route; its name is 1 to 64 characters of [a-z0-9_-] and appears in logs, metrics, "
     "events, token scopes and the pull API."},
    {"routes.*.path", "string", "", "/webhooks/x/{tenant}",
     "Required. The exact path; {param} segments are allowed. Two routes a request could not "
     "tell apart are an error; /healthz is reserved."},
    {"routes.*.methods", "list of methods", "[POST]", "[POST, PUT]",
     "Methods accepted, upper case as HTTP sends them; others get 405."},
    {"routes.*.verify", "mapping", "", "{scheme: none}",
     "Required. How a request is verified."},
    {"routes.*.dedup", "mapping", "", "{key: \"header:X-Id\", window: 24h}",
     "Drop redeliveries: the same key inside the window answers 200 with the first job's id "
     "(409 when the body differs)."},
    {"routes.*.ordering", "mapping", "", "{key: \"header:X-Key\", timestamp: \"header:X-Ts\"}",
     "Refuse a delivery not newer than the last one accepted for the same key (409 stale)."},
    {"routes.*.rate_limit", "mapping", "", "{per_ip: 20/s}",
     "Token buckets, per client address and for the whole route; 429 past them. Needs per_ip, "
     "route or both."},
    {"routes.*.allow", "list of CIDRs", "[] (everyone)", "[\"140.82.112.0/20\"]",
     "Only these networks may call the route; others get 403."},
    {"routes.*.max_attempts", "whole number, 1 to 1000", "10", "10",
     "Deliveries of a job before it goes to the dead letters."},
    {"routes.*.durability", "fsync, batch or none", "spool.durability", "batch",
     "Overrides spool.durability for this route."},
    {"routes.*.keep_headers", "list of header names", "[]", "[Authorization]",
     "Credentials (Authorization, Proxy-Authorization, Cookie) to store with the jobs after "
     "all; by default they are left out of the spool."},
    {"routes.*.deliver", "list of sink names", "[]", "[http]",
     "Push delivery: every job of the route also goes to each sink named here."},
    {"routes.*.ordered", "true or false", "false", "false",
     "One job at a time per sink, in arrival order, per value of ordering.key (the whole route "
     "without ordering). Needs deliver."},
    {"routes.*.verify.scheme", "github, stripe, slack, standard, shopify, hmac, shared_secret, "
     "ed25519 or none", "", "hmac",
     "Required. The provider's signature scheme; none accepts unsigned requests (a warning)."},
    {"routes.*.verify.secrets", "list of 1 to 8 secrets", "", "[{env: WEBHOOK_SECRET}]",
     "Required except with scheme none. Any may match: list the new secret next to the old one "
     "while rotating. An unset one is a warning, and the route answers 401 secret_unset until it "
     "is set."},
    {"routes.*.verify.tolerance", "duration, at least 1s", "300s", "5m",
     "The timestamp window, both directions (stripe, slack, standard, ed25519, and hmac with "
     "timestamp_header)."},
    {"routes.*.verify.header", "header name", "X-Callback-Secret", "X-Sig",
     "hmac: the header carrying the signature (required); shared_secret: the header carrying the "
     "secret."},
    {"routes.*.verify.prefix", "string", "\"\"", "\"sha256=\"",
     "hmac: text before the signature in its header."},
    {"routes.*.verify.encoding", "hex or base64", "hex", "base64",
     "hmac: how the signature is written."},
    {"routes.*.verify.algorithm", "sha256, sha512 or sha1", "sha256", "sha512",
     "hmac: the hash of the HMAC."},
    {"routes.*.verify.timestamp_header", "header name", "", "X-Ts",
     "hmac: the header carrying a signed timestamp (Unix seconds); with it, tolerance applies."},
    {"routes.*.verify.template", "string", "\"{body}\", or \"{timestamp}.{body}\" with "
     "timestamp_header", "\"{timestamp}.{body}\"",
     "hmac: what is signed: literal text, {timestamp} (only with timestamp_header) and {body}, "
     "which must come last."},
    {"routes.*.dedup.key", "field reference", "the provider's delivery id", "\"header:X-Id\"",
     "What identifies a delivery: header:NAME, json:/pointer, query:NAME or path:PARAM. "
     "Required for schemes without a standard delivery id (github: header:X-GitHub-Delivery, "
     "standard: header:webhook-id, stripe: json:/id, shopify: header:X-Shopify-Webhook-Id, "
     "slack: json:/event_id)."},
    {"routes.*.dedup.window", "duration, at least 1ms", "", "24h",
     "Required. How long a key is remembered; keys survive restarts."},
    {"routes.*.ordering.key", "field reference", "", "\"json:/project/id\"",
     "Required. What a sequence is keyed by."},
    {"routes.*.ordering.timestamp", "field reference", "", "\"json:/updated_at\"",
     "Required. The delivery's time: an integer or an RFC 3339 date-time."},
    {"routes.*.rate_limit.per_ip", "rate", "", "20/s",
     "A token bucket per client address."},
    {"routes.*.rate_limit.burst", "whole number, 1 to 4294967295", "the per_ip count", "40",
     "The per_ip bucket's size."},
    {"routes.*.rate_limit.route", "rate", "", "2000/s",
     "A token bucket for the whole route."},

    // ---- sinks ------------------------------------------------------------------------------
    {"sinks.*", "mapping", "", "{http: {url: \"http://127.0.0.1:1/\"}}",
     "A sink: exactly one of http, exec, nats or redis, and its breaker. Names are like route "
     "names."},
    {"sinks.*.http", "mapping", "", "{url: \"http://127.0.0.1:1/\"}",
     "POST (or method) each job to a URL."},
    {"sinks.*.exec", "mapping", "", "{command: [/bin/true]}",
     "Run a command per job, without a shell."},
    {"sinks.*.nats", "mapping", "", "{url: \"nats://127.0.0.1:4222\", subject: x}",
     "Publish each job to NATS JetStream."},
    {"sinks.*.redis", "mapping", "", "{url: \"redis://127.0.0.1:6379\", stream: x}",
     "XADD each job to a Redis stream."},
    {"sinks.*.breaker", "mapping", "", "{failures: 5}",
     "The sink's circuit breaker."},
    {"sinks.*.breaker.failures", "whole number, 1 to 1000", "5", "5",
     "Consecutive failed attempts that open the breaker."},
    {"sinks.*.breaker.cooldown", "duration, 100ms to 1h", "30s", "30s",
     "How long the breaker stays open before one probe."},
    {"sinks.*.http.url", "URL", "", "\"https://app.internal:8443/hooks\"",
     "Required. http:// or https://, with a host name, an IPv4 address or a bracketed IPv6 "
     "address; no user or password."},
    {"sinks.*.http.method", "method", "POST", "PUT",
     "Upper-cased; not CONNECT, HEAD or TRACE."},
    {"sinks.*.http.timeout", "duration, at least 1ms", "10s", "10s",
     "Per request."},
    {"sinks.*.http.concurrency", "whole number, 1 to 4096", "16", "16",
     "Requests in flight."},
    {"sinks.*.http.rate", "rate", "unlimited", "200/s",
     "A token bucket over deliveries."},
    {"sinks.*.http.headers", "mapping of header names to values", "{}", "{X-Env: prod}",
     "Added to every delivery; not Host, Content-Length, hop-by-hop fields or Portcullis-*, nor "
     "webhook-* with sign."},
    {"sinks.*.http.ca", "path", "the system's store", "ca.pem",
     "PEM file of the CAs that sign the server's certificate, relative to the configuration's "
     "folder; https only."},
    {"sinks.*.http.sign", "mapping", "", "{secrets: [{value: whsec_YWJj}]}",
     "Sign deliveries with Standard Webhooks v1 headers (webhook-id, webhook-timestamp, "
     "webhook-signature)."},
    {"sinks.*.http.headers.*", "string", "", "prod",
     "One header field's value."},
    {"sinks.*.http.sign.secrets", "list of 1 to 8 secrets", "", "[{value: whsec_YWJj}]",
     "The receiver's whsec_<base64> secrets; each signs, for rotation."},
    {"sinks.*.exec.command", "list of strings", "", "[/bin/true, --from-webhook]",
     "Required. The program (an absolute path, never looked up on PATH) and its arguments."},
    {"sinks.*.exec.concurrency", "whole number, 1 to 256", "1", "1",
     "Processes at once."},
    {"sinks.*.exec.timeout", "duration, at least 1ms", "60s", "5m",
     "How long one run may take."},
    {"sinks.*.nats.url", "URL", "", "\"nats://127.0.0.1:4222\"",
     "Required. nats:// or tls://, host and port (default 4222)."},
    {"sinks.*.nats.subject", "string", "", "\"webhooks.{route}\"",
     "Required. The subject; {route} stands for the route's name. No wildcards, not starting "
     "with $."},
    {"sinks.*.nats.credentials", "mapping", "none", "{token: {env: WEBHOOK_SECRET}}",
     "One kind: user and password, token, or nkey_seed."},
    {"sinks.*.nats.max_in_flight", "whole number, 1 to 65536", "256", "256",
     "Publishes awaiting their acknowledgement."},
    {"sinks.*.nats.ca", "path", "the system's store", "ca.pem",
     "PEM CA file for a tls:// URL, relative to the configuration's folder."},
    {"sinks.*.nats.credentials.user", "string", "", "portcullis",
     "The user name; with password."},
    {"sinks.*.nats.credentials.password", "secret", "", "{env: WEBHOOK_SECRET}",
     "The password; with user."},
    {"sinks.*.nats.credentials.token", "secret", "", "{env: WEBHOOK_SECRET}",
     "An authentication token."},
    {"sinks.*.nats.credentials.nkey_seed", "secret", "",
     "{value: SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU}",
     "A user NKey seed (SU...)."},
    {"sinks.*.redis.url", "URL", "", "\"redis://127.0.0.1:6379/0\"",
     "Required. redis:// or rediss://, host, port (default 6379) and database (the path)."},
    {"sinks.*.redis.stream", "string", "", "\"webhooks:{route}\"",
     "Required. The stream's key; {route} stands for the route's name."},
    {"sinks.*.redis.maxlen", "whole number, at least 1", "1000000", "1000000",
     "XADD MAXLEN ~ this."},
    {"sinks.*.redis.credentials", "mapping", "none", "{password: {env: WEBHOOK_SECRET}}",
     "AUTH password, or AUTH user password."},
    {"sinks.*.redis.max_in_flight", "whole number, 1 to 65536", "256", "256",
     "XADDs awaiting their reply."},
    {"sinks.*.redis.ca", "path", "the system's store", "ca.pem",
     "PEM CA file for a rediss:// URL, relative to the configuration's folder."},
    {"sinks.*.redis.credentials.user", "string", "the default user", "portcullis",
     "The user name."},
    {"sinks.*.redis.credentials.password", "secret", "", "{env: WEBHOOK_SECRET}",
     "Required. The password."},

    // ---- tokens, integrity ------------------------------------------------------------------
    {"tokens.*", "mapping", "", "{sha256: \"0000000000000000000000000000000000000000000000000000000000000000\", scopes: [\"metrics:read\"]}",
     "A control-plane token; its name is like a route's."},
    {"tokens.*.sha256", "64 hex characters", "",
     "\"0000000000000000000000000000000000000000000000000000000000000000\"",
     "Required. The SHA-256 of the token, as portcullis token new prints it."},
    {"tokens.*.scopes", "list of scopes", "", "[\"jobs:consume:github\", \"!jobs:read:stripe\"]",
     "Required. [!]resource:action[:route-glob]: jobs:consume|read|replay|enqueue, metrics:read, "
     "events:read, admin:tokens|reload|consumers, or * for either part; a leading ! denies, and "
     "deny wins."},
    {"integrity.*", "\"sha256:\" and 64 hex characters", "",
     "\"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"",
     "The pinned SHA-256 of the file named by the key, relative to the configuration's folder."},

    // ---- the shape of every secret ----------------------------------------------------------
    {"<secret>.env", "environment variable name", "", "GITHUB_WEBHOOK_SECRET",
     "Read from the environment when the configuration is loaded."},
    {"<secret>.file", "path", "", "/etc/portcullis/github.secret",
     "Read from a file (one trailing newline is dropped), relative to the working directory."},
    {"<secret>.value", "string", "", "abc",
     "Written inline: accepted, and warned about (check --strict refuses it)."},
};
// clang-format on

inline constexpr std::string_view key_parent(std::string_view path) {
    size_t dot = path.rfind('.');
    return dot == std::string_view::npos ? std::string_view() : path.substr(0, dot);
}

inline constexpr std::string_view key_name(std::string_view path) {
    size_t dot = path.rfind('.');
    return dot == std::string_view::npos ? path : path.substr(dot + 1);
}

// How many keys the mapping at parent holds ("" is the top level).
consteval size_t key_count(std::string_view parent) {
    size_t n = 0;
    for (const KeyDoc& k : key_table) {
        n += key_parent(k.path) == parent ? 1 : 0;
    }
    return n;
}

// The names of the keys the mapping at parent holds, in the table's order:
//   constexpr auto server_keys = keys_of<key_count("server")>("server");
template <size_t N>
consteval std::array<std::string_view, N> keys_of(std::string_view parent) {
    std::array<std::string_view, N> out{};
    size_t i = 0;
    for (const KeyDoc& k : key_table) {
        if (key_parent(k.path) == parent) {
            out[i++] = key_name(k.path);
        }
    }
    return out;
}

// True when every name of part is one of whole (a scheme's options out of verify's).
consteval bool keys_within(std::span<const std::string_view> part,
                           std::span<const std::string_view> whole) {
    for (std::string_view p : part) {
        bool found = false;
        for (std::string_view w : whole) {
            found = found || p == w;
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

// The table for a reader (`portcullis config-keys`): one block per key.
std::string key_reference_text();

// The table as the KEYS and SECRETS sections of portcullis.yaml(5), in man(7) roff; the page's
// other sections are docs/man/portcullis.yaml.5.in (scripts/man-pages puts them together).
std::string key_reference_roff();

} // namespace portcullis::config
