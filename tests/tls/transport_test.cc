// tls::Transport as a shard drives it, against a BoringSSL client in the same process: bytes are
// carried between them by hand (loopback.hh), so records can be cut anywhere.
#include "portcullis/tls/transport.hh"

#include "loopback.hh"
#include "pki.hh"

#include <gtest/gtest.h>

#include <random>
#include <string>

using namespace portcullis;
using namespace portcullis::tls::fixture;

namespace {

class TlsTransport : public ::testing::Test {
protected:
    void SetUp() override {
        auto cert = make_cert(valid_now("default", {"default.test"}), key_of(KeyKind::p256));
        config::TlsConfig cfg;
        cfg.certificates.push_back(
            write_certificate(_dir, "default", {cert.get()}, key_of(KeyKind::p256)));
        ASSERT_EQ(_server.init(cfg, 1, 0), "");
        _shard = std::make_unique<Shard>(_server, 0);
    }

    // A client offering exactly `version`, handshaken with a new session.
    struct Pair {
        bssl::UniquePtr<SSL_CTX> ctx;
        std::unique_ptr<Client> client;
        Session session;
    };
    Pair connect(uint16_t version, size_t piece = std::string_view::npos) {
        Pair p;
        p.ctx = client_context(version, version);
        p.client = std::make_unique<Client>(p.ctx.get());
        p.session = _shard->accept();
        EXPECT_NE(p.session, nullptr);
        Exchange hs = handshake(*p.client, *_shard, p.session.get(), piece);
        EXPECT_TRUE(hs.ok()) << tls::failure_name(hs.failure) << " "
                             << _shard->transport.failure_detail();
        return p;
    }

    // What a session makes of `bytes` as the first thing a peer sends.
    Fed first_bytes(std::string_view bytes, size_t piece = std::string_view::npos) {
        Session s = _shard->accept();
        return _shard->feed(s.get(), bytes, piece);
    }

    TempDir _dir;
    tls::Server _server;
    std::unique_ptr<Shard> _shard;
};

// A request that spans several records: more than two plaintext chunks.
std::string big_request() {
    std::string body;
    for (size_t i = 0; body.size() < 2 * tls::Transport::plaintext_chunk + 1000; ++i) {
        body += std::to_string(i) + ",";
    }
    return "POST /hooks/big HTTP/1.1\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body;
}

// How many whole records `cipher` holds (it must end at a record's end).
size_t records_in(std::string_view cipher) {
    size_t n = 0;
    while (cipher.size() >= 5) {
        const size_t len = (static_cast<uint8_t>(cipher[3]) << 8) | static_cast<uint8_t>(cipher[4]);
        if (cipher.size() < 5 + len) {
            return 0;
        }
        cipher.remove_prefix(5 + len);
        ++n;
    }
    return cipher.empty() ? n : 0;
}

class TlsTransportVersion : public TlsTransport, public ::testing::WithParamInterface<uint16_t> {};

} // namespace

TEST_P(TlsTransportVersion, HandshakeThenRequestAndAnswer) {
    Pair p = connect(GetParam());
    EXPECT_EQ(SSL_version(p.session.get()), GetParam());
    EXPECT_EQ(SSL_version(p.client->ssl()), GetParam());
    EXPECT_EQ(p.client->peer_cn(), "default");

    const std::string request = "POST /hooks/github HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    Fed fed = _shard->feed(p.session.get(), p.client->write(request));
    EXPECT_EQ(fed.status, tls::Status::ok);
    EXPECT_EQ(fed.failure, tls::Failure::none);
    EXPECT_EQ(fed.plain, request);
    EXPECT_EQ(fed.deliveries, 1u);

    const std::string answer = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
    bool sealed = false;
    p.client->give(_shard->seal(p.session.get(), answer, &sealed));
    EXPECT_TRUE(sealed);
    EXPECT_EQ(p.client->read(), SSL_ERROR_WANT_READ);
    EXPECT_EQ(p.client->plain(), answer);
}

