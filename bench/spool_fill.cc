// spool_fill: writes N queued jobs into a spool folder as fast as the disk takes them, for
// benchmarks that need a deep spool (bench/spool/deep) without sending N webhooks.
//
//   spool_fill --dir D --jobs N [--route bench] [--body-size 1024] [--shards 1]
//              [--segment-size 64MiB]
//
// What it writes is what `serve` writes: each shard k has its own thread driving the project's
// queue::SpoolWriter (the shard's group-commit writer: segment naming, headers, rotation at
// segment_size, recovery of what the folder already holds) through an io::Ring of its own, with
// records made by encode_job_head + seal_record as ingest::Ingest makes them, job ids from a
// JobIdGenerator(k) and received_at from the wall clock. So `portcullis serve` reads the segments
// as its own and `portcullis spool verify` finds them intact. The differences from a live shard:
//   - groups are always full (1,024 records, about 1.5 MiB with 1 KiB bodies): one writev each,
//     so segment boundaries fall a little differently than under real traffic, never the format;
//   - records are appended with durability `none` (no fdatasync per group); the writer still
//     fdatasyncs each new segment's header and its folder when it rotates, as serve does. At the
//     end one fdatasync per segment and one fsync per shard folder make everything durable (timed
//     separately): a fixture, not a promise per record;
//   - every job has the same body and the headers of a GitHub push delivery (X-GitHub-Delivery
//     differs per job, as real deliveries do; the signatures are plausible hex, not valid: the
//     benchmark's route verifies nothing), from a GitHub hook address as the peer.
// With several shards their threads run in parallel, each with N/K of the jobs.
// Progress (jobs, MB/s) goes to stderr every second, the summary to stdout.
#include "portcullis/base/time.hh"
#include "portcullis/config/config.hh"
#include "portcullis/config/units.hh"
#include "portcullis/io/ring.hh"
#include "portcullis/queue/job_id.hh"
#include "portcullis/queue/record.hh"
#include "portcullis/queue/segment.hh"
#include "portcullis/queue/spool_writer.hh"

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace portcullis;

namespace {

struct Options {
    std::string dir;
    uint64_t jobs = 0;
    std::string route = "bench";
    size_t body_size = 1024;
    uint32_t shards = 1;
    uint64_t segment_size = 64ull << 20;
};

void usage(FILE* out) {
    std::fputs(
        "usage: spool_fill --dir D --jobs N [--route bench] [--body-size 1024] [--shards 1]\n"
        "                  [--segment-size 64MiB]\n"
        "Writes N queued jobs into the spool folder D (shard-<k>/ for k < shards, filled in\n"
        "parallel) through the spool writer serve uses. See the top of bench/spool_fill.cc.\n",
        out);
}

bool parse_u64(std::string_view s, uint64_t& out) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && end == s.data() + s.size();
}

// Returns "" or what is wrong.
std::string parse_options(int argc, char** argv, Options& o) {
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            usage(stdout);
            std::exit(0);
        }
        if (i + 1 >= argc) {
            return std::string(arg) + " needs a value";
        }
        std::string_view value = argv[++i];
        uint64_t n = 0;
        if (arg == "--dir") {
            o.dir = value;
        } else if (arg == "--jobs") {
            if (!parse_u64(value, o.jobs) || o.jobs == 0) {
                return "--jobs: a positive number";
            }
        } else if (arg == "--route") {
            if (!config::is_name(value)) {
                return "--route: 1 to 64 of [a-z0-9_-]";
            }
            o.route = value;
        } else if (arg == "--body-size") {
            if (!parse_u64(value, n) || n > (16u << 20)) {
                return "--body-size: bytes, at most 16 MiB";
            }
            o.body_size = n;
        } else if (arg == "--shards") {
            // Job ids carry the shard in one byte.
            if (!parse_u64(value, n) || n == 0 || n > 256) {
                return "--shards: 1 to 256";
            }
            o.shards = static_cast<uint32_t>(n);
        } else if (arg == "--segment-size") {
            // The range the configuration's spool.segment_size takes.
            auto size = config::parse_size(value);
            if (!size || *size < (1ull << 20) || *size > (4ull << 30)) {
                return "--segment-size: a size from 1MiB to 4GiB (like 64MiB)";
            }
            o.segment_size = *size;
        } else {
            return "unknown option " + std::string(arg);
        }
    }
    if (o.dir.empty() || o.jobs == 0) {
        return "--dir and --jobs are required";
    }
    return {};
}

