// Size-classed byte buffers recycled within one shard: record buffers (head + body of a job) and
// connection staging buffers. After warm-up the request path takes and returns buffers without
// touching the allocator. Not thread-safe: one pool per shard.
//
//   BufferPool pool;
//   Buffer* b = pool.acquire(4096);   // capacity >= 4096, size 0
//   b = pool.grow(b, 70000);          // keeps the bytes
//   pool.release(b);
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace portcullis::base {

struct Buffer {
    Buffer* next = nullptr; // free-list link
    uint32_t size_class = 0;
    size_t capacity = 0;
    size_t size = 0;

    uint8_t* data() { return reinterpret_cast<uint8_t*>(this + 1); }
    const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(this + 1); }
    std::span<uint8_t> bytes() { return {data(), size}; }
    std::string_view view() const { return {reinterpret_cast<const char*>(data()), size}; }
    size_t room() const { return capacity - size; }
    // Precondition: n <= room().
    void append(const void* p, size_t n);
};

class BufferPool {
public:
    static constexpr size_t min_class_bytes = 4096;
    static constexpr unsigned class_count = 20; // 4 KiB .. 2 GiB

    BufferPool() = default;
    BufferPool(const BufferPool&) = delete;
    BufferPool& operator=(const BufferPool&) = delete;
    ~BufferPool();

    // A buffer with capacity >= min_capacity and size 0, or nullptr if that is over the largest
    // class or memory is exhausted.
    Buffer* acquire(size_t min_capacity);
    // A buffer holding b's bytes with capacity >= min_capacity; b is released. nullptr on
    // failure, in which case b is still valid and owned by the caller.
    Buffer* grow(Buffer* b, size_t min_capacity);
    void release(Buffer* b);

    // Bytes currently held in free lists (for /healthz and metrics).
    size_t cached_bytes() const { return _cached_bytes; }

    // Free lists keep at most this many bytes per class; more is returned to the allocator so
    // that one burst of large bodies does not pin memory for ever.
    static constexpr size_t max_cached_bytes_per_class = 64 * 1024 * 1024;

private:
    Buffer* _free[class_count] = {};
    size_t _free_bytes[class_count] = {};
    size_t _cached_bytes = 0;
};

} // namespace portcullis::base
