#include "portcullis/http/header_policy.hh"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace portcullis::http;
using portcullis::base::Level;
using portcullis::base::LogLine;

namespace {

std::vector<std::string> stored_names(const std::vector<Header>& headers,
                                      const StoredFields& policy) {
    std::vector<Header> out(headers.size());
    size_t n = select_stored(headers, policy, out);
    std::vector<std::string> names;
    for (size_t i = 0; i < n; ++i) {
        names.emplace_back(out[i].name);
    }
    return names;
}

// The "headers" object of a rejection line built from headers, as written.
std::string logged(const std::vector<Header>& headers, const StoredFields& policy = {}) {
    LogLine line(Level::warn, "webhook rejected", 0);
    log_headers(line, headers, policy);
    std::string text(line.finish());
    size_t at = text.find(R"("headers":)");
    EXPECT_NE(at, std::string::npos) << text;
    EXPECT_EQ(text.substr(text.size() - 3), "}}\n") << text;
    return text.substr(at, text.size() - 2 - at);
}

} // namespace

TEST(StoredFields, CredentialsHopByHopAndTheSecretAreLeftOut) {
    const std::vector<Header> headers = {
        {"Host", "a"},
        {"Authorization", "Bearer t"},
        {"X-Hub-Signature-256", "sha256=00"},
        {"Proxy-Authorization", "Basic cDpw"},
        {"cookie", "s=1"},
        {"COOKIE", "s=2"},
        {"Connection", "keep-alive"},
        {"Transfer-Encoding", "chunked"},
        {"Expect", "100-continue"},
        {"X-Gitlab-Token", "secret"},
        {"Content-Type", "application/json"},
    };
    EXPECT_EQ(stored_names(headers, {}),
              (std::vector<std::string>{"Host", "X-Hub-Signature-256", "X-Gitlab-Token",
                                        "Content-Type"}));
    StoredFields gitlab{"x-gitlab-token", 0};
    EXPECT_EQ(stored_names(headers, gitlab),
              (std::vector<std::string>{"Host", "X-Hub-Signature-256", "Content-Type"}));
    StoredFields keeps{"x-gitlab-token", static_cast<uint8_t>(credential_bit("authorization") |
                                                              credential_bit("cookie"))};
    EXPECT_EQ(stored_names(headers, keeps),
              (std::vector<std::string>{"Host", "Authorization", "X-Hub-Signature-256", "cookie",
                                        "COOKIE", "Content-Type"}));
}

TEST(StoredFields, OneBitPerCredentialAnyCase) {
    EXPECT_EQ(credential_bit("Authorization"), 1);
    EXPECT_EQ(credential_bit("PROXY-AUTHORIZATION"), 2);
    EXPECT_EQ(credential_bit("cookie"), 4);
    EXPECT_EQ(credential_bit("set-cookie"), 0);
    EXPECT_EQ(credential_bit("authorization2"), 0);
    EXPECT_EQ(credential_bit(""), 0);
    EXPECT_TRUE(is_hop_by_hop("TE"));
    EXPECT_FALSE(is_hop_by_hop("Host"));
}

TEST(LogHeaders, AllowListedFieldsWithSignaturesCut) {
    EXPECT_EQ(logged({{"User-Agent", "curl/8"},
                      {"Authorization", "Bearer t"},
                      {"X-Hub-Signature-256", "sha256=0123456789abcdef"},
                      {"X-Other", "x"}}),
              R"("headers":{"user-agent":"curl/8","x-hub-signature-256":"sha256=01234"})");
    EXPECT_EQ(logged({}), R"("headers":{})");
}

TEST(LogHeaders, ARepeatedFieldIsOneKeyWithItsValuesJoined) {
    EXPECT_EQ(
        logged({{"X-GitHub-Event", "push"},
                {"X-Hub-Signature-256", "sha256=aaaa"},
                {"x-github-event", "ping"},
                {"X-HUB-SIGNATURE-256", "sha256=bbbbbbbb"},
                {"X-Github-Event", ""}}),
        R"("headers":{"x-github-event":"push, ping, ","x-hub-signature-256":"sha256=aaaa,"})");
}

TEST(LogHeaders, AJoinedValueKeepsTheBoundOfOneValue) {
    const std::string long_value(100, 'v');
    std::vector<Header> headers;
    for (int i = 0; i < 50; ++i) {
        headers.push_back({"X-Request-Id", long_value});
        headers.push_back({"Stripe-Signature", "t=1,v1=abcdef0123456789"});
    }
    const std::string want_id = long_value + ", " + long_value.substr(0, 26);
    EXPECT_EQ(logged(headers), R"("headers":{"x-request-id":")" + want_id +
                                   R"(","stripe-signature":"t=1,v1=abcde"})");
}

TEST(LogHeaders, FieldsThePolicyDoesNotStoreAreNotShown) {
    // A route whose secret travels in an allow-listed field (here X-Request-Id, contrived):
    // the secret never reaches the line.
    StoredFields policy{"x-request-id", 0};
    EXPECT_EQ(logged({{"X-Request-Id", "the-secret"}, {"User-Agent", "u"}}, policy),
              R"("headers":{"user-agent":"u"})");
}

// A field the sender's Connection lists is meant for that connection only (RFC 9110 section
// 7.6.1): it is not stored, so no consumer or sink gets it. Other Connection options name
// nothing sent (keep-alive) or fields dropped anyway.
TEST(StoredFields, FieldsConnectionNamesAreLeftOut) {
    const std::vector<Header> headers = {
        {"X-Hop", "1"},   {"Connection", "keep-alive, X-Hop"},
        {"X-Keep", "2"},  {"connection", "x-other"},
        {"X-Other", "3"}, {"X-Hop", "4"},
    };
    EXPECT_EQ(stored_names(headers, {}), (std::vector<std::string>{"X-Keep"}));
}
