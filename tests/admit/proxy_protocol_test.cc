#include "portcullis/admit/proxy_protocol.hh"

#include "../guard_page.hh"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

using namespace portcullis;
using admit::parse_proxy;
using admit::ProxyMode;
using admit::ProxyResult;
using testing_support::GuardedBuffer;

namespace {

// Version 2 headers are written byte by byte from the layout in the HAProxy specification
// (section 2.2), not with anything the parser uses.
std::string bytes(std::initializer_list<int> list) {
    std::string s;
    for (int b : list) {
        s.push_back(static_cast<char>(b));
    }
    return s;
}

const std::string sig =
    bytes({0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a});

// PROXY TCP4 192.0.2.1:56324 -> 198.51.100.2:443, no TLV.
const std::string v2_tcp4 = sig + bytes({0x21, 0x11, 0x00, 0x0c,   // PROXY, TCP4, 12 bytes
                                         0xc0, 0x00, 0x02, 0x01,   // src 192.0.2.1
                                         0xc6, 0x33, 0x64, 0x02,   // dst 198.51.100.2
                                         0xdc, 0x04, 0x01, 0xbb}); // 56324, 443

// PROXY TCP6 [2001:db8::1]:65535 -> [2001:db8::2]:8443, no TLV.
const std::string v2_tcp6 =
    sig + bytes({0x21, 0x21, 0x00, 0x24, // PROXY, TCP6, 36 bytes
                 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // src
                 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // dst
                 0xff, 0xff, 0x20, 0xfb});                                      // 65535, 8443

// The TCP4 header with TLVs: ALPN "h2", AUTHORITY "example.com", a CRC32C (not checked), an
// empty NOOP: 12 + 5 + 14 + 7 + 3 = 41 bytes.
const std::string v2_tcp4_tlvs =
    sig + bytes({0x21, 0x11, 0x00, 0x29, 0xc0, 0x00, 0x02, 0x01, 0xc6, 0x33, 0x64, 0x02, 0xdc,
                 0x04, 0x01, 0xbb,            //
                 0x01, 0x00, 0x02, 'h',  '2', // PP2_TYPE_ALPN
                 0x02, 0x00, 0x0b, 'e',  'x',  'a',  'm',  'p',  'l',  'e',  '.',  'c',  'o',
                 'm',                                      // PP2_TYPE_AUTHORITY
                 0x03, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef, // PP2_TYPE_CRC32C
                 0x04, 0x00, 0x00});                       // PP2_TYPE_NOOP

// TCP6 with one TLV of 300 bytes (a two-byte length) of PP2_TYPE_UNIQUE_ID-like content.
std::string v2_tcp6_big_tlv() {
    std::string s = sig + bytes({0x21, 0x21, 0x01, 0x53}); // 36 + 3 + 300 = 339 = 0x153
    s += v2_tcp6.substr(16, 36);
    s += bytes({0x05, 0x01, 0x2c});
    s += std::string(300, 'u');
    return s;
}

struct Valid {
    std::string input;
    ProxyMode mode; // the version's own mode; `any` is checked as well
    bool local;
    std::string source; // "" when local
};

std::vector<Valid> valid_headers() {
    return {
        {"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", ProxyMode::v1, false,
         "192.0.2.1:56324"},
        {"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", ProxyMode::v1, false,
         "255.255.255.255:65535"},
        {"PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n", ProxyMode::v1, false, "0.0.0.0:0"},
        {"PROXY TCP6 2001:db8::1 2001:db8::2 65535 8443\r\n", ProxyMode::v1, false,
         "[2001:db8::1]:65535"},
        {"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n", ProxyMode::v1, false, "192.0.2.1:1"},
        {"PROXY TCP6 2001:DB8:0:0:0:0:0:1 :: 80 80\r\n", ProxyMode::v1, false, "[2001:db8::1]:80"},
        {"PROXY UNKNOWN\r\n", ProxyMode::v1, true, ""},
        // The longest line the specification allows: 107 bytes.
        {"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
         ProxyMode::v1, true, ""},
        {"PROXY UNKNOWN whatever\x01\x7f\xff\r\n", ProxyMode::v1, true, ""},
        {v2_tcp4, ProxyMode::v2, false, "192.0.2.1:56324"},
        {v2_tcp6, ProxyMode::v2, false, "[2001:db8::1]:65535"},
        {v2_tcp4_tlvs, ProxyMode::v2, false, "192.0.2.1:56324"},
        {v2_tcp6_big_tlv(), ProxyMode::v2, false, "[2001:db8::1]:65535"},
        // LOCAL: the balancer's own connection (health checks); the block is skipped unread.
        {sig + bytes({0x20, 0x00, 0x00, 0x00}), ProxyMode::v2, true, ""},
        {sig + bytes({0x20, 0x11, 0x00, 0x0c}) + v2_tcp4.substr(16), ProxyMode::v2, true, ""},
        {sig + bytes({0x20, 0xff, 0x00, 0x02, 0xaa, 0xbb}), ProxyMode::v2, true, ""},
        // PROXY with families this server does not take addresses from: the socket's peer.
        {sig + bytes({0x21, 0x00, 0x00, 0x00}), ProxyMode::v2, true, ""},
        {sig + bytes({0x21, 0x12, 0x00, 0x0c}) + v2_tcp4.substr(16), ProxyMode::v2, true, ""},
        {sig + bytes({0x21, 0x22, 0x00, 0x24}) + v2_tcp6.substr(16), ProxyMode::v2, true, ""},
        {sig + bytes({0x21, 0x31, 0x00, 0xd8}) + std::string(216, '\0'), ProxyMode::v2, true, ""},
        {sig + bytes({0x21, 0x32, 0x00, 0xd8}) + std::string(216, '/'), ProxyMode::v2, true, ""},
    };
}

std::string describe(const ProxyResult& r) {
    return "status " + std::to_string(r.status) + (r.local ? " local" : "") + " source " +
           r.source.to_string() + " error \"" + std::string(r.error) + "\"";
}

} // namespace

