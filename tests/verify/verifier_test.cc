// The building blocks every scheme shares: reason codes, single-header lookup, the timestamp
// window, constant-time comparison.
#include "portcullis/verify/constant_time.hh"
#include "portcullis/verify/verifier.hh"

#include "portcullis/base/encoding.hh"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

using namespace portcullis;
using namespace portcullis::verify;

TEST(ReasonCode, IsTheStableSnakeCaseText) {
    const std::pair<Reason, const char*> rows[] = {
        {Reason::ok, "ok"},
        {Reason::signature_missing, "signature_missing"},
        {Reason::signature_mismatch, "signature_mismatch"},
        {Reason::timestamp_missing, "timestamp_missing"},
        {Reason::timestamp_malformed, "timestamp_malformed"},
        {Reason::timestamp_too_old, "timestamp_too_old"},
        {Reason::timestamp_too_new, "timestamp_too_new"},
        {Reason::secret_unset, "secret_unset"},
        {Reason::malformed, "malformed"},
    };
    for (const auto& [reason, text] : rows) {
        EXPECT_EQ(reason_code(reason), text);
    }
}

TEST(FindSingleHeader, FindsOneAndFlagsRepeats) {
    const http::Header headers[] = {
        {"Host", "example.com"},
        {"Webhook-Id", "msg_1"},
        {"Webhook-Signature", "v1,a"},
        {"webhook-signature", "v1,b"},
    };
    HeaderMatch m = find_single_header(headers, "webhook-id");
    ASSERT_NE(m.header, nullptr);
    EXPECT_EQ(m.header->value, "msg_1");
    EXPECT_FALSE(m.repeated);
    m = find_single_header(headers, "webhook-signature");
    ASSERT_NE(m.header, nullptr);
    EXPECT_EQ(m.header->value, "v1,a");
    EXPECT_TRUE(m.repeated);
    m = find_single_header(headers, "webhook-timestamp");
    EXPECT_EQ(m.header, nullptr);
    EXPECT_FALSE(m.repeated);
    EXPECT_EQ(find_single_header({}, "host").header, nullptr);
}

TEST(CheckTimestamp, AppliesTheWindowInBothDirections) {
    constexpr int64_t s = 1'000'000'000;
    constexpr int64_t whole = 1'700'000'000 * s;
    constexpr int64_t half = whole + s / 2; // 1700000000.5 s
    constexpr int64_t window = 300 * s;
    struct Row {
        std::string text;
        int64_t now;
        int64_t tolerance;
        Reason expected;
    };
    const Row rows[] = {
        {"1700000000", half, window, Reason::ok},
        {"1699999701", half, window, Reason::ok},
        {"1699999700", half, window, Reason::timestamp_too_old},
        {"1700000300", half, window, Reason::ok},
        {"1700000301", half, window, Reason::timestamp_too_new},
        // The edges themselves are inside the window.
        {"1699999700", whole, window, Reason::ok},
        {"1699999699", whole, window, Reason::timestamp_too_old},
        {"1700000300", whole, window, Reason::ok},
        {"1700000301", whole, window, Reason::timestamp_too_new},
        {"1700000000", whole, 0, Reason::ok},
        {"1700000001", whole, 0, Reason::timestamp_too_new},
        {"1699999999", whole, 0, Reason::timestamp_too_old},
        {"0", whole, window, Reason::timestamp_too_old},
        {"0001700000000", whole, window, Reason::ok},
        {"999999999999999999", whole, window, Reason::timestamp_too_new},
        // Far enough in the future that it cannot be held in nanoseconds.
        {"9223372037", INT64_MAX, INT64_MAX, Reason::timestamp_too_new},
        // No overflow at the ends of the clock's range.
        {"9223372036", INT64_MAX, s, Reason::ok},
        {"9223372036", INT64_MAX, 0, Reason::timestamp_too_old},
        {"0", INT64_MIN, window, Reason::timestamp_too_new},
        {"0", -5 * s, 10 * s, Reason::ok},
        {"0", whole, INT64_MAX, Reason::ok},
        {"", whole, window, Reason::timestamp_malformed},
        {"-1", whole, window, Reason::timestamp_malformed},
        {"+1700000000", whole, window, Reason::timestamp_malformed},
        {"1700000000.5", whole, window, Reason::timestamp_malformed},
        {" 1700000000", whole, window, Reason::timestamp_malformed},
        {"1700000000 ", whole, window, Reason::timestamp_malformed},
        {"17e8", whole, window, Reason::timestamp_malformed},
        {"0x6553f100", whole, window, Reason::timestamp_malformed},
        {"1000000000000000000", whole, window, Reason::timestamp_malformed},
        {std::string("17000\0"
                     "00000",
                     11),
         whole, window, Reason::timestamp_malformed},
    };
    for (const Row& row : rows) {
        int64_t seconds = -1;
        EXPECT_EQ(reason_code(check_timestamp(row.text, row.now, row.tolerance, seconds)),
                  reason_code(row.expected))
            << '"' << row.text << "\" now " << row.now << " tolerance " << row.tolerance;
    }
    int64_t seconds = 0;
    ASSERT_EQ(check_timestamp("1700000123", whole, window, seconds), Reason::ok);
    EXPECT_EQ(seconds, 1700000123);
}

TEST(EqualCt, ComparesContentsAndSizes) {
    const auto a = base::as_bytes("0123456789abcdef");
    const auto b = base::as_bytes("0123456789abcdeF");
    EXPECT_TRUE(equal_ct(a, a));
    EXPECT_FALSE(equal_ct(a, b));
    EXPECT_FALSE(equal_ct(a, a.first(15)));
    EXPECT_FALSE(equal_ct(a.first(15), a));
    EXPECT_TRUE(equal_ct(a.first(0), b.first(0)));
    EXPECT_TRUE(equal_ct({}, {}));
    EXPECT_FALSE(equal_ct({}, a));
}
