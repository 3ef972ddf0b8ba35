// The PROXY protocol header (HAProxy, versions 1 and 2) that an L4 balancer puts in front of a
// connection's first bytes to carry the client's address (server.client_ip.proxy_protocol).
//
//   ProxyResult r = parse_proxy(received, ProxyMode::any);
//   if (r.status < 0) { count(r.error); close(); }            // no HTTP answer: not HTTP yet
//   else if (r.status == 0) { wait_for_more(); }              // call again with the whole buffer
//   else { if (!r.local) { peer = r.source; } http starts at received.substr(r.status); }
//
// Stateless like picohttpparser: on "need more" the caller appends bytes and calls again with the
// whole buffer from the same start. Nothing past buf is read; nothing past the header is looked
// at. A prefix of a valid header is always "need more", never an error; a byte that cannot
// belong to a valid header is an error as soon as it arrives, with one exception: a v1 IPv6
// address is checked for its characters and length as it arrives and as a whole when the space
// after it does (the v1 line is at most 107 bytes, so the wait is bounded).
//
// Version 1: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n" (TCP6 likewise), or "PROXY UNKNOWN"
// then "\r\n" or a space, anything but CR and LF, "\r\n"; at most 107 bytes. Single spaces;
// addresses as inet_ntop writes them (IPv4 without leading zeros, IPv6 with a colon; an
// IPv4-mapped IPv6 source on a TCP6 line is kept, it is the same client); ports decimal 0..65535
// without leading zeros. The destination is checked and dropped.
//
// Version 2: the 12-byte signature, version 2 with command LOCAL (0x20) or PROXY (0x21), the
// family byte, a big-endian length and that many bytes. LOCAL: the block is skipped whatever it
// holds (health checks of the balancer itself). PROXY with TCP over IPv4 (0x11) or IPv6 (0x21):
// the source address and port are taken, and the rest of the block must be whole TLVs (type,
// 16-bit length, value), which are skipped (CRC32C and the rest are not checked: the balancer is
// trusted, the network between is the operator's). PROXY with UNSPEC (0x00), UDP (0x12, 0x22) or
// UNIX (0x31, 0x32): the block is skipped and the socket's peer is kept, as the spec asks of a
// receiver that does not support a valid family. Any other version, command or family byte is
// an error. A header is at most 16 + 65535 bytes; a caller with a smaller buffer refuses on its
// own.
#pragma once

#include "portcullis/base/address.hh"

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace portcullis::admit {

// Which versions a listener accepts; proxy_protocol: off means parse_proxy is never called.
enum class ProxyMode : uint8_t { v1, v2, any };

inline constexpr size_t proxy_v1_max_bytes = 107;
inline constexpr size_t proxy_v2_max_bytes = 16 + 65535;

struct ProxyResult {
    int status = 0;           // > 0: bytes of the header, consumed; 0: need more; -1: error
    bool local = false;       // LOCAL, UNKNOWN or an unsupported family: keep the socket's peer
    base::PeerAddress source; // the client (IPv4 mapped), with its port; set when !local
    std::string_view error;   // stable short code when status < 0: "bad_signature",
                              // "v1_malformed", "v1_too_long", "bad_address", "bad_port",
                              // "bad_version", "bad_command", "bad_family", "bad_length",
                              // "bad_tlv"
};

ProxyResult parse_proxy(std::string_view buf, ProxyMode mode);

} // namespace portcullis::admit
