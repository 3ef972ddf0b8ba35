// Multishot receive into the provided-buffer ring, end to end over a socketpair: the ring
// registration that liburing 2.3 leaves to us, buffer ids, recycling and re-use.
#include "portcullis/io/ring.hh"

#include <gtest/gtest.h>

#include <string>
#include <sys/socket.h>
#include <unistd.h>

using namespace portcullis::io;

namespace {

struct SocketPair {
    int fds[2] = {-1, -1};
    SocketPair() { socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds); }
    ~SocketPair() {
        close(fds[0]);
        close(fds[1]);
    }
};

} // namespace

TEST(Ring, MultishotRecvCyclesThroughProvidedBuffers) {
    Features f = probe_features();
    if (!f.available || !f.missing.empty()) {
        GTEST_SKIP() << "io_uring unusable here: " << f.unavailable << f.missing;
    }
    Ring ring;
    ASSERT_EQ(ring.init(64, f.setup_flags()), "");
    BufferRing buffers;
    constexpr unsigned count = 4;
    constexpr unsigned size = 64;
    ASSERT_EQ(buffers.init(ring, 7, count, size), "");
    SocketPair sp;

    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_recv_multishot(sqe, sp.fds[0], nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 7;
    sqe->user_data = 42;

    // More messages than buffers: only recycling keeps the receive going.
    std::string received;
    std::string sent;
    for (int i = 0; i < 3 * int(count); ++i) {
        std::string msg = "message " + std::to_string(i) + ";";
        ASSERT_EQ(write(sp.fds[1], msg.data(), msg.size()), ssize_t(msg.size()));
        sent += msg;
        bool got = false;
        for (int tries = 0; tries < 50 && !got; ++tries) {
            ASSERT_EQ(ring.submit_and_wait(100'000'000), 0);
            ring.for_each_cqe([&](const io_uring_cqe& cqe) {
                ASSERT_EQ(cqe.user_data, 42u);
                ASSERT_GT(cqe.res, 0) << "recv failed: " << cqe.res;
                ASSERT_TRUE(cqe.flags & IORING_CQE_F_BUFFER);
                EXPECT_TRUE(cqe.flags & IORING_CQE_F_MORE) << "multishot recv ended early";
                auto bid = static_cast<uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
                ASSERT_LT(bid, count);
                received.append(buffers.buffer(bid), static_cast<size_t>(cqe.res));
                buffers.recycle(bid);
                got = true;
            });
            buffers.publish();
        }
        ASSERT_TRUE(got) << "no completion for message " << i;
    }
    EXPECT_EQ(received, sent);
}

TEST(Ring, ProbeDescribesEveryFeature) {
    Features f = probe_features();
    std::string text = f.describe();
    if (!f.available) {
        EXPECT_NE(text.find("REQUIRED"), std::string::npos);
        return;
    }
    for (const char* name : {"multishot accept", "multishot recv", "provided buffer ring",
                             "single issuer", "defer taskrun", "recv limit"}) {
        EXPECT_NE(text.find(name), std::string::npos) << name;
    }
}

namespace {

// Arms prep_limited_recv(limit) over a socketpair holding `sent` bytes, with `count` provided
// buffers of `size` bytes, and collects completions until one comes without
// IORING_CQE_F_MORE. Returns the bytes received; sets `completions`.
std::string limited_recv(const Features& f, bool kernel_limit, uint32_t limit,
                         const std::string& sent, int& completions, int& fd_left) {
    Ring ring;
    EXPECT_EQ(ring.init(64, f.setup_flags()), "");
    BufferRing buffers;
    constexpr unsigned count = 8;
    constexpr unsigned size = 64;
    EXPECT_EQ(buffers.init(ring, 3, count, size), "");
    SocketPair sp;
    EXPECT_EQ(write(sp.fds[1], sent.data(), sent.size()), ssize_t(sent.size()));
    prep_limited_recv(ring.sqe(), sp.fds[0], 3, limit, kernel_limit);
    std::string received;
    completions = 0;
    bool ended = false;
    for (int tries = 0; tries < 50 && !ended; ++tries) {
        EXPECT_EQ(ring.submit_and_wait(100'000'000), 0);
        ring.for_each_cqe([&](const io_uring_cqe& cqe) {
            EXPECT_GT(cqe.res, 0) << "recv failed: " << cqe.res;
            if (cqe.res <= 0) {
                ended = true;
                return;
            }
            auto bid = static_cast<uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
            received.append(buffers.buffer(bid), static_cast<size_t>(cqe.res));
            buffers.recycle(bid);
            ++completions;
            ended = ended || (cqe.flags & IORING_CQE_F_MORE) == 0;
        });
        buffers.publish();
    }
    EXPECT_TRUE(ended) << "the receive did not end by itself";
    // What it did not take is still in the socket, in order.
    char rest[4096];
    ssize_t n = read(sp.fds[0], rest, sizeof rest);
    fd_left = n > 0 ? int(n) : 0;
    if (n > 0) {
        EXPECT_EQ(received + std::string(rest, size_t(n)), sent);
    }
    return received;
}

} // namespace

// Backpressure rests on this: one armed receive takes about its limit, never the whole socket.
TEST(Ring, LimitedRecvTakesAboutItsLimitAndEnds) {
    Features f = probe_features();
    if (!f.available || !f.missing.empty()) {
        GTEST_SKIP() << "io_uring unusable here: " << f.unavailable << f.missing;
    }
    std::string sent;
    for (int i = 0; sent.size() < 1000; ++i) {
        sent += "chunk " + std::to_string(i) + ";";
    }
    int completions = 0;
    int left = 0;

    // Without the kernel's limit: a single receive of one buffer.
    std::string got = limited_recv(f, false, 150, sent, completions, left);
    EXPECT_EQ(completions, 1);
    EXPECT_EQ(got.size(), 64u);
    EXPECT_EQ(got.size() + size_t(left), sent.size());

    if (!f.recv_limit) {
        GTEST_SKIP() << "this kernel has no multishot receive limit (Linux 6.17)";
    }
    // A multishot receive the kernel ends once 150 bytes are in: three 64-byte buffers.
    got = limited_recv(f, true, 150, sent, completions, left);
    EXPECT_EQ(completions, 3);
    EXPECT_GE(got.size(), 150u);
    EXPECT_LT(got.size(), 150u + 64u);
    EXPECT_EQ(got.size() + size_t(left), sent.size());
}
