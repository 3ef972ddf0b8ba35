// Network addresses of the configuration: CIDRs (allow, deny, trusted_proxies) and listen
// addresses (server.listen, admin.listen).
#include "portcullis/base/encoding.hh"
#include "portcullis/config/config.hh"

#include "text.hh"

#include <arpa/inet.h>

namespace portcullis::config {

namespace {

using Address = std::array<uint8_t, 16>;

constexpr size_t mapped_prefix = 96; // ::ffff:0:0/96 holds the IPv4 space

// Dotted quad with no leading zeros: "010.0.0.1" is octal to some tools and decimal to others,
// so it is refused rather than guessed.
bool parse_ipv4(std::string_view s, Address& out) {
    out = Address{};
    out[10] = 0xff;
    out[11] = 0xff;
    size_t part = 0;
    size_t i = 0;
    while (part < 4) {
        size_t start = i;
        unsigned value = 0;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i - start < 3) {
            value = value * 10 + static_cast<unsigned>(s[i] - '0');
            ++i;
        }
        size_t len = i - start;
        if (len == 0 || value > 255 || (len > 1 && s[start] == '0')) {
            return false;
        }
        out[12 + part] = static_cast<uint8_t>(value);
        ++part;
        if (part < 4) {
            if (i >= s.size() || s[i] != '.') {
                return false;
            }
            ++i;
        }
    }
    return i == s.size();
}

bool parse_ipv6(std::string_view s, Address& out) {
    // inet_pton wants a NUL-terminated string; anything this long is not an address anyway.
    if (s.empty() || s.size() > 45) {
        return false;
    }
    std::string copy(s);
    return inet_pton(AF_INET6, copy.c_str(), out.data()) == 1;
}

bool is_mapped_ipv4(const Address& a) {
    for (size_t i = 0; i < 10; ++i) {
        if (a[i] != 0) {
            return false;
        }
    }
    return a[10] == 0xff && a[11] == 0xff;
}

std::string format_ipv4(const Address& a) {
    return std::to_string(a[12]) + '.' + std::to_string(a[13]) + '.' + std::to_string(a[14]) + '.' +
           std::to_string(a[15]);
}

std::string format_ipv6(const Address& a) {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(AF_INET6, a.data(), buf, sizeof buf);
    return buf;
}

// Parses "/n" digits: no sign, no leading zeros, at most max.
std::optional<unsigned> parse_prefix_len(std::string_view s, unsigned max) {
    if (s.empty() || s.size() > 3 || (s.size() > 1 && s[0] == '0')) {
        return std::nullopt;
    }
    unsigned v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v > max) {
        return std::nullopt;
    }
    return v;
}

Address masked(const Address& a, unsigned prefix_len) {
    Address out = a;
    for (size_t i = 0; i < out.size(); ++i) {
        size_t bit = i * 8;
        if (bit >= prefix_len) {
            out[i] = 0;
        } else if (bit + 8 > prefix_len) {
            out[i] &= static_cast<uint8_t>(0xff << (8 - (prefix_len - bit)));
        }
    }
    return out;
}

} // namespace

std::optional<Cidr> parse_cidr(std::string_view text, std::string* why) {
    auto fail = [&](std::string message) -> std::optional<Cidr> {
        if (why != nullptr) {
            *why = std::move(message);
        }
        return std::nullopt;
    };
    size_t slash = text.find('/');
    std::string_view host = text.substr(0, slash);
    Cidr cidr;
    cidr.text = std::string(text);
    bool v4 = parse_ipv4(host, cidr.addr);
    if (!v4 && !parse_ipv6(host, cidr.addr)) {
        return fail(detail::quote(host) +
                    " is not an IPv4 or IPv6 address (expected a CIDR like 10.0.0.0/8 or "
                    "2001:db8::/32)");
    }
    unsigned max = v4 ? 32 : 128;
    unsigned len = max;
    if (slash != std::string_view::npos) {
        auto parsed = parse_prefix_len(text.substr(slash + 1), max);
        if (!parsed) {
            return fail("prefix length must be a number from 0 to " + std::to_string(max) +
                        ", found " + detail::quote(text.substr(slash + 1)));
        }
        len = *parsed;
    }
    unsigned mapped_len = v4 ? len + mapped_prefix : len;
    Address network = masked(cidr.addr, mapped_len);
    if (network != cidr.addr) {
        std::string meant = v4 ? format_ipv4(network) : format_ipv6(network);
        return fail("host bits set beyond /" + std::to_string(len) + ": did you mean " + meant +
                    "/" + std::to_string(len) + "?");
    }
    cidr.prefix_len = static_cast<uint8_t>(mapped_len);
    return cidr;
}