// A client that sends its first request with its last handshake flight (TLS 1.3: after its
// Finished; TLS 1.2: False Start, before the server's Finished): one receive completes the
// handshake and delivers the request.
TEST_P(TlsTransportVersion, TheFirstRequestComesWithTheLastFlight) {
    auto ctx = client_context(GetParam(), GetParam());
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_FALSE_START);
    Client client(ctx.get());
    static constexpr uint8_t http11[] = "\x08http/1.1"; // False Start needs ALPN
    ASSERT_EQ(SSL_set_alpn_protos(client.ssl(), http11, sizeof http11 - 1), 0);
    Session s = _shard->accept();
    client.step();
    Fed hello = _shard->feed(s.get(), client.take());
    ASSERT_EQ(hello.status, tls::Status::ok);
    client.give(hello.to_client);
    ASSERT_TRUE(client.step());
    ASSERT_TRUE(client.done());
    EXPECT_EQ(SSL_in_false_start(client.ssl()) != 0, GetParam() == TLS1_2_VERSION);
    EXPECT_FALSE(tls::Transport::handshake_done(s.get()));

    const std::string request = "POST /hooks/github HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    Fed last = _shard->feed(s.get(), client.write(request));
    EXPECT_EQ(last.status, tls::Status::ok);
    EXPECT_EQ(last.failure, tls::Failure::none);
    EXPECT_TRUE(tls::Transport::handshake_done(s.get()));
    EXPECT_EQ(last.plain, request);
    client.give(last.to_client + _shard->seal(s.get(), "HTTP/1.1 202 Accepted\r\n\r\n"));
    EXPECT_EQ(client.read(), SSL_ERROR_WANT_READ);
    EXPECT_EQ(client.plain(), "HTTP/1.1 202 Accepted\r\n\r\n");
    EXPECT_FALSE(SSL_in_init(client.ssl()));
}

TEST_P(TlsTransportVersion, RecordsCutAtEveryByte) {
    // The handshake itself a byte at a time, then a request of several records.
    Pair p = connect(GetParam(), 1);
    const std::string request = big_request();
    const std::string cipher = p.client->write(request);
    Fed fed = _shard->feed(p.session.get(), cipher, 1);
    EXPECT_EQ(fed.status, tls::Status::ok);
    EXPECT_EQ(fed.receives, cipher.size()); // every byte was taken, none refused
    EXPECT_EQ(fed.plain, request);
    EXPECT_FALSE(fed.empty_delivery);
    EXPECT_LE(fed.largest, tls::Transport::plaintext_chunk);
    EXPECT_GE(fed.deliveries, 3u);
    EXPECT_TRUE(fed.to_client.empty());
}

TEST_P(TlsTransportVersion, ManyRecordsInOneReceive) {
    Pair p = connect(GetParam());
    const std::string request = big_request();
    std::string cipher = p.client->write(request);
    cipher += p.client->write("GET /second HTTP/1.1\r\n\r\n");
    Fed fed = _shard->feed(p.session.get(), cipher);
    EXPECT_EQ(fed.status, tls::Status::ok);
    EXPECT_EQ(fed.receives, 1u);
    EXPECT_EQ(fed.plain, request + "GET /second HTTP/1.1\r\n\r\n");
    EXPECT_LE(fed.largest, tls::Transport::plaintext_chunk);
    EXPECT_FALSE(fed.empty_delivery);
}

TEST_P(TlsTransportVersion, ALargeAnswerDecryptsOnTheClient) {
    Pair p = connect(GetParam());
    std::string answer = "HTTP/1.1 200 OK\r\n\r\n";
    while (answer.size() < 100'000) {
        answer += static_cast<char>('a' + answer.size() % 26);
    }
    bool sealed = false;
    const std::string cipher = _shard->seal(p.session.get(), answer, &sealed);
    EXPECT_TRUE(sealed);
    EXPECT_GT(cipher.size(), answer.size());
    p.client->give(cipher);
    EXPECT_EQ(p.client->read(), SSL_ERROR_WANT_READ);
    EXPECT_EQ(p.client->plain(), answer);
}

TEST_P(TlsTransportVersion, CloseNotifyClosesAndAnswersStillGoOut) {
    Pair p = connect(GetParam());
    std::string cipher = p.client->write("GET / HTTP/1.1\r\n\r\n");
    ASSERT_EQ(SSL_shutdown(p.client->ssl()), 0); // sent; the server's not seen yet
    cipher += p.client->take();
    Fed fed = _shard->feed(p.session.get(), cipher);
    EXPECT_EQ(fed.status, tls::Status::closed);
    EXPECT_EQ(fed.failure, tls::Failure::none);
    EXPECT_EQ(fed.plain, "GET / HTTP/1.1\r\n\r\n");

    // The peer only closed its half: the answer to what it sent is still sealed and read, and
    // the server's close_notify ends the client's reading.
    bool sealed = false;
    p.client->give(_shard->seal(p.session.get(), "HTTP/1.1 200 OK\r\n\r\n", &sealed));
    EXPECT_TRUE(sealed);
    p.client->give(_shard->close_notify(p.session.get()));
    EXPECT_EQ(p.client->read(), SSL_ERROR_ZERO_RETURN);
    EXPECT_EQ(p.client->plain(), "HTTP/1.1 200 OK\r\n\r\n");
}

