// A peer address as the request path carries it: 16 bytes and a port, IPv4 kept IPv4-mapped
// (::ffff:a.b.c.d) so that one representation serves allow-lists, rate limits and the spool.
//
//   PeerAddress peer = PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss));
//   char ip[INET6_ADDRSTRLEN];
//   log.field("peer", peer.format_ip(ip));
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace portcullis::base {

struct PeerAddress {
    std::array<uint8_t, 16> addr{}; // network byte order
    uint16_t port = 0;              // host byte order

    bool is_v4() const;

    // AF_INET is mapped into ::ffff:0:0/96; AF_INET6 is taken as is (the scope id is dropped).
    // Any other family, or nullptr, gives the all-zero address "::" with port 0.
    static PeerAddress from_sockaddr(const sockaddr* sa);
    // An IPv4 or IPv6 literal ("203.0.113.5", "2001:db8::1"), without brackets or port.
    static std::optional<PeerAddress> parse(std::string_view ip, uint16_t port = 0);

    // "203.0.113.5" for mapped IPv4, "2001:db8::1" (RFC 5952, by inet_ntop) otherwise. Writes
    // into out and returns the view of it; no allocation.
    std::string_view format_ip(char (&out)[INET6_ADDRSTRLEN]) const;
    // "203.0.113.5:443" / "[2001:db8::1]:443", for cold paths.
    std::string to_string() const;

    bool operator==(const PeerAddress&) const = default;
};

// A port as text: decimal 0..65535, no sign, no leading zero (nobody prints ports so). With
// complete false, also anything that could still become one ("", "6", "655").
bool port_text_valid(std::string_view s, bool complete = true);

} // namespace portcullis::base
