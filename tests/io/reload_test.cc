#include "portcullis/io/reload.hh"

#include "../snapshot_from_yaml.hh"

#include <gtest/gtest.h>

using namespace portcullis;

namespace {

std::unique_ptr<config::Snapshot> with(const std::string& top) {
    return snapshot_from_yaml(top + "\nroutes:\n  a: {path: /a, verify: {scheme: none}}\n");
}

std::string restart(const std::string& before, const std::string& after) {
    auto a = with(before);
    auto b = with(after);
    EXPECT_TRUE(a && b);
    return a && b ? io::restart_needed(a->config(), b->config()) : "?";
}

} // namespace

TEST(RestartNeeded, NamesTheKeyAndBothValues) {
    const std::string base = R"(server: {listen: ["127.0.0.1:8080"], shards: 2}
admin: {listen: "127.0.0.1:9090"}
spool: {dir: /tmp/s})";
    EXPECT_EQ(restart(base, base), "");
    EXPECT_EQ(restart(base, R"(server: {listen: ["127.0.0.1:8081"], shards: 2}
admin: {listen: "127.0.0.1:9090"}
spool: {dir: /tmp/s})"),
              "server.listen changed (127.0.0.1:8080 -> 127.0.0.1:8081): it needs a restart");
    EXPECT_EQ(restart(base, R"(server: {listen: ["127.0.0.1:8080"], shards: 3}
admin: {listen: "127.0.0.1:9090"}
spool: {dir: /tmp/s})"),
              "server.shards changed (2 -> 3): it needs a restart");
    EXPECT_EQ(restart(base, R"(server: {listen: ["127.0.0.1:8080"], shards: 2}
admin: {listen: "127.0.0.1:9091"}
spool: {dir: /tmp/s})"),
              "admin.listen changed (127.0.0.1:9090 -> 127.0.0.1:9091): it needs a restart");
    EXPECT_EQ(restart(base, R"(server: {listen: ["127.0.0.1:8080"], shards: 2}
admin: {listen: "127.0.0.1:9090"}
spool: {dir: /tmp/t})"),
              "spool.dir changed (/tmp/s -> /tmp/t): it needs a restart");
}

TEST(RestartNeeded, WhatMayChangeLiveDoesNotNeedOne) {
    const std::string before = R"(server: {listen: ["127.0.0.1:8080"], deny: ["10.0.0.0/8"],
  limits: {body_bytes: 1024}, timeouts: {header: 5s}}
spool: {dir: /tmp/s, durability: fsync})";
    const std::string after = R"(server: {listen: ["127.0.0.1:8080"], deny: [],
  limits: {body_bytes: 4096}, timeouts: {header: 1s},
  client_ip: {trusted_proxies: ["127.0.0.1/32"]}}
spool: {dir: /tmp/s, durability: none})";
    EXPECT_EQ(restart(before, after), "");
}

TEST(RouteSlots, ANameKeepsItsSlotAndNewNamesTakeTheNext) {
    config::RouteSlots slots;
    auto first = snapshot_from_yaml(R"(routes:
  a: {path: /a, verify: {scheme: none}}
  b: {path: /b, verify: {scheme: none}}
)");
    ASSERT_NE(first, nullptr);
    first->number(1, slots);
    EXPECT_EQ(first->routes()[0].slot, 0u);
    EXPECT_EQ(first->routes()[1].slot, 1u);
    auto second = snapshot_from_yaml(R"(routes:
  c: {path: /c, verify: {scheme: none}}
  b: {path: /b, verify: {scheme: none}}
)");
    ASSERT_NE(second, nullptr);
    EXPECT_EQ(second->fits(slots), "");
    second->number(2, slots);
    EXPECT_EQ(second->generation(), 2u);
    EXPECT_EQ(second->routes()[0].slot, 2u) << "c is new";
    EXPECT_EQ(second->routes()[1].slot, 1u) << "b keeps its slot";
    EXPECT_EQ(slots.name(0), "a") << "a removed route's slot is never given to another";
    EXPECT_EQ(slots.name(2), "c");
    EXPECT_EQ(slots.name(3), "");
}

TEST(RouteSlots, AReloadPastTheCapacityIsRefusedBeforeAnySlotIsGiven) {
    config::RouteSlots slots;
    for (uint32_t i = 0; i + 1 < config::RouteSlots::capacity; ++i) {
        ASSERT_TRUE(slots.assign("r" + std::to_string(i)));
    }
    auto two_new = snapshot_from_yaml(R"(routes:
  x: {path: /x, verify: {scheme: none}}
  y: {path: /y, verify: {scheme: none}}
)");
    ASSERT_NE(two_new, nullptr);
    EXPECT_NE(two_new->fits(slots).find("restart"), std::string::npos);
    EXPECT_EQ(slots.size(), config::RouteSlots::capacity - 1);
}

TEST(ReloadDesk, OneReloadAnswersEveryTicketAskedBeforeIt) {
    constexpr auto reload = io::ReloadDesk::Errand::reload;
    io::ReloadDesk desk;
    const uint64_t a = desk.ask(reload);
    const uint64_t b = desk.ask(reload);
    EXPECT_FALSE(desk.outcome(reload, a));
    const uint64_t served = desk.asked(reload);
    io::ReloadOutcome o;
    o.ok = true;
    o.generation = 2;
    desk.done(reload, served, o);
    ASSERT_TRUE(desk.outcome(reload, a));
    ASSERT_TRUE(desk.outcome(reload, b));
    EXPECT_EQ(desk.outcome(reload, b)->generation, 2u);
    const uint64_t c = desk.ask(reload);
    EXPECT_FALSE(desk.outcome(reload, c)) << "asked after that reload started: waits for the next";
    EXPECT_EQ(desk.counts(), std::make_pair(uint64_t{1}, uint64_t{0}));
}

TEST(ReloadDesk, ConsumerTicketsAreTheirOwn) {
    using Errand = io::ReloadDesk::Errand;
    io::ReloadDesk desk;
    const uint64_t r = desk.ask(Errand::reload);
    const uint64_t k = desk.ask(Errand::consumers);
    io::ReloadOutcome o;
    o.generation = 7;
    desk.done(Errand::consumers, desk.asked(Errand::consumers), o);
    ASSERT_TRUE(desk.outcome(Errand::consumers, k));
    EXPECT_EQ(desk.outcome(Errand::consumers, k)->generation, 7u);
    EXPECT_FALSE(desk.outcome(Errand::reload, r)) << "a republish does not answer a reload";
    EXPECT_EQ(desk.counts(), std::make_pair(uint64_t{0}, uint64_t{0})) << "nor counts as one";
}
