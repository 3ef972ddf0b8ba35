#include "portcullis/queue/record.hh"

#include <xxhash.h>

#include <cstring>
#include <limits>

namespace portcullis::queue {

namespace {

constexpr uint8_t magic[4] = {'P', 'C', 'R', '1'};

// Offsets inside the payload.
constexpr size_t off_type = 0;
constexpr size_t off_flags = 1;
constexpr size_t off_route_len = 2;
constexpr size_t off_header_count = 4;
constexpr size_t off_source_len = 6;
constexpr size_t off_headers_len = 8;
constexpr size_t off_reserved_b = 12;
constexpr size_t off_received_at = 16;
constexpr size_t off_job_id = 24;
constexpr size_t off_peer_addr = 40;
constexpr size_t off_peer_port = 56;
constexpr size_t off_reserved_c = 58;
constexpr size_t off_reserved_d = 60;
static_assert(off_reserved_d + 4 == record_fixed_payload_size);

void store_le16(uint16_t v, uint8_t* p) {
    p[0] = static_cast<uint8_t>(v);
    p[1] = static_cast<uint8_t>(v >> 8);
}
void store_le32(uint32_t v, uint8_t* p) {
    store_le16(static_cast<uint16_t>(v), p);
    store_le16(static_cast<uint16_t>(v >> 16), p + 2);
}
void store_le64(uint64_t v, uint8_t* p) {
    store_le32(static_cast<uint32_t>(v), p);
    store_le32(static_cast<uint32_t>(v >> 32), p + 4);
}

void store_fingerprint(Fingerprint fp, uint8_t* p) {
    store_le64(fp.hi, p);
    store_le64(fp.lo, p + 8);
}
Fingerprint load_fingerprint(const uint8_t* p) {
    return {detail::load_le64(p), detail::load_le64(p + 8)};
}

// Walks the headers block: exactly `count` headers that fill exactly `block`.
bool headers_block_valid(const uint8_t* p, size_t left, uint16_t count) {
    for (uint16_t i = 0; i < count; ++i) {
        if (left < record_header_overhead) {
            return false;
        }
        size_t name_len = detail::load_le16(p);
        size_t value_len = detail::load_le32(p + 2);
        left -= record_header_overhead;
        if (name_len > left || value_len > left - name_len) {
            return false;
        }
        p += record_header_overhead + name_len + value_len;
        left -= name_len + value_len;
    }
    return left == 0;
}

std::string_view view(const uint8_t* p, size_t n) {
    return {reinterpret_cast<const char*>(p), n};
}

} // namespace

size_t job_record_head_size(std::string_view route, std::span<const http::Header> headers,
                            bool with_keys, std::string_view source) {
    size_t n = record_prefix_size + record_fixed_payload_size + (with_keys ? record_keys_size : 0) +
               source.size() + route.size();
    for (const http::Header& h : headers) {
        n += record_header_overhead + h.name.size() + h.value.size();
    }
    return n;
}

size_t encode_job_head(const JobMeta& meta, std::span<const http::Header> headers,
                       std::span<uint8_t> out) {
    constexpr size_t u16_max = std::numeric_limits<uint16_t>::max();
    constexpr size_t u32_max = std::numeric_limits<uint32_t>::max();
    if (meta.route.size() > u16_max || meta.source.size() > u16_max || headers.size() > u16_max) {
        return 0;
    }
    size_t headers_len = 0;
    for (const http::Header& h : headers) {
        if (h.name.size() > u16_max || h.value.size() > u32_max) {
            return 0;
        }
        headers_len += record_header_overhead + h.name.size() + h.value.size();
    }
    const size_t keys = meta.with_keys ? record_keys_size : 0;
    size_t head = record_prefix_size + record_fixed_payload_size + keys + meta.source.size() +
                  meta.route.size() + headers_len;
    if (head - record_prefix_size > u32_max || out.size() < head) {
        return 0;
    }

    uint8_t* p = out.data();
    std::memset(p, 0, record_prefix_size + record_fixed_payload_size + keys);
    std::memcpy(p, magic, sizeof magic);
    uint8_t* f = p + record_prefix_size;
    f[off_type] = record_type_job;
    f[off_flags] = static_cast<uint8_t>((meta.with_keys ? record_flag_keys : 0) |
                                        (meta.source.empty() ? 0 : record_flag_source));
    store_le16(static_cast<uint16_t>(meta.route.size()), f + off_route_len);
    store_le16(static_cast<uint16_t>(meta.source.size()), f + off_source_len);
    store_le16(static_cast<uint16_t>(headers.size()), f + off_header_count);
    store_le32(static_cast<uint32_t>(headers_len), f + off_headers_len);
    store_le64(static_cast<uint64_t>(meta.received_at_ns), f + off_received_at);
    std::memcpy(f + off_job_id, meta.id.bytes.data(), meta.id.bytes.size());
    std::memcpy(f + off_peer_addr, meta.peer.addr.data(), meta.peer.addr.size());
    store_le16(meta.peer.port, f + off_peer_port);

    uint8_t* w = f + record_fixed_payload_size + keys;
    if (!meta.source.empty()) {
        std::memcpy(w, meta.source.data(), meta.source.size());
        w += meta.source.size();
    }
    if (!meta.route.empty()) {
        std::memcpy(w, meta.route.data(), meta.route.size());
        w += meta.route.size();
    }
    for (const http::Header& h : headers) {
        store_le16(static_cast<uint16_t>(h.name.size()), w);
        store_le32(static_cast<uint32_t>(h.value.size()), w + 2);
        w += record_header_overhead;
        // memcpy from an empty view's data() may be a null pointer: skip empty copies.
        if (!h.name.empty()) {
            std::memcpy(w, h.name.data(), h.name.size());
            w += h.name.size();
        }
        if (!h.value.empty()) {
            std::memcpy(w, h.value.data(), h.value.size());
            w += h.value.size();
        }
    }
    return head;
}

bool set_record_keys(std::span<uint8_t> record, const RecordKeys& keys) {
    if (record.size() < record_prefix_size + record_fixed_payload_size + record_keys_size) {
        return false;
    }
    uint8_t* f = record.data() + record_prefix_size;
    if ((f[off_flags] & record_flag_keys) == 0) {
        return false;
    }
    uint8_t* k = f + record_fixed_payload_size;
    std::memset(k, 0, record_keys_size);
    uint8_t flags = static_cast<uint8_t>(record_flag_keys | (f[off_flags] & record_flag_source));
    if (keys.has_dedup) {
        flags |= record_flag_dedup;
        store_fingerprint(keys.dedup_key, k);
        store_fingerprint(keys.body, k + 16);
    }
    if (keys.has_ordering) {
        flags |= record_flag_ordering;
        store_fingerprint(keys.ordering_key, k + 32);
        store_le64(static_cast<uint64_t>(keys.ordering_ts), k + 48);
    }
    f[off_flags] = flags;
    return true;
}

void seal_record(std::span<uint8_t> record) {
    if (record.size() < record_prefix_size) {
        return;
    }
    size_t payload = record.size() - record_prefix_size;
    store_le32(static_cast<uint32_t>(payload), record.data() + 4);
    store_le64(XXH3_64bits(record.data() + record_prefix_size, payload), record.data() + 8);
}

std::vector<uint8_t> make_job_record(const JobMeta& meta, std::span<const http::Header> headers,
                                     std::string_view body) {
    size_t head = job_record_head_size(meta.route, headers, meta.with_keys, meta.source);
    if (body.size() > std::numeric_limits<uint32_t>::max() - (head - record_prefix_size)) {
        return {};
    }
    std::vector<uint8_t> record(head + body.size());
    if (encode_job_head(meta, headers, record) != head) {
        return {};
    }
    if (!body.empty()) {
        std::memcpy(record.data() + head, body.data(), body.size());
    }
    seal_record(record);
    return record;
}

std::string_view describe(DecodeStatus s) {
    switch (s) {
    case DecodeStatus::ok:
        return "ok";
    case DecodeStatus::truncated:
        return "truncated";
    case DecodeStatus::bad_magic:
        return "bad_magic";
    case DecodeStatus::bad_length:
        return "bad_length";
    case DecodeStatus::bad_checksum:
        return "bad_checksum";
    case DecodeStatus::bad_fields:
        return "bad_fields";
    }
    return "unknown";
}

DecodeStatus decode_record(std::span<const uint8_t> in, JobRecord& out, size_t& record_size) {
    if (in.size() < record_prefix_size) {
        return DecodeStatus::truncated;
    }
    const uint8_t* p = in.data();
    if (std::memcmp(p, magic, sizeof magic) != 0) {
        return DecodeStatus::bad_magic;
    }
    size_t payload_len = detail::load_le32(p + 4);
    if (payload_len < record_fixed_payload_size) {
        return DecodeStatus::bad_length;
    }
    if (payload_len > in.size() - record_prefix_size) {
        return DecodeStatus::truncated;
    }
    const uint8_t* f = p + record_prefix_size;
    if (XXH3_64bits(f, payload_len) != detail::load_le64(p + 8)) {
        return DecodeStatus::bad_checksum;
    }

    size_t route_len = detail::load_le16(f + off_route_len);
    uint16_t header_count = detail::load_le16(f + off_header_count);
    size_t headers_len = detail::load_le32(f + off_headers_len);
    size_t variable = payload_len - record_fixed_payload_size;
    const uint8_t flags = f[off_flags];
    const bool has_keys = (flags & record_flag_keys) != 0;
    const size_t keys = has_keys ? record_keys_size : 0;
    const size_t source_len = detail::load_le16(f + off_source_len);
    const bool has_source = (flags & record_flag_source) != 0;
    if (f[off_type] != record_type_job ||
        (flags & ~(record_flag_keys | record_flag_dedup | record_flag_ordering |
                   record_flag_source)) != 0 ||
        (!has_keys && (flags & ~record_flag_source) != 0) || has_source != (source_len != 0) ||
        keys > variable) {
        return DecodeStatus::bad_fields;
    }
    variable -= keys;
    if (detail::load_le32(f + off_reserved_b) != 0 || detail::load_le16(f + off_reserved_c) != 0 ||
        detail::load_le32(f + off_reserved_d) != 0 || source_len > variable) {
        return DecodeStatus::bad_fields;
    }
    variable -= source_len;
    if (route_len > variable || headers_len > variable - route_len) {
        return DecodeStatus::bad_fields;
    }
    const uint8_t* k = f + record_fixed_payload_size;
    const uint8_t* source = k + keys;
    const uint8_t* route = source + source_len;
    const uint8_t* headers = route + route_len;
    if (!headers_block_valid(headers, headers_len, header_count)) {
        return DecodeStatus::bad_fields;
    }
    const uint8_t* body = headers + headers_len;

    std::memcpy(out.id.bytes.data(), f + off_job_id, out.id.bytes.size());
    out.route = view(route, route_len);
    out.source = view(source, source_len);
    out.received_at_ns = static_cast<int64_t>(detail::load_le64(f + off_received_at));
    std::memcpy(out.peer.addr.data(), f + off_peer_addr, out.peer.addr.size());
    out.peer.port = detail::load_le16(f + off_peer_port);
    out.keys = RecordKeys{};
    if ((flags & record_flag_dedup) != 0) {
        out.keys.has_dedup = true;
        out.keys.dedup_key = load_fingerprint(k);
        out.keys.body = load_fingerprint(k + 16);
    }
    if ((flags & record_flag_ordering) != 0) {
        out.keys.has_ordering = true;
        out.keys.ordering_key = load_fingerprint(k + 32);
        out.keys.ordering_ts = static_cast<int64_t>(detail::load_le64(k + 48));
    }
    out.header_count = header_count;
    out.headers_block = view(headers, headers_len);
    out.body = view(body, variable - route_len - headers_len);
    record_size = record_prefix_size + payload_len;
    return DecodeStatus::ok;
}

} // namespace portcullis::queue
