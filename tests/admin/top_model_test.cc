#include "portcullis/admin/top_model.hh"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

using namespace portcullis::admin;

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

Scrape scrape_of(const std::string& text, int64_t taken_ns) {
    Scrape s;
    s.taken_ns = taken_ns;
    std::string error;
    EXPECT_TRUE(read_scrape(text, s, error)) << error;
    EXPECT_EQ(s.taken_ns, taken_ns);
    return s;
}

// A scrape as the control plane writes it, with the counters given.
std::string body(int github_202, int github_401, int mismatch, int missing, int none_404,
                 int delivered, int retried, int fast, int slow) {
    std::string t;
    auto line = [&](const std::string& s) { t += s + "\n"; };
    line("# HELP portcullis_requests_total Requests answered.");
    line("# TYPE portcullis_requests_total counter");
    line("portcullis_requests_total{route=\"github\",code=\"202\"} " + std::to_string(github_202));
    line("portcullis_requests_total{route=\"github\",code=\"401\"} " + std::to_string(github_401));
    line("portcullis_requests_total{route=\"(none)\",code=\"404\"} " + std::to_string(none_404));
    line("portcullis_rejections_total{route=\"github\",reason=\"signature_mismatch\"} " +
         std::to_string(mismatch));
    line("portcullis_rejections_total{route=\"github\",reason=\"signature_missing\"} " +
         std::to_string(missing));
    line("portcullis_jobs{route=\"github\",state=\"queued\"} 4");
    line("portcullis_jobs{route=\"github\",state=\"leased\"} 1");
    line("portcullis_jobs{route=\"github\",state=\"dead\"} 2");
    line("portcullis_jobs{route=\"aaa\",state=\"queued\"} 0");
    line("portcullis_deliveries_total{sink=\"app\",outcome=\"delivered\"} " +
         std::to_string(delivered));
    line("portcullis_deliveries_total{sink=\"app\",outcome=\"retried\"} " +
         std::to_string(retried));
    line("portcullis_deliveries_total{sink=\"app\",outcome=\"dead\"} 1");
    line("portcullis_sink_breaker_open{sink=\"app\"} 0");
    // 0.001 and 1 s bounds: `fast` attempts under 1 ms, `slow` between 1 ms and 1 s.
    line("portcullis_delivery_duration_seconds_bucket{sink=\"app\",le=\"0.001\"} " +
         std::to_string(fast));
    line("portcullis_delivery_duration_seconds_bucket{sink=\"app\",le=\"1\"} " +
         std::to_string(fast + slow));
    line("portcullis_delivery_duration_seconds_bucket{sink=\"app\",le=\"+Inf\"} " +
         std::to_string(fast + slow));
    line("portcullis_delivery_duration_seconds_count{sink=\"app\"} " + std::to_string(fast + slow));
    line("portcullis_tls_handshakes_total{result=\"ok\",resumed=\"false\"} " +
         std::to_string(github_202));
    line("portcullis_tls_handshakes_total{result=\"ok\",resumed=\"true\"} 0");
    line("portcullis_tls_handshakes_total{result=\"failed\",resumed=\"false\"} 0");
    line("portcullis_connections_open 3");
    line("portcullis_spool_bytes 2048");
    line("portcullis_spool_free_bytes 1073741824");
    line("portcullis_spool_refusing 0");
    line("portcullis_start_time_seconds 1796590000");
    line("portcullis_build_info{version=\"0.1.0\"} 1");
    line("portcullis_some_future_family{x=\"y\"} 12");
    return t;
}

} // namespace

