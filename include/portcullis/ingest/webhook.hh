// The path of one webhook, from a parsed request head and its body bytes to its answer:
// route -> admit -> verify -> dedup/ordering -> record -> spool hand-off -> answer. It knows no
// sockets: the shard's connection code (io/) frames HTTP and sends the answers, and everything
// this path needs from its shard (the clock, the spool, the log) come through small
// interfaces, so that tests drive it without a ring.
//
//   Ingest ingest(snapshot, tables, clock, host, pool, shard_index);
//   Webhook w;                        // pooled by the caller; one per request in progress
//   w.peer = peer; w.cookie = ...;    // the caller's, handed back through Host::enqueue
//   switch (ingest.head(w, head, draining)) {
//   case Next::answer:    send(w.answer); break;
//   case Next::read_body: ... ingest.body(w, bytes) ... ingest.end_of_body(w) ...
//   case Next::spooling:  ... when the spool reports: ingest.spooled(w, durable); send(w.answer)
//   }
//   ingest.release(w);                // after the answer (or when the connection is gone)
//
// A job enqueued from inside (POST /v1/routes/{route}/jobs, ingest/control_job.hh) takes the
// same path from the keys on, through submit() instead of head/body/end_of_body:
//
//   w.peer = control_plane_client; w.cookie = ...;
//   if (ingest.submit(w, route, headers, body, token, draining) == Next::spooling) { ... }
//   ... ingest.spooled(w, durable) ...; ingest.enqueue_answered(w); ingest.release(w);
#pragma once

#include "portcullis/admit/rate_limit.hh"
#include "portcullis/base/address.hh"
#include "portcullis/base/buffer_pool.hh"
#include "portcullis/base/event.hh"
#include "portcullis/base/log.hh"
#include "portcullis/base/reject_reason.hh"
#include "portcullis/config/snapshot.hh"
#include "portcullis/http/parser.hh"
#include "portcullis/ingest/route_stats.hh"
#include "portcullis/queue/dedup.hh"
#include "portcullis/queue/job_id.hh"
#include "portcullis/queue/keys.hh"
#include "portcullis/queue/record.hh"
#include "portcullis/verify/verifier.hh"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace portcullis::ingest {

// Time as the shard read it at the top of its loop iteration (tests set it).
struct Clock {
    int64_t unix_ns = 0;
    int64_t mono_ns = 0;
};

// The tables all shards share; each may be null when no route needs it.
struct Tables {
    queue::DedupTable* dedup = nullptr;
    queue::OrderingTable* ordering = nullptr;
    admit::RateLimiter* limiter = nullptr;
    // Mixed into the rate-limit keys: a random number of this process, so that outsiders
    // cannot aim at one client's bucket.
    uint64_t key_secret = 0;
};

// What the webhook path needs from its shard.
class Host {
public:
    // Hands a sealed record to the spool; `record` stays valid until Ingest::spooled() is called
    // for the webhook whose cookie this is. False when the spool cannot take it now.
    virtual bool enqueue(std::span<const uint8_t> record, uint64_t cookie,
                         config::Durability durability) = 0;
    // A finished log line (never blocks; the shard writes it through its ring or drops it).
    virtual void log(base::LogLine& line) = 0;
    // An event for GET /events (never blocks: a full queue drops it and counts).
    virtual void event(const base::Event& /*e*/) {}

protected:
    ~Host() = default;
};

// Counters of one shard's webhook path, written by its thread only, read racily by reports.
struct alignas(64) Stats {
    std::atomic<uint64_t> jobs_queued{0};
    std::atomic<uint64_t> handshakes{0};          // answered by the verifier, not enqueued
    std::atomic<uint64_t> ed25519_checks{0};      // signature verifications (~50 us of CPU each)
    std::atomic<uint64_t> duplicates{0};          // answered 200 duplicate
    std::atomic<uint64_t> dedup_in_flight{0};     // answered 503: the first copy was being written
    std::atomic<uint64_t> dedup_unkeyed{0};       // dedup route, request without the key: accepted
    std::atomic<uint64_t> ordering_unkeyed{0};    // ordering route, no key or timestamp: accepted
    std::atomic<uint64_t> ordering_unrecorded{0}; // accepted, but its bucket was too busy
    // By reason code (base::RejectReason), for every refused webhook.
    std::array<std::atomic<uint64_t>, base::reject_reason_count> rejected{};
};

