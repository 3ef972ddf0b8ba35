#include "portcullis/base/doorbell.hh"

#include <gtest/gtest.h>

#include <poll.h>
#include <unistd.h>

#include <thread>

namespace {

using portcullis::base::Doorbell;

bool readable(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

// Rings add up until the owner reads; a read leaves it quiet until the next ring, which may come
// from another thread.
TEST(Doorbell, RingsWakeTheReaderAndAddUpUntilRead) {
    Doorbell bell;
    ASSERT_EQ(bell.open(), "");
    EXPECT_FALSE(readable(bell.fd(), 0)) << "quiet before the first ring";
    bell.ring();
    bell.ring();
    ASSERT_TRUE(readable(bell.fd(), 0));
    ASSERT_EQ(::read(bell.fd(), &bell.count, sizeof bell.count), 8);
    EXPECT_EQ(bell.count, 2u);
    EXPECT_FALSE(readable(bell.fd(), 0)) << "a read takes every ring";
    std::thread other([&] { bell.ring(); });
    EXPECT_TRUE(readable(bell.fd(), 5000));
    other.join();
}

} // namespace
