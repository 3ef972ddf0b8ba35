// The sink tests' loop: starts a delivery that must start, and runs the ring (tick, wait,
// dispatch) until a condition holds, handing each outcome to the test.
#pragma once

#include "portcullis/base/time.hh"
#include "portcullis/io/ring.hh"

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
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

} // namespace portcullis::deliver::testing
