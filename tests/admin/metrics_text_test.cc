#include "portcullis/admin/metrics_text.hh"

#include "portcullis/admin/metrics.hh"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

using namespace portcullis::admin;

namespace {

std::vector<MetricLine> read_all(std::string_view text, std::string* error = nullptr,
                                 size_t* line = nullptr) {
    MetricsTextReader r(text);
    std::vector<MetricLine> out;
    MetricLine m;
    while (r.next(m)) {
        out.push_back(m);
    }
    if (error != nullptr) {
        *error = r.error();
    }
    if (line != nullptr) {
        *line = r.line_number();
    }
    return out;
}

} // namespace

TEST(MetricsText, ReadsHelpTypeAndSamples) {
    const std::string_view text = "# HELP portcullis_requests_total Requests answered.\n"
                                  "# TYPE portcullis_requests_total counter\n"
                                  "portcullis_requests_total{route=\"github\",code=\"202\"} 3\n"
                                  "# a comment that is neither\n"
                                  "\n"
                                  "portcullis_spool_bytes 707\n";
    std::string error;
    const std::vector<MetricLine> lines = read_all(text, &error);
    EXPECT_EQ(error, "");
    ASSERT_EQ(lines.size(), 4u);
    EXPECT_EQ(lines[0].kind, MetricLine::Kind::help);
    EXPECT_EQ(lines[0].name, "portcullis_requests_total");
    EXPECT_EQ(lines[0].text, "Requests answered.");
    EXPECT_EQ(lines[1].kind, MetricLine::Kind::type);
    EXPECT_EQ(lines[1].text, "counter");
    EXPECT_EQ(lines[2].kind, MetricLine::Kind::sample);
    EXPECT_EQ(lines[2].name, "portcullis_requests_total");
    ASSERT_EQ(lines[2].label_count, 2u);
    EXPECT_EQ(lines[2].labels[0].name, "route");
    EXPECT_EQ(lines[2].labels[0].raw_value, "github");
    EXPECT_TRUE(lines[2].label_is("code", "202"));
    EXPECT_FALSE(lines[2].label_is("code", "20"));
    EXPECT_FALSE(lines[2].label_is("reason", ""));
    EXPECT_EQ(lines[2].value, 3);
    EXPECT_EQ(lines[3].name, "portcullis_spool_bytes");
    EXPECT_EQ(lines[3].label_count, 0u);
    EXPECT_EQ(lines[3].value, 707);
}

TEST(MetricsText, ViewsPointIntoTheText) {
    const std::string text = "a_b{x=\"y\"} 1\n";
    MetricsTextReader r(text);
    MetricLine m;
    ASSERT_TRUE(r.next(m));
    EXPECT_EQ(m.name.data(), text.data());
    EXPECT_EQ(m.labels[0].raw_value.data(), text.data() + 7);
}

TEST(MetricsText, LabelValuesRoundTripTheExposition) {
    // What the control plane's writer escapes, the reader gives back byte for byte.
    const std::string_view values[] = {
        "github", R"(a\b)", R"(say "hi")", "two\nlines", "tab\tand\rcr",
        "",       "héllo",  R"(\\n)",      R"(end\)",
    };
    for (std::string_view v : values) {
        std::string out;
        Exposition e(out);
        e.family("m_total", "counter", "help");
        e.sample("m_total", {{"route", v}, {"code", "202"}}, uint64_t{5});
        // The writer never writes CR raw... except inside a value, which the reader refuses:
        // the format has no escape for it, so a CR in a label value is not valid text.
        std::string error;
        const auto lines = read_all(out, &error);
        if (v.find('\r') != std::string_view::npos) {
            EXPECT_EQ(error, "control_byte") << out;
            continue;
        }
        ASSERT_EQ(error, "") << out;
        ASSERT_EQ(lines.size(), 3u) << out;
        std::string back;
        ASSERT_TRUE(lines[2].label("route", back));
        EXPECT_EQ(back, v);
        EXPECT_TRUE(lines[2].label_is("route", v));
        EXPECT_EQ(lines[2].value, 5);
    }
}

