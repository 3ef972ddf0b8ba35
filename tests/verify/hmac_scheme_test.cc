// `hmac`: header, prefix, encoding, algorithm, timestamp header and template.
#include "portcullis/base/encoding.hh"
#include "portcullis/verify/verifier.hh"

#include "harness.hh"

#include <gtest/gtest.h>

#include <string>

using namespace portcullis;
using namespace portcullis::verify;
using namespace portcullis::verify::harness;

namespace {

const std::string secret = "orchestrator-shared-key";
const std::string body = R"({"job":"rebuild","shard":7})";
constexpr int64_t now = 1750000000;

config::VerifyConfig options(std::string header, std::string prefix, config::Encoding e,
                             config::Algorithm a, std::string timestamp_header = {},
                             std::string signed_template = {}) {
    config::VerifyConfig cfg;
    cfg.header = std::move(header);
    cfg.prefix = std::move(prefix);
    cfg.encoding = e;
    cfg.algorithm = a;
    cfg.timestamp_header = std::move(timestamp_header);
    cfg.signed_template = std::move(signed_template);
    return cfg;
}

std::string encode(const std::vector<uint8_t>& mac, config::Encoding e) {
    return e == config::Encoding::hex ? base::hex(mac) : base::base64(mac);
}

} // namespace

TEST(HmacScheme, EveryAlgorithmAndEncoding) {
    const struct {
        config::Algorithm algorithm;
        config::Encoding encoding;
        std::string prefix;
    } rows[] = {
        {config::Algorithm::sha256, config::Encoding::hex, ""},
        {config::Algorithm::sha512, config::Encoding::base64, "sha512="},
        {config::Algorithm::sha1, config::Encoding::hex, "sha1="},
        {config::Algorithm::sha1, config::Encoding::base64, ""},
    };
    for (const auto& row : rows) {
        auto v = make(config::Scheme::hmac, {secret},
                      options("x-signature", row.prefix, row.encoding, row.algorithm));
        const std::string mac = encode(reference_hmac(row.algorithm, secret, body), row.encoding);
        const std::string what = row.prefix + "/" + std::to_string(int(row.algorithm));
        const std::string signature = row.prefix + mac; // outlives the header views
        const http::Header good[] = {{"X-Signature", signature}};
        EXPECT_EQ(run_verifier(*v, good, body), Reason::ok) << what;
        const http::Header no_prefix[] = {{"X-Signature", mac}};
        EXPECT_EQ(run_verifier(*v, no_prefix, body),
                  row.prefix.empty() ? Reason::ok : Reason::malformed)
            << what;
        EXPECT_EQ(run_verifier(*v, good, body + "\n"), Reason::signature_mismatch) << what;
        EXPECT_EQ(run_verifier(*v, {}, body), Reason::signature_missing) << what;
    }
}

TEST(HmacScheme, SignsTheTemplateWithTheTimestampAsSent) {
    auto v = make(config::Scheme::hmac, {secret},
                  options("x-orchestrator-signature", "v1=", config::Encoding::hex,
                          config::Algorithm::sha256, "x-orchestrator-time",
                          "v1:{timestamp}:{timestamp}:{body}"));
    const std::string ts = std::to_string(now);
    const std::string mac = base::hex(
        reference_hmac(config::Algorithm::sha256, secret, "v1:" + ts + ":" + ts + ":" + body));
    const Fields good = {{"X-Orchestrator-Time", ts}, {"X-Orchestrator-Signature", "v1=" + mac}};
    EXPECT_EQ(run_verifier(*v, views(good), body, seconds(now)), Reason::ok);
    EXPECT_EQ(run_verifier(*v, views(good), body, seconds(now + 301)), Reason::timestamp_too_old);
    EXPECT_EQ(run_verifier(*v, views(good), body, seconds(now - 301)), Reason::timestamp_too_new);
    const Fields no_time = {{"X-Orchestrator-Signature", "v1=" + mac}};
    EXPECT_EQ(run_verifier(*v, views(no_time), body, seconds(now)), Reason::timestamp_missing);
    const Fields later = {{"X-Orchestrator-Time", std::to_string(now + 1)},
                          {"X-Orchestrator-Signature", "v1=" + mac}};
    EXPECT_EQ(run_verifier(*v, views(later), body, seconds(now)), Reason::signature_mismatch);
}

TEST(HmacScheme, ToleranceOverridesTheDefaultWindow) {
    config::VerifyConfig cfg =
        options("x-sig", "", config::Encoding::hex, config::Algorithm::sha256, "x-ts");
    cfg.tolerance_ns = seconds(5);
    auto v = make(config::Scheme::hmac, {secret}, cfg);
    const std::string ts = std::to_string(now);
    const Fields good = {
        {"X-Ts", ts},
        {"X-Sig", base::hex(reference_hmac(config::Algorithm::sha256, secret, ts + "." + body))}};
    EXPECT_EQ(run_verifier(*v, views(good), body, seconds(now + 5)), Reason::ok);
    EXPECT_EQ(run_verifier(*v, views(good), body, seconds(now + 6)), Reason::timestamp_too_old);
}

TEST(HmacScheme, RefusesATemplateThatDisagreesWithItsOptions) {
    config::VerifyConfig cfg = options("x-sig", "", config::Encoding::hex,
                                       config::Algorithm::sha256, "", "{timestamp}.{body}");
    cfg.scheme = config::Scheme::hmac;
    std::string error;
    EXPECT_FALSE(make_verifier(cfg, error));
    EXPECT_NE(error, "");
    cfg.signed_template = "{body}.{timestamp}";
    cfg.timestamp_header = "x-ts";
    EXPECT_FALSE(make_verifier(cfg, error));
}
