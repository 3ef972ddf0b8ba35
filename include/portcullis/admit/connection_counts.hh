// Open connections per client, shared by all shards: server.max_connections_per_ip holds for
// the whole appliance, since SO_REUSEPORT spreads one client's connections over the shards.
//
//   ConnectionCounts counts(cfg.server.max_connections);        // start-up
//   uint64_t key = rate_key(process_secret, client);            // per connection
//   ConnectionCounts::Ticket t = counts.acquire(key, cap);
//   if (!t.admitted) { close(); }                                // over the cap
//   ...
//   counts.release(t);                                           // when the connection closes
//
// A slot is one 64-bit word: | tag (32 bits) | generation (8) | verified (1) | open
// connections (23) |. Eight slots form a bucket (one cache line), the key's low bits choose it,
// the tag is the key's top 32 bits. A slot with a count of zero is free, whatever its tag.
// Memory is fixed at start-up: at least four slots per connection the appliance may hold (512 KiB
// for the default 10,000), so that a bucket fills only by a very unlikely concentration of keys.
// A connection whose bucket is full is admitted uncounted, and counted in untracked(): a full
// table never refuses or blocks.
//
// Concurrency. Each key has a home slot in its bucket (its tag modulo 8). acquire first adds one
// to it with a plain atomic add. If the slot carries another key's tag, the add is taken back
// (that key's count was one too high for that instant) and the bucket searched: the key's count
// elsewhere is raised by compare-and-swap, or a free slot claimed for it, the home slot first.
// A claim writes the key's tag, the slot's next generation and a count of one, unverified.
//
// A verified home slot is the key's only slot in the bucket, so the value the add returned is
// the key's whole count: a connection then costs one atomic add at acquire and one subtraction
// at release, and neither reads the rest of the bucket (two shards on one client move the line
// twice per connection instead of about three times). Any other acquire reads the bucket and sums
// the key's slots; over the cap, it gives its count back and refuses; when the key counts at home
// alone, it marks the home slot verified by compare-and-swap.
//
// Why a verified home stays the only slot: an acquire that counts anywhere but at home (claim or
// compare-and-swap) then reads the home slot, and if that carries the key's tag, gives its count
// back and tries again, which counts at home. The home slot had the key's tag before the
// verifier read the bucket and found no other count, so a count elsewhere that the verifier
// missed was made after its read, and its maker's read of the home slot, later still, sees the
// tag (all these operations are sequentially consistent). The tag stays while the slot has a
// count, and when it is free, until another key claims it, which clears the mark. The generation
// makes a stale compare-and-swap (by a thread preempted while the slot changed hands and came
// back to the same tag and count) fail, unless 256 claims of that slot came between.
//
// So no connection is admitted while the cap is already reached. Two racing claims of a new key
// may land in two slots (one claimer saw the home slot taken, the other saw it free); the sums
// count both, and the home slot is not verified while the other slot has a count. At the cap,
// two racing connections of one client may both be refused where one would have fitted, and so
// may one that loses its compare-and-swap 64 times in a row to rivals on its bucket. release
// subtracts from the very slot acquire counted in; a slot with a count cannot change its tag, so
// this is a plain atomic subtraction.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace portcullis::admit {

class ConnectionCounts {
public:
    static constexpr size_t slots_per_bucket = 8;
    static constexpr uint32_t max_count = (1u << 23) - 1;

    struct Ticket {
        bool admitted = true;
        int32_t slot = -1; // counted in this slot; -1: nothing to release
    };

    // Room for max_connections open connections (four slots each, rounded up to a power of two
    // of buckets, at least 512 slots).
    explicit ConnectionCounts(size_t max_connections);
    ~ConnectionCounts();
    ConnectionCounts(const ConnectionCounts&) = delete;
    ConnectionCounts& operator=(const ConnectionCounts&) = delete;

    // One more connection of key, if fewer than cap (>= 1) are open. Never blocks or allocates.
    Ticket acquire(uint64_t key, uint32_t cap);
    // The connection of an admitted ticket has closed. Safe to call with any ticket.
    void release(Ticket t);

    // Open connections of key, all slots summed.
    uint32_t open(uint64_t key) const;
    size_t capacity() const { return _buckets * slots_per_bucket; }
    size_t memory_bytes() const { return capacity() * sizeof(uint64_t); }
    // Connections admitted without a count because their bucket was full.
    uint64_t untracked() const { return _untracked.load(std::memory_order_relaxed); }

    // Tests only: called by acquire's search of the bucket between reading the slots and
    // counting in the one it chose, so that a test can hold one thread there while another
    // acquires, and so play a race in a chosen order. Set before any acquire runs.
    using PauseHook = void (*)(void* arg);
    void set_pause_before_count(PauseHook hook, void* arg) {
        _pause = hook;
        _pause_arg = arg;
    }

private:
    // The end of an acquire that counted in a slot other than by a verified home's add: sums
    // the key's slots (refusing over the cap) and marks the home slot verified when the key
    // counts there alone.
    Ticket settle(std::atomic<uint64_t>* b, size_t home, uint64_t tag, uint32_t cap, Ticket t);
    std::atomic<uint64_t>* bucket(uint64_t key) const {
        return _slots + (key & (_buckets - 1)) * slots_per_bucket;
    }
    std::atomic<uint64_t>* _slots = nullptr;
    size_t _buckets = 0;
    std::atomic<uint64_t> _untracked{0};
    PauseHook _pause = nullptr;
    void* _pause_arg = nullptr;
};

} // namespace portcullis::admit
