// What handing one job to a consumer costs in the pull API: append_job_json for a JSON body of
// 1 KiB and 25 KiB (UTF-8, so validated and escaped: every quote of the body becomes \") and
// for a 1 KiB binary body (base64). Bytes per second count the stored body.
#include "portcullis/queue/job_json.hh"

#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::queue;

namespace {

// A JSON document of about `size` bytes shaped like a webhook payload: keys, short strings,
// numbers, a URL, now and then a non-ASCII name.
std::string json_body(size_t size) {
    std::string s = "{\"items\":[";
    for (int i = 0; s.size() + 100 < size; ++i) {
        if (i != 0) {
            s += ',';
        }
        s += R"({"id":)" + std::to_string(100000 + i) +
             R"(,"name":"caf\u00e9 Jos)"
             "\xc3\xa9"
             R"(","url":"https://api.example.com/v1/items/)" +
             std::to_string(i) + R"(","ok":true})";
    }
    s += "]}";
    s.resize(size, ' ');
    return s;
}

std::string binary_body(size_t size) {
    std::mt19937 rng(7);
    std::string s(size, '\0');
    for (char& c : s) {
        c = static_cast<char>(rng());
    }
    s[0] = '\xff'; // certainly not UTF-8
    return s;
}

void run(benchmark::State& state, const std::string& body) {
    JobMeta meta;
    meta.id = *JobId::parse("01jd3v8x7e0k4s9q2m6b5n1c8h");
    meta.route = "github";
    meta.received_at_ns = 1795353480123456789;
    meta.peer = *base::PeerAddress::parse("203.0.113.5", 50000);
    const std::vector<http::Header> headers = {
        {"Content-Type", "application/json"},
        {"User-Agent", "GitHub-Hookshot/044aadd"},
        {"X-GitHub-Event", "push"},
        {"X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
        {"X-Hub-Signature-256",
         "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c"},
    };
    const std::vector<uint8_t> bytes = make_job_record(meta, headers, body);
    JobRecord rec;
    size_t size = 0;
    if (decode_record(bytes, rec, size) != DecodeStatus::ok) {
        state.SkipWithError("record does not decode");
        return;
    }
    std::string out;
    for (auto _ : state) {
        out.clear();
        append_job_json(out, rec, 1);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}

void BM_JobJsonUtf8_1KiB(benchmark::State& state) {
    run(state, json_body(1024));
}
void BM_JobJsonUtf8_25KiB(benchmark::State& state) {
    run(state, json_body(25 * 1024));
}
void BM_JobJsonBinary_1KiB(benchmark::State& state) {
    run(state, binary_body(1024));
}

} // namespace

BENCHMARK(BM_JobJsonUtf8_1KiB);
BENCHMARK(BM_JobJsonUtf8_25KiB);
BENCHMARK(BM_JobJsonBinary_1KiB);
