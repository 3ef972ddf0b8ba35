// Appends text to a caller's buffer without overflowing it: the writers of this module build
// heads with it and return 0 when they do not fit. Private to src/http.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace portcullis::http {

class Writer {
public:
    explicit Writer(std::span<char> out) : _out(out) {}
    void put(std::string_view s) {
        if (s.empty()) {
            return; // its data() may be null, which memcpy must not be given
        }
        if (s.size() > _out.size() - _n) {
            _overflow = true;
            return;
        }
        std::memcpy(_out.data() + _n, s.data(), s.size());
        _n += s.size();
    }
    void put_uint(uint64_t v) {
        char tmp[20];
        char* p = tmp + sizeof tmp;
        do {
            *--p = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        put({p, static_cast<size_t>(tmp + sizeof tmp - p)});
    }
    size_t finish() const { return _overflow ? 0 : _n; }

private:
    std::span<char> _out;
    size_t _n = 0;
    bool _overflow = false;
};

} // namespace portcullis::http
