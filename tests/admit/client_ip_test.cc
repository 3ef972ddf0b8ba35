#include "portcullis/admit/client_ip.hh"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace portcullis;
using admit::CidrSet;

namespace {

CidrSet trusted_set() {
    std::vector<config::Cidr> list;
    for (const char* t : {"10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.1"}) {
        list.push_back(*config::parse_cidr(t));
    }
    return CidrSet(list);
}

// "ip:port" for IPv4, "[ip]:port" for IPv6, as PeerAddress prints it.
std::string client_of(const std::string& peer_text, const std::vector<std::string>& xff) {
    const base::PeerAddress peer =
        peer_text.front() == '['
            ? *base::PeerAddress::parse(peer_text.substr(1, peer_text.find(']') - 1), 5555)
            : *base::PeerAddress::parse(peer_text, 5555);
    std::vector<http::Header> headers;
    headers.push_back({"Host", "example.com"});
    for (const std::string& value : xff) {
        headers.push_back({"X-Forwarded-For", value});
    }
    headers.push_back({"Content-Type", "application/json"});
    return admit::client_address(peer, headers, trusted_set()).to_string();
}

} // namespace

TEST(ClientIp, FollowsTheTable) {
    struct Row {
        std::string peer;
        std::vector<std::string> xff; // one X-Forwarded-For line each
        std::string expected;
        std::string why;
    };
    const Row rows[] = {
        // The peer decides whether the header counts at all.
        {"203.0.113.9", {"198.51.100.1"}, "203.0.113.9:5555", "untrusted peer"},
        {"10.0.0.1", {}, "10.0.0.1:5555", "trusted peer, no header"},
        {"10.0.0.1", {"203.0.113.5"}, "203.0.113.5:0", "one hop"},
        {"[2001:db8:ffff::2]", {"203.0.113.5"}, "203.0.113.5:0", "IPv6 trusted peer"},
        // Right to left: what the client wrote on the left is never believed.
        {"10.0.0.1", {"198.51.100.1, 203.0.113.5"}, "203.0.113.5:0", "spoofed left entry"},
        {"10.0.0.1",
         {"1.1.1.1, 198.51.100.1, 203.0.113.5, 10.0.0.7"},
         "203.0.113.5:0",
         "trusted hop skipped, spoof ignored"},
        {"10.0.0.1", {"10.9.9.9, 192.0.2.1"}, "10.9.9.9:0", "all trusted: left-most"},
        {"10.0.0.1", {"203.0.113.5, 10.9.9.9, 192.0.2.1"}, "203.0.113.5:0", "two trusted hops"},
        {"10.0.0.1", {"192.0.2.2"}, "192.0.2.2:0", "a /32 next to the trusted one"},
        // Several header lines are one list, in order.
        {"10.0.0.1", {"198.51.100.1", "203.0.113.5, 10.0.0.2"}, "203.0.113.5:0", "two lines"},
        {"10.0.0.1", {"203.0.113.5", "10.0.0.2"}, "203.0.113.5:0", "client on the first line"},
        {"10.0.0.1", {"10.1.1.1", "10.0.0.2"}, "10.1.1.1:0", "all trusted over two lines"},
        {"10.0.0.1", {"10.1.1.1", ""}, "10.1.1.1:0", "empty last line"},
        // IPv6 and the mapped form of IPv4.
        {"10.0.0.1", {"2001:db8::1"}, "[2001:db8::1]:0", "IPv6 entry"},
        {"10.0.0.1", {"2001:db8::1, 2001:db8:ffff:1::5"}, "[2001:db8::1]:0", "IPv6 trusted hop"},
        {"10.0.0.1", {"198.51.100.7, ::ffff:10.0.0.9"}, "198.51.100.7:0", "mapped trusted hop"},
        {"10.0.0.1", {"::ffff:198.51.100.7"}, "198.51.100.7:0", "mapped client"},
        // Ports and brackets: accepted, the port dropped.
        {"10.0.0.1", {"[2001:db8::1]:443"}, "[2001:db8::1]:0", "bracketed IPv6 with port"},
        {"10.0.0.1", {"[2001:db8::1]"}, "[2001:db8::1]:0", "bracketed IPv6"},
        {"10.0.0.1", {"203.0.113.5:1234"}, "203.0.113.5:0", "IPv4 with port"},
        {"10.0.0.1", {"203.0.113.5:0"}, "203.0.113.5:0", "IPv4 with port 0"},
        {"10.0.0.1", {"2001:db8::1:443"}, "[2001:db8::1:443]:0", "unbracketed: all address"},
        {"10.0.0.1", {"203.0.113.5, 10.0.0.3:8080"}, "203.0.113.5:0", "trusted hop with port"},
        // Garbage stops the walk at the last trusted hop.
        {"10.0.0.1", {"203.0.113.5, garbage, 10.0.0.3"}, "10.0.0.3:0", "garbage in the middle"},
        {"10.0.0.1", {"203.0.113.5, garbage"}, "10.0.0.1:5555", "garbage on the right"},
        {"10.0.0.1", {"unknown"}, "10.0.0.1:5555", "unknown"},
        {"10.0.0.1", {"203.0.113.5:99999"}, "10.0.0.1:5555", "port over 65535"},
        {"10.0.0.1", {"203.0.113.5:080"}, "10.0.0.1:5555", "port with a leading zero"},
        {"10.0.0.1", {"203.0.113.5:"}, "10.0.0.1:5555", "empty port"},
        {"10.0.0.1", {"[203.0.113.5]:80"}, "10.0.0.1:5555", "IPv4 in brackets"},
        {"10.0.0.1", {"[2001:db8::1"}, "10.0.0.1:5555", "unclosed bracket"},
        {"10.0.0.1", {"[2001:db8::1]443"}, "10.0.0.1:5555", "junk after the bracket"},
        {"10.0.0.1", {"fe80::1%eth0"}, "10.0.0.1:5555", "zone"},
        {"10.0.0.1", {"01.2.3.4"}, "10.0.0.1:5555", "leading zero"},
        {"10.0.0.1", {"1.2.3"}, "10.0.0.1:5555", "three octets"},
        {"10.0.0.1", {"203.0.113.5 198.51.100.1"}, "10.0.0.1:5555", "space, no comma"},
        {"10.0.0.1", {"for=203.0.113.5"}, "10.0.0.1:5555", "Forwarded syntax"},
        {"10.0.0.1", {"203.0.113.5", "nope"}, "10.0.0.1:5555", "garbage on the last line"},
        {"10.0.0.1", {"nope", "203.0.113.5"}, "203.0.113.5:0", "garbage left of the client"},
        // Empty elements and whitespace (RFC 9110 section 5.6.1).
        {"10.0.0.1", {"203.0.113.5,,10.0.0.3, "}, "203.0.113.5:0", "empty elements"},
        {"10.0.0.1", {""}, "10.0.0.1:5555", "empty value"},
        {"10.0.0.1", {" , ,"}, "10.0.0.1:5555", "only empty elements"},
        {"10.0.0.1", {" \t203.0.113.5\t , \t10.0.0.3 "}, "203.0.113.5:0", "spaces and tabs"},
    };
    for (const Row& row : rows) {
        EXPECT_EQ(client_of(row.peer, row.xff), row.expected) << row.why;
    }
}

