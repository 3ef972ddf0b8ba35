// Zero-filled anonymous memory for the fixed-size tables the shards share (dedup, ordering,
// rate limits, connections per client): a zero slot is an empty one, and pages are only taken
// from the system as they are first written, so a large table costs what it holds.
//
//   auto* slots = static_cast<Slot*>(map_zeroed(bytes));   // start-up
//   unmap_zeroed(slots, bytes);                             // when the table goes
#pragma once

#include <cstddef>
#include <new>

namespace portcullis::base {

// Aborts if the address space is exhausted: start-up only, and nothing could run then.
void* map_zeroed(size_t bytes);
void unmap_zeroed(void* p, size_t bytes);

// For the containers that grow with a deep spool (the job index): a block of a MiB or more is
// pages of its own, so that what a drained backlog held goes back to the system the moment it is
// freed, whatever the process-wide allocator keeps for reuse. Smaller blocks come from operator
// new. Pages are never touched here: what is not written costs nothing. Out of address space, it
// aborts, as a container's std::bad_alloc would end the process.
//
//   std::vector<Entry, base::PageAllocator<Entry>> entries;
template <typename T>
struct PageAllocator {
    using value_type = T;
    static constexpr size_t mapped_from = size_t{1} << 20;

    PageAllocator() = default;
    template <typename U>
    PageAllocator(const PageAllocator<U>& /*other*/) noexcept {}

    T* allocate(size_t n) {
        const size_t bytes = n * sizeof(T);
        return static_cast<T*>(bytes >= mapped_from ? map_zeroed(bytes) : ::operator new(bytes));
    }
    void deallocate(T* p, size_t n) noexcept {
        const size_t bytes = n * sizeof(T);
        if (bytes >= mapped_from) {
            unmap_zeroed(p, bytes);
        } else {
            ::operator delete(p);
        }
    }
    friend bool operator==(const PageAllocator& /*a*/, const PageAllocator& /*b*/) { return true; }
};

} // namespace portcullis::base
