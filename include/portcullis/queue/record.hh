// Spool records: one record per accepted job, appended back to back to a segment file.
//
// Writing (the shard's writer, per request: no allocation, the buffer is the caller's):
//   size_t head = job_record_head_size(route, headers);
//   size_t n = encode_job_head(meta, headers, buf.first(head));
//   std::memcpy(buf.data() + n, body.data(), body.size());     // or received straight there
//   seal_record(buf.first(n + body.size()));
//
// Reading (recovery, consumers, offline tools):
//   JobRecord rec;
//   size_t size;
//   if (decode_record(bytes, rec, size) == DecodeStatus::ok) {
//       rec.for_each_header([](std::string_view name, std::string_view value) { ... });
//   }
//
// Layout, little-endian:
//   prefix (16 bytes, not covered by the checksum):
//     u8[4] magic "PCR1", u32 payload_length, u64 checksum = XXH3_64bits(payload)
//   payload:
//     u8 type (1 = job), u8 flags (0), u16 route_len, u16 header_count, u16 source_len (0),
//     u32 headers_len, u32 reserved (0), i64 received_at_ns (Unix), u8[16] job id,
//     u8[16] peer address, u16 peer port, u16 reserved (0), u32 reserved (0),
//     keys block, only when flags has record_flag_keys (routes with dedup or ordering):
//       u8[16] dedup key fingerprint, u8[16] body fingerprint, u8[16] ordering key fingerprint,
//       i64 ordering timestamp; flags record_flag_dedup / record_flag_ordering say which hold
//       values (the rest is zero),
//     source, only when flags has record_flag_source (a job enqueued through the control
//       plane, POST /v1/routes/{route}/jobs): the name of the token that sent it, source_len
//       bytes (1 or more; source_len is 0 without the flag); the peer is then the control-plane
//       client's,
//     route, headers block (per header: u16 name_len, u32 value_len, name, value),
//     body (everything up to the end of the payload).
// The keys are kept so that a restart rebuilds the dedup and ordering tables from the spool
// alone, whatever the configuration says by then.
// Reserved fields must be zero, so that later versions can give them meaning and older readers
// refuse rather than misread such records.
#pragma once

#include "portcullis/base/address.hh"
#include "portcullis/http/header.hh"
#include "portcullis/queue/fingerprint.hh"
#include "portcullis/queue/job_id.hh"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace portcullis::queue {

constexpr size_t record_prefix_size = 16;
// The fixed fields at the start of every payload.
constexpr size_t record_fixed_payload_size = 64;
// Per header in the headers block: u16 name_len, u32 value_len.
constexpr size_t record_header_overhead = 6;
constexpr uint8_t record_type_job = 1;
constexpr uint8_t record_flag_dedup = 0x01;
constexpr uint8_t record_flag_ordering = 0x02;
constexpr uint8_t record_flag_keys = 0x04;   // the keys block is present
constexpr uint8_t record_flag_source = 0x08; // enqueued by the control plane: a source name
constexpr size_t record_keys_size = 56;

// What a job was deduplicated and ordered by (fingerprints, never the values themselves).
struct RecordKeys {
    bool has_dedup = false;
    bool has_ordering = false;
    Fingerprint dedup_key;
    Fingerprint body;
    Fingerprint ordering_key;
    int64_t ordering_ts = 0;
};

using base::PeerAddress;

struct JobMeta {
    JobId id;
    std::string_view route;
    int64_t received_at_ns = 0;
    PeerAddress peer;
    bool with_keys = false; // reserve the keys block (set_record_keys fills it)
    // The control-plane token that enqueued the job (POST /v1/routes/{route}/jobs); empty for a
    // webhook of the public plane.
    std::string_view source;
};

// Bytes of prefix + fixed payload fields + keys + source + route + headers block: everything
// before the body.
size_t job_record_head_size(std::string_view route, std::span<const http::Header> headers,
                            bool with_keys = false, std::string_view source = {});

// Writes everything before the body into out; the prefix's length and checksum are left zero
// for seal_record. Returns the bytes written (job_record_head_size), or 0 if out is too small or
// a length does not fit its field (route, source or a header name over 65535 bytes, more than
// 65535 headers, a payload over 4 GiB): limits far above what the HTTP layer admits.
size_t encode_job_head(const JobMeta& meta, std::span<const http::Header> headers,
                       std::span<uint8_t> out);

// Fills the keys block of a head encoded with_keys (before seal_record); false if the record has
// no keys block.
bool set_record_keys(std::span<uint8_t> record, const RecordKeys& keys);

// The caller appended the body right after the head: fills in payload_length and checksum.
// Precondition: record is head + body exactly, at least the head and under 4 GiB.
void seal_record(std::span<uint8_t> record);

// A whole sealed record in a new vector: for cold paths (tools, tests); empty if a length does
// not fit its field (see encode_job_head).
std::vector<uint8_t> make_job_record(const JobMeta& meta, std::span<const http::Header> headers,
                                     std::string_view body);

enum class DecodeStatus : uint8_t {
    ok,
    truncated,    // fewer bytes than the prefix, or than the payload length says
    bad_magic,    // not "PCR1": not the start of a record
    bad_length,   // payload shorter than its fixed fields
    bad_checksum, // the payload is not what was written
    bad_fields,   // checksum right but the contents inconsistent, or a type/flag/reserved
                  // value this version does not know
};

// The enumerator's name ("bad_checksum"): a stable code for logs and tool output.
std::string_view describe(DecodeStatus s);

namespace detail {

inline uint16_t load_le16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] | p[1] << 8);
}
inline uint32_t load_le32(const uint8_t* p) {
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
inline uint64_t load_le64(const uint8_t* p) {
    return uint64_t{load_le32(p)} | uint64_t{load_le32(p + 4)} << 32;
}

} // namespace detail

// Views into the decoded bytes: valid as long as they are.
struct JobRecord {
    JobId id;
    std::string_view route;
    int64_t received_at_ns = 0;
    PeerAddress peer;
    RecordKeys keys; // all false and zero without a keys block
    // The token that enqueued it through the control plane; empty for a public-plane webhook.
    std::string_view source;
    uint16_t header_count = 0;
    std::string_view headers_block;
    std::string_view body;

    // Calls f(std::string_view name, std::string_view value) for each stored header in order.
    // decode_record has checked the block; the walk still stays inside it whatever it holds.
    template <typename F>
    void for_each_header(F&& f) const {
        auto p = reinterpret_cast<const uint8_t*>(headers_block.data());
        size_t left = headers_block.size();
        for (uint16_t i = 0; i < header_count; ++i) {
            if (left < record_header_overhead) {
                return;
            }
            size_t name_len = detail::load_le16(p);
            size_t value_len = detail::load_le32(p + 2);
            p += record_header_overhead;
            left -= record_header_overhead;
            if (name_len > left || value_len > left - name_len) {
                return;
            }
            f(std::string_view(reinterpret_cast<const char*>(p), name_len),
              std::string_view(reinterpret_cast<const char*>(p) + name_len, value_len));
            p += name_len + value_len;
            left -= name_len + value_len;
        }
    }
};

// Decodes the record at the start of in; bytes after it are ignored. On ok, out views into in
// and record_size is prefix + payload length. Never reads outside in, whatever the bytes; on
// any other status out and record_size are unspecified.
DecodeStatus decode_record(std::span<const uint8_t> in, JobRecord& out, size_t& record_size);

} // namespace portcullis::queue
