// Publishes/s of deliver::RedisSink against a redis-server of your choice: one loop like the
// control plane's, `max_in_flight` XADDs kept in flight on the sink's one connection for
// `seconds`, bodies of `body_bytes`, the headers of a small GitHub delivery. Prints the XADD
// command's size, so that the peer (redis-benchmark, see bench/redis_sink_peer) sends the same.
//
//   redis_sink_load HOST PORT [max_in_flight=256] [seconds=5] [body_bytes=1024]
//                   [stream=bench:{route}] [maxlen=1000000]
#include "portcullis/base/time.hh"
#include "portcullis/deliver/redis_sink.hh"
#include "portcullis/queue/job_json.hh"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace portcullis;

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr,
                     "usage: %s HOST PORT [max_in_flight] [seconds] [body_bytes] [stream]\n",
                     argv[0]);
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    config::RedisSinkConfig cfg;
    cfg.host = argv[1];
    cfg.port = static_cast<uint16_t>(std::atoi(argv[2]));
    cfg.max_in_flight = argc > 3 ? static_cast<uint32_t>(std::atoi(argv[3])) : 256;
    const int64_t seconds = argc > 4 ? std::atoi(argv[4]) : 5;
    const size_t body_bytes = argc > 5 ? static_cast<size_t>(std::atol(argv[5])) : 1024;
    cfg.stream = argc > 6 ? argv[6] : "bench:{route}";
    cfg.maxlen = argc > 7 ? std::strtoull(argv[7], nullptr, 10) : 1'000'000;
    const std::string body(body_bytes, 'x');
    const std::vector<http::Header> headers = {{"Content-Type", "application/json"},
                                               {"X-GitHub-Event", "push"}};
    queue::JobMeta meta;
    meta.route = "github";
    meta.received_at_ns = base::unix_ns();
    const std::vector<uint8_t> bytes = queue::make_job_record(meta, headers, body);
    queue::JobRecord record;
    size_t record_size = 0;
    if (queue::decode_record(bytes, record, record_size) != queue::DecodeStatus::ok) {
        std::fprintf(stderr, "cannot make the job record\n");
        return 1;
    }
    std::string headers_json;
    queue::append_headers_json(headers_json, record);

    io::Ring ring;
    if (auto err = ring.init(1024, 0); !err.empty()) {
        std::fprintf(stderr, "ring: %s\n", err.c_str());
        return 1;
    }
    deliver::RedisSink sink(ring, 0, "bench", cfg);
    if (auto err = sink.init(base::mono_ns()); !err.empty()) {
        std::fprintf(stderr, "%s\n", err.c_str());
        return 1;
    }
    deliver::RedisDelivery d;
    d.job_id = "01jd3v8x7e0k4s9q2m6b5n1c8h";
    d.route = record.route;
    d.received_at_unix_ns = record.received_at_ns;
    d.record = &record;
    d.body = {reinterpret_cast<const uint8_t*>(body.data()), body.size()};
    // What the peer must send to match: the arguments' sizes.
    std::printf("xadd: stream %zu bytes, id 26, route %zu, received_at 24, headers %zu, body %zu\n",
                cfg.stream.size() - 7 + d.route.size(), d.route.size(), headers_json.size(),
                body.size());
    uint64_t delivered = 0;
    uint64_t failed = 0;
    std::string error;
    int64_t now = base::mono_ns();
    // Wait for the connection, so that its set-up is not measured.
    while (!sink.connected() && base::mono_ns() - now < 5 * base::ns_per_s) {
        sink.tick(base::mono_ns());
        ring.submit_and_wait(sink.wait_limit_ns(base::mono_ns(), 10 * base::ns_per_ms));
        ring.for_each_cqe([&](const io_uring_cqe& c) {
            sink.on_cqe(c, base::mono_ns(), [](uint64_t, const deliver::RedisOutcome&) {});
        });
    }
    const int64_t begin = base::mono_ns();
    const int64_t end = begin + seconds * base::ns_per_s;
    now = begin;
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
            sink.on_cqe(c, now, [&](uint64_t, const deliver::RedisOutcome& o) {
                if (o.kind == deliver::RedisOutcome::Kind::delivered) {
                    ++delivered;
                } else if (failed++ < 5) {
                    std::fprintf(stderr, "failed: %.*s\n", int(o.error.size()), o.error.data());
                }
            });
        });
    }
    const double elapsed = double(base::mono_ns() - begin) / 1e9;
    const auto& s = sink.stats();
    std::printf("%.0f publishes/s (%llu acknowledged, %llu failed in %.2f s; %llu sends, %llu "
                "connects)\n",
                double(delivered) / elapsed, static_cast<unsigned long long>(delivered),
                static_cast<unsigned long long>(failed), elapsed,
                static_cast<unsigned long long>(s.sends),
                static_cast<unsigned long long>(s.connects));
    sink.stop();
    while (!sink.idle()) {
        ring.submit_and_wait(10 * base::ns_per_ms);
        ring.for_each_cqe([&](const io_uring_cqe& c) {
            sink.on_cqe(c, base::mono_ns(), [](uint64_t, const deliver::RedisOutcome&) {});
        });
    }
    return 0;
}