std::optional<ListenAddress> parse_listen_address(std::string_view text, std::string* why) {
    auto fail = [&](std::string message) -> std::optional<ListenAddress> {
        if (why != nullptr) {
            *why = std::move(message);
        }
        return std::nullopt;
    };
    ListenAddress out;
    out.text = std::string(text);
    std::string_view port;
    Address scratch;
    if (!text.empty() && text[0] == '[') {
        size_t close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            return fail("expected [IPv6]:port, like [::1]:8080");
        }
        std::string_view host = text.substr(1, close - 1);
        if (!parse_ipv6(host, scratch)) {
            return fail(detail::quote(host) + " is not an IPv6 address");
        }
        out.host = std::string(host);
        port = text.substr(close + 2);
    } else {
        size_t colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            return fail("expected host:port, like 0.0.0.0:8080");
        }
        std::string_view host = text.substr(0, colon);
        if (host.empty()) {
            return fail("the host is missing: write 0.0.0.0:" + base::escape_text(text.substr(1)) +
                        " for every interface");
        }
        if (host.find(':') != std::string_view::npos) {
            return fail("IPv6 addresses go in brackets: [" + base::escape_text(host) + "]:port");
        }
        if (host != "localhost" && !parse_ipv4(host, scratch)) {
            return fail(detail::quote(host) +
                        " is not an IPv4 address, a bracketed IPv6 address or localhost");
        }
        out.host = std::string(host);
        port = text.substr(colon + 1);
    }
    unsigned value = 0;
    bool digits_only = !port.empty() && port.size() <= 5 && (port.size() == 1 || port[0] != '0');
    for (char c : port) {
        digits_only = digits_only && c >= '0' && c <= '9';
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (!digits_only || value > 65535) {
        return fail("port must be a number from 0 to 65535, found " + detail::quote(port));
    }
    out.port = static_cast<uint16_t>(value);
    return out;
}

bool listen_overlaps(const ListenAddress& a, const ListenAddress& b) {
    if (a.port == 0 || a.port != b.port) {
        return false;
    }
    auto parse_host = [](const std::string& host, Address& out) {
        return parse_ipv4(host, out) || parse_ipv6(host, out);
    };
    auto is_wildcard = [](const Address& addr) {
        return addr == Address{} || (is_mapped_ipv4(addr) && addr[12] == 0 && addr[13] == 0 &&
                                     addr[14] == 0 && addr[15] == 0);
    };
    auto is_loopback = [&](const std::string& host) {
        Address addr;
        if (host == "localhost") {
            return true;
        }
        if (!parse_host(host, addr)) {
            return false;
        }
        Address v4_loopback{};
        v4_loopback[10] = 0xff;
        v4_loopback[11] = 0xff;
        v4_loopback[12] = 127;
        v4_loopback[15] = 1;
        Address v6_loopback{};
        v6_loopback[15] = 1;
        return addr == v4_loopback || addr == v6_loopback;
    };
    Address x;
    Address y;
    bool x_ok = a.host != "localhost" && parse_host(a.host, x);
    bool y_ok = b.host != "localhost" && parse_host(b.host, y);
    if ((x_ok && is_wildcard(x)) || (y_ok && is_wildcard(y))) {
        return true;
    }
    if (a.host == "localhost" || b.host == "localhost") {
        return is_loopback(a.host) && is_loopback(b.host);
    }
    return x_ok && y_ok && x == y;
}

} // namespace portcullis::config
