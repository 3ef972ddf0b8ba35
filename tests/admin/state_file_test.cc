#include "portcullis/admin/state_file.hh"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <vector>

using namespace portcullis::admin;
namespace fs = std::filesystem;

namespace {

constexpr StateFile things{"things.state", "portcullis-things 1", "thing", 2, 0600};

// The record lines walk_state handed over, or its error.
std::string walk(std::string_view text, std::vector<std::string>& seen) {
    seen.clear();
    return walk_state(things, text, "f", [&](std::string_view line) {
        seen.emplace_back(line);
        return line == "bad" ? std::string("a bad thing") : std::string();
    });
}

TEST(StateFile, SealsAndWalks) {
    std::vector<std::string> seen;
    const std::string text = seal_state(things, "a 1\nb 2\n");
    EXPECT_TRUE(text.starts_with("portcullis-things 1\na 1\nb 2\nsha256 "));
    EXPECT_EQ(walk(text, seen), "");
    EXPECT_EQ(seen, (std::vector<std::string>{"a 1", "b 2"}));
    EXPECT_EQ(walk(seal_state(things, ""), seen), "");
    EXPECT_TRUE(seen.empty());
}

TEST(StateFile, RefusesTornDamagedAndTooLong) {
    const std::string good = seal_state(things, "a\nb\n");
    std::string edited = good;
    edited[good.find("\nb\n") + 1] = 'c';
    struct Row {
        std::string text;
        std::string error;
    };
    const Row rows[] = {
        {"", "f:1: empty file (cut short?)"},
        {good.substr(0, good.size() - 1), "f:4: no newline at the end of the line (cut short?)"},
        {good.substr(0, good.find("sha256 ")), "f:3: no checksum line at the end (cut short?)"},
        {edited, "f:4: checksum does not match the lines above (the file was damaged or edited)"},
        {good + "x\n", "f:5: text after the checksum line"},
        {"portcullis-things 2\n", "f:1: expected \"portcullis-things 1\" (not a thing state file, "
                                  "or one written by a newer portcullis)"},
        {seal_state(things, "a\nb\nc\n"), "f:4: more than 2 things"},
        {seal_state(things, "a\nbad\n"), "f:3: a bad thing"},
    };
    std::vector<std::string> seen;
    for (const Row& r : rows) {
        EXPECT_EQ(walk(r.text, seen), r.error) << r.text;
    }
}

TEST(StateFile, CommonFields) {
    EXPECT_EQ(state_fields("a  b "), (std::vector<std::string_view>{"a", "", "b", ""}));
    int64_t t = -1;
    EXPECT_TRUE(parse_state_time("0", t) && t == 0);
    EXPECT_TRUE(parse_state_time("9223372036854775807", t) && t == INT64_MAX);
    for (const char* bad : {"", "01", "-1", "+1", "9223372036854775808", "1e9", "1 "}) {
        EXPECT_FALSE(parse_state_time(bad, t)) << bad;
    }
    TokenDigest d{};
    EXPECT_TRUE(parse_state_digest(std::string(64, 'a'), d));
    EXPECT_EQ(d[0], 0xaa);
    EXPECT_FALSE(parse_state_digest(std::string(64, 'A'), d)) << "one spelling per digest";
    EXPECT_FALSE(parse_state_digest(std::string(62, 'a'), d));
    EXPECT_FALSE(parse_state_digest(std::string(66, 'a'), d));
    EXPECT_FALSE(parse_state_digest(std::string(63, 'a') + "g", d));
}

TEST(StateFile, WritesWithItsModeAndReadsBack) {
    std::string tmpl = (fs::temp_directory_path() / "portcullis-state-XXXXXX").native();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    const std::string dir = tmpl;
    bool called = false;
    auto parse = [&](std::string_view text, const std::string& path) {
        called = true;
        EXPECT_EQ(path, dir + "/things.state");
        std::vector<std::string> seen;
        return walk(text, seen);
    };
    EXPECT_EQ(read_state_file(things, dir, parse), "");
    EXPECT_FALSE(called) << "no file: no record, nothing to parse";
    ASSERT_EQ(write_state_file(things, dir, seal_state(things, "a\n")), "");
    struct stat st {};
    ASSERT_EQ(::stat((dir + "/things.state").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(read_state_file(things, dir, parse), "");
    EXPECT_TRUE(called);
    std::ofstream(dir + "/things.state", std::ios::binary | std::ios::app) << "junk\n";
    EXPECT_EQ(read_state_file(things, dir, parse), "f:4: text after the checksum line");
    fs::remove_all(dir);
}

} // namespace
