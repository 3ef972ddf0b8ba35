// A counter with one writing thread and any number of readers (a shard's own statistics, read by
// /metrics): the writer adds with a relaxed load and store, which is cheaper than a locked add
// and exact as long as no other thread writes it.
//
//   base::add_single_writer(stats.requests);       // the owner's thread only
//   stats.requests.load(std::memory_order_relaxed); // any thread
#pragma once

#include <atomic>
#include <cstdint>

namespace portcullis::base {

inline void add_single_writer(std::atomic<uint64_t>& counter, uint64_t n = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

} // namespace portcullis::base
