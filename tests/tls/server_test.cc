// tls::Server (the contexts, SNI, ALPN, versions, ticket keys, reload and the retirement of old
// contexts) seen through handshakes of an in-process BoringSSL client with the shards'
// transports (loopback.hh), and tls::TicketKeys on its own.
#include "portcullis/tls/server.hh"

#include "loopback.hh"
#include "pki.hh"

#include <gtest/gtest.h>

#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace portcullis;
using namespace portcullis::tls::fixture;

namespace {

// The contexts freed so far, by the marker each was given (mark_context): the server frees a
// retired context by dropping its reference, so this is the only way to see when it goes.
std::vector<std::string>& freed_markers() {
    static std::vector<std::string> freed;
    return freed;
}

void on_context_freed(void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*index*/,
                      long /*argl*/, void* /*argp*/) {
    if (ptr != nullptr) {
        freed_markers().emplace_back(static_cast<const char*>(ptr));
    }
}

int marker_index() {
    static const int index =
        SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, on_context_freed);
    return index;
}

// `marker`: a string literal (a context may outlive the test that marked it).
void mark_context(SSL_CTX* ctx, const char* marker) {
    ASSERT_EQ(SSL_CTX_set_ex_data(ctx, marker_index(), const_cast<char*>(marker)), 1);
}

bool was_freed(const std::string& marker) {
    const auto& f = freed_markers();
    return std::find(f.begin(), f.end(), marker) != f.end();
}

struct Result {
    Exchange hs;
    std::string cn; // the certificate the client saw
    bool client_reused = false;
    bool server_reused = false;
    std::string alpn; // what the client got
    std::vector<bssl::UniquePtr<SSL_SESSION>> tickets;
    bssl::UniquePtr<SSL_SESSION> session; // the client's, tickets or not
};

struct Offer {
    uint16_t min_version = TLS1_2_VERSION;
    uint16_t max_version = TLS1_3_VERSION;
    std::string sni;
    std::string alpn; // wire format
    SSL_SESSION* session = nullptr;
};

class TlsServer : public ::testing::Test {
protected:
    // A certificate for `names` (P-256), with its CN, valid now, written as <cn>.pem/.key.
    config::TlsCertificate certificate(const std::string& cn, std::vector<std::string> names) {
        auto cert = make_cert(valid_now(cn, std::move(names)), key_of(KeyKind::p256));
        return write_certificate(_dir, cn, {cert.get()}, key_of(KeyKind::p256));
    }

    // Starts the server with `cfg` (one default certificate when it has none) and `shards`
    // shards, each refreshed once.
    void start(config::TlsConfig cfg = {}, unsigned shards = 2) {
        if (cfg.certificates.empty()) {
            cfg.certificates.push_back(certificate("default", {"default.test"}));
        }
        _cfg = cfg;
        ASSERT_EQ(_server.init(cfg, shards, 0), "");
        for (unsigned i = 0; i < shards; ++i) {
            _shards.push_back(std::make_unique<Shard>(_server, i));
        }
    }

    // A full conversation: handshake with `offer` on shard `shard`, then a request and an
    // answer when the handshake succeeded.
    Result converse(unsigned shard, const Offer& offer = {}) {
        Result r;
        auto ctx = client_context(offer.min_version, offer.max_version);
        Client client(ctx.get());
        if (!offer.sni.empty()) {
            EXPECT_EQ(SSL_set_tlsext_host_name(client.ssl(), offer.sni.c_str()), 1);
        }
        if (!offer.alpn.empty()) {
            EXPECT_EQ(SSL_set_alpn_protos(client.ssl(),
                                          reinterpret_cast<const uint8_t*>(offer.alpn.data()),
                                          offer.alpn.size()),
                      0);
        }
        if (offer.session != nullptr) {
            EXPECT_EQ(SSL_set_session(client.ssl(), offer.session), 1);
        }
        Shard& sh = *_shards[shard];
        Session s = sh.accept();
        r.hs = handshake(client, sh, s.get());
        r.cn = client.peer_cn();
        r.client_reused = SSL_session_reused(client.ssl()) != 0;
        r.server_reused = SSL_session_reused(s.get()) != 0;
        const uint8_t* alpn = nullptr;
        unsigned alpn_len = 0;
        SSL_get0_alpn_selected(client.ssl(), &alpn, &alpn_len);
        r.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
        if (r.hs.ok()) {
            Fed fed = sh.feed(s.get(), client.write("GET /healthz HTTP/1.1\r\n\r\n"));
            EXPECT_EQ(fed.plain, "GET /healthz HTTP/1.1\r\n\r\n");
            client.give(sh.seal(s.get(), "HTTP/1.1 200 OK\r\n\r\n"));
            // The TLS 1.3 ticket is read here at the latest.
            EXPECT_EQ(client.read(), SSL_ERROR_WANT_READ);
            EXPECT_EQ(client.plain(), "HTTP/1.1 200 OK\r\n\r\n");
        }
        for (const auto& t : client.sessions()) {
            r.tickets.emplace_back(bssl::UpRef(t));
        }
        r.session.reset(SSL_get1_session(client.ssl()));
        return r;
    }

