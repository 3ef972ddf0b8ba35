#include "portcullis/base/zeroed_pages.hh"

#include <gtest/gtest.h>

#include <cstdint>

namespace portcullis::base {
namespace {

struct Item {
    uint64_t a;
    uint32_t b;
    uint32_t c;
};

TEST(PageVector, NewElementsAreZeroAndGrowthKeepsWhatWasWritten) {
    PageVector<Item> v;
    EXPECT_TRUE(v.empty());
    // Past many pages and several moves of the mapping: every element keeps its value, and
    // each new one starts at zero.
    for (uint32_t i = 0; i < 300'000; ++i) {
        Item& it = v.emplace_back();
        ASSERT_EQ(it.a, 0u) << i;
        ASSERT_EQ(it.b, 0u) << i;
        it = Item{i * 3ULL, i, ~i};
    }
    ASSERT_EQ(v.size(), 300'000u);
    EXPECT_GE(v.capacity(), v.size());
    for (uint32_t i = 0; i < v.size(); ++i) {
        ASSERT_EQ(v[i].a, i * 3ULL);
        ASSERT_EQ(v[i].c, ~i);
    }
    // reserve() moves the pages too; a copy is its own.
    v.reserve(v.capacity() * 4);
    PageVector<Item> copy = v;
    copy[7].b = 99;
    EXPECT_EQ(v[7].b, 7u);
    EXPECT_EQ(copy[299'999].a, 299'999 * 3ULL);
    // A swap with a new one releases it.
    PageVector<Item>().swap(v);
    EXPECT_TRUE(v.empty());
    EXPECT_EQ(v.capacity(), 0u);
}

TEST(PageVector, SizedOnesStartZero) {
    const PageVector<Item> v(10'000);
    ASSERT_EQ(v.size(), 10'000u);
    uint64_t sum = 0;
    for (const Item& it : v) {
        sum += it.a + it.b + it.c;
    }
    EXPECT_EQ(sum, 0u);
}

} // namespace
} // namespace portcullis::base
