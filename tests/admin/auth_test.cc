#include "portcullis/admin/auth.hh"

#include <openssl/sha.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace portcullis::admin;

namespace {

TokenDigest sha256_of(std::string_view token) {
    TokenDigest d;
    SHA256(reinterpret_cast<const uint8_t*>(token.data()), token.size(), d.data());
    return d;
}

Grant grant_of(const std::vector<std::string>& scopes) {
    std::vector<Scope> parsed;
    for (const std::string& s : scopes) {
        std::string why;
        std::optional<Scope> p = Scope::parse(s, &why);
        EXPECT_TRUE(p) << s << ": " << why;
        if (p) {
            parsed.push_back(*p);
        }
    }
    return Grant("t", std::move(parsed));
}

} // namespace

TEST(Scope, ParsesItsParts) {
    std::optional<Scope> s = Scope::parse("!jobs:read:git?ub-*");
    ASSERT_TRUE(s);
    EXPECT_TRUE(s->deny());
    EXPECT_EQ(s->resource(), "jobs");
    EXPECT_EQ(s->action(), "read");
    EXPECT_EQ(s->route_glob(), "git?ub-*");

    s = Scope::parse("metrics:read");
    ASSERT_TRUE(s);
    EXPECT_FALSE(s->deny());
    EXPECT_FALSE(s->route_glob());

    s = Scope::parse("*:*");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->resource(), "*");
    EXPECT_EQ(s->action(), "*");
}

TEST(Scope, RefusesMalformedScopesAndSaysWhy) {
    struct Row {
        const char* text;
        const char* why; // a part of the message
    };
    const Row rows[] = {
        {"", "missing \":action\""},
        {"!", "missing \":action\""},
        {"jobs", "missing \":action\""},
        {":read", "empty resource"},
        {"jobs:", "empty action"},
        {"jobs::github", "empty action"},
        {"jobs:read:", "empty route glob"},
        {"jobs:read:Git", "a route glob is made of"},
        {"jobs:read:a:b", "a route glob is made of"},
        {"jobs:read:a b", "a route glob is made of"},
        {"JOBS:read", "unknown resource \"JOBS\""},
        {"job:read", "unknown resource \"job\" (jobs, metrics, events, admin or *)"},
        {"jo*:read", "unknown resource \"jo*\""},
        {"!!jobs:read", "unknown resource \"!jobs\""},
        {" jobs:read", "unknown resource \" jobs\""},
        {"jobs:reed", "jobs has no action \"reed\" (consume, read, replay, enqueue or *)"},
        {"jobs:re*", "jobs has no action \"re*\""},
        {"metrics:write", "metrics has no action \"write\" (read or *)"},
        {"*:write", "no resource has the action \"write\""},
        {"metrics:read:github", "metrics:read is not per route: it takes no route glob"},
        {"admin:*:x", "admin:* is not per route"},
        {"*:tokens:x", "*:tokens is not per route"},
    };
    for (const Row& row : rows) {
        std::string why;
        EXPECT_FALSE(Scope::parse(row.text, &why)) << row.text;
        EXPECT_NE(why.find(row.why), std::string::npos) << row.text << ": " << why;
    }
    EXPECT_FALSE(Scope::parse("jobs")); // why is optional
}