TEST(TopModel, ReadsTheFamiliesTopShows) {
    const Scrape s = scrape_of(body(10, 4, 3, 1, 2, 5, 1, 5, 0), 7);
    ASSERT_EQ(s.routes.size(), 3u);
    const Scrape::Route& gh = s.routes.at("github");
    EXPECT_EQ(gh.codes.at("202"), 10);
    EXPECT_EQ(gh.codes.at("401"), 4);
    EXPECT_EQ(gh.refusals.at("signature_mismatch"), 3);
    EXPECT_EQ(gh.queued, 4);
    EXPECT_EQ(gh.leased, 1);
    EXPECT_EQ(gh.dead, 2);
    EXPECT_FALSE(gh.oldest_age_s.has_value());
    EXPECT_EQ(s.routes.at("(none)").codes.at("404"), 2);
    const Scrape::Sink& app = s.sinks.at("app");
    EXPECT_EQ(app.outcomes.at("delivered"), 5);
    EXPECT_FALSE(app.breaker_open);
    ASSERT_EQ(app.duration.size(), 3u);
    EXPECT_EQ(app.duration[0].first, 0.001);
    EXPECT_EQ(app.duration[2].first, inf);
    EXPECT_EQ(s.tls_handshakes.at("ok"), 10);
    EXPECT_EQ(s.connections_open, 3);
    EXPECT_EQ(s.spool_free_bytes, 1073741824);
    EXPECT_EQ(s.start_time_s, 1796590000);
    EXPECT_EQ(s.version, "0.1.0");
}

TEST(TopModel, OldestAgeWhenTheServerHasIt) {
    const Scrape s = scrape_of("portcullis_jobs{route=\"a\",state=\"queued\"} 2\n"
                               "portcullis_jobs_oldest_age_seconds{route=\"a\"} 75.5\n",
                               0);
    EXPECT_EQ(s.routes.at("a").oldest_age_s, 75.5);
    const TopView v = make_view(nullptr, s, 0);
    ASSERT_EQ(v.routes.size(), 1u);
    EXPECT_EQ(v.routes[0].oldest_age_s, 75.5);
}

TEST(TopModel, MalformedScrapeIsAnErrorWithItsLine) {
    Scrape s;
    std::string error;
    EXPECT_FALSE(read_scrape("portcullis_spool_bytes 1\nportcullis_jobs{route=} 1\n", s, error));
    EXPECT_EQ(error, "line 2: bad_label");
}