// A JSON document of exactly `size` bytes shaped like a small push delivery (the same shape as
// bench/load/pull_client.py's), or `size` bytes of 'x' when that is too small for the shape.
std::string make_body(size_t size) {
    const std::string head =
        R"({"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246",)"
        R"("after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","repository":{"id":700158922,)"
        R"("full_name":"octo-org/portcullis-demo","private":true},"pusher":{"name":"monalisa",)"
        R"("email":"monalisa@example.com"},"commits":[{"id":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",)"
        R"("message":"Fix the retry budget when a sink is slow","timestamp":"2024-06-10T09:13:20Z",)"
        R"("modified":["src/queue/retry.cc"]}],"note":")";
    const std::string tail = R"("})";
    if (size < head.size() + tail.size()) {
        return std::string(size, 'x');
    }
    std::string body = head;
    const std::string_view filler = "lorem ipsum dolor sit amet ";
    while (body.size() < size - tail.size()) {
        body.append(filler.substr(0, std::min(filler.size(), size - tail.size() - body.size())));
    }
    return body + tail;
}

constexpr size_t guid_size = 36; // 8-4-4-4-12 hex digits

// A UUID-shaped delivery id, unique per (shard, n).
void format_guid(uint32_t shard, uint64_t n, char* out) {
    static constexpr char hex[] = "0123456789abcdef";
    // 32 hex digits: a fixed prefix, the shard, the counter.
    char digits[32];
    const uint64_t hi = 0x5e3c2a10'0000'4000ull | (uint64_t{shard} << 16);
    for (int i = 0; i < 16; ++i) {
        digits[i] = hex[(hi >> (60 - 4 * i)) & 0xf];
        digits[16 + i] = hex[(n >> (60 - 4 * i)) & 0xf];
    }
    size_t d = 0;
    for (size_t i = 0; i < guid_size; ++i) {
        out[i] = (i == 8 || i == 13 || i == 18 || i == 23) ? '-' : digits[d++];
    }
}

struct ShardResult {
    std::atomic<uint64_t> jobs{0};
    std::atomic<uint64_t> bytes{0};
    std::atomic<bool> finished{false};
    std::string error;
    uint64_t segments = 0;
    uint64_t recovered = 0;
};