    // A session that resumes: the newest ticket of a conversation with `version` on shard 0.
    bssl::UniquePtr<SSL_SESSION> ticket(uint16_t version) {
        Result first = converse(0, {.min_version = version, .max_version = version});
        EXPECT_TRUE(first.hs.ok());
        EXPECT_FALSE(first.server_reused);
        if (first.tickets.empty()) {
            ADD_FAILURE() << "no ticket";
            return nullptr;
        }
        EXPECT_EQ(SSL_SESSION_has_ticket(first.tickets.back().get()), 1);
        return std::move(first.tickets.back());
    }

    Result resume(unsigned shard, uint16_t version, SSL_SESSION* session) {
        return converse(shard,
                        {.min_version = version, .max_version = version, .session = session});
    }

    TempDir _dir;
    config::TlsConfig _cfg;
    tls::Server _server;
    std::vector<std::unique_ptr<Shard>> _shards;
};

class TlsServerVersion : public TlsServer, public ::testing::WithParamInterface<uint16_t> {};

std::string version_name(const ::testing::TestParamInfo<uint16_t>& info) {
    return info.param == TLS1_3_VERSION ? "Tls13" : "Tls12";
}

} // namespace

// ---- ALPN, SNI, versions --------------------------------------------------------------------

TEST_F(TlsServer, AlpnSelectsHttp11) {
    start();
    Result both = converse(0, {.alpn = std::string("\x02h2\x08http/1.1", 12)});
    EXPECT_TRUE(both.hs.ok());
    EXPECT_EQ(both.alpn, "http/1.1");

    Result none = converse(0);
    EXPECT_TRUE(none.hs.ok());
    EXPECT_EQ(none.alpn, "");
}

TEST_F(TlsServer, AClientOfferingOnlyH2FailsTheHandshake) {
    start();
    Result h2 = converse(0, {.alpn = std::string("\x02h2", 3)});
    EXPECT_EQ(h2.hs.status, tls::Status::failed);
    EXPECT_EQ(h2.hs.failure, tls::Failure::handshake);
    EXPECT_FALSE(h2.hs.client_done);
}

TEST_F(TlsServer, SniChoosesTheCertificate) {
    config::TlsConfig cfg;
    cfg.certificates.push_back(certificate("default", {"default.test"}));
    cfg.certificates.push_back(certificate("second", {"a.test", "*.wild.test"}));
    start(cfg);
    struct Row {
        std::string sni;
        std::string cn;
    };
    for (const Row& row :
         {Row{"a.test", "second"}, Row{"A.Test", "second"}, Row{"x.wild.test", "second"},
          Row{"default.test", "default"}, Row{"b.test", "default"}, Row{"y.x.wild.test", "default"},
          Row{"wild.test", "default"}, Row{"", "default"}}) {
        for (uint16_t version : {uint16_t{TLS1_3_VERSION}, uint16_t{TLS1_2_VERSION}}) {
            Result r =
                converse(1, {.min_version = version, .max_version = version, .sni = row.sni});
            EXPECT_TRUE(r.hs.ok()) << row.sni;
            EXPECT_EQ(r.cn, row.cn) << "SNI '" << row.sni << "', version " << std::hex << version;
        }
    }
}