TEST(TopModel, RatesBetweenTwoScrapes) {
    const Scrape a = scrape_of(body(10, 4, 3, 1, 2, 5, 1, 5, 0), 1'000'000'000);
    const Scrape b = scrape_of(body(30, 10, 3, 7, 2, 9, 3, 5, 4), 3'000'000'000);
    const TopView v = make_view(&a, b, 1796590100);
    EXPECT_EQ(v.interval_s, 2);
    EXPECT_EQ(v.version, "0.1.0");
    EXPECT_EQ(v.uptime_s, 100);
    ASSERT_EQ(v.routes.size(), 3u);
    // By name, the unmatched requests last.
    EXPECT_EQ(v.routes[0].name, "aaa");
    EXPECT_EQ(v.routes[1].name, "github");
    EXPECT_EQ(v.routes[2].name, "(none)");
    const TopView::Route& gh = v.routes[1];
    EXPECT_EQ(gh.requests_per_s, 13); // (20 + 6) / 2
    EXPECT_EQ(gh.per_s_2xx, 10);
    EXPECT_EQ(gh.per_s_4xx, 3);
    EXPECT_EQ(gh.per_s_5xx, 0);
    EXPECT_EQ(gh.requests, 40);
    EXPECT_EQ(gh.refused, 10);
    EXPECT_EQ(gh.refused_per_s, 3);
    // The reason that grew in the interval first, then the rest by total.
    ASSERT_EQ(gh.reasons.size(), 2u);
    EXPECT_EQ(gh.reasons[0].reason, "signature_missing");
    EXPECT_EQ(gh.reasons[0].per_s, 3);
    EXPECT_EQ(gh.reasons[0].total, 7);
    EXPECT_EQ(gh.reasons[1].reason, "signature_mismatch");
    EXPECT_EQ(gh.reasons[1].per_s, 0);
    EXPECT_EQ(gh.queued, 4);
    EXPECT_FALSE(gh.oldest_age_s.has_value());
    EXPECT_EQ(v.routes[2].requests_per_s, 0);
    EXPECT_EQ(v.routes[2].requests, 2);
    ASSERT_EQ(v.sinks.size(), 1u);
    EXPECT_EQ(v.sinks[0].delivered_per_s, 2);
    EXPECT_EQ(v.sinks[0].retried_per_s, 1);
    EXPECT_EQ(v.sinks[0].dead, 1);
    // The interval's 4 attempts were all slow (1 ms .. 1 s): its p99 is in that bucket, though
    // the 5 fast ones before would put the whole run's elsewhere.
    ASSERT_TRUE(v.sinks[0].p99_s.has_value());
    EXPECT_GT(*v.sinks[0].p99_s, 0.001);
    EXPECT_LE(*v.sinks[0].p99_s, 1);
    ASSERT_EQ(v.tls_per_s.size(), 2u);
    EXPECT_EQ(v.tls_per_s[1].first, "ok");
    EXPECT_EQ(v.tls_per_s[1].second, 10);
    EXPECT_EQ(v.connections_open, 3);
    EXPECT_FALSE(v.spool_refusing);
}

TEST(TopModel, FirstScrapeHasTotalsAndNoRates) {
    const Scrape a = scrape_of(body(10, 4, 3, 1, 2, 5, 1, 5, 0), 1);
    const TopView v = make_view(nullptr, a, 0);
    EXPECT_EQ(v.interval_s, 0);
    EXPECT_EQ(v.routes[1].requests, 14);
    EXPECT_EQ(v.routes[1].requests_per_s, 0);
    // Without an interval, the p99 is the whole run's: all 5 under 1 ms.
    ASSERT_TRUE(v.sinks[0].p99_s.has_value());
    EXPECT_LE(*v.sinks[0].p99_s, 0.001);
    // Reasons by total without rates.
    EXPECT_EQ(v.routes[1].reasons[0].reason, "signature_mismatch");
}

TEST(TopModel, ACounterThatWentDownCountsFromZero) {
    // The server restarted between the scrapes: 30 then 4 is 4 new answers, not -26.
    const Scrape a = scrape_of(body(30, 0, 0, 0, 0, 0, 0, 0, 0), 0);
    const Scrape b = scrape_of(body(4, 0, 0, 0, 0, 0, 0, 0, 0), 1'000'000'000);
    const TopView v = make_view(&a, b, 0);
    EXPECT_EQ(v.routes[1].requests_per_s, 4);
}

TEST(TopModel, ARouteNewInTheSecondScrapeRatesFromZero) {
    const Scrape a = scrape_of("portcullis_spool_bytes 1\n", 0);
    const Scrape b =
        scrape_of("portcullis_requests_total{route=\"new\",code=\"500\"} 6\n", 2'000'000'000);
    const TopView v = make_view(&a, b, 0);
    ASSERT_EQ(v.routes.size(), 1u);
    EXPECT_EQ(v.routes[0].per_s_5xx, 3);
    EXPECT_TRUE(v.tls_per_s.empty());
}

TEST(TopModel, HistogramQuantile) {
    const HistogramBuckets b = {{0.1, 50}, {0.2, 100}, {inf, 100}};
    EXPECT_EQ(histogram_quantile(0.5, b), 0.1);
    EXPECT_NEAR(*histogram_quantile(0.75, b), 0.15, 1e-12);
    EXPECT_NEAR(*histogram_quantile(0.25, b), 0.05, 1e-12);
    EXPECT_EQ(histogram_quantile(0.99, {{0.1, 0}, {inf, 0}}), std::nullopt);
    EXPECT_EQ(histogram_quantile(0.99, {}), std::nullopt);
    // Beyond the largest bound: that bound, a floor.
    EXPECT_EQ(histogram_quantile(0.99, {{0.1, 1}, {10, 1}, {inf, 5}}), 10);
    EXPECT_EQ(histogram_quantile(2, b), std::nullopt);
    EXPECT_EQ(histogram_quantile(std::nan(""), b), std::nullopt);
}
