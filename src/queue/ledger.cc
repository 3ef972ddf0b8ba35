#include "portcullis/queue/ledger.hh"

#include "portcullis/base/file.hh"
#include "portcullis/queue/segment.hh"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace portcullis::queue {

namespace {

using base::errno_message;

constexpr uint8_t magic[4] = {'P', 'C', 'L', '1'};

constexpr size_t off_kind = 4;
constexpr size_t off_lane = 5;
constexpr size_t off_attempts = 6;
constexpr size_t off_at = 8;
constexpr size_t off_due = 16;
constexpr size_t off_id = 24;
constexpr size_t off_checksum = 40;
static_assert(off_checksum + 8 == ledger_record_size);

constexpr uint8_t max_kind = static_cast<uint8_t>(LedgerOp::Kind::expire);

// Records read per pread at recovery: about 1 MiB, whole records only.
constexpr size_t read_chunk_records = 21845;

void store_le16(uint16_t v, uint8_t* p) {
    p[0] = static_cast<uint8_t>(v);
    p[1] = static_cast<uint8_t>(v >> 8);
}
void store_le64(uint64_t v, uint8_t* p) {
    for (int i = 0; i < 8; ++i) {
        p[i] = static_cast<uint8_t>(v >> (8 * i));
    }
}
uint16_t load_le16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] | p[1] << 8);
}
uint64_t load_le64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) {
        v = v << 8 | p[i];
    }
    return v;
}

enum class Check : uint8_t { ok, torn, unreadable };

// torn: what a crash mid-write leaves (partial, bad magic, bad checksum); unreadable: a whole
// record with a right checksum that this version does not understand.
Check check_record(std::span<const uint8_t> in) {
    if (in.size() < ledger_record_size || std::memcmp(in.data(), magic, sizeof magic) != 0 ||
        XXH3_64bits(in.data(), off_checksum) != load_le64(in.data() + off_checksum)) {
        return Check::torn;
    }
    // Any lane reads: which lanes mean something is the store's business (lanes.hh).
    uint8_t kind = in[off_kind];
    if (kind == 0 || kind > max_kind) {
        return Check::unreadable;
    }
    return Check::ok;
}

LedgerOp decode_checked(const uint8_t* p) {
    LedgerOp op;
    op.kind = static_cast<LedgerOp::Kind>(p[off_kind]);
    op.lane = p[off_lane];
    op.attempts = load_le16(p + off_attempts);
    op.at_ns = static_cast<int64_t>(load_le64(p + off_at));
    op.due_ns = static_cast<int64_t>(load_le64(p + off_due));
    std::memcpy(op.id.bytes.data(), p + off_id, op.id.bytes.size());
    return op;
}

} // namespace

std::string_view kind_name(LedgerOp::Kind kind) {
    switch (kind) {
    case LedgerOp::Kind::lease:
        return "lease";
    case LedgerOp::Kind::ack:
        return "ack";
    case LedgerOp::Kind::nack:
        return "nack";
    case LedgerOp::Kind::dead:
        return "dead";
    case LedgerOp::Kind::replay:
        return "replay";
    case LedgerOp::Kind::expire:
        return "expire";
    }
    return "unknown";
}

void encode_ledger_op(const LedgerOp& op, std::span<uint8_t, ledger_record_size> out) {
    uint8_t* p = out.data();
    std::memcpy(p, magic, sizeof magic);
    p[off_kind] = static_cast<uint8_t>(op.kind);
    p[off_lane] = op.lane;
    store_le16(op.attempts, p + off_attempts);
    store_le64(static_cast<uint64_t>(op.at_ns), p + off_at);
    store_le64(static_cast<uint64_t>(op.due_ns), p + off_due);
    std::memcpy(p + off_id, op.id.bytes.data(), op.id.bytes.size());
    store_le64(XXH3_64bits(p, off_checksum), p + off_checksum);
}

std::optional<LedgerOp> decode_ledger_op(std::span<const uint8_t> in) {
    if (check_record(in) != Check::ok) {
        return std::nullopt;
    }
    return decode_checked(in.data());
}

