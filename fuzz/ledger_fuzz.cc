// The ledger comes back from disk at every start and in `spool verify`; a torn append, a bad
// sector or a stray write must never crash the scanner, make it read outside the file, or make
// it lose a valid record that stands whole and apart from the damage.
//
// Each input is scanned twice: at once, and through a reader that returns at most a few bytes a
// call (the refill path of a file read in chunks); both scans must agree. Then the invariants:
// every op found re-encodes to a record that checks; the damaged stretches lie inside the file,
// in order, apart from each other; the tail is what lies after the last valid record.
#include "fuzz_check.hh"

#include "portcullis/queue/ledger.hh"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

using namespace portcullis::queue;

using portcullis::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::span<const uint8_t> image(data, size);
    const LedgerScan whole = scan_ledger(image);

    const size_t step = size == 0 ? 1 : 1 + data[0] % 7;
    std::string error;
    const LedgerScan trickled = scan_ledger(
        size,
        [&](uint8_t* buf, size_t n, uint64_t offset) -> ssize_t {
            check(offset < size);
            const size_t k = std::min({n, step, size - static_cast<size_t>(offset)});
            std::memcpy(buf, data + offset, k);
            return static_cast<ssize_t>(k);
        },
        error);
    check(error.empty());
    check(trickled.ops == whole.ops && trickled.valid_end == whole.valid_end &&
          trickled.tail_bytes == whole.tail_bytes &&
          trickled.unreadable_at == whole.unreadable_at &&
          trickled.damaged.size() == whole.damaged.size());

    check(whole.size == size && whole.valid_end <= size);
    check(whole.ops.size() * ledger_record_size <= whole.valid_end);
    if (!whole.unreadable_at) {
        check(whole.tail_bytes == size - whole.valid_end);
    }
    uint64_t last_end = 0;
    for (const LedgerDamage& d : whole.damaged) {
        check(d.length != 0 && d.offset >= last_end && d.offset + d.length <= size);
        last_end = d.offset + d.length;
    }
    uint8_t record[ledger_record_size];
    for (const LedgerOp& op : whole.ops) {
        encode_ledger_op(op, std::span<uint8_t, ledger_record_size>(record, ledger_record_size));
        const std::optional<LedgerOp> back = decode_ledger_op(record);
        check(back.has_value() && *back == op);
    }
    return 0;
}
