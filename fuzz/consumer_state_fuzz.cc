// consumers.state comes back from disk at every start and at every reload: a torn or edited file
// must never crash the loader, and whatever it accepts must be a set the control plane could have
// written (each consumer passes consumer_error, no name or token digest twice) and write back the
// same bytes.
#include "fuzz_check.hh"

#include "portcullis/admin/consumer_store.hh"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using namespace portcullis;
using portcullis::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    std::vector<admin::Consumer> consumers;
    const std::string err = admin::parse_consumer_state(text, "consumers.state", consumers);
    if (!err.empty()) {
        check(consumers.empty() && err.starts_with("consumers.state:"));
        return 0;
    }
    check(consumers.size() <= admin::max_consumers);
    for (size_t i = 0; i < consumers.size(); ++i) {
        check(admin::consumer_error(consumers[i]).empty());
        for (size_t j = 0; j < i; ++j) {
            check(consumers[i].name != consumers[j].name);
            check(consumers[i].token_sha256 != consumers[j].token_sha256);
        }
    }
    // What parses is what portcullis writes: the same bytes come back.
    check(admin::format_consumer_state(consumers) == text);
    return 0;
}
