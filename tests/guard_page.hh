// Memory that ends in a PROT_NONE page, for the parsers of outside bytes: bytes placed at the
// end of the usable part are followed by nothing readable, so a read one byte too far crashes
// the test (picohttpparser's test does the same).
//
//   GuardedBuffer guard(4096);
//   std::string_view input = guard.place(bytes);   // ends right at the guard page
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace portcullis::testing_support {

class GuardedBuffer {
public:
    explicit GuardedBuffer(size_t capacity) {
        _page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
        _usable = (capacity + _page - 1) / _page * _page;
        void* base = mmap(nullptr, _usable + _page, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) {
            std::abort();
        }
        _base = static_cast<char*>(base);
        if (mprotect(_base + _usable, _page, PROT_NONE) != 0) {
            std::abort();
        }
    }
    ~GuardedBuffer() { munmap(_base, _usable + _page); }
    GuardedBuffer(const GuardedBuffer&) = delete;
    GuardedBuffer& operator=(const GuardedBuffer&) = delete;

    size_t capacity() const { return _usable; }

    // Copies bytes so that they end exactly at the guard page.
    std::string_view place(std::string_view bytes) {
        if (bytes.size() > _usable) {
            std::abort();
        }
        char* at = _base + _usable - bytes.size();
        std::memcpy(at, bytes.data(), bytes.size());
        return {at, bytes.size()};
    }

private:
    char* _base = nullptr;
    size_t _usable = 0;
    size_t _page = 0;
};

} // namespace portcullis::testing_support
