// config::load and config::load_text: YAML shape, schema, merging, secrets, integrity.
//
// Most tests are tables of {yaml, expected}: expected lists substrings that must all appear in
// the formatted errors (or warnings), each starting with the exact "file:line:column: key.path"
// of the finding; an empty list means the text must load without errors.
#include "portcullis/base/encoding.hh"
#include "portcullis/config/config.hh"

#include <gtest/gtest.h>

#include <openssl/sha.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

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
        EXPECT_FALSE(res.config.has_value()) << r.yaml;
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

// A route r at /r whose verify mapping is given (flow style), on line 3 of the text.
std::string route_with_verify(const std::string& verify, const std::string& extra = "") {
    return "routes:\n  r:\n    verify: " + verify + "\n    path: /r\n" + extra;
}

// A valid route r with extra keys appended (block style, 4 spaces), from line 5 on.
std::string github_route(const std::string& extra = "", const std::string& path = "/r") {
    return "routes:\n  r:\n    path: " + path +
           "\n    verify: {scheme: github, secrets: [{env: PORTCULLIS_TEST_GH}]}\n" + extra;
}

class TempDir {
public:
    TempDir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "config-test-XXXXXX").string();
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
    std::string file(const std::string& name) const { return (_path / name).string(); }
    std::string write(const std::string& name, const std::string& text) const {
        std::ofstream(_path / name, std::ios::binary) << text;
        return file(name);
    }

private:
    std::filesystem::path _path;
};

// Sets an environment variable for the life of the object.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const char* value) : _name(name) {
        if (value == nullptr) {
            unsetenv(name);
        } else {
            setenv(name, value, 1);
        }
    }
    ~ScopedEnv() { unsetenv(_name); }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    const char* _name;
};

std::string sha256_hex(const std::string& data) {
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const uint8_t*>(data.data()), data.size(), digest);
    return portcullis::base::hex(digest);
}

} // namespace

class ConfigLoad : public ::testing::Test {
protected:
    // The route helpers read this variable so that their secret is neither inline nor unset.
    ScopedEnv _gh{"PORTCULLIS_TEST_GH", "gh-secret"};
};

TEST_F(ConfigLoad, EmptyTextIsTheDefaultConfiguration) {
    for (const char* text : {"", "# nothing yet\n", "---\n", "~\n"}) {
        LoadResult res = load_text("c.yaml", text);
        ASSERT_TRUE(res.ok()) << text << formatted(res.errors);
        const Config& cfg = *res.config;
        ASSERT_EQ(cfg.server.listen.size(), 1u);
        EXPECT_EQ(cfg.server.listen[0].text, "0.0.0.0:8080");
        ASSERT_TRUE(cfg.admin.listen);
        EXPECT_EQ(cfg.admin.listen->text, "127.0.0.1:9090");
        EXPECT_EQ(cfg.spool.dir, "./var/spool");
        EXPECT_TRUE(cfg.routes.empty());
        EXPECT_EQ(cfg.files, std::vector<std::string>{"c.yaml"});
        EXPECT_TRUE(res.warnings.empty());
    }
}

TEST_F(ConfigLoad, RefusesYamlFeaturesAConfigurationShouldNotUse) {
    expect_errors({
        {"server:\n  shards: 2\n  shards: 3\n",
         {"c.yaml:3:3: server.shards: duplicate key \"shards\"; first defined at c.yaml:2:3"}},
        {"routes:\n  a: {path: /a, path: /b}\n",
         {"c.yaml:2:17: routes.a.path: duplicate key \"path\"; first defined at c.yaml:2:7"}},
        {"server: &s {shards: 2}\n", {"c.yaml:1:9: server: anchors (&name) are not supported"}},
        {"spool: {dir: &d x, retention: *d}\n",
         {"c.yaml:1:14: spool.dir: anchors", "c.yaml:1:31: spool.retention: aliases (*name)"}},
        {"server: !!map {shards: 2}\n", {"c.yaml:1:9: server: tags (!name) are not supported"}},
        {"spool: {dir: !secret x}\n", {"c.yaml:1:14: spool.dir: tags"}},
        {"%TAG ! tag:example.com,2000:\n---\nspool: {}\n", {"tags (%TAG) are not supported"}},
        {"server: {}\n---\nadmin: {}\n", {"c.yaml:2:1: more than one document (---)"}},
        {"? [a]\n: b\n", {"c.yaml:1:3: keys must be strings, found a list"}},
        {"server: {? {a: 1} : 2}\n",
         {"c.yaml:1:12: server: keys must be strings, found a mapping"}},
        {"server:\n  ~: 2\n", {"c.yaml:2:3: server: empty key"}},
        {"- server\n",
         {"c.yaml:1:1: expected a mapping of server, admin, spool, routes, sinks, tokens, "
          "integrity at the top level, found a list"}},
        {"just text\n", {"c.yaml:1:1: expected a mapping", "found \"just text\""}},
        {"a: " + std::string(100, '['), {"c.yaml:1:", "nested deeper than 64 levels"}},
    });
}

TEST_F(ConfigLoad, ReportsSyntaxErrorsWithLibyamlsProblem) {
    expect_errors({
        {"a: b\n c: d\n", {"c.yaml:2:3: mapping values are not allowed in this context"}},
        {"server:\n  listen: [\n",
         {"c.yaml:3:1: server.listen[0]: did not find expected node content (while parsing a "
          "flow node at line 3 column 1)"}},
        {"spool: {dir: \"unterminated}\n", {"c.yaml:", "found unexpected end of stream"}},
        {"server:\n\tshards: 2\n",
         {"c.yaml:2:1: server: found character that cannot start any token"}},
        {"a: \"\xff\"\n", {"c.yaml: invalid leading UTF-8 octet"}},
    });
}

TEST_F(ConfigLoad, UnknownKeysListWhatIsAllowedAndSuggestTheClosest) {
    expect_errors({
        {"sever: {}\n",
         {"c.yaml:1:1: sever: unknown key (did you mean \"server\"?); allowed here: server, admin, "
          "spool, routes, sinks, tokens, integrity"}},
        {"banana: 1\n", {"c.yaml:1:1: banana: unknown key; allowed here: server,"}},
        {"server:\n  lisen: [\"0.0.0.0:8080\"]\n",
         {"c.yaml:2:3: server.lisen: unknown key (did you mean \"listen\"?); allowed here: "
          "listen, shards, max_connections, max_connections_per_ip, deny, drain_timeout, "
          "limits, timeouts, client_ip, tls"}},
        {"server: {limits: {body: 1MiB}}\n",
         {"c.yaml:1:19: server.limits.body: unknown key; allowed here: header_bytes, headers, "
          "body_bytes"}},
        {github_route("    max_attempt: 3\n"),
         {"c.yaml:5:5: routes.r.max_attempt: unknown key (did you mean \"max_attempts\"?)"}},
        {route_with_verify("{scheme: github, secret: [{env: X}]}"),
         {"c.yaml:3:30: routes.r.verify.secret: unknown key (did you mean \"secrets\"?)"}},
        // Every unknown key is reported, not only the first.
        {"spool: {dri: x, retension: 1h}\n",
         {"spool.dri: unknown key (did you mean \"dir\"?)",
          "spool.retension: unknown key (did you mean \"retention\"?)"}},
    });
}

TEST_F(ConfigLoad, TypeErrorsSayWhatWasExpectedAndFound) {
    expect_errors({
        {"server: []\n", {"c.yaml:1:9: server: expected a mapping, found a list"}},
        {"server: {listen: \"0.0.0.0:8080\"}\n",
         {"c.yaml:1:18: server.listen: expected a list like [\"0.0.0.0:8080\"], found "
          "\"0.0.0.0:8080\""}},
        {"server: {max_connections: many}\n",
         {"c.yaml:1:27: server.max_connections: expected a whole number from 1 to 4294967295, "
          "found \"many\""}},
        {"server: {max_connections: {a: 1}}\n", {"found a mapping"}},
        {"spool: {dir: }\n", {"c.yaml:1:", "spool.dir: expected a string, found nothing"}},
        {"spool: {dir: [a]}\n", {"spool.dir: expected a string, found a list"}},
        {"spool: {retention: 3 days}\n", {"spool.retention: unknown duration unit \" days\""}},
    });
}

