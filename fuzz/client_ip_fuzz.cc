// X-Forwarded-For reaches client_address from anyone behind a trusted proxy, so any header value
// must give an address that someone actually named.
//
// The input's first byte picks the peer (even: a trusted proxy, odd: an outside address); the
// rest, split at newlines, is one X-Forwarded-For line each. Checks:
// - an outside peer is its own client, whatever the header says;
// - otherwise the client is the peer itself or, with port 0, one of the entries as
//   parse_forwarded_for_entry reads it;
// - every entry that parses formats and parses back to the same address, with port 0.
#include "portcullis/admit/client_ip.hh"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace portcullis;

namespace {

void check(bool ok) {
    if (!ok) {
        std::abort();
    }
}

const admit::CidrSet& trusted() {
    static const admit::CidrSet set = [] {
        std::vector<config::Cidr> list;
        for (const char* t : {"10.0.0.0/8", "2001:db8::/32", "::1"}) {
            list.push_back(*config::parse_cidr(t));
        }
        return admit::CidrSet(list);
    }();
    return set;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) {
        return 0;
    }
    const base::PeerAddress peer = *base::PeerAddress::parse(
        (data[0] & 1) == 0 ? "10.0.0.1" : "198.51.100.1", static_cast<uint16_t>(data[0]));
    const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

    // Each line in its own allocation, so that ASan sees any read past one.
    std::vector<std::vector<char>> lines;
    size_t start = 0;
    while (start <= input.size()) {
        size_t nl = input.find('\n', start);
        if (nl == std::string_view::npos) {
            nl = input.size();
        }
        lines.emplace_back(input.begin() + static_cast<std::ptrdiff_t>(start),
                           input.begin() + static_cast<std::ptrdiff_t>(nl));
        start = nl + 1;
    }
    std::vector<http::Header> headers;
    std::vector<base::PeerAddress> named;
    for (const std::vector<char>& line : lines) {
        const std::string_view value(line.data(), line.size());
        headers.push_back({"X-Forwarded-For", value});
        size_t from = 0;
        while (from <= value.size()) {
            size_t comma = value.find(',', from);
            if (comma == std::string_view::npos) {
                comma = value.size();
            }
            const std::string_view entry = trim(value.substr(from, comma - from));
            if (const auto a = admit::parse_forwarded_for_entry(entry)) {
                check(a->port == 0);
                char text[INET6_ADDRSTRLEN];
                check(base::PeerAddress::parse(a->format_ip(text)) == *a);
                named.push_back(*a);
            }
            from = comma + 1;
        }
    }

    const base::PeerAddress client = admit::client_address(peer, headers, trusted());
    if (!trusted().contains(peer)) {
        check(client == peer);
        return 0;
    }
    bool found = client == peer;
    for (const base::PeerAddress& a : named) {
        found = found || a == client;
    }
    check(found);
    return 0;
}
