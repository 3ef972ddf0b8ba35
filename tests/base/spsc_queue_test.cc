#include "portcullis/base/event.hh"
#include "portcullis/base/spsc_queue.hh"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace portcullis::base {
namespace {

TEST(SpscQueue, FifoAndFullDropsAreCounted) {
    SpscQueue<int> q(3); // rounded up to 4
    EXPECT_EQ(q.capacity(), 4u);
    for (int i = 0; i < 4; ++i) {
        EXPECT_TRUE(q.try_push(i));
    }
    EXPECT_FALSE(q.try_push(99));
    EXPECT_FALSE(q.try_push(100));
    EXPECT_EQ(q.dropped(), 2u);
    int v = -1;
    for (int i = 0; i < 4; ++i) {
        ASSERT_TRUE(q.try_pop(v));
        EXPECT_EQ(v, i);
    }
    EXPECT_FALSE(q.try_pop(v));
    EXPECT_TRUE(q.empty());
    // Wraps around its slots.
    for (int round = 0; round < 10; ++round) {
        EXPECT_TRUE(q.try_push(round));
        EXPECT_TRUE(q.try_push(round + 1000));
        EXPECT_FALSE(q.empty());
        ASSERT_TRUE(q.try_pop(v));
        EXPECT_EQ(v, round);
        ASSERT_TRUE(q.try_pop(v));
        EXPECT_EQ(v, round + 1000);
    }
    EXPECT_EQ(q.dropped(), 2u);
}

// One producer, one consumer, a queue far smaller than the stream: every item the producer
// says it pushed arrives once, in order, and every refusal is counted.
TEST(SpscQueue, TwoThreadsKeepOrderAndCountDrops) {
    struct Item {
        uint64_t seq = 0;
        uint64_t check = 0;
    };
    SpscQueue<Item> q(64);
    constexpr uint64_t total = 2'000'000;
    std::atomic<bool> done{false};
    uint64_t pushed = 0;
    std::thread producer([&] {
        for (uint64_t i = 0; i < total; ++i) {
            if (q.try_push({i, i * 2654435761u})) {
                ++pushed;
            }
        }
        done.store(true, std::memory_order_release);
    });
    uint64_t received = 0;
    uint64_t last = 0;
    bool ordered = true;
    bool intact = true;
    Item it;
    while (true) {
        if (q.try_pop(it)) {
            ordered = ordered && (received == 0 || it.seq > last);
            intact = intact && it.check == it.seq * 2654435761u;
            last = it.seq;
            ++received;
            continue;
        }
        if (done.load(std::memory_order_acquire)) {
            while (q.try_pop(it)) {
                ordered = ordered && (received == 0 || it.seq > last);
                intact = intact && it.check == it.seq * 2654435761u;
                last = it.seq;
                ++received;
            }
            break;
        }
    }
    producer.join();
    EXPECT_TRUE(ordered);
    EXPECT_TRUE(intact);
    EXPECT_EQ(received, pushed);
    EXPECT_EQ(pushed + q.dropped(), total);
    EXPECT_GT(received, 0u);
}

TEST(Event, TextAndIdAreCutToTheirSlots) {
    Event e = Event::make(EventType::job_queued, 5);
    e.set_id(std::string(100, 'x'));
    EXPECT_EQ(e.id_view().size(), Event::id_bytes);
    e.set_text("abc");
    EXPECT_EQ(e.text_view(), "abc");
    EXPECT_EQ(event_type_name(EventType::tls_certificate_reloaded), "tls.certificate_reloaded");
}

} // namespace
} // namespace portcullis::base
