#include "portcullis/queue/job_id.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <string>
#include <vector>

using namespace portcullis::queue;

namespace {

constexpr int64_t ms = 1'000'000;
constexpr int64_t t0 = 1795353480123 * ms; // 2026-11-22T13:18:00.123Z

JobId id_of(std::array<uint8_t, 16> bytes) {
    JobId id;
    id.bytes = bytes;
    return id;
}

} // namespace

TEST(JobId, FormatsAndParsesKnownIds) {
    struct Row {
        std::array<uint8_t, 16> bytes;
        std::string text;
    };
    const Row rows[] = {
        {{}, "00000000000000000000000000"},
        {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
          0xff},
         "7zzzzzzzzzzzzzzzzzzzzzzzzz"},
        {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "00000000000000000000000001"},
        {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32}, "00000000000000000000000010"},
        {{0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "40000000000000000000000000"},
        // Bit 63|64 straddles a character: check the carry between the two halves.
        {{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}, "0000000000000g000000000000"},
    };
    for (const Row& row : rows) {
        JobId id = id_of(row.bytes);
        EXPECT_EQ(id.to_string(), row.text);
        auto parsed = JobId::parse(row.text);
        ASSERT_TRUE(parsed) << row.text;
        EXPECT_EQ(*parsed, id) << row.text;
    }
}

TEST(JobId, RoundTripsGeneratedIdsAndAcceptsUppercase) {
    JobIdGenerator gen(7);
    for (int i = 0; i < 10000; ++i) {
        JobId id = gen.next(t0 + int64_t{i} * 997'003);
        std::string text = id.to_string();
        ASSERT_EQ(text.size(), job_id_text_size);
        EXPECT_EQ(JobId::parse(text), id) << text;
        std::string upper = text;
        std::transform(upper.begin(), upper.end(), upper.begin(),
                       [](char c) { return static_cast<char>(std::toupper(c)); });
        EXPECT_EQ(JobId::parse(upper), id) << upper;
    }
}

TEST(JobId, LaysOutTimeShardAndCounterBigEndian) {
    JobIdGenerator gen(0xab, {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09});
    JobId id = gen.next(0x0123456789ab * ms + 999'999);
    const std::array<uint8_t, 16> want = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xab, 0x01,
                                          0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09};
    EXPECT_EQ(id.bytes, want);
    EXPECT_EQ(id.unix_ms(), 0x0123456789ab);
    EXPECT_EQ(id.shard(), 0xab);
    EXPECT_EQ(gen.next(0x0123456789ab * ms).bytes[15], 0x0a);
}

TEST(JobId, CounterCarriesAndWrapsAt72Bits) {
    JobIdGenerator gen(1, {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff});
    gen.next(t0);
    JobId carried = gen.next(t0);
    EXPECT_EQ(carried.bytes[7], 0x01);
    EXPECT_EQ(carried.bytes[15], 0x00);

    JobIdGenerator top(1, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff});
    top.next(t0);
    JobId wrapped = top.next(t0);
    for (size_t i = 7; i < 16; ++i) {
        EXPECT_EQ(wrapped.bytes[i], 0) << i;
    }
}

TEST(JobId, SortsByTimeAsBytesAndAsText) {
    JobIdGenerator gen(3);
    JobId prev = gen.next(t0);
    for (int64_t step : {int64_t{1}, int64_t{1000}, int64_t{86'400'000}, int64_t{0}}) {
        JobId next = gen.next(t0 + step * ms + 5 * ms);
        EXPECT_LT(prev, next);
        EXPECT_LT(prev.to_string(), next.to_string());
        prev = next;
    }
    // Ids of a later millisecond sort after those of an earlier one, whatever the shard or the
    // counter.
    JobIdGenerator other(0, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff});
    JobIdGenerator late(255, {});
    JobId a = other.next(t0);
    JobId b = late.next(t0 + ms);
    EXPECT_LT(a, b);
    EXPECT_LT(a.to_string(), b.to_string());
}

TEST(JobId, NeverGoesBackwardsWhenTheClockDoes) {
    JobIdGenerator gen(2);
    JobId first = gen.next(t0);
    JobId stepped_back = gen.next(t0 - 3600'000 * ms);
    EXPECT_LT(first, stepped_back);
    EXPECT_EQ(stepped_back.unix_ms(), first.unix_ms());
    EXPECT_EQ(gen.next(-5).unix_ms(), first.unix_ms());
}

TEST(JobId, MillionIdsFromOneGeneratorAreUnique) {
    JobIdGenerator gen(0);
    std::vector<JobId> ids;
    ids.reserve(1'000'000);
    for (int i = 0; i < 1'000'000; ++i) {
        ids.push_back(gen.next(t0 + (i / 1000) * ms)); // a thousand per millisecond
    }
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
}

TEST(JobId, IdsAreUniqueAcrossShardsEvenWithEqualCounters) {
    // The worst case for uniqueness: same time, same counter start; only the shard differs.
    const std::array<uint8_t, 9> seed{};
    std::vector<JobId> ids;
    for (uint8_t shard = 0; shard < 16; ++shard) {
        JobIdGenerator gen(shard, seed);
        for (int i = 0; i < 20000; ++i) {
            ids.push_back(gen.next(t0));
        }
    }
    // And generators seeded at random (two restarts of one shard within one millisecond).
    JobIdGenerator again_a(0);
    JobIdGenerator again_b(0);
    for (int i = 0; i < 20000; ++i) {
        ids.push_back(again_a.next(t0 + ms));
        ids.push_back(again_b.next(t0 + ms));
    }
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
}

TEST(JobId, RejectsBadText) {
    const std::string bad[] = {
        "",
        "0000000000000000000000000",   // 25
        "000000000000000000000000000", // 27
        "80000000000000000000000000",  // 129 bits
        "z0000000000000000000000000",
        "0000000000000000000000000i", // Crockford aliases are not accepted
        "0000000000000000000000000l",
        "0000000000000000000000000o",
        "0000000000000000000000000u",
        "0000000000000000000000000-",
        "000000000000000000000000 0",
        std::string("0000000000000000000000000\0", 26),
        "0000000000000000000000000\xc3",
        "01JD3V8X7E0K4S9Q2M6B5N1C8H ",
    };
    for (const std::string& text : bad) {
        EXPECT_FALSE(JobId::parse(text)) << text;
    }
}
