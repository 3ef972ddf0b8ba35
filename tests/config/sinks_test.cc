// The sinks section and a route's deliver and ordered (SPEC section 8): what the loader accepts,
// the defaults it fills in, and each refusal with its file:line:column, key path and message.
//
// Like loader_test.cc, the tables are {yaml, expected}: expected lists substrings that must all
// appear in the formatted errors (or warnings); an empty list means the text loads cleanly.
#include "portcullis/config/config.hh"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

using namespace portcullis::config;

namespace {

struct Row {
    std::string yaml;
    std::vector<std::string> expected; // empty: loads cleanly
};

std::string formatted(const std::vector<Diagnostic>& ds) {
    std::string out;
    for (const Diagnostic& d : ds) {
        out += d.format() + "\n";
    }
    return out;
}

void expect_errors(const std::vector<Row>& rows) {
    for (const Row& r : rows) {
        LoadResult res = load_text("c.yaml", r.yaml);
        std::string errors = formatted(res.errors);
        if (r.expected.empty()) {
            EXPECT_TRUE(res.ok()) << r.yaml << "\n---\n" << errors;
            continue;
        }
        EXPECT_FALSE(res.ok()) << r.yaml;
        for (const std::string& e : r.expected) {
            EXPECT_NE(errors.find(e), std::string::npos) << "missing: " << e << "\nin:\n"
                                                         << r.yaml << "\n---\n"
                                                         << errors;
        }
    }
}

void expect_warnings(const std::vector<Row>& rows) {
    for (const Row& r : rows) {
        LoadResult res = load_text("c.yaml", r.yaml);
        EXPECT_TRUE(res.ok()) << r.yaml << "\n---\n" << formatted(res.errors);
        std::string warnings = formatted(res.warnings);
        if (r.expected.empty()) {
            EXPECT_TRUE(res.warnings.empty()) << r.yaml << "\n---\n" << warnings;
        }
        for (const std::string& w : r.expected) {
            EXPECT_NE(warnings.find(w), std::string::npos) << "missing: " << w << "\nin:\n"
                                                           << r.yaml << "\n---\n"
                                                           << warnings;
        }
    }
}

// Sets an environment variable for the life of the object.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const char* value) : _name(name) {
        const char* old = std::getenv(name);
        _old = old != nullptr ? std::optional<std::string>(old) : std::nullopt;
        if (value == nullptr) {
            unsetenv(name);
        } else {
            setenv(name, value, 1);
        }
    }
    ~ScopedEnv() {
        if (_old) {
            setenv(_name, _old->c_str(), 1);
        } else {
            unsetenv(_name);
        }
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    const char* _name;
    std::optional<std::string> _old;
};

class TempDir {
public:
    TempDir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "sinks-test-XXXXXX").string();
        char* made = mkdtemp(pattern.data());
        EXPECT_NE(made, nullptr);
        _path = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(_path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::string path() const { return _path.string(); }
    std::string write(const std::string& name, const std::string& text, mode_t mode = 0644) const {
        std::ofstream(_path / name, std::ios::binary) << text;
        std::string file = (_path / name).string();
        chmod(file.c_str(), mode);
        return file;
    }

private:
    std::filesystem::path _path;
};

// A route r at /r, verified (so that it warns about nothing), delivering to `deliver`.
std::string route(const std::string& deliver = "[s]") {
    return "routes:\n  r:\n    path: /r\n    verify: {scheme: github, secrets: [{env: "
           "PORTCULLIS_TEST_GH}]}\n    deliver: " +
           deliver + "\n";
}

// A sink s of one kind, its keys (each a line without indentation) from line 4 on, column 7;
// route r delivers to it.
std::string sink(const std::string& kind, const std::vector<std::string>& lines) {
    std::string out = "sinks:\n  s:\n    " + kind + ":\n";
    for (const std::string& l : lines) {
        out += "      " + l + "\n";
    }
    return out + route();
}

const SinkConfig& only_sink(const LoadResult& res) {
    static const SinkConfig none;
    EXPECT_TRUE(res.ok()) << formatted(res.errors);
    if (!res.ok() || res.config->sinks.size() != 1) {
        ADD_FAILURE() << "expected one sink";
        return none;
    }
    return res.config->sinks[0];
}

constexpr int64_t s_ns = 1'000'000'000;

} // namespace

class SinksConfig : public ::testing::Test {
protected:
    ScopedEnv _gh{"PORTCULLIS_TEST_GH", "gh-secret"};
    ScopedEnv _sign{"PORTCULLIS_TEST_SIGN", "whsec_c2lnbmluZy1rZXk="};
    ScopedEnv _password{"PORTCULLIS_TEST_PASSWORD", "pw"};
};

// The http sink of SPEC section 8, every key given.
TEST_F(SinksConfig, HttpSinkOfTheSpec) {
    LoadResult res = load_text("c.yaml", R"(sinks:
  app:
    http:
      url: "https://App.Internal:8443/hooks/github"
      method: POST
      timeout: 10s
      concurrency: 16
      rate: 200/s
      headers: {X-Env: prod, x-trace: ""}
      ca: /etc/portcullis/app-ca.pem
      sign: {secrets: [{env: PORTCULLIS_TEST_SIGN}]}
routes:
  github:
    path: /webhooks/github
    verify: {scheme: github, secrets: [{env: PORTCULLIS_TEST_GH}]}
    deliver: [app]
)");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_TRUE(res.warnings.empty()) << formatted(res.warnings);
    const SinkConfig& s = only_sink(res);
    EXPECT_EQ(s.name, "app");
    EXPECT_EQ(s.kind, SinkConfig::Kind::http);
    EXPECT_EQ(s.mark.line, 2);
    EXPECT_EQ(s.mark.column, 3);
    ASSERT_TRUE(s.http);
    EXPECT_FALSE(s.exec || s.nats || s.redis);
    const HttpSinkConfig& h = *s.http;
    EXPECT_EQ(h.url, "https://App.Internal:8443/hooks/github");
    EXPECT_TRUE(h.tls);
    EXPECT_EQ(h.host, "app.internal");
    EXPECT_EQ(h.port, 8443);
    EXPECT_EQ(h.path_and_query, "/hooks/github");
    EXPECT_EQ(h.method, "POST");
    EXPECT_EQ(h.timeout_ns, 10 * s_ns);
    EXPECT_EQ(h.concurrency, 16u);
    ASSERT_TRUE(h.rate);
    EXPECT_EQ(h.rate->count, 200u);
    EXPECT_EQ(h.rate->period_ns, s_ns);
    ASSERT_EQ(h.headers.size(), 2u);
    EXPECT_EQ(h.headers[0].name, "X-Env");
    EXPECT_EQ(h.headers[0].value, "prod");
    EXPECT_EQ(h.headers[1].name, "x-trace");
    EXPECT_EQ(h.headers[1].value, "");
    EXPECT_EQ(h.ca, "/etc/portcullis/app-ca.pem");
    ASSERT_EQ(h.sign_secrets.size(), 1u);
    EXPECT_EQ(h.sign_secrets[0].material, "whsec_c2lnbmluZy1rZXk=");
    EXPECT_EQ(h.sign_secrets[0].origin, "env:PORTCULLIS_TEST_SIGN");
    EXPECT_EQ(res.config->routes.at(0).deliver, std::vector<std::string>{"app"});
    EXPECT_FALSE(res.config->routes.at(0).ordered);
}