// One shard's writer: jobs records into dir/shard-<shard>/.
void fill_shard(const Options& o, uint32_t shard, uint64_t jobs, const std::string& body,
                ShardResult& out) {
    auto finish = [&out](std::string error) {
        out.error = std::move(error);
        out.finished.store(true, std::memory_order_release);
    };
    io::Ring ring;
    // The ring is made in the thread that submits to it (single issuer, like a shard's).
    if (auto err = ring.init(64, io::probe_features().setup_flags()); !err.empty()) {
        return finish("ring: " + err);
    }
    config::SpoolConfig cfg;
    cfg.dir = o.dir;
    cfg.durability = config::Durability::none;
    cfg.segment_size = o.segment_size;
    queue::SpoolWriter writer;
    if (auto err = writer.open(o.dir, shard, cfg); !err.empty()) {
        return finish(err);
    }
    out.recovered = writer.stats().recovered_records;

    // The stored header set of a GitHub push delivery (what select_stored keeps of it).
    char guid[guid_size];
    format_guid(shard, 0, guid);
    const std::string content_length = std::to_string(body.size());
    const std::string_view sig1 = "sha1=7d38cdd689735b008b3c702edd92eea23791c5f6";
    const std::string_view sig256 =
        "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c";
    std::vector<http::Header> headers = {
        {"Host", "hooks.example.com"},
        {"User-Agent", "GitHub-Hookshot/5a2bd3c"},
        {"Content-Length", content_length},
        {"Accept", "*/*"},
        {"Content-Type", "application/json"},
        {"X-GitHub-Delivery", std::string_view(guid, guid_size)},
        {"X-GitHub-Event", "push"},
        {"X-GitHub-Hook-ID", "412867431"},
        {"X-GitHub-Hook-Installation-Target-ID", "700158922"},
        {"X-GitHub-Hook-Installation-Target-Type", "repository"},
        {"X-Hub-Signature", sig1},
        {"X-Hub-Signature-256", sig256},
    };
    const size_t head_size = queue::job_record_head_size(o.route, headers);
    const size_t record_size = head_size + body.size();
    // Every record has the same size (the GUID is fixed-width), so the GUID's place in a record
    // is found once, from an encoded sample, and rewritten per job.
    queue::JobMeta meta;
    meta.route = o.route;
    meta.peer = base::PeerAddress::parse("140.82.115.12", 52314).value_or(base::PeerAddress{});
    std::vector<uint8_t> sample(head_size);
    if (queue::encode_job_head(meta, headers, sample) != head_size) {
        return finish("cannot encode a record head");
    }
    const auto* guid_at =
        static_cast<const uint8_t*>(memmem(sample.data(), sample.size(), guid, guid_size));
    if (guid_at == nullptr) {
        return finish("cannot find the delivery id in the record head");
    }
    const size_t guid_offset = static_cast<size_t>(guid_at - sample.data());

    // The writer keeps a record's bytes until its cookie is reported: one arena of a whole group
    // per group in flight, and one for the group being collected.
    constexpr size_t group = queue::SpoolWriter::max_group;
    struct Arena {
        std::unique_ptr<uint8_t[]> bytes;
        size_t outstanding = 0;
    };
    std::array<Arena, queue::SpoolWriter::max_inflight + 1> arenas;
    for (Arena& a : arenas) {
        a.bytes = std::make_unique<uint8_t[]>(group * record_size);
    }
    queue::JobIdGenerator ids(static_cast<uint8_t>(shard));
    uint64_t made = 0;
    bool failed = false;
    auto done = [&](uint64_t cookie, bool durable) {
        Arena& a = arenas[cookie];
        --a.outstanding;
        if (!durable) {
            failed = true;
        } else {
            out.jobs.fetch_add(1, std::memory_order_relaxed);
            out.bytes.fetch_add(record_size, std::memory_order_relaxed);
        }
    };
    while ((made < jobs || !writer.idle()) && !failed) {
        // Collect the next group into a free arena while the writer has room for it.
        if (made < jobs && !writer.full()) {
            for (size_t k = 0; k < arenas.size(); ++k) {
                Arena& a = arenas[k];
                if (a.outstanding != 0) {
                    continue;
                }
                const size_t n = static_cast<size_t>(std::min<uint64_t>(group, jobs - made));
                const int64_t now = base::unix_ns();
                meta.received_at_ns = now;
                for (size_t i = 0; i < n; ++i) {
                    std::span<uint8_t> rec(a.bytes.get() + i * record_size, record_size);
                    meta.id = ids.next(now);
                    queue::encode_job_head(meta, headers, rec);
                    format_guid(shard, made + i, reinterpret_cast<char*>(rec.data() + guid_offset));
                    std::memcpy(rec.data() + head_size, body.data(), body.size());
                    queue::seal_record(rec);
                    if (!writer.append(rec, k, config::Durability::none)) {
                        // Collected groups are at most max_group, one at a time: only a failed
                        // disk refuses.
                        return finish("the spool writer refused a record (the disk failed?)");
                    }
                    ++a.outstanding;
                }
                made += n;
                break;
            }
        }
        writer.flush(ring, base::mono_ns(), done);
        if (int rc = ring.submit_and_wait(100'000'000); rc < 0) {
            return finish(std::string("io_uring: ") + std::strerror(-rc));
        }
        ring.for_each_cqe([&](const io_uring_cqe& c) {
            const uint64_t tag = c.user_data >> 56;
            if (queue::is_spool_tag(tag)) {
                writer.on_cqe(c, base::mono_ns(), done);
            }
        });
    }
    if (failed) {
        return finish("a group write failed (see the log above)");
    }
    out.segments = writer.stats().segments_opened;
    finish({});
}

} // namespace

