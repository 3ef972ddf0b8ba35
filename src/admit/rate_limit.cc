#include "portcullis/admit/rate_limit.hh"

#include "portcullis/base/zeroed_pages.hh"

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <limits>
#include <optional>

namespace portcullis::admit {

namespace {

using Word = std::atomic<uint64_t>;

constexpr int tat_bits = 43;
constexpr uint64_t tat_mask = (uint64_t{1} << tat_bits) - 1;
constexpr uint64_t provisional_bit = uint64_t{1} << tat_bits;
constexpr int tag_shift = tat_bits + 1;

// A claimer holds its slot provisional for one rescan of a cache line: tens of nanoseconds.
// Waiting this many pauses (a few microseconds) means it was preempted.
constexpr int settle_pauses = 64;
// Every pass either answers or lost a race to a change of the bucket; with two shards a pass or
// two settles any race, so running out means something far from the design point.
constexpr int max_passes = 64;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

uint64_t tag_of_key(uint64_t key) {
    // The bucket comes from the low bits; the tag from the top, so the two add up. 0 marks an
    // empty slot, so that tag is folded into 1.
    uint64_t tag = key >> tag_shift;
    return tag == 0 ? 1 : tag;
}
uint64_t tag_of(uint64_t w) {
    return w >> tag_shift;
}
// The slot a key takes when it can: a check finds it there without a scan.
size_t home_of(uint64_t tag) {
    return tag % RateLimiter::slots_per_bucket;
}
bool is_provisional(uint64_t w) {
    return (w & provisional_bit) != 0;
}
uint64_t now_us_of(int64_t now_ns) {
    // Floor, so that a request one nanosecond early is early.
    int64_t us = now_ns / 1000 - (now_ns % 1000 < 0 ? 1 : 0);
    return static_cast<uint64_t>(us);
}
uint64_t pack(uint64_t tag, uint64_t now_us, int64_t ahead_us) {
    return tag << tag_shift | ((now_us + static_cast<uint64_t>(ahead_us)) & tat_mask);
}
// How far the slot's TAT is ahead of now, or 0 when it is rested: in the past, or so far ahead
// that it can only be an old time that wrapped.
int64_t ahead_of(uint64_t w, uint64_t now_us) {
    uint64_t d = ((w & tat_mask) - now_us) & tat_mask;
    auto diff = static_cast<int64_t>(d);
    if (d >= (tat_mask >> 1) + 1) {
        diff -= static_cast<int64_t>(tat_mask) + 1;
    }
    return diff > 0 && diff <= RateLimiter::max_ahead_us ? diff : 0;
}
int64_t whole_seconds(int64_t us) {
    return std::max<int64_t>(1, (us + 999'999) / 1'000'000);
}
uint64_t ceil_div(uint64_t a, uint64_t b) {
    return a / b + (a % b != 0 ? 1 : 0);
}

// What one look at a bucket found.
struct Scan {
    int found = -1; // the key's confirmed slot
    uint64_t found_word = 0;
    int duplicate = -1; // a second confirmed slot of the key (see the header)
    int pending = -1;   // the key's provisional slot: someone is claiming it
    uint64_t pending_word = 0;
    int candidate = -1; // where a claim would go
    uint64_t candidate_word = 0;
    int candidate_rank = 3; // 0 empty, 1 rested, 2 live (an eviction)
    int64_t candidate_ahead = 0;
};

Scan scan(const Word* b, uint64_t tag, uint64_t now_us) {
    Scan s;
    const auto home = static_cast<int>(home_of(tag));
    for (int i = 0; i < static_cast<int>(RateLimiter::slots_per_bucket); ++i) {
        uint64_t w = b[i].load(std::memory_order_relaxed);
        if (w == 0) {
            if (s.candidate_rank > 0 || i == home) {
                s.candidate = i;
                s.candidate_word = w;
                s.candidate_rank = 0;
            }
            continue;
        }
        if (tag_of(w) == tag) {
            if (is_provisional(w)) {
                if (s.pending < 0) {
                    s.pending = i;
                    s.pending_word = w;
                }
            } else if (s.found < 0) {
                s.found = i;
                s.found_word = w;
            } else if (s.duplicate < 0) {
                s.duplicate = i;
            }
            continue;
        }
        if (is_provisional(w)) {
            continue; // another key's claim in progress: not ours to take
        }
        int64_t ahead = ahead_of(w, now_us);
        int rank = ahead == 0 ? 1 : 2;
        if (rank < s.candidate_rank || (rank == 1 && s.candidate_rank == 1 && i == home) ||
            (rank == 2 && s.candidate_rank == 2 && ahead < s.candidate_ahead)) {
            s.candidate = i;
            s.candidate_word = w;
            s.candidate_rank = rank;
            s.candidate_ahead = ahead;
        }
    }
    return s;
}

// Moves a second confirmed slot of the key into the first: the requests it counted are added
// to the first's state. Exact when both were written at the same now, as a doubled claim is.
void merge_duplicate(Word& first, Word& duplicate, uint64_t tag, uint64_t now_us) {
    uint64_t w = duplicate.load();
    int64_t moved = 0;
    while (w != 0 && tag_of(w) == tag && !is_provisional(w)) {
        if (duplicate.compare_exchange_weak(w, 0)) {
            moved = ahead_of(w, now_us);
            break;
        }
    }
    if (moved == 0) {
        return;
    }
    uint64_t f = first.load();
    while (f != 0 && tag_of(f) == tag && !is_provisional(f)) {
        int64_t ahead = std::min(ahead_of(f, now_us) + moved, RateLimiter::max_ahead_us);
        if (first.compare_exchange_weak(f, pack(tag, now_us, ahead))) {
            return;
        }
    }
    // The first was evicted meanwhile: the key is forgotten either way.
}

// GCRA on a slot that held the key's state when it was read as w: one compare-and-swap over tag
// and TAT together. Nothing when the slot is not, or no longer, the key's confirmed state.
std::optional<RateLimiter::Decision> count(Word& slot, uint64_t w, uint64_t tag, uint64_t now,
                                           int64_t interval, int64_t tolerance) {
    while (tag_of(w) == tag && !is_provisional(w)) {
        int64_t ahead = ahead_of(w, now);
        if (ahead > tolerance) {
            return RateLimiter::Decision{false, whole_seconds(ahead - tolerance)};
        }
        if (slot.compare_exchange_weak(w, pack(tag, now, ahead + interval),
                                       std::memory_order_relaxed)) {
            return RateLimiter::Decision{true, 0};
        }
    }
    return std::nullopt;
}

} // namespace

Limit Limit::from(const config::Rate& rate, uint32_t burst) {
    const uint64_t count = rate.count == 0 ? 1 : rate.count;
    const uint64_t period_us = ceil_div(static_cast<uint64_t>(std::max<int64_t>(rate.period_ns, 1)),
                                        1000); // ceil(ceil(a / b) / c) == ceil(a / (b * c))
    const auto max_ahead = static_cast<uint64_t>(RateLimiter::max_ahead_us);
    const uint64_t interval = std::clamp<uint64_t>(ceil_div(period_us, count), 1, max_ahead);
    const uint64_t extra = (burst == 0 ? count : burst) - 1;
    const uint64_t room = max_ahead - interval;
    Limit l;
    l.interval_us = static_cast<int64_t>(interval);
    l.tolerance_us = static_cast<int64_t>(extra > room / interval ? room : extra * interval);
    return l;
}

uint64_t rate_key(uint64_t route_seed, const base::PeerAddress& peer) {
    return XXH3_64bits_withSeed(peer.addr.data(), peer.addr.size(), route_seed);
}

uint64_t route_rate_key(uint64_t route_seed) {
    // Any input but 16 bytes long hashes apart from every address.
    static constexpr char marker[] = "route";
    return XXH3_64bits_withSeed(marker, sizeof marker - 1, route_seed);
}

RateLimiter::RateLimiter(size_t min_keys) {
    size_t buckets = (min_keys + slots_per_bucket - 1) / slots_per_bucket;
    _buckets = std::bit_ceil(std::max<size_t>(buckets, 1));
    _slots = static_cast<Word*>(base::map_zeroed(memory_bytes()));
}

RateLimiter::~RateLimiter() {
    base::unmap_zeroed(_slots, memory_bytes());
}

RateLimiter::Decision RateLimiter::check(uint64_t key, const Limit& limit, int64_t now_ns) {
    // A limit made by hand is held to what from() guarantees: states stay within max_ahead_us.
    const int64_t interval = std::clamp<int64_t>(limit.interval_us, 1, max_ahead_us);
    const int64_t tolerance = std::clamp<int64_t>(limit.tolerance_us, 0, max_ahead_us - interval);
    const uint64_t now = now_us_of(now_ns);
    const uint64_t tag = tag_of_key(key);
    Word* b = bucket(key);
    // The hot path: the key in its home slot, found without a scan.
    Word& home = b[home_of(tag)];
    if (auto d = count(home, home.load(std::memory_order_relaxed), tag, now, interval, tolerance)) {
        return *d;
    }
    return check_in_bucket(b, tag, now, interval, tolerance);
}

RateLimiter::Decision RateLimiter::check_in_bucket(std::atomic<uint64_t>* b, uint64_t tag,
                                                   uint64_t now, int64_t interval,
                                                   int64_t tolerance) {
    for (int pass = 0; pass < max_passes; ++pass) {
        Scan s = scan(b, tag, now);
        if (s.duplicate >= 0) {
            merge_duplicate(b[s.found], b[s.duplicate], tag, now);
            continue;
        }
        if (s.found >= 0) {
            if (auto d = count(b[s.found], s.found_word, tag, now, interval, tolerance)) {
                return *d;
            }
            continue; // evicted meanwhile: look again
        }
        if (s.pending >= 0) {
            Word& slot = b[s.pending];
            bool settled = false;
            for (int i = 0; i < settle_pauses && !settled; ++i) {
                cpu_relax();
                settled = slot.load(std::memory_order_relaxed) != s.pending_word;
            }
            if (!settled) {
                // Knocked out: its claimer finds its confirmation failing and checks again.
                slot.compare_exchange_strong(s.pending_word, 0);
            }
            continue;
        }
        if (s.candidate < 0) {
            cpu_relax(); // every slot is some other key's claim in progress
            continue;
        }
        // Claim: the first request of a key always passes (burst >= 1), so the claim already
        // holds it. The steps are sequentially consistent: see the header.
        Word& mine = b[s.candidate];
        const uint64_t claim = pack(tag, now, interval) | provisional_bit;
        uint64_t expected = s.candidate_word;
        if (!mine.compare_exchange_strong(expected, claim)) {
            continue;
        }
        if (s.candidate_rank == 2) {
            _evictions.fetch_add(1, std::memory_order_relaxed);
        }
        bool lost = false;
        for (int j = 0; j < static_cast<int>(slots_per_bucket) && !lost; ++j) {
            if (j == s.candidate) {
                continue;
            }
            uint64_t w = b[j].load();
            while (w != 0 && tag_of(w) == tag) {
                if (!is_provisional(w) || j < s.candidate) {
                    lost = true;
                    break;
                }
                // A rival claim after ours: knock it out. If that fails, the slot moved on
                // (confirmed, knocked out, reused): look at it again.
                if (b[j].compare_exchange_strong(w, 0)) {
                    break;
                }
            }
        }
        expected = claim;
        if (lost) {
            mine.compare_exchange_strong(expected, 0);
            continue; // check again against the rival's state
        }
        if (mine.compare_exchange_strong(expected, claim & ~provisional_bit)) {
            return {true, 0};
        }
        // Knocked out by a lower rival, or by a check that took us for preempted.
    }
    _unsettled.fetch_add(1, std::memory_order_relaxed);
    return {true, 0};
}

size_t RateLimiter::forget_rested(int64_t now_ns) {
    const uint64_t now = now_us_of(now_ns);
    size_t forgotten = 0;
    for (size_t i = 0; i < capacity(); ++i) {
        uint64_t w = _slots[i].load(std::memory_order_relaxed);
        if (w != 0 && !is_provisional(w) && ahead_of(w, now) == 0 &&
            _slots[i].compare_exchange_strong(w, 0, std::memory_order_relaxed)) {
            ++forgotten;
        }
    }
    return forgotten;
}

} // namespace portcullis::admit
