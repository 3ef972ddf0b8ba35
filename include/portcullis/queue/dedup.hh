// The tables that remember what was accepted, shared by all shards without locks: the dedup
// table (delivery key -> first job id and body, for the dedup window) and the ordering table
// (ordering key -> newest timestamp accepted).
//
//   DedupTable dedup(1 << 20);                                   // start-up
//   auto c = dedup.claim(key, body, id, received + window, now); // request path, body complete
//   switch (c.outcome) {
//   case DedupTable::Outcome::claimed:   append; later dedup.commit(c.ticket) once durable,
//                                        or dedup.abandon(c.ticket) if the write failed
//   case DedupTable::Outcome::duplicate: 200 with c.first
//   case DedupTable::Outcome::conflict:  409
//   case DedupTable::Outcome::in_flight: the first copy is still being written: 503, retry
//   }
//
// Keys are 128-bit xxHash fingerprints of the key's value, seeded per route so that two routes
// never share keys. A table is a fixed array of 64-byte slots (one cache line each) in buckets of
// eight, mapped from anonymous memory: untouched buckets cost no RAM, and a full table never
// grows; a full bucket evicts the entry that would expire first (counted).
//
// Concurrency. A slot's state lives in one 64-bit word: 40 bits of the key's tag, a 16-bit
// generation bumped by every claim (so that a stale compare-and-swap never succeeds on a reused
// slot), and the state: free, claimed, confirmed (owned, fields being written, job not yet
// durable) or committed (fields readable). Inserting a key claims a slot by compare-and-swap,
// then rescans the bucket for a rival claim of the same key made meanwhile: a lower-index claim
// or any confirmed or committed entry wins over ours, and an unconfirmed claim at a higher index
// is knocked out. Any two concurrent claims see each other in at least one rescan (all these
// operations are sequentially consistent), so at most one of them is confirmed. Readers copy a
// committed slot's fields and check that the word did not change meanwhile (a seqlock without
// the lock: writers never wait for readers). An ordering entry is advanced in place by taking it
// from committed back to confirmed (own()), which keeps evictions off it, and publishing again.
#pragma once

#include "portcullis/queue/fingerprint.hh"
#include "portcullis/queue/job_id.hh"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace portcullis::queue {

// The slot array and its claim protocol; DedupTable and OrderingTable give the values meaning.
class FingerprintTable {
public:
    static constexpr size_t slots_per_bucket = 8;
    static constexpr size_t value_words = 5;

    struct alignas(64) Slot {
        std::atomic<uint64_t> word{0};
        std::atomic<uint64_t> key_lo{0};
        // Unix ns after which the entry is forgotten; among live entries of a full bucket the
        // smallest is evicted.
        std::atomic<int64_t> expires_ns{0};
        std::array<std::atomic<uint64_t>, value_words> value{};
    };
    static_assert(sizeof(Slot) == 64);

    enum class Kind : uint8_t {
        absent,  // find(): no live entry
        present, // a committed, unexpired entry: read values, then check unchanged()
        pending, // another request holds a claim for this key
        claimed, // find_or_claim(): the slot is ours; write values, then publish() or release()
        full,    // find_or_claim(): every slot of the bucket is claimed by requests in flight
    };
    struct Ref {
        Kind kind = Kind::absent;
        Slot* slot = nullptr;
        uint64_t word = 0;
        bool owned_existing = false; // claimed by own(): the values are the entry's, not blank
    };

    // Room for at least min_entries keys (rounded up to a power of two of buckets).
    explicit FingerprintTable(size_t min_entries);
    ~FingerprintTable();
    FingerprintTable(const FingerprintTable&) = delete;
    FingerprintTable& operator=(const FingerprintTable&) = delete;

    Ref find(Fingerprint key, int64_t now_ns) const;
    Ref find_or_claim(Fingerprint key, int64_t now_ns);
    // Takes a present entry out of committed so that its values can be updated in place: no
    // eviction or other owner touches it until publish(). False if it changed since it was
    // found (look again).
    bool own(Ref& present);
    // Makes a claimed slot's values visible to readers.
    void publish(const Ref& claimed);
    // Gives a claimed slot back (the job was not accepted after all).
    void release(const Ref& claimed);
    // True when the slot still holds what ref saw: values read since then are consistent. Inline:
    // a call would keep the caller's Ref in memory, and copying it out then stalls on store
    // forwarding (34 -> 20 ns a cached duplicate, BM_DedupDuplicateOneKey).
    static bool unchanged(const Ref& ref) {
        std::atomic_thread_fence(std::memory_order_acquire);
        return ref.slot->word.load(std::memory_order_relaxed) == ref.word;
    }

    size_t capacity() const { return _buckets * slots_per_bucket; }
    size_t memory_bytes() const { return capacity() * sizeof(Slot); }
    uint64_t evictions() const { return _evictions.load(std::memory_order_relaxed); }

private:
    Slot* bucket(Fingerprint key) const {
        return _slots + (key.hi & (_buckets - 1)) * slots_per_bucket;
    }

    Slot* _slots = nullptr;
    size_t _buckets = 0;
    std::atomic<uint64_t> _evictions{0};
};

class DedupTable {
public:
    enum class Outcome : uint8_t { claimed, duplicate, conflict, in_flight };
    struct Claim {
        Outcome outcome = Outcome::in_flight;
        JobId first; // duplicate, conflict: the job the key belongs to
        FingerprintTable::Ref ticket;
    };

    explicit DedupTable(size_t min_entries) : _table(min_entries) {}

    // Looks key up and, if it is not remembered, claims it for id until expires_ns.
    Claim claim(Fingerprint key, Fingerprint body, JobId id, int64_t expires_ns, int64_t now_ns);
    // The claimed job is durable: later copies are duplicates from now on.
    void commit(const FingerprintTable::Ref& ticket) { _table.publish(ticket); }
    // The claimed job was not written: the key is free again.
    void abandon(const FingerprintTable::Ref& ticket) { _table.release(ticket); }
    // Start-up rebuild from the spool: remembers a durable job (the first one wins).
    void remember(Fingerprint key, Fingerprint body, JobId id, int64_t expires_ns, int64_t now_ns);

    const FingerprintTable& table() const { return _table; }

private:
    FingerprintTable _table;
};

class OrderingTable {
public:
    explicit OrderingTable(size_t min_entries) : _table(min_entries) {}

    // True when ts is not newer than the newest timestamp accepted for key.
    bool stale(Fingerprint key, int64_t ts, int64_t now_ns) const;
    // An event for key with timestamp ts is durable: raises the newest to ts if it is newer.
    // Entries do not expire; a full bucket forgets its least recently advanced key. False when
    // the key could not be recorded (its bucket busy with claims): counted by the caller.
    bool advance(Fingerprint key, int64_t ts, int64_t now_ns);

    const FingerprintTable& table() const { return _table; }

private:
    FingerprintTable _table;
};

} // namespace portcullis::queue
