// The fuzz targets' assertion: a property that does not hold traps, and libFuzzer reports the
// trap as a crash with the input that made it (kept in NDEBUG builds, unlike assert).
#pragma once

namespace portcullis::fuzz {

inline void check(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

} // namespace portcullis::fuzz
