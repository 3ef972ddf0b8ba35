#include "portcullis/verify/verifier.hh"

#include "harness.hh"

#include "portcullis/base/encoding.hh"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::verify;

namespace {

// GitHub's documented example ("Validating webhook deliveries").
const std::string doc_secret = "It's a Secret to Everybody";
const std::string doc_body = "Hello, World!";
const std::string doc_signature =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

std::unique_ptr<Verifier> github(const std::vector<std::string>& secrets) {
    config::VerifyConfig cfg;
    cfg.scheme = config::Scheme::github;
    for (const std::string& s : secrets) {
        // An empty material stands for an env var or file that was missing at load.
        cfg.secrets.push_back({s, config::SecretSource::env, "env:GITHUB_WEBHOOK_SECRET"});
    }
    std::string error;
    auto v = make_verifier(cfg, error);
    EXPECT_TRUE(v) << error;
    return v;
}

std::string sign(const std::string& secret, const std::string& body) {
    HmacKey key(config::Algorithm::sha256, base::as_bytes(secret));
    uint8_t mac[max_mac_size];
    key.compute(base::as_bytes(body), mac);
    return "sha256=" + base::hex({mac, key.size()});
}

Reason run(const Verifier& v, std::span<const http::Header> headers, std::string_view body,
           VerifyState& st, size_t piece_size = 4096) {
    return harness::run_verifier(v, headers, body, 0, st, piece_size);
}

Reason run(const Verifier& v, std::span<const http::Header> headers, std::string_view body) {
    return harness::run_verifier(v, headers, body);
}

using harness::Fields;
using harness::views;

} // namespace

TEST(GithubSignature, AcceptsGithubsDocumentedExample) {
    auto v = github({doc_secret});
    const http::Header headers[] = {{"X-Hub-Signature-256", doc_signature}};
    EXPECT_EQ(run(*v, headers, doc_body), Reason::ok);
    EXPECT_EQ(sign(doc_secret, doc_body), doc_signature);
    EXPECT_EQ(v->secret_header(), "");
}

TEST(GithubSignature, TableOfRequests) {
    const std::string old_secret = "old secret";
    const std::string new_secret = "new secret";
    const std::string by_old = sign(old_secret, doc_body);
    const std::string by_new = sign(new_secret, doc_body);
    std::string upper = doc_signature;
    for (size_t i = 7; i < upper.size(); ++i) {
        upper[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(upper[i])));
    }
    const std::string hex64 = doc_signature.substr(7);
    struct Row {
        const char* what;
        std::vector<std::string> secrets;
        Fields headers; // owned: views into temporaries would dangle
        std::string body;
        Reason expected;
    };
    const Row rows[] = {
        {"documented example",
         {doc_secret},
         {{"X-Hub-Signature-256", doc_signature}},
         doc_body,
         Reason::ok},
        {"uppercase hex accepted",
         {doc_secret},
         {{"X-Hub-Signature-256", upper}},
         doc_body,
         Reason::ok},
        {"header name in any case",
         {doc_secret},
         {{"Content-Type", "application/json"}, {"x-hub-signature-256", doc_signature}},
         doc_body,
         Reason::ok},
        {"missing header",
         {doc_secret},
         {{"Content-Type", "application/json"}},
         doc_body,
         Reason::signature_missing},
        {"no headers at all", {doc_secret}, {}, doc_body, Reason::signature_missing},
        {"legacy sha1 header alone is ignored",
         {doc_secret},
         {{"X-Hub-Signature", "sha1=" + std::string(40, 'a')}},
         doc_body,
         Reason::signature_missing},
        {"legacy sha1 header next to a good one",
         {doc_secret},
         {{"X-Hub-Signature", "sha1=" + std::string(40, 'a')},
          {"X-Hub-Signature-256", doc_signature}},
         doc_body,
         Reason::ok},
        {"sha1= prefix",
         {doc_secret},
         {{"X-Hub-Signature-256", "sha1=" + hex64}},
         doc_body,
         Reason::malformed},
        {"sha1= prefix, sha1 length",
         {doc_secret},
         {{"X-Hub-Signature-256", "sha1=" + hex64.substr(0, 40)}},
         doc_body,
         Reason::malformed},
        {"uppercase prefix",
         {doc_secret},
         {{"X-Hub-Signature-256", "SHA256=" + hex64}},
         doc_body,
         Reason::malformed},
        {"bare hex without prefix",
         {doc_secret},
         {{"X-Hub-Signature-256", hex64}},
         doc_body,
         Reason::malformed},
        {"short hex",
         {doc_secret},
         {{"X-Hub-Signature-256", doc_signature.substr(0, 70)}},
         doc_body,
         Reason::malformed},
        {"odd hex length",
         {doc_secret},
         {{"X-Hub-Signature-256", doc_signature + "0"}},
         doc_body,
         Reason::malformed},
        {"long hex",
         {doc_secret},
         {{"X-Hub-Signature-256", doc_signature + "00"}},
         doc_body,
         Reason::malformed},
        {"non-hex digit",
         {doc_secret},
         {{"X-Hub-Signature-256", doc_signature.substr(0, 70) + "g"}},
         doc_body,
         Reason::malformed},
        {"empty value", {doc_secret}, {{"X-Hub-Signature-256", ""}}, doc_body, Reason::malformed},
        {"prefix only",
         {doc_secret},
         {{"X-Hub-Signature-256", "sha256="}},
         doc_body,
         Reason::malformed},
        {"header repeated, both good",
         {doc_secret},
         {{"X-Hub-Signature-256", doc_signature}, {"X-Hub-Signature-256", doc_signature}},
         doc_body,
         Reason::malformed},
        {"wrong secret",
         {"It's a secret to everybody"},
         {{"X-Hub-Signature-256", doc_signature}},
         doc_body,
         Reason::signature_mismatch},
        {"body altered",
         {doc_secret},
         {{"X-Hub-Signature-256", doc_signature}},
         "Hello, World?",
         Reason::signature_mismatch},
        {"body truncated",
         {doc_secret},
         {{"X-Hub-Signature-256", doc_signature}},
         "Hello, World",
         Reason::signature_mismatch},
        {"empty body",
         {doc_secret},
         {{"X-Hub-Signature-256", doc_signature}},
         "",
         Reason::signature_mismatch},
        {"rotation: signed with the new secret",
         {new_secret, old_secret},
         {{"X-Hub-Signature-256", by_new}},
         doc_body,
         Reason::ok},
        {"rotation: old secret still listed",
         {new_secret, old_secret},
         {{"X-Hub-Signature-256", by_old}},
         doc_body,
         Reason::ok},
        {"rotation: old secret removed",
         {new_secret},
         {{"X-Hub-Signature-256", by_old}},
         doc_body,
         Reason::signature_mismatch},
        {"unset secrets are skipped",
         {"", old_secret, ""},
         {{"X-Hub-Signature-256", by_old}},
         doc_body,
         Reason::ok},
        {"all secrets unset",
         {"", ""},
         {{"X-Hub-Signature-256", doc_signature}},
         doc_body,
         Reason::secret_unset},
        {"no secrets at all",
         {},
         {{"X-Hub-Signature-256", doc_signature}},
         doc_body,
         Reason::secret_unset},
        {"all secrets unset and no signature", {""}, {}, doc_body, Reason::secret_unset},
        {"eighth secret matches",
         {"s1", "s2", "s3", "s4", "s5", "s6", "s7", doc_secret},
         {{"X-Hub-Signature-256", doc_signature}},
         doc_body,
         Reason::ok},
    };
    for (const Row& row : rows) {
        auto v = github(row.secrets);
        ASSERT_TRUE(v) << row.what;
        EXPECT_EQ(reason_code(run(*v, views(row.headers), row.body)), reason_code(row.expected))
            << row.what;
    }
}

