// Deliveries per second of deliver::HttpSink against a server of your choice (nginx `return 200`
// for the figure in the README): one loop like the control plane's, `concurrency` deliveries kept
// in flight for `seconds`, bodies of `body_bytes`.
//
//   http_sink_load HOST PORT [concurrency=64] [seconds=5] [body_bytes=1024]
#include "portcullis/base/time.hh"
#include "portcullis/deliver/http_sink.hh"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace portcullis;

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s HOST PORT [concurrency] [seconds] [body_bytes]\n", argv[0]);
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    config::HttpSinkConfig cfg;
    cfg.host = argv[1];
    cfg.port = static_cast<uint16_t>(std::atoi(argv[2]));
    cfg.path_and_query = "/hook";
    cfg.concurrency = argc > 3 ? static_cast<uint32_t>(std::atoi(argv[3])) : 64;
    const int64_t seconds = argc > 4 ? std::atoi(argv[4]) : 5;
    const size_t body_bytes = argc > 5 ? static_cast<size_t>(std::atol(argv[5])) : 1024;
    const std::string body(body_bytes, 'x');
    const std::vector<http::Header> headers = {{"Content-Type", "application/json"},
                                               {"X-GitHub-Event", "push"}};
    io::Ring ring;
    // PORTCULLIS_RING_FLAGS=best: the shards' setup flags (single issuer, deferred task work);
    // otherwise none, as the control plane's ring is set up today.
    const char* flags = std::getenv("PORTCULLIS_RING_FLAGS");
    const unsigned setup =
        flags != nullptr && std::string(flags) == "best" ? io::probe_features().setup_flags() : 0;
    if (auto err = ring.init(1024, setup); !err.empty()) {
        std::fprintf(stderr, "ring: %s\n", err.c_str());
        return 1;
    }
    deliver::HttpSink sink(ring, 0, "bench", cfg);
    if (auto err = sink.init(base::mono_ns()); !err.empty()) {
        std::fprintf(stderr, "%s\n", err.c_str());
        return 1;
    }
    deliver::HttpDelivery d;
    d.job_id = "01jd3v8x7e0k4s9q2m6b5n1c8h";
    d.route = "github";
    d.received_at_unix_ns = base::unix_ns();
    d.headers = headers;
    d.body = {reinterpret_cast<const uint8_t*>(body.data()), body.size()};
    uint64_t delivered = 0;
    uint64_t failed = 0;
    std::string error;
    const int64_t begin = base::mono_ns();
    const int64_t end = begin + seconds * base::ns_per_s;
    int64_t now = begin;
    while (now < end) {
        while (sink.has_room()) {
            if (!sink.start(d, 0, now, error)) {
                std::fprintf(stderr, "start: %s\n", error.c_str());
                return 1;
            }
        }
        sink.tick(now);
        ring.submit_and_wait(sink.wait_limit_ns(now, 10 * base::ns_per_ms));
        now = base::mono_ns();
        ring.for_each_cqe([&](const io_uring_cqe& c) {
            sink.on_cqe(c, now, [&](uint64_t, const deliver::HttpOutcome& o) {
                if (o.kind == deliver::HttpOutcome::Kind::delivered) {
                    ++delivered;
                } else if (failed++ < 5) {
                    std::fprintf(stderr, "failed: %.*s\n", int(o.error.size()), o.error.data());
                }
            });
        });
    }
    const double elapsed = double(base::mono_ns() - begin) / 1e9;
    const auto& s = sink.stats();
    std::printf("%.0f deliveries/s (%llu delivered, %llu failed in %.2f s; %llu connects, %llu "
                "reuses)\n",
                double(delivered) / elapsed, static_cast<unsigned long long>(delivered),
                static_cast<unsigned long long>(failed), elapsed,
                static_cast<unsigned long long>(s.connects),
                static_cast<unsigned long long>(s.reuses));
    sink.stop();
    while (!sink.idle()) {
        ring.submit_and_wait(10 * base::ns_per_ms);
        ring.for_each_cqe([&](const io_uring_cqe& c) {
            sink.on_cqe(c, base::mono_ns(), [](uint64_t, const deliver::HttpOutcome&) {});
        });
    }
    return 0;
}
