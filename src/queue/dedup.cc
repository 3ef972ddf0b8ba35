#include "portcullis/queue/dedup.hh"

#include "portcullis/base/zeroed_pages.hh"

#include <bit>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace portcullis::queue {

namespace {

using Slot = FingerprintTable::Slot;
using Kind = FingerprintTable::Kind;

enum State : uint64_t {
    state_free = 0,
    state_claimed = 1,
    state_confirmed = 2,
    state_committed = 3
};
constexpr uint64_t state_mask = 0xff;
constexpr uint64_t gen_mask = 0xffff00;
constexpr int tag_shift = 24;

uint64_t state_of(uint64_t w) {
    return w & state_mask;
}
uint64_t tag_of(uint64_t w) {
    return w >> tag_shift;
}
uint64_t tag_of(Fingerprint key) {
    // The bucket comes from the low bits of hi, the tag from its top 40.
    return key.hi >> tag_shift;
}
uint64_t with_state(uint64_t w, uint64_t state) {
    return (w & ~state_mask) | state;
}
// The word a new claim writes over `old`: our tag, the next generation.
uint64_t claim_word(uint64_t old, uint64_t tag) {
    uint64_t gen = ((old & gen_mask) + (1u << 8)) & gen_mask;
    return tag << tag_shift | gen | state_claimed;
}

// Ordering entries never expire: their expiry is the last advance plus this, so that the
// eviction of the smallest expiry forgets the key advanced longest ago.
constexpr int64_t ordering_horizon_ns = int64_t{1} << 62;

} // namespace

FingerprintTable::FingerprintTable(size_t min_entries) {
    size_t buckets = (min_entries + slots_per_bucket - 1) / slots_per_bucket;
    _buckets = std::bit_ceil(buckets < 1 ? size_t{1} : buckets);
    _slots = static_cast<Slot*>(base::map_zeroed(memory_bytes()));
}

FingerprintTable::~FingerprintTable() {
    base::unmap_zeroed(_slots, memory_bytes());
}

FingerprintTable::Ref FingerprintTable::find(Fingerprint key, int64_t now_ns) const {
    Slot* b = bucket(key);
    const uint64_t tag = tag_of(key);
    for (size_t i = 0; i < slots_per_bucket; ++i) {
        Slot& s = b[i];
        uint64_t w = s.word.load(std::memory_order_acquire);
        if (state_of(w) == state_free || tag_of(w) != tag) {
            continue;
        }
        if (state_of(w) != state_committed) {
            return {Kind::pending, &s, w};
        }
        uint64_t lo = s.key_lo.load(std::memory_order_relaxed);
        int64_t expires = s.expires_ns.load(std::memory_order_relaxed);
        Ref r{Kind::present, &s, w};
        if (lo == key.lo && expires > now_ns && unchanged(r)) {
            return r;
        }
    }
    return {};
}

