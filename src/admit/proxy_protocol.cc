#include "portcullis/admit/proxy_protocol.hh"

#include <cstring>

namespace portcullis::admit {

namespace {

// Every step of the parse answers one of these: the bytes so far fit (and the step is done),
// they fit but end too soon, or they cannot be part of a valid header whatever follows.
enum class Step : uint8_t { ok, more, bad };

constexpr std::string_view v1_signature = "PROXY ";
constexpr std::string_view v2_signature{"\r\n\r\n\0\r\nQUIT\n", 12};

// The longest IPv6 literal inet_ntop writes ("ffff:...:ffff:255.255.255.255").
constexpr size_t ipv6_text_max = 45;

ProxyResult need_more() {
    return {};
}

ProxyResult fail(std::string_view why) {
    ProxyResult r;
    r.status = -1;
    r.error = why;
    return r;
}

// Matches `literal` at buf[pos]; on ok, pos is past it.
Step expect(std::string_view buf, size_t& pos, std::string_view literal) {
    for (char c : literal) {
        if (pos == buf.size()) {
            return Step::more;
        }
        if (buf[pos] != c) {
            return Step::bad;
        }
        ++pos;
    }
    return Step::ok;
}

enum class Field : uint8_t { ipv4, ipv6, port };

// Whether s is a dotted quad as inet_ntop writes it (complete) or the start of one: octets of
// 0..255 without leading zeros. Exact, so a v1 TCP4 address is refused at its first bad byte.
bool ipv4_fits(std::string_view s, bool complete) {
    unsigned dots = 0;
    unsigned digits = 0;
    unsigned value = 0;
    for (char c : s) {
        if (c == '.') {
            if (digits == 0 || dots == 3) {
                return false;
            }
            ++dots;
            digits = 0;
            value = 0;
            continue;
        }
        if (c < '0' || c > '9' || (digits == 1 && value == 0)) {
            return false;
        }
        value = value * 10 + static_cast<unsigned>(c - '0');
        ++digits;
        if (value > 255) {
            return false;
        }
    }
    return !complete || (dots == 3 && digits > 0);
}

// Only the characters and the length while it arrives; the whole literal is left to inet_pton
// once complete. The exact language of IPv6 prefixes is not worth its code for a line that ends
// within 107 bytes anyway.
bool ipv6_fits(std::string_view s, bool complete) {
    if (s.size() > ipv6_text_max) {
        return false;
    }
    for (char c : s) {
        const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!hex && c != ':' && c != '.') {
            return false;
        }
    }
    // The colon keeps a dotted quad, which PeerAddress::parse would take, off a TCP6 line.
    return !complete ||
           (s.find(':') != std::string_view::npos && base::PeerAddress::parse(s).has_value());
}

// A field of kind `kind` at buf[pos], ended by `end`. On ok, out is the field and pos is past
// `end`. The scan for `end` is bounded by the caller's 107-byte view.
Step field(std::string_view buf, size_t& pos, Field kind, char end, std::string_view& out) {
    size_t stop = pos;
    while (stop < buf.size() && buf[stop] != end) {
        ++stop;
    }
    const bool complete = stop < buf.size();
    const std::string_view s = buf.substr(pos, stop - pos);
    bool fits = false;
    switch (kind) {
    case Field::ipv4:
        fits = ipv4_fits(s, complete);
        break;
    case Field::ipv6:
        fits = ipv6_fits(s, complete);
        break;
    case Field::port:
        fits = base::port_text_valid(s, complete);
        break;
    }
    if (!fits) {
        return Step::bad;
    }
    if (!complete) {
        return Step::more;
    }
    out = s;
    pos = stop + 1;
    return Step::ok;
}

uint16_t port_value(std::string_view digits) {
    unsigned value = 0;
    for (char c : digits) {
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    return static_cast<uint16_t>(value);
}

// `line` holds at most the first 107 bytes of the buffer.
ProxyResult parse_v1_line(std::string_view line) {
    size_t pos = 0;
    Step s = expect(line, pos, v1_signature);
    if (s != Step::ok) {
        return s == Step::more ? need_more() : fail("bad_signature");
    }
    if (pos == line.size()) {
        return need_more();
    }
    if (line[pos] == 'U') {
        s = expect(line, pos, "UNKNOWN");
        if (s != Step::ok) {
            return s == Step::more ? need_more() : fail("v1_malformed");
        }
        if (pos == line.size()) {
            return need_more();
        }
        if (line[pos] == ' ') {
            // The receiver must ignore whatever the sender put here, up to the CRLF.
            ++pos;
            while (pos < line.size() && line[pos] != '\r') {
                if (line[pos] == '\n') {
                    return fail("v1_malformed");
                }
                ++pos;
            }
        }
        s = expect(line, pos, "\r\n");
        if (s != Step::ok) {
            return s == Step::more ? need_more() : fail("v1_malformed");
        }
        ProxyResult r;
        r.status = static_cast<int>(pos);
        r.local = true;
        return r;
    }
    s = expect(line, pos, "TCP");
    if (s != Step::ok) {
        return s == Step::more ? need_more() : fail("v1_malformed");
    }
    if (pos == line.size()) {
        return need_more();
    }
    const char family = line[pos];
    if (family != '4' && family != '6') {
        return fail("v1_malformed");
    }
    ++pos;
    s = expect(line, pos, " ");
    if (s != Step::ok) {
        return s == Step::more ? need_more() : fail("v1_malformed");
    }
    const Field address = family == '4' ? Field::ipv4 : Field::ipv6;
    struct Part {
        Field kind;
        char end;
        std::string_view error;
    };
    const Part parts[4] = {
        {address, ' ', "bad_address"},
        {address, ' ', "bad_address"},
        {Field::port, ' ', "bad_port"},
        {Field::port, '\r', "bad_port"},
    };
    std::string_view values[4];
    for (size_t i = 0; i < 4; ++i) {
        s = field(line, pos, parts[i].kind, parts[i].end, values[i]);
        if (s != Step::ok) {
            return s == Step::more ? need_more() : fail(parts[i].error);
        }
    }
    s = expect(line, pos, "\n");
    if (s != Step::ok) {
        return s == Step::more ? need_more() : fail("v1_malformed");
    }
    const std::optional<base::PeerAddress> source =
        base::PeerAddress::parse(values[0], port_value(values[2]));
    if (!source) {
        // field() has parsed it already.
        return fail("bad_address");
    }
    ProxyResult r;
    r.status = static_cast<int>(pos);
    r.source = *source;
    return r;
}

ProxyResult parse_v1(std::string_view buf) {
    ProxyResult r = parse_v1_line(buf.substr(0, proxy_v1_max_bytes));
    if (r.status == 0 && buf.size() >= proxy_v1_max_bytes) {
        return fail("v1_too_long");
    }
    return r;
}

size_t be16(std::string_view buf, size_t at) {
    return (static_cast<size_t>(static_cast<uint8_t>(buf[at])) << 8) |
           static_cast<uint8_t>(buf[at + 1]);
}

ProxyResult parse_v2(std::string_view buf) {
    size_t pos = 0;
    const Step s = expect(buf, pos, v2_signature);
    if (s != Step::ok) {
        return s == Step::more ? need_more() : fail("bad_signature");
    }
    if (buf.size() < 13) {
        return need_more();
    }
    const auto version_command = static_cast<uint8_t>(buf[12]);
    if ((version_command >> 4) != 2) {
        return fail("bad_version");
    }
    if ((version_command & 0x0f) > 1) {
        return fail("bad_command");
    }
    const bool proxy = (version_command & 0x0f) == 1;
    if (buf.size() < 14) {
        return need_more();
    }
    const auto family = static_cast<uint8_t>(buf[13]);
    size_t address_bytes = 0;
    if (proxy) {
        switch (family) {
        case 0x11: // TCP over IPv4
            address_bytes = 12;
            break;
        case 0x21: // TCP over IPv6
            address_bytes = 36;
            break;
        case 0x00: // UNSPEC
        case 0x12: // UDP over IPv4
        case 0x22: // UDP over IPv6
        case 0x31: // UNIX stream
        case 0x32: // UNIX datagram
            break;
        default:
            return fail("bad_family");
        }
    }
    if (buf.size() < 16) {
        return need_more();
    }
    const size_t total = 16 + be16(buf, 14);
    if (address_bytes == 0) {
        // LOCAL, or a family this server does not take addresses from: skip the block unread.
        if (buf.size() < total) {
            return need_more();
        }
        ProxyResult r;
        r.status = static_cast<int>(total);
        r.local = true;
        return r;
    }
    if (total - 16 < address_bytes) {
        return fail("bad_length");
    }
    // The TLVs are checked as far as they have arrived, so that a bad one is refused at once.
    size_t at = 16 + address_bytes;
    while (at < total) {
        if (total - at < 3) {
            return fail("bad_tlv");
        }
        if (buf.size() < at + 3) {
            return need_more();
        }
        const size_t value_bytes = be16(buf, at + 1);
        if (value_bytes > total - at - 3) {
            return fail("bad_tlv");
        }
        at += 3 + value_bytes;
    }
    if (buf.size() < total) {
        return need_more();
    }
    ProxyResult r;
    r.status = static_cast<int>(total);
    if (family == 0x11) {
        constexpr uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        std::memcpy(r.source.addr.data(), v4_mapped_prefix, sizeof v4_mapped_prefix);
        std::memcpy(r.source.addr.data() + 12, buf.data() + 16, 4);
        r.source.port = static_cast<uint16_t>(be16(buf, 24));
    } else {
        std::memcpy(r.source.addr.data(), buf.data() + 16, 16);
        r.source.port = static_cast<uint16_t>(be16(buf, 48));
    }
    return r;
}

} // namespace

ProxyResult parse_proxy(std::string_view buf, ProxyMode mode) {
    if (buf.empty()) {
        return need_more();
    }
    switch (mode) {
    case ProxyMode::v1:
        return parse_v1(buf);
    case ProxyMode::v2:
        return parse_v2(buf);
    case ProxyMode::any:
        break;
    }
    // The signatures differ in their first byte, so one byte decides which parser answers.
    return buf[0] == '\r' ? parse_v2(buf) : parse_v1(buf);
}

} // namespace portcullis::admit
