// Spool records and segments come back from disk at start-up and in the offline tools; a torn
// write, a bad sector or a body that happens to contain record-like bytes must never crash the
// decoder or the scanner, nor make either read outside the image.
//
// Each input is read four ways: as one record; as one record resealed (length and checksum made
// right, so that mutations reach the field checks behind the checksum); as a segment's records
// after a valid header; and as a whole segment image, header included.
#include "portcullis/queue/record.hh"
#include "portcullis/queue/segment.hh"

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

using namespace portcullis::queue;

namespace {

// Reads every byte the decoder hands out, so that ASan sees any view that escapes the input.
uint64_t touch(const JobRecord& rec) {
    uint64_t sum = rec.header_count + static_cast<uint64_t>(rec.received_at_ns) + rec.peer.port;
    for (uint8_t b : rec.id.bytes) {
        sum += b;
    }
    for (uint8_t b : rec.peer.addr) {
        sum += b;
    }
    auto add = [&](std::string_view s) {
        for (char c : s) {
            sum += static_cast<uint8_t>(c);
        }
    };
    add(rec.route);
    add(rec.headers_block);
    add(rec.body);
    uint16_t headers = 0;
    rec.for_each_header([&](std::string_view name, std::string_view value) {
        add(name);
        add(value);
        ++headers;
    });
    // decode_record checked the block: every counted header must be there.
    if (headers != rec.header_count) {
        __builtin_trap();
    }
    return sum;
}

void check_decode(std::span<const uint8_t> in) {
    JobRecord rec;
    size_t size = 0;
    if (decode_record(in, rec, size) == DecodeStatus::ok) {
        if (size < record_prefix_size + record_fixed_payload_size || size > in.size()) {
            __builtin_trap();
        }
        touch(rec);
    }
}

void check_scan(std::span<const uint8_t> image) {
    uint64_t records = 0;
    ScanReport r = scan_segment(image, [&](uint64_t offset, const JobRecord& rec) {
        if (offset < segment_header_size || offset >= image.size()) {
            __builtin_trap();
        }
        touch(rec);
        ++records;
    });
    // The report must account for every byte after the header exactly once.
    uint64_t corrupt = 0;
    for (const CorruptRegion& c : r.corrupt) {
        corrupt += c.length;
    }
    if (records != r.records || r.size != image.size() || r.valid_end > image.size() ||
        (image.size() >= segment_header_size && r.valid_end + r.tail_bytes != image.size()) ||
        corrupt > image.size()) {
        __builtin_trap();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::span<const uint8_t> in(data, size);
    check_decode(in);

    if (size >= record_prefix_size && size - record_prefix_size <= UINT32_MAX) {
        std::vector<uint8_t> sealed(data, data + size);
        sealed[0] = 'P';
        sealed[1] = 'C';
        sealed[2] = 'R';
        sealed[3] = '1';
        seal_record(sealed);
        check_decode(sealed);
    }

    std::vector<uint8_t> image(segment_header_size);
    encode_segment_header(0, std::span<uint8_t, segment_header_size>(image.data(), image.size()));
    image.insert(image.end(), data, data + size);
    check_scan(image);

    check_scan(in);
    return 0;
}
