// Hex and base64 decoders as the schemes use them (decode_signature), checked against their
// encoders: whatever decodes must encode back to the same text (hex: up to case).
#include "portcullis/base/encoding.hh"
#include "portcullis/verify/signature_header.hh"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace portcullis;
using namespace portcullis::verify;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) {
        return 0;
    }
    // First byte: the size asked for (0..max_mac_size); the rest: the text.
    const size_t want = data[0] % (max_mac_size + 1);
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    for (config::Encoding e : {config::Encoding::hex, config::Encoding::base64}) {
        PresentedSignature sig;
        if (!decode_signature(text, e, want, sig)) {
            continue;
        }
        if (sig.size != want) {
            std::abort();
        }
        const std::span<const uint8_t> bytes(sig.bytes.data(), sig.size);
        std::string back = e == config::Encoding::hex ? base::hex(bytes) : base::base64(bytes);
        std::string lowered(text);
        if (e == config::Encoding::hex) {
            for (char& c : lowered) {
                c = http::ascii_lower(c);
            }
        }
        if (back != lowered) {
            std::abort();
        }
    }
    return 0;
}
