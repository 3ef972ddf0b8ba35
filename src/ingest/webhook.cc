#include "portcullis/ingest/webhook.hh"

#include "portcullis/admit/client_ip.hh"
#include "portcullis/base/encoding.hh"
#include "portcullis/base/json.hh"
#include "portcullis/base/single_writer.hh"
#include "portcullis/http/error_bodies.hh"
#include "portcullis/http/header_policy.hh"

#include <cstdio>
#include <netinet/in.h>

namespace portcullis::ingest {

namespace {

using base::Level;
using base::LogLine;
namespace error_body = http::error_body;

// Chunked bodies start with this much room and grow by doubling.
constexpr size_t chunked_initial_room = 16 * 1024;

constexpr std::string_view retry_after_header = "Retry-After: 1\r\n";

std::string_view reject_body(base::RejectReason reason) {
    switch (reason) {
    case base::RejectReason::body_too_large:
        return error_body::too_large;
    case base::RejectReason::conflict:
        return error_body::conflict;
    case base::RejectReason::stale:
        return error_body::stale;
    case base::RejectReason::ip_denied:
        return error_body::forbidden;
    case base::RejectReason::rate_limited:
        return error_body::rate_limited;
    default:
        return error_body::unauthorized;
    }
}

// Copies `text` into `room` (it always fits: the callers' texts are bounded) and views it.
std::string_view keep(std::span<char> room, std::string_view text) {
    size_t n = text.size() < room.size() ? text.size() : room.size();
    std::copy_n(text.data(), n, room.data());
    return {room.data(), n};
}

// The counter blocks of every route of snap (slots only grow).
void reserve_route_stats(RouteStatsTable& table, const config::Snapshot& snap) {
    uint32_t slots = 0;
    for (const config::Route& r : snap.routes()) {
        slots = std::max(slots, r.slot + 1);
    }
    table.reserve(slots);
}

} // namespace

Ingest::Ingest(const config::Snapshot& snapshot, const Tables& tables, const Clock& clock,
               Host& host, base::BufferPool& pool, uint8_t shard)
    : _snap(&snapshot), _tables(tables), _clock(clock), _host(host), _pool(pool), _ids(shard),
      _stored_headers(snapshot.config().server.headers), _shard(shard) {
    // A handful of reloads may overlap slow requests before the vector has to grow.
    _held.reserve(8);
    _held.push_back({_snap, 0});
    reserve_route_stats(_route_stats, snapshot);
}

void Ingest::use(const config::Snapshot& next) {
    if (&next == _snap) {
        return;
    }
    reserve_route_stats(_route_stats, next);
    if (next.config().server.headers > _stored_headers.size()) {
        _stored_headers.resize(next.config().server.headers);
    }
    if (_held.back().webhooks == 0) {
        _held.pop_back();
    }
    _held.push_back({&next, 0});
    _snap = &next;
}

void Ingest::answered(const Webhook& w, uint16_t status) {
    RouteStats& s = w.route != nullptr ? _route_stats.at(w.route->slot) : _unmatched;
    base::add_single_writer(s.answered[status_slot(status)]);
    s.duration.record(_clock.mono_ns - w.head_mono_ns);
}

// ---- the head ------------------------------------------------------------------------------

Next Ingest::head(Webhook& w, const http::RequestHead& head, bool draining) {
    const bool has_body =
        head.framing == http::BodyFraming::chunked ||
        (head.framing == http::BodyFraming::content_length && head.content_length > 0);
    w.route = nullptr;
    w.client = w.peer;
    if (w.snap == nullptr) {
        w.snap = _snap;
        ++_held.back().webhooks;
    }
    const config::Snapshot& snap = *w.snap;
    if (draining) {
        return answer(w, 503, error_body::unavailable, retry_after_header, true);
    }
    if (head.path == "/healthz") {
        if (head.method != "GET" && head.method != "HEAD") {
            return answer(w, 405, error_body::method_not_allowed, "Allow: GET, HEAD\r\n", has_body);
        }
        answer(w, 200, "ok", {}, has_body);
        w.answer.content_type = "text/plain";
        return Next::answer;
    }
    // Who is asking, before anything else is spent on them.
    const base::PeerAddress client =
        snap.trusted_proxies().empty()
            ? w.peer
            : admit::client_address(w.peer, head.headers, snap.trusted_proxies());
    if (snap.deny().contains(client)) {
        return refuse_denied(w, client, has_body);
    }
    const config::Route* route = snap.match(head.path);
    if (route == nullptr) {
        return answer(w, 404, error_body::not_found, {}, has_body);
    }
    if (!route->allows_method(head.method)) {
        return answer(w, 405, error_body::method_not_allowed, route->allow_header, has_body);
    }
    w.route = route;
    w.id = _ids.next(_clock.unix_ns);
    w.received_ns = _clock.unix_ns;
    w.client = client;
    w.keys = {};
    w.ordering_key.reset();
    w.ordering_ts.reset();
    w.dedup_held = false;
    w.queued = false;
    w.body_bytes = 0;
    w.verify.reset();
    if (!route->allow.empty() && !route->allow.contains(client)) {
        return refuse(w, 403, base::RejectReason::ip_denied, head.headers, has_body);
    }
    // The per-client limit comes before any byte of the body is hashed: a flood costs a table
    // lookup.
    if (route->per_ip_limit &&
        !admit_rate(w, admit::rate_key(route->key_seed ^ _tables.key_secret, client),
                    *route->per_ip_limit, head.headers, has_body)) {
        return Next::answer;
    }
    if (route->config->dedup || route->config->ordering) {
        read_keys(w, &head, {});
    }
    if (head.framing == http::BodyFraming::content_length &&
        head.content_length > snap.config().server.body_bytes) {
        // Decided from Content-Length before reading any of the body.
        return refuse(w, 413, base::RejectReason::body_too_large, head.headers, true);
    }
    verify::Reason reason = route->verifier->begin(head.headers, _clock.unix_ns, w.verify);
    if (reason != verify::Reason::ok) {
        return refuse(w, 401, verify::reject_reason_of(reason), head.headers, has_body);
    }
    // Stored with the job: the request's fields less those the route does not keep.
    std::span<const http::Header> stored(
        _stored_headers.data(),
        http::select_stored(head.headers, route->stored_fields, _stored_headers));
    queue::JobMeta meta{w.id, route->config->name, _clock.unix_ns, w.client,
                        route->config->dedup.has_value() || route->config->ordering.has_value()};
    size_t head_size = queue::job_record_head_size(meta.route, stored, meta.with_keys);
    size_t body_room =
        head.framing == http::BodyFraming::chunked ? chunked_initial_room : head.content_length;
    w.record = _pool.acquire(head_size + body_room);
    if (w.record == nullptr) {
        return answer(w, 503, error_body::unavailable, retry_after_header, true);
    }
    w.record->size = queue::encode_job_head(
        meta, stored, std::span<uint8_t>(w.record->data(), w.record->capacity));
    w.body_start = w.record->size;
    if (!has_body) {
        return end_of_body(w);
    }
    return Next::read_body;
}

// ---- the body ------------------------------------------------------------------------------

Next Ingest::body(Webhook& w, std::string_view data) {
    if (w.body_bytes + data.size() > w.snap->config().server.body_bytes) {
        // Only a chunked body can get here: a declared length was checked at the head.
        return refuse(w, 413, base::RejectReason::body_too_large, {}, true);
    }
    if (w.record->room() < data.size()) {
        size_t want = w.record->capacity * 2;
        if (want < w.record->size + data.size()) {
            want = w.record->size + data.size();
        }
        base::Buffer* bigger = _pool.grow(w.record, want);
        if (bigger == nullptr) {
            return answer(w, 503, error_body::unavailable, retry_after_header, true);
        }
        w.record = bigger;
    }
    w.record->append(data.data(), data.size());
    w.body_bytes += data.size();
    base::add_single_writer(_route_stats.at(w.route->slot).body_bytes, data.size());
    w.route->verifier->update(w.verify, base::as_bytes(data));
    return Next::read_body;
}

Next Ingest::end_of_body(Webhook& w) {
    std::span<uint8_t> record = w.record->bytes();
    const verify::Verifier& verifier = *w.route->verifier;
    verify::Reason reason = verifier.finish(w.verify, {record, w.body_start});
    _stats.ed25519_checks.fetch_add(w.verify.ed25519_checks, std::memory_order_relaxed);
    if (reason != verify::Reason::ok) {
        return refuse(w, 401, verify::reject_reason_of(reason), {}, false);
    }
    // The route's limit counts verified requests only: forged ones cannot spend it.
    if (w.route->route_limit &&
        !admit_rate(w, admit::route_rate_key(w.route->key_seed ^ _tables.key_secret),
                    *w.route->route_limit, {}, false)) {
        return Next::answer;
    }
    std::array<char, verify::max_handshake_answer> handshake;
    if (std::string_view hs = verifier.handshake(record.subspan(w.body_start), handshake);
        !hs.empty()) {
        // The provider checking the endpoint (Slack url_verification, Discord PING): answered
        // after verification, never enqueued.
        _stats.handshakes.fetch_add(1, std::memory_order_relaxed);
        return answer(w, 200, keep(w.answer.body_text, hs), {}, false);
    }
    if (!admit_keys(w, record)) {
        return Next::answer;
    }
    queue::seal_record(record);
    config::Durability durability =
        w.route->config->durability.value_or(w.snap->config().spool.durability);
    if (!_host.enqueue(record, w.cookie, durability)) {
        settle_keys(w, false);
        return answer(w, 503, error_body::unavailable, retry_after_header, false);
    }
    return Next::spooling;
}

void Ingest::spooled(Webhook& w, bool durable) {
    settle_keys(w, durable);
    if (!durable) {
        answer(w, 503, error_body::unavailable, retry_after_header, false);
        return;
    }
    _stats.jobs_queued.fetch_add(1, std::memory_order_relaxed);
    w.queued = true;
    answer_job(w, 202, w.id, "queued");
    emit_received(w, 202, "queued");
    base::Event e = event_of(w, base::EventType::job_queued);
    e.has_peer = e.has_client = false;
    _host.event(e);
}

void Ingest::release(Webhook& w) {
    if (w.route != nullptr) {
        settle_keys(w, false);
    }
    _pool.release(w.record);
    w.record = nullptr;
    w.route = nullptr;
    w.queued = false;
    if (w.snap != nullptr) {
        // The current snapshot is the last entry; an older one goes with its last request.
        for (size_t i = _held.size(); i-- > 0;) {
            if (_held[i].snap == w.snap) {
                if (--_held[i].webhooks == 0 && i + 1 != _held.size()) {
                    _held.erase(_held.begin() + static_cast<std::ptrdiff_t>(i));
                }
                break;
            }
        }
        w.snap = nullptr;
    }
    w.source = {};
}

// ---- rate limits ---------------------------------------------------------------------------

// Counts the request against a limit; refuses it (429 with Retry-After in whole seconds) and
// returns false when the limit is spent.
bool Ingest::admit_rate(Webhook& w, uint64_t key, const admit::Limit& limit,
                        std::span<const http::Header> headers, bool close) {
    admit::RateLimiter::Decision d = _tables.limiter->check(key, limit, _clock.mono_ns);
    if (d.allowed) {
        return true;
    }
    int n = std::snprintf(w.answer.extra_text.data(), w.answer.extra_text.size(),
                          "Retry-After: %lld\r\n", static_cast<long long>(d.retry_after_s));
    refuse(w, 429, base::RejectReason::rate_limited, headers, close,
           std::string_view(w.answer.extra_text.data(), n > 0 ? static_cast<size_t>(n) : 0));
    base::Event e = event_of(w, base::EventType::ratelimit_limited);
    e.reason = static_cast<uint8_t>(base::RejectReason::rate_limited);
    e.status = 429;
    e.number = d.retry_after_s;
    const bool per_client = w.route->per_ip_limit && &limit == &*w.route->per_ip_limit;
    e.set_text(per_client ? "client" : "route");
    _host.event(e);
    return false;
}

// ---- answers -------------------------------------------------------------------------------

Next Ingest::answer(Webhook& w, uint16_t status, std::string_view body,
                    std::string_view extra_headers, bool close) {
    Answer& a = w.answer;
    a.status = status;
    a.body = body;
    a.extra_headers = extra_headers;
    a.close = close;
    a.content_type = "application/json";
    return Next::answer;
}

// 202 {"id":..,"status":"queued"} or 200 {"id":<first>,"status":"duplicate"}.
void Ingest::answer_job(Webhook& w, uint16_t status, const queue::JobId& id,
                        std::string_view state) {
    char text[queue::job_id_text_size];
    id.format(text);
    base::FixedBuffer<96> body;
    base::JsonWriter json(body);
    json.begin_object()
        .key("id")
        .string(std::string_view(text, sizeof text))
        .key("status")
        .string(state)
        .end_object();
    answer(w, status, keep(w.answer.body_text, body.view()), {}, false);
}

// Refuses the current request (w.route is set). `close` when its body is left unread. One log
// line and one count per route and reason.
Next Ingest::refuse(Webhook& w, uint16_t status, base::RejectReason reason,
                    std::span<const http::Header> headers, bool close, std::string_view extra) {
    if (!w.source.empty()) {
        return refuse_enqueue(w, status, reason);
    }
    _stats.rejected[base::index(reason)].fetch_add(1, std::memory_order_relaxed);
    base::add_single_writer(_route_stats.at(w.route->slot).rejected[base::index(reason)]);
    LogLine line(Level::warn, "webhook rejected", _clock.unix_ns);
    line.field("reason", base::reject_reason_code(reason))
        .field("status", static_cast<int64_t>(status))
        .field("route", std::string_view(w.route->config->name));
    add_peer(line, w);
    char id[queue::job_id_text_size];
    w.id.format(id);
    line.field("request_id", std::string_view(id, sizeof id));
    // Never a body, never a secret: only fields that identify the sender, with signature values
    // cut short. After the body, the head is gone from the receive buffers; the stored copy in
    // the record is read back instead (this path only).
    std::span<const http::Header> shown = headers;
    if (headers.empty() && w.record != nullptr && w.record->size >= w.body_start) {
        queue::seal_record(w.record->bytes());
        queue::JobRecord stored;
        size_t size = 0;
        size_t n = 0;
        if (queue::decode_record(w.record->bytes(), stored, size) == queue::DecodeStatus::ok) {
            stored.for_each_header([&](std::string_view name, std::string_view value) {
                if (n < _stored_headers.size()) {
                    _stored_headers[n++] = {name, value};
                }
            });
        }
        shown = {_stored_headers.data(), n};
    }
    http::log_headers(line, shown, w.route->stored_fields);
    log(line);
    base::Event e = event_of(w, base::EventType::webhook_rejected);
    e.reason = static_cast<uint8_t>(reason);
    e.status = status;
    e.text_size = static_cast<uint16_t>(http::json_headers(e.text, shown, w.route->stored_fields));
    _host.event(e);
    return answer(w, status, reject_body(reason), extra, close);
}

// server.deny: refused on every path, before any route is looked up.
Next Ingest::refuse_denied(Webhook& w, const base::PeerAddress& client, bool has_body) {
    _stats.rejected[base::index(base::RejectReason::ip_denied)].fetch_add(
        1, std::memory_order_relaxed);
    base::add_single_writer(_unmatched.rejected[base::index(base::RejectReason::ip_denied)]);
    LogLine line(Level::warn, "request refused", _clock.unix_ns);
    line.field("reason", base::reject_reason_code(base::RejectReason::ip_denied))
        .field("status", int64_t{403});
    add_peer(line, w);
    char ip[INET6_ADDRSTRLEN];
    line.field("client", client.format_ip(ip));
    log(line);
    base::Event e = base::Event::make(base::EventType::webhook_rejected, _clock.unix_ns);
    e.reason = static_cast<uint8_t>(base::RejectReason::ip_denied);
    e.status = 403;
    e.shard = _shard;
    e.has_peer = true;
    e.peer = w.peer;
    e.has_client = !(client == w.peer);
    e.client = client;
    _host.event(e);
    return answer(w, 403, error_body::forbidden, {}, has_body);
}

base::Event Ingest::event_of(const Webhook& w, base::EventType type) const {
    base::Event e = base::Event::make(type, _clock.unix_ns);
    e.shard = _shard;
    e.route = static_cast<uint16_t>(w.route->slot);
    char id[queue::job_id_text_size];
    w.id.format(id);
    e.set_id(std::string_view(id, sizeof id));
    e.has_peer = true;
    e.peer = w.peer;
    e.has_client = !(w.client == w.peer);
    e.client = w.client;
    return e;
}

void Ingest::emit_received(const Webhook& w, uint16_t status, std::string_view outcome) {
    if (!w.source.empty()) {
        emit_enqueued(w, status);
        return;
    }
    base::Event e = event_of(w, base::EventType::webhook_received);
    e.status = status;
    e.number = static_cast<int64_t>(w.body_bytes);
    e.set_text(outcome);
    _host.event(e);
}

void Ingest::add_peer(LogLine& line, const Webhook& w) {
    char ip[INET6_ADDRSTRLEN];
    line.field("peer", w.peer.format_ip(ip));
    if (w.route != nullptr && !(w.client == w.peer)) {
        line.field("client", w.client.format_ip(ip));
    }
}

// ---- dedup and ordering --------------------------------------------------------------------

void Ingest::remember(const queue::JobRecord& rec) {
    const config::Route* route = nullptr;
    for (const config::Route& r : _snap->routes()) {
        if (r.config->name == rec.route) {
            route = &r;
        }
    }
    if (route == nullptr) {
        return;
    }
    const int64_t now = _clock.unix_ns;
    if (rec.keys.has_dedup && route->config->dedup && _tables.dedup != nullptr) {
        _tables.dedup->remember(rec.keys.dedup_key, rec.keys.body, rec.id,
                                rec.received_at_ns + route->config->dedup->window_ns, now);
    }
    if (rec.keys.has_ordering && route->config->ordering && _tables.ordering != nullptr) {
        _tables.ordering->advance(rec.keys.ordering_key, rec.keys.ordering_ts, now);
    }
}

// Reads the keys whose field references this stage can see: header, query and path ones from
// the head (while its views are valid: head set), json ones from the complete body.
void Ingest::read_keys(Webhook& w, const http::RequestHead* head, std::string_view body) {
    const config::RouteConfig& rc = *w.route->config;
    auto value = [&](const config::FieldRef& ref) -> std::optional<std::string_view> {
        if ((ref.kind == config::FieldRef::Kind::json) != (head == nullptr)) {
            return std::nullopt; // read at the other stage
        }
        return head != nullptr ? queue::head_field(ref, *head, *w.route)
                               : queue::json_field(ref, body);
    };
    auto key = [&](std::string_view v) {
        return queue::fingerprint(base::as_bytes(v), w.route->key_seed);
    };
    if (rc.dedup) {
        if (auto v = value(rc.dedup->key)) {
            w.keys.has_dedup = true;
            w.keys.dedup_key = key(*v);
        }
    }
    if (rc.ordering) {
        if (auto v = value(rc.ordering->key)) {
            w.ordering_key = key(*v);
        }
        if (auto v = value(rc.ordering->timestamp)) {
            w.ordering_ts = queue::parse_timestamp(*v);
        }
    }
}

// With the body complete and verified: reads the json keys, answers a duplicate, a conflict or
// a stale event, and otherwise claims the dedup key and fills the record's keys block. Returns
// false when the request has been answered.
bool Ingest::admit_keys(Webhook& w, std::span<uint8_t> record) {
    const config::RouteConfig& rc = *w.route->config;
    if (!rc.dedup && !rc.ordering) {
        return true;
    }
    std::string_view body(reinterpret_cast<const char*>(record.data()) + w.body_start,
                          record.size() - w.body_start);
    read_keys(w, nullptr, body);
    if (rc.dedup && !w.keys.has_dedup) {
        // Nothing to deduplicate by: accepted as it is, and counted.
        _stats.dedup_unkeyed.fetch_add(1, std::memory_order_relaxed);
    }
    if (w.keys.has_dedup) {
        w.keys.body = queue::fingerprint(base::as_bytes(body));
        queue::DedupTable::Claim claim =
            _tables.dedup->claim(w.keys.dedup_key, w.keys.body, w.id,
                                 w.received_ns + rc.dedup->window_ns, _clock.unix_ns);
        switch (claim.outcome) {
        case queue::DedupTable::Outcome::claimed:
            w.dedup_claim = claim.ticket;
            w.dedup_held = true;
            break;
        case queue::DedupTable::Outcome::duplicate:
            _stats.duplicates.fetch_add(1, std::memory_order_relaxed);
            answer_job(w, 200, claim.first, "duplicate");
            emit_received(w, 200, "duplicate");
            return false;
        case queue::DedupTable::Outcome::conflict:
            refuse(w, 409, base::RejectReason::conflict, {}, false);
            return false;
        case queue::DedupTable::Outcome::in_flight:
            _stats.dedup_in_flight.fetch_add(1, std::memory_order_relaxed);
            answer(w, 503, error_body::in_progress, retry_after_header, false);
            return false;
        }
    }
    if (rc.ordering) {
        w.keys.has_ordering = w.ordering_key.has_value() && w.ordering_ts.has_value();
        if (!w.keys.has_ordering) {
            _stats.ordering_unkeyed.fetch_add(1, std::memory_order_relaxed);
        } else {
            w.keys.ordering_key = *w.ordering_key;
            w.keys.ordering_ts = *w.ordering_ts;
            if (_tables.ordering->stale(w.keys.ordering_key, w.keys.ordering_ts, _clock.unix_ns)) {
                settle_keys(w, false);
                refuse(w, 409, base::RejectReason::stale, {}, false);
                return false;
            }
        }
    }
    queue::set_record_keys(record, w.keys);
    return true;
}

// The job is durable (the keys take effect) or was not written (the dedup key is free).
void Ingest::settle_keys(Webhook& w, bool durable) {
    if (w.dedup_held) {
        if (durable) {
            _tables.dedup->commit(w.dedup_claim);
        } else {
            _tables.dedup->abandon(w.dedup_claim);
        }
        w.dedup_held = false;
    }
    if (durable && w.keys.has_ordering &&
        !_tables.ordering->advance(w.keys.ordering_key, w.keys.ordering_ts, _clock.unix_ns)) {
        _stats.ordering_unrecorded.fetch_add(1, std::memory_order_relaxed);
    }
}

// ---- jobs enqueued through the control plane -----------------------------------------------

Next Ingest::submit(Webhook& w, std::string_view route_name, std::span<const http::Header> headers,
                    std::string_view body, std::string_view token, bool draining) {
    w.route = nullptr;
    w.client = w.peer;
    w.source = token;
    if (w.snap == nullptr) {
        w.snap = _snap;
        ++_held.back().webhooks;
    }
    // By name, in this shard's own snapshot: the control plane's may be another (a reload).
    const config::Route* route = nullptr;
    for (const config::Route& r : w.snap->routes()) {
        if (r.config->name == route_name) {
            route = &r;
        }
    }
    if (route == nullptr) {
        return answer(w, 404, error_body::not_found, {}, false);
    }
    w.route = route;
    if (draining) {
        return answer(w, 503, error_body::unavailable, retry_after_header, false);
    }
    w.id = _ids.next(_clock.unix_ns);
    w.received_ns = _clock.unix_ns;
    w.keys = {};
    w.ordering_key.reset();
    w.ordering_ts.reset();
    w.dedup_held = false;
    w.queued = false;
    w.body_bytes = body.size();
    if (body.size() > w.snap->config().server.body_bytes) {
        return refuse(w, 413, base::RejectReason::body_too_large, {}, false);
    }
    if (headers.size() > _stored_headers.size()) {
        return answer(w, 431, error_body::bad_request, {}, false);
    }
    // Header fields of the keys; query and path ones find nothing in a head without them.
    if (route->config->dedup || route->config->ordering) {
        http::RequestHead head;
        head.headers = headers;
        read_keys(w, &head, {});
    }
    http::StoredFields policy = route->stored_fields;
    policy.kept_credentials = 0;
    std::span<const http::Header> stored(_stored_headers.data(),
                                         http::select_stored(headers, policy, _stored_headers));
    queue::JobMeta meta{w.id,
                        route->config->name,
                        _clock.unix_ns,
                        w.peer,
                        route->config->dedup.has_value() || route->config->ordering.has_value(),
                        token};
    const size_t head_size =
        queue::job_record_head_size(meta.route, stored, meta.with_keys, meta.source);
    w.record = _pool.acquire(head_size + body.size());
    if (w.record == nullptr) {
        return answer(w, 503, error_body::unavailable, retry_after_header, false);
    }
    w.record->size = queue::encode_job_head(
        meta, stored, std::span<uint8_t>(w.record->data(), w.record->capacity));
    if (w.record->size == 0) {
        return answer(w, 431, error_body::bad_request, {}, false); // a field past its format
    }
    w.body_start = w.record->size;
    w.record->append(body.data(), body.size());
    std::span<uint8_t> record = w.record->bytes();
    if (!admit_keys(w, record)) {
        return Next::answer;
    }
    queue::seal_record(record);
    config::Durability durability =
        route->config->durability.value_or(w.snap->config().spool.durability);
    if (!_host.enqueue(record, w.cookie, durability)) {
        settle_keys(w, false);
        return answer(w, 503, error_body::unavailable, retry_after_header, false);
    }
    return Next::spooling;
}

EnqueueOutcome Ingest::enqueue_answered(const Webhook& w) {
    const Answer& a = w.answer;
    EnqueueOutcome o = EnqueueOutcome::refused;
    switch (a.status) {
    case 202:
        o = EnqueueOutcome::queued;
        break;
    case 200:
        o = EnqueueOutcome::duplicate;
        break;
    case 409:
        o = a.body == error_body::stale ? EnqueueOutcome::stale : EnqueueOutcome::conflict;
        break;
    case 503:
        o = a.body == error_body::in_progress ? EnqueueOutcome::in_progress
                                              : EnqueueOutcome::unavailable;
        break;
    default:
        break;
    }
    RouteStats& s = w.route != nullptr ? _route_stats.at(w.route->slot) : _unmatched;
    base::add_single_writer(s.enqueued[static_cast<size_t>(o)]);
    return o;
}

// A submitted job refused for its keys (409) or its size (413): logged with the token, counted
// by enqueue_answered(), never as a public-plane rejection (no webhook.rejected either).
Next Ingest::refuse_enqueue(Webhook& w, uint16_t status, base::RejectReason reason) {
    LogLine line(Level::warn, "enqueue refused", _clock.unix_ns);
    line.field("reason", base::reject_reason_code(reason))
        .field("status", static_cast<int64_t>(status))
        .field("route", std::string_view(w.route->config->name))
        .field("token", w.source);
    add_peer(line, w);
    char id[queue::job_id_text_size];
    w.id.format(id);
    line.field("request_id", std::string_view(id, sizeof id));
    log(line);
    return answer(w, status, reject_body(reason), {}, false);
}

void Ingest::emit_enqueued(const Webhook& w, uint16_t status) {
    base::Event e = event_of(w, base::EventType::job_enqueued);
    // A duplicate names the job it is a copy of, as its answer does (answer_job's form).
    constexpr std::string_view id_prefix = R"({"id":")";
    if (status == 200 && w.answer.body.starts_with(id_prefix) &&
        w.answer.body.size() >= id_prefix.size() + queue::job_id_text_size) {
        e.set_id(w.answer.body.substr(id_prefix.size(), queue::job_id_text_size));
    }
    e.status = status;
    e.number = static_cast<int64_t>(w.body_bytes);
    e.has_client = false;
    e.set_text(w.source);
    _host.event(e);
}

} // namespace portcullis::ingest
