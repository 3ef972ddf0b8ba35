#include "portcullis/base/file.hh"

#include <cerrno>
#include <cstdint>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace portcullis::base {

namespace {

std::string limit_text(size_t limit) {
    if (limit % (size_t{1} << 20) == 0) {
        return std::to_string(limit >> 20) + " MiB";
    }
    if (limit % 1024 == 0) {
        return std::to_string(limit >> 10) + " KiB";
    }
    return std::to_string(limit) + " bytes";
}

} // namespace

std::optional<std::string> read_regular_file(const std::string& path, size_t limit,
                                             std::string& out) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        return std::string(std::strerror(errno));
    }
    struct stat st {};
    std::optional<std::string> failure;
    if (::fstat(fd, &st) != 0) {
        failure = std::strerror(errno);
    } else if (!S_ISREG(st.st_mode)) {
        failure = "not a regular file";
    } else if (static_cast<uint64_t>(st.st_size) > limit) {
        failure = "larger than " + limit_text(limit);
    } else {
        out.resize(static_cast<size_t>(st.st_size));
        size_t done = 0;
        while (done < out.size()) {
            ssize_t n = ::read(fd, out.data() + done, out.size() - done);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0) {
                failure = std::strerror(errno);
                break;
            }
            if (n == 0) {
                break;
            }
            done += static_cast<size_t>(n);
        }
        out.resize(done);
    }
    ::close(fd);
    return failure;
}

} // namespace portcullis::base
