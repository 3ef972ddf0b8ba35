#include "portcullis/queue/segment.hh"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>

namespace portcullis::queue {

namespace {

constexpr std::string_view shard_dir_prefix = "shard-";
constexpr std::string_view segment_suffix = ".seg";
constexpr size_t seq_digits = 16;

std::optional<uint32_t> parse_shard_dir(std::string_view name) {
    if (!name.starts_with(shard_dir_prefix)) {
        return std::nullopt;
    }
    std::string_view digits = name.substr(shard_dir_prefix.size());
    // Only the spelling segment_path writes, so that two folders never name one shard.
    if (digits.empty() || digits.size() > 10 || (digits.size() > 1 && digits[0] == '0')) {
        return std::nullopt;
    }
    uint64_t v = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (v > UINT32_MAX) {
        return std::nullopt;
    }
    return static_cast<uint32_t>(v);
}

std::optional<uint64_t> parse_segment_name(std::string_view name) {
    if (name.size() != seq_digits + segment_suffix.size() || !name.ends_with(segment_suffix)) {
        return std::nullopt;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < seq_digits; ++i) {
        char c = name[i];
        uint64_t d;
        if (c >= '0' && c <= '9') {
            d = static_cast<uint64_t>(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            d = static_cast<uint64_t>(c - 'a') + 10;
        } else {
            return std::nullopt;
        }
        v = v << 4 | d;
    }
    return v;
}

using base::errno_message;

// Cheap checks on the fixed fields, so that resync does not checksum every "PCR1" that happens
// to appear inside a body: those bytes are the sender's, and could be crafted to make the scan
// quadratic.
bool plausible_record_start(std::span<const uint8_t> in) {
    if (in.size() < record_prefix_size + record_fixed_payload_size ||
        std::memcmp(in.data(), "PCR1", 4) != 0) {
        return false;
    }
    size_t payload_len = detail::load_le32(in.data() + 4);
    if (payload_len < record_fixed_payload_size || payload_len > in.size() - record_prefix_size) {
        return false;
    }
    const uint8_t* f = in.data() + record_prefix_size;
    size_t route_len = detail::load_le16(f + 2);
    size_t headers_len = detail::load_le32(f + 8);
    const uint8_t flags = f[1];
    const size_t keys = (flags & record_flag_keys) != 0 ? record_keys_size : 0;
    const bool flags_known =
        (flags & ~(record_flag_keys | record_flag_dedup | record_flag_ordering)) == 0 &&
        (keys != 0 || flags == 0);
    return f[0] == record_type_job && flags_known &&
           route_len + headers_len + keys <= payload_len - record_fixed_payload_size &&
           std::all_of(f + 6, f + 8, [](uint8_t b) { return b == 0; }) &&
           std::all_of(f + 12, f + 16, [](uint8_t b) { return b == 0; }) &&
           std::all_of(f + 58, f + 64, [](uint8_t b) { return b == 0; });
}

// The first offset >= from where a record decodes, or image.size().
size_t find_next_record(std::span<const uint8_t> image, size_t from) {
    JobRecord rec;
    size_t size = 0;
    for (size_t pos = from; pos + record_prefix_size <= image.size(); ++pos) {
        const void* hit = std::memchr(image.data() + pos, 'P', image.size() - pos);
        if (hit == nullptr) {
            break;
        }
        pos = static_cast<size_t>(static_cast<const uint8_t*>(hit) - image.data());
        std::span<const uint8_t> at = image.subspan(pos);
        if (plausible_record_start(at) && decode_record(at, rec, size) == DecodeStatus::ok) {
            return pos;
        }
    }
    return image.size();
}

} // namespace

std::string make_dir(const std::string& path) {
    // Where the previous component ends (its parent is "." before the first, "/" under root).
    size_t parent_end = !path.empty() && path[0] == '/' ? 0 : std::string::npos;
    for (size_t i = 1; i <= path.size(); ++i) {
        if (i == path.size() || path[i] == '/') {
            std::string part = path.substr(0, i);
            if (::mkdir(part.c_str(), 0750) == 0) {
                // A new folder's name lives in its parent: until the parent is fsynced, a power
                // cut can take the folder away with every file synced in it since.
                std::string parent = parent_end == std::string::npos ? "."
                                     : parent_end == 0               ? "/"
                                                                     : path.substr(0, parent_end);
                if (std::string err = sync_dir(parent); !err.empty()) {
                    return err;
                }
            } else if (errno != EEXIST) {
                return errno_message("cannot create " + part, errno);
            }
            parent_end = i;
        }
    }
    return {};
}

SpoolLock::~SpoolLock() {
    if (_fd >= 0) {
        ::close(_fd);
    }
}

std::string SpoolLock::acquire(const std::string& dir) {
    if (std::string err = make_dir(dir); !err.empty()) {
        return err;
    }
    const std::string path = (dir.empty() ? std::string(".") : dir) + "/portcullis.lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        return errno_message("cannot open " + path, errno);
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        char holder[32] = {};
        ssize_t n = ::pread(fd, holder, sizeof holder - 1, 0);
        ::close(fd);
        if (err != EWOULDBLOCK) {
            return errno_message("cannot lock " + path, err);
        }
        std::string pid(holder, n > 0 ? static_cast<size_t>(n) : 0);
        while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) {
            pid.pop_back();
        }
        return "spool " + dir + " is in use by another portcullis" +
               (pid.empty() ? std::string() : " (pid " + pid + ")") + " (" + path + " is locked)";
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 ||
        ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
        int err = errno;
        ::close(fd);
        return errno_message("cannot write " + path, err);
    }
    _fd = fd;
    return {};
}