TEST_F(SinksConfig, HttpDefaults) {
    const HttpSinkConfig plain =
        *only_sink(load_text("c.yaml", sink("http", {"url: http://hooks"}))).http;
    EXPECT_EQ(plain.url, "http://hooks");
    EXPECT_FALSE(plain.tls);
    EXPECT_EQ(plain.host, "hooks");
    EXPECT_EQ(plain.port, 80);
    EXPECT_EQ(plain.path_and_query, "/");
    EXPECT_EQ(plain.method, "POST");
    EXPECT_EQ(plain.timeout_ns, 10 * s_ns);
    EXPECT_EQ(plain.concurrency, 16u);
    EXPECT_FALSE(plain.rate);
    EXPECT_TRUE(plain.headers.empty());
    EXPECT_FALSE(plain.ca);
    EXPECT_TRUE(plain.sign_secrets.empty());

    struct Case {
        std::string url;
        bool tls;
        std::string host;
        uint16_t port;
        std::string path_and_query;
    };
    for (const Case& c : {
             Case{"https://hooks.example.org", true, "hooks.example.org", 443, "/"},
             Case{"HTTPS://[::1]/x", true, "::1", 443, "/x"},
             Case{"http://[2001:db8::7]:8080", false, "2001:db8::7", 8080, "/"},
             Case{"http://10.0.0.7:1/a/b%20c?x=1&y=%2F", false, "10.0.0.7", 1,
                  "/a/b%20c?x=1&y=%2F"},
             Case{"http://app_1:65535?only=query", false, "app_1", 65535, "/?only=query"},
             Case{"http://localhost/", false, "localhost", 80, "/"},
         }) {
        LoadResult res = load_text("c.yaml", sink("http", {"url: \"" + c.url + "\""}));
        ASSERT_TRUE(res.ok()) << c.url << "\n" << formatted(res.errors);
        const HttpSinkConfig& h = *res.config->sinks.at(0).http;
        EXPECT_EQ(h.url, c.url);
        EXPECT_EQ(h.tls, c.tls) << c.url;
        EXPECT_EQ(h.host, c.host) << c.url;
        EXPECT_EQ(h.port, c.port) << c.url;
        EXPECT_EQ(h.path_and_query, c.path_and_query) << c.url;
    }
}

// exec, nats and redis sinks of SPEC section 8, every key given.
TEST_F(SinksConfig, ExecNatsAndRedisSinksOfTheSpec) {
    TempDir dir;
    std::string deploy = dir.write("deploy", "#!/bin/sh\n", 0755);
    LoadResult res = load_text("c.yaml", R"(sinks:
  deploy:
    exec:
      command: [")" + deploy + R"(", "--from-webhook", ""]
      concurrency: 2
      timeout: 5m
  bus:
    nats:
      url: "nats://10.0.0.7:4222"
      subject: "webhooks.{route}"
      credentials: {user: portcullis, password: {env: PORTCULLIS_TEST_PASSWORD}}
      max_in_flight: 256
  stream:
    redis:
      url: "redis://127.0.0.1:6379/0"
      stream: "webhooks:{route}"
      maxlen: 1000000
      credentials: {user: default, password: {env: PORTCULLIS_TEST_PASSWORD}}
      max_in_flight: 1024
)" + route("[stream, bus, deploy]"));
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_TRUE(res.warnings.empty()) << formatted(res.warnings);
    const auto& sinks = res.config->sinks;
    ASSERT_EQ(sinks.size(), 3u);
    EXPECT_EQ(res.config->routes.at(0).deliver,
              (std::vector<std::string>{"stream", "bus", "deploy"}));

    EXPECT_EQ(sinks[0].name, "deploy");
    EXPECT_EQ(sinks[0].kind, SinkConfig::Kind::exec);
    ASSERT_TRUE(sinks[0].exec);
    EXPECT_EQ(sinks[0].exec->command, (std::vector<std::string>{deploy, "--from-webhook", ""}));
    EXPECT_EQ(sinks[0].exec->concurrency, 2u);
    EXPECT_EQ(sinks[0].exec->timeout_ns, 300 * s_ns);

    EXPECT_EQ(sinks[1].name, "bus");
    EXPECT_EQ(sinks[1].kind, SinkConfig::Kind::nats);
    ASSERT_TRUE(sinks[1].nats);
    const NatsSinkConfig& n = *sinks[1].nats;
    EXPECT_EQ(n.url, "nats://10.0.0.7:4222");
    EXPECT_FALSE(n.tls);
    EXPECT_EQ(n.host, "10.0.0.7");
    EXPECT_EQ(n.port, 4222);
    EXPECT_EQ(n.subject, "webhooks.{route}");
    EXPECT_EQ(n.user, "portcullis");
    ASSERT_TRUE(n.password);
    EXPECT_EQ(n.password->material, "pw");
    EXPECT_EQ(n.password->origin, "env:PORTCULLIS_TEST_PASSWORD");
    EXPECT_FALSE(n.token || n.nkey_seed);
    EXPECT_EQ(n.max_in_flight, 256u);

    EXPECT_EQ(sinks[2].name, "stream");
    EXPECT_EQ(sinks[2].kind, SinkConfig::Kind::redis);
    ASSERT_TRUE(sinks[2].redis);
    const RedisSinkConfig& r = *sinks[2].redis;
    EXPECT_EQ(r.url, "redis://127.0.0.1:6379/0");
    EXPECT_FALSE(r.tls);
    EXPECT_EQ(r.host, "127.0.0.1");
    EXPECT_EQ(r.port, 6379);
    EXPECT_EQ(r.db, 0u);
    EXPECT_EQ(r.stream, "webhooks:{route}");
    EXPECT_EQ(r.maxlen, 1000000u);
    EXPECT_EQ(r.user, "default");
    ASSERT_TRUE(r.password);
    EXPECT_EQ(r.password->material, "pw");
    EXPECT_EQ(r.max_in_flight, 1024u);
}

TEST_F(SinksConfig, ExecNatsAndRedisDefaults) {
    const ExecSinkConfig e =
        *only_sink(load_text("c.yaml", sink("exec", {"command: [/bin/sh]"}))).exec;
    EXPECT_EQ(e.command, std::vector<std::string>{"/bin/sh"});
    EXPECT_EQ(e.concurrency, 1u);
    EXPECT_EQ(e.timeout_ns, 60 * s_ns);

    const NatsSinkConfig n =
        *only_sink(load_text("c.yaml", sink("nats", {"url: tls://NATS.internal", "subject: a.b"})))
             .nats;
    EXPECT_TRUE(n.tls);
    EXPECT_EQ(n.host, "nats.internal");
    EXPECT_EQ(n.port, 4222);
    EXPECT_EQ(n.subject, "a.b");
    EXPECT_EQ(n.max_in_flight, 256u);
    EXPECT_TRUE(n.user.empty());
    EXPECT_FALSE(n.password || n.token || n.nkey_seed);

    const RedisSinkConfig r =
        *only_sink(load_text("c.yaml", sink("redis", {"url: \"rediss://[::1]:6380/15\"",
                                                      "stream: \"hooks-{route}\""})))
             .redis;
    EXPECT_TRUE(r.tls);
    EXPECT_EQ(r.host, "::1");
    EXPECT_EQ(r.port, 6380);
    EXPECT_EQ(r.db, 15u);
    EXPECT_EQ(r.maxlen, 1000000u);
    EXPECT_EQ(r.max_in_flight, 256u);
    EXPECT_TRUE(r.user.empty());
    EXPECT_FALSE(r.password);
    for (std::string url : {"redis://cache", "redis://cache/"}) {
        const RedisSinkConfig d =
            *only_sink(load_text("c.yaml", sink("redis", {"url: " + url, "stream: s"}))).redis;
        EXPECT_EQ(d.port, 6379) << url;
        EXPECT_EQ(d.db, 0u) << url;
        EXPECT_FALSE(d.tls) << url;
    }
}

