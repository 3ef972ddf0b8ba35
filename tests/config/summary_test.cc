#include "portcullis/config/summary.hh"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

using namespace portcullis::config;

TEST(Summary, ListsPlanesSpoolLimitsAndRoutesWithoutSecrets) {
    setenv("PORTCULLIS_TEST_SUMMARY", "summary-secret-material", 1);
    unsetenv("PORTCULLIS_TEST_SUMMARY_UNSET");
    LoadResult res = load_text("c.yaml", R"(
server:
  listen: ["0.0.0.0:8080"]
admin:
  listen: "127.0.0.1:9090"
routes:
  github:
    path: /webhooks/github
    verify:
      scheme: github
      secrets: [{env: PORTCULLIS_TEST_SUMMARY}, {env: PORTCULLIS_TEST_SUMMARY_UNSET}]
  gitlab:
    path: /webhooks/gitlab
    methods: [POST, PUT]
    verify: {scheme: shared_secret, header: X-Gitlab-Token, secrets: [{env: PORTCULLIS_TEST_SUMMARY}]}
    dedup: {key: "header:X-Gitlab-Event-UUID", window: 24h}
    max_attempts: 3
)");
    unsetenv("PORTCULLIS_TEST_SUMMARY");
    ASSERT_TRUE(res.ok());
    std::string summary = summarize(*res.config, 2);
    EXPECT_EQ(
        summary,
        "listen   public 0.0.0.0:8080 \u00b7 admin 127.0.0.1:9090\n"
        "shards   auto (2 cores) \u00b7 max 10000 connections, 256 per client \u00b7 drain 10s\n"
        "spool    ./var/spool \u00b7 durability fsync \u00b7 segments 64MiB \u00b7 retention 72h\n"
        "limits   header 16KiB \u00b7 64 headers \u00b7 body 1MiB \u00b7 timeouts header 10s "
        "body 30s idle 1m\n"
        "routes   2\n"
        "  github  POST /webhooks/github      verify github, 2 secrets "
        "(env:PORTCULLIS_TEST_SUMMARY, env:PORTCULLIS_TEST_SUMMARY_UNSET unset)\n"
        "  gitlab  POST,PUT /webhooks/gitlab  verify shared_secret (x-gitlab-token), 1 secret "
        "(env:PORTCULLIS_TEST_SUMMARY) \u00b7 dedup header:X-Gitlab-Event-UUID 24h \u00b7 3 "
        "attempts\n");
    EXPECT_EQ(summary.find("summary-secret-material"), std::string::npos);
}

TEST(Summary, ShowsFixedShardsHmacOptionsAndTokens) {
    LoadResult res = load_text("c.yaml", R"(
server: {shards: 4, client_ip: {proxy_protocol: v2}}
routes:
  acme:
    path: /acme/{tenant}
    verify:
      scheme: hmac
      header: X-Acme-Signature
      prefix: "sha256="
      timestamp_header: X-Acme-Timestamp
      tolerance: 5m
      secrets: [{value: abc}]
    rate_limit: {per_ip: 20/s, burst: 40, route: 100/min}
  open:
    path: /open
    verify: {scheme: none}
    keep_headers: [Cookie, Authorization]
tokens:
  worker: {sha256: "0000000000000000000000000000000000000000000000000000000000000000", scopes: ["jobs:read:*"]}
)");
    ASSERT_TRUE(res.ok());
    std::string summary = summarize(*res.config, 8);
    EXPECT_NE(summary.find("shards   4 \u00b7"), std::string::npos) << summary;
    EXPECT_NE(summary.find("clients  0 trusted proxies \u00b7 proxy_protocol v2 \u00b7 deny 0 "
                           "networks\n"),
              std::string::npos)
        << summary;
    EXPECT_NE(
        summary.find("  acme  POST /acme/{tenant}  verify hmac (x-acme-signature, sha256 hex, "
                     "prefix sha256=, timestamp x-acme-timestamp, signs "
                     "{timestamp}.{body}, tolerance 5m), 1 secret (value) \u00b7 rate 20/s "
                     "per ip burst 40 100/min route\n"),
        std::string::npos)
        << summary;
    EXPECT_NE(
        summary.find("  open  POST /open           verify none, unsigned \u00b7 keeps cookie, "
                     "authorization\n"),
        std::string::npos)
        << summary;
    EXPECT_NE(summary.find("tokens   1 (worker)\n"), std::string::npos) << summary;
    EXPECT_EQ(summary.find("abc"), std::string::npos) << summary;
}