TEST(ProxyProtocol, AcceptsValidHeadersAndNothingAfterThem) {
    GuardedBuffer guard(1 << 16);
    for (const Valid& v : valid_headers()) {
        for (ProxyMode mode : {v.mode, ProxyMode::any}) {
            for (const std::string& tail : {std::string(), std::string("GET / HTTP/1.1\r\n")}) {
                const ProxyResult r = parse_proxy(guard.place(v.input + tail), mode);
                ASSERT_EQ(r.status, static_cast<int>(v.input.size()))
                    << describe(r) << " for " << testing::PrintToString(v.input);
                EXPECT_EQ(r.local, v.local) << testing::PrintToString(v.input);
                EXPECT_TRUE(r.error.empty());
                if (!v.local) {
                    EXPECT_EQ(r.source.to_string(), v.source);
                }
            }
        }
    }
}

TEST(ProxyProtocol, EveryPrefixOfAValidHeaderNeedsMore) {
    GuardedBuffer guard(1 << 16);
    for (const Valid& v : valid_headers()) {
        for (ProxyMode mode : {v.mode, ProxyMode::any}) {
            for (size_t n = 0; n < v.input.size(); ++n) {
                const ProxyResult r = parse_proxy(guard.place(v.input.substr(0, n)), mode);
                ASSERT_EQ(r.status, 0) << describe(r) << " for the first " << n << " bytes of "
                                       << testing::PrintToString(v.input);
            }
        }
    }
}