TEST_F(SinksConfig, ASinkIsExactlyOneKind) {
    expect_errors({
        {"sinks:\n  s: {}\n" + route(),
         {"c.yaml:2:3: sinks.s: needs one of http, exec, nats or redis"}},
        {"sinks:\n  s:\n    http: {url: \"http://a\"}\n    exec: {command: [/bin/sh]}\n" + route(),
         {"c.yaml:4:5: sinks.s.exec: a sink is of one kind, and this one is http already: define "
          "another sink for exec"}},
        {"sinks:\n  s:\n    htp: {url: \"http://a\"}\n" + route(),
         {"c.yaml:3:5: sinks.s.htp: unknown key (did you mean \"http\"?); allowed here: http, "
          "exec, nats, redis",
          "c.yaml:2:3: sinks.s: needs one of http, exec, nats or redis"}},
        {"sinks:\n  s:\n    http: {url: \"http://a\"}\n    retries: 3\n" + route(),
         {"c.yaml:4:5: sinks.s.retries: unknown key; allowed here: http, exec, nats, redis"}},
        {"sinks:\n  App:\n    http: {url: \"http://a\"}\n",
         {"c.yaml:2:3: sinks.App: sink names are 1 to 64 characters of [a-z0-9_-], found \"App\""}},
        {"sinks:\n  " + std::string(65, 'a') + ":\n    http: {url: \"http://a\"}\n",
         {"sink names are 1 to 64 characters"}},
        {"sinks:\n  s: http://a\n" + route(),
         {"c.yaml:2:6: sinks.s: expected a mapping (one of http, exec, nats or redis), found "
          "\"http://a\""}},
        {"sinks:\n  s:\n    http: http://a\n" + route(),
         {"c.yaml:3:11: sinks.s.http: expected a mapping, found \"http://a\""}},
        {"sinks:\n  s:\n    exec:\n" + route(),
         {"c.yaml:3:10: sinks.s.exec: expected a mapping, found nothing"}},
        {"sinks: [a, b]\n", {"c.yaml:1:8: sinks: expected a mapping, found a list"}},
        {"sinks:\n  s:\n    http: {uri: \"http://a\"}\n" + route(),
         {"c.yaml:3:12: sinks.s.http.uri: unknown key (did you mean \"url\"?); allowed here: url, "
          "method, timeout, concurrency, rate, headers, ca, sign",
          "c.yaml:3:5: sinks.s.http: \"url\" is required"}},
        {sink("exec", {"cmd: [/bin/sh]"}),
         {"c.yaml:4:7: sinks.s.exec.cmd: unknown key; allowed here: command, concurrency, timeout",
          "c.yaml:3:5: sinks.s.exec: \"command\" is required"}},
        {sink("nats", {"url: nats://a"}), {"c.yaml:3:5: sinks.s.nats: \"subject\" is required"}},
        {sink("nats", {"subject: a"}), {"c.yaml:3:5: sinks.s.nats: \"url\" is required"}},
        {sink("redis", {"url: redis://a", "maxlen: 5", "stream_name: x"}),
         {"c.yaml:6:7: sinks.s.redis.stream_name: unknown key; allowed here: url, stream, maxlen, "
          "credentials",
          "c.yaml:3:5: sinks.s.redis: \"stream\" is required"}},
    });
    // An empty sinks section is no sinks.
    for (const char* text : {"sinks:\n", "sinks: {}\n"}) {
        LoadResult res = load_text("c.yaml", text);
        ASSERT_TRUE(res.ok()) << formatted(res.errors);
        EXPECT_TRUE(res.config->sinks.empty());
    }
}

TEST_F(SinksConfig, UrlsAreParsedStrictly) {
    auto url_row = [](const std::string& kind, const std::string& url, const std::string& message) {
        std::vector<std::string> lines = {"url: \"" + url + "\""};
        if (kind == "nats") {
            lines.push_back("subject: a");
        } else if (kind == "redis") {
            lines.push_back("stream: a");
        }
        return Row{sink(kind, lines), {"c.yaml:4:12: sinks.s." + kind + ".url: " + message}};
    };
    expect_errors({
        url_row("http", "hooks.example.org/x",
                "expected scheme://host[:port][/path], like https://app.internal/hooks"),
        url_row("http", "://x",
                "expected scheme://host[:port][/path], like https://app.internal/hooks"),
        url_row("http", "ftp://x", "expected an http:// or https:// URL, found scheme \"ftp\""),
        url_row("http", "nats://x", "expected an http:// or https:// URL, found scheme \"nats\""),
        url_row("nats", "https://x", "expected a nats:// or tls:// URL, found scheme \"https\""),
        url_row("redis", "redis+tls://x",
                "expected a redis:// or rediss:// URL, found scheme \"redis+tls\""),
        url_row("http", "http:///x", "the host is missing"),
        url_row("http", "http://:80/x", "the host is missing"),
        url_row("http", "http://a:0", "port must be a number from 1 to 65535, found \"0\""),
        url_row("http", "http://a:65536", "port must be a number from 1 to 65535, found \"65536\""),
        url_row("http", "http://a:080", "port must be a number from 1 to 65535, found \"080\""),
        url_row("http", "http://a:", "port must be a number from 1 to 65535, found \"\""),
        url_row("http", "http://a:8o", "port must be a number from 1 to 65535, found \"8o\""),
        url_row("http", "http://2001:db8::1/x",
                "IPv6 addresses go in brackets: scheme://[2001:db8::1]:port"),
        url_row("http", "http://[2001:db8::1/x",
                "unclosed '[' in the host: IPv6 addresses are written [2001:db8::1]"),
        url_row("http", "http://[fe80::1%25eth0]/",
                "\"fe80::1%25eth0\" is not an IPv6 address (zones like %eth0 are not taken)"),
        url_row("http", "http://[10.0.0.1]/",
                "\"10.0.0.1\" is not an IPv6 address (zones like %eth0 are not taken)"),
        url_row("http", "http://[::1]8080/", "expected ':' and a port after ']', found \"8080\""),
        url_row("http", "http://a..b/",
                "host \"a..b\" is not a host name (labels of 1 to 63 characters between single "
                "dots)"),
        url_row("http", "http://a./", "host \"a.\" is not a host name"),
        url_row("http", "http://-a/", "host \"-a\" has a label starting or ending with '-'"),
        url_row("http", "http://a%2eb/",
                "host \"a%2eb\" holds '%': expected a host name, an IPv4 address or a bracketed "
                "IPv6 address"),
        url_row("http", "http://" + std::string(64, 'a') + "/",
                "host \"" + std::string(40, 'a') + "...\" is not a host name"),
        url_row("http", "http://999/",
                "host \"999\" is neither a host name nor an IPv4 address a.b.c.d"),
        url_row("http", "http://10.0.0/", "host \"10.0.0\" is neither a host name nor an IPv4"),
        url_row("http", "http://010.0.0.1/", "host \"010.0.0.1\" is neither a host name nor"),
        url_row("http", "http://256.0.0.1/", "host \"256.0.0.1\" is neither a host name nor"),
        url_row("http", "http://a/b#frag",
                "a fragment (#...) is never sent to the server: remove it"),
        url_row("http", "http://a/b c",
                "a URL is ASCII without spaces or control bytes (percent-encode them), found ' '"),
        url_row("http", "http://a/\\u00e9",
                "a URL is ASCII without spaces or control bytes (percent-encode them), found "
                "'\\xc3'"),
        url_row("http", "http://a/%zz", "'%' in the path starts no escape: write %25 for a '%'"),
        url_row("http", "http://a/%4", "'%' in the path starts no escape"),
        url_row("http", "http://a/{x}", "'{' in the path must be percent-encoded"),
        url_row("http", "http://a/x?y=[1]", "'[' in the path must be percent-encoded"),
        url_row("nats", "nats://a/subject",
                "a NATS URL has no path or query: the subject is set by subject"),
        url_row("nats", "nats://a?x=1", "a NATS URL has no path or query"),
        url_row("redis", "redis://a/x",
                "a Redis URL's path is the database number (redis://host:6379/0), found \"/x\""),
        url_row("redis", "redis://a/01", "a Redis URL's path is the database number"),
        url_row("redis", "redis://a/0?x=1", "a Redis URL's path is the database number"),
        url_row("redis", "redis://a/2147483648", "a Redis URL's path is the database number"),
        url_row("redis", "redis://a/1/2", "a Redis URL's path is the database number"),
    });
    expect_errors({
        {sink("http", {"url: \"\""}), {"c.yaml:4:12: sinks.s.http.url: must not be empty"}},
        {sink("http", {"url: [a]"}),
         {"c.yaml:4:12: sinks.s.http.url: expected a string, found a list"}},
        // The host is compared without case; the URL is kept as written.
        {sink("http", {"url: \"HTTP://EXAMPLE.org:8080/A\""}), {}},
        {sink("redis", {"url: \"redis://a/2147483647\"", "stream: a"}), {}},
    });
}

