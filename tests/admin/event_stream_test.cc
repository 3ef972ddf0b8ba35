#include "portcullis/admin/event_stream.hh"

#include "portcullis/base/reject_reason.hh"

#include <gtest/gtest.h>

#include <string>

namespace portcullis::admin {
namespace {

using base::Event;
using base::EventType;

constexpr TypeMask bit(EventType t) {
    return TypeMask{1} << static_cast<size_t>(t);
}

const config::RouteSlots& route_slots() {
    static const config::RouteSlots* slots = [] {
        auto* s =
            new config::RouteSlots; // NOLINT(cppcoreguidelines-owning-memory): for the tests' life
        s->assign("github");
        s->assign("we\"ird\n\\route");
        return s;
    }();
    return *slots;
}

EventNames names() {
    EventNames n;
    n.routes = &route_slots();
    n.sinks = {"hook"};
    return n;
}

TEST(EventFormat, FrameHasIdTypeAndOneLineOfJson) {
    Event e = Event::make(EventType::job_queued, 1'700'000'000'123'000'000);
    e.route = 0;
    e.shard = 1;
    e.set_id("01JD0000000000000000000000");
    std::string out;
    format_event(out, 42, e, names());
    EXPECT_EQ(out, "id: 42\nevent: job.queued\ndata: "
                   R"({"id":42,"type":"job.queued","ts":"2023-11-14T22:13:20.123Z",)"
                   R"("route":"github","job":"01JD0000000000000000000000","shard":1})"
                   "\n\n");
}

TEST(EventFormat, JobEnqueuedNamesItsTokenAndOutcome) {
    Event e = Event::make(EventType::job_enqueued, 1'700'000'000'123'000'000);
    e.route = 0;
    e.shard = 0;
    e.status = 200;
    e.number = 12;
    e.has_peer = true;
    e.peer = *base::PeerAddress::parse("127.0.0.1");
    e.set_id("01JD0000000000000000000000");
    e.set_text("ops");
    std::string out;
    format_event(out, 3, e, names());
    EXPECT_EQ(out, "id: 3\nevent: job.enqueued\ndata: "
                   R"({"id":3,"type":"job.enqueued","ts":"2023-11-14T22:13:20.123Z",)"
                   R"("route":"github","job":"01JD0000000000000000000000","status":200,)"
                   R"("peer":"127.0.0.1","shard":0,"outcome":"duplicate","bytes":12,)"
                   R"("token":"ops"})"
                   "\n\n");
}

TEST(EventFormat, StringsAreEscapedSoTheDataStaysOneLine) {
    Event e = Event::make(EventType::webhook_rejected, 0);
    e.route = 1;
    e.status = 401;
    e.reason = static_cast<uint8_t>(base::RejectReason::signature_mismatch);
    e.has_peer = true;
    e.peer = *base::PeerAddress::parse("203.0.113.5");
    e.set_id("req\r\nid: 9");
    e.set_text(R"({"user-agent":"a\"b"})"); // already JSON (http::json_headers)
    std::string out;
    format_event(out, 7, e, names());
    EXPECT_EQ(out, "id: 7\nevent: webhook.rejected\ndata: "
                   R"({"id":7,"type":"webhook.rejected","ts":"1970-01-01T00:00:00.000Z",)"
                   R"("route":"we\"ird\n\\route","request_id":"req\r\nid: 9","status":401,)"
                   R"("reason":"signature_mismatch","peer":"203.0.113.5",)"
                   R"("headers":{"user-agent":"a\"b"}})"
                   "\n\n");
    // Exactly one data line and the blank line that ends the frame.
    EXPECT_EQ(out.find("\n\n"), out.size() - 2);
}

TEST(EventTypes, Table) {
    struct Case {
        std::string_view in;
        std::optional<TypeMask> want;
    };
    const TypeMask jobs = bit(EventType::job_queued) | bit(EventType::job_leased) |
                          bit(EventType::job_acked) | bit(EventType::job_nacked) |
                          bit(EventType::job_dead) | bit(EventType::job_replayed) |
                          bit(EventType::job_delivered) | bit(EventType::job_enqueued);
    const Case cases[] = {
        {"job.*", jobs},
        {"job.*,webhook.rejected", jobs | bit(EventType::webhook_rejected)},
        {"job.*%2Cwebhook.rejected", jobs | bit(EventType::webhook_rejected)},
        {"job.%2A", jobs},
        {"*", all_types},
        {"webhook.*", bit(EventType::webhook_received) | bit(EventType::webhook_rejected)},
        {"sink.breaker_opened", bit(EventType::sink_breaker_opened)},
        {"", std::nullopt},
        {",", std::nullopt},
        {"job.*,", std::nullopt},
        {"job", std::nullopt},       // neither a type nor a prefix glob
        {"job.queue", std::nullopt}, // exact names only without '*'
        {"nothing.*", std::nullopt},
        {"job.*x", std::nullopt},        // '*' only at the end
        {"%41job.queued", std::nullopt}, // no other escapes
    };
    for (const Case& c : cases) {
        std::string why;
        EXPECT_EQ(parse_types(c.in, &why), c.want) << c.in;
        EXPECT_EQ(why.empty(), c.want.has_value()) << c.in;
    }
}

