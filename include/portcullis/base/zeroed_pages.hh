// Zero-filled anonymous memory for the fixed-size tables the shards share (dedup, ordering,
// rate limits, connections per client) and, through PageVector, for the tables that grow with
// the spool (the job index): a zero slot is an empty one, and pages are only taken from the
// system as they are first written, so a large table costs what it holds.
//
//   auto* slots = static_cast<Slot*>(map_zeroed(bytes));   // start-up
//   unmap_zeroed(slots, bytes);                             // when the table goes
#pragma once

#include <cstddef>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

namespace portcullis::base {

// Aborts if the address space is exhausted, as a container's std::bad_alloc would end the
// process.
void* map_zeroed(size_t bytes);
void unmap_zeroed(void* p, size_t bytes);
// The mapping p (old_bytes, from map_zeroed; nullptr for none) grown to new_bytes: its pages
// moved, not copied (mremap), and what is added zero. Aborts as map_zeroed does.
void* remap_zeroed(void* p, size_t old_bytes, size_t new_bytes);

// A growable array for the tables that grow with a deep spool (the job index, its entries, the
// ready FIFOs), where std::vector's growth (allocate twice the size, copy everything, free the
// old) stops the control plane for a fifth of a second at 8 million jobs. Past a MiB its
// elements live in a mapping of their own, which grows by moving its pages (remap_zeroed), whose
// pages nobody wrote are zero, and which goes back to the system the moment it is freed,
// whatever the process-wide allocator keeps for reuse; smaller ones are on the heap, zeroed. Either
// way a new element is all zero bytes, which T must take as its empty or initial value. It never
// shrinks (swap with a new one for that), so every element past size() is still zero.
//
//   PageVector<Slot> index(1 << 20);   // a million zero slots; pages taken as they are written
//   entries.emplace_back();            // the next zero element
template <typename T>
class PageVector {
    static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>);

public:
    PageVector() = default;
    // n zero elements.
    explicit PageVector(size_t n) { extend(n); }
    ~PageVector() { free_storage(); }
    PageVector(const PageVector& other) {
        reserve(other._size);
        if (other._size != 0) {
            std::memcpy(_data, other._data, other._size * sizeof(T));
        }
        _size = other._size;
    }
    PageVector& operator=(const PageVector& other) {
        if (this != &other) {
            PageVector(other).swap(*this);
        }
        return *this;
    }
    PageVector(PageVector&& other) noexcept { swap(other); }
    PageVector& operator=(PageVector&& other) noexcept {
        PageVector(std::move(other)).swap(*this);
        return *this;
    }
    void swap(PageVector& other) noexcept {
        std::swap(_data, other._data);
        std::swap(_size, other._size);
        std::swap(_capacity, other._capacity);
        std::swap(_mapped, other._mapped);
    }

    size_t size() const { return _size; }
    size_t capacity() const { return _capacity; }
    bool empty() const { return _size == 0; }
    T& operator[](size_t i) { return _data[i]; }
    const T& operator[](size_t i) const { return _data[i]; }
    T* begin() { return _data; }
    T* end() { return _data + _size; }
    const T* begin() const { return _data; }
    const T* end() const { return _data + _size; }

    // Room for n elements (capacity() may come out larger: whole pages).
    void reserve(size_t n) {
        if (n <= _capacity) {
            return;
        }
        // What is kept: all of it (size() <= capacity() < n), said so that the compiler can
        // bound the copy by the new block.
        const size_t kept = _size < n ? _size : n;
        if (n * sizeof(T) < mapped_from) {
            auto* grown = static_cast<T*>(::operator new(n * sizeof(T)));
            if (kept != 0) {
                std::memcpy(static_cast<void*>(grown), _data, kept * sizeof(T));
            }
            std::memset(static_cast<void*>(grown + kept), 0, (n - kept) * sizeof(T));
            free_storage();
            _data = grown;
            _capacity = n;
            return;
        }
        const size_t bytes = (n * sizeof(T) + page_bytes - 1) / page_bytes * page_bytes;
        if (_mapped) {
            _data = static_cast<T*>(remap_zeroed(_data, mapped_bytes(), bytes));
        } else {
            auto* grown = static_cast<T*>(map_zeroed(bytes));
            if (kept != 0) {
                std::memcpy(static_cast<void*>(grown), _data, kept * sizeof(T));
            }
            free_storage();
            _data = grown;
            _mapped = true;
        }
        _capacity = bytes / sizeof(T);
    }
    // size() n, at least what it is: the elements added are zero.
    void extend(size_t n) {
        reserve(n);
        _size = n > _size ? n : _size;
    }
    // The next element, zero.
    T& emplace_back() {
        if (_size == _capacity) {
            reserve(_capacity * 2 + 1);
        }
        return _data[_size++];
    }
    void push_back(const T& value) { emplace_back() = value; }

private:
    static constexpr size_t page_bytes = 4096;
    static constexpr size_t mapped_from = size_t{1} << 20;

    size_t mapped_bytes() const {
        return (_capacity * sizeof(T) + page_bytes - 1) / page_bytes * page_bytes;
    }
    // Frees the elements' memory (size() is the caller's to keep or drop).
    void free_storage() {
        if (_mapped) {
            unmap_zeroed(_data, mapped_bytes());
        } else {
            ::operator delete(_data);
        }
        _data = nullptr;
        _capacity = 0;
        _mapped = false;
    }

    T* _data = nullptr;
    size_t _size = 0;
    size_t _capacity = 0;
    bool _mapped = false;
};

} // namespace portcullis::base