FingerprintTable::Ref FingerprintTable::find_or_claim(Fingerprint key, int64_t now_ns) {
    Slot* b = bucket(key);
    const uint64_t tag = tag_of(key);
    // Each pass either answers or loses a race to a concurrent change of this bucket; a few
    // passes settle any realistic contention, and past them the key counts as in flight.
    for (int pass = 0; pass < 16; ++pass) {
        Slot* candidate = nullptr;
        uint64_t candidate_word = 0;
        bool evicting = false;
        int64_t soonest = std::numeric_limits<int64_t>::max();
        bool retry = false;
        // The first free (or expired) slot beats any eviction.
        auto take_free = [&](Slot& s, uint64_t w) {
            if (candidate == nullptr || evicting) {
                candidate = &s;
                candidate_word = w;
                evicting = false;
                soonest = std::numeric_limits<int64_t>::min();
            }
        };
        for (size_t i = 0; i < slots_per_bucket && !retry; ++i) {
            Slot& s = b[i];
            uint64_t w = s.word.load();
            uint64_t st = state_of(w);
            if (st == state_free) {
                take_free(s, w);
                continue;
            }
            if (st != state_committed) {
                if (tag_of(w) == tag) {
                    return {Kind::pending, &s, w};
                }
                continue;
            }
            uint64_t lo = s.key_lo.load(std::memory_order_relaxed);
            int64_t expires = s.expires_ns.load(std::memory_order_relaxed);
            Ref seen{Kind::present, &s, w};
            if (!unchanged(seen)) {
                retry = true;
                break;
            }
            if (expires <= now_ns) {
                take_free(s, w); // forgotten: as good as free
                continue;
            }
            if (tag_of(w) == tag && lo == key.lo) {
                return seen;
            }
            if ((candidate == nullptr || evicting) && expires < soonest) {
                candidate = &s;
                candidate_word = w;
                evicting = true;
                soonest = expires;
            }
        }
        if (retry) {
            continue;
        }
        if (candidate == nullptr) {
            return {Kind::full, nullptr, 0};
        }
        uint64_t mine = claim_word(candidate_word, tag);
        if (!candidate->word.compare_exchange_strong(candidate_word, mine)) {
            continue;
        }
        if (evicting) {
            _evictions.fetch_add(1, std::memory_order_relaxed);
        }
        // Rivals: claims of the same key made since our scan.
        Ref lost{};
        for (size_t i = 0; i < slots_per_bucket && lost.kind == Kind::absent; ++i) {
            Slot& s = b[i];
            if (&s == candidate) {
                continue;
            }
            uint64_t w = s.word.load();
            while (state_of(w) != state_free && tag_of(w) == tag) {
                uint64_t st = state_of(w);
                if (st == state_committed) {
                    uint64_t lo = s.key_lo.load(std::memory_order_relaxed);
                    int64_t expires = s.expires_ns.load(std::memory_order_relaxed);
                    Ref seen{Kind::present, &s, w};
                    if (unchanged(seen) && lo == key.lo && expires > now_ns) {
                        lost = seen;
                    }
                    break;
                }
                if (st == state_confirmed || &s < candidate) {
                    lost = {Kind::pending, &s, w};
                    break;
                }
                // An unconfirmed claim after ours: knock it out. If that fails, the slot moved
                // on (confirmed, released, reused): look again.
                if (s.word.compare_exchange_strong(w, with_state(w, state_free))) {
                    break;
                }
            }
        }
        if (lost.kind != Kind::absent) {
            candidate->word.compare_exchange_strong(mine, with_state(mine, state_free));
            return lost;
        }
        uint64_t confirmed = with_state(mine, state_confirmed);
        if (!candidate->word.compare_exchange_strong(mine, confirmed)) {
            // A lower-index rival knocked our claim out: it holds the key.
            return {Kind::pending, candidate, mine};
        }
        candidate->key_lo.store(key.lo, std::memory_order_relaxed);
        return {Kind::claimed, candidate, confirmed};
    }
    return {Kind::full, nullptr, 0};
}

bool FingerprintTable::own(Ref& present) {
    uint64_t expected = present.word;
    const uint64_t held = with_state(present.word, state_confirmed);
    if (!present.slot->word.compare_exchange_strong(expected, held)) {
        return false;
    }
    present.kind = Kind::claimed;
    present.word = held;
    present.owned_existing = true;
    return true;
}

void FingerprintTable::publish(const Ref& claimed) {
    claimed.slot->word.store(with_state(claimed.word, state_committed), std::memory_order_release);
}

void FingerprintTable::release(const Ref& claimed) {
    uint64_t w = claimed.word;
    claimed.slot->word.compare_exchange_strong(w, with_state(w, state_free));
}

