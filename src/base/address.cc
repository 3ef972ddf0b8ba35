#include "portcullis/base/address.hh"

#include <cstring>

namespace portcullis::base {

namespace {

constexpr std::array<uint8_t, 12> v4_mapped_prefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

} // namespace

bool PeerAddress::is_v4() const {
    return std::memcmp(addr.data(), v4_mapped_prefix.data(), v4_mapped_prefix.size()) == 0;
}

PeerAddress PeerAddress::from_sockaddr(const sockaddr* sa) {
    PeerAddress p;
    if (sa == nullptr) {
        return p;
    }
    // Copy out rather than cast: the caller's storage is usually a sockaddr_storage, and only
    // the bytes of the family actually stored there may be read.
    if (sa->sa_family == AF_INET) {
        sockaddr_in in{};
        std::memcpy(&in, sa, sizeof in);
        std::memcpy(p.addr.data(), v4_mapped_prefix.data(), v4_mapped_prefix.size());
        std::memcpy(p.addr.data() + 12, &in.sin_addr, 4);
        p.port = ntohs(in.sin_port);
    } else if (sa->sa_family == AF_INET6) {
        sockaddr_in6 in6{};
        std::memcpy(&in6, sa, sizeof in6);
        std::memcpy(p.addr.data(), &in6.sin6_addr, 16);
        p.port = ntohs(in6.sin6_port);
    }
    return p;
}

std::optional<PeerAddress> PeerAddress::parse(std::string_view ip, uint16_t port) {
    // inet_pton needs a NUL-terminated string; anything longer than the longest literal is not
    // an address.
    char text[INET6_ADDRSTRLEN];
    if (ip.empty() || ip.size() >= sizeof text || ip.find('\0') != std::string_view::npos) {
        return std::nullopt;
    }
    std::memcpy(text, ip.data(), ip.size());
    text[ip.size()] = '\0';
    PeerAddress p;
    p.port = port;
    in_addr v4{};
    if (inet_pton(AF_INET, text, &v4) == 1) {
        std::memcpy(p.addr.data(), v4_mapped_prefix.data(), v4_mapped_prefix.size());
        std::memcpy(p.addr.data() + 12, &v4, 4);
        return p;
    }
    in6_addr v6{};
    if (inet_pton(AF_INET6, text, &v6) == 1) {
        std::memcpy(p.addr.data(), &v6, 16);
        return p;
    }
    return std::nullopt;
}

std::string_view PeerAddress::format_ip(char (&out)[INET6_ADDRSTRLEN]) const {
    const char* s = is_v4() ? inet_ntop(AF_INET, addr.data() + 12, out, sizeof out)
                            : inet_ntop(AF_INET6, addr.data(), out, sizeof out);
    if (s == nullptr) {
        // Cannot happen with a buffer of INET6_ADDRSTRLEN; keep the contract of a valid view.
        out[0] = '\0';
    }
    return {out, std::strlen(out)};
}

std::string PeerAddress::to_string() const {
    char ip[INET6_ADDRSTRLEN];
    std::string_view text = format_ip(ip);
    std::string s;
    if (is_v4()) {
        s.append(text);
    } else {
        s.append("[").append(text).append("]");
    }
    s.append(":").append(std::to_string(port));
    return s;
}

bool port_text_valid(std::string_view s, bool complete) {
    if (s.size() > 1 && s[0] == '0') {
        return false;
    }
    unsigned value = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
        value = value * 10 + static_cast<unsigned>(c - '0');
        if (value > 65535) {
            return false;
        }
    }
    return !complete || !s.empty();
}

} // namespace portcullis::base
