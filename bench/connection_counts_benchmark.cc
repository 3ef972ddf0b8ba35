// What server.max_connections_per_ip costs per connection, in the table shared by the shards:
// - BM_ConnectionCountsAcquireRelease: one client's connection opened (acquire) and closed
//   (release) over and over, by one thread and by several (every shard accepting connections of
//   one client, the worst case for the shared table: once the key's home slot is verified, each
//   acquire is one atomic add on the key's cache line and each release one subtraction, so a
//   connection moves the line twice and the floor's add once). The cap is far above the thread
//   count, so every acquire is admitted unless it loses its compare-and-swap 64 times in a row
//   (counter refused_ratio, which should stay 0). Compare the per-thread CPU time with
//   BM_SharedLineFloor (rate_limit_benchmark.cc) at the same thread count: bench/tables does.
// The counter bytes_per_key is the table's memory per slot (one key per slot).
#include "contended_threads.hh"
#include "portcullis/admit/connection_counts.hh"

#include <benchmark/benchmark.h>

#include <cstdint>

using namespace portcullis;
using namespace portcullis::admit;

namespace {

constexpr uint64_t hot_key = 0x0123456789abcdef;

void BM_ConnectionCountsAcquireRelease(benchmark::State& state) {
    // The size the shipped configuration gives it (max_connections: 10000): 512 KiB.
    static ConnectionCounts counts(10'000);
    int64_t refused = 0;
    for (auto _ : state) {
        ConnectionCounts::Ticket t = counts.acquire(hot_key, 1024);
        refused += t.admitted ? 0 : 1;
        counts.release(t);
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["refused_ratio"] =
        benchmark::Counter(static_cast<double>(refused) / static_cast<double>(state.iterations()),
                           benchmark::Counter::kAvgThreads);
    state.counters["bytes_per_key"] = benchmark::Counter(
        static_cast<double>(counts.memory_bytes()) / static_cast<double>(counts.capacity()),
        benchmark::Counter::kAvgThreads);
}
BENCHMARK(BM_ConnectionCountsAcquireRelease);
BENCHMARK(BM_ConnectionCountsAcquireRelease)->Apply(bench::contended_threads)->UseRealTime();

} // namespace
