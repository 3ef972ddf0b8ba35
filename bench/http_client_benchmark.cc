#include "portcullis/http/client.hh"

#include <benchmark/benchmark.h>

#include <array>
#include <string>

using namespace portcullis::http;

namespace {

// What nginx in front of an application answers to a delivery: 6 header fields, a short body.
const std::string nginx_200 = "HTTP/1.1 200 OK\r\n"
                              "Server: nginx/1.24.0\r\n"
                              "Date: Tue, 02 Jun 2026 10:00:00 GMT\r\n"
                              "Content-Type: application/json\r\n"
                              "Content-Length: 16\r\n"
                              "Connection: keep-alive\r\n"
                              "X-Request-Id: 7f3c1f2e9a0b4c8d9e1f2a3b4c5d6e7f\r\n"
                              "\r\n"
                              "{\"status\":\"ok\"}\n";

// The whole response: head, body, done, as the sink drives it.
void BM_ParseResponse200(benchmark::State& state) {
    std::array<Header, 64> storage;
    ResponseParser p(storage, Limits{});
    for (auto _ : state) {
        p.reset();
        std::string_view in = nginx_200;
        ResponseParser::Step s;
        do {
            s = p.feed(in);
            in.remove_prefix(s.consumed);
        } while (s.event == ResponseEvent::head || s.event == ResponseEvent::data);
        benchmark::DoNotOptimize(p.head());
        if (s.event != ResponseEvent::done || p.head().headers.size() != 6 || !in.empty()) {
            state.SkipWithError("response not parsed");
            break;
        }
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                            static_cast<int64_t>(nginx_200.size()));
}
BENCHMARK(BM_ParseResponse200);

// The head of a 1 KiB job's delivery with 12 fields: the original request's (less hop-by-hop
// ones), the Portcullis-* fields and the Standard Webhooks signature.
void BM_WriteRequestHead(benchmark::State& state) {
    const std::array<Header, 12> fields = {{
        {"Content-Type", "application/json"},
        {"User-Agent", "GitHub-Hookshot/8e03811"},
        {"X-GitHub-Event", "push"},
        {"X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
        {"X-Hub-Signature-256",
         "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c"},
        {"Portcullis-Job-Id", "01J2Z3Y4X5W6V7T8S9R0Q1P2N3"},
        {"Portcullis-Attempt", "1"},
        {"Portcullis-Route", "github"},
        {"Portcullis-Received-At", "2026-06-02T10:00:00.123Z"},
        {"webhook-id", "01J2Z3Y4X5W6V7T8S9R0Q1P2N3"},
        {"webhook-timestamp", "1780394400"},
        {"webhook-signature", "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="},
    }};
    const OutgoingRequest r{.method = "POST",
                            .target = "/hooks/github",
                            .host = "app.internal",
                            .port = 8443,
                            .tls = true,
                            .headers = fields,
                            .content_length = 1024};
    std::array<char, 2048> out;
    size_t size = 0;
    for (auto _ : state) {
        size = write_request(out, r);
        benchmark::DoNotOptimize(size);
        benchmark::DoNotOptimize(out.data());
        if (size == 0) {
            state.SkipWithError("head not written");
            break;
        }
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(size));
}
BENCHMARK(BM_WriteRequestHead);

} // namespace
