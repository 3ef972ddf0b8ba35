#include "portcullis/queue/keys.hh"

#include "../snapshot_from_yaml.hh"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace portcullis;
using namespace portcullis::queue;

namespace {

config::FieldRef ref(std::string_view text) {
    return *config::parse_field_ref(text);
}

} // namespace

TEST(QueryParam, FirstValueAsSent) {
    struct Row {
        std::string_view query, name;
        std::optional<std::string_view> value;
    };
    const Row rows[] = {
        {"id=1", "id", "1"},
        {"a=1&id=2&id=3", "id", "2"},
        {"idx=1&id=", "id", ""},
        {"flag&id=x%20y", "flag", ""},
        {"flag&id=x%20y", "id", "x%20y"},
        {"a=1", "id", std::nullopt},
        {"", "id", std::nullopt},
        {"&&id=4&", "id", "4"},
        {"id", "id", ""},
        {"a=1&id", "id", ""},
    };
    for (const Row& r : rows) {
        const std::optional<std::string_view> got = query_param(r.query, r.name);
        EXPECT_EQ(got, r.value) << r.query << " " << r.name;
        // Found values, empty ones too, are views into the query, as callers may take their
        // position in the request.
        if (got) {
            EXPECT_TRUE(got->data() >= r.query.data() &&
                        got->data() + got->size() <= r.query.data() + r.query.size())
                << r.query << " " << r.name;
        }
    }
}

TEST(HeadField, HeaderQueryAndPathReferences) {
    auto snap = snapshot_from_yaml(R"(
routes:
  jobs: {path: "/internal/jobs/{job_id}/status", verify: {scheme: none}}
)");
    ASSERT_TRUE(snap);
    const config::Route& route = snap->routes()[0];
    std::vector<http::Header> headers = {{"X-GitHub-Delivery", "d-1"},
                                         {"x-github-delivery", "d-2"}};
    http::RequestHead head;
    head.path = "/internal/jobs/j-42/status";
    head.query = "attempt=3";
    head.headers = headers;
    EXPECT_EQ(head_field(ref("header:X-GitHub-Delivery"), head, route), "d-1");
    EXPECT_EQ(head_field(ref("header:X-Other"), head, route), std::nullopt);
    EXPECT_EQ(head_field(ref("query:attempt"), head, route), "3");
    EXPECT_EQ(head_field(ref("query:other"), head, route), std::nullopt);
    EXPECT_EQ(head_field(ref("path:job_id"), head, route), "j-42");
    EXPECT_EQ(head_field(ref("path:other"), head, route), std::nullopt);
    EXPECT_EQ(head_field(ref("json:/id"), head, route), std::nullopt);
}

TEST(JsonField, RawTokenOrNothing) {
    EXPECT_EQ(json_field(ref("json:/id"), R"({"id":"evt_1","n":2})"), R"("evt_1")");
    EXPECT_EQ(json_field(ref("json:/n"), R"({"id":"evt_1","n":2})"), "2");
    EXPECT_EQ(json_field(ref("json:/event/ts"), R"({"event":{"ts":"1.5"}})"), R"("1.5")");
    EXPECT_EQ(json_field(ref("json:/missing"), R"({"id":1})"), std::nullopt);
    EXPECT_EQ(json_field(ref("json:/id"), R"({"id":1)"), std::nullopt);         // not JSON
    EXPECT_EQ(json_field(ref("json:/id"), R"({"id":1,"id":2})"), std::nullopt); // ambiguous
    EXPECT_EQ(json_field(ref("header:id"), R"({"id":1})"), std::nullopt);
}

TEST(ParseTimestamp, IntegersAndRfc3339) {
    struct Row {
        std::string_view text;
        std::optional<int64_t> value;
    };
    const Row rows[] = {
        {"1700000000", 1700000000},
        {"\"1700000000\"", 1700000000},
        {"-5", -5},
        {"0", 0},
        {"999999999999999999", 999999999999999999},
        {"9999999999999999999", std::nullopt}, // past 18 digits
        {"\"2026-11-30T03:44:15Z\"", 1796010255'000'000'000},
        {"2026-11-30T03:44:15.25Z", 1796010255'250'000'000},
        {"1.5", std::nullopt},
        {"", std::nullopt},
        {"\"\"", std::nullopt},
        {"-", std::nullopt},
        {"12a", std::nullopt},
        {"true", std::nullopt},
    };
    for (const Row& r : rows) {
        EXPECT_EQ(parse_timestamp(r.text), r.value) << r.text;
    }
}
