#include "portcullis/admit/cidr_set.hh"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

using namespace portcullis;
using admit::CidrSet;

namespace {

std::vector<config::Cidr> cidrs(const std::vector<std::string>& texts) {
    std::vector<config::Cidr> out;
    for (const std::string& t : texts) {
        std::string why;
        std::optional<config::Cidr> c = config::parse_cidr(t, &why);
        if (!c) {
            ADD_FAILURE() << t << ": " << why;
            continue;
        }
        out.push_back(*c);
    }
    return out;
}

base::PeerAddress ip(const std::string& text) {
    std::optional<base::PeerAddress> p = base::PeerAddress::parse(text, 443);
    if (!p) {
        ADD_FAILURE() << "not an address: " << text;
        return {};
    }
    return *p;
}

// The definition, one network at a time, bit by bit: the reference for the sorted structure.
bool reference_contains(const std::vector<config::Cidr>& set, const base::PeerAddress& peer) {
    for (const config::Cidr& c : set) {
        bool inside = true;
        for (unsigned bit = 0; bit < c.prefix_len && inside; ++bit) {
            const unsigned shift = 7 - bit % 8;
            inside = ((c.addr[bit / 8] >> shift) & 1) == ((peer.addr[bit / 8] >> shift) & 1);
        }
        if (inside) {
            return true;
        }
    }
    return false;
}

} // namespace

TEST(CidrSet, MatchesTable) {
    struct Row {
        std::vector<std::string> set;
        std::string peer;
        bool expected;
    };
    const Row rows[] = {
        // An empty set matches nothing; the caller gives an empty allow its meaning.
        {{}, "203.0.113.5", false},
        {{}, "::", false},
        // /0 in each family: IPv4's is ::ffff:0:0/96, IPv6's is everything, IPv4 included.
        {{"0.0.0.0/0"}, "203.0.113.5", true},
        {{"0.0.0.0/0"}, "0.0.0.0", true},
        {{"0.0.0.0/0"}, "2001:db8::1", false},
        {{"0.0.0.0/0"}, "::", false},
        {{"::/0"}, "203.0.113.5", true},
        {{"::/0"}, "2001:db8::1", true},
        {{"::/0"}, "::", true},
        // IPv4 networks match IPv4 peers, which are IPv4-mapped.
        {{"10.0.0.0/8"}, "10.0.0.0", true},
        {{"10.0.0.0/8"}, "10.255.255.255", true},
        {{"10.0.0.0/8"}, "::ffff:10.1.2.3", true},
        {{"10.0.0.0/8"}, "11.0.0.0", false},
        {{"10.0.0.0/8"}, "9.255.255.255", false},
        {{"10.0.0.0/8"}, "::a01:203", false}, // IPv4-compatible, not mapped: another address
        {{"::ffff:10.0.0.0/104"}, "10.9.9.9", true},
        {{"192.0.2.0/31"}, "192.0.2.1", true},
        {{"192.0.2.0/31"}, "192.0.2.2", false},
        {{"192.0.2.128/25"}, "192.0.2.127", false},
        {{"192.0.2.128/25"}, "192.0.2.255", true},
        {{"203.0.113.5/32"}, "203.0.113.5", true},
        {{"203.0.113.5/32"}, "203.0.113.4", false},
        {{"203.0.113.5/32"}, "203.0.113.6", false},
        {{"203.0.113.5"}, "203.0.113.5", true}, // a bare address is a host route
        {{"::ffff:0:0/96"}, "198.51.100.1", true},
        {{"::ffff:0:0/96"}, "::fffe:c633:6401", false},
        {{"::ffff:0:0/96"}, "::1", false},
        // IPv6, across the boundaries of bytes and of the two 64-bit halves.
        {{"2001:db8::/32"}, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true},
        {{"2001:db8::/32"}, "2001:db9::", false},
        {{"2001:db8::/32"}, "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", false},
        {{"2001:db8::/64"}, "2001:db8::ffff:ffff:ffff:ffff", true},
        {{"2001:db8::/64"}, "2001:db8:0:1::", false},
        {{"2001:db8::/63"}, "2001:db8:0:1:ffff::", true},
        {{"2001:db8::/63"}, "2001:db8:0:2::", false},
        {{"2001:db8:0:0:8000::/65"}, "2001:db8::8000:0:0:1", true},
        {{"2001:db8:0:0:8000::/65"}, "2001:db8::7fff:ffff:ffff:ffff", false},
        {{"2001:db8::1/128"}, "2001:db8::1", true},
        {{"2001:db8::1/128"}, "2001:db8::", false},
        {{"2001:db8::1/128"}, "2001:db8::2", false},
        {{"::1/128"}, "::1", true},
        {{"::1/128"}, "127.0.0.1", false},
        // Several networks: any one matches.
        {{"10.0.0.0/8", "2001:db8::/32", "192.0.2.1"}, "192.0.2.1", true},
        {{"10.0.0.0/8", "2001:db8::/32", "192.0.2.1"}, "2001:db8::5", true},
        {{"10.0.0.0/8", "2001:db8::/32", "192.0.2.1"}, "192.0.2.2", false},
        {{"140.82.112.0/20", "192.30.252.0/22"}, "140.82.127.255", true},
        {{"140.82.112.0/20", "192.30.252.0/22"}, "140.82.128.0", false},
        {{"140.82.112.0/20", "192.30.252.0/22"}, "192.30.255.1", true},
    };
    for (const Row& row : rows) {
        const std::vector<config::Cidr> list = cidrs(row.set);
        const CidrSet set(list);
        std::string name;
        for (const std::string& s : row.set) {
            name += s + " ";
        }
        EXPECT_EQ(set.contains(ip(row.peer)), row.expected) << "{" << name << "} ∋ " << row.peer;
        EXPECT_EQ(reference_contains(list, ip(row.peer)), row.expected) << "reference: " << name;
    }
}