// Credentials have keys of their own; a URL that holds some is refused without showing them.
TEST_F(SinksConfig, UrlCredentialsAreRefusedWithoutBeingEchoed) {
    const std::string message =
        "a URL holds no user or password (they would be printed and logged): set them in "
        "credentials, or for http in a header\n";
    for (const auto& [kind, url] : std::vector<std::pair<std::string, std::string>>{
             {"http", "https://user:hunter2@app.internal/x"},
             {"http", "https://hunter2@app.internal"},
             {"nats", "nats://user:hunter2@nats:4222"},
             {"redis", "redis://:hunter2@cache:6379/0"},
             {"redis", "rediss://default:hunter2@cache/0?x=@"},
         }) {
        std::vector<std::string> lines = {"url: \"" + url + "\""};
        lines.push_back(kind == "nats" ? "subject: a" : "stream: a");
        if (kind == "http") {
            lines.pop_back();
        }
        LoadResult res = load_text("c.yaml", sink(kind, lines));
        std::string all = formatted(res.errors) + formatted(res.warnings);
        EXPECT_NE(all.find("c.yaml:4:12: sinks.s." + kind + ".url: " + message), std::string::npos)
            << all;
        EXPECT_EQ(all.find("hunter2"), std::string::npos) << all;
    }
    // '@' after the authority is a path character.
    expect_errors({{sink("http", {"url: \"http://a/x@y?z=@\""}), {}}});
}

TEST_F(SinksConfig, HttpOptions) {
    const std::string url = "url: http://a";
    LoadResult res = load_text("c.yaml", sink("http", {url, "method: put"}));
    EXPECT_EQ(only_sink(res).http->method, "PUT"); // RFC 9110 tokens, upper-cased at load
    res = load_text("c.yaml", sink("http", {url, "method: M-SEARCH", "timeout: 250ms",
                                            "concurrency: 4096", "rate: 100/min"}));
    const HttpSinkConfig h = *only_sink(res).http;
    EXPECT_EQ(h.method, "M-SEARCH");
    EXPECT_EQ(h.timeout_ns, 250'000'000);
    EXPECT_EQ(h.concurrency, 4096u);
    ASSERT_TRUE(h.rate);
    EXPECT_EQ(h.rate->count, 100u);
    EXPECT_EQ(h.rate->period_ns, 60 * s_ns);

    expect_errors({
        {sink("http", {url, "method: \"PO ST\""}),
         {"c.yaml:5:15: sinks.s.http.method: expected a method like POST (token characters), "
          "found \"PO ST\""}},
        {sink("http", {url, "method: head"}),
         {"c.yaml:5:15: sinks.s.http.method: HEAD cannot carry the job's body (a delivery sends "
          "it): use POST, PUT or PATCH"}},
        {sink("http", {url, "method: CONNECT"}), {"CONNECT cannot carry the job's body"}},
        {sink("http", {url, "method: TRACE"}), {"TRACE cannot carry the job's body"}},
        {sink("http", {url, "method: [POST]"}),
         {"c.yaml:5:15: sinks.s.http.method: expected a string, found a list"}},
        {sink("http", {url, "timeout: 10"}),
         {"c.yaml:5:16: sinks.s.http.timeout: a duration needs a unit: 10s or 10ms, not \"10\""}},
        {sink("http", {url, "timeout: 0s"}),
         {"c.yaml:5:16: sinks.s.http.timeout: must be at least 1ms, found \"0s\""}},
        {sink("http", {url, "concurrency: 0"}),
         {"c.yaml:5:20: sinks.s.http.concurrency: expected a whole number from 1 to 4096, found "
          "\"0\""}},
        {sink("http", {url, "concurrency: 4097"}), {"expected a whole number from 1 to 4096"}},
        {sink("http", {url, "rate: 200"}), {"c.yaml:5:13: sinks.s.http.rate: "}},
        {sink("http", {url, "rate: 0/s"}), {"c.yaml:5:13: sinks.s.http.rate: "}},
    });
}

TEST_F(SinksConfig, HttpHeaders) {
    const std::string url = "url: http://a";
    const std::string sign = "sign: {secrets: [{env: PORTCULLIS_TEST_SIGN}]}";
    expect_errors({
        {sink("http", {url, "headers: {Portcullis-Job-Id: x}"}),
         {"c.yaml:5:17: sinks.s.http.headers.Portcullis-Job-Id: Portcullis-* fields are set by "
          "portcullis on every delivery"}},
        {sink("http", {url, "headers: {portcullis-anything: x}"}),
         {"Portcullis-* fields are set by portcullis on every delivery"}},
        {sink("http", {url, "headers: {Host: other}"}),
         {"c.yaml:5:17: sinks.s.http.headers.Host: \"Host\" is set by portcullis for each "
          "delivery"}},
        {sink("http", {url, "headers: {content-length: \"5\"}"}),
         {"\"content-length\" is set by portcullis for each delivery"}},
        {sink("http", {url, "headers: {Transfer-Encoding: chunked}"}),
         {"sinks.s.http.headers.Transfer-Encoding: \"Transfer-Encoding\" describes the "
          "connection, not the delivery: portcullis sets the hop-by-hop fields itself"}},
        {sink("http", {url, "headers: {Connection: close}"}),
         {"\"Connection\" describes the connection"}},
        {sink("http", {url, "headers: {Keep-Alive: x}"}),
         {"\"Keep-Alive\" describes the connection"}},
        {sink("http", {url, "headers: {Upgrade: x}"}), {"\"Upgrade\" describes the connection"}},
        {sink("http", {url, sign, "headers: {Webhook-Signature: x}"}),
         {"c.yaml:6:17: sinks.s.http.headers.Webhook-Signature: \"Webhook-Signature\" is set by "
          "sign (Standard Webhooks) on every delivery"}},
        {sink("http", {url, "headers: {webhook-id: x}", sign}), {"\"webhook-id\" is set by sign"}},
        {sink("http", {url, sign, "headers: {webhook-timestamp: x}"}),
         {"\"webhook-timestamp\" is set by sign"}},
        {sink("http", {url, "headers: {\"X Env\": x}"}),
         {"c.yaml:5:17: sinks.s.http.headers.X Env: expected a header name (token characters), "
          "found \"X Env\""}},
        {sink("http", {url, "headers: {X-A: \"a\\r\\nX-B: b\"}"}),
         {"c.yaml:5:22: sinks.s.http.headers.X-A: a header value holds no control bytes (CR, LF, "
          "NUL, ...), found '\\x0d'"}},
        {sink("http", {url, "headers: {X-A: \"a\\nb\"}"}), {"found '\\x0a'"}},
        {sink("http", {url, "headers: {X-A: \"a\\0b\"}"}), {"found '\\x00'"}},
        {sink("http", {url, "headers: {X-A: \"a\\x7f\"}"}), {"found '\\x7f'"}},
        {sink("http", {url, "headers: {X-A: [a]}"}),
         {"c.yaml:5:22: sinks.s.http.headers.X-A: expected a string, found a list"}},
        {sink("http", {url, "headers: {X-Env: a, x-env: b}"}),
         {"c.yaml:5:27: sinks.s.http.headers.x-env: \"x-env\" is listed twice (header names "
          "ignore case)"}},
        {sink("http", {url, "headers: [X-Env]"}),
         {"c.yaml:5:16: sinks.s.http.headers: expected a mapping, found a list"}},
        // Without sign, the Standard Webhooks fields are the operator's to set; a tab is fine.
        {sink("http", {url, "headers: {webhook-id: x, X-Tab: \"a\\tb\", X-Empty: }"}), {}},
    });
    LoadResult res =
        load_text("c.yaml", sink("http", {url, "headers: {X-B: \"2\", X-A: one two, X-Empty: }"}));
    const auto& headers = only_sink(res).http->headers;
    ASSERT_EQ(headers.size(), 3u);
    EXPECT_EQ(headers[0].name, "X-B");
    EXPECT_EQ(headers[0].value, "2");
    EXPECT_EQ(headers[1].name, "X-A");
    EXPECT_EQ(headers[1].value, "one two");
    EXPECT_EQ(headers[2].name, "X-Empty");
    EXPECT_EQ(headers[2].value, "");
}

