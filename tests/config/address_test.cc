// CIDRs, listen addresses and field references: the single-value parsers of the configuration.
#include "portcullis/config/config.hh"

#include <gtest/gtest.h>

#include <string>

using namespace portcullis::config;

namespace {

std::array<uint8_t, 16> mapped(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    return {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d};
}

} // namespace

TEST(Cidr, ParsesIpv4Ipv6MappedAndBareAddresses) {
    struct Row {
        std::string text;
        std::array<uint8_t, 16> addr;
        int prefix_len;
    };
    std::array<uint8_t, 16> db8{0x20, 0x01, 0x0d, 0xb8};
    std::array<uint8_t, 16> loopback6{};
    loopback6[15] = 1;
    const Row rows[] = {
        {"10.0.0.0/8", mapped(10, 0, 0, 0), 104},
        {"140.82.112.0/20", mapped(140, 82, 112, 0), 116},
        {"192.0.2.7", mapped(192, 0, 2, 7), 128},
        {"0.0.0.0/0", mapped(0, 0, 0, 0), 96},
        {"2001:db8::/32", db8, 32},
        {"::1", loopback6, 128},
        {"::/0", {}, 0},
        // Written in the mapped space, the same network as 10.0.0.0/8.
        {"::ffff:10.0.0.0/104", mapped(10, 0, 0, 0), 104},
    };
    for (const Row& r : rows) {
        std::string why;
        auto cidr = parse_cidr(r.text, &why);
        ASSERT_TRUE(cidr) << r.text << ": " << why;
        EXPECT_EQ(cidr->addr, r.addr) << r.text;
        EXPECT_EQ(cidr->prefix_len, r.prefix_len) << r.text;
        EXPECT_EQ(cidr->text, r.text);
    }
}

TEST(Cidr, RefusesHostBitsSayingWhichNetworkWasMeant) {
    struct Row {
        std::string text;
        std::string why;
    };
    const Row rows[] = {
        {"10.0.0.1/8", "host bits set beyond /8: did you mean 10.0.0.0/8?"},
        {"192.168.1.77/24", "did you mean 192.168.1.0/24?"},
        {"2001:db8::1/32", "did you mean 2001:db8::/32?"},
        {"::ffff:10.0.0.1/104", "did you mean ::ffff:10.0.0.0/104?"},
        {"10.0.0.0/33", "prefix length must be a number from 0 to 32"},
        {"2001:db8::/129", "from 0 to 128"},
        {"10.0.0.0/", "prefix length"},
        {"10.0.0.0/08", "prefix length"},
        {"10.0.0.0/-1", "prefix length"},
        {"010.0.0.0/8", "not an IPv4 or IPv6 address"},
        {"10.0.0/8", "not an IPv4 or IPv6 address"},
        {"256.0.0.0/8", "not an IPv4 or IPv6 address"},
        {"fe80::1%eth0", "not an IPv4 or IPv6 address"},
        {"[::1]/128", "not an IPv4 or IPv6 address"},
        {"example.com", "not an IPv4 or IPv6 address"},
        {"", "not an IPv4 or IPv6 address"},
    };
    for (const Row& r : rows) {
        std::string why;
        EXPECT_FALSE(parse_cidr(r.text, &why)) << r.text;
        EXPECT_NE(why.find(r.why), std::string::npos) << r.text << " -> " << why;
    }
}

TEST(ListenAddress, ParsesIpv4BracketedIpv6AndLocalhost) {
    struct Row {
        std::string text;
        std::string host;
        uint16_t port;
    };
    const Row rows[] = {
        {"0.0.0.0:8080", "0.0.0.0", 8080},     {"127.0.0.1:0", "127.0.0.1", 0},
        {"[::1]:9090", "::1", 9090},           {"[::]:65535", "::", 65535},
        {"localhost:8080", "localhost", 8080},
    };
    for (const Row& r : rows) {
        std::string why;
        auto addr = parse_listen_address(r.text, &why);
        ASSERT_TRUE(addr) << r.text << ": " << why;
        EXPECT_EQ(addr->host, r.host);
        EXPECT_EQ(addr->port, r.port);
        EXPECT_EQ(addr->text, r.text);
    }
}

