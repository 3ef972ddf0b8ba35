// HTTP/1.1 on a connection: the PROXY header, request heads, body framing, 100-continue and
// the answers. What a webhook means is ingest::Ingest's; this file only carries it.
#include "portcullis/admit/proxy_protocol.hh"
#include "portcullis/http/error_bodies.hh"
#include "shard_impl.hh"

#include <algorithm>
#include <cstdlib>

namespace portcullis::io {

using base::Level;
using base::LogLine;

// Feeds bytes to the request state machine; returns how many it used. Stops when more bytes are
// needed, or when the connection has as many requests in progress as it may (the rest waits).
size_t Shard::Impl::process(Connection& c, std::string_view in) {
    size_t total = 0;
    while (total < in.size() && is_open(c)) {
        size_t n = 0;
        if (c.state == State::reading_head) {
            if (!can_start_request(c)) {
                break;
            }
            n = on_head_bytes(c, in.substr(total));
        } else if (c.state == State::reading_proxy) {
            n = on_proxy_bytes(c, in.substr(total));
            if (c.ssl != nullptr) {
                return total + n; // what follows is the handshake: on_tls_bytes takes it
            }
        } else if (c.state == State::reading_body) {
            n = on_body_bytes(c, in.substr(total));
        } else {
            return in.size(); // finishing or lingering: input is dropped
        }
        if (n == 0) {
            break;
        }
        total += n;
    }
    return total;
}

// Another pipelined request may start while fewer than max_pipelined are in progress and their
// records hold less than pipeline_pause_bytes (a request's record holds its whole body).
bool Shard::Impl::can_start_request(const Connection& c) const {
    if (c.exchanges >= max_pipelined) {
        return false;
    }
    size_t held = 0;
    for (const Exchange* ex = c.first; ex != nullptr; ex = ex->next) {
        held += ex->webhook.record != nullptr ? ex->webhook.record->capacity : 0;
    }
    return held < pipeline_pause_bytes;
}

// ---- PROXY header --------------------------------------------------------------------------

// A connection's first bytes when proxy_protocol is on. Nothing is answered to a bad header:
// the peer is not speaking HTTP yet, and the connection is closed.
size_t Shard::Impl::on_proxy_bytes(Connection& c, std::string_view in) {
    admit::ProxyResult r = admit::parse_proxy(in, *proxy_mode);
    if (r.status == 0) {
        return 0;
    }
    if (r.status < 0) {
        stats.proxy_refused.fetch_add(1, std::memory_order_relaxed);
        LogLine line(Level::info, "PROXY header refused", clock.unix_ns);
        line.field("error", r.error);
        add_peer(line, c);
        log(line);
        close_connection(c);
        return in.size();
    }
    if (!r.local) {
        c.peer = r.source;
    }
    c.state = State::reading_head;
    if (!count_client(c)) {
        close_connection(c);
        return in.size();
    }
    if (c.ssl == nullptr) {
        // (On a TLS listener the deadline runs on: the handshake must finish within it too.)
        header_timers.remove(c);
        idle_timers.push(c, clock.mono_ns + idle_timers.length_ns);
    }
    return static_cast<size_t>(r.status);
}

// ---- request head --------------------------------------------------------------------------

size_t Shard::Impl::on_head_bytes(Connection& c, std::string_view in) {
    http::RequestHead head;
    http::HeadResult r = http::parse_head(in, c.scanned, limits, header_scratch, head);
    if (r.error != http::Error::none) {
        reject_malformed(c, r.error, r.detail);
        return in.size();
    }
    if (r.consumed == 0) {
        if (c.timer != &header_timers) {
            // The first bytes of a head start its deadline; it does not move after that, so a
            // client trickling bytes is cut off at header timeout.
            if (c.timer != nullptr) {
                c.timer->remove(c);
            }
            header_timers.push(c, clock.mono_ns + header_timers.length_ns);
        }
        c.scanned = in.size();
        return 0;
    }
    c.scanned = 0;
    stats.requests.fetch_add(1, std::memory_order_relaxed);
    on_head(c, head);
    return r.consumed;
}

void Shard::Impl::on_head(Connection& c, const http::RequestHead& head) {
    if (c.timer != nullptr) {
        c.timer->remove(c);
    }
    Exchange& ex = push_exchange(c);
    ex.keep_alive = head.keep_alive;
    ex.head_request = head.method == "HEAD";
    ex.framing = head.framing;
    ex.remaining = head.content_length;
    ex.chunked.reset();
    ingest::Next next = ingest.head(ex.webhook, head, draining);
    if (next == ingest::Next::read_body) {
        c.state = State::reading_body;
        body_timers.push(c, clock.mono_ns + body_timers.length_ns);
        if (head.expect_continue) {
            ex.continue_owed = true;
            pump(c); // sent now, or right after the answers owed before it
        }
        return;
    }
    decided(c, ex, next);
}

// ---- request body --------------------------------------------------------------------------

size_t Shard::Impl::on_body_bytes(Connection& c, std::string_view in) {
    Exchange& ex = *c.newest;
    if (ex.framing == http::BodyFraming::content_length) {
        size_t take = in.size() < ex.remaining ? in.size() : static_cast<size_t>(ex.remaining);
        if (ingest::Next next = ingest.body(ex.webhook, in.substr(0, take));
            next != ingest::Next::read_body) {
            decided(c, ex, next);
            return in.size();
        }
        ex.remaining -= take;
        if (ex.remaining == 0) {
            decided(c, ex, ingest.end_of_body(ex.webhook));
        }
        return take;
    }
    http::ChunkedDecoder::Step step = ex.chunked.feed(in);
    if (step.error != http::Error::none) {
        reject_malformed(c, step.error, step.detail);
        return in.size();
    }
    if (!step.data.empty()) {
        if (ingest::Next next = ingest.body(ex.webhook, step.data);
            next != ingest::Next::read_body) {
            decided(c, ex, next);
            return in.size();
        }
    }
    if (step.done) {
        decided(c, ex, ingest.end_of_body(ex.webhook));
    }
    return step.consumed;
}

// What ingest decided about c's newest request, once its head or its body is in. The connection
// reads the next request meanwhile, unless this one ends it.
void Shard::Impl::decided(Connection& c, Exchange& ex, ingest::Next next) {
    if (c.timer != nullptr) {
        c.timer->remove(c);
    }
    ex.continue_owed = false; // the body is in, or will not be read
    if (next == ingest::Next::read_body) {
        std::abort(); // the callers go on reading the body themselves
    }
    ex.spooling = next == ingest::Next::spooling;
    ex.answered = next == ingest::Next::answer;
    if (!ex.keep_alive || draining || (ex.answered && ex.webhook.answer.close)) {
        ex.last = true;
        c.state = State::finishing;
    } else {
        c.state = State::reading_head;
    }
    pump(c);
}

bool Shard::Impl::enqueue(std::span<const uint8_t> record, uint64_t cookie,
                          config::Durability durability) {
    if (held_first == nullptr && spool.append(record, cookie, durability)) {
        return true;
    }
    if (held_first == nullptr && !spool.full()) {
        return false; // the disk failed: 503
    }
    // Held back, behind those already waiting: the record stays in its exchange's webhook.
    auto* ex = reinterpret_cast<Exchange*>(cookie); // NOLINT(performance-no-int-to-ptr)
    ex->held_next = nullptr;
    ex->held_durability = durability;
    (held_last != nullptr ? held_last->held_next : held_first) = ex;
    held_last = ex;
    return true;
}

// Before each flush: the held records go to the spool in their order while it has room; if the
// disk failed meanwhile, they are answered 503 as a failed group's records are.
void Shard::Impl::offer_held() {
    while (Exchange* ex = held_first) {
        const ingest::Webhook& w = ex->webhook;
        if (!spool.append(w.record->bytes(), w.cookie, ex->held_durability)) {
            if (spool.full()) {
                return;
            }
            held_first = ex->held_next;
            on_spooled(w.cookie, false);
            continue;
        }
        held_first = ex->held_next;
    }
    held_last = nullptr;
}

// The spool's outcome for the record of an exchange (its address is the cookie).
void Shard::Impl::on_spooled(uint64_t cookie, bool durable) {
    auto* ex = reinterpret_cast<Exchange*>(cookie); // NOLINT(performance-no-int-to-ptr)
    ingest.spooled(ex->webhook, durable);
    ex->spooling = false;
    ex->answered = true;
    if (ex->control != nullptr) {
        finish_control_job(*ex);
        return;
    }
    if (ex->conn == nullptr) {
        // The peer went away while its job was being written; the job stands (it is on disk if
        // durable), only the answer is lost (named when the close was logged).
        if (durable) {
            stats.unanswered_jobs.fetch_add(1, std::memory_order_relaxed);
        }
        release_exchange(*ex);
        return;
    }
    pump(*ex->conn);
}

// ---- answers -------------------------------------------------------------------------------

void Shard::Impl::reject_malformed(Connection& c, http::Error error, std::string_view detail) {
    uint16_t status = http::status_of(error);
    LogLine line(Level::warn, "request refused", clock.unix_ns);
    line.field("reason", status == 431 ? std::string_view("headers_too_large")
                                       : std::string_view("malformed"))
        .field("detail", detail)
        .field("status", static_cast<int64_t>(status));
    add_peer(line, c);
    log(line);
    final_answer(c, status, http::error_body::bad_request);
}

// An answer of the HTTP layer's own (malformed input, a timeout) to the request being read, or
// to one that never got a head; the connection closes after it.
void Shard::Impl::final_answer(Connection& c, uint16_t status, std::string_view body) {
    Exchange& ex = c.state == State::reading_body ? *c.newest : push_exchange(c);
    ingest::Answer& a = ex.webhook.answer;
    a.status = status;
    a.body = body;
    a.extra_headers = {};
    a.close = true;
    a.content_type = "application/json";
    ex.answered = true;
    ex.last = true;
    ex.continue_owed = false;
    if (c.timer != nullptr) {
        c.timer->remove(c);
    }
    c.state = State::finishing;
    pump(c);
}

// The interim answer to Expect: 100-continue.
static constexpr std::string_view continue_response = "HTTP/1.1 100 Continue\r\n\r\n";

// Sends what is ready, in request order: the answers of the oldest requests, as many as are
// final and fit one buffer, and a 100 Continue owed by the first request still without one.
void Shard::Impl::pump(Connection& c) {
    if (c.send_inflight || c.first == nullptr || !is_open(c)) {
        return;
    }
    base::Buffer* out = nullptr;
    auto room = [&] {
        return std::span<char>(reinterpret_cast<char*>(out->data()) + out->size, out->room());
    };
    uint8_t answers = 0;
    bool closes = false;
    for (Exchange* ex = c.first; ex != nullptr; ex = ex->next) {
        if (!ex->answered && !ex->continue_owed) {
            break;
        }
        if (out == nullptr) {
            // Answers are a few hundred bytes: the smallest pool class holds several.
            out = pool.acquire(base::BufferPool::min_class_bytes);
            if (out == nullptr) {
                close_connection(c);
                return;
            }
        }
        if (!ex->answered) {
            if (continue_response.size() > out->room()) {
                break;
            }
            out->append(continue_response.data(), continue_response.size());
            ex->continue_owed = false;
            stats.responses[1].fetch_add(1, std::memory_order_relaxed);
            break;
        }
        const ingest::Answer& a = ex->webhook.answer;
        // Draining, or after the client's EOF, the answer with nothing behind it is the last.
        bool close = ex->last || (ex->next == nullptr && c.state == State::reading_head &&
                                  (draining || (c.peer_eof && staged_bytes(c) == 0)));
        http::Response r;
        r.status = a.status;
        r.body = a.body;
        r.extra_headers = a.extra_headers;
        r.close = close;
        r.content_type = a.content_type;
        r.head_only = ex->head_request;
        size_t n = http::write_response(room(), r, date.view());
        if (n == 0) {
            if (answers == 0) {
                std::abort(); // impossible: every answer is far smaller than the buffer
            }
            break;
        }
        out->size += n;
        ++answers;
        stats.responses[a.status / 100 < 6 ? a.status / 100 : 5].fetch_add(
            1, std::memory_order_relaxed);
        ingest.answered(ex->webhook, a.status);
        if (close) {
            closes = true;
            break;
        }
    }
    if (out == nullptr) {
        return;
    }
    if (c.ssl != nullptr && !seal_answers(c, out, closes)) {
        close_connection(c);
        return;
    }
    c.out = out;
    c.out_sent = 0;
    c.out_exchanges = answers;
    c.out_closes = closes;
    start_send(c);
}

// The answers in c.out have all been sent: their exchanges are over.
void Shard::Impl::on_sent(Connection& c) {
    for (uint8_t i = 0; i < c.out_exchanges; ++i) {
        Exchange* ex = c.first;
        if (ex == nullptr) {
            std::abort(); // impossible: the answers sent are those of the oldest exchanges
        }
        c.first = ex->next;
        if (c.first == nullptr) {
            c.newest = nullptr;
        }
        --c.exchanges;
        release_exchange(*ex);
    }
    c.out_exchanges = 0;
    if (c.out_closes || (c.state == State::finishing && c.first == nullptr)) {
        start_linger(c);
        return;
    }
    if (c.first == nullptr && c.state == State::reading_head && c.timer == nullptr) {
        idle_timers.push(c, clock.mono_ns + idle_timers.length_ns);
    }
    // Requests that waited for room, if any are staged (pipelined).
    drive_staged(c);
    if (!is_open(c)) {
        return;
    }
    if (c.peer_eof && c.first == nullptr &&
        (c.state == State::reading_head || c.state == State::reading_body)) {
        // The client half-closed and every complete request it sent has its answer.
        close_connection(c);
        return;
    }
    pump(c);
    flush_tls(c); // what the session wrote meanwhile, if no answer took it along
    keep_reading(c);
}

Exchange& Shard::Impl::push_exchange(Connection& c) {
    exchanges_peak = std::max(exchanges_peak, ++exchanges_in_use);
    Exchange* ex = free_exchanges;
    if (ex == nullptr) {
        ex = new Exchange; // NOLINT(cppcoreguidelines-owning-memory): the free list owns them
    } else {
        free_exchanges = ex->next;
        --free_exchange_count;
    }
    ex->conn = &c;
    ex->next = nullptr;
    ex->keep_alive = true;
    ex->spooling = ex->answered = ex->last = ex->continue_owed = ex->head_request = false;
    ex->webhook.peer = c.peer;
    ex->webhook.cookie = reinterpret_cast<uint64_t>(ex);
    // A request refused before ingest saw its head (malformed) counts under no route.
    ex->webhook.route = nullptr;
    ex->webhook.head_mono_ns = clock.mono_ns;
    (c.newest != nullptr ? c.newest->next : c.first) = ex;
    c.newest = ex;
    ++c.exchanges;
    return *ex;
}

// The newest request cannot complete (its input ended): it is forgotten.
void Shard::Impl::drop_newest(Connection& c) {
    Exchange* gone = c.newest;
    Exchange* before = nullptr;
    for (Exchange* ex = c.first; ex != gone; ex = ex->next) {
        before = ex;
    }
    (before != nullptr ? before->next : c.first) = nullptr;
    c.newest = before;
    --c.exchanges;
    release_exchange(*gone);
}

void Shard::Impl::release_exchange(Exchange& ex) {
    ingest.release(ex.webhook);
    --exchanges_in_use;
    ex.conn = nullptr;
    ex.next = free_exchanges;
    free_exchanges = &ex;
    ++free_exchange_count;
}

void Shard::Impl::trim_exchanges() {
    const uint32_t keep = std::max(exchanges_peak, min_free_exchanges);
    while (free_exchange_count > keep) {
        Exchange* ex = free_exchanges;
        free_exchanges = ex->next;
        --free_exchange_count;
        delete ex; // NOLINT(cppcoreguidelines-owning-memory)
    }
    exchanges_peak = exchanges_in_use;
}

bool Shard::Impl::has_spooling(const Connection& c) {
    for (const Exchange* ex = c.first; ex != nullptr; ex = ex->next) {
        if (ex->spooling) {
            return true;
        }
    }
    return false;
}

} // namespace portcullis::io