TEST(ClientIp, ReadsOnlyXForwardedForInAnyCase) {
    const base::PeerAddress peer = *base::PeerAddress::parse("10.0.0.1", 5555);
    const http::Header headers[] = {
        {"x-FORWARDED-for", "198.51.100.1"},
        {"Forwarded", "for=203.0.113.5"},
        {"X-Real-IP", "203.0.113.6"},
        {"X-Forwarded-For-Not", "203.0.113.7"},
    };
    EXPECT_EQ(admit::client_address(peer, headers, trusted_set()).to_string(), "198.51.100.1:0");
    // An empty trusted set believes no one.
    EXPECT_EQ(admit::client_address(peer, headers, CidrSet()), peer);
}

TEST(ClientIp, BoundsTheWalk) {
    const base::PeerAddress peer = *base::PeerAddress::parse("10.0.0.1", 5555);
    const CidrSet trusted = trusted_set();
    auto chain = [](size_t trusted_hops) {
        std::string v = "203.0.113.5";
        for (size_t i = 0; i < trusted_hops; ++i) {
            v += ", 10.0.0." + std::to_string(i % 250 + 2);
        }
        return v;
    };
    // The client within max_forwarded_hops entries is found; one further is not.
    std::string at_limit = chain(admit::max_forwarded_hops - 1);
    http::Header h[] = {{"X-Forwarded-For", at_limit}};
    EXPECT_EQ(admit::client_address(peer, h, trusted).to_string(), "203.0.113.5:0");
    std::string past_limit = chain(admit::max_forwarded_hops);
    h[0].value = past_limit;
    EXPECT_EQ(admit::client_address(peer, h, trusted).to_string(), "10.0.0.2:0")
        << "stops at the left-most of the hops walked";
    // A header as long as the head allows, all trusted hops: the walk still ends early.
    std::string overlong = chain(3000);
    ASSERT_GT(overlong.size(), 16u * 1024);
    h[0].value = overlong;
    EXPECT_TRUE(trusted.contains(admit::client_address(peer, h, trusted)));
    // One entry far longer than any address.
    std::string long_entry(1000, '1');
    h[0].value = long_entry;
    EXPECT_EQ(admit::client_address(peer, h, trusted), peer);
}

TEST(ClientIp, ParsesEntries) {
    struct Row {
        std::string entry;
        std::string expected; // "" for not an address
    };
    const Row rows[] = {
        {"203.0.113.5", "203.0.113.5:0"},
        {"203.0.113.5:65535", "203.0.113.5:0"},
        {"203.0.113.5:65536", ""},
        {"[::1]:1", "[::1]:0"},
        {"[::ffff:203.0.113.5]", "203.0.113.5:0"},
        {"[]", ""},
        {"[]:80", ""},
        {":80", ""},
        {"", ""},
        {" 203.0.113.5", ""}, // the caller trims
        {std::string("203.0.113.5\0", 12), ""},
        {"::", "[::]:0"},
    };
    for (const Row& row : rows) {
        const auto got = admit::parse_forwarded_for_entry(row.entry);
        EXPECT_EQ(got ? got->to_string() : "", row.expected) << '"' << row.entry << '"';
    }
}
