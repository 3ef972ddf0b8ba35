// Zero-filled anonymous memory for the fixed-size tables the shards share (dedup, ordering,
// rate limits, connections per client): a zero slot is an empty one, and pages are only taken
// from the system as they are first written, so a large table costs what it holds.
//
//   auto* slots = static_cast<Slot*>(map_zeroed(bytes));   // start-up
//   unmap_zeroed(slots, bytes);                             // when the table goes
#pragma once

#include <cstddef>

namespace portcullis::base {

// Aborts if the address space is exhausted: start-up only, and nothing could run then.
void* map_zeroed(size_t bytes);
void unmap_zeroed(void* p, size_t bytes);

} // namespace portcullis::base
