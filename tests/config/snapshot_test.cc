#include "portcullis/config/snapshot.hh"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

using namespace portcullis::config;

namespace {

std::unique_ptr<Snapshot> build(const std::string& yaml) {
    LoadResult loaded = load_text("test.yaml", yaml);
    EXPECT_TRUE(loaded.ok()) << (loaded.errors.empty() ? "" : loaded.errors[0].format());
    if (!loaded.ok()) {
        return nullptr;
    }
    std::string error;
    auto snap = Snapshot::build(std::move(*loaded.config), error);
    EXPECT_EQ(error, "");
    return snap;
}

const char* const routes_yaml = R"(
routes:
  by_id: {path: "/jobs/{id}/status", methods: [POST, PUT], verify: {scheme: none}}
  latest: {path: /jobs/latest/status, verify: {scheme: none}}
  github: {path: /webhooks/github, verify: {scheme: none}}
)";

} // namespace

TEST(SnapshotMatch, ExactPathsAndParamSegments) {
    auto snap = build(routes_yaml);
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
    auto snap = build(routes_yaml);
    ASSERT_TRUE(snap);
    // by_id is listed first and matches too; the literal route is more specific.
    EXPECT_EQ(snap->match("/jobs/latest/status")->config->name, "latest");
}

TEST(SnapshotRoute, StoredFieldsFollowTheSecretHeaderAndKeepHeaders) {
    setenv("PORTCULLIS_TEST_TOKEN", "token", 1);
    auto snap = build(R"(
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
    auto snap = build(routes_yaml);
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
