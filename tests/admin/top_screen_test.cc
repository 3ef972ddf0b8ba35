#include "portcullis/admin/top_screen.hh"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

using namespace portcullis::admin;

namespace {

TopView sample_view() {
    TopView v;
    v.version = "0.1.0";
    v.uptime_s = 3725;
    v.interval_s = 1;
    v.connections_open = 12;
    v.tls_total = 5;
    v.tls_per_s = {{"failed", 0}, {"ok", 2.5}};
    v.spool_bytes = 1536;
    v.spool_free_bytes = 31.5 * 1024 * 1024 * 1024;
    TopView::Route gh;
    gh.name = "github";
    gh.requests_per_s = 12.5;
    gh.per_s_2xx = 10;
    gh.per_s_4xx = 2.5;
    gh.requests = 1234;
    gh.refused = 40;
    gh.reasons = {{"signature_mismatch", 30, 2.5}, {"signature_missing", 10, 0}};
    gh.queued = 7;
    gh.leased = 1;
    gh.dead = 0;
    gh.oldest_age_s = 125;
    TopView::Route none;
    none.name = "(none)";
    none.requests = 3;
    v.routes = {gh, none};
    TopView::Sink app;
    app.name = "app";
    app.delivered_per_s = 9.5;
    app.retried_per_s = 0.5;
    app.delivered = 900;
    app.dead = 2;
    app.p99_s = 0.0123;
    TopView::Sink bus;
    bus.name = "bus";
    bus.breaker_open = true;
    v.sinks = {app, bus};
    return v;
}

std::vector<std::string> texts(const std::vector<ScreenLine>& lines) {
    std::vector<std::string> out;
    for (const ScreenLine& l : lines) {
        out.push_back(l.text);
    }
    return out;
}

const ScreenLine* find_line(const std::vector<ScreenLine>& lines, std::string_view start) {
    for (const ScreenLine& l : lines) {
        if (l.text.starts_with(start)) {
            return &l;
        }
    }
    return nullptr;
}

} // namespace

TEST(TopScreen, LaysOutAFixedSizeScreen) {
    const TopView v = sample_view();
    const std::deque<std::string> events = {
        "20:49:56 webhook.received github 202 queued",
        "20:49:57 webhook.rejected github 401 signature_mismatch"};
    ScreenInput in;
    in.view = &v;
    in.url = "http://127.0.0.1:9090";
    in.clock = "20:50:03Z";
    in.events = &events;
    in.keys_hint = true;
    const std::vector<ScreenLine> lines = render_screen(in, 160, 30);
    const std::string screen = screen_text(lines);
    ASSERT_LE(lines.size(), 30u) << screen;
    for (const ScreenLine& l : lines) {
        EXPECT_LE(l.text.size(), 160u) << l.text;
    }
    EXPECT_EQ(lines[0].text,
              "portcullis 0.1.0  up 1h02m  http://127.0.0.1:9090  20:50:03Z  (q: quit)");
    EXPECT_EQ(lines[0].style, ScreenLine::Style::title);
    EXPECT_EQ(lines[1].text, "connections 12 open  |  TLS handshakes/s failed 0.0 ok 2.5  |  "
                             "spool 1.5KiB, 31.5GiB free");
    const ScreenLine* heading = find_line(lines, "ROUTE");
    ASSERT_NE(heading, nullptr) << screen;
    EXPECT_EQ(heading->style, ScreenLine::Style::heading);
    EXPECT_EQ(heading->text, "ROUTE    REQ/S  2XX/S  4XX/S  5XX/S  REQUESTS  QUEUED LEASED   DEAD  "
                             "OLDEST  REFUSALS (total, rate)");
    const ScreenLine* gh = find_line(lines, "github");
    ASSERT_NE(gh, nullptr) << screen;
    EXPECT_EQ(gh->text, "github    12.5   10.0    2.5    0.0      1234       7      1      0   "
                        "2m05s  signature_mismatch 30 (2.5/s), signature_missing 10");
    const ScreenLine* none = find_line(lines, "(none)");
    ASSERT_NE(none, nullptr) << screen;
    EXPECT_EQ(none->text, "(none)     0.0    0.0    0.0    0.0         3       -      -      -  "
                          "     -  -");
    EXPECT_NE(find_line(lines, "SINK  BREAKER  DELIVERED/S"), nullptr) << screen;
    const ScreenLine* app = find_line(lines, "app");
    ASSERT_NE(app, nullptr) << screen;
    EXPECT_EQ(app->text, "app    closed          9.5        0.5        900      2   12.3ms");
    const ScreenLine* bus = find_line(lines, "bus");
    ASSERT_NE(bus, nullptr) << screen;
    EXPECT_EQ(bus->style, ScreenLine::Style::alert);
    EXPECT_TRUE(bus->text.starts_with("bus      open")) << bus->text;
    // Events, the newest first, under their heading.
    std::vector<std::string> t = texts(lines);
    auto at = std::find(t.begin(), t.end(), "RECENT EVENTS");
    ASSERT_NE(at, t.end()) << screen;
    ASSERT_GE(t.end() - at, 3);
    EXPECT_EQ(at[1], "20:49:57 webhook.rejected github 401 signature_mismatch");
    EXPECT_EQ(at[2], "20:49:56 webhook.received github 202 queued");
}