TEST(CidrSet, PortPlaysNoPart) {
    const std::vector<config::Cidr> list = cidrs({"203.0.113.5"});
    const CidrSet set(list);
    for (uint16_t port : {0, 1, 443, 65535}) {
        EXPECT_TRUE(set.contains(*base::PeerAddress::parse("203.0.113.5", port)));
    }
}

TEST(CidrSet, KeepsDuplicatesOnceAndIgnoresHostBits) {
    std::vector<config::Cidr> list = cidrs({"10.0.0.0/8", "10.0.0.0/8", "::ffff:10.0.0.0/104"});
    // Not from parse_cidr: host bits beyond the prefix. They are masked off, not trusted.
    config::Cidr loose = list[0];
    loose.addr[15] = 7;
    list.push_back(loose);
    const CidrSet set(list);
    EXPECT_EQ(set.size(), 1u);
    EXPECT_FALSE(set.empty());
    EXPECT_TRUE(set.contains(ip("10.200.0.1")));
    EXPECT_TRUE(CidrSet().empty());
    EXPECT_FALSE(CidrSet().contains(ip("10.200.0.1")));
}

TEST(CidrSet, AgreesWithTheDefinitionOnLargeMixedSets) {
    // Many prefix lengths and many networks per length, both families, against the bit-by-bit
    // reference: the grouping and the binary searches must not change any answer.
    std::mt19937_64 rng(20240611);
    std::vector<config::Cidr> list;
    for (int i = 0; i < 600; ++i) {
        config::Cidr c;
        const bool v4 = i % 3 != 0;
        for (auto& b : c.addr) {
            b = static_cast<uint8_t>(rng());
        }
        if (v4) {
            for (size_t k = 0; k < 10; ++k) {
                c.addr[k] = 0;
            }
            c.addr[10] = c.addr[11] = 0xff;
            c.addr[12] = static_cast<uint8_t>(rng() % 4); // crowd them, so that peers hit
            c.prefix_len = static_cast<uint8_t>(96 + 8 + rng() % 25);
        } else {
            c.addr[0] = 0x20;
            c.addr[1] = 0x01;
            c.addr[2] = static_cast<uint8_t>(rng() % 2);
            c.prefix_len = static_cast<uint8_t>(16 + rng() % 113);
        }
        for (unsigned bit = c.prefix_len; bit < 128; ++bit) {
            c.addr[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
        }
        list.push_back(c);
    }
    const CidrSet set(list);
    int hits = 0;
    for (int i = 0; i < 20000; ++i) {
        // Peers drawn near the networks: a network's address with a few low bits changed.
        base::PeerAddress peer;
        peer.addr = list[rng() % list.size()].addr;
        const unsigned flips = rng() % 3;
        for (unsigned f = 0; f < flips; ++f) {
            const unsigned bit = 96 + rng() % 32;
            peer.addr[bit / 8] ^= static_cast<uint8_t>(0x80u >> (bit % 8));
        }
        const bool expected = reference_contains(list, peer);
        hits += expected ? 1 : 0;
        ASSERT_EQ(set.contains(peer), expected) << peer.to_string();
    }
    EXPECT_GT(hits, 1000);
    EXPECT_LT(hits, 20000);
}
