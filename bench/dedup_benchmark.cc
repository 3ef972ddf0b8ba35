// What the dedup and ordering tables cost on the request path, in a table of 1 << 20 entries
// (64 MiB of slots, so most lookups miss the cache, as they would in a busy appliance):
// - BM_DedupClaimCommit: a fresh key claimed and committed (every request with a new key). The
//   clock moves on by one dedup window every pass over the keys, so the previous pass's entries
//   have expired and the table stays half full of live entries instead of evicting;
// - BM_DedupDuplicate: a remembered key claimed again (the 200 "duplicate" answer);
// - the same two with several threads on one table (shards; 2 and one per CPU, see
//   contended_threads.hh): fresh keys are each thread's own, remembered keys are shared, every
//   thread reading the same slots;
// - BM_DedupDuplicateOneKey: one remembered key claimed by every thread (the contended key);
// - BM_OrderingStaleCheck and BM_OrderingAdvance: a known ordering key checked, then raised.
// The counter bytes_per_key is the table's memory per entry it can remember (the target: 64).
#include "contended_threads.hh"
#include "portcullis/queue/dedup.hh"

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::queue;

namespace {

constexpr size_t table_entries = size_t{1} << 20;
// Half the table: a pass of fresh keys leaves room, so claims do not evict.
constexpr size_t key_count = table_entries / 2;
constexpr int64_t t0 = int64_t{1'795'000'000} * 1'000'000'000;
constexpr int64_t window_ns = int64_t{3600} * 1'000'000'000;

const std::vector<Fingerprint>& bench_keys() {
    static const std::vector<Fingerprint> keys = [] {
        std::vector<Fingerprint> k;
        k.reserve(key_count);
        for (size_t i = 0; i < key_count; ++i) {
            std::string text = "delivery-" + std::to_string(i);
            k.push_back(fingerprint({reinterpret_cast<const uint8_t*>(text.data()), text.size()},
                                    route_seed("bench")));
        }
        return k;
    }();
    return keys;
}

const Fingerprint body_fp{0x0123456789abcdef, 0xfedcba9876543210};

JobId job_of(size_t n) {
    JobId id;
    id.bytes[0] = 1;
    id.bytes[15] = static_cast<uint8_t>(n);
    return id;
}

void set_bytes_per_key(benchmark::State& state, const FingerprintTable& t) {
    state.counters["bytes_per_key"] = benchmark::Counter(static_cast<double>(t.memory_bytes()) /
                                                             static_cast<double>(t.capacity()),
                                                         benchmark::Counter::kAvgThreads);
}

// Each thread takes its own share of the keys; a pass over them starts a new dedup window.
void BM_DedupClaimCommit(benchmark::State& state) {
    static DedupTable table(table_entries);
    static std::atomic<int64_t> next_window{0};
    const std::vector<Fingerprint>& keys = bench_keys();
    const size_t share = key_count / static_cast<size_t>(state.threads());
    const size_t first = share * static_cast<size_t>(state.thread_index());
    size_t i = share; // start with a new window
    int64_t now = 0;
    int64_t not_claimed = 0;
    for (auto _ : state) {
        if (i == share) {
            i = 0;
            now = t0 + next_window.fetch_add(1) * window_ns;
        }
        DedupTable::Claim c =
            table.claim(keys[first + i], body_fp, job_of(i), now + window_ns, now);
        if (c.outcome == DedupTable::Outcome::claimed) {
            table.commit(c.ticket);
        } else {
            ++not_claimed;
        }
        ++i;
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["not_claimed"] = static_cast<double>(not_claimed);
    set_bytes_per_key(state, table.table());
}
BENCHMARK(BM_DedupClaimCommit);
BENCHMARK(BM_DedupClaimCommit)->Apply(bench::contended_threads);

// Every thread claims the same remembered keys, in the same order from evenly spaced starts.
void BM_DedupDuplicate(benchmark::State& state) {
    static DedupTable table(table_entries);
    static const bool filled = [] {
        const std::vector<Fingerprint>& keys = bench_keys();
        for (size_t i = 0; i < key_count; ++i) {
            table.remember(keys[i], body_fp, job_of(i), t0 + window_ns, t0);
        }
        return true;
    }();
    benchmark::DoNotOptimize(filled);
    const std::vector<Fingerprint>& keys = bench_keys();
    size_t i = key_count / static_cast<size_t>(state.threads()) *
               static_cast<size_t>(state.thread_index());
    int64_t not_duplicate = 0;
    for (auto _ : state) {
        DedupTable::Claim c = table.claim(keys[i], body_fp, job_of(0), t0 + window_ns, t0 + 1);
        benchmark::DoNotOptimize(c.first);
        if (c.outcome != DedupTable::Outcome::duplicate) {
            // Evicted while remembering (a bucket got more than eight keys): leave no claim.
            ++not_duplicate;
            if (c.outcome == DedupTable::Outcome::claimed) {
                table.abandon(c.ticket);
            }
        }
        i = i + 1 == key_count ? 0 : i + 1;
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["not_duplicate"] = static_cast<double>(not_duplicate);
    set_bytes_per_key(state, table.table());
}
BENCHMARK(BM_DedupDuplicate);
BENCHMARK(BM_DedupDuplicate)->Apply(bench::contended_threads);

// Every thread claims one remembered key over and over: a provider retrying one delivery at
// every shard at once, the contended key of the dedup table (bench/tables compares it with
// BM_SharedLineFloor). A duplicate is found by reads only, so the threads share the bucket's
// lines instead of taking them from each other.
void BM_DedupDuplicateOneKey(benchmark::State& state) {
    static DedupTable table(table_entries);
    const Fingerprint& key = bench_keys()[0];
    static const bool filled = [&key] {
        table.remember(key, body_fp, job_of(0), t0 + window_ns, t0);
        return true;
    }();
    benchmark::DoNotOptimize(filled);
    int64_t not_duplicate = 0;
    for (auto _ : state) {
        DedupTable::Claim c = table.claim(key, body_fp, job_of(1), t0 + window_ns, t0 + 1);
        benchmark::DoNotOptimize(c.first);
        not_duplicate += c.outcome == DedupTable::Outcome::duplicate ? 0 : 1;
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["not_duplicate"] = static_cast<double>(not_duplicate);
}
BENCHMARK(BM_DedupDuplicateOneKey);
BENCHMARK(BM_DedupDuplicateOneKey)->Apply(bench::contended_threads)->UseRealTime();

OrderingTable& ordering_table() {
    static OrderingTable table(table_entries);
    static const bool filled = [] {
        const std::vector<Fingerprint>& keys = bench_keys();
        for (size_t i = 0; i < key_count; ++i) {
            table.advance(keys[i], 1000, t0);
        }
        return true;
    }();
    benchmark::DoNotOptimize(filled);
    return table;
}

void BM_OrderingStaleCheck(benchmark::State& state) {
    OrderingTable& table = ordering_table();
    const std::vector<Fingerprint>& keys = bench_keys();
    size_t i = 0;
    int64_t stale = 0;
    for (auto _ : state) {
        // Alternately an older and a newer event than the one remembered.
        stale += table.stale(keys[i], (i & 1) != 0 ? 999 : 1'000'000, t0) ? 1 : 0;
        i = i + 1 == key_count ? 0 : i + 1;
    }
    benchmark::DoNotOptimize(stale);
    state.SetItemsProcessed(state.iterations());
    set_bytes_per_key(state, table.table());
}
BENCHMARK(BM_OrderingStaleCheck);

// Known keys raised to ever newer timestamps (the present path: no claim).
void BM_OrderingAdvance(benchmark::State& state) {
    OrderingTable& table = ordering_table();
    const std::vector<Fingerprint>& keys = bench_keys();
    static int64_t ts = 1000;
    size_t i = 0;
    int64_t failed = 0;
    for (auto _ : state) {
        failed += table.advance(keys[i], ++ts, t0) ? 0 : 1;
        i = i + 1 == key_count ? 0 : i + 1;
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["failed"] = static_cast<double>(failed);
    set_bytes_per_key(state, table.table());
}
BENCHMARK(BM_OrderingAdvance);

} // namespace