TEST(TopScreen, TruncatesToTheWidthNeverWraps) {
    const TopView v = sample_view();
    ScreenInput in;
    in.view = &v;
    in.url = "http://127.0.0.1:9090";
    for (size_t width : {1u, 10u, 40u, 79u}) {
        const std::vector<ScreenLine> lines = render_screen(in, width, 0);
        for (const ScreenLine& l : lines) {
            EXPECT_LE(l.text.size(), width) << l.text;
            EXPECT_EQ(l.text.find('\n'), std::string::npos);
        }
        EXPECT_NE(find_line(lines, std::string("github").substr(0, width)), nullptr);
    }
}

TEST(TopScreen, ShortScreensKeepRoutesFirstAndSayWhatIsCut) {
    TopView v = sample_view();
    for (int i = 0; i < 20; ++i) {
        TopView::Route r;
        r.name = "route" + std::to_string(i);
        v.routes.push_back(r);
    }
    std::deque<std::string> events(10, "20:49:57 job.queued github");
    ScreenInput in;
    in.view = &v;
    in.events = &events;
    const std::vector<ScreenLine> lines = render_screen(in, 100, 16);
    const std::string screen = screen_text(lines);
    ASSERT_EQ(lines.size(), 16u) << screen;
    // 16 lines: title, summary, blank, heading, routes, blank, sinks heading, 2 sinks, blank,
    // events heading: 6 lines of routes, 5 of the 22 and one saying how many more.
    EXPECT_NE(screen.find("\nroute2 "), std::string::npos) << screen;
    EXPECT_NE(screen.find("\n  ... 17 more\n"), std::string::npos) << screen;
    EXPECT_NE(screen.find("\napp "), std::string::npos) << screen;
    EXPECT_NE(screen.find("\nbus "), std::string::npos) << screen;
    EXPECT_EQ(lines.back().text, "RECENT EVENTS") << screen;
    // Unlimited height: everything.
    const std::string all = screen_text(render_screen(in, 100, 0));
    EXPECT_NE(all.find("\nroute19 "), std::string::npos);
    EXPECT_EQ(all.find("more\n"), std::string::npos);
}

TEST(TopScreen, StatusPaneAndBeforeTheFirstScrape) {
    ScreenInput in;
    in.url = "http://127.0.0.1:9090";
    in.status = "disconnected, retrying every second: connect to http://127.0.0.1:9090: "
                "Connection refused";
    const std::vector<ScreenLine> lines = render_screen(in, 200, 40);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[1].style, ScreenLine::Style::alert);
    EXPECT_TRUE(lines[1].text.starts_with("disconnected, retrying"));

    const TopView v = sample_view();
    in.view = &v;
    in.status = "events: http://127.0.0.1:9090/events answered 403 (the token lacks events:read)";
    in.events_state = ScreenInput::Events::unavailable;
    const std::string screen = screen_text(render_screen(in, 200, 40));
    EXPECT_EQ(screen.find("RECENT EVENTS"), std::string::npos) << screen;
    EXPECT_NE(screen.find("lacks events:read"), std::string::npos) << screen;
    in.events_state = ScreenInput::Events::live;
    EXPECT_NE(screen_text(render_screen(in, 200, 40)).find("(none since top started)"),
              std::string::npos);
}

TEST(TopScreen, BytesFromTheServerCannotDriveTheTerminal) {
    TopView v = sample_view();
    v.routes[0].name = "evil\x1b[2J\x07\xc3\xa9";
    v.version = "1\r\n";
    const std::deque<std::string> events = {"\x1b]0;title\x07"};
    ScreenInput in;
    in.view = &v;
    in.events = &events;
    for (const ScreenLine& l : render_screen(in, 200, 0)) {
        for (char c : l.text) {
            EXPECT_TRUE(c >= 0x20 && c <= 0x7e) << l.text;
        }
    }
}

TEST(TopScreen, DisplayForms) {
    EXPECT_EQ(format_rate_value(0), "0.0");
    EXPECT_EQ(format_rate_value(12.34), "12.3");
    EXPECT_EQ(format_rate_value(12345), "12345");
    EXPECT_EQ(format_bytes(512), "512B");
    EXPECT_EQ(format_bytes(1536), "1.5KiB");
    EXPECT_EQ(format_bytes(200.0 * 1024 * 1024), "200MiB");
    EXPECT_EQ(format_age(59), "59s");
    EXPECT_EQ(format_age(125), "2m05s");
    EXPECT_EQ(format_age(3725), "1h02m");
    EXPECT_EQ(format_age(90000), "1d01h");
    EXPECT_EQ(format_age(-1), "-");
    EXPECT_EQ(format_latency(0.000250), "250us");
    EXPECT_EQ(format_latency(0.0123), "12.3ms");
    EXPECT_EQ(format_latency(0.250), "250ms");
    EXPECT_EQ(format_latency(1.5), "1.50s");
}
