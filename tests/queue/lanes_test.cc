#include "portcullis/queue/lanes.hh"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace portcullis::queue;
namespace fs = std::filesystem;

namespace {

class LanesFile : public ::testing::Test {
protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "portcullis-lanes-XXXXXX").native();
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        _dir = tmpl;
        _path = _dir + "/lanes";
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(_dir, ec);
    }
    std::string text() const {
        std::ifstream f(_path, std::ios::binary);
        return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
    }
    void put(const std::string& t) const {
        std::ofstream f(_path, std::ios::binary | std::ios::trunc);
        f << t;
    }
    // What JobStore::open does: read, assign, write if changed.
    LaneAssignment open(std::vector<std::string> sinks) const {
        std::vector<LaneName> listed;
        std::string err = read_lanes(_dir, listed);
        if (!err.empty()) {
            LaneAssignment a;
            a.error = err;
            return a;
        }
        LaneAssignment a = assign_lanes(listed, sinks, _path);
        if (a.error.empty() && a.changed) {
            a.error = write_lanes(_dir, a.lanes);
        }
        return a;
    }
    std::string _dir;
    std::string _path;
};

using Lanes = std::vector<uint8_t>;

} // namespace

TEST_F(LanesFile, NumbersAreAssignedOnceAndStableAcrossReopen) {
    LaneAssignment a = open({"app", "bus"});
    ASSERT_EQ(a.error, "");
    EXPECT_EQ(a.sink_lanes, (Lanes{1, 2}));
    EXPECT_TRUE(a.changed);
    EXPECT_NE(text().find("\n1 app\n2 bus\n"), std::string::npos) << text();
    const std::string first = text();
    LaneAssignment b = open({"app", "bus"});
    ASSERT_EQ(b.error, "");
    EXPECT_EQ(b.sink_lanes, (Lanes{1, 2}));
    EXPECT_FALSE(b.changed);
    EXPECT_EQ(text(), first);
}

TEST_F(LanesFile, ReorderingKeepsNumbersAndANewSinkGetsANewOne) {
    ASSERT_EQ(open({"app", "bus"}).error, "");
    LaneAssignment a = open({"deploy", "bus", "app"});
    ASSERT_EQ(a.error, "");
    EXPECT_EQ(a.sink_lanes, (Lanes{3, 2, 1}));
    // A sink no longer configured keeps its number; a new one never takes it.
    LaneAssignment b = open({"stream", "app"});
    ASSERT_EQ(b.error, "");
    EXPECT_EQ(b.sink_lanes, (Lanes{4, 1}));
    EXPECT_FALSE(b.reclaimed);
    LaneAssignment c = open({"bus"});
    EXPECT_EQ(c.sink_lanes, (Lanes{2}));
    EXPECT_FALSE(c.changed);
}

TEST_F(LanesFile, NumbersOfUnconfiguredSinksAreReusedOnlyWhenAllAreTaken) {
    std::vector<LaneName> listed;
    std::vector<std::string> sinks;
    for (unsigned n = 1; n <= max_lane; ++n) {
        listed.push_back({static_cast<uint8_t>(n), "s" + std::to_string(n)});
        if (n != 7) {
            sinks.push_back("s" + std::to_string(n));
        }
    }
    sinks.push_back("fresh");
    LaneAssignment a = assign_lanes(listed, sinks, _path);
    ASSERT_EQ(a.error, "");
    EXPECT_EQ(a.sink_lanes.back(), 7);
    EXPECT_TRUE(a.reclaimed);
    EXPECT_TRUE(a.changed);
    EXPECT_EQ(a.lanes.size(), max_lane);

    sinks.push_back("s7"); // 256 configured sinks
    LaneAssignment b = assign_lanes(listed, sinks, _path);
    EXPECT_NE(b.error.find(_path + ": more than 255 sinks"), std::string::npos) << b.error;
}

TEST_F(LanesFile, ADamagedFileIsAnErrorNamingFileAndLine) {
    struct Row {
        const char* text;
        const char* error;
    };
    const Row rows[] = {
        {"1 app\n2 bus", ":2: no newline"},
        {"1 app\n\n# c\nx bus\n", ":4: expected"},
        {"0 app\n", ":1: expected"},
        {"256 app\n", ":1: expected"},
        {"01 app\n", ":1: expected"},
        {"1  app\n", ":1: expected"},
        {"1 App\n", ":1: expected"},
        {"1 app extra\n", ":1: expected"},
        {"1 app\n1 bus\n", ":2: lane 1 listed twice (first on line 1)"},
        {"1 app\n2 app\n", ":2: sink app listed twice (first with lane 1)"},
    };
    for (const Row& row : rows) {
        put(row.text);
        LaneAssignment a = open({"app"});
        EXPECT_NE(a.error.find(_path + row.error), std::string::npos)
            << row.text << " -> " << a.error;
        EXPECT_EQ(text(), row.text) << "a damaged file is left as it is";
    }
}

TEST_F(LanesFile, CommentsAndBlankLinesAreAllowedAndWhatWeWriteReadsBack) {
    put("# hand-made\n\n5 bus\n");
    LaneAssignment a = open({"app", "bus"});
    ASSERT_EQ(a.error, "");
    EXPECT_EQ(a.sink_lanes, (Lanes{1, 5}));
    std::vector<LaneName> back;
    ASSERT_EQ(parse_lanes(text(), _path, back), "");
    EXPECT_EQ(back, (std::vector<LaneName>{{1, "app"}, {5, "bus"}}));
}

TEST_F(LanesFile, AFailedWriteLeavesTheOldFile) {
    ASSERT_EQ(open({"app"}).error, "");
    const std::string before = text();
    // The temporary name is taken by a folder: the write fails before anything is renamed.
    fs::create_directory(_path + ".tmp");
    std::string err = write_lanes(_dir, {{1, "app"}, {2, "bus"}});
    EXPECT_NE(err.find(_path + ".tmp"), std::string::npos) << err;
    EXPECT_EQ(text(), before);
    fs::remove(_path + ".tmp");
    EXPECT_EQ(write_lanes(_dir, {{1, "app"}, {2, "bus"}}), "");
    EXPECT_FALSE(fs::exists(_path + ".tmp"));
    EXPECT_NE(text().find("\n2 bus\n"), std::string::npos);
}