// check prints the summary to a terminal: user text in it is escaped like in the messages.
TEST(Summary, EscapesUserText) {
    setenv("PORTCULLIS_TEST_SUMMARY", "summary-secret-material", 1);
    LoadResult res = load_text("c.yaml", R"(
spool: {dir: "/srv/\e[2Jspool"}
routes:
  acme:
    path: /acme
    verify:
      scheme: hmac
      header: X-Acme-Signature
      prefix: "\e]0;title\a"
      secrets: [{env: PORTCULLIS_TEST_SUMMARY}]
    dedup: {key: "json:/id\e[0m", window: 1h}
    ordering: {key: "query:k\u009b", timestamp: "json:/t\0"}
)");
    unsetenv("PORTCULLIS_TEST_SUMMARY");
    ASSERT_TRUE(res.ok());
    std::string summary = summarize(*res.config, 2);
    EXPECT_NE(summary.find("spool    /srv/\\x1b[2Jspool \u00b7"), std::string::npos) << summary;
    EXPECT_NE(summary.find("prefix \\x1b]0;title\\x07"), std::string::npos) << summary;
    EXPECT_NE(summary.find("dedup json:/id\\x1b[0m 1h"), std::string::npos) << summary;
    EXPECT_NE(summary.find("ordering query:k\\xc2\\x9b by json:/t\\x00"), std::string::npos)
        << summary;
    for (char c : summary) {
        auto u = static_cast<unsigned char>(c);
        EXPECT_FALSE((u < 0x20 && c != '\n') || u == 0x7f) << "raw byte " << int(u) << summary;
    }
}

TEST(Summary, ListsTlsListenersAndCertificates) {
    LoadResult res = load_text("c.yaml", R"(
server:
  listen: ["0.0.0.0:8080"]
  tls:
    listen: ["127.0.0.1:443", "[::1]:443"]
    certificates:
      - {cert: /etc/p/a.pem, key: /etc/p/a.key}
      - {cert: "/etc/p/\e[2Jb.pem", key: /etc/p/b.key}
    min_version: "1.3"
    session_tickets: false
)");
    ASSERT_TRUE(res.ok());
    // Without notes, the files; with notes (what check read in each), the notes too.
    std::string summary = summarize(*res.config, 2);
    EXPECT_EQ(summary.substr(0, summary.find('\n') + 1),
              "listen   public 0.0.0.0:8080 \u00b7 tls 127.0.0.1:443, [::1]:443 \u00b7 admin "
              "127.0.0.1:9090\n");
    EXPECT_NE(summary.find("tls      min_version 1.3 \u00b7 session tickets off \u00b7 2 "
                           "certificates\n"
                           "  /etc/p/a.pem (key /etc/p/a.key)\n"
                           "  /etc/p/\\x1b[2Jb.pem (key /etc/p/b.key)\n"),
              std::string::npos)
        << summary;
    summary = summarize(*res.config, 2, {"a.example.org \u00b7 ECDSA P-256", "unreadable"});
    EXPECT_NE(summary.find("  /etc/p/a.pem (key /etc/p/a.key) \u00b7 a.example.org \u00b7 ECDSA "
                           "P-256\n"
                           "  /etc/p/\\x1b[2Jb.pem (key /etc/p/b.key) \u00b7 unreadable\n"),
              std::string::npos)
        << summary;

    // TLS only, with tickets on.
    res = load_text("c.yaml", R"(
server:
  listen: []
  tls: {listen: ["127.0.0.1:8443"], certificates: [{cert: a.pem, key: a.key}]}
)");
    ASSERT_TRUE(res.ok());
    summary = summarize(*res.config, 2);
    EXPECT_EQ(summary.substr(0, summary.find('\n') + 1),
              "listen   public none \u00b7 tls 127.0.0.1:8443 \u00b7 admin 127.0.0.1:9090\n");
    EXPECT_NE(summary.find("tls      min_version 1.2 \u00b7 session tickets on (keys rotated every "
                           "12h) \u00b7 1 certificate\n  a.pem (key a.key)\n"),
              std::string::npos)
        << summary;
}

