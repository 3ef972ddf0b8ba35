#include "portcullis/verify/verifier.hh"

#include <gtest/gtest.h>

#include <string>

using namespace portcullis;
using namespace portcullis::verify;

TEST(VerifierRegistry, EverySchemeBuildsFromAWellFormedSecret) {
    struct Row {
        config::Scheme scheme;
        const char* secret; // nullptr: the scheme takes none
    };
    const Row rows[] = {
        {config::Scheme::github, "secret"},
        {config::Scheme::stripe, "whsec_secret"},
        {config::Scheme::slack, "secret"},
        {config::Scheme::standard, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
        {config::Scheme::shopify, "secret"},
        {config::Scheme::hmac, "secret"},
        {config::Scheme::shared_secret, "secret"},
        {config::Scheme::ed25519,
         "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"},
        {config::Scheme::none, nullptr},
    };
    for (const Row& row : rows) {
        config::VerifyConfig cfg;
        cfg.scheme = row.scheme;
        cfg.header = "x-signature"; // hmac's required option
        if (row.secret != nullptr) {
            cfg.secrets.push_back({row.secret, config::SecretSource::value, "value"});
        }
        std::string error;
        EXPECT_TRUE(make_verifier(cfg, error)) << config::scheme_name(row.scheme) << ": " << error;
        EXPECT_EQ(error, "") << config::scheme_name(row.scheme);
    }
}

TEST(VerifierRegistry, RefusesKeysOfTheWrongShapeNamingTheSecretNotItsValue) {
    struct Row {
        config::Scheme scheme;
        const char* secret;
    };
    const Row rows[] = {
        {config::Scheme::standard, "not-prefixed"},
        {config::Scheme::standard, "whpk_c2hvcnQ="},
        {config::Scheme::ed25519, "abcd"},
        {config::Scheme::ed25519,
         "zz5a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"},
    };
    for (const Row& row : rows) {
        config::VerifyConfig cfg;
        cfg.scheme = row.scheme;
        cfg.secrets.push_back({row.secret, config::SecretSource::env, "env:KEY"});
        std::string error;
        EXPECT_FALSE(make_verifier(cfg, error)) << row.secret;
        EXPECT_NE(error.find("env:KEY"), std::string::npos) << error;
        EXPECT_EQ(error.find(row.secret), std::string::npos) << error;
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
