#include "portcullis/queue/spool_tool.hh"

#include "portcullis/queue/job_json.hh"
#include "portcullis/queue/ledger.hh"
#include "portcullis/queue/segment.hh"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

namespace portcullis::queue {

namespace {

// "shard-0/0000000000000001.seg": short and unambiguous inside the dir the user named.
std::string segment_name(const SegmentFile& seg) {
    return segment_path("", seg.shard, seg.seq);
}

// A header problem, including one the scan cannot see alone: a header naming another shard
// than the folder it sits in.
std::string header_problem(const SegmentFile& seg, const ScanReport& r) {
    if (!r.header_error.empty()) {
        return r.header_error;
    }
    if (r.shard != seg.shard) {
        return "header names shard " + std::to_string(r.shard) + " but the file is in shard-" +
               std::to_string(seg.shard);
    }
    return {};
}

std::string plural(uint64_t n, const char* one, const char* many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
}

} // namespace

namespace {

// Whether a file starts like a spool segment.
bool starts_as_segment(const std::filesystem::path& path) {
    std::ifstream f(path, std::ios::binary);
    char head[sizeof segment_magic] = {};
    return f.read(head, sizeof head) && std::memcmp(head, segment_magic, sizeof head) == 0;
}

// An entry list_segments does not know: a spool segment (or a folder holding one) under a name
// serve does not read hides its jobs; anything else is only in the way.
bool hides_segments(const std::filesystem::path& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_regular_file(path, ec)) {
        return starts_as_segment(path);
    }
    if (!fs::is_directory(path, ec)) {
        return false;
    }
    for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
        if (it->is_regular_file(ec) && starts_as_segment(it->path())) {
            return true;
        }
    }
    return false;
}

struct LedgerReport {
    bool damaged = false;
};

// The ledger's part of `spool verify`: the same scan serve runs at start, without its cut.
LedgerReport verify_ledger(const std::string& dir, std::ostream& out, std::ostream& err) {
    LedgerReport report;
    const std::string path = dir + "/" + std::string(ledger_file_name);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            out << ledger_file_name << ": none (no job was leased or settled yet)\n";
            return report;
        }
        err << "spool verify: cannot open " << path << ": " << std::strerror(errno) << "\n";
        out << ledger_file_name << ": unreadable\n";
        report.damaged = true;
        return report;
    }
    struct stat st {};
    std::string error;
    LedgerScan scan;
    if (::fstat(fd, &st) != 0) {
        error = std::strerror(errno);
    } else {
        scan = scan_ledger(
            static_cast<uint64_t>(st.st_size),
            [fd](uint8_t* buf, size_t n, uint64_t offset) {
                return ::pread(fd, buf, n, static_cast<off_t>(offset));
            },
            error);
    }
    ::close(fd);
    if (!error.empty()) {
        err << "spool verify: cannot read " << path << ": " << error << "\n";
        out << ledger_file_name << ": unreadable\n";
        report.damaged = true;
        return report;
    }
    report.damaged = !scan.damaged.empty() || scan.tail_bytes != 0 || scan.unreadable_at;
    out << ledger_file_name << ": " << plural(scan.ops.size(), "op", "ops") << ", "
        << plural(scan.size, "byte", "bytes") << ": " << (report.damaged ? "DAMAGED" : "ok")
        << "\n";
    for (const LedgerDamage& d : scan.damaged) {
        out << "  damaged region at offset " << d.offset << ": "
            << plural(d.length, "byte", "bytes") << " skipped (its ops are lost: those jobs may"
            << " be delivered again)\n";
    }
    if (scan.unreadable_at) {
        out << "  record at offset " << *scan.unreadable_at
            << " has a right checksum but a kind this version does not know (written by a newer"
            << " version?): serve refuses to start\n";
    } else if (scan.tail_bytes != 0) {
        out << "  torn tail at offset " << scan.valid_end << ": "
            << plural(scan.tail_bytes, "byte", "bytes") << "; serve cuts it at start-up\n";
    }
    return report;
}

} // namespace

