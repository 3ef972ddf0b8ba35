#include "portcullis/http/parser.hh"

#include <benchmark/benchmark.h>

#include <array>
#include <string>

using namespace portcullis::http;

namespace {

// What GitHub sends for a push event (delivery id, hook ids and signatures are made up).
const std::string github_head = "POST /webhooks/github HTTP/1.1\r\n"
                                "Host: hooks.example.com\r\n"
                                "User-Agent: GitHub-Hookshot/8e03811\r\n"
                                "Content-Length: 7421\r\n"
                                "Accept: */*\r\n"
                                "Content-Type: application/json\r\n"
                                "X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958\r\n"
                                "X-GitHub-Event: push\r\n"
                                "X-GitHub-Hook-ID: 292430182\r\n"
                                "X-GitHub-Hook-Installation-Target-ID: 79929171\r\n"
                                "X-GitHub-Hook-Installation-Target-Type: repository\r\n"
                                "X-Hub-Signature: sha1=7d38cdd689735b008b3c702edd92eea23791c5f6\r\n"
                                "X-Hub-Signature-256: "
                                "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230"
                                "aa23c\r\n"
                                "Accept-Encoding: gzip\r\n"
                                "Connection: close\r\n"
                                "\r\n";

void BM_ParseGithubWebhookHead(benchmark::State& state) {
    std::array<Header, 64> storage;
    RequestHead head;
    const Limits limits;
    for (auto _ : state) {
        const HeadResult r = parse_head(github_head, 0, limits, storage, head);
        benchmark::DoNotOptimize(r);
        benchmark::DoNotOptimize(head);
        if (r.consumed != github_head.size()) {
            state.SkipWithError("head not parsed");
            break;
        }
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                            static_cast<int64_t>(github_head.size()));
}
BENCHMARK(BM_ParseGithubWebhookHead);

// The same head on each scan path (argument: ScanPath value). Unavailable paths are skipped.
void BM_ParseGithubWebhookHeadOnPath(benchmark::State& state) {
    const auto path = static_cast<ScanPath>(state.range(0));
    const ScanPath previous = scan_path();
    if (!use_scan_path(path)) {
        state.SkipWithError("scan path not available here");
        return;
    }
    constexpr const char* names[] = {"scalar", "sse2", "avx2", "avx512"};
    state.SetLabel(names[static_cast<int>(path)]);
    std::array<Header, 64> storage;
    RequestHead head;
    const Limits limits;
    for (auto _ : state) {
        const HeadResult r = parse_head(github_head, 0, limits, storage, head);
        benchmark::DoNotOptimize(r);
        benchmark::DoNotOptimize(head);
    }
    use_scan_path(previous);
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                            static_cast<int64_t>(github_head.size()));
}
BENCHMARK(BM_ParseGithubWebhookHeadOnPath)->DenseRange(0, 3);

// As the server usually sees it: the start of the body in the same buffer as the head. The
// parser must not spend much on bytes after the head.
void BM_ParseGithubWebhookHeadBeforeBody(benchmark::State& state) {
    const std::string buffer = github_head + std::string(4096, 'j');
    std::array<Header, 64> storage;
    RequestHead head;
    const Limits limits;
    for (auto _ : state) {
        const HeadResult r = parse_head(buffer, 0, limits, storage, head);
        benchmark::DoNotOptimize(r);
        benchmark::DoNotOptimize(head);
        if (r.consumed != github_head.size()) {
            state.SkipWithError("head not parsed");
            break;
        }
    }
}
BENCHMARK(BM_ParseGithubWebhookHeadBeforeBody);

// A 25 KiB body in 1 KiB chunks.
std::string chunked_body() {
    std::string body;
    for (int i = 0; i < 25; ++i) {
        body += "400\r\n";
        body.append(1024, static_cast<char>('a' + i));
        body += "\r\n";
    }
    return body + "0\r\n\r\n";
}

void BM_ChunkedDecode(benchmark::State& state) {
    const std::string encoded = chunked_body();
    ChunkedDecoder dec;
    for (auto _ : state) {
        dec.reset();
        std::string_view rest = encoded;
        size_t decoded = 0;
        for (;;) {
            const ChunkedDecoder::Step s = dec.feed(rest);
            decoded += s.data.size();
            rest.remove_prefix(s.consumed);
            if (s.done || s.error != Error::none || s.consumed == 0) {
                break;
            }
        }
        benchmark::DoNotOptimize(decoded);
        if (decoded != 25 * 1024) {
            state.SkipWithError("body not decoded");
            break;
        }
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                            static_cast<int64_t>(encoded.size()));
}
BENCHMARK(BM_ChunkedDecode);

} // namespace