TEST(ProxyProtocol, RefusesAtTheFirstByteThatCannotFit) {
    struct Row {
        std::string good; // every prefix of it needs more
        std::string bad;  // its first byte decides: error
        ProxyMode mode;
        std::string error;
    };
    const std::string tcp4 = "PROXY TCP4 ";
    const Row rows[] = {
        {"", "GET / HTTP/1.1\r\n", ProxyMode::any, "bad_signature"},
        {"P", "OST / HTTP/1.1\r\n", ProxyMode::any, "bad_signature"},
        {"", "proxy TCP4", ProxyMode::v1, "bad_signature"},
        {"PROXY", "\tTCP4", ProxyMode::v1, "bad_signature"},
        // Mode mismatch: each version's signature is refused by the other's mode.
        {"", v2_tcp4, ProxyMode::v1, "bad_signature"},
        {"", "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n", ProxyMode::v2, "bad_signature"},
        {"", "\n", ProxyMode::v2, "bad_signature"},
        {sig.substr(0, 11), "\r", ProxyMode::v2, "bad_signature"},
        // Version 1 line.
        {"PROXY TCP", "5 1.2.3.4 1.2.3.4 1 2\r\n", ProxyMode::v1, "v1_malformed"},
        {"PROXY ", "tcp4", ProxyMode::v1, "v1_malformed"},
        {"PROXY TCP4", "\t", ProxyMode::v1, "v1_malformed"},
        {"PROXY UNKNOWN", "X\r\n", ProxyMode::v1, "v1_malformed"},
        {"PROXY UNKNOWN", "\n", ProxyMode::v1, "v1_malformed"},
        {"PROXY UNKNOWN a", "\nb\r\n", ProxyMode::v1, "v1_malformed"},
        {"PROXY UNKNOWN\r", "X", ProxyMode::v1, "v1_malformed"},
        {tcp4, " 192.0.2.1", ProxyMode::v1, "bad_address"},
        {tcp4 + "192.0.2.25", "6 1.2.3.4 1 2\r\n", ProxyMode::v1, "bad_address"},
        {tcp4 + "192.0.2.0", "1 1.2.3.4 1 2\r\n", ProxyMode::v1, "bad_address"},
        {tcp4 + "192.0.2", " 1.2.3.4 1 2\r\n", ProxyMode::v1, "bad_address"},
        {tcp4 + "192.0.2.1", ".1 1.2.3.4 1 2\r\n", ProxyMode::v1, "bad_address"},
        {tcp4, ".", ProxyMode::v1, "bad_address"},
        {tcp4 + "192.", ".", ProxyMode::v1, "bad_address"},
        {tcp4 + "200", "1:db8::1 ::1 1 2\r\n", ProxyMode::v1, "bad_address"},
        {tcp4 + "10", ":db8::1 ::1 1 2\r\n", ProxyMode::v1, "bad_address"},
        {tcp4 + "192.0.2.1 ", " 1.2.3.4 1 2\r\n", ProxyMode::v1, "bad_address"},
        {"PROXY TCP6 2001:db8::", "g ::1 1 2\r\n", ProxyMode::v1, "bad_address"},
        // IPv6 literals are checked whole when they end (see the header).
        {"PROXY TCP6 2001:db8:::1", " ::1 1 2\r\n", ProxyMode::v1, "bad_address"},
        {"PROXY TCP6 1.2.3.4", " ::1 1 2\r\n", ProxyMode::v1, "bad_address"},
        {"PROXY TCP6 fe80::1", "%eth0 ::1 1 2\r\n", ProxyMode::v1, "bad_address"},
        {tcp4 + "192.0.2.1 198.51.100.2 6553", "6 443\r\n", ProxyMode::v1, "bad_port"},
        {tcp4 + "192.0.2.1 198.51.100.2 0", "80 443\r\n", ProxyMode::v1, "bad_port"},
        {tcp4 + "192.0.2.1 198.51.100.2 ", " 443\r\n", ProxyMode::v1, "bad_port"},
        {tcp4 + "192.0.2.1 198.51.100.2 ", "-", ProxyMode::v1, "bad_port"},
        {tcp4 + "192.0.2.1 198.51.100.2 80", "\r\n", ProxyMode::v1, "bad_port"},
        {tcp4 + "192.0.2.1 198.51.100.2 80 7000", "0\r\n", ProxyMode::v1, "bad_port"},
        {tcp4 + "192.0.2.1 198.51.100.2 80 443", "\n", ProxyMode::v1, "bad_port"},
        {tcp4 + "192.0.2.1 198.51.100.2 80 443", " \r\n", ProxyMode::v1, "bad_port"},
        {tcp4 + "192.0.2.1 198.51.100.2 80 443\r", "\r", ProxyMode::v1, "v1_malformed"},
        // 107 bytes without the end of the line.
        {"PROXY UNKNOWN " + std::string(92, 'x'), "x\r\n", ProxyMode::v1, "v1_too_long"},
        {"PROXY UNKNOWN " + std::string(92, 'x'), "\r", ProxyMode::v1, "v1_too_long"},
        // Version 2.
        {sig, bytes({0x11}), ProxyMode::v2, "bad_version"},
        {sig, bytes({0x31}), ProxyMode::v2, "bad_version"},
        {sig, bytes({0x22}), ProxyMode::v2, "bad_command"},
        {sig, bytes({0x2f}), ProxyMode::v2, "bad_command"},
        {sig + bytes({0x21}), bytes({0x13}), ProxyMode::v2, "bad_family"},
        {sig + bytes({0x21}), bytes({0x41}), ProxyMode::v2, "bad_family"},
        {sig + bytes({0x21}), bytes({0x01}), ProxyMode::v2, "bad_family"},
        {sig + bytes({0x21}), bytes({0x10}), ProxyMode::v2, "bad_family"},
        {sig + bytes({0x21, 0x11, 0x00}), bytes({0x0b}), ProxyMode::v2, "bad_length"},
        {sig + bytes({0x21, 0x21, 0x00}), bytes({0x0c}), ProxyMode::v2, "bad_length"},
        {sig + bytes({0x21, 0x21, 0x00}), bytes({0x00}), ProxyMode::v2, "bad_length"},
        // Two bytes after the addresses cannot hold a TLV's type and length.
        {sig + bytes({0x21, 0x11, 0x00}), bytes({0x0e}), ProxyMode::v2, "bad_tlv"},
        // A TLV longer than what the block has left: refused at its length, before its value.
        {sig + bytes({0x21, 0x11, 0x00, 0x12}) + v2_tcp4.substr(16) + bytes({0x01, 0x00}),
         bytes({0x04, 'h', '2', 'x'}), ProxyMode::v2, "bad_tlv"},
        // An empty TLV, then two bytes: refused once the first TLV's length has arrived.
        {sig + bytes({0x21, 0x11, 0x00, 0x11}) + v2_tcp4.substr(16) + bytes({0x01, 0x00}),
         bytes({0x00, 0x05, 0x00}), ProxyMode::v2, "bad_tlv"},
    };
    GuardedBuffer guard(1 << 12);
    for (const Row& row : rows) {
        const std::string where = testing::PrintToString(row.good + row.bad);
        for (size_t n = 0; n <= row.good.size(); ++n) {
            const ProxyResult r = parse_proxy(guard.place(row.good.substr(0, n)), row.mode);
            ASSERT_EQ(r.status, 0) << describe(r) << " at " << n << " bytes of " << where;
        }
        for (size_t n = row.good.size() + 1; n <= row.good.size() + row.bad.size(); ++n) {
            const ProxyResult r =
                parse_proxy(guard.place((row.good + row.bad).substr(0, n)), row.mode);
            ASSERT_EQ(r.status, -1) << describe(r) << " at " << n << " bytes of " << where;
            EXPECT_EQ(r.error, row.error) << where;
        }
    }
}