// Each sink on a line: kind, target, limits, and its secrets by origin only; a URL's query (where
// tokens travel) is left out. Each route's line says where it delivers and whether in order.
TEST(Summary, ListsSinksAndWhatRoutesDeliverWithoutSecrets) {
    setenv("PORTCULLIS_TEST_SUMMARY_SIGN", "whsec_c3VtbWFyeS1zZWNyZXQ=", 1);
    setenv("PORTCULLIS_TEST_SUMMARY", "summary-secret-material", 1);
    unsetenv("PORTCULLIS_TEST_SUMMARY_UNSET");
    LoadResult res = load_text("c.yaml", R"(
sinks:
  app:
    http:
      url: "https://app.internal:8443/hooks/github?code=query-secret"
      rate: 200/s
      headers: {X-Env: prod, X-Token: header-secret}
      ca: /etc/p/ca.pem
      sign: {secrets: [{env: PORTCULLIS_TEST_SUMMARY_SIGN}, {env: PORTCULLIS_TEST_SUMMARY_UNSET}]}
  deploy:
    exec:
      command: [/bin/sh, -c, argument-secret]
      concurrency: 2
      timeout: 5m
  bus:
    nats:
      url: "tls://10.0.0.7"
      subject: "webhooks.{route}"
      credentials: {nkey_seed: {env: PORTCULLIS_TEST_SUMMARY_UNSET}}
  stream:
    redis:
      url: "redis://[::1]:6380/2"
      stream: "webhooks:{route}"
      maxlen: 5000
      max_in_flight: 32
      credentials: {user: portcullis, password: {env: PORTCULLIS_TEST_SUMMARY}}
  plain:
    http: {url: "http://hooks"}
  token:
    nats:
      url: "nats://n"
      subject: s
      max_in_flight: 16
      credentials: {token: {env: PORTCULLIS_TEST_SUMMARY}}
  bare:
    redis: {url: "redis://r", stream: s, credentials: {password: {value: inline}}}
routes:
  github:
    path: /webhooks/github
    verify: {scheme: none}
    deliver: [app, bus]
    ordered: true
  keyed:
    path: /keyed
    verify: {scheme: none}
    ordering: {key: "json:/id", timestamp: "json:/ts"}
    deliver: [deploy, stream, plain, token, bare]
    ordered: true
  pulled:
    path: /pulled
    verify: {scheme: none}
)");
    unsetenv("PORTCULLIS_TEST_SUMMARY_SIGN");
    unsetenv("PORTCULLIS_TEST_SUMMARY");
    ASSERT_TRUE(res.ok());
    std::string summary = summarize(*res.config, 2);
    EXPECT_NE(
        summary.find("routes   3\n"
                     "  github  POST /webhooks/github  verify none, unsigned \u00b7 deliver "
                     "app, bus \u00b7 ordered per route\n"
                     "  keyed   POST /keyed            verify none, unsigned \u00b7 ordering "
                     "json:/id by json:/ts \u00b7 deliver deploy, stream, plain, token, bare "
                     "\u00b7 ordered per json:/id\n"
                     "  pulled  POST /pulled           verify none, unsigned\n"
                     "sinks    7\n"
                     "  app     http   POST https://app.internal:8443/hooks/github?... "
                     "\u00b7 concurrency 16 \u00b7 timeout 10s \u00b7 rate 200/s \u00b7 adds "
                     "X-Env, X-Token \u00b7 ca /etc/p/ca.pem \u00b7 signed, 2 secrets "
                     "(env:PORTCULLIS_TEST_SUMMARY_SIGN, env:PORTCULLIS_TEST_SUMMARY_UNSET "
                     "unset)\n"
                     "  deploy  exec   /bin/sh + 2 arguments \u00b7 concurrency 2 \u00b7 "
                     "timeout 5m\n"
                     "  bus     nats   tls://10.0.0.7 subject webhooks.{route} \u00b7 "
                     "max_in_flight 256 \u00b7 nkey_seed env:PORTCULLIS_TEST_SUMMARY_UNSET "
                     "unset\n"
                     "  stream  redis  redis://[::1]:6380/2 stream webhooks:{route} \u00b7 "
                     "maxlen ~5000 \u00b7 max_in_flight 32 \u00b7 user portcullis, password "
                     "env:PORTCULLIS_TEST_SUMMARY\n"
                     "  plain   http   POST http://hooks \u00b7 concurrency 16 \u00b7 timeout "
                     "10s\n"
                     "  token   nats   nats://n subject s \u00b7 max_in_flight 16 \u00b7 token "
                     "env:PORTCULLIS_TEST_SUMMARY\n"
                     "  bare    redis  redis://r stream s \u00b7 maxlen ~1000000 \u00b7 "
                     "max_in_flight 256 \u00b7 password value\n"),
        std::string::npos)
        << summary;
    for (const char* secret : {"c3VtbWFyeS1zZWNyZXQ", "summary-secret-material", "query-secret",
                               "header-secret", "argument-secret", "inline"}) {
        EXPECT_EQ(summary.find(secret), std::string::npos) << secret << "\n" << summary;
    }
}

TEST(Summary, EscapesUserTextOfSinks) {
    LoadResult res = load_text("c.yaml", R"(
sinks:
  app:
    http: {url: "https://a", ca: "/etc/\e[2Jca.pem"}
  deploy:
    exec: {command: ["/opt/\e]0;x\a"]}
routes:
  r: {path: /r, verify: {scheme: none}, deliver: [app, deploy]}
)");
    ASSERT_TRUE(res.ok());
    std::string summary = summarize(*res.config, 2);
    EXPECT_NE(summary.find("ca /etc/\\x1b[2Jca.pem"), std::string::npos) << summary;
    EXPECT_NE(summary.find("exec   /opt/\\x1b]0;x\\x07 \u00b7"), std::string::npos) << summary;
    for (char c : summary) {
        auto u = static_cast<unsigned char>(c);
        EXPECT_FALSE((u < 0x20 && c != '\n') || u == 0x7f) << "raw byte " << int(u) << summary;
    }
}