int spool_verify(const std::string& dir, std::ostream& out, std::ostream& err) {
    ListResult listed = list_segments(dir);
    if (!listed.error.empty()) {
        err << "spool verify: " << listed.error << "\n";
        return spool_exit_no_dir;
    }

    uint64_t records = 0;
    uint64_t bytes = 0;
    uint64_t corrupt_regions = 0;
    uint64_t corrupt_bytes = 0;
    uint64_t torn_tails = 0;
    uint64_t torn_bytes = 0;
    uint64_t bad_headers = 0;
    uint64_t unreadable = 0;
    uint64_t damaged_segments = 0;
    struct Where {
        JobId id;
        size_t segment; // index in listed.segments
        uint64_t offset;
    };
    std::vector<Where> ids;
    for (size_t i = 0; i < listed.segments.size(); ++i) {
        const SegmentFile& seg = listed.segments[i];
        std::string name = segment_name(seg);
        std::string error;
        ScanReport r = scan_segment_file(
            seg.path,
            [&](uint64_t offset, const JobRecord& rec) {
                ids.push_back({rec.id, i, offset});
            },
            error);
        if (!error.empty()) {
            err << "spool verify: " << error << "\n";
            out << name << ": unreadable\n";
            ++unreadable;
            ++damaged_segments;
            continue;
        }
        std::string header = header_problem(seg, r);
        bool torn = r.tail_bytes != 0 && !r.tail_all_zero;
        bool last_number = seg.seq > max_segment_seq;
        bool damaged = !header.empty() || !r.corrupt.empty() || torn || last_number;
        records += r.records;
        bytes += r.size;
        out << name << ": " << plural(r.records, "record", "records") << ", "
            << plural(r.size, "byte", "bytes") << ": " << (damaged ? "DAMAGED" : "ok") << "\n";
        if (!header.empty()) {
            out << "  bad header: " << header << "\n";
            ++bad_headers;
        }
        if (last_number) {
            out << "  the largest segment number there is: serve cannot start a segment after it"
                << " and refuses to start (was the file renamed?)\n";
        }
        for (const CorruptRegion& c : r.corrupt) {
            out << "  corrupt region at offset " << c.offset << ": "
                << plural(c.length, "byte", "bytes") << " skipped (" << describe(c.why) << ")\n";
            ++corrupt_regions;
            corrupt_bytes += c.length;
        }
        if (torn) {
            out << "  torn tail at offset " << r.valid_end << ": "
                << plural(r.tail_bytes, "byte", "bytes") << " (" << describe(r.tail_why)
                << "); serve cuts it at start-up\n";
            ++torn_tails;
            torn_bytes += r.tail_bytes;
        } else if (r.tail_bytes != 0) {
            out << "  preallocated space at offset " << r.valid_end << ": "
                << plural(r.tail_bytes, "zero byte", "zero bytes") << "\n";
        }
        if (damaged) {
            ++damaged_segments;
        }
    }

    // A job id is unique across shards and restarts: two records with one id are one job
    // written twice (a copied segment?); serve keeps the first and ignores the other.
    std::sort(ids.begin(), ids.end(), [](const Where& a, const Where& b) {
        return a.id != b.id
                   ? a.id < b.id
                   : (a.segment != b.segment ? a.segment < b.segment : a.offset < b.offset);
    });
    uint64_t duplicates = 0;
    for (size_t i = 1; i < ids.size(); ++i) {
        if (ids[i].id != ids[i - 1].id) {
            continue;
        }
        const Where& first = ids[i - 1];
        // Every further copy is reported against the first.
        size_t j = i;
        while (j < ids.size() && ids[j].id == first.id) {
            out << "duplicate job id " << first.id.to_string() << ": "
                << segment_name(listed.segments[first.segment]) << " at offset " << first.offset
                << " and " << segment_name(listed.segments[ids[j].segment]) << " at offset "
                << ids[j].offset << "\n";
            ++duplicates;
            ++j;
        }
        i = j;
    }

    LedgerReport ledger = verify_ledger(dir, out, err);

    uint64_t hidden = 0;
    for (const std::string& entry : listed.unrecognised) {
        if (hides_segments(std::filesystem::path(dir) / entry)) {
            out << "unrecognised: " << entry
                << ": holds spool segments under a name serve does not read: their jobs are"
                << " not served\n";
            ++hidden;
        } else {
            out << "unrecognised: " << entry << ": not the spool's; ignored by serve\n";
        }
    }

    out << "total: " << plural(listed.segments.size(), "segment", "segments") << ", "
        << plural(records, "record", "records") << ", " << plural(bytes, "byte", "bytes") << "; "
        << plural(corrupt_regions, "corrupt region", "corrupt regions") << " (" << corrupt_bytes
        << " bytes), " << plural(torn_tails, "torn tail", "torn tails") << " (" << torn_bytes
        << " bytes), " << plural(bad_headers, "bad header", "bad headers") << ", " << unreadable
        << " unreadable, " << plural(duplicates, "duplicate job id", "duplicate job ids") << ", "
        << plural(listed.unrecognised.size(), "unrecognised entry", "unrecognised entries") << "\n";

    uint64_t spool_bytes = 0;
    for (const SegmentFile& seg : listed.segments) {
        spool_bytes += seg.size;
    }
    struct statvfs fs {};
    if (::statvfs(dir.c_str(), &fs) == 0) {
        out << "disk: spool " << spool_bytes << " bytes, free "
            << uint64_t{fs.f_bavail} * uint64_t{fs.f_frsize} << " bytes\n";
    } else {
        out << "disk: spool " << spool_bytes << " bytes, free unknown\n";
        err << "spool verify: statvfs " << dir << ": " << std::strerror(errno) << "\n";
    }

    std::string also;
    if (ledger.damaged) {
        also += "; ledger damaged";
    }
    if (hidden != 0) {
        also += "; " + plural(hidden, "entry hides", "entries hide") + " segments";
    }
    if (duplicates != 0) {
        also += "; " + plural(duplicates, "duplicate job id", "duplicate job ids");
    }
    const uint64_t ignored = listed.unrecognised.size() - hidden;
    if (ignored != 0) {
        also += "; " + plural(ignored, "unrecognised entry", "unrecognised entries") + " ignored";
    }
    if (damaged_segments == 0 && !ledger.damaged && hidden == 0 && duplicates == 0) {
        out << "spool intact: " << plural(listed.segments.size(), "segment", "segments") << ", "
            << plural(records, "valid record", "valid records") << also << "\n";
        return spool_exit_ok;
    }
    out << "spool damaged: " << plural(damaged_segments, "segment", "segments") << " of "
        << listed.segments.size() << " damaged, "
        << plural(records, "valid record", "valid records") << also << "\n";
    return spool_exit_damaged;
}