int main(int argc, char** argv) {
    Options o;
    if (std::string err = parse_options(argc, argv, o); !err.empty()) {
        std::fprintf(stderr, "spool_fill: %s\n", err.c_str());
        usage(stderr);
        return 2;
    }
    const std::string body = make_body(o.body_size);
    std::vector<std::unique_ptr<ShardResult>> results;
    std::vector<std::thread> threads;
    const int64_t start = base::mono_ns();
    for (uint32_t k = 0; k < o.shards; ++k) {
        const uint64_t share = o.jobs / o.shards + (k < o.jobs % o.shards ? 1 : 0);
        results.push_back(std::make_unique<ShardResult>());
        threads.emplace_back(fill_shard, std::cref(o), k, share, std::cref(body),
                             std::ref(*results.back()));
    }
    // Progress once a second until every shard is done.
    auto totals = [&](uint64_t& jobs, uint64_t& bytes) {
        jobs = bytes = 0;
        for (const auto& r : results) {
            jobs += r->jobs.load(std::memory_order_relaxed);
            bytes += r->bytes.load(std::memory_order_relaxed);
        }
    };
    uint64_t last_bytes = 0;
    int64_t last_ns = start;
    auto all_finished = [&] {
        for (const auto& r : results) {
            if (!r->finished.load(std::memory_order_acquire)) {
                return false;
            }
        }
        return true;
    };
    for (;;) {
        for (int i = 0; i < 100 && !all_finished(); ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (all_finished()) {
            break;
        }
        uint64_t jobs = 0;
        uint64_t bytes = 0;
        totals(jobs, bytes);
        const int64_t now = base::mono_ns();
        std::fprintf(stderr, "spool_fill: %llu of %llu jobs, %.0f MB/s\n",
                     static_cast<unsigned long long>(jobs), static_cast<unsigned long long>(o.jobs),
                     static_cast<double>(bytes - last_bytes) * 1e3 /
                         static_cast<double>(now - last_ns));
        last_bytes = bytes;
        last_ns = now;
    }
    for (std::thread& t : threads) {
        t.join();
    }
    const int64_t written = base::mono_ns();
    int rc = 0;
    uint64_t segments = 0;
    uint64_t recovered = 0;
    for (uint32_t k = 0; k < o.shards; ++k) {
        if (!results[k]->error.empty()) {
            std::fprintf(stderr, "spool_fill: shard %u: %s\n", k, results[k]->error.c_str());
            rc = 1;
        }
        segments += results[k]->segments;
        recovered += results[k]->recovered;
    }
    // One sync at the end for everything written (the records went out with durability none):
    // each segment's data, then the shard folders' entries.
    queue::ListResult listed = queue::list_segments(o.dir);
    if (!listed.error.empty()) {
        std::fprintf(stderr, "spool_fill: %s\n", listed.error.c_str());
        rc = 1;
    }
    for (const queue::SegmentFile& seg : listed.segments) {
        const int fd = ::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || ::fdatasync(fd) != 0) {
            std::fprintf(stderr, "spool_fill: sync %s: %s\n", seg.path.c_str(),
                         std::strerror(errno));
            rc = 1;
        }
        if (fd >= 0) {
            ::close(fd);
        }
    }
    for (uint32_t k = 0; k < o.shards; ++k) {
        if (std::string err = queue::sync_dir(o.dir + "/shard-" + std::to_string(k));
            !err.empty()) {
            std::fprintf(stderr, "spool_fill: %s\n", err.c_str());
            rc = 1;
        }
    }
    const int64_t synced = base::mono_ns();
    uint64_t jobs = 0;
    uint64_t bytes = 0;
    totals(jobs, bytes);
    const double write_s = static_cast<double>(written - start) / 1e9;
    const double total_s = static_cast<double>(synced - start) / 1e9;
    std::printf("spool_fill: %llu jobs (%zu-byte bodies, route %s) in %u shard(s), %llu segments "
                "(%llu records were there before)\n",
                static_cast<unsigned long long>(jobs), body.size(), o.route.c_str(), o.shards,
                static_cast<unsigned long long>(segments),
                static_cast<unsigned long long>(recovered));
    std::printf("spool_fill: %llu record bytes written in %.2f s (%.0f MB/s), synced after "
                "%.2f s (%.0f MB/s)\n",
                static_cast<unsigned long long>(bytes), write_s,
                static_cast<double>(bytes) / 1e6 / write_s, total_s,
                static_cast<double>(bytes) / 1e6 / total_s);
    std::printf("bench-result jobs=%llu bytes=%llu segments=%llu write_s=%.3f total_s=%.3f\n",
                static_cast<unsigned long long>(jobs), static_cast<unsigned long long>(bytes),
                static_cast<unsigned long long>(segments), write_s, total_s);
    if (rc == 0 && jobs != o.jobs) {
        std::fprintf(stderr, "spool_fill: wrote %llu of %llu jobs\n",
                     static_cast<unsigned long long>(jobs),
                     static_cast<unsigned long long>(o.jobs));
        rc = 1;
    }
    return rc;
}
