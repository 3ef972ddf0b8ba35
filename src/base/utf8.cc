#include "portcullis/base/utf8.hh"

#include <cstring>

namespace portcullis::base {

namespace {

constexpr uint64_t high_bits = 0x8080808080808080;

uint64_t load64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

} // namespace

bool is_utf8(std::string_view s) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    const uint8_t* const end = p + s.size();
    while (p != end) {
        // Webhook bodies are mostly ASCII (JSON, form encoding): skip 16 bytes with two loads
        // and one test. A window that holds a non-ASCII byte is walked sequence by sequence to
        // its end (a sequence may run past it), and then the fast path is tried again, so text
        // that mixes scripts still gets it between its non-ASCII runs.
        const uint8_t* stop = end;
        if (end - p >= 16) {
            if (((load64(p) | load64(p + 8)) & high_bits) == 0) {
                p += 16;
                continue;
            }
            stop = p + 16;
        }
        while (p < stop) {
            const detail::Utf8Lead lead = detail::utf8_leads[*p];
            if (lead.length == 1) {
                ++p;
                continue;
            }
            if (lead.length == 0 || lead.length > end - p || p[1] < lead.second_min ||
                p[1] > lead.second_max) {
                return false;
            }
            if (lead.length >= 3 && (p[2] & 0xc0) != 0x80) {
                return false;
            }
            if (lead.length == 4 && (p[3] & 0xc0) != 0x80) {
                return false;
            }
            p += lead.length;
        }
    }
    return true;
}

} // namespace portcullis::base
