#include "portcullis/base/doorbell.hh"

#include "portcullis/base/file.hh"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace portcullis::base {

Doorbell::~Doorbell() {
    if (_fd >= 0) {
        ::close(_fd);
    }
}

std::string Doorbell::open() {
    // Blocking: io_uring answers a read of a non-blocking file with -EAGAIN at once instead of
    // waiting for it. A write blocks only when the counter is near 2^64, which rings never reach.
    _fd = ::eventfd(0, EFD_CLOEXEC);
    if (_fd < 0) {
        return errno_message("eventfd", errno);
    }
    return "";
}

void Doorbell::ring() const {
    const uint64_t one = 1;
    // Cannot fail on a valid eventfd short of a counter near its maximum (2^64 - 2).
    [[maybe_unused]] ssize_t n = ::write(_fd, &one, sizeof one);
}

} // namespace portcullis::base