DedupTable::Claim DedupTable::claim(Fingerprint key, Fingerprint body, JobId id, int64_t expires_ns,
                                    int64_t now_ns) {
    // One Claim for every answer, so that it is built in the caller's (no copy through the
    // stack, whose narrow stores a wide load cannot forward: 20 -> 9.8 ns a cached duplicate).
    Claim c;
    for (int pass = 0; pass < 16; ++pass) {
        FingerprintTable::Ref r = _table.find_or_claim(key, now_ns);
        switch (r.kind) {
        case Kind::claimed: {
            Slot& s = *r.slot;
            s.expires_ns.store(expires_ns, std::memory_order_relaxed);
            s.value[0].store(body.hi, std::memory_order_relaxed);
            s.value[1].store(body.lo, std::memory_order_relaxed);
            uint64_t id_words[2];
            std::memcpy(id_words, id.bytes.data(), sizeof id_words);
            s.value[2].store(id_words[0], std::memory_order_relaxed);
            s.value[3].store(id_words[1], std::memory_order_relaxed);
            c.outcome = Outcome::claimed;
            c.ticket = r;
            return c;
        }
        case Kind::present: {
            Slot& s = *r.slot;
            Fingerprint first_body{s.value[0].load(std::memory_order_relaxed),
                                   s.value[1].load(std::memory_order_relaxed)};
            uint64_t id_words[2] = {s.value[2].load(std::memory_order_relaxed),
                                    s.value[3].load(std::memory_order_relaxed)};
            if (!FingerprintTable::unchanged(r)) {
                continue; // reused while we read it
            }
            std::memcpy(c.first.bytes.data(), id_words, sizeof id_words);
            c.outcome = first_body == body ? Outcome::duplicate : Outcome::conflict;
            return c;
        }
        case Kind::absent:
        case Kind::pending:
        case Kind::full:
            return c; // in_flight
        }
    }
    return c;
}

void DedupTable::remember(Fingerprint key, Fingerprint body, JobId id, int64_t expires_ns,
                          int64_t now_ns) {
    if (expires_ns <= now_ns) {
        return;
    }
    Claim c = claim(key, body, id, expires_ns, now_ns);
    if (c.outcome == Outcome::claimed) {
        commit(c.ticket);
    }
}

bool OrderingTable::stale(Fingerprint key, int64_t ts, int64_t now_ns) const {
    // An entry being advanced is held for a few stores: wait for it rather than answer "not
    // stale" from a state that is about to change.
    for (int pass = 0; pass < 1024; ++pass) {
        FingerprintTable::Ref r = _table.find(key, now_ns);
        if (r.kind == Kind::pending) {
            continue;
        }
        if (r.kind != Kind::present) {
            return false;
        }
        auto newest = static_cast<int64_t>(r.slot->value[0].load(std::memory_order_relaxed));
        if (FingerprintTable::unchanged(r)) {
            return ts <= newest;
        }
    }
    return false;
}

bool OrderingTable::advance(Fingerprint key, int64_t ts, int64_t now_ns) {
    for (int pass = 0; pass < 1024; ++pass) {
        FingerprintTable::Ref r = _table.find_or_claim(key, now_ns);
        if (r.kind == Kind::present && !_table.own(r)) {
            continue; // changed since it was found: look again
        }
        if (r.kind == Kind::claimed) {
            // Ours alone (a new claim, or an entry taken out of committed): no eviction touches
            // it until it is published again.
            const auto newest =
                static_cast<int64_t>(r.slot->value[0].load(std::memory_order_relaxed));
            if (!r.owned_existing || newest < ts) {
                r.slot->value[0].store(static_cast<uint64_t>(ts), std::memory_order_relaxed);
            }
            r.slot->expires_ns.store(now_ns + ordering_horizon_ns, std::memory_order_relaxed);
            _table.publish(r);
            return true;
        }
        if (r.kind == Kind::full) {
            return false;
        }
        // pending: another shard is creating or advancing this key's entry right now.
    }
    return false;
}

} // namespace portcullis::queue
