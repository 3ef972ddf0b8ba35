#include "portcullis/admit/cidr_set.hh"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace portcullis::admit {

CidrSet::Bits CidrSet::bits_of(const std::array<uint8_t, 16>& addr) {
    // Two loads and two byte swaps: this runs once per lookup.
    uint64_t hi = 0;
    uint64_t lo = 0;
    std::memcpy(&hi, addr.data(), 8);
    std::memcpy(&lo, addr.data() + 8, 8);
    if constexpr (std::endian::native == std::endian::little) {
        hi = __builtin_bswap64(hi);
        lo = __builtin_bswap64(lo);
    }
    return {hi, lo};
}

CidrSet::Bits CidrSet::mask_of(unsigned prefix_len) {
    // Shifting a 64-bit value by 64 is undefined, hence the explicit ends.
    auto ones = [](unsigned n) -> uint64_t { return n == 0 ? 0 : ~uint64_t{0} << (64 - n); };
    if (prefix_len <= 64) {
        return {ones(prefix_len), 0};
    }
    return {~uint64_t{0}, ones(prefix_len - 64)};
}

CidrSet::CidrSet(std::span<const config::Cidr> cidrs) {
    std::vector<std::pair<uint8_t, Bits>> entries;
    entries.reserve(cidrs.size());
    for (const config::Cidr& c : cidrs) {
        if (c.prefix_len > 128) {
            // A Cidr only comes from parse_cidr, which never makes one: a bug, not input.
            std::abort();
        }
        const Bits mask = mask_of(c.prefix_len);
        const Bits addr = bits_of(c.addr);
        entries.emplace_back(c.prefix_len, Bits{addr.hi & mask.hi, addr.lo & mask.lo});
    }
    std::sort(entries.begin(), entries.end());
    entries.erase(std::unique(entries.begin(), entries.end()), entries.end());

    _networks.reserve(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
        if (i == 0 || entries[i].first != entries[i - 1].first) {
            const auto at = static_cast<uint32_t>(_networks.size());
            _groups.push_back({mask_of(entries[i].first), at, at});
        }
        _networks.push_back(entries[i].second);
        _groups.back().end = static_cast<uint32_t>(_networks.size());
    }
}

bool CidrSet::contains(const base::PeerAddress& peer) const {
    const Bits addr = bits_of(peer.addr);
    for (const Group& g : _groups) {
        const Bits key{addr.hi & g.mask.hi, addr.lo & g.mask.lo};
        const auto* first = _networks.data() + g.begin;
        const auto* last = _networks.data() + g.end;
        if (std::binary_search(first, last, key)) {
            return true;
        }
    }
    return false;
}

} // namespace portcullis::admit