TEST(MetricsText, ValuesInfNanExponentsAndTimestamps) {
    struct Row {
        std::string_view line;
        double value;
        bool has_timestamp;
        int64_t timestamp;
    };
    const Row rows[] = {
        {"m 1", 1, false, 0},
        {"m -1.5e-3", -1.5e-3, false, 0},
        {"m +Inf", std::numeric_limits<double>::infinity(), false, 0},
        {"m -Inf", -std::numeric_limits<double>::infinity(), false, 0},
        {"m Inf", std::numeric_limits<double>::infinity(), false, 0},
        {"m 1e999", std::numeric_limits<double>::infinity(), false, 0},
        {"m 0.000001 1700000000000", 1e-6, true, 1700000000000},
        {"m\t2\t-5", 2, true, -5},
        {"m{} 7", 7, false, 0},
        {"m{a=\"1\",} 8", 8, false, 0},
        {"  m { a = \"1\" , b=\"2\" } 9 ", 9, false, 0},
        {"m_bucket{le=\"+Inf\"} 4", 4, false, 0},
        {"name:with:colons 3", 3, false, 0},
    };
    for (const Row& r : rows) {
        std::string error;
        const auto lines = read_all(r.line, &error);
        ASSERT_EQ(error, "") << r.line;
        ASSERT_EQ(lines.size(), 1u) << r.line;
        EXPECT_EQ(lines[0].value, r.value) << r.line;
        EXPECT_EQ(lines[0].has_timestamp, r.has_timestamp) << r.line;
        EXPECT_EQ(lines[0].timestamp_ms, r.timestamp) << r.line;
    }
    const auto nan = read_all("m NaN\n");
    ASSERT_EQ(nan.size(), 1u);
    EXPECT_TRUE(std::isnan(nan[0].value));
    double le = 0;
    ASSERT_TRUE(parse_metric_value("+Inf", le));
    EXPECT_TRUE(std::isinf(le) && le > 0);
    ASSERT_TRUE(parse_metric_value("0.0001", le));
    EXPECT_EQ(le, 0.0001);
    EXPECT_FALSE(parse_metric_value("", le));
    EXPECT_FALSE(parse_metric_value("++1", le));
    EXPECT_FALSE(parse_metric_value("nan(1)", le));
    EXPECT_FALSE(parse_metric_value("0x10", le));
}

TEST(MetricsText, LastLineWithoutLineFeed) {
    std::string error;
    const auto lines = read_all("a 1\nb{x=\"2\"} 2", &error);
    EXPECT_EQ(error, "");
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[1].name, "b");
    EXPECT_EQ(lines[1].value, 2);
}

TEST(MetricsText, MalformedLinesAreErrorsWithTheirLine) {
    struct Row {
        std::string_view text;
        std::string_view error;
        size_t line;
    };
    const Row rows[] = {
        {"ok 1\n9bad 1\n", "bad_name", 2},
        {"m{9=\"x\"} 1", "bad_label_name", 1},
        {"m{a} 1", "bad_label", 1},
        {"m{a=x} 1", "bad_label", 1},
        {"m{a=\"x\" b=\"y\"} 1", "bad_label", 1},
        {"m{a=\"x\"", "bad_label", 1},
        {"m{a=\"x", "unterminated_label_value", 1},
        {"m{a=\"x\\", "unterminated_label_value", 1},
        {"m{a=\"\\t\"} 1", "bad_escape", 1},
        {"m", "bad_value", 1},
        {"m{}", "bad_value", 1},
        {"m one", "bad_value", 1},
        {"m 1 2 3", "trailing_bytes", 1},
        {"m 1 1.5", "bad_timestamp", 1},
        {"m+1 1", "bad_name", 1},
        {"m 1\r\n", "control_byte", 1},
        {std::string_view("m 1\0", 4), "control_byte", 1},
        {"# TYPE m countr\n", "bad_type", 1},
        {"# TYPE m counter extra\n", "trailing_bytes", 1},
        {"# HELP\n", "bad_name", 1},
        {"# TYPE 9 gauge\n", "bad_name", 1},
        {"\n\n{a=\"b\"} 1", "bad_name", 3},
        {"m{a=\"1\",b=\"2\",c=\"3\",d=\"4\",e=\"5\",f=\"6\",g=\"7\",h=\"8\",i=\"9\",j=\"10\","
         "k=\"11\",l=\"12\",m=\"13\",n=\"14\",o=\"15\",p=\"16\",q=\"17\"} 1",
         "too_many_labels", 1},
    };
    for (const Row& r : rows) {
        std::string error;
        size_t line = 0;
        read_all(r.text, &error, &line);
        EXPECT_EQ(error, r.error) << r.text;
        EXPECT_EQ(line, r.line) << r.text;
    }
    // Once failed, the reader stays failed.
    MetricsTextReader r("bad{ 1\nok 1\n");
    MetricLine m;
    EXPECT_FALSE(r.next(m));
    EXPECT_FALSE(r.next(m));
    EXPECT_EQ(r.error(), "bad_label_name");
}

TEST(MetricsText, GarbageIsAnErrorNotACrash) {
    // Every prefix of a valid scrape, and every byte flipped: the reader finishes either way.
    const std::string text = "# HELP m_total M.\n# TYPE m_total counter\n"
                             "m_total{route=\"a\\\"b\",code=\"202\"} 12 1700000000\n";
    for (size_t cut = 0; cut <= text.size(); ++cut) {
        read_all(std::string_view(text).substr(0, cut));
    }
    for (size_t i = 0; i < text.size(); ++i) {
        for (int b : {0x00, 0x0a, 0x22, 0x5c, 0x7b, 0x7d, 0xff}) {
            std::string t = text;
            t[i] = static_cast<char>(b);
            read_all(t);
        }
    }
}
