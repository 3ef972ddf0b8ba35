#include "portcullis/admin/consumer_store.hh"

#include "portcullis/admin/state_file.hh"
#include "portcullis/config/snapshot.hh"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/stat.h>
#include <vector>

using namespace portcullis::admin;
using namespace portcullis;
namespace fs = std::filesystem;

namespace {

Consumer consumer(std::string name, uint8_t fill, std::vector<std::string> routes,
                  std::string url = {}, std::string health = {}) {
    Consumer c;
    c.name = std::move(name);
    c.token_sha256.fill(fill);
    c.routes = std::move(routes);
    c.url = std::move(url);
    c.health_path = std::move(health);
    if (!c.url.empty()) {
        c.secret = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==";
    }
    c.created_at = 1'796'000'000'000'000'000;
    return c;
}

const std::vector<Consumer> two = {
    consumer("billing", 0x11, {"stripe"}, "http://10.0.0.5:8000/hooks", "/healthz"),
    consumer("puller", 0x22, {"github", "stripe"}),
};

TEST(ConsumerStateText, RoundTrips) {
    std::vector<Consumer> back;
    EXPECT_EQ(parse_consumer_state(format_consumer_state(two), "f", back), "");
    EXPECT_EQ(back, two);
    EXPECT_EQ(parse_consumer_state(format_consumer_state({}), "f", back), "");
    EXPECT_TRUE(back.empty());
}

TEST(ConsumerStateText, RefusesTornDamagedAndDuplicated) {
    const std::string good = format_consumer_state(two);
    std::vector<Consumer> back;
    struct Row {
        std::string text;
        std::string error;
    };
    std::string edited = good;
    edited[good.find("billing")] = 'k'; // checksum no longer matches
    std::string dup = format_consumer_state({two[0], two[0]});
    std::string same_digest = format_consumer_state({two[0], consumer("other", 0x11, {"a"})});
    const Row rows[] = {
        {"", "f:1: empty file"},
        {good.substr(0, good.size() - 1), "no newline at the end"},
        {good.substr(0, good.find("sha256 ")), "no checksum line at the end"},
        {edited, "f:4: checksum does not match"},
        {good + "x\n", "text after the checksum line"},
        {"portcullis-consumers 2\n", "f:1: expected \"portcullis-consumers 1\""},
        {dup, "f:3: consumer billing listed twice"},
        {same_digest, "has the same token sha256 as billing"},
    };
    for (const Row& r : rows) {
        EXPECT_NE(parse_consumer_state(r.text, "f", back).find(r.error), std::string::npos)
            << r.text << " -> " << parse_consumer_state(r.text, "f", back);
        EXPECT_TRUE(back.empty());
    }
}

// Only what format_consumer_state writes parses: one spelling per set (an empty field would read
// as "-" and be written back as "-").
TEST(ConsumerStateText, RefusesEmptyFields) {
    constexpr StateFile file{"consumers.state", "portcullis-consumers 1", "consumer", 64, 0600};
    const std::string digest(64, '1');
    std::vector<Consumer> back;
    ASSERT_EQ(
        parse_consumer_state(seal_state(file, "consumer a 0 " + digest + " - - - r\n"), "f", back),
        "");
    for (const std::string& line :
         {"consumer a 0 " + digest + "  - - r\n", "consumer a 0 " + digest + " -  - r\n",
          "consumer a 0 " + digest + " - -  r\n", "consumer a 0 " + digest + " - - - r \n"}) {
        EXPECT_EQ(parse_consumer_state(seal_state(file, line), "f", back).rfind("f:2: ", 0), 0u)
            << line;
        EXPECT_TRUE(back.empty());
    }
}

TEST(ConsumerStateText, ChecksEachConsumer) {
    struct Row {
        Consumer c;
        std::string error;
    };
    Consumer no_secret = consumer("a", 1, {"r"}, "http://h/");
    no_secret.secret.clear();
    Consumer secret_alone = consumer("a", 1, {"r"});
    secret_alone.secret = "whsec_abcdefgh";
    const Row rows[] = {
        {consumer("A", 1, {"r"}), "name: 1 to 55 characters"},
        {consumer(std::string(56, 'a'), 1, {"r"}), "name: 1 to 55"},
        {consumer("a", 1, {}), "routes: 1 to 64"},
        {consumer("a", 1, {"r", "r"}), "routes: r listed twice"},
        {consumer("a", 1, {"R!"}), "is not a route name"},
        {consumer("a", 1, {"r"}, "ftp://h/"), "url: "},
        {consumer("a", 1, {"r"}, "http://h/a b"), "url: at most 2048 visible"},
        {consumer("a", 1, {"r"}, "http://u:p@h/"), "url: "},
        {no_secret, "needs its whsec_ signing secret"},
        {secret_alone, "a signing secret without a url"},
        {consumer("a", 1, {"r"}, "", "/h"), "health_path: needs a url"},
        {consumer("a", 1, {"r"}, "http://h/", "h"), "health_path: '/' then"},
    };
    for (const Row& r : rows) {
        EXPECT_NE(consumer_error(r.c).find(r.error), std::string::npos)
            << r.c.name << " -> " << consumer_error(r.c);
    }
    EXPECT_EQ(consumer_error(two[0]), "");
    EXPECT_EQ(two[1].scopes(),
              (std::vector<std::string>{"jobs:consume:github", "jobs:read:github",
                                        "jobs:consume:stripe", "jobs:read:stripe"}));
    EXPECT_EQ(two[0].token_name(), "consumer:billing");
    EXPECT_TRUE(config::is_consumer_name(two[0].sink_name()));
    EXPECT_FALSE(config::is_consumer_name("consumer:"));
    EXPECT_FALSE(config::is_consumer_name("billing"));
}

TEST(ConsumerStateFile, WritesPrivatelyAndReadsBack) {
    std::string tmpl = (fs::temp_directory_path() / "portcullis-consumers-XXXXXX").native();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    const std::string dir = tmpl;
    std::vector<Consumer> back;
    EXPECT_EQ(read_consumer_state(dir, back), ""); // no file: none
    EXPECT_TRUE(back.empty());
    ASSERT_EQ(write_consumer_state(dir, two), "");
    struct stat st {};
    ASSERT_EQ(::stat((dir + "/consumers.state").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u); // it holds the signing secrets
    EXPECT_EQ(read_consumer_state(dir, back), "");
    EXPECT_EQ(back, two);
    std::ofstream(dir + "/consumers.state", std::ios::binary | std::ios::app) << "junk\n";
    EXPECT_NE(read_consumer_state(dir, back).find(dir + "/consumers.state:5: "), std::string::npos);
    fs::remove_all(dir);
    const std::string s = generate_signing_secret();
    EXPECT_TRUE(s.starts_with("whsec_"));
    EXPECT_EQ(s.size(), 6u + 44u);
    EXPECT_NE(s, generate_signing_secret());
}

config::Config loaded(const std::string& yaml) {
    config::LoadResult r = config::load_text("c.yaml", yaml);
    EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors[0].format());
    return r.ok() ? *r.config : config::Config{};
}

const char* const two_routes = "admin: {consumers: {health_interval: 2s}}\n"
                               "spool: {dir: /tmp/x}\n"
                               "sinks:\n"
                               "  app: {http: {url: \"http://127.0.0.1:9/\"}}\n"
                               "routes:\n"
                               "  github: {path: /g, verify: {scheme: none}, deliver: [app]}\n"
                               "  stripe: {path: /s, verify: {scheme: none}}\n";

TEST(ApplyConsumers, AddsSinksToTheirRoutesOnly) {
    config::Config cfg = loaded(two_routes);
    ASSERT_EQ(apply_consumers(cfg, two), "");
    ASSERT_EQ(cfg.sinks.size(), 2u); // puller has no url: no sink
    const config::SinkConfig& s = cfg.sinks[1];
    EXPECT_EQ(s.name, "consumer:billing");
    ASSERT_TRUE(s.http.has_value());
    EXPECT_EQ(s.http->host, "10.0.0.5");
    EXPECT_EQ(s.http->port, 8000);
    EXPECT_EQ(s.http->path_and_query, "/hooks");
    ASSERT_EQ(s.http->sign_secrets.size(), 1u);
    EXPECT_EQ(s.http->sign_secrets[0].material, two[0].secret);
    ASSERT_TRUE(s.health.has_value());
    EXPECT_EQ(s.health->path, "/healthz");
    EXPECT_EQ(s.health->interval_ns, 2'000'000'000);
    EXPECT_EQ(cfg.routes[0].deliver, (std::vector<std::string>{"app"}));
    EXPECT_EQ(cfg.routes[1].deliver, (std::vector<std::string>{"consumer:billing"}));
    // It builds, and doing it again (a registration over the configuration in use) or with
    // fewer consumers (a removal) gives the same as from the file.
    std::string error;
    config::Config again = cfg;
    ASSERT_EQ(apply_consumers(again, two), "");
    EXPECT_EQ(again.sinks.size(), 2u);
    EXPECT_EQ(again.routes[1].deliver, cfg.routes[1].deliver);
    ASSERT_EQ(apply_consumers(again, {}), "");
    EXPECT_EQ(again.sinks.size(), 1u);
    EXPECT_TRUE(again.routes[1].deliver.empty());
    EXPECT_NE(config::Snapshot::build(std::move(cfg), error), nullptr) << error;
}

TEST(ApplyConsumers, RefusesARouteNotConfigured) {
    config::Config cfg = loaded(two_routes);
    const std::string err =
        apply_consumers(cfg, {consumer("late", 3, {"github", "gitlab"}, "http://h/")});
    EXPECT_NE(err.find("/tmp/x/consumers.state: consumer late: route gitlab is not configured"),
              std::string::npos)
        << err;
}

} // namespace
