#include "portcullis/admin/request.hh"

#include "portcullis/base/time.hh"

#include <gtest/gtest.h>

#include <string>

using namespace portcullis::admin;
using portcullis::base::JsonType;

namespace {

Field integer(const std::string& doc, int64_t& out, int64_t min = 1, int64_t max = 1000) {
    return integer_field(doc, "/max", min, max, out);
}

} // namespace

TEST(IntegerField, TakesIntegersWrittenAsSuchWithinTheRange) {
    for (const auto& [doc, want] : std::vector<std::pair<std::string, int64_t>>{
             {R"({"max":1})", 1},
             {R"({"max":3})", 3},
             {R"({"max":1000})", 1000},
             {R"({"route":"a", "max" : 42 })", 42},
         }) {
        int64_t v = -7;
        EXPECT_EQ(integer(doc, v), Field::ok) << doc;
        EXPECT_EQ(v, want) << doc;
    }
    int64_t v = 0;
    EXPECT_EQ(integer(R"({"max":-5})", v, -10, 10), Field::ok);
    EXPECT_EQ(v, -5);
    EXPECT_EQ(integer(R"({"max":9223372036854775807})", v, 0, INT64_MAX), Field::ok);
    EXPECT_EQ(v, INT64_MAX);
    EXPECT_EQ(integer(R"({"max":-9223372036854775808})", v, INT64_MIN, 0), Field::ok);
    EXPECT_EQ(v, INT64_MIN);
}

TEST(IntegerField, RefusesFractionsExponentsOtherTypesAndWhatIsOutOfRange) {
    for (const std::string doc : {
             R"({"max":1e9})",
             R"({"max":1.5})",
             R"({"max":2.9})",
             R"({"max":1.0})", // whole, but not written as an integer
             R"({"max":1e2})",
             R"({"max":1E2})",
             R"({"max":10e-1})",
             R"({"max":-1})",
             R"({"max":0})",
             R"({"max":-0})",
             R"({"max":1001})",
             R"({"max":4294967297})",          // wraps to 1 in 32 bits
             R"({"max":9223372036854775808})", // past int64
             R"({"max":99999999999999999999})",
             R"({"max":"3"})",
             R"({"max":true})",
             R"({"max":null})",
             R"({"max":[3]})",
             R"({"max":{"n":3}})",
             R"({"max":3,"max":4})", // a duplicate on the pointer's path is malformed
             R"({"max":3)",          // not JSON at all
             R"({"max":03})",
             R"({"max":+3})",
         }) {
        int64_t v = 77;
        EXPECT_EQ(integer(doc, v), Field::bad) << doc;
        EXPECT_EQ(v, 77) << doc << ": out is left alone";
    }
}

TEST(IntegerField, AnAbsentFieldKeepsTheDefault) {
    int64_t v = 5;
    EXPECT_EQ(integer(R"({"route":"github"})", v), Field::absent);
    EXPECT_EQ(integer("", v), Field::absent);
    EXPECT_EQ(integer(R"({"other":{"max":2000}})", v), Field::absent);
    EXPECT_EQ(v, 5);
}

TEST(DurationField, ParsesUnitsWithinTheRange) {
    using portcullis::base::ns_per_s;
    int64_t v = 0;
    EXPECT_EQ(duration_field(R"({"wait":"10s"})", "/wait", 0, 60 * ns_per_s, v), Field::ok);
    EXPECT_EQ(v, 10 * ns_per_s);
    EXPECT_EQ(duration_field(R"({"wait":"250ms"})", "/wait", 0, 60 * ns_per_s, v), Field::ok);
    EXPECT_EQ(v, 250'000'000);
    v = 9;
    for (const std::string doc : {R"({"wait":"61s"})", R"({"wait":"10"})", R"({"wait":10})",
                                  R"({"wait":"1.5s"})", R"({"wait":"1\u0030s"})", R"({"wait":)"}) {
        EXPECT_EQ(duration_field(doc, "/wait", 0, 60 * ns_per_s, v), Field::bad) << doc;
    }
    EXPECT_EQ(v, 9);
    EXPECT_EQ(duration_field("", "/wait", 0, 60 * ns_per_s, v), Field::absent);
    EXPECT_EQ(duration_field("{}", "/wait", 0, 60 * ns_per_s, v), Field::absent);
}

TEST(JsonPlain, StringsWithoutEscapesAndOtherTokensAsWritten) {
    EXPECT_EQ(json_plain(R"({"route":"github"})", "/route", JsonType::string), "github");
    EXPECT_EQ(json_plain(R"({"route":"git\u0068ub"})", "/route", JsonType::string), std::nullopt);
    EXPECT_EQ(json_plain(R"({"route":7})", "/route", JsonType::string), std::nullopt);
    EXPECT_EQ(json_plain(R"({"n":1.5})", "/n", JsonType::number), "1.5");
}