TEST_P(TlsTransportVersion, ATamperedRecordIsARecordFailure) {
    Pair p = connect(GetParam());
    const std::string good = p.client->write("first");
    std::string bad = p.client->write("second");
    bad.back() = static_cast<char>(bad.back() ^ 0x01); // in the authentication tag
    Fed fed = _shard->feed(p.session.get(), good + bad);
    EXPECT_EQ(fed.status, tls::Status::failed);
    EXPECT_EQ(fed.failure, tls::Failure::record);
    EXPECT_FALSE(_shard->transport.failure_detail().empty());
    EXPECT_EQ(fed.plain, "first"); // what decrypted before it was delivered
    // The session says why to the client before it is closed.
    p.client->give(fed.to_client);
    EXPECT_NE(p.client->read(), SSL_ERROR_WANT_READ);
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsTransportVersion,
                         ::testing::Values(uint16_t{TLS1_3_VERSION}, uint16_t{TLS1_2_VERSION}),
                         [](const ::testing::TestParamInfo<uint16_t>& info) {
                             return info.param == TLS1_3_VERSION ? "Tls13" : "Tls12";
                         });

// TLS 1.3 KeyUpdate: the client's new keys apply to what follows it, and the one the server
// owes in reply goes out ahead of its next answer.
TEST_F(TlsTransport, KeyUpdatesBothWays) {
    Pair p = connect(TLS1_3_VERSION);
    ASSERT_EQ(SSL_key_update(p.client->ssl(), SSL_KEY_UPDATE_REQUESTED), 1);
    const std::string cipher = p.client->write("after the update");
    Fed fed = _shard->feed(p.session.get(), cipher, 7);
    EXPECT_EQ(fed.status, tls::Status::ok);
    EXPECT_EQ(fed.plain, "after the update");
    EXPECT_EQ(fed.to_client, ""); // the reply waits for the next answer
    const std::string sealed = _shard->seal(p.session.get(), "answer");
    EXPECT_EQ(records_in(sealed), 2u); // the KeyUpdate, then the answer
    p.client->give(sealed);
    EXPECT_EQ(p.client->read(), SSL_ERROR_WANT_READ);
    EXPECT_EQ(p.client->plain(), "answer");
    // Both directions are on their new keys and still agree.
    Fed again = _shard->feed(p.session.get(), p.client->write("and again"));
    EXPECT_EQ(again.status, tls::Status::ok);
    EXPECT_EQ(again.plain, "and again");
}

TEST_F(TlsTransport, ATls11ClientFailsTheHandshake) {
    auto ctx = client_context(TLS1_1_VERSION, TLS1_1_VERSION);
    Client client(ctx.get());
    Session s = _shard->accept();
    Exchange hs = handshake(client, *_shard, s.get());
    EXPECT_EQ(hs.status, tls::Status::failed);
    EXPECT_EQ(hs.failure, tls::Failure::handshake);
    EXPECT_FALSE(_shard->transport.failure_detail().empty());
    EXPECT_FALSE(hs.client_done);
    EXPECT_TRUE(client.failed()); // it got the alert
}

TEST_F(TlsTransport, GarbageIsNotTls) {
    using namespace std::literals;
    const std::string_view garbage = "\x8e\x21\x07\xf3\x00\x10garbage, not a record at all"sv;
    Fed whole = first_bytes(garbage);
    EXPECT_EQ(whole.status, tls::Status::failed);
    EXPECT_EQ(whole.failure, tls::Failure::not_tls);
    EXPECT_EQ(whole.plain, "");

    // A byte at a time: no record begins with 0x8e, so the session fails at the first.
    Fed bytewise = first_bytes(garbage, 1);
    EXPECT_EQ(bytewise.status, tls::Status::failed);
    EXPECT_EQ(bytewise.failure, tls::Failure::not_tls);
    EXPECT_EQ(bytewise.receives, 1u);
}

TEST_F(TlsTransport, PlainHttpIsRecognised) {
    for (std::string_view request :
         {"GET / HTTP/1.1\r\n", "POST /hooks/github HTTP/1.1\r\nHost: x\r\n\r\n"}) {
        Fed whole = first_bytes(request);
        EXPECT_EQ(whole.status, tls::Status::failed) << request;
        EXPECT_EQ(whole.failure, tls::Failure::plain_http) << request;
        EXPECT_EQ(whole.plain, "");
        // Nothing TLS goes back: the shard answers a plain 400 itself.
        EXPECT_EQ(whole.to_client, "") << request;

        Fed bytewise = first_bytes(request, 1);
        EXPECT_EQ(bytewise.failure, tls::Failure::plain_http) << request;
    }
}

