// The signature header parsers on their own: what they keep, what they skip, what they refuse.
#include "portcullis/verify/signature_header.hh"

#include "portcullis/base/encoding.hh"

#include <gtest/gtest.h>

#include <array>
#include <string>

using namespace portcullis;
using namespace portcullis::verify;

namespace {

const std::string hex32(64, 'a');
const std::string b64_32 = base::base64(std::vector<uint8_t>(32, 1));
const std::string b64_64 = base::base64(std::vector<uint8_t>(64, 2));

} // namespace

TEST(DecodeSignature, WantsExactlyTheSizeInTheEncoding) {
    const struct {
        std::string text;
        config::Encoding encoding;
        size_t size;
        bool ok;
    } rows[] = {
        {hex32, config::Encoding::hex, 32, true},
        {std::string(64, 'A'), config::Encoding::hex, 32, true},
        {hex32 + "aa", config::Encoding::hex, 32, false},
        {hex32.substr(1), config::Encoding::hex, 32, false},
        {std::string(63, 'a') + "g", config::Encoding::hex, 32, false},
        {b64_32, config::Encoding::base64, 32, true},
        {b64_32.substr(0, 43), config::Encoding::base64, 32, false},
        {b64_64, config::Encoding::base64, 64, true},
        {b64_64, config::Encoding::base64, 32, false},
        {std::string(128, 'a'), config::Encoding::hex, 64, true},
        {std::string(130, 'a'), config::Encoding::hex, 65, false},
        {"", config::Encoding::base64, 32, false},
    };
    for (const auto& row : rows) {
        PresentedSignature sig;
        EXPECT_EQ(decode_signature(row.text, row.encoding, row.size, sig), row.ok) << row.text;
        if (row.ok) {
            EXPECT_EQ(sig.size, row.size);
            EXPECT_EQ(sig.kind, signature_hmac);
        }
    }
}

TEST(StripeSignatureHeader, KeepsV1sUpToTheArraysSize) {
    std::array<PresentedSignature, 2> out;
    // The results are views into the header value, which must outlive them.
    const std::string three = "t=12,v1=" + hex32 + ",v1=" + hex32 + ",v1=" + hex32;
    StripeSignature s = parse_stripe_signature(three, out);
    EXPECT_EQ(s.reason, Reason::ok);
    EXPECT_EQ(s.timestamp, "12");
    EXPECT_EQ(s.count, 2);
    const std::string mixed = "v0=" + hex32 + ",t=9,v1=x,v1=" + hex32;
    s = parse_stripe_signature(mixed, out);
    EXPECT_EQ(s.reason, Reason::ok);
    EXPECT_EQ(s.timestamp, "9");
    EXPECT_EQ(s.count, 1);
    const std::string spaced = "t=1 ,v1=" + hex32;
    EXPECT_EQ(parse_stripe_signature(spaced, out).timestamp, "1 ");
    EXPECT_EQ(parse_stripe_signature(" t=1,v1=" + hex32, out).reason, Reason::timestamp_missing);
    EXPECT_EQ(parse_stripe_signature("t", out).reason, Reason::malformed);
    EXPECT_EQ(parse_stripe_signature(",", out).reason, Reason::malformed);
}

TEST(StandardSignatureHeader, KeepsV1AndV1aByKind) {
    std::array<PresentedSignature, 8> out;
    const std::string value = "v1," + b64_32 + " v1a," + b64_64 + " v1a," + b64_32 + " v1," +
                              b64_64 + " v9," + b64_32 + "  v1," + b64_32;
    ASSERT_EQ(parse_standard_signatures(value, out), 3);
    EXPECT_EQ(out[0].kind, signature_hmac);
    EXPECT_EQ(out[0].size, 32);
    EXPECT_EQ(out[1].kind, signature_ed25519);
    EXPECT_EQ(out[1].size, 64);
    EXPECT_EQ(out[2].kind, signature_hmac);
    std::array<PresentedSignature, 1> one;
    EXPECT_EQ(parse_standard_signatures(value, one), 1);
    EXPECT_EQ(parse_standard_signatures("v1", out), 0);
    EXPECT_EQ(parse_standard_signatures(" ", out), 0);
}

TEST(SignedTemplate, RendersLiteralsAndTimestamps) {
    const struct {
        const char* text;
        bool ok;
        const char* rendered; // with timestamp "T"
    } rows[] = {
        {"{body}", true, ""},
        {"{timestamp}.{body}", true, "T."},
        {"v1:{timestamp}:{timestamp}:{body}", true, "v1:T:T:"},
        {"prefix {body}", true, "prefix "},
        {"{body}{body}", false, ""},
        {"{timestamp}", false, ""},
        {"{time}.{body}", false, ""},
        {"}{body}", false, ""},
        {"{timestamp.{body}", false, ""},
        {"", false, ""},
    };
    for (const auto& row : rows) {
        SignedTemplate t;
        EXPECT_EQ(t.parse(row.text), row.ok) << row.text;
        if (row.ok) {
            std::string out;
            t.render_prefix("T", [&](std::string_view piece) { out += piece; });
            EXPECT_EQ(out, row.rendered) << row.text;
        }
    }
}
