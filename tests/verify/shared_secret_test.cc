#include "portcullis/verify/verifier.hh"

#include "harness.hh"

#include "portcullis/base/encoding.hh"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::verify;

namespace {

std::unique_ptr<Verifier> shared_secret(const std::vector<std::string>& secrets,
                                        std::string header = {}) {
    config::VerifyConfig cfg;
    cfg.scheme = config::Scheme::shared_secret;
    cfg.header = std::move(header);
    for (const std::string& s : secrets) {
        // An empty material stands for an env var or file that was missing at load.
        cfg.secrets.push_back({s, config::SecretSource::file, "file:/etc/portcullis/token"});
    }
    std::string error;
    auto v = make_verifier(cfg, error);
    EXPECT_TRUE(v) << error;
    return v;
}

Reason run(const Verifier& v, std::span<const http::Header> headers) {
    const auto body = base::as_bytes("{\"event\":\"push\"}");
    VerifyState st;
    Reason r = v.begin(headers, 0, st);
    if (r != Reason::ok) {
        return r;
    }
    v.update(st, body);
    return v.finish(st, {});
}

using harness::Fields;
using harness::views;

} // namespace

TEST(SharedSecret, TableOfRequests) {
    const std::string secret = "s3cr3t-t0ken-value";
    struct Row {
        const char* what;
        std::vector<std::string> secrets;
        std::string header; // configured; empty: the default
        Fields headers;     // owned: views into temporaries would dangle
        Reason expected;
    };
    const Row rows[] = {
        {"equal", {secret}, "", {{"X-Callback-Secret", secret}}, Reason::ok},
        {"header name in any case", {secret}, "", {{"x-callback-secret", secret}}, Reason::ok},
        {"different",
         {secret},
         "",
         {{"X-Callback-Secret", "s3cr3t-t0ken-valuX"}},
         Reason::signature_mismatch},
        {"different case",
         {secret},
         "",
         {{"X-Callback-Secret", "S3CR3T-T0KEN-VALUE"}},
         Reason::signature_mismatch},
        {"prefix of the secret",
         {secret},
         "",
         {{"X-Callback-Secret", secret.substr(0, 10)}},
         Reason::signature_mismatch},
        {"longer than the secret",
         {secret},
         "",
         {{"X-Callback-Secret", secret + "x"}},
         Reason::signature_mismatch},
        {"empty value", {secret}, "", {{"X-Callback-Secret", ""}}, Reason::signature_mismatch},
        {"missing",
         {secret},
         "",
         {{"Content-Type", "application/json"}},
         Reason::signature_missing},
        {"repeated header",
         {secret},
         "",
         {{"X-Callback-Secret", secret}, {"X-Callback-Secret", secret}},
         Reason::malformed},
        {"custom header", {secret}, "x-gitlab-token", {{"X-Gitlab-Token", secret}}, Reason::ok},
        {"custom header configured in mixed case",
         {secret},
         "X-Gitlab-Token",
         {{"x-gitlab-token", secret}},
         Reason::ok},
        {"custom header: the default one no longer counts",
         {secret},
         "x-gitlab-token",
         {{"X-Callback-Secret", secret}},
         Reason::signature_missing},
        {"rotation: new",
         {"new-token", secret},
         "",
         {{"X-Callback-Secret", "new-token"}},
         Reason::ok},
        {"rotation: old still listed",
         {"new-token", secret},
         "",
         {{"X-Callback-Secret", secret}},
         Reason::ok},
        {"rotation: old removed",
         {"new-token"},
         "",
         {{"X-Callback-Secret", secret}},
         Reason::signature_mismatch},
        {"unset secrets are skipped",
         {"", secret},
         "",
         {{"X-Callback-Secret", secret}},
         Reason::ok},
        {"an unset secret does not match an empty value",
         {"", secret},
         "",
         {{"X-Callback-Secret", ""}},
         Reason::signature_mismatch},
        {"all unset", {"", ""}, "", {{"X-Callback-Secret", secret}}, Reason::secret_unset},
        {"none configured", {}, "", {{"X-Callback-Secret", ""}}, Reason::secret_unset},
    };
    for (const Row& row : rows) {
        auto v = shared_secret(row.secrets, row.header);
        ASSERT_TRUE(v) << row.what;
        EXPECT_EQ(reason_code(run(*v, views(row.headers))), reason_code(row.expected)) << row.what;
    }
}

TEST(SharedSecret, NamesItsHeaderSoTheJobDoesNotStoreIt) {
    EXPECT_EQ(shared_secret({"x"})->secret_header(), "x-callback-secret");
    EXPECT_EQ(shared_secret({"x"}, "X-Gitlab-Token")->secret_header(), "x-gitlab-token");
}

TEST(SharedSecret, RefusesBeforeTheBodyAndNeverAcceptsWithoutBegin) {
    auto v = shared_secret({"token"});
    const http::Header wrong[] = {{"X-Callback-Secret", "nope"}};
    const http::Header right[] = {{"X-Callback-Secret", "token"}};
    VerifyState st;
    EXPECT_EQ(v->begin(wrong, 0, st), Reason::signature_mismatch);
    EXPECT_NE(v->finish(st, {}), Reason::ok);
    EXPECT_EQ(v->begin(right, 0, st), Reason::ok);
    EXPECT_EQ(v->finish(st, {}), Reason::ok);
    EXPECT_NE(v->finish(st, {}), Reason::ok);
}
