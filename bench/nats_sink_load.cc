// Publishes/s acknowledged by JetStream from deliver::NatsSink against a running nats-server
// whose stream holds bench.> (bench/nats/run starts one and the peer publisher): one loop like
// the control plane's, `max_in_flight` publishes kept in flight for `seconds`, bodies of
// `body_bytes`, each with a Nats-Msg-Id of its own (as distinct jobs have).
//
//   nats_sink_load PORT [max_in_flight=256] [seconds=5] [body_bytes=1024]
#include "portcullis/base/time.hh"
#include "portcullis/deliver/nats_sink.hh"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace portcullis;

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s PORT [max_in_flight] [seconds] [body_bytes]\n", argv[0]);
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    config::NatsSinkConfig cfg;
    cfg.host = "127.0.0.1";
    cfg.port = static_cast<uint16_t>(std::atoi(argv[1]));
    cfg.url = "nats://127.0.0.1:" + std::string(argv[1]);
    cfg.subject = "bench.{route}";
    cfg.max_in_flight = argc > 2 ? static_cast<uint32_t>(std::atoi(argv[2])) : 256;
    const int64_t seconds = argc > 3 ? std::atoi(argv[3]) : 5;
    const size_t body_bytes = argc > 4 ? static_cast<size_t>(std::atol(argv[4])) : 1024;
    const std::string body(body_bytes, 'x');
    const std::vector<http::Header> headers = {{"Content-Type", "application/json"},
                                               {"X-GitHub-Event", "push"}};
    io::Ring ring;
    if (auto err = ring.init(1024, 0); !err.empty()) {
        std::fprintf(stderr, "ring: %s\n", err.c_str());
        return 1;
    }
    deliver::NatsSink sink(ring, 0, "bench", cfg);
    if (auto err = sink.init(base::mono_ns()); !err.empty()) {
        std::fprintf(stderr, "%s\n", err.c_str());
        return 1;
    }
    std::string id = "01jd3v8x7e0k4s9q2m00000000";
    uint64_t serial = 0;
    auto next_id = [&] {
        uint64_t n = ++serial;
        for (size_t i = id.size(); i-- > 18 && n != 0; n /= 10) {
            id[i] = char('0' + n % 10);
        }
        return std::string_view(id);
    };
    deliver::NatsDelivery d;
    d.route = "github";
    d.received_at_unix_ns = base::unix_ns();
    d.headers = headers;
    d.body = {reinterpret_cast<const uint8_t*>(body.data()), body.size()};
    uint64_t delivered = 0;
    uint64_t failed = 0;
    std::string error;
    std::string last_error;
    // Connected first: the figure is publishing, not connecting.
    int64_t now = base::mono_ns();
    const int64_t connect_end = now + 5 * base::ns_per_s;
    auto turn = [&](int64_t wait) {
        sink.tick(now);
        ring.submit_and_wait(sink.wait_limit_ns(now, wait));
        now = base::mono_ns();
        ring.for_each_cqe([&](const io_uring_cqe& c) {
            sink.on_cqe(c, now, [&](uint64_t, const deliver::NatsOutcome& o) {
                if (o.kind == deliver::NatsOutcome::Kind::delivered) {
                    ++delivered;
                } else {
                    ++failed;
                    last_error = o.error;
                }
            });
        });
    };
    while (!sink.connected() && now < connect_end) {
        turn(10 * base::ns_per_ms);
    }
    if (!sink.connected()) {
        std::fprintf(stderr, "no connection: %s\n", sink.last_error().c_str());
        return 1;
    }
    const int64_t begin = now;
    const int64_t end = begin + seconds * base::ns_per_s;
    while (now < end) {
        while (sink.has_room()) {
            d.job_id = next_id();
            if (!sink.start(d, 0, now, error)) {
                std::fprintf(stderr, "start: %s\n", error.c_str());
                return 1;
            }
        }
        turn(base::ns_per_ms);
    }
    const double elapsed = double(now - begin) / 1e9;
    sink.stop();
    while (!sink.idle()) {
        turn(base::ns_per_ms);
    }
    std::printf(
        "{\"publishes_per_s\":%.0f,\"acknowledged\":%llu,\"failed\":%llu,\"max_in_flight\":%u,"
        "\"body_bytes\":%zu,\"seconds\":%.2f}\n",
        double(delivered) / elapsed, static_cast<unsigned long long>(delivered),
        static_cast<unsigned long long>(failed), cfg.max_in_flight, body_bytes, elapsed);
    if (failed != 0) {
        std::fprintf(stderr, "last error: %s\n", last_error.c_str());
    }
    return 0;
}
