// How far one shard's spool is committed: the segment its writer appends to and the end of the
// last group that completed (durable under durability fsync, written under batch and none). The
// shard's SpoolWriter publishes; the control plane's JobStore reads, so that it indexes only
// whole records that were answered for, never a group still being written or one that failed
// and was cut off again.
//
//   SpoolProgress progress;                  // one per shard, shared by the two threads
//   progress.publish(seq, end);              // writer thread, after each completed group
//   SpoolProgress::Mark m = progress.read(); // any thread: a consistent (seq, end) pair
//
// A sequence lock: the single writer never waits, a reader retries while a publish is under way.
#pragma once

#include <atomic>
#include <cstdint>

namespace portcullis::queue {

class SpoolProgress {
public:
    struct Mark {
        uint64_t seq = 0; // 0: the writer has not opened a segment yet
        uint64_t end = 0; // bytes of that segment that are committed
    };

    // Writer thread only.
    void publish(uint64_t seq, uint64_t end) {
        const uint64_t v = _version.load(std::memory_order_relaxed);
        _version.store(v + 1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_release);
        _seq.store(seq, std::memory_order_relaxed);
        _end.store(end, std::memory_order_relaxed);
        _version.store(v + 2, std::memory_order_release);
    }

    Mark read() const {
        while (true) {
            const uint64_t before = _version.load(std::memory_order_acquire);
            Mark m{_seq.load(std::memory_order_relaxed), _end.load(std::memory_order_relaxed)};
            std::atomic_thread_fence(std::memory_order_acquire);
            if ((before & 1) == 0 && _version.load(std::memory_order_relaxed) == before) {
                return m;
            }
        }
    }

private:
    std::atomic<uint64_t> _version{0};
    std::atomic<uint64_t> _seq{0};
    std::atomic<uint64_t> _end{0};
};

} // namespace portcullis::queue
