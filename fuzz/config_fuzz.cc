// Configuration text -> config::load_text, and the summary of whatever loads. Must never crash,
// leak or hang, whatever the bytes. Secret files and integrity pins named by the input are read
// like any configuration would read them (regular files only, secrets capped at 64KiB).
#include "portcullis/config/config.hh"
#include "portcullis/config/summary.hh"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    portcullis::config::LoadResult result = portcullis::config::load_text("fuzz.yaml", text);
    size_t total = 0;
    for (const auto& d : result.errors) {
        total += d.format().size();
    }
    for (const auto& d : result.warnings) {
        total += d.format().size();
    }
    if (result.ok()) {
        total += portcullis::config::summarize(*result.config, 4).size();
    }
    return total == static_cast<size_t>(-1) ? 1 : 0;
}
