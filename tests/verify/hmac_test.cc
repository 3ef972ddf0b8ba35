#include "portcullis/verify/hmac.hh"

#include "portcullis/base/encoding.hh"

#include <gtest/gtest.h>
#include <openssl/digest.h>
#include <openssl/hmac.h>

#include <random>
#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::verify;
using config::Algorithm;

namespace {

std::string repeat(char c, size_t n) {
    return std::string(n, c);
}

std::string counting_key() {
    std::string k;
    for (int i = 1; i <= 25; ++i) {
        k.push_back(static_cast<char>(i));
    }
    return k;
}

std::string mac_hex(const HmacKey& key, std::string_view data) {
    uint8_t out[max_mac_size];
    key.compute(base::as_bytes(data), out);
    return base::hex({out, key.size()});
}

struct Vector {
    const char* source;
    Algorithm alg;
    std::string key;
    std::string data;
    std::string expected_hex; // may be truncated, as the RFC prints it
};

const std::string rfc4231_long_data =
    "This is a test using a larger than block-size key and a larger than block-size data. The "
    "key needs to be hashed before being used by the HMAC algorithm.";

const std::vector<Vector>& vectors() {
    static const std::vector<Vector> rows = {
        // RFC 4231 section 4.
        {"4231 #1", Algorithm::sha256, repeat('\x0b', 20), "Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"4231 #1", Algorithm::sha512, repeat('\x0b', 20), "Hi There",
         "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
         "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"},
        {"4231 #2", Algorithm::sha256, "Jefe", "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {"4231 #2", Algorithm::sha512, "Jefe", "what do ya want for nothing?",
         "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
         "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
        {"4231 #3", Algorithm::sha256, repeat('\xaa', 20), repeat('\xdd', 50),
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
        {"4231 #3", Algorithm::sha512, repeat('\xaa', 20), repeat('\xdd', 50),
         "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39"
         "bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb"},
        {"4231 #4", Algorithm::sha256, counting_key(), repeat('\xcd', 50),
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
        {"4231 #4", Algorithm::sha512, counting_key(), repeat('\xcd', 50),
         "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db"
         "a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd"},
        {"4231 #5", Algorithm::sha256, repeat('\x0c', 20), "Test With Truncation",
         "a3b6167473100ee06e0c796c2955552b"},
        {"4231 #5", Algorithm::sha512, repeat('\x0c', 20), "Test With Truncation",
         "415fad6271580a531d4179bc891d87a6"},
        // Keys longer than the block (64 / 128 bytes) are hashed first.
        {"4231 #6", Algorithm::sha256, repeat('\xaa', 131),
         "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {"4231 #6", Algorithm::sha512, repeat('\xaa', 131),
         "Test Using Larger Than Block-Size Key - Hash Key First",
         "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
         "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"},
        {"4231 #7", Algorithm::sha256, repeat('\xaa', 131), rfc4231_long_data,
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
        {"4231 #7", Algorithm::sha512, repeat('\xaa', 131), rfc4231_long_data,
         "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944"
         "b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58"},
        // RFC 2202 section 3.
        {"2202 #1", Algorithm::sha1, repeat('\x0b', 20), "Hi There",
         "b617318655057264e28bc0b6fb378c8ef146be00"},
        {"2202 #2", Algorithm::sha1, "Jefe", "what do ya want for nothing?",
         "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"},
        {"2202 #3", Algorithm::sha1, repeat('\xaa', 20), repeat('\xdd', 50),
         "125d7342b9ac11cd91a39af48aa17b4f63f175d3"},
        {"2202 #4", Algorithm::sha1, counting_key(), repeat('\xcd', 50),
         "4c9007f4026250c6bc8414f9bf50c86c2d7235da"},
        {"2202 #5", Algorithm::sha1, repeat('\x0c', 20), "Test With Truncation",
         "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04"},
        {"2202 #6", Algorithm::sha1, repeat('\xaa', 80),
         "Test Using Larger Than Block-Size Key - Hash Key First",
         "aa4ae5e15272d00e95705637ce8a3b55ed402112"},
        {"2202 #7", Algorithm::sha1, repeat('\xaa', 80),
         "Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data",
         "e8e99d0f45237d786d6bbaa7965c7808bbff1a91"},
    };
    return rows;
}

const EVP_MD* evp_of(Algorithm alg) {
    switch (alg) {
    case Algorithm::sha1:
        return EVP_sha1();
    case Algorithm::sha512:
        return EVP_sha512();
    case Algorithm::sha256:
        break;
    }
    return EVP_sha256();
}

} // namespace

TEST(Hmac, MatchesRfc4231AndRfc2202Vectors) {
    for (const Vector& v : vectors()) {
        HmacKey key(v.alg, base::as_bytes(v.key));
        EXPECT_EQ(mac_hex(key, v.data).substr(0, v.expected_hex.size()), v.expected_hex)
            << v.source << " algorithm " << static_cast<int>(v.alg);
    }
}

TEST(Hmac, ReportsTheDigestSizeOfEachAlgorithm) {
    EXPECT_EQ(HmacKey(Algorithm::sha1, {}).size(), 20u);
    EXPECT_EQ(HmacKey(Algorithm::sha256, {}).size(), 32u);
    EXPECT_EQ(HmacKey(Algorithm::sha512, {}).size(), 64u);
}

TEST(Hmac, StreamingInRandomSplitsEqualsOneShot) {
    std::mt19937 rng(20240601); // fixed: a failure must reproduce
    std::string data(5000, '\0');
    for (char& c : data) {
        c = static_cast<char>(rng());
    }
    for (Algorithm alg : {Algorithm::sha256, Algorithm::sha512, Algorithm::sha1}) {
        for (size_t key_len : {0, 1, 20, 63, 64, 65, 127, 128, 129, 300}) {
            const std::string key_bytes = data.substr(100, key_len);
            HmacKey key(alg, base::as_bytes(key_bytes));
            // An independent implementation (BoringSSL's EVP HMAC) is the reference.
            for (size_t data_len : {0, 1, 55, 64, 128, 1000, 5000}) {
                const auto msg = base::as_bytes(std::string_view(data).substr(0, data_len));
                uint8_t expected[EVP_MAX_MD_SIZE];
                unsigned expected_len = 0;
                HMAC(evp_of(alg), key_bytes.data(), key_bytes.size(), msg.data(), msg.size(),
                     expected, &expected_len);
                ASSERT_EQ(expected_len, key.size());
                uint8_t one_shot[max_mac_size];
                key.compute(msg, one_shot);
                ASSERT_EQ(base::hex({one_shot, key.size()}), base::hex({expected, expected_len}))
                    << "alg " << static_cast<int>(alg) << " key " << key_len << " data "
                    << data_len;
                for (int round = 0; round < 20; ++round) {
                    HmacStream s;
                    key.start(s);
                    size_t at = 0;
                    std::string splits;
                    while (at < msg.size()) {
                        const size_t n = std::min<size_t>(msg.size() - at, 1 + rng() % 200);
                        s.update(msg.subspan(at, n));
                        splits += std::to_string(n) + " ";
                        at += n;
                    }
                    uint8_t streamed[max_mac_size];
                    key.finish(s, streamed);
                    ASSERT_EQ(base::hex({streamed, key.size()}),
                              base::hex({expected, expected_len}))
                        << "alg " << static_cast<int>(alg) << " key " << key_len << " splits "
                        << splits;
                }
            }
        }
    }
}

TEST(Hmac, StreamsOfOneKeyAreIndependent) {
    HmacKey key(Algorithm::sha256, base::as_bytes("Jefe"));
    HmacStream a;
    HmacStream b;
    key.start(a);
    key.start(b);
    a.update(std::string_view("what do ya want "));
    b.update(std::string_view("Hi There"));
    a.update(std::string_view("for nothing?"));
    uint8_t mac_a[max_mac_size];
    uint8_t mac_b[max_mac_size];
    key.finish(a, mac_a);
    key.finish(b, mac_b);
    EXPECT_EQ(base::hex({mac_a, 32}),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    EXPECT_EQ(base::hex({mac_b, 32}), mac_hex(key, "Hi There"));
}

TEST(Hmac, CopiedKeyGivesTheSameMacs) {
    std::vector<HmacKey> keys;
    for (int i = 0; i < 20; ++i) { // reallocations copy and wipe the originals
        keys.emplace_back(Algorithm::sha512, base::as_bytes("Jefe"));
    }
    EXPECT_EQ(mac_hex(keys.back(), "what do ya want for nothing?").substr(0, 16),
              "164b7a7bfcf819e2");
    EXPECT_EQ(mac_hex(keys.front(), "what do ya want for nothing?").substr(0, 16),
              "164b7a7bfcf819e2");
}
