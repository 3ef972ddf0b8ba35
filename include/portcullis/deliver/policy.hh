// The delivery engine's pure decisions, apart from any I/O so that they are tested alone: when
// to try a job again (SPEC section 8: 1 s x 2^(attempt-1) with full jitter, at most 10 min,
// Retry-After honoured), whether a sink's circuit breaker lets a delivery through, and the pace
// of a sink's `rate`.
//
//   Breaker b(cfg.breaker);
//   if (b.admits(now_mono, in_flight)) { start one; }     // open: none; half-open: one probe
//   b.record(ok, now_mono);                                // -> a Transition to log
//   int64_t delay = retry_delay_ns(attempts, retry_after_ns, rng);
#pragma once

#include "portcullis/config/config.hh"

#include <cstdint>
#include <string_view>

namespace portcullis::deliver {

constexpr int64_t retry_base_ns = 1'000'000'000;
constexpr int64_t retry_cap_ns = 600 * retry_base_ns;

// A small fast generator (SplitMix64) for the jitter: nothing secret depends on it.
class Jitter {
public:
    explicit Jitter(uint64_t seed) : _state(seed) {}
    uint64_t next();
    // Uniform in [0, bound] (bound >= 0).
    int64_t below_or_at(int64_t bound);

private:
    uint64_t _state;
};

// The wait before the next attempt after `attempts` attempts (>= 1): with a Retry-After
// (retry_after_ns >= 0) that wait, capped at retry_cap_ns; otherwise uniform in
// [0, min(retry_cap_ns, retry_base_ns << (attempts - 1))] ("full jitter": retries of a burst
// spread out instead of coming back together).
int64_t retry_delay_ns(uint32_t attempts, int64_t retry_after_ns, Jitter& jitter);

// One sink's circuit breaker. Closed: everything passes; `failures` consecutive failed attempts
// open it. Open: nothing passes for `cooldown`; then half-open: one delivery (the probe) passes
// while none is in flight. A success closes it; a failure of the probe opens it again.
// Outcomes of deliveries started before it opened still count (a success closes it).
class Breaker {
public:
    enum class State : uint8_t { closed, open, half_open };
    enum class Transition : uint8_t { none, opened, half_opened, closed };

    explicit Breaker(const config::BreakerConfig& cfg) : _cfg(cfg) {}

    // Whether one more delivery may start now, with in_flight already running. Moves an open
    // breaker whose cooldown is over to half-open (reported by take_transition()).
    bool admits(int64_t now_ns, uint32_t in_flight);
    void record(bool success, int64_t now_ns);
    // The state change since the last call (the engine logs it), then none.
    Transition take_transition();
    // A registered consumer's health probe failed (true) or passed again (false): held, the
    // breaker is open and lets nothing through, whatever the cooldown or the outcomes of
    // deliveries still in flight; released, it closes (failures forgotten).
    void hold(bool held);
    bool held() const { return _held; }

    State state() const { return _state; }
    uint32_t consecutive_failures() const { return _failures; }
    // When an open breaker lets its probe through; 0 when not open.
    int64_t reopens_at_ns() const { return _state == State::open ? _open_until_ns : 0; }
    uint64_t times_opened() const { return _opened; }

private:
    void move(State to, Transition t);

    config::BreakerConfig _cfg;
    State _state = State::closed;
    uint32_t _failures = 0;
    int64_t _open_until_ns = 0;
    uint64_t _opened = 0;
    Transition _transition = Transition::none;
    bool _held = false;
};

std::string_view breaker_state_name(Breaker::State s); // "closed", "open", "half_open"

// A sink's `rate`, paced evenly: one delivery every period / count, with no burst beyond one
// (an application behind a rate asks to be spared bursts). None: no limit.
class Pace {
public:
    Pace() = default;
    explicit Pace(const config::Rate& r);
    // Takes the slot for a delivery at now if it is free.
    bool take(int64_t now_ns);
    // When the next delivery may start (<= now: now); 0 without a rate.
    int64_t next_ns() const { return _interval_ns == 0 ? 0 : _next_ns; }

private:
    int64_t _interval_ns = 0;
    int64_t _next_ns = 0;
};

} // namespace portcullis::deliver
