// Job ids: 128 bits that sort by time, unique across shards and restarts, with a URL-safe text
// form of 26 lowercase Crockford base32 characters.
//
//   JobIdGenerator ids(shard);          // once per shard, at start-up
//   JobId id = ids.next(now_unix_ns);   // per request: no syscall, no lock, no allocation
//   char text[26];
//   id.format(text);                    // "01jd3v8x7e0k4s9q2m6b5n1c8h"
//
// Layout, big-endian so that byte order, numeric order and text order agree:
//   bytes 0..5   Unix milliseconds (48 bits)
//   byte  6      shard
//   bytes 7..15  per-shard counter (72 bits), started from a random value
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace portcullis::queue {

constexpr size_t job_id_text_size = 26;

struct JobId {
    std::array<uint8_t, 16> bytes{};

    // 26 characters of 0-9a-hjkmnp-tv-z; the first one is 0-7 (128 bits in 130).
    void format(char (&out)[job_id_text_size]) const;
    std::string to_string() const;
    // Strict: exactly 26 characters of the alphabet, either case, first one 0-7. The Crockford
    // aliases (i, l, o) are rejected, so every id has exactly one spelling (modulo case).
    static std::optional<JobId> parse(std::string_view text);

    int64_t unix_ms() const;
    uint8_t shard() const { return bytes[6]; }

    // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads the defaulted <=>.
    auto operator<=>(const JobId&) const = default;
};

// One per shard, used by that shard's thread only.
class JobIdGenerator {
public:
    // Seeds the counter from RAND_bytes, so that ids stay unique across restarts even when the
    // clock repeats a millisecond. Aborts if the system has no randomness (start-up only).
    explicit JobIdGenerator(uint8_t shard);
    // For tests: a fixed counter start (big-endian, 72 bits).
    JobIdGenerator(uint8_t shard, const std::array<uint8_t, 9>& counter_start);

    // The time part never goes backwards: if the clock steps back, ids keep the last
    // millisecond seen until it catches up, so ids from one generator are strictly increasing
    // (until the 72-bit counter wraps, once in 2^72 ids).
    JobId next(int64_t unix_ns);

private:
    uint8_t _shard;
    uint64_t _last_ms = 0;
    uint64_t _counter_low = 0; // bits 0..63 of the counter
    uint8_t _counter_high = 0; // bits 64..71
};

} // namespace portcullis::queue
