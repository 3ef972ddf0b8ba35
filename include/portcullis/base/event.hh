// One event of the appliance's live stream (SPEC sections 5 and 9, GET /events): a fixed-size
// record that a thread fills in without allocating and hands to the control plane through its
// own single-producer queue; the control plane numbers, formats and serves it. Never a body,
// never a secret: the fields below are all it can carry.
//
//   base::Event e = base::Event::make(base::EventType::job_queued, clock.unix_ns);
//   e.route = route_index; e.set_id(id_text);
//   queue.try_push(e);   // full: dropped and counted, never waited for
#pragma once

#include "portcullis/base/address.hh"
#include "portcullis/base/spsc_queue.hh"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace portcullis::base {

enum class EventType : uint8_t {
    webhook_received,
    webhook_rejected,
    job_queued,
    job_leased,
    job_acked,
    job_nacked,
    job_dead,
    job_replayed,
    job_delivered,
    ratelimit_limited,
    config_reloaded,
    config_rejected,
    sink_breaker_opened,
    sink_breaker_closed,
    tls_certificate_reloaded,
    job_enqueued,
    config_token_minted,
    config_token_revoked,
    consumer_registered,
    consumer_removed,
    consumer_healthy,
    consumer_unhealthy,
};
constexpr size_t event_type_count = static_cast<size_t>(EventType::consumer_unhealthy) + 1;

constexpr std::string_view event_type_name(EventType t) {
    constexpr std::string_view names[event_type_count] = {
        "webhook.received",
        "webhook.rejected",
        "job.queued",
        "job.leased",
        "job.acked",
        "job.nacked",
        "job.dead",
        "job.replayed",
        "job.delivered",
        "ratelimit.limited",
        "config.reloaded",
        "config.rejected",
        "sink.breaker_opened",
        "sink.breaker_closed",
        "tls.certificate_reloaded",
        "job.enqueued",
        "config.token_minted",
        "config.token_revoked",
        "consumer.registered",
        "consumer.removed",
        "consumer.healthy",
        "consumer.unhealthy",
    };
    return names[static_cast<size_t>(t)];
}

struct Event {
    static constexpr uint16_t none = 0xffff;
    static constexpr size_t id_bytes = 32;
    static constexpr size_t text_bytes = 320;

    EventType type = EventType::webhook_received;
    uint8_t reason = 0; // webhook.rejected, ratelimit.limited: a base::RejectReason
    uint8_t shard = 0xff;
    bool has_peer = false;
    bool has_client = false; // a trusted proxy named a client other than the peer
    uint16_t status = 0;     // webhook.*: the answer's status code
    uint16_t route = none;   // index of the snapshot's routes
    uint16_t sink = none;    // index of the configuration's sinks
    uint32_t attempt = 0;
    int64_t ts_ns = 0;
    // webhook.received, job.enqueued: body bytes; ratelimit.limited: Retry-After seconds;
    // sink.breaker_opened: consecutive failures; tls.certificate_reloaded: not_after (Unix s);
    // config.reloaded: the generation (and `attempt` its route count).
    int64_t number = 0;
    PeerAddress peer;
    PeerAddress client;
    uint8_t id_size = 0;
    uint16_t text_size = 0;
    std::array<char, id_bytes> id{}; // the job's or request's id
    // webhook.rejected: the allow-listed headers as one JSON object; ratelimit.limited: the
    // limit ("client" or "route"); webhook.received: "queued" or "duplicate"; tls: the file;
    // config.rejected: the first error (cut to fit); job.enqueued: the name of the token that
    // sent it; config.token_minted|revoked: the token's name; consumer.*: the consumer's name
    // (consumer.unhealthy: `status` is the probe's answer, 0 when none came).
    std::array<char, text_bytes> text{};

    static Event make(EventType type, int64_t ts_ns) {
        Event e;
        e.type = type;
        e.ts_ns = ts_ns;
        return e;
    }
    // Both cut to fit (no caller's value is longer: ids are 26 characters).
    void set_id(std::string_view s) { id_size = static_cast<uint8_t>(copy(id, s)); }
    void set_text(std::string_view s) { text_size = static_cast<uint16_t>(copy(text, s)); }
    std::string_view id_view() const { return {id.data(), id_size}; }
    std::string_view text_view() const { return {text.data(), text_size}; }

private:
    template <size_t N>
    static size_t copy(std::array<char, N>& to, std::string_view s) {
        const size_t n = s.size() < N ? s.size() : N;
        for (size_t i = 0; i < n; ++i) {
            to[i] = s[i];
        }
        return n;
    }
};

// One per producing thread (each shard, the main thread), read by the control plane.
using EventQueue = SpscQueue<Event>;

} // namespace portcullis::base
