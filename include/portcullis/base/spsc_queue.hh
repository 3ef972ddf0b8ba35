// A bounded single-producer single-consumer queue of fixed-size slots, all allocated at
// construction: one thread pushes, one other thread pops, neither ever waits or locks. A push
// that finds the queue full fails at once and is counted (the producer's hot path must never
// wait for a slow consumer).
//
//   SpscQueue<Event> q(4096);            // start-up: the slots (a power of two)
//   if (!q.try_push(e)) { ... }          // producer thread; dropped() counts the failures
//   Event e; while (q.try_pop(e)) { ... } // consumer thread
#pragma once

#include "portcullis/base/single_writer.hh"

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace portcullis::base {

template <typename T>
class SpscQueue {
public:
    // capacity is rounded up to a power of two (at least 2).
    explicit SpscQueue(size_t capacity)
        : _mask(std::bit_ceil(capacity < 2 ? size_t{2} : capacity) - 1),
          _slots(std::make_unique<T[]>(_mask + 1)) {}
    SpscQueue(const SpscQueue&) = delete;
    SpscQueue& operator=(const SpscQueue&) = delete;

    // Producer thread only. False (and counted) when the queue is full.
    bool try_push(const T& item) {
        const uint64_t tail = _tail.load(std::memory_order_relaxed);
        if (tail - _head_cache > _mask) {
            _head_cache = _head.load(std::memory_order_acquire);
            if (tail - _head_cache > _mask) {
                add_single_writer(_dropped); // the producer's counter
                return false;
            }
        }
        _slots[tail & _mask] = item;
        _tail.store(tail + 1, std::memory_order_release);
        return true;
    }

    // Consumer thread only. False when empty.
    bool try_pop(T& out) {
        const uint64_t head = _head.load(std::memory_order_relaxed);
        if (head == _tail_cache) {
            _tail_cache = _tail.load(std::memory_order_acquire);
            if (head == _tail_cache) {
                return false;
            }
        }
        out = _slots[head & _mask];
        _head.store(head + 1, std::memory_order_release);
        return true;
    }

    // Consumer thread only: whether a try_pop would find nothing now.
    bool empty() const {
        return _head.load(std::memory_order_relaxed) == _tail.load(std::memory_order_acquire);
    }

    size_t capacity() const { return _mask + 1; }
    // Pushes refused because the queue was full (any thread may read it).
    uint64_t dropped() const { return _dropped.load(std::memory_order_relaxed); }

private:
    const size_t _mask;
    std::unique_ptr<T[]> _slots;
    // Each side's index and its cached copy of the other's on its own cache line, so that the
    // two threads do not share a line they write.
    alignas(64) std::atomic<uint64_t> _tail{0};
    uint64_t _head_cache = 0;
    std::atomic<uint64_t> _dropped{0};
    alignas(64) std::atomic<uint64_t> _head{0};
    uint64_t _tail_cache = 0;
};

} // namespace portcullis::base
