// `slack`: Slack's documented example, the window, and the url_verification handshake.
#include "portcullis/base/encoding.hh"
#include "portcullis/verify/verifier.hh"

#include "harness.hh"

#include <gtest/gtest.h>

#include <string>

using namespace portcullis;
using namespace portcullis::verify;
using namespace portcullis::verify::harness;

namespace {

// "Verifying requests from Slack": the example signing secret, timestamp, body and signature.
const std::string doc_secret = "8f742231b10e8888abcd99yyyzzz85a5";
constexpr int64_t doc_timestamp = 1531420618;
const std::string doc_body =
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
    "G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-"
    "collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%"
    "2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121."
    "803a0bc887a14d10d2c447fce8b6703c";
const std::string doc_signature =
    "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

Reason check(const Fields& fields, const std::string& body = doc_body,
             int64_t now_s = doc_timestamp) {
    auto v = make(config::Scheme::slack, {doc_secret});
    return run_verifier(*v, views(fields), body, seconds(now_s));
}

std::string sign(const std::string& ts, const std::string& body) {
    return "v0=" + base::hex(reference_hmac(config::Algorithm::sha256, doc_secret,
                                            "v0:" + ts + ":" + body));
}

} // namespace

TEST(SlackSignature, AcceptsSlacksDocumentedExample) {
    const Fields fields = {{"X-Slack-Request-Timestamp", "1531420618"},
                           {"X-Slack-Signature", doc_signature}};
    EXPECT_EQ(check(fields), Reason::ok);
    // Fed byte by byte, the MAC is the same.
    auto v = make(config::Scheme::slack, {doc_secret});
    VerifyState st;
    EXPECT_EQ(run_verifier(*v, views(fields), doc_body, seconds(doc_timestamp), st, 1), Reason::ok);
}

TEST(SlackSignature, RefusesWithTheRightReason) {
    const std::string ts = "1531420618";
    const struct {
        Fields fields;
        int64_t now_s;
        Reason expected;
        const char* what;
    } rows[] = {
        {{{"X-Slack-Request-Timestamp", ts}},
         doc_timestamp,
         Reason::signature_missing,
         "no signature"},
        {{{"X-Slack-Signature", doc_signature}},
         doc_timestamp,
         Reason::timestamp_missing,
         "no timestamp"},
        {{{"X-Slack-Request-Timestamp", "1531420618.5"}, {"X-Slack-Signature", doc_signature}},
         doc_timestamp,
         Reason::timestamp_malformed,
         "fractional timestamp"},
        {{{"X-Slack-Request-Timestamp", ts}, {"X-Slack-Signature", doc_signature}},
         doc_timestamp + 301,
         Reason::timestamp_too_old,
         "replayed later"},
        {{{"X-Slack-Request-Timestamp", ts}, {"X-Slack-Signature", doc_signature}},
         doc_timestamp - 301,
         Reason::timestamp_too_new,
         "from the future"},
        {{{"X-Slack-Request-Timestamp", ts},
          {"X-Slack-Signature", "v1=" + doc_signature.substr(3)}},
         doc_timestamp,
         Reason::malformed,
         "unknown version"},
        {{{"X-Slack-Request-Timestamp", ts}, {"X-Slack-Signature", doc_signature + "00"}},
         doc_timestamp,
         Reason::malformed,
         "too long"},
        {{{"X-Slack-Request-Timestamp", ts}, {"X-Slack-Signature", "v0=" + std::string(64, 'g')}},
         doc_timestamp,
         Reason::malformed,
         "not hex"},
        {{{"X-Slack-Request-Timestamp", "1531420619"}, {"X-Slack-Signature", doc_signature}},
         doc_timestamp,
         Reason::signature_mismatch,
         "another timestamp"},
        {{{"X-Slack-Request-Timestamp", ts},
          {"X-Slack-Signature", doc_signature},
          {"X-Slack-Signature", doc_signature}},
         doc_timestamp,
         Reason::malformed,
         "repeated signature"},
    };
    for (const auto& row : rows) {
        EXPECT_EQ(reason_code(check(row.fields, doc_body, row.now_s)), reason_code(row.expected))
            << row.what;
    }
}

TEST(SlackSignature, AnswersUrlVerificationWithItsChallenge) {
    auto v = make(config::Scheme::slack, {doc_secret});
    const std::string challenge =
        R"({"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"})";
    EXPECT_EQ(handshake_of(*v, challenge),
              R"({"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})");
    // Escapes in the challenge are echoed as sent: still valid JSON, the same string.
    EXPECT_EQ(handshake_of(*v, R"({"type":"url_verification","challenge":"a\"b\u00e9"})"),
              R"({"challenge":"a\"b\u00e9"})");
    // Verified like anything else before the handshake is looked at.
    const Fields fields = {{"X-Slack-Request-Timestamp", "1531420618"},
                           {"X-Slack-Signature", sign("1531420618", challenge)}};
    EXPECT_EQ(check(fields, challenge), Reason::ok);
}

TEST(SlackSignature, OrdinaryEventsAreNotHandshakes) {
    auto v = make(config::Scheme::slack, {doc_secret});
    const std::string rows[] = {
        doc_body,
        R"({"type":"event_callback","challenge":"x"})",
        R"({"type":"url_verification"})",
        R"({"type":"url_verification","challenge":42})",
        R"({"type":"url_verification","challenge":"x")",
        R"({"type":"url_verification","type":"url_verification","challenge":"x"})",
        R"({"type":"url_verification","challenge":")" + std::string(200, 'c') + "\"}",
        "",
    };
    for (const std::string& body : rows) {
        EXPECT_EQ(handshake_of(*v, body), "") << body;
    }
}
