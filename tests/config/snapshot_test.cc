#include "portcullis/config/snapshot.hh"

#include "../snapshot_from_yaml.hh"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

using namespace portcullis::config;

namespace {

const char* const routes_yaml = R"(
routes:
  by_id: {path: "/jobs/{id}/status", methods: [POST, PUT], verify: {scheme: none}}
  latest: {path: /jobs/latest/status, verify: {scheme: none}}
  github: {path: /webhooks/github, verify: {scheme: none}}
)";

} // namespace

TEST(SnapshotMatch, ExactPathsAndParamSegments) {
    auto snap = snapshot_from_yaml(routes_yaml);
    ASSERT_TRUE(snap);
    struct Row {
        const char* path;
        const char* route; // nullptr: no match
    };
    const Row rows[] = {
        {"/webhooks/github", "github"},
        {"/webhooks/github/", nullptr},
        {"/webhooks/GitHub", nullptr},
        {"/webhooks", nullptr},
        {"/webhooks/github/x", nullptr},
        {"/jobs/42/status", "by_id"},
        {"/jobs//status", nullptr},
        {"/jobs/42", nullptr},
        {"/jobs/latest/status", "latest"},
        {"/", nullptr},
        {"", nullptr},
    };
    for (const Row& r : rows) {
        const Route* got = snap->match(r.path);
        if (r.route == nullptr) {
            EXPECT_EQ(got, nullptr) << r.path;
        } else {
            ASSERT_NE(got, nullptr) << r.path;
            EXPECT_EQ(got->config->name, r.route) << r.path;
        }
    }
}

TEST(SnapshotMatch, LiteralSegmentsWinOverParamsWhateverTheOrder) {
    auto snap = snapshot_from_yaml(routes_yaml);
    ASSERT_TRUE(snap);
    // by_id is listed first and matches too; the literal route is more specific.
    EXPECT_EQ(snap->match("/jobs/latest/status")->config->name, "latest");
}

TEST(SnapshotRoute, StoredFieldsFollowTheSecretHeaderAndKeepHeaders) {
    setenv("PORTCULLIS_TEST_TOKEN", "token", 1);
    auto snap = snapshot_from_yaml(R"(
routes:
  plain: {path: /plain, verify: {scheme: none}}
  keeps: {path: /keeps, verify: {scheme: none}, keep_headers: [Cookie, Authorization]}
  gitlab:
    path: /gitlab
    verify: {scheme: shared_secret, header: X-Gitlab-Token, secrets: [{env: PORTCULLIS_TEST_TOKEN}]}
    keep_headers: [Proxy-Authorization]
)");
    unsetenv("PORTCULLIS_TEST_TOKEN");
    ASSERT_TRUE(snap);
    const portcullis::http::StoredFields& plain = snap->match("/plain")->stored_fields;
    EXPECT_EQ(plain.secret_header, "");
    EXPECT_FALSE(plain.stores("Authorization"));
    EXPECT_FALSE(plain.stores("Cookie"));
    EXPECT_TRUE(plain.stores("X-Gitlab-Token"));
    const portcullis::http::StoredFields& keeps = snap->match("/keeps")->stored_fields;
    EXPECT_TRUE(keeps.stores("Authorization"));
    EXPECT_TRUE(keeps.stores("cookie"));
    EXPECT_FALSE(keeps.stores("Proxy-Authorization"));
    const portcullis::http::StoredFields& gitlab = snap->match("/gitlab")->stored_fields;
    EXPECT_EQ(gitlab.secret_header, "x-gitlab-token");
    EXPECT_FALSE(gitlab.stores("X-Gitlab-Token"));
    EXPECT_TRUE(gitlab.stores("Proxy-Authorization"));
    EXPECT_FALSE(gitlab.stores("Authorization"));
}

