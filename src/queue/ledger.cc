#include "portcullis/queue/ledger.hh"

#include "portcullis/queue/segment.hh"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace portcullis::queue {

namespace {

constexpr uint8_t magic[4] = {'P', 'C', 'L', '1'};

constexpr size_t off_kind = 4;
constexpr size_t off_reserved = 5;
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
    uint8_t kind = in[off_kind];
    if (kind == 0 || kind > max_kind || in[off_reserved] != 0) {
        return Check::unreadable;
    }
    return Check::ok;
}

LedgerOp decode_checked(const uint8_t* p) {
    LedgerOp op;
    op.kind = static_cast<LedgerOp::Kind>(p[off_kind]);
    op.attempts = load_le16(p + off_attempts);
    op.at_ns = static_cast<int64_t>(load_le64(p + off_at));
    op.due_ns = static_cast<int64_t>(load_le64(p + off_due));
    std::memcpy(op.id.bytes.data(), p + off_id, op.id.bytes.size());
    return op;
}

std::string errno_message(const std::string& what, int err) {
    return what + ": " + std::strerror(err);
}

// Fills buf from fd at offset until it is full or the file ends; returns the bytes read or -1.
ssize_t pread_full(int fd, uint8_t* buf, size_t size, uint64_t offset) {
    size_t have = 0;
    while (have < size) {
        ssize_t n = ::pread(fd, buf + have, size - have, static_cast<off_t>(offset + have));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -1;
        }
        if (n == 0) {
            break;
        }
        have += static_cast<size_t>(n);
    }
    return static_cast<ssize_t>(have);
}

bool write_full(int fd, const uint8_t* p, size_t size) {
    while (size > 0) {
        ssize_t n = ::write(fd, p, size);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return false;
        }
        p += n;
        size -= static_cast<size_t>(n);
    }
    return true;
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
    p[off_reserved] = 0;
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
    auto size = static_cast<uint64_t>(st.st_size);
    r.ops.reserve(size / ledger_record_size);

    std::vector<uint8_t> buf(read_chunk_records * ledger_record_size);
    uint64_t pos = 0;
    bool stopped = false;
    while (!stopped) {
        ssize_t n = pread_full(fd, buf.data(), buf.size(), pos);
        if (n < 0) {
            r.error = errno_message("cannot read ledger " + path, errno);
            ::close(fd);
            return r;
        }
        auto got = static_cast<size_t>(n);
        size_t at = 0;
        for (; at + ledger_record_size <= got; at += ledger_record_size) {
            std::span<const uint8_t> rec(buf.data() + at, ledger_record_size);
            Check c = check_record(rec);
            if (c == Check::unreadable) {
                r.error = "ledger " + path + ": record at byte " + std::to_string(pos + at) +
                          " has a valid checksum but an unknown kind or reserved bits (written" +
                          " by a newer version?); not modified";
                ::close(fd);
                return r;
            }
            if (c == Check::torn) {
                stopped = true;
                break;
            }
            r.ops.push_back(decode_checked(rec.data()));
        }
        pos += at;
        // A short read ends the file; a partial record there is a torn one.
        if (got < buf.size()) {
            stopped = true;
        }
    }
    // The size seen by fstat may be stale if someone appends meanwhile; nobody should.
    r.valid_bytes = pos;
    r.cut_bytes = size > pos ? size - pos : 0;
    if (r.cut_bytes != 0) {
        if (::ftruncate(fd, static_cast<off_t>(pos)) != 0) {
            r.error = errno_message("cannot truncate ledger " + path, errno);
        } else if (::fdatasync(fd) != 0) {
            r.error = errno_message("cannot fdatasync ledger " + path, errno);
        }
    }
    ::close(fd);
    return r;
}

std::string write_ledger_snapshot(const std::string& path, const std::vector<LedgerOp>& ops) {
    std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        return errno_message("cannot create " + tmp, errno);
    }
    std::vector<uint8_t> buf(read_chunk_records * ledger_record_size);
    std::string error;
    for (size_t i = 0; i < ops.size() && error.empty();) {
        size_t n = 0;
        for (; i < ops.size() && n < buf.size(); ++i, n += ledger_record_size) {
            encode_ledger_op(
                ops[i], std::span<uint8_t, ledger_record_size>(buf.data() + n, ledger_record_size));
        }
        if (!write_full(fd, buf.data(), n)) {
            error = errno_message("cannot write " + tmp, errno);
        }
    }
    if (error.empty() && ::fdatasync(fd) != 0) {
        error = errno_message("cannot fdatasync " + tmp, errno);
    }
    if (::close(fd) != 0 && error.empty()) {
        error = errno_message("cannot close " + tmp, errno);
    }
    if (error.empty() && ::rename(tmp.c_str(), path.c_str()) != 0) {
        error = errno_message("cannot rename " + tmp + " to " + path, errno);
    }
    if (!error.empty()) {
        ::unlink(tmp.c_str());
        return error;
    }
    return sync_dir(std::filesystem::path(path).parent_path().native());
}

} // namespace portcullis::queue
