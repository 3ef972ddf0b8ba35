// One /metrics scrape of the shards' part (write_shard_metrics: requests by route and code,
// refusals by route and reason, bytes, a duration histogram per route, the process-wide
// counters) with 1,000 routes over 4 shards, every route having answered several codes and
// refused for a few reasons: the worst case of a busy appliance. Target (issue 16): under 10 ms.
//
//   build/bench/micro_benchmarks --benchmark_filter=Scrape
#include "portcullis/admin/metrics.hh"
#include "portcullis/config/config.hh"
#include "portcullis/io/shard.hh"

#include <benchmark/benchmark.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace portcullis;

std::unique_ptr<config::Snapshot> snapshot_with_routes(size_t routes) {
    std::string yaml = "routes:\n";
    for (size_t i = 0; i < routes; ++i) {
        yaml += "  route_" + std::to_string(i) + ": {path: /hooks/" + std::to_string(i) +
                ", verify: {scheme: none}}\n";
    }
    config::LoadResult loaded = config::load_text("bench.yaml", yaml);
    if (!loaded.ok()) {
        std::fprintf(stderr, "bench config: %s\n", loaded.errors[0].format().c_str());
        std::abort();
    }
    std::string error;
    auto snap = config::Snapshot::build(std::move(*loaded.config), error);
    if (!snap) {
        std::fprintf(stderr, "bench snapshot: %s\n", error.c_str());
        std::abort();
    }
    return snap;
}

// What one shard owns, as Ingest and the spool writer hold it.
struct FakeShard {
    io::ShardStats stats;
    ingest::Stats ingest;
    ingest::RouteStatsTable routes;
    ingest::RouteStats unmatched;
    queue::SpoolMetrics spool;
};

void BM_ScrapeShardMetrics(benchmark::State& state) {
    const auto routes = static_cast<size_t>(state.range(0));
    constexpr size_t shards = 4;
    auto snap = snapshot_with_routes(routes);
    std::vector<std::unique_ptr<FakeShard>> owned;
    std::vector<admin::ShardView> views;
    for (size_t s = 0; s < shards; ++s) {
        auto f = std::make_unique<FakeShard>();
        f->routes.reserve(routes);
        for (size_t r = 0; r <= routes; ++r) {
            ingest::RouteStats& rs = r < routes ? f->routes.at(r) : f->unmatched;
            for (uint16_t code : {200, 202, 401, 404, 429, 503}) {
                rs.answered[ingest::status_slot(code)].store(r + code);
            }
            rs.rejected[0].store(r + 1);
            rs.rejected[9].store(r + 2);
            for (int i = 0; i < 20; ++i) {
                rs.duration.record(int64_t{50'000} << (i % 16));
            }
        }
        views.push_back({&f->stats, &f->ingest, &f->routes, &f->unmatched, &f->spool});
        owned.push_back(std::move(f));
    }
    admin::SharedSources shared;
    size_t bytes = 0;
    for (auto _ : state) {
        std::string out;
        admin::Exposition e(out);
        admin::write_shard_metrics(e, *snap, views, shared);
        bytes = out.size();
        benchmark::DoNotOptimize(out.data());
    }
    state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_ScrapeShardMetrics)->Arg(10)->Arg(1000)->Unit(benchmark::kMillisecond);

} // namespace