TEST(GithubSignature, BodyFedInPiecesOfAnySize) {
    const std::string body(10000, 'x');
    const std::string signature = sign(doc_secret, body);
    auto v = github({"another", doc_secret});
    const http::Header headers[] = {{"X-Hub-Signature-256", signature}};
    for (size_t piece : {1, 2, 7, 63, 64, 65, 4096, 9999, 10000, 20000}) {
        VerifyState st;
        EXPECT_EQ(run(*v, headers, body, st, piece), Reason::ok) << piece;
    }
    // Empty pieces change nothing.
    VerifyState st;
    ASSERT_EQ(v->begin(headers, 0, st), Reason::ok);
    v->update(st, {});
    v->update(st, base::as_bytes(std::string_view(body).substr(0, 5000)));
    v->update(st, {});
    v->update(st, base::as_bytes(std::string_view(body).substr(5000)));
    harness::RecordedBody recorded(body);
    EXPECT_EQ(v->finish(st, recorded.view()), Reason::ok);
}

TEST(GithubSignature, StateIsReusedAcrossRequestsOfAConnection) {
    auto v = github({doc_secret});
    const http::Header good[] = {{"X-Hub-Signature-256", doc_signature}};
    const std::string zeros = "sha256=" + std::string(64, '0');
    const http::Header bad[] = {{"X-Hub-Signature-256", zeros}};
    VerifyState st;
    EXPECT_EQ(run(*v, good, doc_body, st), Reason::ok);
    EXPECT_EQ(run(*v, bad, doc_body, st), Reason::signature_mismatch);
    EXPECT_EQ(run(*v, good, doc_body, st), Reason::ok);
    EXPECT_EQ(run(*v, {}, doc_body, st), Reason::signature_missing);
    EXPECT_EQ(run(*v, good, doc_body, st), Reason::ok);
}

TEST(GithubSignature, FinishNeverAcceptsWithoutASuccessfulBegin) {
    auto v = github({doc_secret});
    const http::Header good[] = {{"X-Hub-Signature-256", doc_signature}};
    const auto body = base::as_bytes(doc_body);
    harness::RecordedBody recorded(doc_body);
    VerifyState st;
    ASSERT_EQ(v->begin(good, 0, st), Reason::ok);
    v->update(st, body);
    ASSERT_EQ(v->finish(st, recorded.view()), Reason::ok);
    // A second finish of the same request is a caller bug; it must not pass.
    EXPECT_NE(v->finish(st, recorded.view()), Reason::ok);
    // Nor may a finish after begin refused the request.
    EXPECT_EQ(v->begin({}, 0, st), Reason::signature_missing);
    v->update(st, body);
    EXPECT_NE(v->finish(st, recorded.view()), Reason::ok);
}
