#include "portcullis/base/zeroed_pages.hh"

#include <sys/mman.h>

#include <cstdlib>

namespace portcullis::base {

void* map_zeroed(size_t bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        std::abort();
    }
    return p;
}

void unmap_zeroed(void* p, size_t bytes) {
    munmap(p, bytes);
}

void* remap_zeroed(void* p, size_t old_bytes, size_t new_bytes) {
    if (p == nullptr) {
        return map_zeroed(new_bytes);
    }
    void* q = mremap(p, old_bytes, new_bytes, MREMAP_MAYMOVE);
    if (q == MAP_FAILED) {
        std::abort();
    }
    return q;
}

} // namespace portcullis::base
