#include "portcullis/admin/event_reader.hh"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

using namespace portcullis::admin;

namespace {

std::vector<EventFrame> read_split(std::string_view stream, size_t piece) {
    EventStreamReader r;
    std::vector<EventFrame> out;
    for (size_t at = 0; at < stream.size(); at += piece) {
        r.feed(stream.substr(at, piece), out);
    }
    return out;
}

} // namespace

TEST(EventStreamReader, FramesOfTheControlPlaneInAnySplit) {
    const std::string_view stream =
        ": last-event-id 3 is not in the buffer; replaying from the oldest held, 5\n"
        "id: 5\nevent: webhook.rejected\ndata: {\"id\":5,\"type\":\"webhook.rejected\"}\n\n"
        ": keep-alive\n\n"
        "id: 6\nevent: job.queued\ndata: {\"id\":6}\n\n";
    for (size_t piece = 1; piece <= stream.size(); ++piece) {
        const std::vector<EventFrame> frames = read_split(stream, piece);
        ASSERT_EQ(frames.size(), 2u) << "piece " << piece;
        EXPECT_EQ(frames[0].id, "5");
        EXPECT_EQ(frames[0].event, "webhook.rejected");
        EXPECT_EQ(frames[0].data, R"({"id":5,"type":"webhook.rejected"})");
        EXPECT_EQ(frames[1].id, "6");
        EXPECT_EQ(frames[1].event, "job.queued");
    }
}

TEST(EventStreamReader, LineEndingsDataLinesAndDefaults) {
    // CRLF, CR and LF end lines; data lines join with LF; one space after the colon is
    // dropped; a frame without event is a "message"; one without data is no frame.
    const std::string_view stream = "data:a\r\ndata:  b\rdata\n\r\n"
                                    "event: ignored\nid: 9\n\n"
                                    "\xEF\xBB\xBF";
    EventStreamReader r;
    std::vector<EventFrame> frames;
    r.feed(stream, frames);
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].event, "message");
    EXPECT_EQ(frames[0].data, "a\n b\n");
    EXPECT_EQ(r.last_id(), "9");
}

TEST(EventStreamReader, ByteOrderMarkAtTheStartIsSkipped) {
    EventStreamReader r;
    std::vector<EventFrame> frames;
    r.feed("\xEF\xBB", frames);
    r.feed("\xBF"
           "data: x\n\n",
           frames);
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].data, "x");
}

TEST(EventStreamReader, AnOversizedFrameIsDroppedAndTheNextOneRead) {
    EventStreamReader r(64);
    std::vector<EventFrame> frames;
    r.feed("data: " + std::string(1000, 'x') + "\n\n", frames);
    r.feed("data: " + std::string(40, 'y') + "\ndata: " + std::string(40, 'z') + "\n\n", frames);
    r.feed("data: small\n\n", frames);
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].data, "small");
    EXPECT_EQ(r.frames_dropped(), 2u);
}

TEST(EventStreamReader, ResumeDropsThePartialFrameAndKeepsTheId) {
    EventStreamReader r;
    std::vector<EventFrame> frames;
    r.feed("id: 41\ndata: {}\n\nid: 42\ndata: half", frames);
    r.resume();
    r.feed("\n\ndata: next\n\n", frames);
    ASSERT_EQ(frames.size(), 2u);
    EXPECT_EQ(frames[1].data, "next");
    EXPECT_EQ(r.last_id(), "42");
}

TEST(EventSummary, SaysWhatHappenedToWhatWithoutHeadersOrIds) {
    struct Row {
        std::string_view data;
        std::string_view line;
    };
    const Row rows[] = {
        {R"({"id":3,"type":"webhook.rejected","ts":"2026-12-06T20:49:57.011Z","route":"github","request_id":"01m96hxp8k06s3wakkgrt4nbfm","status":401,"reason":"signature_mismatch","peer":"127.0.0.1","shard":1,"headers":{"x-hub-signature-256":"sha256=00","user-agent":"x\"}"}})",
         "20:49:57 webhook.rejected github 401 signature_mismatch"},
        {R"({"id":1,"type":"webhook.received","ts":"2026-12-06T20:49:56.994Z","route":"open","request_id":"01m9","status":202,"peer":"127.0.0.1","shard":1,"outcome":"queued","bytes":2})",
         "20:49:56 webhook.received open 202 queued"},
        {R"({"id":9,"type":"job.delivered","ts":"2026-12-06T20:49:58.000Z","route":"open","job":"01m9","sink":"out","attempt":2})",
         "20:49:58 job.delivered open sink out attempt 2"},
        {R"({"id":10,"type":"sink.breaker_opened","ts":"2026-12-06T20:49:57.240Z","sink":"out","consecutive_failures":5})",
         "20:49:57 sink.breaker_opened out failures 5"},
        {R"( { "type" : "job.acked" , "route" : "a\u0041\u001b\n" , "x" : [1, {"y": "]"}] } )",
         "job.acked aA??"},
    };
    for (const Row& r : rows) {
        const std::optional<EventSummary> s = summarize_event(r.data);
        ASSERT_TRUE(s.has_value()) << r.data;
        EXPECT_EQ(s->line(), r.line) << r.data;
        EXPECT_EQ(s->line().find("01m9"), std::string::npos);
        EXPECT_EQ(s->line().find("sha256"), std::string::npos);
    }
}

TEST(EventSummary, MalformedDataIsNoSummary) {
    const std::string_view rows[] = {
        "",
        "{",
        "{}",
        R"({"type":1})",
        R"({"type":"x")",
        R"({"type":"x",})",
        R"({"type":"x"}x)",
        R"({"route":"a"})",
        R"({"type":"x","h":{"a":]}})",
        R"({"type":"\q"})",
        R"({"type":"\u00"})",
        R"(["type","x"])",
        "{\"type\":\"a\nb\"}",
    };
    for (std::string_view data : rows) {
        EXPECT_FALSE(summarize_event(data).has_value()) << data;
    }
}