TEST_F(TlsServer, MinVersion13RefusesATls12Client) {
    config::TlsConfig cfg;
    cfg.min_version = config::TlsVersion::v1_3;
    start(cfg);
    Result old = converse(0, {.max_version = TLS1_2_VERSION});
    EXPECT_EQ(old.hs.status, tls::Status::failed);
    EXPECT_EQ(old.hs.failure, tls::Failure::handshake);

    Result current = converse(0);
    EXPECT_TRUE(current.hs.ok());
}

// Every key type `check` accepts serves both versions. (Ed25519 only to clients that offer it:
// BoringSSL's own clients, like browsers, do not by default.)
TEST_F(TlsServer, EveryKeyTypeHandshakes) {
    config::TlsConfig cfg;
    struct Row {
        KeyKind kind;
        std::string cn;
    };
    const Row rows[] = {{KeyKind::p256, "p256"},
                        {KeyKind::p384, "p384"},
                        {KeyKind::rsa2048, "rsa2048"},
                        {KeyKind::ed25519, "ed25519"}};
    for (const Row& r : rows) {
        auto cert = make_cert(valid_now(r.cn, {r.cn + ".test"}), key_of(r.kind));
        cfg.certificates.push_back(write_certificate(_dir, r.cn, {cert.get()}, key_of(r.kind)));
    }
    start(cfg, 1);
    static constexpr uint16_t prefs[] = {SSL_SIGN_ED25519, SSL_SIGN_ECDSA_SECP256R1_SHA256,
                                         SSL_SIGN_ECDSA_SECP384R1_SHA384,
                                         SSL_SIGN_RSA_PSS_RSAE_SHA256, SSL_SIGN_RSA_PKCS1_SHA256};
    for (const Row& r : rows) {
        for (uint16_t version : {uint16_t{TLS1_3_VERSION}, uint16_t{TLS1_2_VERSION}}) {
            auto ctx = client_context(version, version);
            ASSERT_EQ(SSL_CTX_set_verify_algorithm_prefs(ctx.get(), prefs, std::size(prefs)), 1);
            Client client(ctx.get());
            ASSERT_EQ(SSL_set_tlsext_host_name(client.ssl(), (r.cn + ".test").c_str()), 1);
            Session s = _shards[0]->accept();
            Exchange hs = handshake(client, *_shards[0], s.get());
            EXPECT_TRUE(hs.ok()) << r.cn << " " << std::hex << version << " "
                                 << _shards[0]->transport.failure_detail();
            EXPECT_EQ(client.peer_cn(), r.cn) << std::hex << version;
        }
    }
}

TEST_F(TlsServer, Tls12ClientIsServedByDefault) {
    start();
    Result r = converse(0, {.max_version = TLS1_2_VERSION});
    EXPECT_TRUE(r.hs.ok());
}

// ---- session resumption ---------------------------------------------------------------------

TEST_P(TlsServerVersion, ATicketResumesOnAnotherShard) {
    start();
    auto t = ticket(GetParam());
    ASSERT_NE(t, nullptr);
    Result again = resume(1, GetParam(), t.get());
    EXPECT_TRUE(again.hs.ok());
    EXPECT_TRUE(again.client_reused);
    EXPECT_TRUE(again.server_reused);
    EXPECT_EQ(again.cn, "default");
}

TEST_P(TlsServerVersion, AfterOneRotationTheOldTicketStillResumes) {
    start();
    auto t = ticket(GetParam());
    ASSERT_NE(t, nullptr);
    _server.ticket_keys().rotate();
    Result again = resume(1, GetParam(), t.get());
    EXPECT_TRUE(again.hs.ok());
    EXPECT_TRUE(again.client_reused);
    EXPECT_TRUE(again.server_reused);
    // A ticket under the previous key is replaced by one under the current key.
    ASSERT_FALSE(again.tickets.empty());
    _server.ticket_keys().rotate();
    Result renewed = resume(0, GetParam(), again.tickets.back().get());
    EXPECT_TRUE(renewed.server_reused);
}

TEST_P(TlsServerVersion, AfterTwoRotationsTheOldTicketGetsAFullHandshake) {
    start();
    auto t = ticket(GetParam());
    ASSERT_NE(t, nullptr);
    _server.ticket_keys().rotate();
    _server.ticket_keys().rotate();
    Result again = resume(1, GetParam(), t.get());
    EXPECT_TRUE(again.hs.ok()); // not a failure
    EXPECT_FALSE(again.client_reused);
    EXPECT_FALSE(again.server_reused);
}