// A TLS client's first record is a handshake record (type 22, version major 3): anything else
// is refused on its first byte, whatever follows. With version major 3 in the second byte,
// BoringSSL would otherwise take the bytes for a record header and wait for a "record" of up to
// 16 KiB, or call them a failed handshake.
TEST_F(TlsTransport, AFirstRecordOfAnotherTypeIsNotTlsAtOnce) {
    using namespace std::literals;
    std::string rest(64, '\0');
    for (size_t i = 0; i < rest.size(); ++i) {
        rest[i] = static_cast<char>(i * 37 + 11);
    }
    struct Row {
        std::string_view name;
        std::string bytes;
    };
    const Row rows[] = {
        {"type 5, a 16 KiB length", "\x05\x03\x40\x00"s + rest},
        {"type 1, 16 bytes", "\x01\x03\x00\x10"s + rest.substr(0, 16)},
        {"type 0, a 4 KiB length", "\x00\x03\x01\x10\x00"s + rest},
        {"application data", "\x17\x03\x03\x00\x20"s + rest.substr(0, 32)},
        {"an alert", "\x15\x03\x03\x00\x02\x02\x28"s},
        {"change cipher spec", "\x14\x03\x03\x00\x01\x01"s},
        {"type 0x0f, a huge length", "\x0f\x03\x01\xff\xff"s + rest},
        {"an SSLv2 hello's length", "\x80\x2e\x01\x03\x01"s + rest},
    };
    for (const Row& row : rows) {
        Fed whole = first_bytes(row.bytes);
        EXPECT_EQ(whole.status, tls::Status::failed) << row.name;
        EXPECT_EQ(whole.failure, tls::Failure::not_tls)
            << row.name << ": " << tls::failure_name(whole.failure) << " "
            << _shard->transport.failure_detail();
        EXPECT_EQ(whole.to_client, "") << row.name; // closed without an answer
        EXPECT_EQ(whole.plain, "") << row.name;

        Fed bytewise = first_bytes(row.bytes, 1);
        EXPECT_EQ(bytewise.status, tls::Status::failed) << row.name;
        EXPECT_EQ(bytewise.failure, tls::Failure::not_tls) << row.name;
        EXPECT_EQ(bytewise.receives, 1u) << row.name; // decided on the first byte
    }
}

// Every first byte, followed by what looks like a record header of version major 3: a
// handshake record is BoringSSL's to judge, an uppercase letter starts an HTTP method, and
// anything else is not TLS, on the first byte.
TEST_F(TlsTransport, EveryFirstByteIsClassifiedAtOnce) {
    for (int b = 0; b < 256; ++b) {
        std::string bytes = {static_cast<char>(b), '\x03', '\x03', '\x00', '\x10'};
        bytes += std::string(16, '\x5a');
        Fed fed = first_bytes(bytes, 1);
        if (b == 0x16) {
            // A handshake record whose message is no ClientHello: a failed handshake.
            EXPECT_EQ(fed.failure, tls::Failure::handshake) << "first byte " << b;
            EXPECT_EQ(fed.receives, bytes.size()) << "first byte " << b;
            continue;
        }
        const bool method = b >= 'A' && b <= 'Z';
        EXPECT_EQ(fed.status, tls::Status::failed) << "first byte " << b;
        EXPECT_EQ(fed.failure, method ? tls::Failure::plain_http : tls::Failure::not_tls)
            << "first byte " << b << ": " << tls::failure_name(fed.failure) << " "
            << _shard->transport.failure_detail();
        EXPECT_EQ(fed.receives, 1u) << "first byte " << b;
        EXPECT_EQ(fed.to_client, "") << "first byte " << b;
    }
}