int spool_dump(const std::string& dir, std::optional<std::string> route, std::ostream& out,
               std::ostream& err) {
    ListResult listed = list_segments(dir);
    if (!listed.error.empty()) {
        err << "spool dump: " << listed.error << "\n";
        return spool_exit_no_dir;
    }
    bool damaged = false;
    std::string line;
    for (const SegmentFile& seg : listed.segments) {
        std::string name = segment_name(seg);
        std::string error;
        ScanReport r = scan_segment_file(
            seg.path,
            [&](uint64_t, const JobRecord& rec) {
                if (route && rec.route != *route) {
                    return;
                }
                line.clear();
                append_job_json(line, rec);
                line.push_back('\n');
                out << line;
            },
            error);
        if (!error.empty()) {
            err << "spool dump: " << error << "\n";
            damaged = true;
            continue;
        }
        if (std::string header = header_problem(seg, r); !header.empty()) {
            err << "spool dump: " << name << ": bad header (" << header
                << "); its records were read anyway\n";
            damaged = true;
        }
        for (const CorruptRegion& c : r.corrupt) {
            err << "spool dump: " << name << ": skipped " << plural(c.length, "byte", "bytes")
                << " of corrupt data at offset " << c.offset << " (" << describe(c.why) << ")\n";
            damaged = true;
        }
        if (r.tail_bytes != 0 && !r.tail_all_zero) {
            err << "spool dump: " << name << ": torn tail of "
                << plural(r.tail_bytes, "byte", "bytes") << " at offset " << r.valid_end << " ("
                << describe(r.tail_why) << ")\n";
            damaged = true;
        }
    }
    out.flush();
    return damaged ? spool_exit_damaged : spool_exit_ok;
}

} // namespace portcullis::queue
