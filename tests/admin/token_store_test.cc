#include "portcullis/admin/token_store.hh"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace portcullis::admin;
namespace fs = std::filesystem;

namespace {

MintedToken token(std::string name, uint8_t fill, std::vector<std::string> scopes,
                  int64_t expires_at = 0) {
    MintedToken t;
    t.name = std::move(name);
    t.sha256.fill(fill);
    t.scopes = std::move(scopes);
    t.created_at = 1'796'000'000'000'000'000;
    t.expires_at = expires_at;
    return t;
}

class TokenState : public ::testing::Test {
protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "portcullis-tokens-XXXXXX").native();
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        _dir = tmpl;
        _path = _dir + "/tokens.state";
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(_dir, ec);
    }
    std::string text() const {
        std::ifstream f(_path, std::ios::binary);
        return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
    }
    void put(const std::string& path, const std::string& text) const {
        std::ofstream(path, std::ios::binary) << text;
    }
    std::string _dir;
    std::string _path;
};

const std::vector<MintedToken> two = {
    token("ci-reader", 0x11, {"jobs:read:*", "!jobs:read:stripe"}),
    token("deployer", 0x22, {"jobs:consume:github"}, 1'796'000'100'000'000'000),
};

TEST(TokenStateText, RoundTrips) {
    std::vector<MintedToken> back;
    EXPECT_EQ(parse_token_state(format_token_state(two), "f", back), "");
    EXPECT_EQ(back, two);
    EXPECT_EQ(parse_token_state(format_token_state({}), "f", back), "");
    EXPECT_TRUE(back.empty());
}

TEST(TokenStateText, HoldsNoPlaintextOnlyTheDigest) {
    const std::string text = format_token_state(two);
    EXPECT_NE(text.find(std::string(64, '1')), std::string::npos);
    EXPECT_EQ(text.rfind("portcullis-tokens 1\n", 0), 0U);
}

TEST(TokenStateText, DamageIsNamedByLine) {
    const std::string good = format_token_state(two);
    std::vector<MintedToken> out;
    // One byte changed in a scope: the line still parses, the checksum catches it.
    std::string flipped = good;
    flipped[flipped.find("github")] = 'h'; // "hithub": a route glob that parses
    EXPECT_EQ(parse_token_state(flipped, "f", out),
              "f:4: checksum does not match the lines above (the file was damaged or edited)");
    EXPECT_TRUE(out.empty());
    // Cut short anywhere: never a smaller set taken for the whole.
    for (size_t cut = 0; cut < good.size(); ++cut) {
        EXPECT_NE(parse_token_state(good.substr(0, cut), "f", out), "") << cut;
        EXPECT_TRUE(out.empty());
    }
    EXPECT_EQ(parse_token_state("portcullis-tokens 2\n", "f", out).rfind("f:1: expected", 0), 0U);
    EXPECT_EQ(parse_token_state("portcullis-tokens 1\ntoken A x\n", "f", out).rfind("f:2: ", 0),
              0U);
    EXPECT_EQ(parse_token_state(good + "extra\n", "f", out), "f:5: text after the checksum line");
}

TEST(TokenStateText, RefusesBadFieldsEvenWithAGoodChecksum) {
    auto with_checksum = [](std::vector<MintedToken> v) { return format_token_state(v); };
    std::vector<MintedToken> out;
    EXPECT_NE(parse_token_state(with_checksum({token("Bad Name", 1, {"jobs:read"})}), "f", out)
                  .find("f:2: token names"),
              std::string::npos);
    EXPECT_NE(parse_token_state(with_checksum({token("a", 1, {"job:read"})}), "f", out)
                  .find("f:2: scope \"job:read\""),
              std::string::npos);
    EXPECT_NE(parse_token_state(with_checksum({token("a", 1, {})}), "f", out).find("f:2: "),
              std::string::npos);
    EXPECT_EQ(
        parse_token_state(
            with_checksum({token("a", 1, {"jobs:read"}), token("a", 2, {"jobs:read"})}), "f", out),
        "f:3: token a listed twice");
    EXPECT_EQ(
        parse_token_state(
            with_checksum({token("a", 1, {"jobs:read"}), token("b", 1, {"jobs:read"})}), "f", out),
        "f:3: token b has the same sha256 as a");
    EXPECT_TRUE(out.empty());
}

TEST_F(TokenState, MissingFileHoldsNoToken) {
    std::vector<MintedToken> out = two;
    EXPECT_EQ(read_token_state(_dir, out), "");
    EXPECT_TRUE(out.empty());
}

TEST_F(TokenState, WritesAndReadsBack) {
    ASSERT_EQ(write_token_state(_dir, two), "");
    EXPECT_EQ(text(), format_token_state(two));
    EXPECT_FALSE(fs::exists(_path + ".tmp"));
    std::vector<MintedToken> back;
    EXPECT_EQ(read_token_state(_dir, back), "");
    EXPECT_EQ(back, two);
}

TEST_F(TokenState, ATornTmpFileLeftBehindIsIgnoredAndReplaced) {
    ASSERT_EQ(write_token_state(_dir, two), "");
    // A crash in the middle of the next write: half a tmp file, the old file whole.
    const std::string next = format_token_state({two[0]});
    put(_path + ".tmp", next.substr(0, next.size() / 2));
    std::vector<MintedToken> back;
    EXPECT_EQ(read_token_state(_dir, back), "");
    EXPECT_EQ(back, two);
    ASSERT_EQ(write_token_state(_dir, {two[0]}), "");
    EXPECT_EQ(read_token_state(_dir, back), "");
    EXPECT_EQ(back, std::vector<MintedToken>{two[0]});
    EXPECT_FALSE(fs::exists(_path + ".tmp"));
}

TEST_F(TokenState, ADamagedFileIsAnErrorNamingPathAndLine) {
    std::string damaged = format_token_state(two);
    damaged[damaged.find("deployer")] = 'D';
    put(_path, damaged);
    std::vector<MintedToken> out;
    EXPECT_EQ(read_token_state(_dir, out), _path + ":3: token names are 1 to 64 characters of "
                                                   "[a-z0-9_-]");
    EXPECT_TRUE(out.empty());
}

TEST(GenerateToken, IsFreshAndItsDigestIsTheSha256) {
    const NewToken a = generate_token();
    const NewToken b = generate_token();
    EXPECT_EQ(a.token.rfind("pct_", 0), 0U);
    EXPECT_EQ(a.token.size(), 4U + 43U);
    EXPECT_NE(a.token, b.token);
    TokenSet set;
    ASSERT_TRUE(set.add("a", a.sha256, std::vector<std::string>{"jobs:read"}));
    ASSERT_NE(set.authenticate("Bearer " + a.token, 0), nullptr);
    EXPECT_EQ(set.authenticate("Bearer " + b.token, 0), nullptr);
}

} // namespace
