// A set of IPv4 and IPv6 networks asked one question on the request path: is this peer inside?
// Used for server.deny, a route's allow and server.client_ip.trusted_proxies (SPEC section 2).
//
//   const CidrSet allow(route.allow);              // at load: sorts, allocates
//   if (!allow.empty() && !allow.contains(client)) { answer 403 }   // per request: no allocation
//
// IPv4 networks are kept IPv4-mapped (config::Cidr does so), and so are IPv4 peers
// (base::PeerAddress), so 10.0.0.0/8 matches the peer 10.1.2.3 and ::/0 matches every peer,
// IPv4 included. An empty set matches nothing: whether an empty list means "everyone" (allow) or
// "no one" (deny, trusted_proxies) is the caller's decision.
#pragma once

#include "portcullis/base/address.hh"
#include "portcullis/config/config.hh"

#include <compare>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace portcullis::admit {

class CidrSet {
public:
    CidrSet() = default;
    // Precondition: every prefix_len is at most 128 (config::parse_cidr guarantees it; a larger
    // one aborts). Host bits beyond the prefix are ignored. Duplicates are kept once.
    explicit CidrSet(std::span<const config::Cidr> cidrs);

    // Whether peer lies in one of the networks; the port plays no part. No allocation; about
    // one binary search per distinct prefix length in the set.
    bool contains(const base::PeerAddress& peer) const;

    bool empty() const { return _networks.empty(); }
    // Distinct networks held.
    size_t size() const { return _networks.size(); }

private:
    // 128 bits as two integers in host order, so that masking and ordering are two operations.
    struct Bits {
        uint64_t hi = 0;
        uint64_t lo = 0;
        // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads the defaulted <=>.
        auto operator<=>(const Bits&) const = default;
    };
    // The networks of one prefix length: _networks[begin, end), sorted.
    struct Group {
        Bits mask;
        uint32_t begin = 0;
        uint32_t end = 0;
    };

    static Bits bits_of(const std::array<uint8_t, 16>& addr);
    static Bits mask_of(unsigned prefix_len);

    std::vector<Bits> _networks; // masked, grouped by prefix length, sorted within a group
    std::vector<Group> _groups;  // one per prefix length present, shortest prefix first
};

} // namespace portcullis::admit
