#include "portcullis/admit/client_ip.hh"

namespace portcullis::admit {

namespace {

bool is_ows(char c) {
    return c == ' ' || c == '\t';
}

std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && is_ows(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && is_ows(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

} // namespace

std::optional<base::PeerAddress> parse_forwarded_for_entry(std::string_view entry) {
    if (!entry.empty() && entry.front() == '[') {
        const size_t close = entry.find(']');
        if (close == std::string_view::npos) {
            return std::nullopt;
        }
        const std::string_view inside = entry.substr(1, close - 1);
        const std::string_view rest = entry.substr(close + 1);
        // Brackets hold IPv6 only (RFC 3986 IP-literal); "[203.0.113.5]" is nobody's format.
        if (inside.find(':') == std::string_view::npos) {
            return std::nullopt;
        }
        if (!rest.empty() && (rest.front() != ':' || !base::port_text_valid(rest.substr(1)))) {
            return std::nullopt;
        }
        return base::PeerAddress::parse(inside);
    }
    const size_t colon = entry.find(':');
    if (colon != std::string_view::npos && entry.find(':', colon + 1) == std::string_view::npos) {
        // Exactly one colon: no IPv6 literal has that, so it is IPv4:port or nothing.
        if (!base::port_text_valid(entry.substr(colon + 1))) {
            return std::nullopt;
        }
        return base::PeerAddress::parse(entry.substr(0, colon));
    }
    return base::PeerAddress::parse(entry);
}

base::PeerAddress client_address(const base::PeerAddress& peer,
                                 std::span<const http::Header> headers, const CidrSet& trusted) {
    if (!trusted.contains(peer)) {
        return peer;
    }
    base::PeerAddress last_trusted = peer;
    size_t hops = 0;
    // The list is the occurrences joined in order (RFC 9110 section 5.3), so its right end is
    // the last element of the last occurrence.
    for (size_t h = headers.size(); h-- > 0;) {
        if (!http::name_equals(headers[h].name, "x-forwarded-for")) {
            continue;
        }
        std::string_view rest = headers[h].value;
        while (true) {
            const size_t comma = rest.rfind(',');
            const std::string_view entry =
                trim_ows(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
            if (!entry.empty()) {
                if (++hops > max_forwarded_hops) {
                    return last_trusted;
                }
                const std::optional<base::PeerAddress> hop = parse_forwarded_for_entry(entry);
                if (!hop) {
                    return last_trusted;
                }
                if (!trusted.contains(*hop)) {
                    return *hop;
                }
                last_trusted = *hop;
            }
            if (comma == std::string_view::npos) {
                break;
            }
            rest = rest.substr(0, comma);
        }
    }
    return last_trusted;
}

} // namespace portcullis::admit
