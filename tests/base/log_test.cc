#include "portcullis/base/log.hh"

#include "portcullis/base/json_pointer.hh"

#include <gtest/gtest.h>

#include <string>

using namespace portcullis::base;

namespace {

// The line without its newline, which must be one JSON object.
std::string_view document(std::string_view line) {
    EXPECT_FALSE(line.empty());
    EXPECT_EQ(line.back(), '\n');
    return line.substr(0, line.size() - 1);
}

// The end of a long line, for failure messages.
std::string_view tail(std::string_view line) {
    return line.substr(line.size() > 160 ? line.size() - 160 : 0);
}

} // namespace

TEST(LogLine, FieldsAndNestedObjects) {
    LogLine line(Level::warn, "webhook rejected", 0);
    line.field("reason", "malformed").object("headers").field("user-agent", "curl").end_object();
    line.field("status", int64_t{401});
    EXPECT_EQ(line.finish(), R"({"ts":"1970-01-01T00:00:00.000Z","level":"warn",)"
                             R"("msg":"webhook rejected","reason":"malformed",)"
                             R"("headers":{"user-agent":"curl"},"status":401})"
                             "\n");
}

// A line over the capacity is cut at its last complete member and stays one valid JSON object,
// whatever the member the cut falls in: one of the top level, or one inside a nested object (a
// rejection's "headers"), whose values may end in a comma.
TEST(LogLine, ACutLineIsValidJsonWithTruncatedAtTheTopLevel) {
    for (size_t value_size = 1; value_size < 64; ++value_size) {
        for (bool nested : {false, true}) {
            std::string value(value_size, 'v');
            value.back() = ',';
            LogLine line(Level::warn, "webhook rejected", 0);
            line.field("reason", "malformed");
            if (nested) {
                line.object("headers");
            }
            for (int i = 0; i < 400; ++i) {
                line.field("k" + std::to_string(i), value);
            }
            if (nested) {
                line.end_object();
            }
            const std::string_view text = line.finish();
            SCOPED_TRACE("value of " + std::to_string(value_size) + " bytes" +
                         (nested ? ", nested" : ""));
            EXPECT_LE(text.size(), LogLine::capacity);
            const std::string_view doc = document(text);
            const JsonLookup truncated = json_find(doc, "/truncated");
            ASSERT_EQ(truncated.status, JsonStatus::found) << tail(text);
            EXPECT_EQ(truncated.value.raw, "true");
            EXPECT_EQ(json_find(doc, "/reason").status, JsonStatus::found) << tail(text);
            if (nested) {
                const JsonLookup headers = json_find(doc, "/headers");
                ASSERT_EQ(headers.status, JsonStatus::found) << tail(text);
                EXPECT_EQ(headers.value.type, JsonType::object);
                EXPECT_EQ(json_find(doc, "/headers/k0").status, JsonStatus::found) << tail(text);
            }
            // Only the members that fitted whole are there, the last one included.
            EXPECT_GT(text.size(), LogLine::capacity - 200) << tail(text);
        }
    }
}

TEST(LogLine, AStringWithQuotesAndBracesDoesNotConfuseTheCut) {
    LogLine line(Level::warn, "x", 0);
    line.object("headers");
    for (int i = 0; i < 300; ++i) {
        line.field("k" + std::to_string(i), R"(a,"b":{"c":[1,}, \",)");
    }
    line.end_object();
    const std::string_view doc = document(line.finish());
    EXPECT_EQ(json_find(doc, "/truncated").status, JsonStatus::found) << tail(doc);
    EXPECT_EQ(json_find(doc, "/headers/k0").status, JsonStatus::found) << tail(doc);
}

TEST(LogThrottle, OneLinePerIntervalAndCountsWhatWasHeldBack) {
    LogThrottle t;
    EXPECT_TRUE(t.allow(1000, 100));
    EXPECT_FALSE(t.allow(1000, 100));
    EXPECT_FALSE(t.allow(1099, 100));
    EXPECT_EQ(t.held_back, 2u);
    EXPECT_TRUE(t.allow(1100, 100)); // the caller reports held_back, then zeroes it
    t.held_back = 0;
    EXPECT_FALSE(t.allow(1150, 100));
    EXPECT_TRUE(t.allow(5000, 100));
    EXPECT_EQ(t.held_back, 1u);
}