TEST(ProxyProtocol, ModeAnyAgreesWithTheVersionModes) {
    std::vector<std::string> inputs;
    for (const Valid& v : valid_headers()) {
        inputs.push_back(v.input);
        inputs.push_back(v.input.substr(0, v.input.size() / 2));
    }
    inputs.emplace_back("GET / HTTP/1.1\r\n");
    inputs.push_back(sig + bytes({0x99}));
    inputs.emplace_back("PROXY TCP4 1.2.3.4 5.6.7.8 80 99999\r\n");
    for (const std::string& in : inputs) {
        const ProxyResult any = parse_proxy(in, ProxyMode::any);
        const ProxyResult own = parse_proxy(in, in[0] == '\r' ? ProxyMode::v2 : ProxyMode::v1);
        EXPECT_EQ(any.status, own.status) << testing::PrintToString(in);
        EXPECT_EQ(any.error, own.error);
        EXPECT_EQ(any.source, own.source);
        EXPECT_EQ(any.local, own.local);
    }
    EXPECT_EQ(parse_proxy("", ProxyMode::any).status, 0);
    EXPECT_EQ(parse_proxy("", ProxyMode::v1).status, 0);
    EXPECT_EQ(parse_proxy("", ProxyMode::v2).status, 0);
}

TEST(ProxyProtocol, TakesTheLargestVersion2Header) {
    // Length 0xffff: 36 address bytes and one TLV holding the remaining 65499 - 3 bytes.
    std::string in = sig + bytes({0x21, 0x21, 0xff, 0xff}) + v2_tcp6.substr(16, 36);
    const size_t value = 0xffff - 36 - 3;
    in += bytes({0xee, static_cast<int>(value >> 8), static_cast<int>(value & 0xff)});
    in += std::string(value, '\0');
    ASSERT_EQ(in.size(), admit::proxy_v2_max_bytes);
    GuardedBuffer guard(1 << 17);
    const ProxyResult r = parse_proxy(guard.place(in), ProxyMode::v2);
    EXPECT_EQ(r.status, static_cast<int>(admit::proxy_v2_max_bytes));
    EXPECT_EQ(r.source.to_string(), "[2001:db8::1]:65535");
    EXPECT_EQ(parse_proxy(guard.place(in.substr(0, in.size() - 1)), ProxyMode::v2).status, 0);
}