TEST(ListenAddress, RefusesWhatCannotBeBound) {
    struct Row {
        std::string text;
        std::string why;
    };
    const Row rows[] = {
        {"0.0.0.0", "expected host:port"},
        {":8080", "the host is missing"},
        {"::1:8080", "IPv6 addresses go in brackets"},
        {"[::1:8080", "expected [IPv6]:port"},
        {"[::1]8080", "expected [IPv6]:port"},
        {"[1.2.3.4]:80", "is not an IPv6 address"},
        {"example.com:80", "not an IPv4 address, a bracketed IPv6 address or localhost"},
        {"0.0.0.0:65536", "port must be a number from 0 to 65535"},
        {"0.0.0.0:080", "port must be"},
        {"0.0.0.0:", "port must be"},
        {"0.0.0.0:http", "port must be"},
        {"0.0.0.0:-1", "port must be"},
    };
    for (const Row& r : rows) {
        std::string why;
        EXPECT_FALSE(parse_listen_address(r.text, &why)) << r.text;
        EXPECT_NE(why.find(r.why), std::string::npos) << r.text << " -> " << why;
    }
}

TEST(ListenAddress, OverlapsOnTheSameSocketOrAWildcardOfTheSamePort) {
    struct Row {
        std::string a, b;
        bool overlaps;
    };
    const Row rows[] = {
        {"127.0.0.1:9090", "127.0.0.1:9090", true},
        {"0.0.0.0:9090", "127.0.0.1:9090", true},
        {"127.0.0.1:9090", "[::]:9090", true},
        {"localhost:9090", "127.0.0.1:9090", true},
        {"localhost:9090", "[::1]:9090", true},
        {"[::ffff:127.0.0.1]:9090", "127.0.0.1:9090", true},
        {"127.0.0.1:9090", "127.0.0.1:8080", false},
        {"127.0.0.1:9090", "10.0.0.1:9090", false},
        {"localhost:9090", "10.0.0.1:9090", false},
        {"[::1]:9090", "[2001:db8::1]:9090", false},
        // Port 0 is a fresh ephemeral port on every bind.
        {"127.0.0.1:0", "127.0.0.1:0", false},
        {"0.0.0.0:0", "127.0.0.1:0", false},
    };
    for (const Row& r : rows) {
        auto a = parse_listen_address(r.a);
        auto b = parse_listen_address(r.b);
        ASSERT_TRUE(a && b) << r.a << " " << r.b;
        EXPECT_EQ(listen_overlaps(*a, *b), r.overlaps) << r.a << " vs " << r.b;
        EXPECT_EQ(listen_overlaps(*b, *a), r.overlaps) << r.b << " vs " << r.a;
    }
}

TEST(FieldRef, ParsesTheFourKinds) {
    struct Row {
        std::string text;
        FieldRef::Kind kind;
        std::string name;
    };
    const Row rows[] = {
        {"header:X-GitHub-Delivery", FieldRef::Kind::header, "x-github-delivery"},
        {"json:/id", FieldRef::Kind::json, "/id"},
        {"json:", FieldRef::Kind::json, ""},
        {"json:/a~1b/~0c/0", FieldRef::Kind::json, "/a~1b/~0c/0"},
        {"query:Event", FieldRef::Kind::query, "Event"},
        {"path:job_id", FieldRef::Kind::path, "job_id"},
    };
    for (const Row& r : rows) {
        std::string why;
        auto ref = parse_field_ref(r.text, &why);
        ASSERT_TRUE(ref) << r.text << ": " << why;
        EXPECT_EQ(ref->kind, r.kind) << r.text;
        EXPECT_EQ(ref->name, r.name) << r.text;
        EXPECT_EQ(ref->text, r.text);
    }
}

TEST(FieldRef, RefusesMalformedReferences) {
    struct Row {
        std::string text;
        std::string why;
    };
    const Row rows[] = {
        {"X-GitHub-Delivery", "expected a field reference"},
        {"cookie:id", "unknown field kind \"cookie\""},
        {"header:", "header name"},
        {"header:X Delivery", "header name"},
        {"json:id", "RFC 6901 pointer"},
        {"json:/a~2", "RFC 6901 pointer"},
        {"json:/a~", "RFC 6901 pointer"},
        {"query:", "parameter name"},
        {"query:a=b", "parameter name"},
        {"path:Job", "[a-z0-9_]"},
        {"path:", "[a-z0-9_]"},
    };
    for (const Row& r : rows) {
        std::string why;
        EXPECT_FALSE(parse_field_ref(r.text, &why)) << r.text;
        EXPECT_NE(why.find(r.why), std::string::npos) << r.text << " -> " << why;
    }
}