// The answer to one request (to a HEAD request, the HTTP layer sends it without its body). Its
// views point into the answer itself, at constants or into the config snapshot (a route's
// Allow header), so it stays put in its Webhook until it is sent.
struct Answer {
    uint16_t status = 0;
    // The request's input was left unread (or cannot be trusted): the connection must close.
    bool close = false;
    std::string_view content_type = "application/json";
    std::string_view extra_headers; // whole lines, CRLF-terminated
    std::string_view body;
    std::array<char, 40> extra_text{};
    std::array<char, verify::max_handshake_answer> body_text{};

    Answer() = default;
    Answer(const Answer&) = delete;
    Answer& operator=(const Answer&) = delete;
};

// What the caller does next with a webhook.
enum class Next : uint8_t {
    answer,    // w.answer is final: send it
    read_body, // feed the body to body(), then call end_of_body()
    spooling,  // the record is in the spool: spooled() will set the answer
};

// One request between its head and its answer. The caller owns and pools these; the fields
// above `route` are the caller's to set before head().
struct Webhook {
    base::PeerAddress peer;   // the socket's peer (or the client a PROXY header named)
    uint64_t cookie = 0;      // handed to Host::enqueue with the record
    int64_t head_mono_ns = 0; // when its head was complete: the start of its duration

    // The configuration the request started under, held until release(): a reload in the
    // meantime does not change what its route, limits and answer refer to.
    const config::Snapshot* snap = nullptr;
    const config::Route* route = nullptr;
    base::Buffer* record = nullptr; // record head, then the body as it arrives
    size_t body_start = 0;
    uint64_t body_bytes = 0;
    queue::JobId id;
    int64_t received_ns = 0;
    // Who sent it: the peer, or the address a trusted proxy forwarded it for.
    base::PeerAddress client;
    verify::VerifyState verify;
    // Dedup and ordering: the keys found so far (head fields at the head, json fields once the
    // body is complete), and the dedup claim held while the job is being written.
    queue::RecordKeys keys;
    std::optional<queue::Fingerprint> ordering_key;
    std::optional<int64_t> ordering_ts;
    queue::FingerprintTable::Ref dedup_claim;
    bool dedup_held = false;
    bool queued = false; // durable: its 202 is owed
    // A job enqueued through the control plane (submit()): the name of the token that sent it;
    // empty for a webhook of the public plane.
    std::string_view source;
    Answer answer;
};

class Ingest {
public:
    Ingest(const config::Snapshot& snapshot, const Tables& tables, const Clock& clock, Host& host,
           base::BufferPool& pool, uint8_t shard);
    Ingest(const Ingest&) = delete;
    Ingest& operator=(const Ingest&) = delete;

    // Start-up: a job recovered from the spool is remembered as if it had just been accepted,
    // under the dedup window its route has now, so that a restart does not forget.
    void remember(const queue::JobRecord& record);

    // A complete request head (its views valid during the call only). `draining`: the shard is
    // shutting down and takes no new work.
    Next head(Webhook& w, const http::RequestHead& head, bool draining);
    // Body bytes (after the transfer coding is removed) as they arrive: Next::read_body to go
    // on, or Next::answer when the request is refused (the rest of the body is not read).
    Next body(Webhook& w, std::string_view data);
    // The whole body is in: verify, admit by keys, hand the record to the spool.
    Next end_of_body(Webhook& w);
    // The spool's outcome for w's record: sets the 202, or the 503 of a failed write.
    void spooled(Webhook& w, bool durable);

