// The io_uring of one shard: set-up with the best flags the kernel takes, one submission per
// loop iteration, and a provided-buffer ring for multishot receives.
//
//   Ring ring;
//   if (auto err = ring.init(4096); !err.empty()) { fail(err); }
//   io_uring_sqe* sqe = ring.sqe();          // never null: flushes the SQ when full
//   io_uring_prep_nop(sqe); sqe->user_data = ...;
//   ring.submit_and_wait(timeout_ns);        // the one submission of the iteration
//   ring.for_each_cqe([](const io_uring_cqe& c) { ... });
#pragma once

#include <liburing.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace portcullis::io {

// What this kernel's io_uring offers and what the appliance uses (`portcullis probe`, /healthz).
struct Features {
    bool available = false;        // io_uring_setup works at all
    std::string unavailable;       // why not, with what to change
    bool single_issuer = false;    // IORING_SETUP_SINGLE_ISSUER (6.0)
    bool defer_taskrun = false;    // IORING_SETUP_DEFER_TASKRUN (6.1)
    bool coop_taskrun = false;     // IORING_SETUP_COOP_TASKRUN (5.19)
    bool ext_arg = false;          // timeouts without a timeout SQE (5.11)
    bool multishot_accept = false; // (5.19)
    bool multishot_recv = false;   // (6.0)
    bool recv_limit = false;       // a byte limit on a multishot recv (6.17)
    bool buf_ring = false;         // registered provided-buffer rings (5.19)
    bool send_zc = false;          // IORING_OP_SEND_ZC (6.0), reported only
    std::string missing;           // required features that are missing, for the error line

    // Setup flags this kernel accepts, best first.
    unsigned setup_flags() const;
    // One line per feature: "multishot recv      yes  used".
    std::string describe() const;
};

// Probes by creating and tearing down small rings. Cheap; called at start-up.
Features probe_features();

class BufferRing;

// Prepares a receive into provided-buffer group `group` that takes about max_bytes at most, so
// that a connection's intake between two looks at it is bounded (a multishot receive alone
// takes whatever the socket holds, up to the whole ring, before a cancel could land). With
// kernel_limit (Features::recv_limit) it is a multishot receive that the kernel ends once
// max_bytes are in; otherwise a single receive of one buffer. Either way the completion without
// IORING_CQE_F_MORE ends it, and the last buffer may pass max_bytes by less than its size.
void prep_limited_recv(io_uring_sqe* sqe, int fd, uint16_t group, uint32_t max_bytes,
                       bool kernel_limit);

class Ring {
public:
    Ring() = default;
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    ~Ring();

    // Returns an empty string on success, else what failed (errno text included).
    std::string init(unsigned entries, unsigned setup_flags);

    // A free SQE. When the SQ is full it is submitted first (that is the only case in which an
    // iteration submits twice), so the result is never null.
    io_uring_sqe* sqe();

    // Submits everything queued and waits for at least one completion or timeout_ns.
    // Returns -errno on a ring failure other than a timeout or an interrupt.
    int submit_and_wait(int64_t timeout_ns);

    template <typename F>
    unsigned for_each_cqe(F&& f) {
        unsigned head;
        unsigned n = 0;
        io_uring_cqe* cqe;
        io_uring_for_each_cqe(&_ring, head, cqe) {
            f(*cqe);
            ++n;
        }
        io_uring_cq_advance(&_ring, n);
        return n;
    }

    io_uring* raw() { return &_ring; }
    unsigned flags() const { return _flags; }

private:
    io_uring _ring{};
    bool _initialized = false;
    unsigned _flags = 0;
};

// A registered ring of fixed-size receive buffers that the kernel picks from for multishot
// recv. Buffers go back with recycle() as soon as their bytes are consumed or copied, so an
// idle connection holds none.
class BufferRing {
public:
    BufferRing() = default;
    BufferRing(const BufferRing&) = delete;
    BufferRing& operator=(const BufferRing&) = delete;
    ~BufferRing();

    // count must be a power of two <= 32768.
    std::string init(Ring& ring, uint16_t group_id, unsigned count, unsigned buffer_size);

    uint16_t group_id() const { return _group; }
    unsigned buffer_size() const { return _buffer_size; }
    unsigned count() const { return _count; }
    char* buffer(uint16_t bid) const { return _memory + size_t(bid) * _buffer_size; }
    // Hands buffer bid back to the kernel (visible after publish()).
    void recycle(uint16_t bid);
    // Publishes the recycled buffers; called once per loop iteration.
    void publish();
    // Buffers the kernel can use right now (published and not consumed), approximately.
    unsigned outstanding() const { return _outstanding; }
    void on_consumed() { --_outstanding; }

private:
    Ring* _ring = nullptr;
    io_uring_buf_ring* _br = nullptr;
    char* _memory = nullptr;
    size_t _ring_bytes = 0;
    size_t _memory_bytes = 0;
    uint16_t _group = 0;
    unsigned _count = 0;
    unsigned _buffer_size = 0;
    unsigned _pending = 0;
    unsigned _outstanding = 0;
};

} // namespace portcullis::io
