// The PROXY protocol header is the first thing a connection's peer sends when proxy_protocol is
// on, before any HTTP: whatever the bytes, parse_proxy must answer within them and agree with
// itself.
//
// The whole input is the received buffer, parsed in each mode. Checks:
// - consumed <= size; an error has a code and no source, a success none;
// - mode any answers exactly as the mode of the version its first byte names;
// - v1 and v2 never both accept (their signatures differ in the first byte);
// - a header of N bytes is found again, the same, in the first N bytes alone, and every shorter
//   prefix needs more (checked for all prefixes of short headers, a sample of long ones);
// - the answer for the input less its last byte is consistent: an error stays an error with the
//   same code, a header stays the same header, and "need more" only becomes one of the three;
// - a v1 header is at most 107 bytes, a v2 one at most 16 + 65535.
#include "portcullis/admit/proxy_protocol.hh"

#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

using namespace portcullis::admit;

namespace {

void check(bool ok) {
    if (!ok) {
        std::abort();
    }
}

bool same(const ProxyResult& a, const ProxyResult& b) {
    return a.status == b.status && a.local == b.local && a.source == b.source && a.error == b.error;
}

// Each call gets its own allocation of exactly n bytes, so that ASan sees any read past them.
ProxyResult parse_copy(std::string_view in, size_t n, ProxyMode mode) {
    const std::vector<char> copy(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n));
    return parse_proxy(std::string_view(copy.data(), copy.size()), mode);
}

void check_one(std::string_view in, ProxyMode mode) {
    const ProxyResult r = parse_copy(in, in.size(), mode);
    check(r.status >= -1 && (r.status < 0 || static_cast<size_t>(r.status) <= in.size()));
    check((r.status < 0) == !r.error.empty());
    if (r.status <= 0) {
        check(!r.local && r.source == portcullis::base::PeerAddress{});
    }
    if (r.status > 0) {
        const auto n = static_cast<size_t>(r.status);
        check(in[0] == 'P' ? n <= proxy_v1_max_bytes : n <= proxy_v2_max_bytes);
        check(same(parse_copy(in, n, mode), r));
        const size_t step = n <= 256 ? 1 : n / 64;
        for (size_t k = 0; k < n; k += step) {
            check(parse_copy(in, k, mode).status == 0);
        }
        check(parse_copy(in, n - 1, mode).status == 0);
    }
    if (!in.empty()) {
        const ProxyResult shorter = parse_copy(in, in.size() - 1, mode);
        if (shorter.status < 0) {
            check(r.status < 0 && r.error == shorter.error);
        } else if (shorter.status > 0) {
            check(same(shorter, r));
        }
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    for (ProxyMode mode : {ProxyMode::v1, ProxyMode::v2, ProxyMode::any}) {
        check_one(in, mode);
    }
    const ProxyResult v1 = parse_copy(in, in.size(), ProxyMode::v1);
    const ProxyResult v2 = parse_copy(in, in.size(), ProxyMode::v2);
    const ProxyResult any = parse_copy(in, in.size(), ProxyMode::any);
    if (!in.empty()) {
        check(same(any, in[0] == '\r' ? v2 : v1));
        check(v1.status < 0 || v2.status < 0);
    }
    return 0;
}