    // A job enqueued through the control plane (POST /v1/routes/{route}/jobs), which has
    // authorized the token for the route and checked nothing else. The job skips what guards the
    // public plane (signature verification, allow and deny, rate limits: the token is the
    // sender's credential) and takes the rest of its path: the route's dedup and ordering keys,
    // as far as the headers and the JSON body carry them (a query or path field cannot be read:
    // the request was not made to the route's path, so such a key counts as missing), then the
    // record, stored with `token` as its source and w.peer (the control-plane client) as its
    // peer, and the spool hand-off. The headers are stored as the route stores a webhook's,
    // less every credential whatever keep_headers says (Authorization carries the control
    // plane's token). Answers as end_of_body: Next::spooling, then spooled(); or Next::answer
    // (duplicate, conflict, stale, in progress, a refused spool, draining, a body over
    // server.limits.body_bytes, a route the snapshot does not have). The views must stay valid
    // until the answer is final (the record is copied; events name the token when it is).
    Next submit(Webhook& w, std::string_view route, std::span<const http::Header> headers,
                std::string_view body, std::string_view token, bool draining);
    // The final answer of a submitted job: counts it under its route by outcome and returns it.
    EnqueueOutcome enqueue_answered(const Webhook& w);
    // The exchange is over (answered, timed out or the connection is gone): frees the record
    // and gives back a dedup claim that was never made durable. w may be reused afterwards.
    void release(Webhook& w);

    // The peer, and the client when a proxy named another, as log fields.
    static void add_peer(base::LogLine& line, const Webhook& w);

    // A reload: requests from the next head() on are served under next; those in progress keep
    // the snapshot they started with. Called between requests (the shard's loop), never during
    // one. Makes next's routes' counter blocks (an allocation per 64 new route names).
    void use(const config::Snapshot& next);
    const config::Snapshot& snapshot() const { return *_snap; }
    // The generation of the oldest snapshot a request in progress still holds (the current one
    // when none does): older ones may be freed.
    uint64_t oldest_generation() const { return _held.front().snap->generation(); }

    const Stats& stats() const { return _stats; }
    // Each route's counters by Route::slot, and those of requests that matched no route.
    const RouteStatsTable& route_stats() const { return _route_stats; }
    const RouteStats& unmatched_stats() const { return _unmatched; }
    // The answer of w (status) is written: counts it under w's route and records its duration,
    // from w.head_mono_ns to the clock's now.
    void answered(const Webhook& w, uint16_t status);

private:
    Next refuse(Webhook& w, uint16_t status, base::RejectReason reason,
                std::span<const http::Header> headers, bool close, std::string_view extra = {});
    Next refuse_denied(Webhook& w, const base::PeerAddress& client, bool has_body);
    bool admit_rate(Webhook& w, uint64_t key, const admit::Limit& limit,
                    std::span<const http::Header> headers, bool close);
    void read_keys(Webhook& w, const http::RequestHead* head, std::string_view body);
    bool admit_keys(Webhook& w, std::span<uint8_t> record);
    void settle_keys(Webhook& w, bool durable);
    void answer_job(Webhook& w, uint16_t status, const queue::JobId& id, std::string_view state);
    static Next answer(Webhook& w, uint16_t status, std::string_view body,
                       std::string_view extra_headers, bool close);
    void log(base::LogLine& line) { _host.log(line); }
    // An event of w's route, request id and peer.
    base::Event event_of(const Webhook& w, base::EventType type) const;
    void emit_received(const Webhook& w, uint16_t status, std::string_view outcome);
    // submit()'s counterparts of refuse() and emit_received().
    Next refuse_enqueue(Webhook& w, uint16_t status, base::RejectReason reason);
    void emit_enqueued(const Webhook& w, uint16_t status);

    // Snapshots that requests in progress hold, oldest first; the last is _snap (the one new
    // requests get), held by `webhooks` requests.
    struct Held {
        const config::Snapshot* snap;
        uint32_t webhooks;
    };
    const config::Snapshot* _snap;
    std::vector<Held> _held;
    Tables _tables;
    const Clock& _clock;
    Host& _host;
    base::BufferPool& _pool;
    queue::JobIdGenerator _ids;
    std::vector<http::Header> _stored_headers;
    uint8_t _shard;
    Stats _stats;
    RouteStatsTable _route_stats;
    RouteStats _unmatched;
};

} // namespace portcullis::ingest
