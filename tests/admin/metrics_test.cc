#include "portcullis/admin/metrics.hh"

#include "portcullis/base/histogram.hh"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

using namespace portcullis::admin;
using portcullis::base::Histogram;
using portcullis::base::histogram_bounds_ns;
using portcullis::base::histogram_buckets;
using portcullis::base::HistogramTotal;

TEST(MetricsEscape, EscapesBackslashQuoteAndLineFeedOnly) {
    struct Row {
        std::string_view in;
        std::string_view out;
    };
    const Row rows[] = {
        {"github", "github"},
        {R"(a\b)", R"(a\\b)"},
        {R"(say "hi")", R"(say \"hi\")"},
        {"two\nlines", R"(two\nlines)"},
        {"tab\tand\rcr", "tab\tand\rcr"},
        {"", ""},
        {"héllo", "héllo"},
    };
    for (const Row& r : rows) {
        std::string out;
        escape_label_value(out, r.in);
        EXPECT_EQ(out, r.out) << "input: " << r.in;
    }
}

TEST(MetricsExposition, WritesHelpTypeAndLabelledSamples) {
    std::string out;
    Exposition e(out);
    e.family("portcullis_requests_total", "counter", "Requests.\nBy route \\ code.");
    e.sample("portcullis_requests_total", {{"route", "git\"hub"}, {"code", "202"}}, uint64_t{12});
    e.sample("portcullis_requests_total", {}, int64_t{-3});
    e.sample("portcullis_requests_total", {{"route", "x"}}, 0.25);
    EXPECT_EQ(out, "# HELP portcullis_requests_total Requests.\\nBy route \\\\ code.\n"
                   "# TYPE portcullis_requests_total counter\n"
                   "portcullis_requests_total{route=\"git\\\"hub\",code=\"202\"} 12\n"
                   "portcullis_requests_total -3\n"
                   "portcullis_requests_total{route=\"x\"} 0.25\n");
}

TEST(MetricsExposition, HistogramBucketsAreCumulativeWithInfSumAndCount) {
    Histogram a;
    Histogram b;              // a second owner (another shard): the total sums them
    a.record(50'000);         // 50 µs: the first bucket (<= 100 µs)
    a.record(100'000);        // exactly on a bound: that bucket (le is inclusive)
    b.record(3'000'000);      // 3 ms: <= 5 ms
    b.record(20'000'000'000); // 20 s: past the last bound, +Inf only
    b.record(-5);             // a clock read backwards counts as 0
    HistogramTotal t;
    t.add(a);
    t.add(b);
    ASSERT_EQ(t.count(), 5U);

    std::string out;
    Exposition e(out);
    e.histogram("portcullis_request_duration_seconds", {{"route", "github"}}, t);

    // One line per bound, then +Inf, _sum and _count.
    size_t lines = 0;
    for (char c : out) {
        lines += c == '\n' ? 1 : 0;
    }
    EXPECT_EQ(lines, histogram_buckets + 2);
    auto has = [&](std::string_view line) {
        return out.find(std::string(line) + "\n") != std::string::npos;
    };
    EXPECT_TRUE(has(R"(portcullis_request_duration_seconds_bucket{route="github",le="0.0001"} 3)"))
        << out;
    EXPECT_TRUE(has(R"(portcullis_request_duration_seconds_bucket{route="github",le="0.0025"} 3)"))
        << out;
    EXPECT_TRUE(has(R"(portcullis_request_duration_seconds_bucket{route="github",le="0.005"} 4)"))
        << out;
    EXPECT_TRUE(has(R"(portcullis_request_duration_seconds_bucket{route="github",le="10"} 4)"))
        << out;
    EXPECT_TRUE(has(R"(portcullis_request_duration_seconds_bucket{route="github",le="+Inf"} 5)"))
        << out;
    EXPECT_TRUE(has(R"(portcullis_request_duration_seconds_sum{route="github"} 20.00315)")) << out;
    EXPECT_TRUE(has(R"(portcullis_request_duration_seconds_count{route="github"} 5)")) << out;

    // Cumulative: every bucket line's count is at least the one before it.
    uint64_t previous = 0;
    size_t buckets = 0;
    size_t at = 0;
    while ((at = out.find("_bucket{", at)) != std::string::npos) {
        const size_t end = out.find('\n', at);
        const size_t space = out.rfind(' ', end);
        const uint64_t n = std::stoull(out.substr(space + 1, end - space - 1));
        EXPECT_GE(n, previous);
        previous = n;
        ++buckets;
        at = end;
    }
    EXPECT_EQ(buckets, histogram_bounds_ns.size() + 1);
}

TEST(MetricsExposition, EmptyHistogramStillHasEveryBucket) {
    std::string out;
    Exposition e(out);
    e.histogram("portcullis_spool_commit_duration_seconds", {}, HistogramTotal{});
    EXPECT_NE(out.find("portcullis_spool_commit_duration_seconds_bucket{le=\"+Inf\"} 0\n"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("portcullis_spool_commit_duration_seconds_sum 0\n"), std::string::npos);
    EXPECT_NE(out.find("portcullis_spool_commit_duration_seconds_count 0\n"), std::string::npos);
}