// `ca` of the http, nats and redis sinks: only with a TLS url, relative to the configuration.
TEST_F(SinksConfig, CaOnlyWithTlsAndRelativeToTheConfiguration) {
    expect_errors({
        {sink("http", {"url: http://a", "ca: /etc/ca.pem"}),
         {"c.yaml:5:7: sinks.s.http.ca: ca applies to https:// URLs only (it checks the server's "
          "certificate)"}},
        {sink("http", {"url: https://a", "ca: \"\""}),
         {"c.yaml:5:11: sinks.s.http.ca: must not be empty"}},
        {sink("nats", {"url: nats://a", "subject: a", "ca: /etc/ca.pem"}),
         {"c.yaml:6:7: sinks.s.nats.ca: ca applies to tls:// URLs only (it checks the server's "
          "certificate)"}},
        {sink("redis", {"url: redis://a", "stream: s", "ca: /etc/ca.pem"}),
         {"c.yaml:6:7: sinks.s.redis.ca: ca applies to rediss:// URLs only (it checks the "
          "server's certificate)"}},
        {sink("redis", {"url: rediss://a", "stream: s", "ca: \"\""}),
         {"c.yaml:6:11: sinks.s.redis.ca: must not be empty"}},
    });
    TempDir dir;
    std::string yaml = "sinks:\n  a:\n    http: {url: \"https://a\", ca: tls/ca.pem}\n"
                       "  b:\n    http: {url: \"https://b\", ca: /etc/p/ca.pem}\n"
                       "  c:\n    nats: {url: \"tls://c\", subject: x, ca: tls/nats.pem}\n"
                       "  d:\n    redis: {url: \"rediss://d\", stream: s, ca: /etc/p/redis.pem}\n" +
                       route("[a, b, c, d]");
    std::string file = dir.write("portcullis.yaml", yaml);
    ScopedEnv gh("PORTCULLIS_TEST_GH", "gh-secret");
    for (const std::string& path : {dir.path(), file}) {
        LoadResult res = load(path);
        ASSERT_TRUE(res.ok()) << formatted(res.errors);
        ASSERT_EQ(res.config->sinks.size(), 4u);
        EXPECT_EQ(res.config->sinks[0].http->ca, dir.path() + "/tls/ca.pem");
        EXPECT_EQ(res.config->sinks[1].http->ca, "/etc/p/ca.pem");
        EXPECT_EQ(res.config->sinks[2].nats->ca, dir.path() + "/tls/nats.pem");
        EXPECT_EQ(res.config->sinks[3].redis->ca, "/etc/p/redis.pem");
    }
}

TEST_F(SinksConfig, HttpSigningSecretsAreStandardWebhooksSecrets) {
    const std::string url = "url: http://a";
    LoadResult res = load_text(
        "c.yaml", sink("http", {url, "sign:", "  secrets:", "    - {env: PORTCULLIS_TEST_SIGN}",
                                "    - {value: whsec_b2xkZXI=}"}));
    const auto& secrets = only_sink(res).http->sign_secrets;
    ASSERT_EQ(secrets.size(), 2u);
    EXPECT_EQ(secrets[0].origin, "env:PORTCULLIS_TEST_SIGN");
    EXPECT_EQ(secrets[1].material, "whsec_b2xkZXI=");
    EXPECT_EQ(secrets[1].origin, "value");

    const std::string hidden = "hunter2-do-not-print";
    expect_errors({
        {sink("http", {url, "sign: {}"}),
         {"c.yaml:5:7: sinks.s.http.sign: \"secrets\" is required"}},
        {sink("http", {url, "sign: {secrets: []}"}),
         {"c.yaml:5:23: sinks.s.http.sign.secrets: needs at least one secret"}},
        {sink("http", {url, "sign: {secrets: [{env: PORTCULLIS_TEST_SIGN}], key: x}"}),
         {"c.yaml:5:54: sinks.s.http.sign.key: unknown key; allowed here: secrets"}},
        {sink("http", {url, "sign: {secrets: [{value: " + hidden + "}]}"}),
         {"c.yaml:5:32: sinks.s.http.sign.secrets[0].value: secret value must be whsec_<base64> "
          "(a Standard Webhooks signing secret)"}},
        {sink("http",
              {url,
               "sign: {secrets: [{value: whpk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=}]}"}),
         {"sinks.s.http.sign.secrets[0].value: secret value is a whpk_ public key: it checks "
          "signatures, signing needs the whsec_ secret"}},
        {sink("http", {url, "sign: {secrets: [{value: \"whsec_!!\"}]}"}),
         {"sinks.s.http.sign.secrets[0].value: secret value is not whsec_ followed by non-empty "
          "base64"}},
        {sink("http", {url, "sign: {secrets: [{value: whsec_}]}"}),
         {"secret value is not whsec_ followed by non-empty base64"}},
        {sink("http", {url, "sign: {secrets: [" + hidden + "]}"}),
         {"c.yaml:5:24: sinks.s.http.sign.secrets[0]: expected one of {env: NAME}, {file: PATH} "
          "or {value: \"...\"}, found a string"}},
        {sink("http", {url, "sign: {secrets: [{value: whsec_YQ==}, {value: whsec_YQ==}, {value: "
                            "whsec_YQ==}, {value: whsec_YQ==}, {value: whsec_YQ==}, {value: "
                            "whsec_YQ==}, {value: whsec_YQ==}, {value: whsec_YQ==}, {value: "
                            "whsec_YQ==}]}"}),
         {"sinks.s.http.sign.secrets: at most 8 secrets per sink"}},
    });
    for (const std::string& text :
         {sink("http", {url, "sign: {secrets: [{value: " + hidden + "}]}"}),
          sink("http", {url, "sign: {secrets: [" + hidden + "]}"})}) {
        LoadResult r = load_text("c.yaml", text);
        std::string all = formatted(r.errors) + formatted(r.warnings);
        EXPECT_EQ(all.find("hunter2"), std::string::npos) << all;
    }

    ScopedEnv unset("PORTCULLIS_TEST_UNSET", nullptr);
    expect_warnings({
        {sink("http", {url, "sign: {secrets: [{env: PORTCULLIS_TEST_UNSET}]}"}),
         {"c.yaml:5:30: sinks.s.http.sign.secrets[0].env: env PORTCULLIS_TEST_UNSET is not set: "
          "sink s has no signing secret until it is\n"}},
        {sink("http", {url, "sign: {secrets: [{env: PORTCULLIS_TEST_SIGN}, {env: "
                            "PORTCULLIS_TEST_UNSET}]}"}),
         {"sinks.s.http.sign.secrets[1].env: env PORTCULLIS_TEST_UNSET is not set: this secret "
          "is skipped until it is\n"}},
        {sink("http", {url, "sign: {secrets: [{value: whsec_YQ==}]}"}),
         {"c.yaml:5:32: sinks.s.http.sign.secrets[0].value: inline secret: use {env: ...} or "
          "{file: ...} in production"}},
    });
    // An unset signing secret keeps its place without material.
    res =
        load_text("c.yaml", sink("http", {url, "sign: {secrets: [{env: PORTCULLIS_TEST_UNSET}]}"}));
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    ASSERT_EQ(res.config->sinks.at(0).http->sign_secrets.size(), 1u);
    EXPECT_TRUE(res.config->sinks.at(0).http->sign_secrets[0].material.empty());
}