TEST(SnapshotRoute, MethodsAndAllowHeader) {
    auto snap = snapshot_from_yaml(routes_yaml);
    ASSERT_TRUE(snap);
    const Route* r = snap->match("/jobs/1/status");
    ASSERT_NE(r, nullptr);
    EXPECT_TRUE(r->allows_method("POST"));
    EXPECT_TRUE(r->allows_method("PUT"));
    EXPECT_FALSE(r->allows_method("post"));
    EXPECT_FALSE(r->allows_method("GET"));
    EXPECT_EQ(r->allow_header, "Allow: POST, PUT\r\n");
    EXPECT_EQ(snap->match("/webhooks/github")->allow_header, "Allow: POST\r\n");
}

// The loader's rule and the router agree: over every pair of small paths, a pair the loader
// accepts gets the same route for every request path whichever is declared first, and a pair it
// refuses has a request path that both match (the refusal is never spurious).
TEST(SnapshotMatch, AcceptedRoutesNeverDependOnTheirOrder) {
    const std::vector<std::string> segments = {"a", "b", "{p}", "{q}", ""};
    std::vector<std::string> patterns;
    for (const std::string& s1 : segments) {
        patterns.push_back("/" + s1);
        for (const std::string& s2 : segments) {
            if (!s1.empty() && !(s1 == s2 && s1[0] == '{')) { // "//" and {p} twice are invalid
                std::string pattern = "/" + s1;
                pattern += "/" + s2;
                patterns.push_back(std::move(pattern));
            }
        }
    }
    std::vector<std::string> requests;
    for (const char* s1 : {"a", "b", "c", ""}) {
        requests.push_back(std::string("/") + s1);
        for (const char* s2 : {"a", "b", "c", ""}) {
            requests.push_back(std::string("/") + s1 + "/" + s2);
        }
    }
    auto yaml = [](const std::string& first, const std::string& second) {
        return "routes:\n  one: {path: \"" + first + "\", verify: {scheme: none}}\n" +
               "  two: {path: \"" + second + "\", verify: {scheme: none}}\n";
    };
    size_t accepted = 0;
    size_t refused = 0;
    for (const std::string& x : patterns) {
        for (const std::string& y : patterns) {
            if (x == y || x == "/healthz" || y == "/healthz") {
                continue;
            }
            LoadResult xy = load_text("t.yaml", yaml(x, y));
            LoadResult yx = load_text("t.yaml", yaml(y, x));
            ASSERT_EQ(xy.ok(), yx.ok()) << x << " " << y;
            if (!xy.ok()) {
                ++refused;
                // Routes built one by one, outside the loader's check, to find a shared path.
                auto alone = [&](const std::string& p) {
                    return snapshot_from_yaml("routes:\n  r: {path: \"" + p +
                                              "\", verify: {scheme: none}}\n");
                };
                auto sx = alone(x);
                auto sy = alone(y);
                ASSERT_TRUE(sx && sy);
                bool shared = false;
                for (const std::string& r : requests) {
                    shared = shared || (sx->match(r) != nullptr && sy->match(r) != nullptr);
                }
                EXPECT_TRUE(shared) << x << " and " << y << " are refused but share no path";
                continue;
            }
            ++accepted;
            std::string error;
            auto first = Snapshot::build(std::move(*xy.config), error);
            auto second = Snapshot::build(std::move(*yx.config), error);
            ASSERT_TRUE(first && second) << error;
            for (const std::string& r : requests) {
                const Route* a = first->match(r);
                const Route* b = second->match(r);
                ASSERT_EQ(a == nullptr, b == nullptr) << x << " " << y << " " << r;
                if (a != nullptr) {
                    // "one" in the first is the route "two" in the second: compare paths.
                    EXPECT_EQ(a->config->path, b->config->path) << x << " " << y << " " << r;
                }
            }
        }
    }
    // Both outcomes happen, so neither branch is vacuous.
    EXPECT_GT(accepted, 100u);
    EXPECT_GT(refused, 20u);
}
