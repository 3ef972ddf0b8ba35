// Files at start-up and on cold paths: reading a small file named in the configuration (a
// secret, a certificate, the configuration itself) without blocking on a FIFO or a device named
// by mistake, and replacing a file so that a crash leaves the old one or the new one.
//
//   std::string text;
//   if (auto why = base::read_regular_file(path, 64 << 10, text)) { error(path + ": " + *why); }
//   std::string err = base::replace_file(path, [&](int fd) {
//       return base::write_all(fd, text.data(), text.size());
//   });
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>

namespace portcullis::base {

// Reads the whole of a regular file of at most `limit` bytes into `out`. Returns why it cannot
// (strerror's text, "not a regular file", "larger than 64 KiB"), or nullopt.
std::optional<std::string> read_regular_file(const std::string& path, size_t limit,
                                             std::string& out);

// what + ": " + the errno's text.
std::string errno_message(const std::string& what, int err);

// write(2) until all size bytes are written, retrying on EINTR. False with errno set.
bool write_all(int fd, const void* data, size_t size);

// fsync of a folder (dir "" is the working directory), so that names created, renamed or removed
// in it last. Returns "" or the error.
std::string sync_dir(const std::string& dir);

// Replaces path atomically: write_contents fills path + ".tmp" (given mode, 0640 unless
// said otherwise; false from it means
// errno says why), which is then fdatasynced and renamed over path, and the folder fsynced. A
// crash at any point leaves the old file or the new one. Returns "" or the error, naming the
// file; on error path is untouched and the temporary file removed.
std::string replace_file(const std::string& path, const std::function<bool(int fd)>& write_contents,
                         unsigned mode = 0640);

} // namespace portcullis::base