TEST_F(SinksConfig, ExecCommandIsAnAbsoluteProgramAndItsArguments) {
    TempDir dir;
    dir.write("portcullis-test-tool", "#!/bin/sh\n", 0755);
    dir.write("not-executable", "#!/bin/sh\n", 0644);
    ScopedEnv path("PATH", ("/nonexistent:relative/bin:" + dir.path()).c_str());
    const std::string hidden = "hunter2-do-not-print";
    expect_errors({
        {sink("exec", {"command: []"}),
         {"c.yaml:4:16: sinks.s.exec.command: needs at least the program: "
          "[\"/usr/local/bin/deploy\"]"}},
        {sink("exec", {"command: /bin/sh"}),
         {"c.yaml:4:16: sinks.s.exec.command: expected a list like [\"/usr/local/bin/deploy\", "
          "\"--from-webhook\"], found \"/bin/sh\""}},
        {sink("exec", {"command: [portcullis-test-tool, --x]"}),
         {"c.yaml:4:17: sinks.s.exec.command[0]: \"portcullis-test-tool\" is not an absolute "
          "path: commands are never looked up on PATH (check and serve may see different ones); "
          "on this host PATH finds " +
          dir.path() + "/portcullis-test-tool\n"}},
        {sink("exec", {"command: [no-such-tool-here]"}),
         {"sinks.s.exec.command[0]: \"no-such-tool-here\" is not an absolute path: commands are "
          "never looked up on PATH (check and serve may see different ones)\n"}},
        {sink("exec", {"command: [not-executable]"}),
         {"(check and serve may see different ones)\n"}},
        // Only the program is quoted: an argument after a refused program is not taken for it.
        {sink("exec", {"command: [bin/deploy, \"" + hidden + "\"]"}),
         {"c.yaml:4:17: sinks.s.exec.command[0]: \"bin/deploy\" is not an absolute path: a "
          "relative one would depend on the working directory"}},
        {sink("exec", {"command: [\"\"]"}),
         {"c.yaml:4:17: sinks.s.exec.command[0]: the program must not be empty"}},
        {sink("exec", {"command: [/bin/sh, \"" + hidden + "\\0\"]"}),
         {"c.yaml:4:26: sinks.s.exec.command[1]: an argument cannot hold a NUL byte"}},
        {sink("exec", {"command: [/bin/sh, [a]]"}),
         {"c.yaml:4:26: sinks.s.exec.command[1]: expected a string, found a list"}},
        {sink("exec", {"command: [/bin/sh]", "concurrency: 0"}),
         {"c.yaml:5:20: sinks.s.exec.concurrency: expected a whole number from 1 to 256, found "
          "\"0\""}},
        {sink("exec", {"command: [/bin/sh]", "concurrency: 257"}),
         {"expected a whole number from 1 to 256"}},
        {sink("exec", {"command: [/bin/sh]", "timeout: forever"}),
         {"c.yaml:5:16: sinks.s.exec.timeout: "}},
        {sink("exec", {"command: [/bin/sh, -c]", "concurrency: 256", "timeout: 1ms"}), {}},
    });
    for (const std::string& text : {sink("exec", {"command: [/bin/sh, \"" + hidden + "\\0\"]"}),
                                    sink("exec", {"command: [bin/deploy, \"" + hidden + "\"]"})}) {
        LoadResult res = load_text("c.yaml", text);
        EXPECT_EQ(res.errors.size(), 1u) << formatted(res.errors);
        EXPECT_EQ(formatted(res.errors).find("hunter2"), std::string::npos)
            << formatted(res.errors);
    }

    // A program that cannot be run here is a warning: check may run on another host than serve.
    expect_warnings({
        {sink("exec", {"command: [" + dir.path() + "/missing]"}),
         {"c.yaml:4:17: sinks.s.exec.command[0]: " + dir.path() +
          "/missing cannot be run here (No such file or directory)\n"}},
        {sink("exec", {"command: [" + dir.path() + "/not-executable]"}),
         {"/not-executable cannot be run here (Permission denied)\n"}},
        {sink("exec", {"command: [" + dir.path() + "]"}),
         {"cannot be run here (not a regular file)\n"}},
        {sink("exec", {"command: [" + dir.path() + "/portcullis-test-tool]"}), {}},
    });
}

TEST_F(SinksConfig, NatsSubjects) {
    auto subject = [](const std::string& s) {
        return sink("nats", {"url: nats://a", "subject: \"" + s + "\""});
    };
    const std::string at = "c.yaml:5:16: sinks.s.nats.subject: ";
    expect_errors({
        {subject("webhooks.{route}"), {}},
        {subject("{route}"), {}},
        {subject("a.{route}.b-c_d"), {}},
        {subject(""), {at + "must not be empty"}},
        {subject("webhooks.*"), {at + "a subject to publish to has no wildcards ('*', '>')"}},
        {subject("webhooks.>"), {at + "a subject to publish to has no wildcards"}},
        {subject("a..b"),
         {at + "a NATS subject is tokens between single dots, none of them empty"}},
        {subject(".a"), {at + "a NATS subject is tokens between single dots"}},
        {subject("a."), {at + "a NATS subject is tokens between single dots"}},
        {subject("a b"), {at + "NATS subjects are printable ASCII without spaces, found ' '"}},
        {subject("a\\tb"),
         {at + "NATS subjects are printable ASCII without spaces, found '\\x09'"}},
        {subject("caf\\u00e9"),
         {at + "NATS subjects are printable ASCII without spaces, found '\\xc3'"}},
        {subject("$JS.API.x"),
         {at + "subjects starting with $ belong to NATS itself ($JS, $SYS): choose another"}},
        {subject("a.{name}"),
         {at + "unknown placeholder \"{name}\" (the one placeholder is {route})"}},
        {subject("a.{route"), {at + "unclosed '{'; the one placeholder is {route}"}},
        {subject("a.route}"), {at + "a '}' outside a placeholder; the one placeholder is {route}"}},
        {sink("nats", {"url: nats://a", "subject: a", "max_in_flight: 0"}),
         {"c.yaml:6:22: sinks.s.nats.max_in_flight: expected a whole number from 1 to 65536"}},
        {sink("nats", {"url: nats://a", "subject: a", "max_in_flight: 65536"}), {}},
        {sink("redis", {"url: redis://a", "stream: a", "max_in_flight: 65537"}),
         {"c.yaml:6:22: sinks.s.redis.max_in_flight: expected a whole number from 1 to 65536"}},
        {sink("redis", {"url: redis://a", "stream: a", "max_in_flight: 1"}), {}},
    });
}

