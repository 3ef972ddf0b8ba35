// Helpers for tests that run parse_head on every scan path (AVX-512, AVX2, SSE2, scalar) this
// build and CPU offer:
//
//   for (ScanPath path : available_scan_paths()) {
//       ScopedScanPath on(path);
//       EXPECT_EQ(parse(raw), expected) << name_of(path);
//   }
#pragma once

#include "portcullis/http/parser.hh"

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

namespace portcullis::http::test {

inline std::string_view name_of(ScanPath path) {
    switch (path) {
    case ScanPath::scalar:
        return "scalar";
    case ScanPath::sse2:
        return "sse2";
    case ScanPath::avx2:
        return "avx2";
    case ScanPath::avx512:
        return "avx512";
    }
    return "?";
}

// Scalar first: it is the reference the others are compared with.
inline std::vector<ScanPath> available_scan_paths() {
    std::vector<ScanPath> paths;
    for (ScanPath path : {ScanPath::scalar, ScanPath::sse2, ScanPath::avx2, ScanPath::avx512}) {
        if (scan_path_available(path)) {
            paths.push_back(path);
        }
    }
    return paths;
}

// Parses on `path` for the rest of the scope, then goes back to the path in use before.
class ScopedScanPath {
public:
    explicit ScopedScanPath(ScanPath path) : _previous(scan_path()) {
        EXPECT_TRUE(use_scan_path(path)) << name_of(path);
    }
    ~ScopedScanPath() { use_scan_path(_previous); }
    ScopedScanPath(const ScopedScanPath&) = delete;
    ScopedScanPath& operator=(const ScopedScanPath&) = delete;

private:
    ScanPath _previous;
};

} // namespace portcullis::http::test
