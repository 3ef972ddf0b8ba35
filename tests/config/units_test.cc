#include "portcullis/config/units.hh"

#include <gtest/gtest.h>

#include <optional>
#include <string>

using namespace portcullis::config;

namespace {

constexpr int64_t ms = 1'000'000;
constexpr int64_t s = 1000 * ms;

} // namespace

TEST(Duration, ParsesEveryUnit) {
    struct Row {
        std::string text;
        std::optional<int64_t> ns;
    };
    const Row rows[] = {
        {"250ms", 250 * ms},
        {"10s", 10 * s},
        {"5m", 300 * s},
        {"24h", 24 * 3600 * s},
        {"0s", 0},
        {"9223372036854ms", 9223372036854 * ms},
        {"9223372036855ms", std::nullopt}, // past INT64_MAX ns
        {"99999999999999999999999s", std::nullopt},
        {"10", std::nullopt},
        {"1.5s", std::nullopt},
        {"10us", std::nullopt},
        {"10 s", std::nullopt},
        {"-1s", std::nullopt},
        {"+1s", std::nullopt},
        {"s", std::nullopt},
        {"", std::nullopt},
        {"10S", std::nullopt},
        {"1d", std::nullopt},
    };
    for (const Row& r : rows) {
        EXPECT_EQ(parse_duration_ns(r.text), r.ns) << r.text;
    }
}

TEST(Duration, ExplainsEachMistake) {
    struct Row {
        std::string text;
        std::string message_part;
    };
    const Row rows[] = {
        {"10", "a duration needs a unit: 10s or 10ms"},
        {"1.5s", "whole numbers"},
        {"10us", "unknown duration unit \"us\" (expected ms, s, m or h)"},
        {"99999999999999999999s", "too large"},
        {"soon", "expected a duration like 250ms"},
        {"", "expected a duration like 250ms"},
    };
    for (const Row& r : rows) {
        EXPECT_NE(duration_error(r.text).find(r.message_part), std::string::npos)
            << r.text << " -> " << duration_error(r.text);
    }
}

TEST(Size, ParsesBytesAndBinaryUnits) {
    struct Row {
        std::string text;
        std::optional<uint64_t> bytes;
    };
    const Row rows[] = {
        {"512", 512},
        {"0", 0},
        {"16KiB", 16 * 1024},
        {"1MiB", 1024 * 1024},
        {"64MiB", 64ull << 20},
        {"1GiB", 1ull << 30},
        {"17179869183GiB", 17179869183ull << 30},
        {"17179869184GiB", std::nullopt}, // 2^64
        {"18446744073709551615", UINT64_MAX},
        {"18446744073709551616", std::nullopt},
        {"1KB", std::nullopt},
        {"1MB", std::nullopt},
        {"1GB", std::nullopt},
        {"1k", std::nullopt},
        {"1B", std::nullopt},
        {"1.5MiB", std::nullopt},
        {"MiB", std::nullopt},
        {"1TiB", std::nullopt},
        {"", std::nullopt},
    };
    for (const Row& r : rows) {
        EXPECT_EQ(parse_size(r.text), r.bytes) << r.text;
    }
}

TEST(Size, RefusesDecimalUnitsSuggestingBinaryOnes) {
    struct Row {
        std::string text;
        std::string message_part;
    };
    const Row rows[] = {
        {"1KB", "unit \"KB\" is ambiguous: write 1KiB"},
        {"64MB", "unit \"MB\" is ambiguous: write 64MiB"},
        {"2GB", "write 2GiB"},
        {"16k", "write 16KiB"},
        {"512B", "without a unit: 512"},
        {"1.5MiB", "whole numbers"},
        {"1TiB", "unknown size unit \"TiB\""},
        {"big", "expected a size like 512"},
        {"17179869184GiB", "too large"},
    };
    for (const Row& r : rows) {
        EXPECT_NE(size_error(r.text).find(r.message_part), std::string::npos)
            << r.text << " -> " << size_error(r.text);
    }
}

TEST(Rate, ParsesPerSecondMinuteHour) {
    struct Row {
        std::string text;
        std::optional<Rate> rate;
    };
    const Row rows[] = {
        {"20/s", Rate{20, s}},
        {"100/min", Rate{100, 60 * s}},
        {"5000/h", Rate{5000, 3600 * s}},
        {"0/s", std::nullopt},
        {"20/m", std::nullopt},
        {"20/sec", std::nullopt},
        {"20", std::nullopt},
        {"/s", std::nullopt},
        {"1.5/s", std::nullopt},
        {"99999999999999999999/s", std::nullopt},
    };
    for (const Row& r : rows) {
        auto got = parse_rate(r.text);
        ASSERT_EQ(got.has_value(), r.rate.has_value()) << r.text;
        if (got) {
            EXPECT_EQ(got->count, r.rate->count) << r.text;
            EXPECT_EQ(got->period_ns, r.rate->period_ns) << r.text;
        }
    }
    EXPECT_NE(rate_error("0/s").find("would refuse everything"), std::string::npos);
    EXPECT_NE(rate_error("20/m").find("unknown rate period \"m\""), std::string::npos);
    EXPECT_NE(rate_error("fast").find("expected a rate like 20/s"), std::string::npos);
}

TEST(Format, PrintsTheShortestFormThatParsesBack) {
    struct Row {
        int64_t ns;
        std::string text;
    };
    const Row durations[] = {
        {0, "0s"},       {250 * ms, "250ms"},    {10 * s, "10s"},       {90 * s, "90s"},
        {300 * s, "5m"}, {72 * 3600 * s, "72h"}, {1500 * ms, "1500ms"}, {1500, "1500ns"},
    };
    for (const Row& r : durations) {
        EXPECT_EQ(format_duration(r.ns), r.text);
        if (r.ns % ms == 0) {
            EXPECT_EQ(parse_duration_ns(r.text), r.ns) << r.text;
        }
    }
    struct SizeRow {
        uint64_t bytes;
        std::string text;
    };
    const SizeRow sizes[] = {
        {0, "0"},
        {512, "512"},
        {16 * 1024, "16KiB"},
        {1536 * 1024, "1536KiB"},
        {64ull << 20, "64MiB"},
        {1ull << 30, "1GiB"},
        {1025, "1025"},
    };
    for (const SizeRow& r : sizes) {
        EXPECT_EQ(format_size(r.bytes), r.text);
        EXPECT_EQ(parse_size(r.text), r.bytes) << r.text;
    }
    EXPECT_EQ(format_rate(Rate{20, s}), "20/s");
    EXPECT_EQ(format_rate(Rate{100, 60 * s}), "100/min");
    EXPECT_EQ(format_rate(Rate{5000, 3600 * s}), "5000/h");
}
