// The client's address when the peer is a trusted proxy (server.client_ip.trusted_proxies,
// SPEC section 2): what allow, deny, rate limits and the spool's source_ip see.
//
//   const CidrSet trusted(cfg.server.trusted_proxies);   // at load
//   base::PeerAddress client = client_address(peer, head.headers, trusted);
//
// The rule, as nginx's realip module with real_ip_recursive on:
// - a peer outside `trusted` is the client, whatever it sends;
// - otherwise X-Forwarded-For is read from the right (every occurrence of the header, in the
//   order received, each a comma-separated list), skipping the addresses in `trusted`: the first
//   one outside it is the client;
// - if every entry is trusted, the left-most one is the client; without any entry, the peer;
// - an entry that is not an address stops the walk and the client is the last trusted hop seen
//   (the peer, or the entry to the right of the bad one): the bytes left of garbage were written
//   by someone no trusted proxy vouches for, so nothing there is believed;
// - more than max_forwarded_hops entries, all trusted, stop the walk the same way: no real chain
//   of proxies is that long, and the walk stays bounded on the request path.
// Empty list elements ("a,,b", "a, ") are skipped (RFC 9110 section 5.6.1).
//
// An entry is an IPv4 or IPv6 literal with optional whitespace (SP, HTAB) around it. Some
// proxies (Azure Application Gateway, IIS ARR) append the port; for them "203.0.113.5:1234",
// "[2001:db8::1]" and "[2001:db8::1]:443" are accepted as well. The port in an entry is checked
// (decimal, at most 65535) and dropped. An IPv6 literal with a port needs its brackets
// ("2001:db8::1:443" is the address 2001:db8::1:443); an IPv4 literal in brackets, a zone
// ("fe80::1%eth0"), "unknown" and obfuscated identifiers are not addresses.
//
// Port: the peer's port when the client is the peer; 0 when the client comes from the header,
// since no one can check the client's port behind a proxy.
#pragma once

#include "portcullis/admit/cidr_set.hh"
#include "portcullis/base/address.hh"
#include "portcullis/http/header.hh"

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

namespace portcullis::admit {

inline constexpr size_t max_forwarded_hops = 64;

// The client address of a request that arrived from `peer` with `headers`. No allocation.
base::PeerAddress client_address(const base::PeerAddress& peer,
                                 std::span<const http::Header> headers, const CidrSet& trusted);

// One X-Forwarded-For list element, whitespace already trimmed, in any of the forms above; the
// port is always 0. std::nullopt when it is not an address.
std::optional<base::PeerAddress> parse_forwarded_for_entry(std::string_view entry);

} // namespace portcullis::admit
