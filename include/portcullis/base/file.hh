// Reading a small file named in the configuration (a secret, a certificate, the configuration
// itself) without blocking on a FIFO or a device named by mistake.
//
//   std::string text;
//   if (auto why = base::read_regular_file(path, 64 << 10, text)) { error(path + ": " + *why); }
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace portcullis::base {

// Reads the whole of a regular file of at most `limit` bytes into `out`. Returns why it cannot
// (strerror's text, "not a regular file", "larger than 64 KiB"), or nullopt.
std::optional<std::string> read_regular_file(const std::string& path, size_t limit,
                                             std::string& out);

} // namespace portcullis::base