TEST(LastEventId, Table) {
    EXPECT_EQ(parse_last_event_id("0"), 0u);
    EXPECT_EQ(parse_last_event_id("17"), 17u);
    EXPECT_EQ(parse_last_event_id("9999999999999999999"), 9999999999999999999u);
    EXPECT_EQ(parse_last_event_id(""), std::nullopt);
    EXPECT_EQ(parse_last_event_id("abc"), std::nullopt);
    EXPECT_EQ(parse_last_event_id("12a"), std::nullopt);
    EXPECT_EQ(parse_last_event_id("-1"), std::nullopt);
    EXPECT_EQ(parse_last_event_id("+1"), std::nullopt);
    EXPECT_EQ(parse_last_event_id(" 1"), std::nullopt);
    EXPECT_EQ(parse_last_event_id("18446744073709551616"), std::nullopt); // 2^64
    EXPECT_EQ(parse_last_event_id("99999999999999999999999"), std::nullopt);
}

// The ids of the frames in out, in order.
std::vector<uint64_t> ids(const std::string& out) {
    std::vector<uint64_t> v;
    for (size_t at = out.find("id: "); at != std::string::npos; at = out.find("\nid: ", at + 1)) {
        const size_t start = out[at] == '\n' ? at + 5 : at + 4;
        v.push_back(std::stoull(out.substr(start, out.find('\n', start) - start)));
    }
    return v;
}

TEST(EventBuffer, ReplaysExactlyTheMissedOnesAndFilters) {
    EventBuffer buf(100, names());
    for (int i = 0; i < 10; ++i) {
        buf.publish(Event::make(i % 2 == 0 ? EventType::job_queued : EventType::job_acked, i));
    }
    EXPECT_EQ(buf.oldest(), 1u);
    EXPECT_EQ(buf.newest(), 10u);
    uint64_t next = buf.next_after(6);
    std::string out;
    EXPECT_EQ(buf.collect(next, all_types, out), 0u);
    EXPECT_EQ(ids(out), (std::vector<uint64_t>{7, 8, 9, 10}));
    EXPECT_EQ(next, 11u);
    out.clear();
    EXPECT_EQ(buf.collect(next, all_types, out), 0u);
    EXPECT_TRUE(out.empty());
    // Without Last-Event-ID: only what comes next.
    next = buf.next_after(std::nullopt);
    buf.publish(Event::make(EventType::job_acked, 0));
    buf.collect(next, all_types, out);
    EXPECT_EQ(ids(out), (std::vector<uint64_t>{11}));
    // A filter.
    out.clear();
    next = buf.next_after(0);
    buf.collect(next, bit(EventType::job_acked), out);
    EXPECT_EQ(ids(out), (std::vector<uint64_t>{2, 4, 6, 8, 10, 11}));
}

TEST(EventBuffer, AnIdOlderThanTheBufferStartsAtTheOldest) {
    EventBuffer buf(4, names());
    for (int i = 0; i < 10; ++i) {
        buf.publish(Event::make(EventType::job_queued, i));
    }
    EXPECT_EQ(buf.oldest(), 7u);
    EXPECT_EQ(buf.next_after(2), 7u);
    EXPECT_EQ(buf.next_after(6), 7u); // nothing missed
    EXPECT_EQ(buf.next_after(8), 9u);
    EXPECT_EQ(buf.next_after(10), 11u); // up to date
    EXPECT_EQ(buf.next_after(500), 7u); // another run's id: all that is held
    // A subscriber left behind by more than the buffer loses the difference, counted.
    uint64_t next = 3;
    std::string out;
    EXPECT_EQ(buf.collect(next, all_types, out), 4u);
    EXPECT_EQ(ids(out), (std::vector<uint64_t>{7, 8, 9, 10}));
}

