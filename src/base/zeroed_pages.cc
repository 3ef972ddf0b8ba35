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

} // namespace portcullis::base
