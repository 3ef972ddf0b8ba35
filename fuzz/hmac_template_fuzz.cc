// `hmac` templates -> SignedTemplate::parse and render_prefix. Must never crash; a template that
// parses renders to exactly its text without the final {body}, with {timestamp} replaced.
#include "portcullis/verify/signature_header.hh"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace portcullis::verify;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    SignedTemplate t;
    if (!t.parse(text)) {
        return 0;
    }
    std::string rendered;
    t.render_prefix("{timestamp}", [&](std::string_view piece) { rendered += piece; });
    if (rendered + "{body}" != text) {
        std::abort();
    }
    return 0;
}