std::string segment_path(const std::string& dir, uint32_t shard, uint64_t seq) {
    static constexpr char hex_digits[] = "0123456789abcdef";
    char name[seq_digits];
    for (size_t i = 0; i < seq_digits; ++i) {
        name[seq_digits - 1 - i] = hex_digits[(seq >> (4 * i)) & 0xf];
    }
    std::string path = dir;
    if (!path.empty() && path.back() != '/') {
        path.push_back('/');
    }
    path.append(shard_dir_prefix).append(std::to_string(shard)).append("/");
    path.append(name, sizeof name).append(segment_suffix);
    return path;
}

void encode_segment_header(uint32_t shard, std::span<uint8_t, segment_header_size> out) {
    std::memcpy(out.data(), segment_magic, sizeof segment_magic);
    for (int i = 0; i < 4; ++i) {
        out[8 + i] = static_cast<uint8_t>(segment_version >> (8 * i));
        out[12 + i] = static_cast<uint8_t>(shard >> (8 * i));
    }
}

ListResult list_segments(const std::string& dir) {
    namespace fs = std::filesystem;
    ListResult result;
    std::error_code ec;
    fs::directory_iterator top(dir, ec);
    if (ec) {
        result.error = "cannot read spool dir " + dir + ": " + ec.message();
        return result;
    }
    for (; top != fs::directory_iterator(); top.increment(ec)) {
        if (ec) {
            break;
        }
        const std::string name = top->path().filename().native();
        auto shard = parse_shard_dir(name);
        if (!shard || !top->is_directory(ec)) {
            if (name != ledger_file_name && name != ledger_snapshot_file_name &&
                name != lock_file_name) {
                result.unrecognised.push_back(name);
            }
            continue;
        }
        fs::directory_iterator inner(top->path(), ec);
        if (ec) {
            result.error = "cannot read " + top->path().native() + ": " + ec.message();
            return result;
        }
        for (; inner != fs::directory_iterator(); inner.increment(ec)) {
            if (ec) {
                break;
            }
            const std::string file = inner->path().filename().native();
            if (file == next_segment_file_name) {
                continue;
            }
            auto seq = parse_segment_name(file);
            if (!seq || !inner->is_regular_file(ec)) {
                result.unrecognised.push_back(name);
                result.unrecognised.back().append("/").append(file);
                continue;
            }
            uint64_t size = inner->file_size(ec);
            if (ec) {
                result.error = "cannot stat " + inner->path().native() + ": " + ec.message();
                return result;
            }
            result.segments.push_back({*shard, *seq, inner->path().native(), size});
        }
        if (ec) {
            result.error = "cannot read " + top->path().native() + ": " + ec.message();
            return result;
        }
    }
    if (ec) {
        result.error = "cannot read spool dir " + dir + ": " + ec.message();
        return result;
    }
    std::sort(result.segments.begin(), result.segments.end(),
              [](const SegmentFile& a, const SegmentFile& b) {
                  return a.shard != b.shard ? a.shard < b.shard : a.seq < b.seq;
              });
    std::sort(result.unrecognised.begin(), result.unrecognised.end());
    return result;
}

