// Fixed-bucket latency histograms for /metrics: each owner (a shard, the control plane) keeps
// its own bucket counters, written with relaxed atomics by its thread only; a reader sums the
// owners' counters into a HistogramTotal. Recording costs a few compares and two relaxed adds:
// no lock, no allocation, no syscall, so it may run on the request path.
//
//   base::Histogram h;                          // one per owner (per shard, per route)
//   h.record(now_mono_ns - started_mono_ns);    // the owner's thread
//   base::HistogramTotal t;  t.add(h);          // any thread: a racy but monotonic sum
#pragma once

#include "portcullis/base/single_writer.hh"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace portcullis::base {

// The buckets' upper bounds, in nanoseconds: from 100 µs (a request answered from memory) to
// 10 s (a slow sink). Fixed for every histogram so that dashboards can compare them.
inline constexpr std::array<int64_t, 16> histogram_bounds_ns = {
    100'000,       250'000,       500'000,       1'000'000,      2'500'000,   5'000'000,
    10'000'000,    25'000'000,    50'000'000,    100'000'000,    250'000'000, 500'000'000,
    1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000,
};
inline constexpr size_t histogram_buckets = histogram_bounds_ns.size() + 1; // the last: +Inf

class Histogram {
public:
    // The owner's thread only. A negative duration (a clock read before the start) counts as 0.
    void record(int64_t ns) {
        if (ns < 0) {
            ns = 0;
        }
        size_t i = 0;
        while (i < histogram_bounds_ns.size() && ns > histogram_bounds_ns[i]) {
            ++i;
        }
        add_single_writer(_counts[i]);
        add_single_writer(_sum_ns, static_cast<uint64_t>(ns));
    }

    uint64_t count(size_t bucket) const { return _counts[bucket].load(std::memory_order_relaxed); }
    uint64_t sum_ns() const { return _sum_ns.load(std::memory_order_relaxed); }

private:
    std::array<std::atomic<uint64_t>, histogram_buckets> _counts{};
    std::atomic<uint64_t> _sum_ns{0};
};

// The sum of several owners' histograms (per bucket, not cumulative).
struct HistogramTotal {
    std::array<uint64_t, histogram_buckets> counts{};
    uint64_t sum_ns = 0;

    void add(const Histogram& h) {
        for (size_t i = 0; i < histogram_buckets; ++i) {
            counts[i] += h.count(i);
        }
        sum_ns += h.sum_ns();
    }
    uint64_t count() const {
        uint64_t n = 0;
        for (uint64_t c : counts) {
            n += c;
        }
        return n;
    }
};

} // namespace portcullis::base