TEST_P(TlsServerVersion, TickRotatesOnSchedule) {
    // The period is also the tickets' lifetime (in whole seconds), so not much shorter.
    constexpr int64_t period = 60'000'000'000;
    config::TlsConfig cfg;
    cfg.ticket_rotation_ns = period;
    start(cfg);
    auto t = ticket(GetParam());
    ASSERT_NE(t, nullptr);
    _server.tick(period - 1); // not yet
    _server.tick(period - 1);
    EXPECT_EQ(_server.stats().ticket_rotations.load(), 0u);
    EXPECT_TRUE(resume(1, GetParam(), t.get()).server_reused);
    _server.tick(period);
    EXPECT_EQ(_server.stats().ticket_rotations.load(), 1u);
    EXPECT_TRUE(resume(1, GetParam(), t.get()).server_reused);
    _server.tick(2 * period - 1); // the next one is due a period after the last
    EXPECT_EQ(_server.stats().ticket_rotations.load(), 1u);
    _server.tick(2 * period);
    EXPECT_EQ(_server.stats().ticket_rotations.load(), 2u);
    Result expired = resume(1, GetParam(), t.get());
    EXPECT_TRUE(expired.hs.ok());
    EXPECT_FALSE(expired.server_reused);
}

TEST_P(TlsServerVersion, WithoutSessionTicketsNothingResumes) {
    config::TlsConfig cfg;
    cfg.session_tickets = false;
    start(cfg);
    Result first = converse(0, {.min_version = GetParam(), .max_version = GetParam()});
    EXPECT_TRUE(first.hs.ok());
    ASSERT_NE(first.session, nullptr);
    first.tickets.push_back(std::move(first.session));
    for (const auto& s : first.tickets) {
        EXPECT_EQ(SSL_SESSION_has_ticket(s.get()), 0);
        Result again = resume(1, GetParam(), s.get());
        EXPECT_TRUE(again.hs.ok());
        EXPECT_FALSE(again.server_reused);
        EXPECT_FALSE(again.client_reused);
    }
    // TLS 1.3 offers a session by ticket only: the server sent none.
    if (GetParam() == TLS1_3_VERSION) {
        EXPECT_EQ(first.tickets.size(), 1u); // the client's own session only
    }
    // No rotation either.
    _server.tick(cfg.ticket_rotation_ns * 2);
    EXPECT_EQ(_server.stats().ticket_rotations.load(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsServerVersion,
                         ::testing::Values(uint16_t{TLS1_3_VERSION}, uint16_t{TLS1_2_VERSION}),
                         version_name);

// ---- reload ---------------------------------------------------------------------------------

TEST_F(TlsServer, ReloadServesTheNewCertificateToNewSessionsOnly) {
    start();
    // A session handshaken before the reload, and one accepted before it but not yet
    // handshaken: both started from the old context.
    auto ctx = client_context(TLS1_2_VERSION, TLS1_3_VERSION);
    Client before(ctx.get());
    Session open = _shards[0]->accept();
    ASSERT_TRUE(handshake(before, *_shards[0], open.get()).ok());
    Client pending(ctx.get());
    Session accepted = _shards[1]->accept();

    auto renewed = make_cert(valid_now("renewed", {"default.test"}), key_of(KeyKind::p384));
    _dir.write("default.pem", pem_of(renewed.get()));
    _dir.write("default.key", pem_of(key_of(KeyKind::p384)));
    ASSERT_EQ(_server.reload(), "");
    EXPECT_EQ(_server.stats().reloads.load(), 1u);
    ASSERT_EQ(_server.certificates().size(), 1u);
    EXPECT_EQ(_server.certificates()[0].key_type, "ECDSA P-384");

    _shards[0]->refresh();
    _shards[1]->refresh();
    _server.tick(0);
    EXPECT_EQ(converse(0).cn, "renewed");
    EXPECT_EQ(converse(1).cn, "renewed");

    // The open session goes on with what it negotiated.
    Fed fed = _shards[0]->feed(open.get(), before.write("GET / HTTP/1.1\r\n\r\n"));
    EXPECT_EQ(fed.status, tls::Status::ok);
    EXPECT_EQ(fed.plain, "GET / HTTP/1.1\r\n\r\n");
    before.give(_shards[0]->seal(open.get(), "HTTP/1.1 200 OK\r\n\r\n"));
    EXPECT_EQ(before.read(), SSL_ERROR_WANT_READ);
    EXPECT_EQ(before.plain(), "HTTP/1.1 200 OK\r\n\r\n");
    // The accepted one holds the old context and handshakes with it.
    ASSERT_TRUE(handshake(pending, *_shards[1], accepted.get()).ok());
    EXPECT_EQ(pending.peer_cn(), "default");
}

TEST_F(TlsServer, AReloadThatFailsKeepsTheOldCertificate) {
    start();
    const std::string cert_pem =
        pem_of(make_cert(valid_now("renewed", {"default.test"}), key_of(KeyKind::p384)).get());
    struct Row {
        std::string what;
        std::string cert;
        std::string key;
    };
    const Row rows[] = {
        {"a damaged certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
         ""},
        {"no certificate", "", ""},
        {"a key that does not match", cert_pem, pem_of(key_of(KeyKind::p256))},
    };
    uint64_t failures = 0;
    for (const Row& row : rows) {
        _dir.write("default.pem", row.cert);
        if (!row.key.empty()) {
            _dir.write("default.key", row.key);
        }
        const std::string why = _server.reload();
        EXPECT_NE(why.find(_dir.file("default.pem")), std::string::npos) << row.what << ": " << why;
        EXPECT_EQ(_server.stats().reload_failures.load(), ++failures);
        EXPECT_EQ(_server.stats().reloads.load(), 0u);
        EXPECT_EQ(_server.certificates()[0].key_type, "ECDSA P-256") << row.what;
        _shards[0]->refresh();
        Result r = converse(0);
        EXPECT_TRUE(r.hs.ok()) << row.what;
        EXPECT_EQ(r.cn, "default") << row.what;
    }
}

// Shard 1 keeps taking new sessions from the context it holds until it refreshes; the server
// frees the replaced context only once every shard has moved on.
TEST_F(TlsServer, ARetiredContextLivesUntilEveryShardHasRefreshed) {
    start({}, 2);
    ASSERT_EQ(_shards[0]->reader.ctx, _shards[1]->reader.ctx);
    SSL_CTX* old_ctx = _shards[1]->reader.ctx;
    const char* old_marker = "generation 1";
    mark_context(old_ctx, old_marker);
    EXPECT_EQ(_shards[1]->reader.generation, 1u);

    auto renewed = make_cert(valid_now("renewed", {"default.test"}), key_of(KeyKind::p256));
    _dir.write("default.pem", pem_of(renewed.get()));
    ASSERT_EQ(_server.reload(), "");
    _shards[0]->refresh();
    EXPECT_EQ(_shards[0]->reader.generation, 2u);
    EXPECT_NE(_shards[0]->reader.ctx, old_ctx);
    const char* new_marker = "generation 2";
    mark_context(_shards[0]->reader.ctx, new_marker);
    _server.tick(0);
    EXPECT_FALSE(was_freed(old_marker));

    // Shard 1 has not refreshed: its sessions still start from the old context, and work.
    EXPECT_EQ(_shards[1]->reader.ctx, old_ctx);
    Result r = converse(1);
    EXPECT_TRUE(r.hs.ok());
    EXPECT_EQ(r.cn, "default");
    EXPECT_EQ(converse(0).cn, "renewed");

    // Shard 1's own reference goes when it refreshes; the server's only at the next tick. Had
    // the first tick dropped the server's reference early, the context would be gone here.
    _shards[1]->refresh();
    EXPECT_FALSE(was_freed(old_marker));
    _server.tick(0);
    EXPECT_TRUE(was_freed(old_marker));
    EXPECT_FALSE(was_freed(new_marker));
    EXPECT_EQ(converse(1).cn, "renewed");

    // A refresh with nothing new changes nothing.
    SSL_CTX* current = _shards[1]->reader.ctx;
    _shards[1]->refresh();
    EXPECT_EQ(_shards[1]->reader.ctx, current);
}

TEST_F(TlsServer, ASessionKeepsItsRetiredContextAlive) {
    start({}, 1);
    SSL_CTX* old_ctx = _shards[0]->reader.ctx;
    const char* marker = "held by a session";
    mark_context(old_ctx, marker);
    auto ctx = client_context(TLS1_2_VERSION, TLS1_3_VERSION);
    Client client(ctx.get());
    Session accepted = _shards[0]->accept(); // before the reload, handshaken after it

    ASSERT_EQ(_server.reload(), "");
    _shards[0]->refresh();
    _server.tick(0);
    EXPECT_FALSE(was_freed(marker));
    ASSERT_TRUE(handshake(client, *_shards[0], accepted.get()).ok());
    accepted.reset();
    EXPECT_TRUE(was_freed(marker));
}

// ---- ticket keys ----------------------------------------------------------------------------

TEST(TlsTicketKeys, FindKnowsTheCurrentAndThePreviousKeyOnly) {
    tls::TicketKeys keys;
    keys.rotate();
    const tls::TicketKeys::Key first = keys.current();
    tls::TicketKeys::Key found{};
    EXPECT_TRUE(keys.find(first.name, found));
    EXPECT_EQ(std::memcmp(&found, &first, sizeof found), 0);

    uint8_t unknown[16];
    RAND_bytes(unknown, sizeof unknown);
    EXPECT_FALSE(keys.find(unknown, found));
    // Before the second rotation the previous slot is empty: an all-zero name is unknown.
    const uint8_t zero[16] = {};
    EXPECT_FALSE(keys.find(zero, found));

    keys.rotate();
    const tls::TicketKeys::Key second = keys.current();
    EXPECT_NE(std::memcmp(second.name, first.name, sizeof first.name), 0);
    EXPECT_TRUE(keys.find(first.name, found));
    EXPECT_EQ(std::memcmp(&found, &first, sizeof found), 0);
    EXPECT_TRUE(keys.find(second.name, found));
    EXPECT_EQ(std::memcmp(&found, &second, sizeof found), 0);

    keys.rotate();
    EXPECT_FALSE(keys.find(first.name, found));
    EXPECT_TRUE(keys.find(second.name, found));
}

// The keys are random, so a torn read cannot be told from its bytes alone; instead the
// rotating thread logs every key it made (it is the only writer, so its own reads are whole),
// and afterwards every key a reader saw must be one of them, all 64 bytes.
TEST(TlsTicketKeys, ReadersRacingRotationsNeverSeeATornKey) {
    using Key = tls::TicketKeys::Key;
    tls::TicketKeys keys;
    keys.rotate();
    constexpr size_t rotations = 100'000;
    std::vector<Key> made;
    made.reserve(rotations + 1);
    made.push_back(keys.current());
    std::atomic<bool> finished{false};

    std::thread rotator([&] {
        for (size_t i = 0; i < rotations; ++i) {
            keys.rotate();
            made.push_back(keys.current());
        }
        finished.store(true, std::memory_order_release);
    });
    std::vector<Key> seen;
    size_t reads = 0;
    size_t found = 0;
    Key last{};
    while (!finished.load(std::memory_order_acquire) || reads < 100'000) {
        const Key k = keys.current();
        ++reads;
        if (std::memcmp(&k, &last, sizeof k) != 0) {
            seen.push_back(k);
            last = k;
        }
        Key f{};
        if (keys.find(k.name, f)) {
            ++found;
            if (std::memcmp(&f, &k, sizeof k) != 0) {
                seen.push_back(f); // the same name, other bytes: checked below
            }
        }
    }
    rotator.join();

    auto less = [](const Key& a, const Key& b) { return std::memcmp(&a, &b, sizeof a) < 0; };
    std::sort(made.begin(), made.end(), less);
    size_t torn = 0;
    for (const Key& k : seen) {
        if (!std::binary_search(made.begin(), made.end(), k, less)) {
            ++torn;
        }
    }
    EXPECT_EQ(torn, 0u) << "of " << seen.size() << " distinct keys seen in " << reads << " reads";
    EXPECT_GT(seen.size(), 1u); // the reader did overlap the rotations
    EXPECT_GT(found, 0u);
}