TEST_F(SinksConfig, NatsCredentialsAreOneKind) {
    // A user seed has the shape SU + 56 base32 characters.
    const std::string seed = "SU" + std::string(56, 'A');
    ScopedEnv seed_env("PORTCULLIS_TEST_SEED", seed.c_str());
    auto creds = [](const std::string& c) {
        return sink("nats", {"url: nats://a", "subject: a", "credentials: " + c});
    };
    LoadResult res = load_text("c.yaml", creds("{token: {env: PORTCULLIS_TEST_PASSWORD}}"));
    const NatsSinkConfig token = *only_sink(res).nats;
    ASSERT_TRUE(token.token);
    EXPECT_EQ(token.token->material, "pw");
    EXPECT_FALSE(token.password || token.nkey_seed);
    EXPECT_TRUE(token.user.empty());

    res = load_text("c.yaml", creds("{nkey_seed: {env: PORTCULLIS_TEST_SEED}}"));
    const NatsSinkConfig nkey = *only_sink(res).nats;
    ASSERT_TRUE(nkey.nkey_seed);
    EXPECT_EQ(nkey.nkey_seed->material, seed);
    EXPECT_FALSE(nkey.password || nkey.token);

    const std::string hidden = "hunter2-do-not-print";
    ScopedEnv hidden_env("PORTCULLIS_TEST_HIDDEN", hidden.c_str());
    expect_errors({
        {creds("{user: u, token: {env: PORTCULLIS_TEST_PASSWORD}}"),
         {"c.yaml:6:30: sinks.s.nats.credentials.token: credentials are of one kind: user and "
          "password, token, or nkey_seed (user is set already)"}},
        {creds("{token: {env: A}, nkey_seed: {env: B}}"),
         {"sinks.s.nats.credentials.nkey_seed: credentials are of one kind: user and password, "
          "token, or nkey_seed (token is set already)"}},
        {creds("{user: u}"), {"c.yaml:6:7: sinks.s.nats.credentials: \"password\" is required"}},
        {creds("{password: {env: PORTCULLIS_TEST_PASSWORD}}"),
         {"c.yaml:6:7: sinks.s.nats.credentials: \"user\" is required"}},
        {creds("{}"),
         {"c.yaml:6:7: sinks.s.nats.credentials: needs user and password, token, or nkey_seed"}},
        {creds("{jwt: x}"),
         {"c.yaml:6:21: sinks.s.nats.credentials.jwt: unknown key; allowed here: user, password, "
          "token, nkey_seed"}},
        {creds("{user: \"a b\", password: {env: PORTCULLIS_TEST_PASSWORD}}"),
         {"c.yaml:6:27: sinks.s.nats.credentials.user: user names are printable ASCII without "
          "spaces, found ' '"}},
        {creds("{user: u, password: " + hidden + "}"),
         {"sinks.s.nats.credentials.password: expected one of {env: NAME}, {file: PATH} or "
          "{value: \"...\"}, found a string"}},
        {creds("{nkey_seed: {env: PORTCULLIS_TEST_HIDDEN}}"),
         {"c.yaml:6:32: sinks.s.nats.credentials.nkey_seed: secret env:PORTCULLIS_TEST_HIDDEN is "
          "not a NATS user nkey seed: expected SU followed by 56 base32 characters, found 20 "
          "characters"}},
        {creds("{nkey_seed: {value: SA" + std::string(56, 'A') + "}}"),
         {"is not a NATS user nkey seed"}},
        {creds("{nkey_seed: {value: SU" + std::string(55, 'A') + "1}}"),
         {"is not a NATS user nkey seed"}},
        {creds("[token]"),
         {"c.yaml:6:20: sinks.s.nats.credentials: expected a mapping, found a list"}},
    });
    for (const std::string& text : {creds("{user: u, password: " + hidden + "}"),
                                    creds("{nkey_seed: {env: PORTCULLIS_TEST_HIDDEN}}")}) {
        LoadResult r = load_text("c.yaml", text);
        std::string all = formatted(r.errors) + formatted(r.warnings);
        EXPECT_EQ(all.find("hunter2"), std::string::npos) << all;
    }
    ScopedEnv unset("PORTCULLIS_TEST_UNSET", nullptr);
    expect_warnings({
        {creds("{user: u, password: {env: PORTCULLIS_TEST_UNSET}}"),
         {"c.yaml:6:46: sinks.s.nats.credentials.password.env: env PORTCULLIS_TEST_UNSET is not "
          "set: sink s cannot authenticate until it is\n"}},
        {creds("{token: {env: PORTCULLIS_TEST_UNSET}}"),
         {"sinks.s.nats.credentials.token.env: env PORTCULLIS_TEST_UNSET is not set: sink s "
          "cannot authenticate until it is\n"}},
        {creds("{user: u, password: {env: PORTCULLIS_TEST_PASSWORD}}"), {}},
    });
}

TEST_F(SinksConfig, RedisStreamsMaxlenAndCredentials) {
    auto redis = [](const std::vector<std::string>& more) {
        std::vector<std::string> lines = {"url: redis://a"};
        lines.insert(lines.end(), more.begin(), more.end());
        return sink("redis", lines);
    };
    const std::string at = "c.yaml:5:15: sinks.s.redis.stream: ";
    expect_errors({
        {redis({"stream: \"webhooks:{route}\""}), {}},
        {redis({"stream: \"{route}\"", "maxlen: 1"}), {}},
        {redis({"stream: \"\""}), {at + "must not be empty"}},
        {redis({"stream: \"a b\""}),
         {at + "stream names are printable ASCII without spaces, found ' '"}},
        {redis({"stream: \"a\\nb\""}),
         {at + "stream names are printable ASCII without spaces, found '\\x0a'"}},
        {redis({"stream: \"{webhooks}:{route}\""}),
         {at + "unknown placeholder \"{webhooks}\" (the one placeholder is {route})"}},
        {redis({"stream: a", "maxlen: 0"}),
         {"c.yaml:6:15: sinks.s.redis.maxlen: expected a whole number from 1 to "
          "9223372036854775807, found \"0\""}},
        {redis({"stream: a", "maxlen: 1e6"}),
         {"c.yaml:6:15: sinks.s.redis.maxlen: expected a whole number"}},
        {redis({"stream: a", "credentials: {user: default}"}),
         {"c.yaml:6:7: sinks.s.redis.credentials: \"password\" is required"}},
        {redis({"stream: a", "credentials: {password: {env: X}, token: {env: Y}}"}),
         {"c.yaml:6:41: sinks.s.redis.credentials.token: unknown key; allowed here: user, "
          "password"}},
        {redis({"stream: a", "credentials: {user: \"\", password: {env: X}}"}),
         {"c.yaml:6:27: sinks.s.redis.credentials.user: must not be empty"}},
    });
    LoadResult res = load_text(
        "c.yaml", redis({"stream: a", "credentials: {password: {env: PORTCULLIS_TEST_PASSWORD}}"}));
    const RedisSinkConfig r = *only_sink(res).redis;
    EXPECT_TRUE(r.user.empty());
    ASSERT_TRUE(r.password);
    EXPECT_EQ(r.password->material, "pw");
    ScopedEnv unset("PORTCULLIS_TEST_UNSET", nullptr);
    expect_warnings({
        {redis({"stream: a", "credentials: {password: {env: PORTCULLIS_TEST_UNSET}}"}),
         {"c.yaml:6:37: sinks.s.redis.credentials.password.env: env PORTCULLIS_TEST_UNSET is not "
          "set: sink s cannot authenticate until it is\n"}},
    });
}

TEST_F(SinksConfig, DeliverNamesDefinedSinksOnce) {
    const std::string two = "sinks:\n  app:\n    http: {url: \"http://a\"}\n  bus:\n"
                            "    nats: {url: \"nats://b\", subject: s}\n";
    LoadResult res = load_text("c.yaml", two + route("[bus, app]"));
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_EQ(res.config->routes.at(0).deliver, (std::vector<std::string>{"bus", "app"}));
    expect_errors({
        {two + route("[app, bsu]"),
         {"c.yaml:10:20: routes.r.deliver[1]: no sink named \"bsu\" (sinks: app, bus)"}},
        {route("[app]"),
         {"c.yaml:5:15: routes.r.deliver[0]: no sink named \"app\" (no sinks are "
          "defined)"}},
        {two + route("[app, bus, app]"),
         {"c.yaml:10:25: routes.r.deliver[2]: app is listed twice"}},
        {two + route("app"),
         {"c.yaml:10:14: routes.r.deliver: expected a list like [app, bus], found \"app\""}},
        {two + route("[[app]]"),
         {"c.yaml:10:15: routes.r.deliver[0]: expected a string, found a list"}},
        // A sink with errors of its own is still a name deliver may use: one error, not two.
        {"sinks:\n  app:\n    http: {url: \"ftp://a\"}\n" + route("[app]"),
         {"c.yaml:3:17: sinks.app.http.url: expected an http:// or https:// URL"}},
    });
    res = load_text("c.yaml", "sinks:\n  app:\n    http: {url: \"ftp://a\"}\n" + route("[app]"));
    EXPECT_EQ(res.errors.size(), 1u) << formatted(res.errors);
    // Without deliver, a route has no push delivery.
    res = load_text("c.yaml", "routes:\n  r:\n    path: /r\n    verify: {scheme: github, "
                              "secrets: [{env: PORTCULLIS_TEST_GH}]}\n");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_TRUE(res.config->routes.at(0).deliver.empty());
    EXPECT_FALSE(res.config->routes.at(0).ordered);
}

