#include "portcullis/io/ring.hh"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

namespace portcullis::io {

namespace {

std::string errno_text(int err) {
    return std::strerror(err < 0 ? -err : err);
}

// Tries to create a ring with flags; returns 0 or -errno.
int try_setup(unsigned flags, io_uring_probe** probe) {
    io_uring ring{};
    io_uring_params p{};
    p.flags = flags;
    int rc = io_uring_queue_init_params(8, &ring, &p);
    if (rc < 0) {
        return rc;
    }
    if (probe != nullptr) {
        *probe = io_uring_get_probe_ring(&ring);
    }
    io_uring_queue_exit(&ring);
    return 0;
}

// Runs one receive prepared by prep over a fresh socketpair holding `sent` bytes; returns its
// first completion's result and flags, or false when none came. Completions of earlier probes
// (a multishot receive ending as its socket closes) are skipped by their user_data.
template <typename Prep>
bool try_recv(io_uring& ring, uint64_t tag, std::string_view sent, Prep&& prep, int& res,
              unsigned& flags) {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        return false;
    }
    bool got = false;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    prep(sqe, fds[0]);
    sqe->user_data = tag;
    if (::write(fds[1], sent.data(), sent.size()) == ssize_t(sent.size()) &&
        io_uring_submit(&ring) == 1) {
        io_uring_cqe* cqe = nullptr;
        __kernel_timespec ts{.tv_sec = 1, .tv_nsec = 0};
        while (!got && io_uring_wait_cqe_timeout(&ring, &cqe, &ts) == 0) {
            if (cqe->user_data == tag) {
                res = cqe->res;
                flags = cqe->flags;
                got = true;
            }
            io_uring_cqe_seen(&ring, cqe);
        }
    }
    ::close(fds[0]);
    ::close(fds[1]);
    return got;
}

// Registers a one-buffer ring and runs a multishot receive over a socketpair: the only reliable
// test of multishot recv, whose flag older kernels reject with EINVAL; then one limited to a
// byte, which kernels without the limit reject (EINVAL) and others end once that byte is in.
// Returns whether the buffer ring registered; sets multishot_recv and recv_limit.
bool probe_buf_ring_and_multishot_recv(io_uring& ring, bool& multishot_recv, bool& recv_limit) {
    multishot_recv = false;
    recv_limit = false;
    constexpr size_t page = 4096;
    void* mem = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) {
        return false;
    }
    auto* br = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uintptr_t>(br);
    reg.ring_entries = 1;
    reg.bgid = 0;
    if (io_uring_register_buf_ring(&ring, &reg, 0) != 0) {
        munmap(mem, 2 * page);
        return false;
    }
    io_uring_buf_ring_init(br);
    auto provide = [&] {
        io_uring_buf_ring_add(br, static_cast<char*>(mem) + page, page, 0, 0, 0);
        io_uring_buf_ring_advance(br, 1);
    };
    provide();
    int res = 0;
    unsigned flags = 0;
    if (try_recv(
            ring, 1, "x",
            [](io_uring_sqe* sqe, int fd) {
                io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
                sqe->flags |= IOSQE_BUFFER_SELECT;
                sqe->buf_group = 0;
            },
            res, flags)) {
        multishot_recv = res == 1 && (flags & IORING_CQE_F_MORE) != 0;
    }
    if (multishot_recv) {
        provide();
        if (try_recv(
                ring, 2, "xy",
                [](io_uring_sqe* sqe, int fd) { prep_limited_recv(sqe, fd, 0, 1, true); }, res,
                flags)) {
            // Two bytes came in one buffer: the limit ends the receive after its first.
            recv_limit = res > 0 && (flags & IORING_CQE_F_MORE) == 0;
        }
    }
    io_uring_unregister_buf_ring(&ring, 0);
    munmap(mem, 2 * page);
    return true;
}

std::string read_sysctl_io_uring_disabled() {
    std::ifstream f("/proc/sys/kernel/io_uring_disabled");
    std::string v;
    f >> v;
    return v;
}

} // namespace

