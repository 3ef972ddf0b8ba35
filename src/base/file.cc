#include "portcullis/base/file.hh"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>

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

std::string errno_message(const std::string& what, int err) {
    return what + ": " + std::strerror(err);
}

bool write_all(int fd, const void* data, size_t size) {
    const auto* p = static_cast<const char*>(data);
    while (size > 0) {
        ssize_t n = ::write(fd, p, size);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return false;
        }
        p += n;
        size -= static_cast<size_t>(n);
    }
    return true;
}

std::string sync_dir(const std::string& dir) {
    int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return errno_message("cannot open " + dir, errno);
    }
    std::string error;
    if (::fsync(fd) != 0) {
        error = errno_message("cannot fsync " + dir, errno);
    }
    ::close(fd);
    return error;
}

std::string replace_file(const std::string& path, const std::function<bool(int fd)>& write_contents,
                         unsigned mode) {
    const std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        return errno_message("cannot create " + tmp, errno);
    }
    std::string error;
    // A temporary file a crash left behind keeps its mode through O_CREAT: set it again.
    if (::fchmod(fd, mode) != 0) {
        error = errno_message("cannot chmod " + tmp, errno);
    } else if (!write_contents(fd)) {
        error = errno_message("cannot write " + tmp, errno);
    }
    if (error.empty() && ::fdatasync(fd) != 0) {
        error = errno_message("cannot fdatasync " + tmp, errno);
    }
    if (::close(fd) != 0 && error.empty()) {
        error = errno_message("cannot close " + tmp, errno);
    }
    if (error.empty() && ::rename(tmp.c_str(), path.c_str()) != 0) {
        error = errno_message("cannot rename " + tmp + " to " + path, errno);
    }
    if (!error.empty()) {
        ::unlink(tmp.c_str());
        return error;
    }
    return sync_dir(std::filesystem::path(path).parent_path().native());
}

} // namespace portcullis::base