ScanReport scan_segment(std::span<const uint8_t> image, const RecordCallback& on_record) {
    ScanReport r;
    r.size = image.size();
    if (image.size() < segment_header_size) {
        r.header_error = "segment shorter than its header (" + std::to_string(image.size()) +
                         " of " + std::to_string(segment_header_size) + " bytes)";
        return r;
    }
    uint32_t version = detail::load_le32(image.data() + 8);
    r.shard = detail::load_le32(image.data() + 12);
    if (std::memcmp(image.data(), segment_magic, sizeof segment_magic) != 0) {
        r.header_error = "bad segment magic";
    } else if (version != segment_version) {
        r.header_error = "unsupported segment version " + std::to_string(version);
    }

    ScanReport records =
        scan_records(image.subspan(segment_header_size), segment_header_size, on_record);
    records.size = r.size;
    records.shard = r.shard;
    records.header_error = std::move(r.header_error);
    return records;
}

ScanReport scan_records(std::span<const uint8_t> bytes, uint64_t base,
                        const RecordCallback& on_record) {
    ScanReport r;
    r.size = base + bytes.size();
    r.valid_end = base;
    size_t pos = 0;
    JobRecord rec;
    while (pos < bytes.size()) {
        size_t size = 0;
        DecodeStatus st = decode_record(bytes.subspan(pos), rec, size);
        if (st == DecodeStatus::ok) {
            if (on_record) {
                on_record(base + pos, rec);
            }
            ++r.records;
            pos += size;
            r.valid_end = base + pos;
            continue;
        }
        size_t next = find_next_record(bytes, pos + 1);
        if (next < bytes.size()) {
            r.corrupt.push_back({base + pos, next - pos, st});
            pos = next;
            continue;
        }
        // Nothing valid follows: everything from here is the tail (a torn write or space the
        // writer preallocated).
        r.tail_bytes = bytes.size() - pos;
        r.tail_why = st;
        r.tail_all_zero = std::all_of(bytes.begin() + static_cast<std::ptrdiff_t>(pos), bytes.end(),
                                      [](uint8_t b) { return b == 0; });
        break;
    }
    return r;
}

ScanReport scan_segment_file(const std::string& path, const RecordCallback& on_record,
                             std::string& error) {
    error.clear();
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error = errno_message("cannot open " + path, errno);
        return {};
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        error = errno_message("cannot stat " + path, errno);
        ::close(fd);
        return {};
    }
    // A plain read rather than mmap: a file cut short by someone else while we look at it must
    // give a short image, not SIGBUS.
    auto size = static_cast<size_t>(st.st_size);
    auto buf = std::make_unique_for_overwrite<uint8_t[]>(size == 0 ? 1 : size);
    size_t have = 0;
    while (have < size) {
        ssize_t n = ::pread(fd, buf.get() + have, size - have, static_cast<off_t>(have));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            error = errno_message("cannot read " + path, errno);
            ::close(fd);
            return {};
        }
        if (n == 0) {
            break;
        }
        have += static_cast<size_t>(n);
    }
    ::close(fd);
    return scan_segment(std::span<const uint8_t>(buf.get(), have), on_record);
}

ScanReport recover_segment(const std::string& path, const RecordCallback& on_record,
                           std::string& error) {
    ScanReport r = scan_segment_file(path, on_record, error);
    if (!error.empty()) {
        return r;
    }
    if (r.size < segment_header_size) {
        if (::unlink(path.c_str()) != 0) {
            error = errno_message("cannot remove " + path, errno);
            return r;
        }
        r.removed = true;
        error = sync_dir(std::filesystem::path(path).parent_path().native());
        return r;
    }
    if (!r.header_error.empty() || r.tail_bytes == 0 || r.tail_why == DecodeStatus::bad_fields) {
        return r;
    }
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        error = errno_message("cannot open " + path + " to cut its torn tail", errno);
        return r;
    }
    if (::ftruncate(fd, static_cast<off_t>(r.valid_end)) != 0) {
        error = errno_message("cannot truncate " + path, errno);
    } else if (::fdatasync(fd) != 0) {
        error = errno_message("cannot fdatasync " + path, errno);
    } else {
        r.tail_cut = true;
    }
    ::close(fd);
    return r;
}

ScanReport recover_segment(const std::string& path, std::string& error) {
    return recover_segment(path, RecordCallback{}, error);
}

} // namespace portcullis::queue