TEST(Scope, GlobMatchesRouteNames) {
    struct Row {
        const char* glob;
        const char* text;
        bool match;
    };
    const Row rows[] = {
        {"*", "", true},
        {"*", "github", true},
        {"github", "github", true},
        {"github", "githubx", false},
        {"github", "githu", false},
        {"git*", "git", true},
        {"git*", "github", true},
        {"*hub", "github", true},
        {"*hub", "githubs", false},
        {"g*b", "gb", true},
        {"g*b", "github", true},
        {"g*b", "githubx", false},
        {"git?ub", "github", true},
        {"git?ub", "gitub", false},
        {"?", "", false},
        {"??", "ab", true},
        {"a*b*c", "abxbc", true},
        {"a*b*c", "acb", false},
        {"*-prod", "stripe-prod", true},
        {"*-prod", "stripe-production", false},
        {"**", "x", true},
        {"*?*", "", false},
        {"a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
    };
    for (const Row& row : rows) {
        EXPECT_EQ(glob_match(row.glob, row.text), row.match) << row.glob << " ~ " << row.text;
    }
}

TEST(Grant, AllowsByTable) {
    struct Row {
        std::vector<std::string> scopes;
        const char* resource;
        const char* action;
        const char* route; // nullptr: a route-less check, allows(resource, action)
        bool expected;
    };
    const std::vector<Row> rows = {
        {{"jobs:consume:github"}, "jobs", "consume", "github", true},
        {{"jobs:consume:github"}, "jobs", "consume", "stripe", false},
        {{"jobs:consume:github"}, "jobs", "read", "github", false},
        {{"jobs:consume"}, "jobs", "consume", "anything", true},
        {{"jobs:consume:git*"}, "jobs", "consume", "github", true},
        {{"jobs:consume:git*"}, "jobs", "consume", "gitlab", true},
        {{"jobs:consume:git*"}, "jobs", "consume", "bitbucket", false},
        {{"jobs:consume:git?ub"}, "jobs", "consume", "github", true},
        {{"jobs:*:github"}, "jobs", "replay", "github", true},
        {{"*:read:github"}, "jobs", "read", "github", true},
        {{"*:*"}, "jobs", "enqueue", "x", true},
        {{"*:*"}, "admin", "tokens", nullptr, true},
        {{}, "jobs", "read", "github", false},
        // Deny wins, whichever comes first.
        {{"jobs:read:*", "!jobs:read:stripe"}, "jobs", "read", "github", true},
        {{"jobs:read:*", "!jobs:read:stripe"}, "jobs", "read", "stripe", false},
        {{"!jobs:read:stripe", "jobs:read:*"}, "jobs", "read", "stripe", false},
        {{"!jobs:read:stripe", "jobs:read:*"}, "jobs", "read", "github", true},
        {{"jobs:read:stripe", "!jobs:read"}, "jobs", "read", "stripe", false},
        {{"*:*", "!jobs:*:stripe*"}, "jobs", "consume", "stripe-eu", false},
        {{"*:*", "!jobs:*:stripe*"}, "jobs", "consume", "github", true},
        {{"*:*", "!*:*"}, "metrics", "read", nullptr, false},
        {{"!jobs:read:stripe"}, "jobs", "read", "github", false}, // a deny grants nothing
        // Route-less permissions: only scopes without a route glob count.
        {{"metrics:read"}, "metrics", "read", nullptr, true},
        {{"metrics:read"}, "events", "read", nullptr, false},
        {{"events:read"}, "events", "read", nullptr, true},
        {{"admin:tokens"}, "admin", "reload", nullptr, false},
        {{"admin:*"}, "admin", "reload", nullptr, true},
        {{"*:read"}, "metrics", "read", nullptr, true},
        {{"*:*:github"}, "metrics", "read", nullptr, false},
        {{"*:*:github"}, "admin", "tokens", nullptr, false},
        {{"*:*", "!*:*:github"}, "metrics", "read", nullptr, true},
        {{"*:*", "!*:read"}, "metrics", "read", nullptr, false},
        {{"*:*", "!metrics:read"}, "events", "read", nullptr, true},
        {{"jobs:read:github"}, "jobs", "read", nullptr, false},
        {{"jobs:read"}, "jobs", "read", nullptr, true},
    };
    for (const Row& row : rows) {
        const Grant g = grant_of(row.scopes);
        const bool got = row.route != nullptr ? g.allows(row.resource, row.action, row.route)
                                              : g.allows(row.resource, row.action);
        std::string scopes;
        for (const std::string& s : row.scopes) {
            scopes += s + " ";
        }
        EXPECT_EQ(got, row.expected) << "[" << scopes << "] " << row.resource << ":" << row.action
                                     << " on " << (row.route != nullptr ? row.route : "(no route)");
    }
}

TEST(Grant, AllowsSomeRouteForListings) {
    struct Row {
        std::vector<std::string> scopes;
        bool expected;
    };
    const std::vector<Row> rows = {
        {{"jobs:read:github"}, true},
        {{"jobs:read"}, true},
        {{"*:*:git*"}, true},
        {{"jobs:consume:github"}, false},
        {{"metrics:read"}, false},
        {{"jobs:read:github", "!jobs:read:stripe"}, true},
        {{"jobs:read:github", "!jobs:read"}, false},
        {{"jobs:read:*", "!*:*"}, false},
        // Denies that cover every allowed route still say yes here; the filter per route then
        // leaves nothing.
        {{"jobs:read:github", "!jobs:read:git*"}, true},
    };
    for (const Row& row : rows) {
        const Grant g = grant_of(row.scopes);
        EXPECT_EQ(g.allows_some_route("jobs", "read"), row.expected) << row.scopes.at(0);
    }
}

TEST(Authorize, MapsToTheStatusOfSpecSection5) {
    const Grant g =
        grant_of({"jobs:consume:github", "jobs:read:*", "!jobs:read:stripe", "events:read"});
    EXPECT_EQ(authorize(nullptr, "jobs", "consume", "github"), Access::unauthorized);
    EXPECT_EQ(authorize(nullptr, "metrics", "read"), Access::unauthorized);
    EXPECT_EQ(authorize(&g, "jobs", "consume", "github"), Access::granted);
    EXPECT_EQ(authorize(&g, "jobs", "consume", "stripe"), Access::not_found);
    EXPECT_EQ(authorize(&g, "jobs", "read", "stripe"), Access::not_found);
    EXPECT_EQ(authorize(&g, "jobs", "read", "shopify"), Access::granted);
    EXPECT_EQ(authorize(&g, "jobs", "replay", "github"), Access::forbidden);
    EXPECT_EQ(authorize(&g, "jobs", "enqueue", "github"), Access::forbidden);
    EXPECT_EQ(authorize(&g, "events", "read"), Access::granted);
    EXPECT_EQ(authorize(&g, "metrics", "read"), Access::forbidden);
    EXPECT_EQ(authorize(&g, "admin", "tokens"), Access::forbidden);

    EXPECT_EQ(http_status(Access::granted), 200);
    EXPECT_EQ(http_status(Access::unauthorized), 401);
    EXPECT_EQ(http_status(Access::forbidden), 403);
    EXPECT_EQ(http_status(Access::not_found), 404);
}

TEST(Token, BearerHeaderSyntax) {
    struct Row {
        const char* header;
        const char* token; // nullptr: refused
    };
    const Row rows[] = {
        {"Bearer pct_abc-DEF_123", "pct_abc-DEF_123"},
        {"bearer pct_abc", "pct_abc"},
        {"BEARER pct_abc", "pct_abc"},
        {"BeArEr pct_abc", "pct_abc"},
        {"Bearer    pct_abc", "pct_abc"},
        {"Bearer a.b~c+d/e==", "a.b~c+d/e=="},
        {"Bearer ", nullptr},
        {"Bearer   ", nullptr},
        {"Bearer", nullptr},
        {"Bearerpct_abc", nullptr},
        {"Bearer\tpct_abc", nullptr},
        {"pct_abc", nullptr},
        {"Basic cGN0OmFiYw==", nullptr},
        {"Token pct_abc", nullptr},
        {"", nullptr},
        {"Bearer pct abc", nullptr},
        {"Bearer pct_abc ", nullptr},
        {"Bearer =abc", nullptr},
        {"Bearer ab=c", nullptr},
        {"Bearer pct\"abc", nullptr},
    };
    for (const Row& row : rows) {
        const std::optional<std::string_view> got = bearer_token(row.header);
        if (row.token == nullptr) {
            EXPECT_FALSE(got) << "[" << row.header << "]";
        } else {
            EXPECT_EQ(got, row.token) << "[" << row.header << "]";
        }
    }
}

class TokenSetTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::vector<portcullis::config::TokenConfig> config(2);
        config[0].name = "worker";
        config[0].sha256 = sha256_of(worker_token);
        config[0].scopes = {"jobs:consume:github", "jobs:read:*", "!jobs:read:stripe"};
        config[1].name = "prometheus";
        config[1].sha256 = sha256_of(prometheus_token);
        config[1].scopes = {"metrics:read"};
        std::string why;
        std::optional<TokenSet> built = TokenSet::from_config(config, &why);
        ASSERT_TRUE(built) << why;
        _tokens = std::move(*built);
    }

    static constexpr std::string_view worker_token = "pct_worker0123456789abcdefABCDEF-_";
    static constexpr std::string_view prometheus_token = "pct_prometheus9876543210";
    TokenSet _tokens;
};