// ordered applies to push delivery; it orders by ordering.key when the route has one, else the
// whole route is one sequence.
TEST_F(SinksConfig, OrderedNeedsDeliver) {
    const std::string app = "sinks:\n  app:\n    http: {url: \"http://a\"}\n";
    LoadResult res = load_text("c.yaml", app + route("[app]") + "    ordered: true\n");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_TRUE(res.config->routes.at(0).ordered);
    EXPECT_FALSE(res.config->routes.at(0).ordering);
    res = load_text("c.yaml", app + route("[app]") +
                                  "    ordering: {key: \"json:/id\", timestamp: \"json:/ts\"}\n"
                                  "    ordered: true\n");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_TRUE(res.config->routes.at(0).ordered);
    ASSERT_TRUE(res.config->routes.at(0).ordering);
    EXPECT_EQ(res.config->routes.at(0).ordering->key.text, "json:/id");
    res = load_text("c.yaml", app + route("[app]") + "    ordered: false\n");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_FALSE(res.config->routes.at(0).ordered);

    const std::string no_deliver = "routes:\n  r:\n    path: /r\n    verify: {scheme: github, "
                                   "secrets: [{env: PORTCULLIS_TEST_GH}]}\n";
    expect_errors({
        {no_deliver + "    ordered: true\n",
         {"c.yaml:5:14: routes.r.ordered: ordered applies to push delivery: it needs deliver (the "
          "pull API hands out jobs in any order)"}},
        {app + route("[]") + "    ordered: true\n",
         {"c.yaml:9:14: routes.r.ordered: ordered applies to push delivery"}},
        {app + route("[app]") + "    ordered: yes\n",
         {"c.yaml:9:14: routes.r.ordered: expected true or false, found \"yes\""}},
        {no_deliver + "    ordered: false\n", {}},
    });
}

TEST_F(SinksConfig, ASinkNoRouteDeliversToIsAWarning) {
    const std::string two = "sinks:\n  app:\n    http: {url: \"http://a\"}\n  bus:\n"
                            "    nats: {url: \"nats://b\", subject: s}\n";
    expect_warnings({
        {two + route("[bus]"),
         {"c.yaml:2:3: sinks.app: sink app is not delivered to: no route lists it in deliver\n"}},
        {two,
         {"c.yaml:2:3: sinks.app: sink app is not delivered to",
          "c.yaml:4:3: sinks.bus: sink bus is not delivered to"}},
        {two + route("[bus, app]"), {}},
    });
    LoadResult res = load_text("c.yaml", two + route("[bus]"));
    EXPECT_EQ(res.warnings.size(), 1u) << formatted(res.warnings);
}

TEST(SinksDirectory, SinksAndRoutesMayLiveInSeparateFiles) {
    ScopedEnv gh("PORTCULLIS_TEST_GH", "gh-secret");
    TempDir dir;
    dir.write("10-routes.yaml", route("[app]"));
    dir.write("20-sinks.yaml", "sinks:\n  app:\n    http: {url: \"http://a\"}\n");
    LoadResult res = load(dir.path());
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    ASSERT_EQ(res.config->sinks.size(), 1u);
    EXPECT_EQ(res.config->sinks[0].mark.file, dir.path() + "/20-sinks.yaml");
    EXPECT_EQ(res.config->routes.at(0).deliver, std::vector<std::string>{"app"});

    // A sink defined in two files is an error naming both places, like any value.
    dir.write("30-more.yaml", "sinks:\n  app:\n    http: {url: \"http://b\"}\n");
    res = load(dir.path());
    EXPECT_FALSE(res.ok());
    EXPECT_NE(formatted(res.errors)
                  .find("30-more.yaml:3:12: sinks.app.http.url: defined again "
                        "here; first defined at " +
                        dir.path() + "/20-sinks.yaml:3:12"),
              std::string::npos)
        << formatted(res.errors);
}

// The example configuration's sinks block is commented out (serve does not deliver yet); with its
// lines uncommented it must load as it stands.
TEST(SinksExample, TheExamplesSinksBlockLoadsUncommented) {
    const char* root = std::getenv("PORTCULLIS_SOURCE_ROOT");
    if (root == nullptr) {
        GTEST_SKIP() << "PORTCULLIS_SOURCE_ROOT is not set (run through meson test)";
    }
    ScopedEnv github("GITHUB_WEBHOOK_SECRET", "github-secret");
    ScopedEnv gitlab("GITLAB_WEBHOOK_TOKEN", "gitlab-token");
    ScopedEnv signing("APP_SIGNING_SECRET", "whsec_c2lnbmluZy1rZXk=");
    std::ifstream in(std::string(root) + "/packaging/portcullis.yaml");
    ASSERT_TRUE(in) << "cannot read packaging/portcullis.yaml";
    // Commented-out YAML is "#" followed by the line as it would be: every line from "#sinks:"
    // to the next blank line, and each "#deliver:" line.
    std::string text;
    std::string line;
    bool in_sinks = false;
    size_t uncommented = 0;
    while (std::getline(in, line)) {
        in_sinks = (in_sinks && !line.empty()) || line == "#sinks:";
        size_t hash = line.find_first_not_of(' ');
        bool commented = hash != std::string::npos && line[hash] == '#';
        if (commented && (in_sinks || line.compare(hash, 9, "#deliver:") == 0)) {
            line.erase(hash, 1);
            ++uncommented;
        }
        text += line + "\n";
    }
    ASSERT_GT(uncommented, 5u) << "no commented-out sinks block found";
    LoadResult res = load_text("portcullis.yaml", text);
    ASSERT_TRUE(res.ok()) << formatted(res.errors) << text;
    const Config& cfg = *res.config;
    ASSERT_EQ(cfg.sinks.size(), 2u);
    EXPECT_EQ(cfg.sinks[0].kind, SinkConfig::Kind::http);
    ASSERT_TRUE(cfg.sinks[0].http);
    EXPECT_EQ(cfg.sinks[0].http->sign_secrets.at(0).material, "whsec_c2lnbmluZy1rZXk=");
    EXPECT_EQ(cfg.sinks[1].kind, SinkConfig::Kind::exec);
    bool delivered = false;
    for (const RouteConfig& r : cfg.routes) {
        delivered = delivered || !r.deliver.empty();
    }
    EXPECT_TRUE(delivered) << "no route's deliver line was uncommented";
    // Only the exec program may be missing on this host.
    for (const Diagnostic& w : res.warnings) {
        EXPECT_NE(w.message.find("cannot be run here"), std::string::npos) << w.format();
    }
}

// breaker: beside the kind, for every kind; defaults 5 failures and 30 s (SPEC section 8).
TEST_F(SinksConfig, BreakerSettings) {
    LoadResult res = load_text("c.yaml", sink("http", {"url: http://a"}));
    EXPECT_EQ(only_sink(res).breaker.failures, 5u);
    EXPECT_EQ(only_sink(res).breaker.cooldown_ns, 30 * s_ns);
    const std::string exec = "sinks:\n  s:\n    exec: {command: [/bin/true]}\n    breaker: ";
    res = load_text("c.yaml", exec + "{failures: 2, cooldown: 250ms}\n" + route());
    EXPECT_EQ(only_sink(res).breaker.failures, 2u);
    EXPECT_EQ(only_sink(res).breaker.cooldown_ns, 250'000'000);
    expect_errors({
        {exec + "{failures: 0}\n" + route(),
         {"c.yaml:4:25: sinks.s.breaker.failures: expected a whole number from 1 to 1000"}},
        {exec + "{cooldown: 10ms}\n" + route(),
         {"c.yaml:4:25: sinks.s.breaker.cooldown: must be at least 100ms"}},
        {exec + "{cooldown: 2h}\n" + route(), {"sinks.s.breaker.cooldown: at most 1h"}},
        {exec + "{tries: 3}\n" + route(),
         {"c.yaml:4:15: sinks.s.breaker.tries: unknown key; allowed here: failures, cooldown"}},
        {exec + "5\n" + route(), {"c.yaml:4:14: sinks.s.breaker: expected a mapping"}},
    });
}