unsigned Features::setup_flags() const {
    unsigned f = IORING_SETUP_SUBMIT_ALL;
    if (single_issuer) {
        f |= IORING_SETUP_SINGLE_ISSUER;
    }
    if (defer_taskrun) {
        f |= IORING_SETUP_DEFER_TASKRUN;
    } else if (coop_taskrun) {
        f |= IORING_SETUP_COOP_TASKRUN;
    }
    return f;
}

std::string Features::describe() const {
    std::string out;
    auto row = [&](std::string_view name, bool has, bool required, bool used) {
        out.append(name);
        out.append(name.size() < 22 ? 22 - name.size() : 1, ' ');
        out.append(has ? "yes  " : "no   ");
        out.append(used ? "used" : required ? "REQUIRED" : "not used");
        out.push_back('\n');
    };
    if (!available) {
        out = "io_uring              no   REQUIRED (" + unavailable + ")\n";
        return out;
    }
    row("io_uring", true, true, true);
    row("multishot accept", multishot_accept, true, multishot_accept);
    row("multishot recv", multishot_recv, true, multishot_recv);
    row("provided buffer ring", buf_ring, true, buf_ring);
    row("ext_arg timeouts", ext_arg, true, ext_arg);
    row("single issuer", single_issuer, false, single_issuer);
    row("defer taskrun", defer_taskrun, false, defer_taskrun);
    row("coop taskrun", coop_taskrun, false, coop_taskrun && !defer_taskrun);
    // Without it a receive takes one buffer at a time (prep_limited_recv).
    row("recv limit", recv_limit, false, recv_limit);
    // Zero-copy send pays off for large payloads; responses here are a few hundred bytes.
    row("send zerocopy", send_zc, false, false);
    return out;
}

Features probe_features() {
    Features f;
    io_uring_probe* probe = nullptr;
    int rc = try_setup(0, &probe);
    if (rc < 0) {
        f.available = false;
        std::string disabled = read_sysctl_io_uring_disabled();
        if (rc == -ENOSYS) {
            f.unavailable = "this kernel has no io_uring (ENOSYS): run on Linux 6.1 or newer";
        } else if (rc == -EPERM && !disabled.empty() && disabled != "0") {
            f.unavailable = "io_uring is disabled by kernel.io_uring_disabled=" + disabled +
                            ": set it to 0 (sysctl -w kernel.io_uring_disabled=0)";
        } else if (rc == -EPERM) {
            f.unavailable = "io_uring_setup is not permitted (EPERM): a seccomp profile or "
                            "container policy blocks it; allow io_uring_setup, io_uring_enter "
                            "and io_uring_register";
        } else if (rc == -ENOMEM) {
            f.unavailable = "io_uring_setup failed with ENOMEM: raise RLIMIT_MEMLOCK "
                            "(LimitMEMLOCK= in the systemd unit) or run Linux 5.12 or newer";
        } else {
            f.unavailable = "io_uring_setup failed: " + errno_text(rc);
        }
        return f;
    }
    f.available = true;
    f.single_issuer = try_setup(IORING_SETUP_SINGLE_ISSUER, nullptr) == 0;
    f.defer_taskrun =
        f.single_issuer &&
        try_setup(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, nullptr) == 0;
    f.coop_taskrun = try_setup(IORING_SETUP_COOP_TASKRUN, nullptr) == 0;

    io_uring ring{};
    io_uring_params p{};
    if (io_uring_queue_init_params(8, &ring, &p) == 0) {
        f.ext_arg = (p.features & IORING_FEAT_EXT_ARG) != 0;
        f.buf_ring = probe_buf_ring_and_multishot_recv(ring, f.multishot_recv, f.recv_limit);
        io_uring_queue_exit(&ring);
    }
    if (probe != nullptr) {
        f.send_zc = io_uring_opcode_supported(probe, IORING_OP_SEND_ZC) != 0;
        // Multishot accept arrived in 5.19 together with buffer rings.
        f.multishot_accept = f.buf_ring && io_uring_opcode_supported(probe, IORING_OP_ACCEPT);
        io_uring_free_probe(probe);
    }
    std::string missing;
    auto need = [&](bool has, std::string_view what) {
        if (!has) {
            missing += missing.empty() ? "" : ", ";
            missing += what;
        }
    };
    need(f.multishot_accept, "multishot accept");
    need(f.multishot_recv, "multishot recv");
    need(f.buf_ring, "provided buffer rings");
    need(f.ext_arg, "ext_arg timeouts");
    if (!missing.empty()) {
        f.missing = "io_uring lacks " + missing + ": run on Linux 6.1 or newer";
    }
    return f;
}

