// The thread counts of the contended micro benchmarks (several shards on one shared table):
// always 2, the figures README.md quotes, and as many threads as this process has CPUs when that
// is more, so that a bigger machine measures its own worst case (every shard on one key).
// bench/tables runs them at a count of its choosing through PORTCULLIS_BENCH_THREADS (at least 2),
// which is read here, when the benchmarks are registered (before main), so it must be in the
// environment.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <sched.h>
#include <thread>

namespace portcullis::bench {

inline int contended_thread_count() {
    if (const char* env = std::getenv("PORTCULLIS_BENCH_THREADS")) {
        int n = std::atoi(env);
        if (n >= 2) {
            return n;
        }
    }
    // The CPUs this process may use (what nproc says), not every CPU of the machine: under a
    // CPU set or taskset more threads than that would measure the scheduler, not the table.
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
        return std::max(2, CPU_COUNT(&allowed));
    }
    return std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
}

// For ->Apply(): 2 threads, and contended_thread_count() when it is not 2.
inline void contended_threads(benchmark::internal::Benchmark* b) {
    b->Threads(2);
    if (int n = contended_thread_count(); n != 2) {
        b->Threads(n);
    }
}

} // namespace portcullis::bench
