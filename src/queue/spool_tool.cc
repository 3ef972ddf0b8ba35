#include "portcullis/queue/spool_tool.hh"

#include "portcullis/queue/job_json.hh"
#include "portcullis/queue/segment.hh"

#include <sys/statvfs.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
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
    for (const SegmentFile& seg : listed.segments) {
        std::string name = segment_name(seg);
        std::string error;
        ScanReport r = scan_segment_file(seg.path, RecordCallback{}, error);
        if (!error.empty()) {
            err << "spool verify: " << error << "\n";
            out << name << ": unreadable\n";
            ++unreadable;
            ++damaged_segments;
            continue;
        }
        std::string header = header_problem(seg, r);
        bool torn = r.tail_bytes != 0 && !r.tail_all_zero;
        bool damaged = !header.empty() || !r.corrupt.empty() || torn;
        records += r.records;
        bytes += r.size;
        out << name << ": " << plural(r.records, "record", "records") << ", "
            << plural(r.size, "byte", "bytes") << ": " << (damaged ? "DAMAGED" : "ok") << "\n";
        if (!header.empty()) {
            out << "  bad header: " << header << "\n";
            ++bad_headers;
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

    out << "total: " << plural(listed.segments.size(), "segment", "segments") << ", "
        << plural(records, "record", "records") << ", " << plural(bytes, "byte", "bytes") << "; "
        << plural(corrupt_regions, "corrupt region", "corrupt regions") << " (" << corrupt_bytes
        << " bytes), " << plural(torn_tails, "torn tail", "torn tails") << " (" << torn_bytes
        << " bytes), " << plural(bad_headers, "bad header", "bad headers") << ", " << unreadable
        << " unreadable\n";

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

    if (damaged_segments == 0) {
        out << "spool intact: " << plural(listed.segments.size(), "segment", "segments") << ", "
            << plural(records, "valid record", "valid records") << "\n";
        return spool_exit_ok;
    }
    out << "spool damaged: " << plural(damaged_segments, "segment", "segments") << " of "
        << listed.segments.size() << " damaged, "
        << plural(records, "valid record", "valid records") << "\n";
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
