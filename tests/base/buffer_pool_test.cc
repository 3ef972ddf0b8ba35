#include "portcullis/base/buffer_pool.hh"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

using portcullis::base::Buffer;
using portcullis::base::BufferPool;

TEST(BufferPool, RoundsUpToPowerOfTwoClasses) {
    BufferPool pool;
    struct Row {
        size_t want, capacity;
    };
    const Row rows[] = {{0, 4096}, {1, 4096}, {4096, 4096}, {4097, 8192}, {70000, 131072}};
    for (const Row& r : rows) {
        Buffer* b = pool.acquire(r.want);
        ASSERT_NE(b, nullptr);
        EXPECT_EQ(b->capacity, r.capacity) << r.want;
        EXPECT_EQ(b->size, 0u);
        pool.release(b);
    }
}

TEST(BufferPool, ReusesReleasedBuffers) {
    BufferPool pool;
    Buffer* a = pool.acquire(5000);
    pool.release(a);
    EXPECT_EQ(pool.cached_bytes(), 8192u);
    Buffer* b = pool.acquire(6000);
    EXPECT_EQ(a, b) << "a released buffer of the same class is handed out again";
    EXPECT_EQ(pool.cached_bytes(), 0u);
    pool.release(b);
}

TEST(BufferPool, GrowKeepsTheBytes) {
    BufferPool pool;
    Buffer* b = pool.acquire(10);
    std::string text(3000, 'x');
    b->append(text.data(), text.size());
    b = pool.grow(b, 100000);
    ASSERT_NE(b, nullptr);
    EXPECT_GE(b->capacity, 100000u);
    EXPECT_EQ(b->view(), text);
    pool.release(b);
}

TEST(BufferPool, RefusesMoreThanTheLargestClass) {
    BufferPool pool;
    EXPECT_EQ(pool.acquire(size_t(1) << 40), nullptr);
}

TEST(BufferPool, CapsWhatItCaches) {
    BufferPool pool;
    std::vector<Buffer*> held;
    size_t n = BufferPool::max_cached_bytes_per_class / (1 << 20) + 4;
    for (size_t i = 0; i < n; ++i) {
        held.push_back(pool.acquire(1 << 20));
    }
    for (Buffer* b : held) {
        pool.release(b);
    }
    EXPECT_LE(pool.cached_bytes(), BufferPool::max_cached_bytes_per_class);
}
