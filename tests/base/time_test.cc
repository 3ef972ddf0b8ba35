#include "portcullis/base/time.hh"

#include <gtest/gtest.h>

#include <optional>
#include <string_view>

using namespace portcullis::base;

namespace {

struct Rfc3339Row {
    std::string_view text;
    std::optional<int64_t> unix_ns;
};

constexpr int64_t s = ns_per_s;

} // namespace

TEST(Rfc3339, ParsesWhatItShouldAndNothingElse) {
    const Rfc3339Row rows[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"2026-11-30T03:44:15Z", 1'796'010'255 * s},
        {"2026-11-30T03:44:15.5Z", 1'796'010'255 * s + 500'000'000},
        {"2026-11-30T03:44:15.123456789Z", 1'796'010'255 * s + 123'456'789},
        {"2026-11-30T03:44:15.1234567891Z", 1'796'010'255 * s + 123'456'789}, // cut at ns
        {"2026-11-30t03:44:15z", 1'796'010'255 * s},
        {"2026-11-30 03:44:15Z", 1'796'010'255 * s},
        {"2026-11-30T04:44:15+01:00", 1'796'010'255 * s},
        {"2026-11-29T22:14:15-05:30", 1'796'010'255 * s},
        {"2024-02-29T00:00:00Z", 1'709'164'800 * s},
        {"2016-12-31T23:59:60Z", 1'483'228'800 * s}, // leap second: the next second
        {"2023-02-29T00:00:00Z", std::nullopt},      // not a leap year
        {"2026-13-01T00:00:00Z", std::nullopt},
        {"2026-11-31T00:00:00Z", std::nullopt},
        {"2026-11-30T24:00:00Z", std::nullopt},
        {"2026-11-30T03:44:15", std::nullopt},      // no offset
        {"2026-11-30T03:44:15.Z", std::nullopt},    // empty fraction
        {"2026-11-30T03:44:15+0100", std::nullopt}, // offset without colon
        {"2026-11-30T03:44:15Zjunk", std::nullopt},
        {"1969-12-31T23:59:59Z", std::nullopt}, // before the epoch
        {"2026-11-30", std::nullopt},
        {"", std::nullopt},
        {"+026-11-30T03:44:15Z", std::nullopt},
    };
    for (const Rfc3339Row& row : rows) {
        EXPECT_EQ(parse_rfc3339(row.text), row.unix_ns) << row.text;
    }
}

TEST(Rfc3339, RoundTripsTheFormatter) {
    char out[24];
    for (int64_t t : {int64_t{0}, 1'796'010'255'123'000'000, 4'102'444'799'999'000'000}) {
        EXPECT_EQ(parse_rfc3339(format_rfc3339(t, out)), t);
    }
}

// Days from the epoch, checked against known dates; years before 1 (proleptic) included, where
// a division that truncates toward zero would put January and February of year 0 a year off.
TEST(DaysFromCivil, KnownDates) {
    EXPECT_EQ(days_from_civil(1970, 1, 1), 0);
    EXPECT_EQ(days_from_civil(1969, 12, 31), -1);
    EXPECT_EQ(days_from_civil(2000, 3, 1), 11017);
    EXPECT_EQ(days_from_civil(2026, 6, 2), 20606);
    EXPECT_EQ(days_from_civil(1, 1, 1), -719162);
    EXPECT_EQ(days_from_civil(0, 3, 1), -719468);
    EXPECT_EQ(days_from_civil(0, 1, 1), -719528);
    EXPECT_EQ(days_from_civil(-1, 12, 31), -719529);
    EXPECT_EQ(days_in_month(2024, 2), 29);
    EXPECT_EQ(days_in_month(1900, 2), 28);
    EXPECT_EQ(days_in_month(2000, 2), 29);
    EXPECT_EQ(days_in_month(2026, 4), 30);
}