TEST_F(ConfigLoad, ServerSection) {
    expect_errors({
        {"server:\n"
         "  listen: [\"0.0.0.0:8080\", \"[::]:8443\", \"localhost:8081\"]\n"
         "  shards: auto\n"
         "  max_connections: 10000\n"
         "  max_connections_per_ip: 256\n"
         "  deny: [\"192.0.2.0/24\"]\n"
         "  drain_timeout: 0s\n"
         "  limits: {header_bytes: 1KiB, headers: 1000, body_bytes: 1GiB}\n"
         "  timeouts: {header: 10s, body: 30s, idle: 60s}\n"
         "  client_ip: {trusted_proxies: [\"10.0.0.0/8\"], proxy_protocol: v2}\n",
         {}},
        {"server: {listen: []}\n",
         {"c.yaml:1:18: server.listen: nothing to serve: server.listen and server.tls.listen "
          "are both empty"}},
        {"server: {listen: [\"0.0.0.0:8080\", \"0.0.0.0:8080\"]}\n",
         {"c.yaml:1:35: server.listen[1]: 0.0.0.0:8080 overlaps 0.0.0.0:8080 listed before it"}},
        {"server: {listen: [\"0.0.0.0:8080\", \"127.0.0.1:8080\"]}\n",
         {"server.listen[1]: 127.0.0.1:8080 overlaps 0.0.0.0:8080"}},
        {"server: {listen: [\"0.0.0.0:80800\"]}\n",
         {"c.yaml:1:19: server.listen[0]: port must be a number from 0 to 65535"}},
        {"server: {listen: [8080]}\n", {"server.listen[0]: expected host:port"}},
        {"server: {shards: 0}\n",
         {"c.yaml:1:18: server.shards: expected a whole number from 1 to 256, found \"0\""}},
        {"server: {shards: 257}\n", {"server.shards: expected a whole number from 1 to 256"}},
        {"server: {shards: all}\n",
         {"server.shards: expected auto or a number from 1 to 256, found \"all\""}},
        {"server: {max_connections: 0}\n", {"server.max_connections: expected a whole number"}},
        {"server: {max_connections: 4294967296}\n", {"server.max_connections: expected"}},
        {"server: {max_connections: -1}\n", {"server.max_connections: expected"}},
        {"server: {max_connections_per_ip: 0}\n", {"server.max_connections_per_ip: expected"}},
        {"server: {deny: [\"10.0.0.1/8\"]}\n",
         {"c.yaml:1:17: server.deny[0]: host bits set beyond /8: did you mean 10.0.0.0/8?"}},
        {"server: {deny: \"10.0.0.0/8\"}\n", {"server.deny: expected a list like"}},
        {"server: {drain_timeout: 10}\n",
         {"server.drain_timeout: a duration needs a unit: 10s or 10ms, not \"10\""}},
        {"server: {limits: {header_bytes: 512}}\n",
         {"c.yaml:1:33: server.limits.header_bytes: must be from 1KiB to 1MiB, found \"512\""}},
        {"server: {limits: {header_bytes: 2MiB}}\n", {"must be from 1KiB to 1MiB"}},
        {"server: {limits: {headers: 1001}}\n",
         {"server.limits.headers: expected a whole number from 1 to 1000, found \"1001\""}},
        {"server: {limits: {body_bytes: 0}}\n",
         {"server.limits.body_bytes: must be from 1 to 1GiB, found \"0\""}},
        {"server: {limits: {body_bytes: 2GiB}}\n", {"must be from 1 to 1GiB"}},
        {"server: {limits: {body_bytes: 1MB}}\n",
         {"server.limits.body_bytes: unit \"MB\" is ambiguous: write 1MiB"}},
        {"server: {timeouts: {header: 0s}}\n",
         {"server.timeouts.header: must be at least 1ms, found \"0s\""}},
        {"server: {timeouts: {idle: 1.5s, body: 5x}}\n",
         {"server.timeouts.idle: durations take whole numbers",
          "server.timeouts.body: unknown duration unit \"x\""}},
        {"server: {client_ip: {proxy_protocol: v3}}\n",
         {"c.yaml:1:38: server.client_ip.proxy_protocol: expected off, v1, v2 or any, found "
          "\"v3\""}},
        {"server: {client_ip: {trusted_proxies: [\"::1/200\"]}}\n",
         {"server.client_ip.trusted_proxies[0]: prefix length must be a number from 0 to 128"}},
    });

    LoadResult res = load_text("c.yaml", "server:\n"
                                         "  listen: [\"[::1]:8443\"]\n"
                                         "  shards: 4\n"
                                         "  limits: {header_bytes: 8KiB, headers: 32}\n"
                                         "  timeouts: {idle: 5m}\n"
                                         "  client_ip: {proxy_protocol: any}\n");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    const ServerConfig& s = res.config->server;
    ASSERT_EQ(s.listen.size(), 1u);
    EXPECT_EQ(s.listen[0].host, "::1");
    EXPECT_EQ(s.listen[0].port, 8443);
    EXPECT_EQ(s.shards, 4u);
    EXPECT_EQ(s.header_bytes, 8u * 1024);
    EXPECT_EQ(s.headers, 32u);
    EXPECT_EQ(s.body_bytes, 1024u * 1024); // default kept
    EXPECT_EQ(s.idle_timeout_ns, 300'000'000'000);
    EXPECT_EQ(s.header_timeout_ns, 10'000'000'000);
    EXPECT_EQ(s.proxy_protocol, ProxyProtocol::any);
}

TEST_F(ConfigLoad, AdminNeverSharesASocketWithThePublicPlane) {
    expect_errors({
        {"admin: {listen: \"127.0.0.1:9091\"}\n", {}},
        {"admin: {listen: \"127.0.0.1:8080\"}\n",
         {"c.yaml:1:17: admin.listen: 127.0.0.1:8080 overlaps server.listen 0.0.0.0:8080: the "
          "control plane never shares a socket with the public plane"}},
        {"server: {listen: [\"10.0.0.1:9090\"]}\nadmin: {listen: \"[::]:9090\"}\n",
         {"c.yaml:2:17: admin.listen: [::]:9090 overlaps server.listen 10.0.0.1:9090"}},
        {"server: {listen: [\"127.0.0.1:8080\"]}\nadmin: {listen: \"localhost:8080\"}\n",
         {"admin.listen: localhost:8080 overlaps server.listen 127.0.0.1:8080"}},
        // With admin.listen left out, the public address that takes its default is blamed.
        {"server: {listen: [\"0.0.0.0:9090\"]}\n",
         {"c.yaml:1:19: server.listen[0]: 0.0.0.0:9090 overlaps the default admin.listen "
          "127.0.0.1:9090"}},
        // Tests bind port 0 on both planes: each gets its own ephemeral port.
        {"server: {listen: [\"127.0.0.1:0\"]}\nadmin: {listen: \"127.0.0.1:0\"}\n", {}},
        {"admin: {listen: [\"127.0.0.1:9090\"]}\n",
         {"admin.listen: expected a string, found a list"}},
        {"admin: {listen: \"9090\"}\n", {"admin.listen: expected host:port"}},
    });
}

TEST_F(ConfigLoad, TlsSection) {
    // One certificate, on line 4 of the text; `extra` goes into server.tls.
    auto tls = [](const std::string& extra = "") {
        return "server:\n  tls:\n    certificates:\n"
               "      - {cert: /etc/p/a.pem, key: /etc/p/a.key}\n" +
               extra;
    };
    expect_errors({
        {tls("    listen: [\"0.0.0.0:443\"]\n    min_version: \"1.3\"\n    session_tickets: "
             "false\n"),
         {}},
        {tls("    listen: [\"0.0.0.0:443\"]\n    min_version: 1.2\n    session_tickets: true\n"),
         {}},
        {tls("    lisen: [\"0.0.0.0:443\"]\n"),
         {"c.yaml:5:5: server.tls.lisen: unknown key (did you mean \"listen\"?); allowed here: "
          "listen, certificates, min_version, session_tickets"}},
        {"server:\n  tls:\n    listen: [\"0.0.0.0:443\"]\n    certificates:\n"
         "      - {cert: a.pem, key: a.key, chain: b.pem}\n",
         {"c.yaml:5:35: server.tls.certificates[0].chain: unknown key; allowed here: cert, key"}},
        // Listeners need a certificate to present.
        {"server:\n  tls:\n    listen: [\"0.0.0.0:443\"]\n",
         {"c.yaml:2:3: server.tls.certificates: needs at least one {cert: PATH, key: PATH} "
          "when server.tls.listen is set"}},
        {"server:\n  tls:\n    listen: [\"0.0.0.0:443\"]\n    certificates: []\n",
         {"c.yaml:4:19: server.tls.certificates: needs at least one {cert: PATH, key: PATH}"}},
        {"server:\n  tls:\n    listen: [\"0.0.0.0:443\"]\n    certificates: [{cert: a.pem}]\n",
         {"c.yaml:4:20: server.tls.certificates[0]: \"key\" is required"}},
        {"server:\n  tls:\n    listen: [\"0.0.0.0:443\"]\n    certificates: [{cert: \"\", key: "
         "k}]\n",
         {"c.yaml:4:27: server.tls.certificates[0].cert: must not be empty"}},
        {"server:\n  tls:\n    listen: [\"0.0.0.0:443\"]\n    certificates: [a.pem]\n",
         {"c.yaml:4:20: server.tls.certificates[0]: expected a mapping like {cert: PATH, key: "
          "PATH}, found \"a.pem\""}},
        {"server:\n  tls:\n    listen: [\"0.0.0.0:443\"]\n    certificates: {cert: a, key: b}\n",
         {"server.tls.certificates: expected a list like [{cert: PATH, key: PATH}], found a "
          "mapping"}},
        // Versions before 1.2 are never offered.
        {tls("    listen: [\"0.0.0.0:443\"]\n    min_version: \"1.0\"\n"),
         {"c.yaml:6:18: server.tls.min_version: TLS 1.0 is never offered (nor 1.1): expected "
          "1.2 or 1.3"}},
        {tls("    listen: [\"0.0.0.0:443\"]\n    min_version: 1.1\n"),
         {"server.tls.min_version: TLS 1.1 is never offered (nor 1.0): expected 1.2 or 1.3"}},
        {tls("    listen: [\"0.0.0.0:443\"]\n    min_version: TLSv1.3\n"),
         {"server.tls.min_version: expected 1.2 or 1.3, found \"TLSv1.3\""}},
        {tls("    listen: [\"0.0.0.0:443\"]\n    session_tickets: yes\n"),
         {"c.yaml:6:22: server.tls.session_tickets: expected true or false, found \"yes\""}},
        {tls("    listen: \"0.0.0.0:443\"\n"),
         {"c.yaml:5:13: server.tls.listen: expected a list like [\"0.0.0.0:443\"], found "
          "\"0.0.0.0:443\""}},
        {tls("    listen: [\"0.0.0.0:99999\"]\n"),
         {"c.yaml:5:14: server.tls.listen[0]: port must be a number from 0 to 65535"}},
        {"server: {tls: [a]}\n", {"c.yaml:1:15: server.tls: expected a mapping, found a list"}},
    });
}

TEST_F(ConfigLoad, TlsListenersOverlapNothing) {
    const std::string certs = "    certificates: [{cert: a.pem, key: a.key}]\n";
    expect_errors({
        // The same port on a plain listener.
        {"server:\n  listen: [\"0.0.0.0:8443\"]\n  tls:\n    listen: [\"127.0.0.1:8443\"]\n" +
             certs,
         {"c.yaml:4:14: server.tls.listen[0]: 127.0.0.1:8443 overlaps server.listen "
          "0.0.0.0:8443"}},
        // Two TLS listeners on one socket.
        {"server:\n  tls:\n    listen: [\"[::]:443\", \"[::1]:443\"]\n" + certs,
         {"c.yaml:3:26: server.tls.listen[1]: [::1]:443 overlaps [::]:443 listed before it"}},
        // The control plane, explicit or by default.
        {"server:\n  tls:\n    listen: [\"127.0.0.1:8443\"]\n" + certs +
             "admin: {listen: \"localhost:8443\"}\n",
         {"c.yaml:5:17: admin.listen: localhost:8443 overlaps server.tls.listen 127.0.0.1:8443: "
          "the control plane never shares a socket with the public plane"}},
        {"server:\n  tls:\n    listen: [\"0.0.0.0:9090\"]\n" + certs,
         {"c.yaml:3:14: server.tls.listen[0]: 0.0.0.0:9090 overlaps the default admin.listen "
          "127.0.0.1:9090"}},
        // Port 0: each bind gets its own port.
        {"server:\n  listen: [\"127.0.0.1:0\"]\n  tls:\n    listen: [\"127.0.0.1:0\", "
         "\"127.0.0.1:0\"]\n" +
             certs + "admin: {listen: \"127.0.0.1:0\"}\n",
         {}},
    });
}

TEST_F(ConfigLoad, TlsAloneOrNothingToServe) {
    const std::string certs = "    certificates: [{cert: a.pem, key: a.key}]\n";
    // TLS only: server.listen may be empty.
    LoadResult res = load_text(
        "c.yaml", "server:\n  listen: []\n  tls:\n    listen: [\"0.0.0.0:443\"]\n" + certs);
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_TRUE(res.warnings.empty()) << formatted(res.warnings);
    EXPECT_TRUE(res.config->server.listen.empty());
    ASSERT_TRUE(res.config->server.tls);
    const TlsConfig& t = *res.config->server.tls;
    ASSERT_EQ(t.listen.size(), 1u);
    EXPECT_EQ(t.listen[0].text, "0.0.0.0:443");
    EXPECT_EQ(t.listen[0].port, 443);
    ASSERT_EQ(t.certificates.size(), 1u);
    EXPECT_EQ(t.certificates[0].cert, "a.pem"); // load_text: no directory to resolve against
    EXPECT_EQ(t.certificates[0].key, "a.key");
    EXPECT_EQ(t.certificates[0].mark.line, 5);
    EXPECT_EQ(t.min_version, TlsVersion::v1_2);
    EXPECT_TRUE(t.session_tickets);
    EXPECT_EQ(t.ticket_rotation_ns, int64_t{12} * 3600 * 1'000'000'000);

    // Neither plain nor TLS listeners.
    expect_errors({
        {"server:\n  listen: []\n  tls:\n    listen: []\n" + certs,
         {"c.yaml:2:11: server.listen: nothing to serve: server.listen and server.tls.listen "
          "are both empty"}},
    });

    // Without server.listen, the default plain listener stays next to TLS.
    res = load_text("c.yaml", "server:\n  tls:\n    listen: [\"0.0.0.0:443\"]\n" + certs +
                                  "    min_version: \"1.3\"\n    session_tickets: false\n");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    ASSERT_EQ(res.config->server.listen.size(), 1u);
    EXPECT_EQ(res.config->server.listen[0].text, "0.0.0.0:8080");
    ASSERT_TRUE(res.config->server.tls);
    EXPECT_EQ(res.config->server.tls->min_version, TlsVersion::v1_3);
    EXPECT_FALSE(res.config->server.tls->session_tickets);
}

TEST_F(ConfigLoad, TlsWithoutListenersIsNotServed) {
    expect_warnings({
        {"server:\n  tls:\n    certificates: [{cert: a.pem, key: a.key}]\n",
         {"c.yaml:2:3: server.tls: certificates are set but server.tls.listen is empty: TLS is "
          "not served"}},
        {"server:\n  tls:\n    listen: []\n    certificates: [{cert: a.pem, key: a.key}]\n",
         {"c.yaml:2:3: server.tls: certificates are set but server.tls.listen is empty"}},
        {"server:\n  tls:\n    listen: []\n", {}},
        {"server:\n  tls:\n", {}},
    });
    LoadResult res =
        load_text("c.yaml", "server:\n  tls:\n    certificates: [{cert: a, key: b}]\n");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_FALSE(res.config->server.tls);
    LoadResult none = load_text("c.yaml", "");
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none.config->server.tls);
}

TEST_F(ConfigLoad, AdminMaxConnections) {
    expect_errors({
        {"admin: {max_connections: 1}\n", {}},
        {"admin: {max_connections: 65536}\n", {}},
        {"admin: {max_connections: 0}\n",
         {"c.yaml:1:26: admin.max_connections: expected a whole number from 1 to 65536, found "
          "\"0\""}},
        {"admin: {max_connections: 65537}\n", {"admin.max_connections: expected a whole number"}},
        {"admin: {max_connections: -3}\n", {"admin.max_connections: expected a whole number"}},
        {"admin: {max_connections: 1.5}\n", {"admin.max_connections: expected a whole number"}},
        {"admin: {max_connections: lots}\n", {"admin.max_connections: expected a whole number"}},
        {"admin: {max_conections: 8}\n",
         {"admin.max_conections: unknown key (did you mean \"max_connections\"?); allowed here: "
          "listen, max_connections"}},
    });
    LoadResult res = load_text("c.yaml", "admin: {max_connections: 16}\n");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_EQ(res.config->admin.max_connections, 16u);
    res = load_text("c.yaml", "admin: {listen: \"127.0.0.1:9091\"}\n");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_EQ(res.config->admin.max_connections, 256u); // the default
}

TEST_F(ConfigLoad, AdminEvents) {
    expect_errors({
        {"admin: {events: {buffer: 100, subscribers: 1, backlog: 64KiB}}\n", {}},
        {"admin: {events: {buffer: 1000000, subscribers: 1024, backlog: 256MiB}}\n", {}},
        {"admin: {events: {buffer: 99}}\n",
         {"admin.events.buffer: expected a whole number from 100 to 1000000"}},
        {"admin: {events: {subscribers: 0}}\n",
         {"admin.events.subscribers: expected a whole number from 1 to 1024"}},
        {"admin: {events: {backlog: 1KiB}}\n", {"c.yaml:1:27: admin.events.backlog: "}},
        {"admin: {events: {backlog: 257MiB}}\n", {"admin.events.backlog: "}},
        {"admin: {events: {backlogs: 1MiB}}\n",
         {"admin.events.backlogs: unknown key (did you mean \"backlog\"?)"}},
    });
    LoadResult res = load_text("c.yaml", "admin: {events: {backlog: 1MiB}}\n");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_EQ(res.config->admin.events.backlog, size_t{1} << 20);
    EXPECT_EQ(res.config->admin.events.buffer, 10000u); // the defaults
    EXPECT_EQ(res.config->admin.events.subscribers, 16u);
    res = load_text("c.yaml", "");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_EQ(res.config->admin.events.backlog, size_t{4} << 20);
}

TEST_F(ConfigLoad, AdminConsumersHealthInterval) {
    expect_errors({
        {"admin: {consumers: {health_interval: 1s}}\n", {}},
        {"admin: {consumers: {health_interval: 24h}}\n", {}},
        {"admin: {consumers: {health_interval: 500ms}}\n",
         {"c.yaml:1:38: admin.consumers.health_interval: "}},
        {"admin: {consumers: {health_interval: 25h}}\n",
         {"admin.consumers.health_interval: at most 24h"}},
        {"admin: {consumers: {interval: 1s}}\n", {"admin.consumers.interval: unknown key"}},
    });
    LoadResult res = load_text("c.yaml", "admin: {consumers: {health_interval: 1s}}\n");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_EQ(res.config->admin.consumers.health_interval_ns, 1'000'000'000);
    res = load_text("c.yaml", "");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_EQ(res.config->admin.consumers.health_interval_ns, 30'000'000'000); // the default
}

TEST_F(ConfigLoad, SpoolSection) {
    expect_errors({
        {"spool: {dir: /var/lib/portcullis, durability: batch, segment_size: 4GiB, retention: "
         "24h}\n",
         {}},
        {"spool: {dir: \"\"}\n", {"c.yaml:1:14: spool.dir: must not be empty"}},
        {"spool: {durability: sometimes}\n",
         {"c.yaml:1:21: spool.durability: expected fsync, batch or none, found \"sometimes\""}},
        {"spool: {segment_size: 512KiB}\n",
         {"spool.segment_size: must be from 1MiB to 4GiB, found \"512KiB\""}},
        {"spool: {segment_size: 5GiB}\n", {"spool.segment_size: must be from 1MiB to 4GiB"}},
        {"spool: {retention: 0s}\n", {"spool.retention: must be at least 1ms"}},
    });
    LoadResult res = load_text("c.yaml", "spool: {dir: /srv/spool, durability: none, "
                                         "segment_size: 16MiB, retention: 30m}\n");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_EQ(res.config->spool.dir, "/srv/spool");
    EXPECT_EQ(res.config->spool.durability, Durability::none);
    EXPECT_EQ(res.config->spool.segment_size, 16u << 20);
    EXPECT_EQ(res.config->spool.retention_ns, 1800'000'000'000);
}

TEST_F(ConfigLoad, RouteNamesAndPaths) {
    expect_errors({
        {github_route(), {}},
        {github_route("", "/internal/jobs/{job_id}/status"), {}},
        {github_route("", "/"), {}},
        {github_route("", "/webhooks/"), {}},
        {github_route("", "/a%2Fb/~user/x-y_z.json"), {}},
        {github_route("", "/a:b@c!$&'()*+,;="), {}},
        {"routes:\n  GitHub: {}\n",
         {"c.yaml:2:3: routes.GitHub: route names are 1 to 64 characters of [a-z0-9_-], found "
          "\"GitHub\""}},
        {"routes:\n  " + std::string(65, 'a') + ": {}\n", {"route names are 1 to 64"}},
        {"routes:\n  r: /hook\n",
         {"c.yaml:2:6: routes.r: expected a mapping (path, verify, ...), found \"/hook\""}},
        {"routes:\n  r:\n    verify: {scheme: none}\n",
         {"c.yaml:2:3: routes.r: \"path\" is required"}},
        {"routes:\n  r:\n    path: /r\n", {"c.yaml:2:3: routes.r: \"verify\" is required"}},
        {github_route("", "webhooks"),
         {"c.yaml:3:11: routes.r.path: must start with '/', found \"webhooks\""}},
        {github_route("", "/healthz"), {"routes.r.path: /healthz is reserved"}},
        {github_route("", "/a//b"), {"routes.r.path: empty segment (//) in \"/a//b\""}},
        {github_route("", "/a/{id}x"), {"routes.r.path: a parameter is a whole segment"}},
        {github_route("", "/a/x{id}"), {"routes.r.path: a parameter must be a whole segment"}},
        {github_route("", "/a/{Id}"), {"with a name of [a-z0-9_], found \"{Id}\""}},
        {github_route("", "/a/{}"), {"with a name of [a-z0-9_]"}},
        {github_route("", "/a/{id}/b/{id}"), {"routes.r.path: parameter {id} appears twice"}},
        {github_route("", "\"/a b\""), {"character \" \" is not allowed in a URI path"}},
        {github_route("", "/a?b=1"), {"character \"?\" is not allowed"}},
        {github_route("", "/a%zz"), {"'%' must start a %XX escape"}},
        {github_route("", "/a%2"), {"'%' must start a %XX escape"}},
    });
}

TEST_F(ConfigLoad, RoutesWithTheSamePathShapeClash) {
    const std::string verify =
        "    verify: {scheme: github, secrets: [{env: PORTCULLIS_TEST_GH}]}\n";
    expect_errors({
        {"routes:\n  a:\n    path: /x/{id}\n" + verify + "  b:\n    path: /x/{name}\n" + verify,
         {"c.yaml:6:11: routes.b.path: \"/x/{name}\" has the same shape as route a's path "
          "\"/x/{id}\" (c.yaml:3:11): a request could not tell them apart"}},
        {"routes:\n  a:\n    path: /x\n" + verify + "  b:\n    path: /x\n" + verify,
         {"routes.b.path: \"/x\" has the same shape as route a's path \"/x\""}},
        // A literal segment and a parameter are different shapes.
        {"routes:\n  a:\n    path: /x/{id}\n" + verify + "  b:\n    path: /x/latest\n" + verify,
         {}},
        {"routes:\n  a:\n    path: /x/{id}\n" + verify + "  b:\n    path: /x/{id}/y\n" + verify,
         {}},
    });
}

// The router takes the matching route with the fewest {param} segments, then checks the method
// (Snapshot::match). Two paths that share a request path without one being literal wherever they
// differ would leave the choice to the order of declaration: an unsigned route could take a signed
// route's requests. They are refused, naming both routes and a path both match.
TEST_F(ConfigLoad, RoutesWhosePathsOverlapWithoutNestingClash) {
    const std::string verify =
        "    verify: {scheme: github, secrets: [{env: PORTCULLIS_TEST_GH}]}\n";
    auto two = [&](const std::string& a, const std::string& b) {
        return "routes:\n  a:\n    path: " + a + "\n" + verify + "  b:\n    path: " + b + "\n" +
               verify;
    };
    expect_errors({
        {two("/webhooks/{x}/y", "/webhooks/z/{w}"),
         {"c.yaml:6:11: routes.b.path: \"/webhooks/z/{w}\" overlaps route a's path "
          "\"/webhooks/{x}/y\" (c.yaml:3:11): both match \"/webhooks/z/y\" and neither is more "
          "specific"}},
        {two("/webhooks/z/{w}", "/webhooks/{x}/y"),
         {"c.yaml:6:11: routes.b.path: \"/webhooks/{x}/y\" overlaps route a's path "
          "\"/webhooks/z/{w}\" (c.yaml:3:11): both match \"/webhooks/z/y\""}},
        // Where both have a parameter, the example takes the earlier route's name.
        {two("/{x}/a/{p}", "/b/{y}/{q}"), {"routes.b.path: ", "both match \"/b/a/p\""}},
        // Not overlapping: different segment counts, different literals, a parameter against a
        // literal where another literal differs, a parameter against the empty last segment
        // (a parameter matches only a non-empty one).
        {two("/webhooks/{x}", "/webhooks/{x}/y"), {}},
        {two("/webhooks/a/y", "/webhooks/b/y"), {}},
        {two("/webhooks/{x}/y", "/webhooks/z/w"), {}},
        {two("/webhooks/{x}/y", "/hooks/z/{w}"), {}},
        {two("/webhooks/{x}", "/webhooks/"), {}},
        {two("/{x}", "/"), {}},
        // Nested: the path that is literal wherever they differ wins for the paths it matches,
        // whatever the order of declaration.
        {two("/x/{id}", "/x/latest"), {}},
        {two("/x/latest", "/x/{id}"), {}},
        {two("/x/{a}/{b}", "/x/y/{b}"), {}},
        {two("/x/y/{b}", "/x/{a}/{b}"), {}},
    });
    // Each clashing pair is reported, on the later route.
    LoadResult res = load_text("c.yaml", two("/webhooks/{x}/y", "/webhooks/z/{w}") +
                                             "  c:\n    path: /webhooks/{v}/{u}\n" + verify +
                                             "  d:\n    path: /webhooks/z/y\n" + verify);
    EXPECT_EQ(res.errors.size(), 1u) << formatted(res.errors);
    res = load_text("c.yaml", two("/webhooks/{x}/y", "/webhooks/z/{w}") +
                                  "  c:\n    path: /webhooks/{v}/q\n" + verify +
                                  "  d:\n    path: /webhooks/z/{t}\n" + verify);
    std::string errors = formatted(res.errors);
    EXPECT_EQ(res.errors.size(), 5u) << errors; // b-a, c-b, d-a, d-b (same shape), d-c
    EXPECT_NE(errors.find("c.yaml:12:11: routes.d.path: \"/webhooks/z/{t}\" overlaps route c's "
                          "path \"/webhooks/{v}/q\" (c.yaml:9:11): both match \"/webhooks/z/q\""),
              std::string::npos)
        << errors;
}

// Routes are chosen by path alone, then the method is checked against that route: a second route
// of the same shape could never be reached, whatever methods it lists.
TEST_F(ConfigLoad, RoutesOfTheSameShapeClashWhateverTheirMethods) {
    const std::string verify =
        "    verify: {scheme: github, secrets: [{env: PORTCULLIS_TEST_GH}]}\n";
    expect_errors({
        {"routes:\n  a:\n    path: /x\n    methods: [GET]\n" + verify +
             "  b:\n    path: /x\n    methods: [POST]\n" + verify,
         {"c.yaml:7:11: routes.b.path: \"/x\" has the same shape as route a's path \"/x\" "
          "(c.yaml:3:11): a request could not tell them apart (a route is chosen by its path, "
          "then the method is checked: list every method in one route's methods)"}},
    });
}

TEST_F(ConfigLoad, RouteMethodsAttemptsAndDurability) {
    expect_errors({
        {github_route("    methods: [GET, POST, PUT, M-SEARCH]\n"), {}},
        {github_route("    methods: [post]\n"),
         {"c.yaml:5:15: routes.r.methods[0]: expected an upper-case method like POST, found "
          "\"post\""}},
        {github_route("    methods: [POST, POST]\n"),
         {"c.yaml:5:21: routes.r.methods[1]: POST is listed twice"}},
        {github_route("    methods: []\n"), {"routes.r.methods: needs at least one method"}},
        {github_route("    methods: POST\n"), {"routes.r.methods: expected a list like [POST]"}},
        {github_route("    methods: [\"PO ST\"]\n"), {"expected an upper-case method"}},
        {github_route("    max_attempts: 1000\n"), {}},
        {github_route("    max_attempts: 0\n"),
         {"c.yaml:5:19: routes.r.max_attempts: expected a whole number from 1 to 1000, found "
          "\"0\""}},
        {github_route("    max_attempts: 1001\n"), {"from 1 to 1000, found \"1001\""}},
        {github_route("    durability: batch\n"), {}},
        {github_route("    durability: fast\n"),
         {"routes.r.durability: expected fsync, batch or none, found \"fast\""}},
    });
    LoadResult res = load_text("c.yaml", github_route("    methods: [PUT, POST]\n"
                                                      "    max_attempts: 3\n"
                                                      "    durability: none\n"));
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    const RouteConfig& r = res.config->routes.at(0);
    EXPECT_EQ(r.name, "r");
    EXPECT_EQ(r.path, "/r");
    EXPECT_EQ(r.methods, (std::vector<std::string>{"PUT", "POST"}));
    EXPECT_EQ(r.max_attempts, 3u);
    EXPECT_EQ(r.durability, Durability::none);
    EXPECT_EQ(r.mark.line, 2);

    res = load_text("c.yaml", github_route());
    ASSERT_TRUE(res.ok());
    EXPECT_EQ(res.config->routes.at(0).methods, std::vector<std::string>{"POST"});
    EXPECT_EQ(res.config->routes.at(0).max_attempts, 10u);
    EXPECT_FALSE(res.config->routes.at(0).durability);
}

TEST_F(ConfigLoad, KeepHeadersNamesOnlyCredentials) {
    expect_errors({
        {github_route("    keep_headers: [Authorization, proxy-authorization, COOKIE]\n"), {}},
        {github_route("    keep_headers: []\n"), {}},
        {github_route("    keep_headers: Authorization\n"),
         {"c.yaml:5:19: routes.r.keep_headers: expected a list like [Authorization]"}},
        {github_route("    keep_headers: [X-Request-Id]\n"),
         {"c.yaml:5:20: routes.r.keep_headers[0]: \"X-Request-Id\" is stored already: "
          "keep_headers names the credentials to keep (Authorization, Proxy-Authorization, "
          "Cookie)"}},
        {github_route("    keep_headers: [Connection]\n"),
         {"routes.r.keep_headers[0]: \"Connection\" describes the connection, not the webhook: "
          "hop-by-hop fields are never stored"}},
        {github_route("    keep_headers: [Cookie, cookie]\n"),
         {"c.yaml:5:28: routes.r.keep_headers[1]: \"cookie\" is listed twice"}},
        {github_route("    keep_headers: [\"Bad Name\"]\n"),
         {"routes.r.keep_headers[0]: expected a header name"}},
        // A shared secret stays out even when it travels in a credential field.
        {"routes:\n  r:\n    path: /r\n    verify: {scheme: shared_secret, header: "
         "Authorization, secrets: [{env: PORTCULLIS_TEST_GH}]}\n    keep_headers: "
         "[authorization]\n",
         {"c.yaml:5:20: routes.r.keep_headers[0]: \"authorization\" carries this route's shared "
          "secret (verify.header): it is never stored"}},
    });
    LoadResult res =
        load_text("c.yaml", github_route("    keep_headers: [Cookie, Authorization]\n"));
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_EQ(res.config->routes.at(0).keep_headers,
              (std::vector<std::string>{"cookie", "authorization"}));
    res = load_text("c.yaml", github_route());
    ASSERT_TRUE(res.ok());
    EXPECT_TRUE(res.config->routes.at(0).keep_headers.empty());
}

TEST_F(ConfigLoad, VerifySchemesAndTheirOptions) {
    const std::string gh = "secrets: [{env: PORTCULLIS_TEST_GH}]";
    const std::string whsec = "secrets: [{value: whsec_c2VjcmV0}]";
    const std::string hex_key(64, 'a');
    expect_errors({
        {route_with_verify("{scheme: github, " + gh + "}"), {}},
        {route_with_verify("{scheme: stripe, " + whsec + ", tolerance: 10m}"), {}},
        {route_with_verify("{scheme: slack, " + gh + ", tolerance: 1s}"), {}},
        {route_with_verify("{scheme: standard, " + whsec + "}"), {}},
        {route_with_verify("{scheme: shopify, " + gh + "}"), {}},
        {route_with_verify("{scheme: ed25519, secrets: [{value: " + hex_key + "}]}"), {}},
        {route_with_verify("{scheme: shared_secret, " + gh + "}"), {}},
        {route_with_verify("{scheme: hmac, header: X-Sig, " + gh + "}"), {}},
        {route_with_verify("{scheme: none}"), {}},
        {route_with_verify("{secrets: [{env: X}]}"),
         {"c.yaml:3:5: routes.r.verify: \"scheme\" is required"}},
        {route_with_verify("{scheme: gitlab}"),
         {"c.yaml:3:22: routes.r.verify.scheme: expected github, stripe, slack, standard, "
          "shopify, hmac, shared_secret, ed25519 or none, found \"gitlab\""}},
        {route_with_verify("{scheme: github}"),
         {"c.yaml:3:5: routes.r.verify: \"secrets\" is required for scheme github"}},
        {route_with_verify("{scheme: github, secrets: []}"),
         {"c.yaml:3:39: routes.r.verify.secrets: needs at least one secret"}},
        {route_with_verify("{scheme: github, secrets: {env: X}}"),
         {"routes.r.verify.secrets: expected a list like [{env: NAME}], found a mapping"}},
        {route_with_verify("{scheme: none, secrets: [{env: X}]}"),
         {"c.yaml:3:28: routes.r.verify.secrets: scheme none takes no secrets"}},
        {route_with_verify("{scheme: github, " + gh + ", tolerance: 5m}"),
         {"routes.r.verify.tolerance: scheme github has no timestamp window (its options: "
          "scheme, secrets)"}},
        {route_with_verify("{scheme: shopify, " + gh + ", tolerance: 5m}"),
         {"routes.r.verify.tolerance: scheme shopify has no timestamp window"}},
        {route_with_verify("{scheme: none, tolerance: 5m}"),
         {"routes.r.verify.tolerance: scheme none has no timestamp window"}},
        {route_with_verify("{scheme: github, " + gh + ", header: X-Sig}"),
         {"routes.r.verify.header: not an option of scheme github (its options: scheme, "
          "secrets)"}},
        {route_with_verify("{scheme: shared_secret, " + gh + ", prefix: x}"),
         {"routes.r.verify.prefix: not an option of scheme shared_secret (its options: scheme, "
          "secrets, header)"}},
        {route_with_verify("{scheme: stripe, " + whsec + ", tolerance: 300}"),
         {"routes.r.verify.tolerance: a duration needs a unit"}},
        {route_with_verify("{scheme: stripe, " + whsec + ", tolerance: 500ms}"),
         {"routes.r.verify.tolerance: must be at least 1s"}},
        {route_with_verify("{scheme: shared_secret, " + gh + ", header: \"X Token\"}"),
         {"routes.r.verify.header: expected a header name (token characters), found \"X "
          "Token\""}},
    });

    LoadResult res = load_text(
        "c.yaml", route_with_verify("{scheme: shared_secret, header: X-Gitlab-Token, " + gh + "}"));
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    const VerifyConfig& v = res.config->routes.at(0).verify;
    EXPECT_EQ(v.scheme, Scheme::shared_secret);
    EXPECT_EQ(v.header, "x-gitlab-token");
    EXPECT_EQ(v.mark.line, 3);
    EXPECT_EQ(v.mark.column, 5);

    res = load_text("c.yaml", route_with_verify("{scheme: shared_secret, " + gh + "}"));
    ASSERT_TRUE(res.ok());
    EXPECT_EQ(res.config->routes.at(0).verify.header, "x-callback-secret");

    res = load_text("c.yaml", route_with_verify("{scheme: stripe, " + whsec + ", tolerance: 10m}"));
    ASSERT_TRUE(res.ok());
    EXPECT_EQ(res.config->routes.at(0).verify.tolerance_ns, 600'000'000'000);
    EXPECT_EQ(default_tolerance_ns(Scheme::stripe), 300'000'000'000);
    EXPECT_EQ(default_tolerance_ns(Scheme::github), std::nullopt);
}

TEST_F(ConfigLoad, HmacOptions) {
    const std::string gh = "secrets: [{env: PORTCULLIS_TEST_GH}]";
    auto hmac = [&](const std::string& options) {
        return route_with_verify("{scheme: hmac, " + gh + ", " + options + "}");
    };
    expect_errors({
        {hmac("header: X-Sig, prefix: \"sha256=\", encoding: base64, algorithm: sha512"), {}},
        {hmac("header: X-Sig, timestamp_header: X-Ts, tolerance: 5m"), {}},
        {hmac("header: X-Sig, timestamp_header: X-Ts, template: \"v0:{timestamp}:{body}\""), {}},
        {hmac("header: X-Sig, template: \"prefix.{body}\""), {}},
        {hmac("prefix: x"), {"c.yaml:3:5: routes.r.verify: \"header\" is required"}},
        {hmac("header: X-Sig, encoding: base32"),
         {"routes.r.verify.encoding: expected hex or base64, found \"base32\""}},
        {hmac("header: X-Sig, algorithm: md5"),
         {"routes.r.verify.algorithm: expected sha256, sha512 or sha1, found \"md5\""}},
        {hmac("header: X-Sig, tolerance: 5m"),
         {"routes.r.verify.tolerance: needs timestamp_header: without a signed timestamp there "
          "is no window"}},
        {hmac("header: X-Sig, template: \"{timestamp}.{body}\""),
         {"routes.r.verify.template: {timestamp} needs timestamp_header"}},
        {hmac("header: X-Sig, template: \"{body}.sig\""),
         {"routes.r.verify.template: {body} must come last"}},
        {hmac("header: X-Sig, template: \"{body}{body}\""), {"{body} must come last"}},
        {hmac("header: X-Sig, template: \"v0\""),
         {"routes.r.verify.template: must end with {body}"}},
        {hmac("header: X-Sig, template: \"{id}.{body}\""),
         {"routes.r.verify.template: unknown placeholder \"{id}\""}},
        {hmac("header: X-Sig, template: \"{body\""), {"unclosed '{'"}},
        {hmac("header: X-Sig, template: \"}{body}\""), {"a '}' outside a placeholder"}},
        {hmac("header: X-Sig, timestamp_header: X-Ts, template: \"{body}\""),
         {"routes.r.verify.template: must contain {timestamp}"}},
        {hmac("header: X-Sig, timestamp_header: \"X Ts\""),
         {"routes.r.verify.timestamp_header: expected a header name"}},
    });

    LoadResult res = load_text("c.yaml", hmac("header: X-Sig, prefix: \"sha256=\", encoding: "
                                              "base64, algorithm: sha1, timestamp_header: X-Ts"));
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    const VerifyConfig& v = res.config->routes.at(0).verify;
    EXPECT_EQ(v.header, "x-sig");
    EXPECT_EQ(v.prefix, "sha256=");
    EXPECT_EQ(v.encoding, Encoding::base64);
    EXPECT_EQ(v.algorithm, Algorithm::sha1);
    EXPECT_EQ(v.timestamp_header, "x-ts");
    EXPECT_EQ(v.signed_template, "{timestamp}.{body}");
    EXPECT_FALSE(v.tolerance_ns);

    res = load_text("c.yaml", hmac("header: X-Sig"));
    ASSERT_TRUE(res.ok());
    EXPECT_EQ(res.config->routes.at(0).verify.signed_template, "{body}");
    EXPECT_EQ(res.config->routes.at(0).verify.encoding, Encoding::hex);
    EXPECT_EQ(res.config->routes.at(0).verify.algorithm, Algorithm::sha256);
}

TEST_F(ConfigLoad, SecretShapesAreCheckedPerScheme) {
    const std::string pk32 = "whpk_" + std::string(43, 'A') + "=";  // 32 bytes
    const std::string pk16 = "whpk_" + std::string(22, 'A') + "=="; // 16 bytes
    expect_errors({
        {route_with_verify("{scheme: standard, secrets: [{value: whsec_c2VjcmV0}, {value: " + pk32 +
                           "}]}"),
         {}},
        {route_with_verify("{scheme: standard, secrets: [{value: " + pk16 + "}]}"),
         {"routes.r.verify.secrets[0].value: secret value is not whpk_ followed by the base64 of "
          "a 32-byte Ed25519 key"}},
        {route_with_verify("{scheme: standard, secrets: [{value: whsec_}]}"),
         {"secret value is not whsec_ followed by non-empty base64"}},
        {route_with_verify("{scheme: standard, secrets: [{value: whsec_!!!!}]}"),
         {"secret value is not whsec_ followed by non-empty base64"}},
        {route_with_verify("{scheme: standard, secrets: [{env: PORTCULLIS_TEST_GH}]}"),
         {"routes.r.verify.secrets[0].env: secret env:PORTCULLIS_TEST_GH must be whsec_<base64> "
          "(an HMAC key) or whpk_<base64> (an Ed25519 public key)"}},
        {route_with_verify("{scheme: ed25519, secrets: [{value: abcd}]}"),
         {"secret value is not an Ed25519 public key: expected 64 hex characters, found 4 "
          "characters"}},
        {route_with_verify("{scheme: ed25519, secrets: [{value: " + std::string(64, 'g') + "}]}"),
         {"is not an Ed25519 public key"}},
    });
}

TEST_F(ConfigLoad, SecretItemsAreOneSourceAndNeverEchoed) {
    const std::string secret = "hunter2-do-not-print";
    expect_errors({
        {route_with_verify("{scheme: github, secrets: [\"" + secret + "\"]}"),
         {"c.yaml:3:40: routes.r.verify.secrets[0]: expected one of {env: NAME}, {file: PATH} or "
          "{value: \"...\"}, found a string"}},
        {route_with_verify("{scheme: github, secrets: [{env: X, value: " + secret + "}]}"),
         {"routes.r.verify.secrets[0]: expected one of", "found a mapping of 2 keys"}},
        {route_with_verify("{scheme: github, secrets: [{vault: " + secret + "}]}"),
         {"routes.r.verify.secrets[0].vault: unknown key (did you mean \"value\"?); allowed here: "
          "env, file, value"}},
        {route_with_verify("{scheme: github, secrets: [{value: [" + secret + "]}]}"),
         {"routes.r.verify.secrets[0].value: expected a string, found a list"}},
        {route_with_verify("{scheme: github, secrets: [{env: }]}"),
         {"routes.r.verify.secrets[0].env: expected a name, found nothing"}},
        {route_with_verify("{scheme: github, secrets: [{env: \"A=B\"}]}"),
         {"expected an environment variable name"}},
        {route_with_verify("{scheme: ed25519, secrets: [{value: " + secret + "}]}"),
         {"secret value is not an Ed25519 public key"}},
        {route_with_verify("{scheme: github, secrets: [" + std::string("{value: a}, ") +
                           "{value: a}, {value: a}, {value: a}, {value: a}, {value: a}, "
                           "{value: a}, {value: a}, {value: a}]}"),
         {"routes.r.verify.secrets: at most 8 secrets per route"}},
    });
    // No message of any row above may carry the material.
    for (const std::string& text :
         {route_with_verify("{scheme: github, secrets: [\"" + secret + "\"]}"),
          route_with_verify("{scheme: ed25519, secrets: [{value: " + secret + "}]}"),
          route_with_verify("{scheme: standard, secrets: [{value: " + secret + "}]}"),
          route_with_verify("{scheme: stripe, secrets: [{value: " + secret + "}]}"),
          route_with_verify("{scheme: github, secrets: [{env: X, value: " + secret + "}]}")}) {
        LoadResult res = load_text("c.yaml", text);
        std::string all = formatted(res.errors) + formatted(res.warnings);
        EXPECT_EQ(all.find("hunter2"), std::string::npos) << all;
    }
}

TEST_F(ConfigLoad, SecretsFromTheEnvironment) {
    ScopedEnv set("PORTCULLIS_TEST_SET", "s3cret");
    ScopedEnv unset("PORTCULLIS_TEST_UNSET", nullptr);
    ScopedEnv empty("PORTCULLIS_TEST_EMPTY", "");

    LoadResult res = load_text(
        "c.yaml", route_with_verify("{scheme: github, secrets: [{env: PORTCULLIS_TEST_SET}]}"));
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_TRUE(res.warnings.empty()) << formatted(res.warnings);
    const Secret& s = res.config->routes.at(0).verify.secrets.at(0);
    EXPECT_EQ(s.material, "s3cret");
    EXPECT_EQ(s.source, SecretSource::env);
    EXPECT_EQ(s.origin, "env:PORTCULLIS_TEST_SET");

    expect_warnings({
        {route_with_verify("{scheme: github, secrets: [{env: PORTCULLIS_TEST_UNSET}]}"),
         {"c.yaml:3:46: routes.r.verify.secrets[0].env: env PORTCULLIS_TEST_UNSET is not set: "
          "requests to route r are refused (secret_unset) until it is\n"}},
        {route_with_verify("{scheme: github, secrets: [{env: PORTCULLIS_TEST_EMPTY}]}"),
         {"routes.r.verify.secrets[0].env: env PORTCULLIS_TEST_EMPTY is empty: requests to route "
          "r are refused (secret_unset) until it is set"}},
        // With another usable secret, the route still verifies: only this one is skipped.
        {route_with_verify("{scheme: github, secrets: [{env: PORTCULLIS_TEST_SET}, {env: "
                           "PORTCULLIS_TEST_UNSET}]}"),
         {"routes.r.verify.secrets[1].env: env PORTCULLIS_TEST_UNSET is not set: this secret is "
          "skipped until it is"}},
    });

    // An unset secret keeps its place, with no material: the verifier refuses with secret_unset.
    res = load_text("c.yaml", route_with_verify("{scheme: github, secrets: [{env: "
                                                "PORTCULLIS_TEST_UNSET}]}"));
    ASSERT_TRUE(res.ok());
    ASSERT_EQ(res.config->routes.at(0).verify.secrets.size(), 1u);
    EXPECT_TRUE(res.config->routes.at(0).verify.secrets[0].material.empty());
    EXPECT_EQ(res.config->routes.at(0).verify.secrets[0].origin, "env:PORTCULLIS_TEST_UNSET");
}

TEST_F(ConfigLoad, SecretsFromFilesAndInline) {
    TempDir dir;
    std::string lf = dir.write("lf", "secret-lf\n");
    std::string crlf = dir.write("crlf", "secret-crlf\r\n");
    std::string two = dir.write("two", "secret-two\n\n");
    std::string bare = dir.write("bare", "secret-bare");
    std::string empty = dir.write("empty", "\n");
    std::string missing = dir.file("missing");

    auto secrets_of = [](const std::string& text) {
        LoadResult res = load_text("c.yaml", text);
        EXPECT_TRUE(res.ok()) << formatted(res.errors);
        return res.ok() ? res.config->routes.at(0).verify.secrets : std::vector<Secret>{};
    };
    auto secrets = secrets_of(route_with_verify("{scheme: github, secrets: [{file: " + lf +
                                                "}, {file: " + crlf + "}, {file: " + two +
                                                "}, {file: " + bare + "}, {value: inline}]}"));
    ASSERT_EQ(secrets.size(), 5u);
    EXPECT_EQ(secrets[0].material, "secret-lf");
    EXPECT_EQ(secrets[0].source, SecretSource::file);
    EXPECT_EQ(secrets[0].origin, "file:" + lf);
    EXPECT_EQ(secrets[1].material, "secret-crlf");
    EXPECT_EQ(secrets[2].material, "secret-two\n"); // only one newline is dropped
    EXPECT_EQ(secrets[3].material, "secret-bare");
    EXPECT_EQ(secrets[4].material, "inline");
    EXPECT_EQ(secrets[4].source, SecretSource::value);
    EXPECT_EQ(secrets[4].origin, "value");

    expect_warnings({
        {route_with_verify("{scheme: github, secrets: [{file: " + missing + "}]}"),
         {"routes.r.verify.secrets[0].file: file " + missing +
          " cannot be read (No such file or directory): requests to route r are refused "
          "(secret_unset) until it can"}},
        {route_with_verify("{scheme: github, secrets: [{file: " + dir.path() + "}]}"),
         {"cannot be read (not a regular file)"}},
        {route_with_verify("{scheme: github, secrets: [{file: " + empty + "}]}"),
         {"routes.r.verify.secrets[0].file: file " + empty +
          " is empty: requests to route r are "
          "refused (secret_unset) until it holds the secret"}},
        {route_with_verify("{scheme: github, secrets: [{value: abc}]}"),
         {"c.yaml:3:48: routes.r.verify.secrets[0].value: inline secret: use {env: ...} or "
          "{file: ...} in production"}},
        {route_with_verify("{scheme: github, secrets: [{value: \"\"}]}"),
         {"inline secret: use {env", "inline secret is empty: requests to route r are refused"}},
        {route_with_verify("{scheme: stripe, secrets: [{value: sk_live_x}]}"),
         {"routes.r.verify.secrets[0].value: secret value does not start with whsec_"}},
        {route_with_verify("{scheme: none}"),
         {"c.yaml:3:22: routes.r.verify.scheme: route r accepts unsigned requests"}},
    });
}

TEST_F(ConfigLoad, DedupOrderingRateLimitAndAllow) {
    expect_errors({
        {github_route("    dedup: {window: 24h}\n"), {}},
        {github_route("    dedup: {key: \"json:/delivery/id\", window: 1h}\n"), {}},
        {github_route("    dedup: {key: \"path:id\", window: 1h}\n", "/x/{id}"), {}},
        {github_route("    dedup: {key: \"header:X-Id\"}\n"),
         {"c.yaml:5:5: routes.r.dedup: \"window\" is required"}},
        {github_route("    dedup: {window: 0s}\n"),
         {"routes.r.dedup.window: must be at least 1ms"}},
        {github_route("    dedup: {key: \"path:id\", window: 1h}\n"),
         {"c.yaml:5:18: routes.r.dedup.key: the route's path \"/r\" has no {id} parameter"}},
        {github_route("    dedup: {key: \"cookie:x\", window: 1h}\n"),
         {"routes.r.dedup.key: unknown field kind \"cookie\""}},
        {"routes:\n  r:\n    path: /r\n    verify: {scheme: none}\n    dedup: {window: 1h}\n",
         {"c.yaml:5:5: routes.r.dedup.key: dedup.key is required for scheme none"}},
        {route_with_verify("{scheme: hmac, header: X-Sig, secrets: [{env: PORTCULLIS_TEST_GH}]}",
                           "    dedup: {window: 1h}\n"),
         {"routes.r.dedup.key: dedup.key is required for scheme hmac"}},
        {github_route("    ordering: {key: \"json:/id\", timestamp: \"header:X-Ts\"}\n"), {}},
        {github_route("    ordering: {key: \"json:/id\"}\n"),
         {"c.yaml:5:5: routes.r.ordering: \"timestamp\" is required"}},
        {github_route("    ordering: {key: \"json:id\", timestamp: \"query:ts\"}\n"),
         {"routes.r.ordering.key: json: takes an RFC 6901 pointer"}},
        {github_route("    rate_limit: {per_ip: 20/s, burst: 40, route: 2000/s}\n"), {}},
        {github_route("    rate_limit: {route: 100/min}\n"), {}},
        {github_route("    rate_limit: {burst: 40}\n"),
         {"c.yaml:5:5: routes.r.rate_limit: needs per_ip, route or both"}},
        {github_route("    rate_limit: {per_ip: 0/s}\n"),
         {"routes.r.rate_limit.per_ip: a rate of 0 would refuse everything"}},
        {github_route("    rate_limit: {per_ip: 20/m}\n"),
         {"routes.r.rate_limit.per_ip: unknown rate period \"m\""}},
        {github_route("    rate_limit: {per_ip: 20/s, burst: 0}\n"),
         {"routes.r.rate_limit.burst: expected a whole number from 1"}},
        {github_route(
             "    allow: [\"140.82.112.0/20\", \"2001:db8::/32\", \"::ffff:10.0.0.0/104\", "
             "\"192.0.2.1\"]\n"),
         {}},
        {github_route("    allow: [\"140.82.112.1/20\"]\n"),
         {"c.yaml:5:13: routes.r.allow[0]: host bits set beyond /20: did you mean "
          "140.82.112.0/20?"}},
    });

    LoadResult res = load_text(
        "c.yaml", github_route("    dedup: {window: 24h}\n"
                               "    ordering: {key: \"path:id\", timestamp: \"json:/ts\"}\n"
                               "    rate_limit: {per_ip: 20/s, burst: 40}\n"
                               "    allow: [\"10.0.0.0/8\"]\n",
                               "/x/{id}"));
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    const RouteConfig& r = res.config->routes.at(0);
    ASSERT_TRUE(r.dedup);
    EXPECT_EQ(r.dedup->key.kind, FieldRef::Kind::header);
    EXPECT_EQ(r.dedup->key.name, "x-github-delivery");
    EXPECT_EQ(r.dedup->window_ns, 24ll * 3600 * 1'000'000'000);
    ASSERT_TRUE(r.ordering);
    EXPECT_EQ(r.ordering->key.kind, FieldRef::Kind::path);
    EXPECT_EQ(r.ordering->timestamp.name, "/ts");
    ASSERT_TRUE(r.rate_limit && r.rate_limit->per_ip);
    EXPECT_EQ(r.rate_limit->per_ip->count, 20u);
    EXPECT_EQ(r.rate_limit->burst, 40u);
    EXPECT_FALSE(r.rate_limit->route);
    ASSERT_EQ(r.allow.size(), 1u);
    EXPECT_EQ(r.allow[0].prefix_len, 104);
}

TEST_F(ConfigLoad, DedupKeysDefaultPerScheme) {
    struct DefaultRow {
        std::string verify;
        std::string key;
    };
    const DefaultRow rows[] = {
        {"{scheme: github, secrets: [{env: PORTCULLIS_TEST_GH}]}", "header:x-github-delivery"},
        {"{scheme: standard, secrets: [{value: whsec_c2VjcmV0}]}", "header:webhook-id"},
        {"{scheme: stripe, secrets: [{value: whsec_x}]}", "json:/id"},
        {"{scheme: shopify, secrets: [{env: PORTCULLIS_TEST_GH}]}", "header:x-shopify-webhook-id"},
        {"{scheme: slack, secrets: [{env: PORTCULLIS_TEST_GH}]}", "json:/event_id"},
    };
    for (const DefaultRow& row : rows) {
        LoadResult res =
            load_text("c.yaml", route_with_verify(row.verify, "    dedup: {window: 1h}\n"));
        ASSERT_TRUE(res.ok()) << formatted(res.errors);
        ASSERT_TRUE(res.config->routes.at(0).dedup);
        EXPECT_EQ(res.config->routes.at(0).dedup->key.text, row.key);
    }
}

TEST_F(ConfigLoad, Tokens) {
    const std::string sha(64, 'a');
    const std::string sha2(64, 'b');
    expect_errors({
        {"tokens:\n  worker: {sha256: \"" + sha +
             "\", scopes: [\"jobs:consume:github\", \"jobs:read:*\", \"!jobs:read:stripe\", "
             "\"events:read\", \"jobs:consume:git?ub-*\", \"*:*\"]}\n",
         {}},
        {"tokens:\n  Worker: {sha256: \"" + sha + "\", scopes: [\"events:read\"]}\n",
         {"c.yaml:2:3: tokens.Worker: token names are 1 to 64 characters of [a-z0-9_-]"}},
        {"tokens:\n  w: {sha256: abc, scopes: [\"events:read\"]}\n",
         {"c.yaml:2:15: tokens.w.sha256: expected the token's SHA-256 as 64 hex characters"}},
        {"tokens:\n  w: {sha256: \"" + std::string(64, 'z') + "\", scopes: [\"events:read\"]}\n",
         {"tokens.w.sha256: expected the token's SHA-256"}},
        {"tokens:\n  w: {scopes: [\"events:read\"]}\n",
         {"c.yaml:2:3: tokens.w: \"sha256\" is required"}},
        {"tokens:\n  w: {sha256: \"" + sha + "\"}\n", {"tokens.w: \"scopes\" is required"}},
        {"tokens:\n  w: {sha256: \"" + sha + "\", scopes: []}\n",
         {"tokens.w.scopes: needs at least one scope"}},
        {"tokens:\n  w: {sha256: \"" + sha + "\", scopes: [\"JOBS:read\"]}\n",
         {"tokens.w.scopes[0]: expected [!]resource:action[:route-glob]"}},
        {"tokens:\n  w: {sha256: \"" + sha + "\", scopes: [\"jobs\"]}\n",
         {"tokens.w.scopes[0]: expected [!]resource:action"}},
        {"tokens:\n  w: {sha256: \"" + sha + "\", scopes: [\"jobs:read:Git\"]}\n",
         {"tokens.w.scopes[0]: expected"}},
        {"tokens:\n  w: {sha256: \"" + sha + "\", scopes: [\"jobs:read:\"]}\n",
         {"tokens.w.scopes[0]: expected"}},
        {"tokens:\n  w: {sha256: \"" + sha + "\", scopes: [\"jobs::x\"]}\n",
         {"tokens.w.scopes[0]: expected"}},
        // The scope grammar is admin::Scope::parse's; the message says what is wrong.
        {"tokens:\n  w: {sha256: \"" + sha +
             "\", scopes: [\"events:read\", \"!job:read:stripe\"]}\n",
         {"c.yaml:2:107: tokens.w.scopes[1]: expected [!]resource:action[:route-glob] (like "
          "jobs:consume:github or !jobs:read:stripe), found \"!job:read:stripe\": unknown "
          "resource \"job\" (jobs, metrics, events, admin or *)"}},
        {"tokens:\n  w: {sha256: \"" + sha + "\", scopes: [\"jobs:reed\"]}\n",
         {"tokens.w.scopes[0]: expected", "jobs has no action \"reed\" (consume, read, replay, "
                                          "enqueue or *)"}},
        {"tokens:\n  w: {sha256: \"" + sha + "\", scopes: [\"metrics:read:github\"]}\n",
         {"metrics:read is not per route: it takes no route glob"}},
        {"tokens:\n  w: {sha256: \"" + sha + "\", scopes: [\"jo*:read\"]}\n",
         {"unknown resource \"jo*\""}},
        {"tokens:\n  a: {sha256: \"" + sha + "\", scopes: [\"events:read\"]}\n  b: {sha256: \"" +
             sha + "\", scopes: [\"events:read\"]}\n",
         {"c.yaml:3:15: tokens.b.sha256: same sha256 as token a"}},
        {"tokens:\n  w: {sha256: \"" + sha + "\", scopes: [\"events:read\"], name: x}\n",
         {"tokens.w.name: unknown key; allowed here: sha256, scopes"}},
    });

    LoadResult res = load_text("c.yaml", "tokens:\n  w: {sha256: \"" + sha2 +
                                             "\", scopes: [\"metrics:read\"]}\n");
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    ASSERT_EQ(res.config->tokens.size(), 1u);
    EXPECT_EQ(res.config->tokens[0].name, "w");
    EXPECT_EQ(res.config->tokens[0].sha256[0], 0xbb);
    EXPECT_EQ(res.config->tokens[0].scopes, std::vector<std::string>{"metrics:read"});
}

// Every byte of user text that reaches a message is shown escaped (\xNN): a NUL would cut the
// message short, an ESC or a C1 control drive the terminal, invalid UTF-8 garble it.
std::string raw_control_bytes(const std::string& text) {
    std::string found;
    for (size_t i = 0; i < text.size(); ++i) {
        auto u = static_cast<unsigned char>(text[i]);
        if ((u < 0x20 && u != '\n') || u == 0x7f || u >= 0x80) {
            found += "byte " + std::to_string(u) + " at " + std::to_string(i) + "; ";
        }
    }
    return found;
}

TEST_F(ConfigLoad, UserTextInMessagesIsEscaped) {
    const std::string sha(64, 'a');
    const std::vector<Row> errors = {
        // Route names are [a-z0-9_-]: these are errors, and the message shows the name escaped,
        // in the key path and in the quoted value. YAML's "\0", "\e" and "\x9b" (U+009B, CSI).
        {"routes:\n  \"a\\0b\": {}\n",
         {"c.yaml:2:3: routes.a\\x00b: route names are 1 to 64 characters of [a-z0-9_-], found "
          "\"a\\x00b\""}},
        {"routes:\n  \"a\\eb\": {}\n",
         {"c.yaml:2:3: routes.a\\x1bb: route names are 1 to 64 characters of [a-z0-9_-], found "
          "\"a\\x1bb\""}},
        {"routes:\n  \"a\\x9b\": {}\n", {"c.yaml:2:3: routes.a\\xc2\\x9b: ", "\"a\\xc2\\x9b\""}},
        {"server:\n  \"li\\e[2Jsten\": []\n", {"c.yaml:2:3: server.li\\x1b[2Jsten: unknown key"}},
        {"routes:\n  r:\n    path: /r\n    verify: {scheme: none}\n    \"x\\0y\": 1\n",
         {"c.yaml:5:5: routes.r.x\\x00y: unknown key"}},
        {"server:\n  listen: [\":\\e\"]\n", {"write 0.0.0.0:\\x1b for every interface"}},
        {"server:\n  listen: [\"a\\e:b:1\"]\n", {"IPv6 addresses go in brackets: [a\\x1b:b]:port"}},
        {"tokens:\n  w: {sha256: \"" + sha + "\", scopes: [\"jo\\ebs:read\"]}\n",
         {"found \"jo\\x1bbs:read\": unknown resource \"jo\\x1bbs\""}},
        {"tokens:\n  w: {sha256: \"" + sha + "\", scopes: [\"jobs:re\\0ad\"]}\n",
         {"jobs has no action \"re\\x00ad\""}},
        {"integrity:\n  \"/nonexistent/a\\eb\": \"sha256:" + sha + "\"\n",
         {"integrity./nonexistent/a\\x1bb: cannot read /nonexistent/a\\x1bb ("}},
    };
    expect_errors(errors);
    const std::vector<Row> warnings = {
        {route_with_verify("{scheme: github, secrets: [{env: \"NO\\eSUCH\"}]}"),
         {"routes.r.verify.secrets[0].env: env NO\\x1bSUCH is not set"}},
        {route_with_verify("{scheme: github, secrets: [{file: \"/nonexistent/a\\eb\"}]}"),
         {"routes.r.verify.secrets[0].file: file /nonexistent/a\\x1bb cannot be read ("}},
    };
    expect_warnings(warnings);
    for (const std::vector<Row>* rows : {&errors, &warnings}) {
        for (const Row& r : *rows) {
            LoadResult res = load_text("c.yaml", r.yaml);
            std::string text = formatted(res.errors) + formatted(res.warnings);
            EXPECT_EQ(raw_control_bytes(text), "") << r.yaml << "\n---\n" << text;
        }
    }
    // What a secret's origin says is printed too (check's summary, sign's messages).
    LoadResult res =
        load_text("c.yaml", route_with_verify("{scheme: github, secrets: [{env: \"NO\\eSUCH\"}]}"));
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_EQ(res.config->routes.at(0).verify.secrets.at(0).origin, "env:NO\\x1bSUCH");
}

TEST_F(ConfigLoad, EnforcedKeysLoadWithoutWarnings) {
    const std::string sha(64, 'a');
    expect_warnings({
        {github_route(), {}},
        {github_route("    dedup: {window: 1h}\n"), {}},
        {github_route("    ordering: {key: \"json:/id\", timestamp: \"json:/ts\"}\n"), {}},
        {github_route("    rate_limit: {route: 10/s}\n"), {}},
        {github_route("    allow: [\"10.0.0.0/8\"]\n"), {}},
        {"server: {deny: [\"10.0.0.0/8\"]}\n", {}},
        {"server: {client_ip: {trusted_proxies: [\"10.0.0.0/8\"]}}\n", {}},
        {"server: {client_ip: {proxy_protocol: v1}}\n", {}},
        {"server: {max_connections_per_ip: 10}\n", {}},
        {"tokens:\n  w: {sha256: \"" + sha + "\", scopes: [\"events:read\"]}\n", {}},
        {"server: {deny: [], client_ip: {trusted_proxies: [], proxy_protocol: off}}\ntokens: {}\n",
         {}},
    });
}

TEST_F(ConfigLoad, ExampleConfigurationLoads) {
    const char* root = std::getenv("PORTCULLIS_SOURCE_ROOT");
    if (root == nullptr) {
        GTEST_SKIP() << "PORTCULLIS_SOURCE_ROOT is not set (run through meson test)";
    }
    ScopedEnv github("GITHUB_WEBHOOK_SECRET", "github-secret");
    ScopedEnv gitlab("GITLAB_WEBHOOK_TOKEN", "gitlab-token");
    std::string path = std::string(root) + "/packaging/portcullis.yaml";
    LoadResult res = load(path);
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_TRUE(res.warnings.empty()) << formatted(res.warnings);
    const Config& cfg = *res.config;
    EXPECT_EQ(cfg.files, std::vector<std::string>{path});
    EXPECT_EQ(cfg.directory, std::string(root) + "/packaging");
    ASSERT_EQ(cfg.server.listen.size(), 1u);
    EXPECT_EQ(cfg.server.listen[0].text, "127.0.0.1:8080");
    EXPECT_EQ(cfg.admin.listen->text, "127.0.0.1:9090");
    EXPECT_EQ(cfg.spool.dir, "./var/spool");
    ASSERT_EQ(cfg.routes.size(), 2u);
    EXPECT_EQ(cfg.routes[0].name, "github");
    EXPECT_EQ(cfg.routes[0].verify.scheme, Scheme::github);
    EXPECT_EQ(cfg.routes[0].verify.secrets.at(0).material, "github-secret");
    EXPECT_EQ(cfg.routes[1].name, "gitlab");
    EXPECT_EQ(cfg.routes[1].verify.scheme, Scheme::shared_secret);
    EXPECT_EQ(cfg.routes[1].verify.header, "x-gitlab-token");
    EXPECT_EQ(cfg.routes[1].verify.secrets.at(0).material, "gitlab-token");
}

TEST(ConfigDirectory, LoadsYamlFilesInNameOrderAndMergesMappings) {
    TempDir dir;
    dir.write("00-base.yaml", "server:\n  listen: [\"0.0.0.0:8081\"]\nroutes:\n  b:\n    path: /b\n"
                              "    verify: {scheme: none}\n");
    dir.write("10-more.yaml", "server:\n  shards: 3\nroutes:\n  a:\n    path: /a\n"
                              "    verify: {scheme: none}\n");
    dir.write("20-empty.yaml", "# nothing here yet\n");
    dir.write(".hidden.yaml", "server: {shards: 9}\n");
    dir.write("notes.yml", "not: [yaml\n");
    dir.write("README", "hello\n");
    std::filesystem::create_directory(dir.file("sub.yaml"));

    LoadResult res = load(dir.path());
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    const Config& cfg = *res.config;
    EXPECT_EQ(cfg.files,
              (std::vector<std::string>{dir.file("00-base.yaml"), dir.file("10-more.yaml"),
                                        dir.file("20-empty.yaml")}));
    EXPECT_EQ(cfg.directory, dir.path());
    EXPECT_EQ(cfg.server.shards, 3u);
    ASSERT_EQ(cfg.server.listen.size(), 1u);
    EXPECT_EQ(cfg.server.listen[0].port, 8081);
    ASSERT_EQ(cfg.routes.size(), 2u);
    EXPECT_EQ(cfg.routes[0].name, "b");
    EXPECT_EQ(cfg.routes[1].name, "a");
    EXPECT_EQ(cfg.routes[1].mark.file, dir.file("10-more.yaml"));
    EXPECT_EQ(cfg.routes[1].mark.line, 4);
}

TEST(ConfigDirectory, AValueDefinedInTwoFilesNamesBothPlaces) {
    struct DirRow {
        std::string first, second;
        std::string expected; // after the directory's path
    };
    const DirRow rows[] = {
        {"server:\n  shards: 2\n", "server:\n  shards: 3\n",
         "/b.yaml:2:3: server.shards: defined again here; first defined at {dir}/a.yaml:2:3"},
        {"server:\n  listen: [\"0.0.0.0:1\"]\n", "server:\n    listen: [\"0.0.0.0:2\"]\n",
         "/b.yaml:2:5: server.listen: defined again here; first defined at {dir}/a.yaml:2:3"},
        {"spool: {dir: /x}\n", "spool: /y\n",
         "/b.yaml:1:1: spool: defined again here; first defined at {dir}/a.yaml:1:1"},
        {"routes:\n  r: {path: /r}\n", "routes:\n  r:\n    path: /s\n",
         "/b.yaml:3:5: routes.r.path: defined again here; first defined at {dir}/a.yaml:2:7"},
    };
    for (const DirRow& r : rows) {
        TempDir dir;
        dir.write("a.yaml", r.first);
        dir.write("b.yaml", r.second);
        LoadResult res = load(dir.path());
        EXPECT_FALSE(res.ok());
        std::string expected = dir.path() + r.expected;
        expected.replace(expected.find("{dir}"), 5, dir.path());
        EXPECT_NE(formatted(res.errors).find(expected), std::string::npos) << expected << "\n---\n"
                                                                           << formatted(res.errors);
    }
}

TEST(ConfigDirectory, NullSectionsYieldToTheOtherFile) {
    TempDir dir;
    dir.write("a.yaml", "server:\nroutes:\n");
    dir.write("b.yaml", "server: {shards: 2}\n");
    LoadResult res = load(dir.path());
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_EQ(res.config->server.shards, 2u);
}

TEST(ConfigDirectory, ErrorsNameTheFileTheyAreIn) {
    TempDir dir;
    dir.write("a.yaml", "server: {shards: 2}\n");
    dir.write("b.yaml", "server: {lisen: x}\n");
    dir.write("c.yaml", "spool: [\n");
    LoadResult res = load(dir.path());
    EXPECT_FALSE(res.ok());
    std::string errors = formatted(res.errors);
    // A syntax error stops before the schema walk, so only c.yaml is reported.
    EXPECT_NE(
        errors.find(dir.file("c.yaml") + ":2:1: spool[0]: did not find expected node content"),
        std::string::npos)
        << errors;

    TempDir dir2;
    dir2.write("a.yaml", "server: {shards: 2}\n");
    dir2.write("b.yaml", "server: {lisen: x}\n");
    res = load(dir2.path());
    EXPECT_NE(formatted(res.errors).find(dir2.file("b.yaml") + ":1:10: server.lisen: unknown key"),
              std::string::npos)
        << formatted(res.errors);
}

TEST(ConfigDirectory, FileNamesInMessagesAreEscaped) {
    TempDir dir;
    dir.write("a\x1b[2J.yaml", "server:\n  shards: 2\n");
    dir.write("b\x9b.yaml", "server:\n  shards: 3\n");
    LoadResult res = load(dir.path());
    EXPECT_EQ(formatted(res.errors), dir.path() +
                                         "/b\\x9b.yaml:2:3: server.shards: defined again here; "
                                         "first defined at " +
                                         dir.path() + "/a\\x1b[2J.yaml:2:3\n");
}

TEST(ConfigDirectory, PathsThatHoldNoConfiguration) {
    TempDir dir;
    LoadResult res = load(dir.path());
    EXPECT_EQ(formatted(res.errors), dir.path() + ": no *.yaml file in this directory\n");

    dir.write("only.yml", "server: {}\n");
    res = load(dir.path());
    EXPECT_EQ(formatted(res.errors), dir.path() + ": no *.yaml file in this directory\n");

    res = load(dir.file("missing.yaml"));
    EXPECT_EQ(formatted(res.errors),
              dir.file("missing.yaml") + ": cannot read: No such file or directory\n");

    std::string file = dir.write("one.yaml", "spool: {dir: /x}\n");
    res = load(file);
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_EQ(res.config->files, std::vector<std::string>{file});
    EXPECT_EQ(res.config->directory, dir.path());
}

TEST(ConfigDirectory, TlsPathsAreRelativeToTheConfigurationsDirectory) {
    TempDir dir;
    std::string yaml = "server:\n  tls:\n    listen: [\"127.0.0.1:0\"]\n    certificates:\n"
                       "      - {cert: tls/a.pem, key: tls/a.key}\n"
                       "      - {cert: /etc/p/b.pem, key: ../b.key}\n";
    dir.write("portcullis.yaml", yaml);
    // A directory of files and a single file resolve against the same folder.
    for (const std::string& path : {dir.path(), dir.file("portcullis.yaml")}) {
        LoadResult res = load(path);
        ASSERT_TRUE(res.ok()) << formatted(res.errors);
        ASSERT_TRUE(res.config->server.tls);
        const auto& certs = res.config->server.tls->certificates;
        ASSERT_EQ(certs.size(), 2u);
        EXPECT_EQ(certs[0].cert, dir.path() + "/tls/a.pem");
        EXPECT_EQ(certs[0].key, dir.path() + "/tls/a.key");
        EXPECT_EQ(certs[1].cert, "/etc/p/b.pem");
        EXPECT_EQ(certs[1].key, dir.path() + "/../b.key");
    }
}

TEST(ConfigIntegrity, PinnedFilesAreHashed) {
    TempDir dir;
    dir.write("tokens.txt", "hello\n");
    const std::string good = sha256_hex("hello\n");
    ASSERT_EQ(good, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
    const std::string bad(64, '0');

    std::string config =
        dir.write("portcullis.yaml", "integrity:\n  tokens.txt: \"sha256:" + good + "\"\n  " +
                                         dir.file("tokens.txt") + ": \"sha256:" + good + "\"\n");
    LoadResult res = load(config);
    ASSERT_TRUE(res.ok()) << formatted(res.errors);
    EXPECT_EQ(res.config->integrity.at("tokens.txt"), "sha256:" + good);
    EXPECT_EQ(res.config->integrity.size(), 2u);

    config = dir.write("portcullis.yaml", "integrity:\n  tokens.txt: \"sha256:" + bad + "\"\n");
    res = load(config);
    EXPECT_EQ(formatted(res.errors),
              config + ":2:15: integrity.tokens.txt: " + dir.file("tokens.txt") +
                  " does not match its pin: pinned sha256 000000000000..., file has "
                  "5891b5b522d5...\n");

    config = dir.write("portcullis.yaml", "integrity:\n  gone.txt: \"sha256:" + good + "\"\n");
    res = load(config);
    EXPECT_EQ(formatted(res.errors),
              config + ":2:3: integrity.gone.txt: cannot read " + dir.file("gone.txt") +
                  " (No such file or directory) to check its pinned sha256 5891b5b522d5...\n");

    for (const std::string& pin : {std::string("md5:abc"), "sha256:" + good.substr(1), good}) {
        config = dir.write("portcullis.yaml", "integrity:\n  tokens.txt: \"" + pin + "\"\n");
        res = load(config);
        EXPECT_NE(formatted(res.errors).find("integrity.tokens.txt: expected \"sha256:<64 hex>\""),
                  std::string::npos)
            << pin << formatted(res.errors);
    }
}

TEST(ConfigDiagnostic, FormatsFileLineColumnAndPath) {
    // The marks are built on their own, not braced inside the Diagnostic: GCC 12 at -O3 (the
    // release build) takes a nested aggregate's std::string for maybe-uninitialized on the path
    // where a later member's construction throws, and -Werror makes that fatal.
    const SourceMark mark{"a.yaml", 3, 5};
    const SourceMark dir{"dir", 0, 0};
    const Diagnostic with_path{mark, "server.listen", "oops"};
    const Diagnostic without_path{mark, "", "oops"};
    const Diagnostic file_only{dir, "", "oops"};
    EXPECT_EQ(with_path.format(), "a.yaml:3:5: server.listen: oops");
    EXPECT_EQ(without_path.format(), "a.yaml:3:5: oops");
    EXPECT_EQ(file_only.format(), "dir: oops");
    // The file name and the key path come from the user (directory listing, YAML keys).
    const SourceMark odd{"a\x1b[2J.yaml", 1, 2};
    const Diagnostic odd_path{odd, std::string("routes.a\0b", 10), "oops"};
    EXPECT_EQ(odd_path.format(), "a\\x1b[2J.yaml:1:2: routes.a\\x00b: oops");
    EXPECT_EQ(scheme_name(Scheme::shared_secret), "shared_secret");
    EXPECT_EQ(durability_name(Durability::batch), "batch");
}
