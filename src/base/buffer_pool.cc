#include "portcullis/base/buffer_pool.hh"

#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>

namespace portcullis::base {

void Buffer::append(const void* p, size_t n) {
    std::memcpy(data() + size, p, n);
    size += n;
}

namespace {

unsigned class_of(size_t min_capacity) {
    size_t need =
        min_capacity < BufferPool::min_class_bytes ? BufferPool::min_class_bytes : min_capacity;
    return static_cast<unsigned>(std::bit_width(need - 1) -
                                 std::bit_width(BufferPool::min_class_bytes - 1));
}

size_t class_bytes(unsigned c) {
    return BufferPool::min_class_bytes << c;
}

} // namespace

BufferPool::~BufferPool() {
    for (Buffer*& head : _free) {
        while (head != nullptr) {
            Buffer* next = head->next;
            std::free(head);
            head = next;
        }
    }
}

Buffer* BufferPool::acquire(size_t min_capacity) {
    unsigned c = class_of(min_capacity);
    if (c >= class_count) {
        return nullptr;
    }
    Buffer* b = _free[c];
    if (b != nullptr) {
        _free[c] = b->next;
        _free_bytes[c] -= b->capacity;
        _cached_bytes -= b->capacity;
    } else {
        void* mem = std::malloc(sizeof(Buffer) + class_bytes(c));
        if (mem == nullptr) {
            return nullptr;
        }
        b = new (mem) Buffer;
        b->size_class = c;
        b->capacity = class_bytes(c);
    }
    b->next = nullptr;
    b->size = 0;
    return b;
}

Buffer* BufferPool::grow(Buffer* b, size_t min_capacity) {
    if (min_capacity <= b->capacity) {
        return b;
    }
    Buffer* bigger = acquire(min_capacity);
    if (bigger == nullptr) {
        return nullptr;
    }
    bigger->append(b->data(), b->size);
    release(b);
    return bigger;
}

void BufferPool::release(Buffer* b) {
    if (b == nullptr) {
        return;
    }
    unsigned c = b->size_class;
    if (_free_bytes[c] + b->capacity > max_cached_bytes_per_class) {
        std::free(b);
        return;
    }
    b->next = _free[c];
    _free[c] = b;
    _free_bytes[c] += b->capacity;
    _cached_bytes += b->capacity;
}

} // namespace portcullis::base
