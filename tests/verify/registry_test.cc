#include "portcullis/verify/verifier.hh"

#include <gtest/gtest.h>

#include <string>

using namespace portcullis;
using namespace portcullis::verify;

TEST(VerifierRegistry, EverySchemeGivesAVerifierOrSaysItIsNotAvailable) {
    struct Row {
        config::Scheme scheme;
        const char* name;
        bool available;
    };
    const Row rows[] = {
        {config::Scheme::github, "github", true},
        {config::Scheme::stripe, "stripe", false},
        {config::Scheme::slack, "slack", false},
        {config::Scheme::standard, "standard", false},
        {config::Scheme::shopify, "shopify", false},
        {config::Scheme::hmac, "hmac", false},
        {config::Scheme::shared_secret, "shared_secret", true},
        {config::Scheme::ed25519, "ed25519", false},
        {config::Scheme::none, "none", true},
    };
    for (const Row& row : rows) {
        config::VerifyConfig cfg;
        cfg.scheme = row.scheme;
        cfg.secrets.push_back({"secret", config::SecretSource::value, "value"});
        std::string error;
        auto v = make_verifier(cfg, error);
        if (row.available) {
            EXPECT_TRUE(v) << row.name;
            EXPECT_EQ(error, "") << row.name;
        } else {
            EXPECT_FALSE(v) << row.name;
            EXPECT_EQ(error, "scheme \"" + std::string(row.name) +
                                 "\" is not available in this build yet");
        }
    }
}

TEST(VerifierRegistry, RefusesMoreSecretsThanARequestHasRoomFor) {
    config::VerifyConfig cfg;
    cfg.scheme = config::Scheme::github;
    for (size_t i = 0; i <= max_secrets; ++i) {
        cfg.secrets.push_back({"secret" + std::to_string(i), config::SecretSource::value, "value"});
    }
    std::string error;
    EXPECT_FALSE(make_verifier(cfg, error));
    EXPECT_EQ(error, "at most 8 secrets per route (9 given)");
    cfg.secrets.pop_back();
    error.clear();
    EXPECT_TRUE(make_verifier(cfg, error)) << error;
}

TEST(VerifierRegistry, RefusesAnUnknownSchemeValue) {
    config::VerifyConfig cfg;
    cfg.scheme = static_cast<config::Scheme>(200);
    std::string error;
    EXPECT_FALSE(make_verifier(cfg, error));
    EXPECT_NE(error, "");
}

TEST(NoneScheme, AcceptsEveryRequest) {
    config::VerifyConfig cfg;
    cfg.scheme = config::Scheme::none;
    std::string error;
    auto v = make_verifier(cfg, error);
    ASSERT_TRUE(v) << error;
    const http::Header headers[] = {{"X-Hub-Signature-256", "garbage"}};
    VerifyState st;
    EXPECT_EQ(v->begin(headers, 0, st), Reason::ok);
    v->update(st, {});
    EXPECT_EQ(v->finish(st, {}), Reason::ok);
    EXPECT_EQ(v->begin({}, -1, st), Reason::ok);
    EXPECT_EQ(v->finish(st, {}), Reason::ok);
    EXPECT_EQ(v->secret_header(), "");
}