TEST_F(TokenSetTest, AuthenticatesEachTokenToItsOwnGrant) {
    const Grant* w = _tokens.authenticate("Bearer " + std::string(worker_token), 0);
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->name(), "worker");
    EXPECT_TRUE(w->allows("jobs", "consume", "github"));
    EXPECT_FALSE(w->allows("metrics", "read"));

    const Grant* p = _tokens.authenticate("bearer   " + std::string(prometheus_token), 0);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->name(), "prometheus");
    EXPECT_TRUE(p->allows("metrics", "read"));
    EXPECT_FALSE(p->allows("jobs", "consume", "github"));
    EXPECT_EQ(_tokens.size(), 2u);
}

TEST_F(TokenSetTest, RefusesWhatIsNotAKnownBearerToken) {
    const std::string w(worker_token);
    EXPECT_EQ(_tokens.authenticate("", 0), nullptr);
    EXPECT_EQ(_tokens.authenticate(w, 0), nullptr);            // no scheme
    EXPECT_EQ(_tokens.authenticate("Basic " + w, 0), nullptr); // another scheme
    EXPECT_EQ(_tokens.authenticate("Bearer ", 0), nullptr);    // empty token
    EXPECT_EQ(_tokens.authenticate("Bearer pct_wrong", 0), nullptr);
    EXPECT_EQ(_tokens.authenticate("Bearer " + w + "x", 0), nullptr);
    EXPECT_EQ(_tokens.authenticate("Bearer " + w.substr(0, w.size() - 1), 0), nullptr);
    // The digest itself is not the token.
    TokenDigest d = sha256_of(worker_token);
    std::string hex;
    for (uint8_t b : d) {
        hex += "0123456789abcdef"[b >> 4];
        hex += "0123456789abcdef"[b & 0xf];
    }
    EXPECT_EQ(_tokens.authenticate("Bearer " + hex, 0), nullptr);
}

