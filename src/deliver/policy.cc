#include "portcullis/deliver/policy.hh"

#include <algorithm>
#include <cstdint>

namespace portcullis::deliver {

uint64_t Jitter::next() {
    uint64_t z = (_state += 0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
}

int64_t Jitter::below_or_at(int64_t bound) {
    if (bound <= 0) {
        return 0;
    }
    // The bias of a modulo over 2^64 is below 2^-24 for bounds under 10 min in ns: harmless.
    return static_cast<int64_t>(next() % (static_cast<uint64_t>(bound) + 1));
}

int64_t retry_delay_ns(uint32_t attempts, int64_t retry_after_ns, Jitter& jitter) {
    if (retry_after_ns >= 0) {
        return std::min(retry_after_ns, retry_cap_ns);
    }
    const uint32_t doublings = attempts == 0 ? 0 : attempts - 1;
    // 2^10 s already passes the cap: no shift can overflow.
    const int64_t ceiling =
        doublings >= 10 ? retry_cap_ns : std::min(retry_cap_ns, retry_base_ns << doublings);
    return jitter.below_or_at(ceiling);
}

void Breaker::move(State to, Transition t) {
    _state = to;
    _transition = t;
}

bool Breaker::admits(int64_t now_ns, uint32_t in_flight) {
    if (_held) {
        return false;
    }
    if (_state == State::open) {
        if (now_ns < _open_until_ns) {
            return false;
        }
        move(State::half_open, Transition::half_opened);
    }
    return _state == State::closed || in_flight == 0;
}

void Breaker::record(bool success, int64_t now_ns) {
    if (_held) {
        return; // the probe decides when it closes
    }
    if (success) {
        _failures = 0;
        if (_state != State::closed) {
            move(State::closed, Transition::closed);
        }
        return;
    }
    ++_failures;
    if (_state == State::half_open || (_state == State::closed && _failures >= _cfg.failures)) {
        _open_until_ns = now_ns + _cfg.cooldown_ns;
        ++_opened;
        move(State::open, Transition::opened);
    }
}

void Breaker::hold(bool held) {
    if (held == _held) {
        return;
    }
    _held = held;
    if (held) {
        if (_state != State::open) {
            ++_opened;
        }
        _open_until_ns = INT64_MAX; // no cooldown ends it: the next wait is not shortened
        move(State::open, Transition::opened);
        return;
    }
    _failures = 0;
    move(State::closed, Transition::closed);
}

Breaker::Transition Breaker::take_transition() {
    Transition t = _transition;
    _transition = Transition::none;
    return t;
}

std::string_view breaker_state_name(Breaker::State s) {
    switch (s) {
    case Breaker::State::closed:
        return "closed";
    case Breaker::State::open:
        return "open";
    case Breaker::State::half_open:
        return "half_open";
    }
    return "unknown";
}

Pace::Pace(const config::Rate& r)
    : _interval_ns(r.count == 0 ? 0 : std::max<int64_t>(1, r.period_ns / int64_t(r.count))) {}

bool Pace::take(int64_t now_ns) {
    if (_interval_ns == 0) {
        return true;
    }
    if (now_ns < _next_ns) {
        return false;
    }
    // A sink idle for a while gets one delivery now, not the backlog of its unused slots.
    _next_ns = now_ns + _interval_ns;
    return true;
}

} // namespace portcullis::deliver