// tls.sh's random bytes: the first byte below 16, the rest random. About one run in 256 had a
// second byte of 3 and was counted as a failed handshake or held until timeouts.header.
TEST_F(TlsTransport, RandomBytesAreNotTlsWhateverTheirSecondByte) {
    std::mt19937 random(20240611);
    std::string junk(4096, '\0');
    for (int round = 0; round < 64; ++round) {
        for (char& c : junk) {
            c = static_cast<char>(random());
        }
        junk[0] = static_cast<char>(junk[0] & 0x0f);
        if (round % 2 == 0) {
            junk[1] = '\x03';
        }
        Fed fed = first_bytes(junk);
        EXPECT_EQ(fed.status, tls::Status::failed) << "round " << round;
        EXPECT_EQ(fed.failure, tls::Failure::not_tls)
            << "round " << round << ", first bytes " << int{static_cast<uint8_t>(junk[0])} << " "
            << int{static_cast<uint8_t>(junk[1])} << ": " << tls::failure_name(fed.failure) << " "
            << _shard->transport.failure_detail();
        EXPECT_EQ(fed.to_client, "") << "round " << round;
    }
}

// A handshake record with another version major is not TLS either, told by its second byte.
TEST_F(TlsTransport, AHandshakeRecordOfAnotherVersionIsNotTls) {
    using namespace std::literals;
    for (std::string_view bytes : {"\x16\x07\x01\x00\x10"sv, "\x16\x00\x00\xff\xff"sv,
                                   "\x16\x02\x00\x00\x10"sv, "\x16\x16\x16\x16\x16"sv}) {
        Fed whole = first_bytes(bytes);
        EXPECT_EQ(whole.status, tls::Status::failed);
        EXPECT_EQ(whole.failure, tls::Failure::not_tls)
            << int{static_cast<uint8_t>(bytes[1])} << ": " << tls::failure_name(whole.failure);
        EXPECT_EQ(whole.receives, 1u);
        EXPECT_EQ(whole.to_client, "");
        // Two bytes at once, as any TCP segment carries them: decided on the second byte.
        Fed pairs = first_bytes(std::string(bytes) + std::string(64, '\x03'), 2);
        EXPECT_EQ(pairs.failure, tls::Failure::not_tls) << int{static_cast<uint8_t>(bytes[1])};
        EXPECT_EQ(pairs.receives, 1u) << int{static_cast<uint8_t>(bytes[1])};
        // The second byte alone in the next receive: BoringSSL's record layer says the same
        // of the header (WRONG_VERSION_NUMBER) before it reads any length.
        Fed bytewise = first_bytes(bytes, 1);
        EXPECT_EQ(bytewise.failure, tls::Failure::not_tls) << int{static_cast<uint8_t>(bytes[1])};
        EXPECT_EQ(bytewise.receives, 5u) << int{static_cast<uint8_t>(bytes[1])};
    }
}

// A handshake record of version major 3 is TLS-looking, even with a length no record may have:
// BoringSSL's to judge, and a failed handshake.
TEST_F(TlsTransport, AHandshakeHeaderWithAHugeLengthIsAFailedHandshake) {
    using namespace std::literals;
    const std::string bytes = "\x16\x03\x01\xff\xff"s + std::string(64, '\x01');
    Fed fed = first_bytes(bytes);
    EXPECT_EQ(fed.status, tls::Status::failed);
    EXPECT_EQ(fed.failure, tls::Failure::handshake);
    EXPECT_EQ(_shard->transport.failure_detail(), "ENCRYPTED_LENGTH_TOO_LONG");
}

// Only a session's first bytes are screened: a ClientHello cut anywhere, and the records after
// it (none of them a first record), go through.
TEST_P(TlsTransportVersion, AClientHelloInAnyCutPassesTheFirstBytes) {
    for (size_t piece : {size_t{1}, size_t{2}, size_t{3}, size_t{5}, size_t{6}, size_t{700}}) {
        Pair p = connect(GetParam(), piece);
        ASSERT_TRUE(tls::Transport::handshake_done(p.session.get())) << "piece " << piece;
        const std::string request = "GET / HTTP/1.1\r\n\r\n";
        Fed fed = _shard->feed(p.session.get(), p.client->write(request), piece);
        EXPECT_EQ(fed.status, tls::Status::ok) << "piece " << piece;
        EXPECT_EQ(fed.plain, request) << "piece " << piece;
    }
}

TEST_F(TlsTransport, FailureNamesAreStable) {
    EXPECT_EQ(tls::failure_name(tls::Failure::none), "none");
    EXPECT_EQ(tls::failure_name(tls::Failure::not_tls), "not_tls");
    EXPECT_EQ(tls::failure_name(tls::Failure::plain_http), "plain_http");
    EXPECT_EQ(tls::failure_name(tls::Failure::handshake), "handshake_failed");
    EXPECT_EQ(tls::failure_name(tls::Failure::record), "bad_record");
    EXPECT_EQ(tls::failure_name(tls::Failure::out_of_memory), "out_of_memory");
}
