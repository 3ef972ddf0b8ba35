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
// A slot is one 64-bit word: | tag (40 bits) | open connections (24 bits) |. Eight slots form a
// bucket (one cache line), the key's low bits choose it, the tag is the key's top 40 bits. A
// slot with a count of zero is free, whatever its tag. Memory is fixed at start-up: at least four
// slots per connection the appliance may hold (512 KiB for the default 10,000), so that a bucket
// fills only by a very unlikely concentration of keys. A connection whose bucket is full is
// admitted uncounted, and counted in untracked(): a full table never refuses or blocks.
//
// Concurrency. acquire first adds one to the key's home slot (one of the eight, chosen by its
// tag) with a plain atomic add, which holds when that slot carries the key's tag (counting or
// free); otherwise it takes the add back (another key's count was one too high for that
// instant) and adds one to the key's slot elsewhere by compare-and-swap, or claims a free slot
// for it, the home slot first. Either way it then reads the bucket again and sums every slot of
// the key; over the cap, it gives its count back and refuses. Two racing claims of a new key may
// land in two slots; the sums count both. So no connection is admitted while the cap is already
// reached; at the cap, two racing connections of one client may both be refused where one would
// have fitted, and so may one that loses its compare-and-swap 64 times in a row to rivals on its
// bucket. release subtracts from the very slot acquire counted in; a slot with a count cannot
// change its tag, so this is a plain atomic subtraction.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace portcullis::admit {

class ConnectionCounts {
public:
    static constexpr size_t slots_per_bucket = 8;
    static constexpr uint32_t max_count = (1u << 24) - 1;

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

private:
    std::atomic<uint64_t>* bucket(uint64_t key) const {
        return _slots + (key & (_buckets - 1)) * slots_per_bucket;
    }
    std::atomic<uint64_t>* _slots = nullptr;
    size_t _buckets = 0;
    std::atomic<uint64_t> _untracked{0};
};

} // namespace portcullis::admit