TEST_F(TokenSetTest, AMintedTokenExpiresByTheClockPassedIn) {
    const std::string minted = "pct_expiring_token";
    const std::vector<std::string> scopes = {"jobs:read"};
    const int64_t expires = 1'796'000'000'000'000'000;
    ASSERT_TRUE(_tokens.add("short", sha256_of(minted), scopes, expires));
    const Grant* g = _tokens.authenticate("Bearer " + minted, expires - 1);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->name(), "short");
    EXPECT_EQ(_tokens.authenticate("Bearer " + minted, expires), nullptr);
    EXPECT_EQ(_tokens.authenticate("Bearer " + minted, expires + 1'000'000'000), nullptr);
    // Tokens without an expiry do not care about the clock.
    EXPECT_NE(_tokens.authenticate("Bearer " + std::string(worker_token), INT64_MAX), nullptr);
    // Expired is not revoked: the name stays taken until DELETE removes it.
    EXPECT_EQ(_tokens.find("short"), g);
}

TEST_F(TokenSetTest, AddAndRevokeAtRunTime) {
    const std::string minted = "pct_minted_token";
    const std::vector<std::string> scopes = {"jobs:enqueue:ci-*"};
    std::string why;
    ASSERT_TRUE(_tokens.add("ci", sha256_of(minted), scopes, &why)) << why;
    const Grant* before = _tokens.authenticate("Bearer " + std::string(worker_token), 0);
    const Grant* ci = _tokens.authenticate("Bearer " + minted, 0);
    ASSERT_NE(ci, nullptr);
    EXPECT_EQ(ci->name(), "ci");
    EXPECT_TRUE(ci->allows("jobs", "enqueue", "ci-nightly"));
    EXPECT_EQ(_tokens.find("ci"), ci);

    // Refused: a taken name, a digest already known, no scope, a bad scope, an empty name.
    EXPECT_FALSE(_tokens.add("ci", sha256_of("pct_other"), scopes, &why));
    EXPECT_NE(why.find("exists already"), std::string::npos) << why;
    EXPECT_FALSE(_tokens.add("ci2", sha256_of(minted), scopes, &why));
    EXPECT_NE(why.find("same sha256 as token ci"), std::string::npos) << why;
    EXPECT_FALSE(_tokens.add("ci2", sha256_of("pct_other"), {}, &why));
    EXPECT_NE(why.find("needs at least one scope"), std::string::npos) << why;
    const std::vector<std::string> bad = {"jobs:read", "job:read"};
    EXPECT_FALSE(_tokens.add("ci2", sha256_of("pct_other"), bad, &why));
    EXPECT_NE(why.find("scope \"job:read\": unknown resource"), std::string::npos) << why;
    EXPECT_FALSE(_tokens.add("", sha256_of("pct_other"), scopes, &why));
    EXPECT_EQ(_tokens.size(), 3u);

    EXPECT_TRUE(_tokens.revoke("ci"));
    EXPECT_FALSE(_tokens.revoke("ci"));
    EXPECT_EQ(_tokens.authenticate("Bearer " + minted, 0), nullptr);
    EXPECT_EQ(_tokens.find("ci"), nullptr);
    // The other grants stayed where they were.
    EXPECT_EQ(_tokens.authenticate("Bearer " + std::string(worker_token), 0), before);
    EXPECT_TRUE(_tokens.revoke("worker"));
    EXPECT_EQ(_tokens.authenticate("Bearer " + std::string(worker_token), 0), nullptr);
    EXPECT_NE(_tokens.authenticate("Bearer " + std::string(prometheus_token), 0), nullptr);
    EXPECT_EQ(_tokens.size(), 1u);
}

TEST(TokenSet, FromConfigRefusesWhatTheLoaderWouldHave) {
    std::vector<portcullis::config::TokenConfig> config(1);
    config[0].name = "w";
    config[0].scopes = {"metrics:read:x"};
    std::string why;
    EXPECT_FALSE(TokenSet::from_config(config, &why));
    EXPECT_NE(why.find("token w: scope \"metrics:read:x\""), std::string::npos) << why;
    EXPECT_TRUE(TokenSet::from_config({}));
}

namespace {

bool holds(const std::vector<std::string>& mine, std::string_view wanted) {
    std::vector<Scope> scopes;
    for (const std::string& s : mine) {
        scopes.push_back(*Scope::parse(s));
    }
    return Grant("minter", std::move(scopes)).holds(*Scope::parse(wanted));
}

TEST(GrantHolds, AMinterGrantsOnlyWhatItHas) {
    EXPECT_TRUE(holds({"*:*"}, "admin:tokens"));
    EXPECT_TRUE(holds({"*:*"}, "*:*"));
    EXPECT_TRUE(holds({"jobs:*", "admin:tokens"}, "jobs:consume:github"));
    EXPECT_TRUE(holds({"jobs:consume:git*"}, "jobs:consume:github"));
    EXPECT_TRUE(holds({"jobs:consume:git*"}, "jobs:consume:git*"));
    EXPECT_TRUE(holds({"admin:tokens"}, "!jobs:read")); // a deny only narrows
    EXPECT_FALSE(holds({"admin:tokens"}, "jobs:read"));
    EXPECT_FALSE(holds({"admin:tokens"}, "admin:*")); // admin:reload too
    EXPECT_FALSE(holds({"jobs:*"}, "*:*"));
    EXPECT_FALSE(holds({"jobs:consume:git*"}, "jobs:consume"));
    EXPECT_FALSE(holds({"jobs:consume:git*"}, "jobs:consume:g*")); // wider than the minter's
    EXPECT_FALSE(holds({"jobs:consume:github"}, "jobs:*:github"));
    // A deny of the minter's is never lifted by what it mints.
    EXPECT_FALSE(holds({"jobs:read", "!jobs:read:stripe"}, "jobs:read"));
    EXPECT_FALSE(holds({"jobs:read", "!jobs:read:stripe"}, "jobs:read:stripe"));
    EXPECT_TRUE(holds({"jobs:read", "!jobs:read:stripe"}, "jobs:read:github"));
    EXPECT_FALSE(holds({"*:*", "!metrics:read"}, "metrics:read"));
}

} // namespace