// A slot the buffer wrapped onto is served as its new event's frame, never the frame formatted
// for the event it held before (frames are formatted when first asked for, then kept).
TEST(EventBuffer, AFrameIsFormattedOnceAndNeverOutlivesItsEvent) {
    EventBuffer buf(4, names());
    auto event = [](EventType type, int64_t number) {
        Event e = Event::make(type, 1'700'000'000'000'000'000);
        e.number = number;
        return e;
    };
    for (int i = 0; i < 4; ++i) {
        buf.publish(event(EventType::sink_breaker_opened, i));
    }
    uint64_t next = buf.next_after(0);
    std::string out;
    buf.collect(next, all_types, out); // formats and keeps the four frames
    std::string expected;
    for (uint64_t id = 1; id <= 4; ++id) {
        format_event(expected, id, event(EventType::sink_breaker_opened, int64_t(id) - 1), names());
    }
    EXPECT_EQ(out, expected);
    for (int i = 0; i < 3; ++i) {
        buf.publish(event(EventType::config_reloaded, 100 + i));
    }
    out.clear();
    next = buf.next_after(0);
    buf.collect(next, all_types, out);
    expected.clear();
    format_event(expected, 4, event(EventType::sink_breaker_opened, 3), names());
    for (uint64_t id = 5; id <= 7; ++id) {
        format_event(expected, id, event(EventType::config_reloaded, 100 + int64_t(id) - 5),
                     names());
    }
    EXPECT_EQ(out, expected);
    // A second subscriber gets the same bytes.
    std::string again;
    next = buf.next_after(3);
    buf.collect(next, all_types, again);
    EXPECT_EQ(again, expected);
}

// A thread's queue goes into the buffer in its order, numbered after what was published
// before, and a take that finds the queue empty changes nothing (also while the buffer grows).
TEST(EventBuffer, TakeNumbersAQueueInItsOrder) {
    EventBuffer buf(6, names());
    base::EventQueue q(8);
    EXPECT_EQ(buf.take(q), 0u);
    EXPECT_EQ(buf.newest(), 0u);
    buf.publish(Event::make(EventType::job_acked, 1));
    EXPECT_EQ(buf.take(q), 0u);
    for (int i = 0; i < 7; ++i) {
        ASSERT_TRUE(q.try_push(
            Event::make(i % 2 == 0 ? EventType::job_queued : EventType::job_dead, 10 + i)));
    }
    EXPECT_EQ(buf.take(q), 7u);
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(buf.newest(), 8u);
    EXPECT_EQ(buf.oldest(), 3u); // six held
    uint64_t next = buf.next_after(0);
    std::string out;
    buf.collect(next, bit(EventType::job_dead), out);
    EXPECT_EQ(ids(out), (std::vector<uint64_t>{3, 5, 7}));
    buf.publish(Event::make(EventType::job_dead, 20));
    buf.collect(next, all_types, out);
    EXPECT_EQ(ids(out), (std::vector<uint64_t>{3, 5, 7, 9}));
    // At most the queue's capacity per take: a producer that keeps pushing cannot hold it.
    for (int i = 0; i < 8; ++i) {
        ASSERT_TRUE(q.try_push(Event::make(EventType::job_queued, 30 + i)));
    }
    EXPECT_EQ(buf.take(q), 8u);
    EXPECT_EQ(buf.newest(), 17u);
}

TEST(EventFormat, ConfigEventsCarryTheirFields) {
    const int64_t at = 1'700'000'000'123'000'000;
    const std::string head = R"(","ts":"2023-11-14T22:13:20.123Z",)";
    std::string out;
    Event reloaded = Event::make(EventType::config_reloaded, at);
    reloaded.number = 7;
    reloaded.attempt = 1000;
    format_event(out, 1, reloaded, names());
    EXPECT_EQ(out, "id: 1\nevent: config.reloaded\ndata: "
                   R"({"id":1,"type":"config.reloaded)" +
                       head + R"("generation":7,"routes":1000})" + "\n\n");
    out.clear();
    Event rejected = Event::make(EventType::config_rejected, at);
    rejected.set_text("c.yaml:3:5: routes.a.path: \"x\"");
    format_event(out, 2, rejected, names());
    EXPECT_EQ(out, "id: 2\nevent: config.rejected\ndata: "
                   R"({"id":2,"type":"config.rejected)" +
                       head + R"("error":"c.yaml:3:5: routes.a.path: \"x\""})" + "\n\n");
    out.clear();
    Event minted = Event::make(EventType::config_token_revoked, at);
    minted.set_text("ci");
    format_event(out, 3, minted, names());
    EXPECT_EQ(out, "id: 3\nevent: config.token_revoked\ndata: "
                   R"({"id":3,"type":"config.token_revoked)" +
                       head + R"("token":"ci"})" + "\n\n");
}

} // namespace
} // namespace portcullis::admin
