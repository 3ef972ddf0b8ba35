// The sink tests' loop: starts a delivery that must start, and runs the ring (tick, wait,
// dispatch) until a condition holds, handing each outcome to the test.
#pragma once

#include "portcullis/base/time.hh"
#include "portcullis/io/ring.hh"

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace portcullis::deliver::testing {

template <typename Sink, typename Delivery>
void start_ok(Sink& sink, const Delivery& d, uint64_t cookie) {
    std::string error;
    ASSERT_TRUE(sink.start(d, cookie, base::mono_ns(), error)) << error;
}

// Until cond() or max_ns; every CQE must be the sink's. on_outcome(cookie, outcome).
template <typename Sink, typename F>
void drain_sink_until(io::Ring& ring, Sink& sink, const std::function<bool()>& cond, int64_t max_ns,
                      F&& on_outcome) {
    const int64_t end = base::mono_ns() + max_ns;
    while (!cond() && base::mono_ns() < end) {
        int64_t now = base::mono_ns();
        sink.tick(now);
        ring.submit_and_wait(sink.wait_limit_ns(now, 20 * base::ns_per_ms));
        now = base::mono_ns();
        ring.for_each_cqe([&](const io_uring_cqe& c) {
            ASSERT_TRUE(sink.owns(c.user_data)) << std::hex << c.user_data;
            sink.on_cqe(c, now, on_outcome);
        });
    }
}

// Shutdown as the engine does it: stop(), dispatch until idle(), then the sink goes.
template <typename Sink>
void stop_and_drain(io::Ring& ring, std::unique_ptr<Sink>& sink) {
    sink->stop();
    drain_sink_until(
        ring, *sink, [&] { return sink->idle(); }, 2000 * base::ns_per_ms,
        [](uint64_t, const auto&) {});
    sink.reset();
}

// An outcome's error for a server whose certificate no CA the client has signed.
inline void expect_untrusted(const std::string& error) {
    EXPECT_NE(error.find("tls: the server's certificate is not trusted"), std::string::npos)
        << error;
}

} // namespace portcullis::deliver::testing
