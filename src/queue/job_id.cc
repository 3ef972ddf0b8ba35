#include "portcullis/queue/job_id.hh"

#include <openssl/rand.h>

#include <cstdlib>

namespace portcullis::queue {

namespace {

constexpr char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
constexpr uint8_t invalid = 0xff;
constexpr uint64_t ms_mask = (uint64_t{1} << 48) - 1;

constexpr std::array<uint8_t, 256> make_decode_table() {
    std::array<uint8_t, 256> t{};
    t.fill(invalid);
    for (uint8_t i = 0; i < 32; ++i) {
        auto c = static_cast<uint8_t>(alphabet[i]);
        t[c] = i;
        if (c >= 'a' && c <= 'z') {
            t[c - 'a' + 'A'] = i;
        }
    }
    return t;
}

constexpr auto decode_table = make_decode_table();

uint64_t load_be64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
        v = v << 8 | p[i];
    }
    return v;
}

void store_be64(uint64_t v, uint8_t* p) {
    for (int i = 7; i >= 0; --i) {
        p[i] = static_cast<uint8_t>(v);
        v >>= 8;
    }
}

} // namespace

void JobId::format(char (&out)[job_id_text_size]) const {
    uint64_t hi = load_be64(bytes.data());
    uint64_t lo = load_be64(bytes.data() + 8);
    // Character i holds bits [5 * (25 - i), 5 * (25 - i) + 5) of the 128-bit number; the first
    // character has only 3 bits to hold.
    for (size_t i = 0; i < job_id_text_size; ++i) {
        unsigned shift = 5 * static_cast<unsigned>(job_id_text_size - 1 - i);
        uint64_t v;
        if (shift >= 64) {
            v = hi >> (shift - 64);
        } else if (shift + 5 <= 64) {
            v = lo >> shift;
        } else {
            v = lo >> shift | hi << (64 - shift);
        }
        out[i] = alphabet[v & 31];
    }
}

std::string JobId::to_string() const {
    char text[job_id_text_size];
    format(text);
    return {text, sizeof text};
}

std::optional<JobId> JobId::parse(std::string_view text) {
    if (text.size() != job_id_text_size) {
        return std::nullopt;
    }
    uint64_t hi = 0;
    uint64_t lo = 0;
    for (size_t i = 0; i < text.size(); ++i) {
        uint8_t v = decode_table[static_cast<uint8_t>(text[i])];
        // The first character carries the top 3 bits; 8..31 there would need a 129th bit.
        if (v == invalid || (i == 0 && v > 7)) {
            return std::nullopt;
        }
        hi = hi << 5 | lo >> 59;
        lo = lo << 5 | v;
    }
    JobId id;
    store_be64(hi, id.bytes.data());
    store_be64(lo, id.bytes.data() + 8);
    return id;
}

int64_t JobId::unix_ms() const {
    uint64_t ms = 0;
    for (int i = 0; i < 6; ++i) {
        ms = ms << 8 | bytes[i];
    }
    return static_cast<int64_t>(ms);
}

JobIdGenerator::JobIdGenerator(uint8_t shard) : _shard(shard) {
    std::array<uint8_t, 9> start{};
    if (RAND_bytes(start.data(), start.size()) != 1) {
        // Without randomness ids could repeat across restarts; nothing sensible can follow.
        std::abort();
    }
    *this = JobIdGenerator(shard, start);
}

JobIdGenerator::JobIdGenerator(uint8_t shard, const std::array<uint8_t, 9>& counter_start)
    : _shard(shard), _counter_low(load_be64(counter_start.data() + 1)),
      _counter_high(counter_start[0]) {}

JobId JobIdGenerator::next(int64_t unix_ns) {
    uint64_t ms = unix_ns > 0 ? static_cast<uint64_t>(unix_ns / 1'000'000) & ms_mask : 0;
    if (ms < _last_ms) {
        ms = _last_ms;
    }
    _last_ms = ms;

    JobId id;
    for (int i = 5; i >= 0; --i) {
        id.bytes[i] = static_cast<uint8_t>(ms);
        ms >>= 8;
    }
    id.bytes[6] = _shard;
    id.bytes[7] = _counter_high;
    store_be64(_counter_low, id.bytes.data() + 8);

    ++_counter_low;
    if (_counter_low == 0) {
        ++_counter_high; // wraps with the low part: the counter is modulo 2^72
    }
    return id;
}

} // namespace portcullis::queue
