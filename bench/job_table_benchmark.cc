// What the control plane's bookkeeping costs per job, without sockets or disks: the pull API's
// hot loop on one thread. BM_LeaseAck100 leases 100 jobs from a deep queue of one route and acks
// them, then encodes the 200 ledger records the way the server does before writing them.
// BM_JobLifecycle100 is the steady state of a live appliance: each iteration also adds the 100
// jobs it will lease and drops segments once all their jobs are settled (retention), so the
// table neither drains nor grows. Counters: jobs per second, and bytes of table per job.
// BM_AddWhileGrowing adds jobs to a table that keeps growing (a backlog building up, or ingest
// after a deep start-up) and reports the slowest add, which is what a lease or an ack waits
// behind while the table grows: /0/N from empty, /M/N from a table reserved for M and filled
// (a start-up). N is 2 million unless PORTCULLIS_BENCH_GROW_TO says otherwise (12000000 for the
// figures in the README: a GB of memory).
#include "portcullis/queue/job_table.hh"
#include "portcullis/queue/ledger.hh"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

using namespace portcullis::queue;

namespace {

constexpr int64_t t0 = 1'700'000'000 * ns_per_s;
constexpr int64_t visibility = 30 * ns_per_s;
constexpr size_t batch = 100;
constexpr uint32_t jobs_per_segment = 10'000;

JobId id_of(uint64_t n) {
    JobId id;
    id.bytes[0] = 0x01;
    for (int i = 0; i < 8; ++i) {
        id.bytes[15 - i] = static_cast<uint8_t>(n >> (8 * i));
    }
    return id;
}

void add_job(JobTable& table, uint64_t n) {
    JobLocation where{0, n / jobs_per_segment, (n % jobs_per_segment) * 1024, 1000};
    table.add(id_of(n), 0, where);
}

// The server's side of one batch: settle what was leased, encode the pending ops into the
// write buffer, and (the write being done) confirm them.
void ack_and_encode(JobTable& table, const std::vector<JobInfo>& leased, int64_t now,
                    std::vector<uint8_t>& buf) {
    for (const JobInfo& job : leased) {
        table.ack(job.id, now);
    }
    const std::vector<LedgerOp>& ops = table.pending_ops();
    buf.resize(ops.size() * ledger_record_size);
    for (size_t i = 0; i < ops.size(); ++i) {
        encode_ledger_op(ops[i], std::span<uint8_t, ledger_record_size>(
                                     buf.data() + i * ledger_record_size, ledger_record_size));
    }
    benchmark::DoNotOptimize(buf.data());
    const size_t group = ops.size();
    table.ops_taken();
    table.ops_durable(group);
}

void BM_LeaseAck100(benchmark::State& state) {
    const auto prefill = static_cast<uint64_t>(state.range(0));
    auto fill = [&] {
        auto table = std::make_unique<JobTable>(std::vector<uint32_t>{10});
        for (uint64_t n = 0; n < prefill; ++n) {
            add_job(*table, n);
        }
        return table;
    };
    auto table = fill();
    double bytes_per_job =
        static_cast<double>(table->memory_bytes()) / static_cast<double>(table->size());
    std::vector<JobInfo> leased;
    std::vector<uint8_t> buf;
    int64_t now = t0;
    for (auto _ : state) {
        leased.clear();
        if (table->lease(0, batch, visibility, now, leased) < batch) {
            // Drained: start again from a full table, off the clock.
            state.PauseTiming();
            table = fill();
            leased.clear();
            table->lease(0, batch, visibility, now, leased);
            state.ResumeTiming();
        }
        ack_and_encode(*table, leased, now, buf);
        now += 1000;
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
    state.counters["bytes_per_job"] = bytes_per_job;
}
BENCHMARK(BM_LeaseAck100)->Arg(10'000)->Arg(1'000'000);

void BM_JobLifecycle100(benchmark::State& state) {
    const auto backlog = static_cast<uint64_t>(state.range(0));
    JobTable table({10});
    uint64_t next = 0;
    for (; next < backlog; ++next) {
        add_job(table, next);
    }
    std::vector<JobInfo> leased;
    std::vector<uint8_t> buf;
    int64_t now = t0;
    uint64_t oldest_segment = 0;
    size_t max_size = 0;
    size_t max_bytes = 0;
    for (auto _ : state) {
        for (size_t i = 0; i < batch; ++i) {
            add_job(table, next++);
        }
        leased.clear();
        table.lease(0, batch, visibility, now, leased);
        ack_and_encode(table, leased, now, buf);
        // Retention: a segment goes once all its jobs are settled.
        if (table.unsettled_in_segment(0, oldest_segment) == 0) {
            if (table.size() > max_size) {
                max_size = table.size();
                max_bytes = table.memory_bytes();
            }
            table.drop_segment(0, oldest_segment);
            ++oldest_segment;
        }
        now += 1000;
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
    if (max_size > 0) {
        state.counters["bytes_per_job"] =
            static_cast<double>(max_bytes) / static_cast<double>(max_size);
    }
}
BENCHMARK(BM_JobLifecycle100)->Arg(100'000);

void BM_AddWhileGrowing(benchmark::State& state) {
    const auto start = static_cast<uint64_t>(state.range(0));
    const auto total = static_cast<uint64_t>(state.range(1));
    double slowest_us = 0;
    for (auto _ : state) {
        state.PauseTiming();
        auto table = std::make_unique<JobTable>(std::vector<uint32_t>{10});
        table->reserve(start);
        for (uint64_t n = 0; n < start; ++n) {
            add_job(*table, n);
        }
        state.ResumeTiming();
        for (uint64_t n = start; n < total; ++n) {
            const auto before = std::chrono::steady_clock::now();
            add_job(*table, n);
            const std::chrono::duration<double, std::micro> took =
                std::chrono::steady_clock::now() - before;
            slowest_us = std::max(slowest_us, took.count());
        }
        state.PauseTiming();
        table.reset();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * (total - start)));
    state.counters["slowest_add_us"] = slowest_us;
}
BENCHMARK(BM_AddWhileGrowing)
    ->Apply([](benchmark::internal::Benchmark* b) {
        const char* to = std::getenv("PORTCULLIS_BENCH_GROW_TO");
        const int64_t total =
            to != nullptr ? std::max<int64_t>(std::strtoll(to, nullptr, 10), 2) : 2'000'000;
        b->Args({0, total})->Args({total * 5 / 6, total});
    })
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

} // namespace