LedgerScan scan_ledger(uint64_t size, const LedgerRead& read, std::string& error) {
    LedgerScan r;
    r.size = size;
    r.ops.reserve(size / ledger_record_size);
    std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(
        read_chunk_records * ledger_record_size, std::max<uint64_t>(size, ledger_record_size))));
    uint64_t buf_from = 0; // the file offset of buf[0]
    size_t buf_len = 0;
    // Makes buf hold [pos, pos + ledger_record_size) if the file has it; false at the end.
    auto window = [&](uint64_t pos) {
        if (pos >= buf_from && pos + ledger_record_size <= buf_from + buf_len) {
            return true;
        }
        if (pos + ledger_record_size > size) {
            return false;
        }
        buf_from = pos;
        buf_len = 0;
        const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - pos));
        while (buf_len < want) {
            ssize_t n = read(buf.data() + buf_len, want - buf_len, pos + buf_len);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0) {
                error = std::strerror(errno);
                return false;
            }
            if (n == 0) {
                break;
            }
            buf_len += static_cast<size_t>(n);
        }
        return buf_len >= ledger_record_size;
    };

    uint64_t pos = 0;
    // Where the damage being skipped started; none while the records check.
    constexpr uint64_t none = UINT64_MAX;
    uint64_t damage_from = none;
    while (window(pos)) {
        const uint8_t* p = buf.data() + (pos - buf_from);
        const Check c = check_record({p, ledger_record_size});
        if (c == Check::ok) {
            if (damage_from != none) {
                r.damaged.push_back({damage_from, pos - damage_from});
                damage_from = none;
            }
            r.ops.push_back(decode_checked(p));
            pos += ledger_record_size;
            r.valid_end = pos;
            continue;
        }
        if (c == Check::unreadable) {
            r.unreadable_at = pos;
            break;
        }
        if (damage_from == none) {
            damage_from = pos;
        }
        // Resync: the next offset that starts with the magic, checked in the next round.
        const uint8_t* end = buf.data() + buf_len;
        const uint8_t* hit = p + 1;
        while (hit < end) {
            hit = static_cast<const uint8_t*>(std::memchr(hit, magic[0], end - hit));
            if (hit == nullptr) {
                hit = end;
                break;
            }
            if (hit + sizeof magic > end || std::memcmp(hit, magic, sizeof magic) == 0) {
                break;
            }
            ++hit;
        }
        // A candidate cut off at the window's end is read again at the start of the next one.
        pos = buf_from + static_cast<uint64_t>(hit - buf.data());
    }
    if (!error.empty()) {
        return r;
    }
    if (!r.unreadable_at) {
        r.tail_bytes = size - r.valid_end;
    }
    if (damage_from != none && r.unreadable_at) {
        r.damaged.push_back({damage_from, *r.unreadable_at - damage_from});
    }
    return r;
}

LedgerScan scan_ledger(std::span<const uint8_t> image) {
    std::string error;
    return scan_ledger(
        image.size(),
        [&](uint8_t* buf, size_t n, uint64_t offset) -> ssize_t {
            if (offset >= image.size()) {
                return 0;
            }
            const size_t k = std::min<size_t>(n, image.size() - offset);
            std::memcpy(buf, image.data() + offset, k);
            return static_cast<ssize_t>(k);
        },
        error);
}

LedgerRecovery recover_ledger(const std::string& path) {
    LedgerRecovery r;
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT) {
            r.error = errno_message("cannot open ledger " + path, errno);
        }
        return r;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        r.error = errno_message("cannot stat ledger " + path, errno);
        ::close(fd);
        return r;
    }
    std::string read_error;
    LedgerScan scan = scan_ledger(
        static_cast<uint64_t>(st.st_size),
        [fd](uint8_t* buf, size_t n, uint64_t offset) {
            return ::pread(fd, buf, n, static_cast<off_t>(offset));
        },
        read_error);
    if (!read_error.empty()) {
        r.error = "cannot read ledger " + path + ": " + read_error;
        ::close(fd);
        return r;
    }
    if (scan.unreadable_at) {
        r.error = "ledger " + path + ": record at byte " + std::to_string(*scan.unreadable_at) +
                  " has a valid checksum but an unknown kind (written" +
                  " by a newer version?); not modified";
        ::close(fd);
        return r;
    }
    r.ops = std::move(scan.ops);
    r.damaged = std::move(scan.damaged);
    r.valid_bytes = scan.valid_end;
    r.cut_bytes = scan.tail_bytes;
    if (r.cut_bytes != 0) {
        if (::ftruncate(fd, static_cast<off_t>(r.valid_bytes)) != 0) {
            r.error = errno_message("cannot truncate ledger " + path, errno);
        } else if (::fdatasync(fd) != 0) {
            r.error = errno_message("cannot fdatasync ledger " + path, errno);
        }
    }
    ::close(fd);
    return r;
}

std::string write_ledger_snapshot(const std::string& path, const std::vector<LedgerOp>& ops) {
    return base::replace_file(path, [&](int fd) {
        std::vector<uint8_t> buf(read_chunk_records * ledger_record_size);
        for (size_t i = 0; i < ops.size();) {
            size_t n = 0;
            for (; i < ops.size() && n < buf.size(); ++i, n += ledger_record_size) {
                encode_ledger_op(ops[i], std::span<uint8_t, ledger_record_size>(
                                             buf.data() + n, ledger_record_size));
            }
            if (!base::write_all(fd, buf.data(), n)) {
                return false;
            }
        }
        return true;
    });
}

} // namespace portcullis::queue