void prep_limited_recv(io_uring_sqe* sqe, int fd, uint16_t group, uint32_t max_bytes,
                       bool kernel_limit) {
    if (kernel_limit) {
        io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
        // sqe->optlen in newer headers: the same field.
        sqe->file_index = max_bytes;
    } else {
        io_uring_prep_recv(sqe, fd, nullptr, 0, 0);
    }
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = group;
}

Ring::~Ring() {
    if (_initialized) {
        io_uring_queue_exit(&_ring);
    }
}

std::string Ring::init(unsigned entries, unsigned setup_flags) {
    io_uring_params p{};
    p.flags = setup_flags | IORING_SETUP_CQSIZE;
    // Multishot operations post many completions per submission: give the CQ room.
    p.cq_entries = entries * 4;
    int rc = io_uring_queue_init_params(entries, &_ring, &p);
    if (rc < 0) {
        return "io_uring_queue_init: " + errno_text(rc);
    }
    _initialized = true;
    _flags = p.flags;
    return {};
}

io_uring_sqe* Ring::sqe() {
    io_uring_sqe* s = io_uring_get_sqe(&_ring);
    while (s == nullptr) {
        io_uring_submit(&_ring);
        s = io_uring_get_sqe(&_ring);
    }
    return s;
}

int Ring::submit_and_wait(int64_t timeout_ns) {
    __kernel_timespec ts{};
    ts.tv_sec = timeout_ns / 1'000'000'000;
    ts.tv_nsec = timeout_ns % 1'000'000'000;
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_submit_and_wait_timeout(&_ring, &cqe, 1, &ts, nullptr);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        return rc;
    }
    return 0;
}

BufferRing::~BufferRing() {
    if (_br != nullptr) {
        io_uring_unregister_buf_ring(_ring->raw(), _group);
        munmap(_br, _ring_bytes);
    }
    if (_memory != nullptr) {
        munmap(_memory, _memory_bytes);
    }
}

std::string BufferRing::init(Ring& ring, uint16_t group_id, unsigned count, unsigned buffer_size) {
    _ring = &ring;
    _group = group_id;
    _count = count;
    _buffer_size = buffer_size;
    // liburing 2.3 has no io_uring_setup_buf_ring(): map the ring ourselves, page aligned.
    _ring_bytes = sizeof(io_uring_buf) * count;
    void* r =
        mmap(nullptr, _ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (r == MAP_FAILED) {
        return "mmap buffer ring: " + errno_text(errno);
    }
    _br = static_cast<io_uring_buf_ring*>(r);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uintptr_t>(_br);
    reg.ring_entries = count;
    reg.bgid = group_id;
    int rc = io_uring_register_buf_ring(ring.raw(), &reg, 0);
    if (rc < 0) {
        munmap(_br, _ring_bytes);
        _br = nullptr;
        return "io_uring_register_buf_ring: " + errno_text(rc);
    }
    _memory_bytes = size_t(count) * buffer_size;
    // Populated at once: the receive path never takes a page fault, and the shard's memory is
    // what it will be under load from the start (the pages would all be touched by then anyway).
    void* m = mmap(nullptr, _memory_bytes, PROT_READ | PROT_WRITE,
                   MAP_ANONYMOUS | MAP_PRIVATE | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED) {
        return "mmap receive buffers: " + errno_text(errno);
    }
    _memory = static_cast<char*>(m);
    io_uring_buf_ring_init(_br);
    for (unsigned i = 0; i < count; ++i) {
        recycle(static_cast<uint16_t>(i));
    }
    publish();
    return {};
}

void BufferRing::recycle(uint16_t bid) {
    io_uring_buf_ring_add(_br, buffer(bid), _buffer_size, bid, io_uring_buf_ring_mask(_count),
                          static_cast<int>(_pending));
    ++_pending;
}

void BufferRing::publish() {
    if (_pending != 0) {
        io_uring_buf_ring_advance(_br, static_cast<int>(_pending));
        _outstanding += _pending;
        _pending = 0;
    }
}

} // namespace portcullis::io
