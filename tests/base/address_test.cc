#include "portcullis/base/address.hh"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

using namespace portcullis::base;

TEST(PeerAddress, FromSockaddrMapsIpv4AndKeepsIpv6) {
    sockaddr_storage ss{};
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    in->sin_family = AF_INET;
    in->sin_port = htons(443);
    inet_pton(AF_INET, "203.0.113.5", &in->sin_addr);
    PeerAddress v4 = PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss));
    EXPECT_TRUE(v4.is_v4());
    EXPECT_EQ(v4.port, 443);
    const std::array<uint8_t, 16> mapped = {0, 0, 0,    0,    0,   0, 0,   0,
                                            0, 0, 0xff, 0xff, 203, 0, 113, 5};
    EXPECT_EQ(v4.addr, mapped);
    EXPECT_EQ(v4.to_string(), "203.0.113.5:443");

    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(8080);
    inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr);
    PeerAddress v6 = PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&in6));
    EXPECT_FALSE(v6.is_v4());
    EXPECT_EQ(v6.port, 8080);
    EXPECT_EQ(v6.to_string(), "[2001:db8::1]:8080");

    // A dual-stack socket reports IPv4 peers already mapped: one form either way.
    inet_pton(AF_INET6, "::ffff:203.0.113.5", &in6.sin6_addr);
    in6.sin6_port = htons(443);
    EXPECT_EQ(PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&in6)), v4);

    sockaddr unix_like{};
    unix_like.sa_family = AF_UNIX;
    EXPECT_EQ(PeerAddress::from_sockaddr(&unix_like), PeerAddress{});
    EXPECT_EQ(PeerAddress::from_sockaddr(nullptr), PeerAddress{});
}

TEST(PeerAddress, FormatsLikeRfc5952) {
    struct Row {
        std::string in;
        std::string ip;
        std::string with_port;
    };
    const Row rows[] = {
        {"203.0.113.5", "203.0.113.5", "203.0.113.5:80"},
        {"0.0.0.0", "0.0.0.0", "0.0.0.0:80"},
        {"255.255.255.255", "255.255.255.255", "255.255.255.255:80"},
        {"::ffff:10.1.2.3", "10.1.2.3", "10.1.2.3:80"},
        {"2001:DB8:0:0:0:0:0:1", "2001:db8::1", "[2001:db8::1]:80"},
        {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1", "[2001:db8::1:0:0:1]:80"},
        {"::1", "::1", "[::1]:80"},
        {"::", "::", "[::]:80"},
        {"fe80::1:2:3:4", "fe80::1:2:3:4", "[fe80::1:2:3:4]:80"},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
         "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:80"},
    };
    for (const Row& row : rows) {
        auto p = PeerAddress::parse(row.in, 80);
        ASSERT_TRUE(p) << row.in;
        char buf[INET6_ADDRSTRLEN];
        EXPECT_EQ(p->format_ip(buf), row.ip) << row.in;
        EXPECT_EQ(p->to_string(), row.with_port) << row.in;
        EXPECT_EQ(PeerAddress::parse(row.ip, 80), p) << row.in;
    }
}

TEST(PeerAddress, ParseRejectsWhatIsNotAnAddressLiteral) {
    const std::string bad[] = {
        "",
        "203.0.113",
        "203.0.113.256",
        "[2001:db8::1]",
        "203.0.113.5:80",
        "2001:db8::1%eth0",
        "localhost",
        std::string("1.2.3.4\0", 8),
        std::string(100, '1'),
    };
    for (const std::string& s : bad) {
        EXPECT_FALSE(PeerAddress::parse(s)) << s;
    }
}
