// What a rate-limit check costs on the request path:
// - BM_RateLimitCheck: one key checked over and over, by one thread and by several (shards
//   hammering the same client, the worst case for the shared table: every allowed check is a
//   compare-and-swap on one contended cache line). The limit is 1M/s and each thread's clock
//   moves 1 us per check, so one thread is always allowed and n threads about 1/n of the time
//   (counter allowed_ratio);
// - BM_RateLimitRefused: the same key over its limit with the clock standing still: a client
//   being refused costs reads only;
// - BM_RateLimitDistinctKeys: a different client every check, 1Mi keys in a table of 4Mi slots
//   (32 MiB, mostly missing the cache), each thread its own keys.
// - BM_SharedLineFloor: the threads adding to one word, the hardware's floor for the contended
//   check (compare the per-thread CPU time of the two at the same thread count; bench/tables).
// The contended variants run at 2 threads and at one per CPU (contended_threads.hh).
// The counter bytes_per_key is the table's memory per key it can hold.
#include "contended_threads.hh"
#include "portcullis/admit/rate_limit.hh"

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>

using namespace portcullis;
using namespace portcullis::admit;

namespace {

constexpr int64_t t0 = int64_t{1'795'000'000} * 1'000'000'000;
constexpr uint64_t hot_key = 0x0123456789abcdef;

void set_bytes_per_key(benchmark::State& state, const RateLimiter& t) {
    state.counters["bytes_per_key"] = benchmark::Counter(static_cast<double>(t.memory_bytes()) /
                                                             static_cast<double>(t.capacity()),
                                                         benchmark::Counter::kAvgThreads);
}

void BM_RateLimitCheck(benchmark::State& state) {
    static RateLimiter limiter(1 << 16);
    // Where the previous run's clocks ended: a run that started over at t0 would find the key
    // far ahead of it and be refused throughout. Read before the threads' common start.
    static std::atomic<int64_t> clock_end{t0};
    const Limit l = Limit::from({1'000'000, 1'000'000'000}, 1);
    int64_t now = clock_end.load() + 1'000'000'000;
    int64_t allowed = 0;
    for (auto _ : state) {
        allowed += limiter.check(hot_key, l, now).allowed ? 1 : 0;
        now += 1000;
    }
    for (int64_t end = clock_end.load(); end < now && !clock_end.compare_exchange_weak(end, now);) {
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["allowed_ratio"] =
        benchmark::Counter(static_cast<double>(allowed) / static_cast<double>(state.iterations()),
                           benchmark::Counter::kAvgThreads);
    set_bytes_per_key(state, limiter);
}
BENCHMARK(BM_RateLimitCheck);
BENCHMARK(BM_RateLimitCheck)->Apply(bench::contended_threads)->UseRealTime();

// The peer for the contended check: the least any update of one shared word can cost, a locked
// add by every thread on one cache line (each add pulls the line from another core).
void BM_SharedLineFloor(benchmark::State& state) {
    alignas(64) static std::atomic<uint64_t> word{0};
    for (auto _ : state) {
        benchmark::DoNotOptimize(word.fetch_add(1));
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SharedLineFloor)->Apply(bench::contended_threads)->UseRealTime();

void BM_RateLimitRefused(benchmark::State& state) {
    static RateLimiter limiter(1 << 16);
    const Limit l = Limit::from({20, 1'000'000'000}, 40);
    int64_t refused = 0;
    for (auto _ : state) {
        refused += limiter.check(hot_key, l, t0).allowed ? 0 : 1;
    }
    benchmark::DoNotOptimize(refused);
    state.SetItemsProcessed(state.iterations());
    set_bytes_per_key(state, limiter);
}
BENCHMARK(BM_RateLimitRefused);
BENCHMARK(BM_RateLimitRefused)->Apply(bench::contended_threads)->UseRealTime();

void BM_RateLimitDistinctKeys(benchmark::State& state) {
    constexpr uint64_t key_count = uint64_t{1} << 20;
    static RateLimiter limiter(4 * key_count);
    const Limit l = Limit::from({20, 1'000'000'000}, 40);
    const auto thread = static_cast<uint64_t>(state.thread_index());
    uint64_t i = 0;
    int64_t now = t0;
    for (auto _ : state) {
        // Keys spread like hashes: a multiplicative mix of the thread and the index.
        uint64_t key = ((thread << 32) | i) * 0x9e3779b97f4a7c15;
        benchmark::DoNotOptimize(limiter.check(key, l, now));
        if (++i == key_count) {
            i = 0;
            now += 1'000'000; // 1 ms on per pass
        }
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["evictions"] = static_cast<double>(limiter.evictions());
    set_bytes_per_key(state, limiter);
}
BENCHMARK(BM_RateLimitDistinctKeys);
BENCHMARK(BM_RateLimitDistinctKeys)->Threads(2)->UseRealTime();

} // namespace
