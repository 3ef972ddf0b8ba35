// HTTP/1.1 on a connection: the PROXY header, request heads, body framing, 100-continue and
// the answers. What a webhook means is ingest::Ingest's; this file only carries it.
#include "portcullis/admit/proxy_protocol.hh"
#include "shard_impl.hh"

#include <cstdlib>

namespace portcullis::io {

using base::Level;
using base::LogLine;

namespace {

constexpr std::string_view body_bad_request = R"({"error":"bad_request"})";

} // namespace

// Feeds bytes to the request state machine; returns how many it used. Stops when a request is
// complete and waiting for its answer, or when more bytes are needed.
size_t Shard::Impl::process(Connection& c, std::string_view in) {
    size_t total = 0;
    while (total < in.size() && is_open(c)) {
        size_t n = 0;
        if (c.state == State::reading_head) {
            n = on_head_bytes(c, in.substr(total));
        } else if (c.state == State::reading_proxy) {
            n = on_proxy_bytes(c, in.substr(total));
        } else if (c.state == State::reading_body) {
            n = on_body_bytes(c, in.substr(total));
        } else if (c.state == State::lingering) {
            return in.size();
        }
        if (n == 0) {
            break;
        }
        total += n;
    }
    return total;
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
    header_timers.remove(c);
    c.state = State::reading_head;
    if (!count_client(c)) {
        close_connection(c);
        return in.size();
    }
    idle_timers.push(c, clock.mono_ns + idle_timers.length_ns);
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
        if (c.timer == &idle_timers) {
            // The first bytes of a head start its deadline; it does not move after that, so a
            // client trickling bytes is cut off at header timeout.
            idle_timers.remove(c);
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
    c.keep_alive = head.keep_alive;
    Exchange* ex = acquire_exchange(c);
    ex->framing = head.framing;
    ex->remaining = head.content_length;
    ex->chunked.reset();
    ingest::Next next = ingest.head(ex->webhook, head, draining);
    if (next == ingest::Next::read_body) {
        c.state = State::reading_body;
        body_timers.push(c, clock.mono_ns + body_timers.length_ns);
        if (head.expect_continue) {
            c.continue_bytes_sent = 0;
            start_continue(c);
        }
        return;
    }
    on_next(c, next);
}

// ---- request body --------------------------------------------------------------------------

size_t Shard::Impl::on_body_bytes(Connection& c, std::string_view in) {
    Exchange& ex = *c.ex;
    if (ex.framing == http::BodyFraming::content_length) {
        size_t take = in.size() < ex.remaining ? in.size() : static_cast<size_t>(ex.remaining);
        if (ingest::Next next = ingest.body(ex.webhook, in.substr(0, take));
            next != ingest::Next::read_body) {
            on_next(c, next);
            return in.size();
        }
        ex.remaining -= take;
        if (ex.remaining == 0) {
            on_next(c, ingest.end_of_body(ex.webhook));
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
            on_next(c, next);
            return in.size();
        }
    }
    if (step.done) {
        on_next(c, ingest.end_of_body(ex.webhook));
    }
    return step.consumed;
}

// What ingest decided about c's request, once its head or its body is in.
void Shard::Impl::on_next(Connection& c, ingest::Next next) {
    if (c.timer != nullptr) {
        c.timer->remove(c);
    }
    switch (next) {
    case ingest::Next::answer:
        respond(c, c.ex->webhook.answer);
        return;
    case ingest::Next::spooling:
        c.state = State::spooling;
        return;
    case ingest::Next::read_body:
        std::abort(); // the callers go on reading the body themselves
    }
}

// The spool's outcome for the record of an exchange (its address is the cookie).
void Shard::Impl::on_spooled(uint64_t cookie, bool durable) {
    auto* ex = reinterpret_cast<Exchange*>(cookie); // NOLINT(performance-no-int-to-ptr)
    ingest.spooled(ex->webhook, durable);
    if (ex->conn == nullptr) {
        // The peer went away while its job was being written; the job stands (it is on disk if
        // durable), only the answer is lost (named when the close was logged).
        if (durable) {
            stats.unanswered_jobs.fetch_add(1, std::memory_order_relaxed);
        }
        ingest.release(ex->webhook);
        ex->next_free = free_exchanges;
        free_exchanges = ex;
        return;
    }
    respond(*ex->conn, ex->webhook.answer);
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
    respond(c, status, body_bad_request, {}, true);
}

void Shard::Impl::respond(Connection& c, const ingest::Answer& a) {
    respond(c, a.status, a.body, a.extra_headers, a.close, a.content_type, a.head_only);
}

// The final answer to the current request; afterwards the connection either reads the next
// request or closes (lingering when input may be unread).
void Shard::Impl::respond(Connection& c, uint16_t status, std::string_view body,
                          std::string_view extra, bool close, std::string_view content_type,
                          bool head_only) {
    if (c.timer != nullptr) {
        c.timer->remove(c);
    }
    // After the client's EOF, an answer with nothing staged behind it is the last.
    close = close || !c.keep_alive || draining || (c.peer_eof && staged_bytes(c) == 0);
    // Answers are a few hundred bytes: the smallest pool class holds any of them.
    c.out = pool.acquire(base::BufferPool::min_class_bytes);
    if (c.out == nullptr) {
        close_connection(c);
        return;
    }
    http::Response r;
    r.status = status;
    r.body = body;
    r.extra_headers = extra;
    r.close = close;
    r.content_type = content_type;
    r.head_only = head_only;
    c.out->size = http::write_response(
        std::span<char>(reinterpret_cast<char*>(c.out->data()), c.out->capacity), r, date.view());
    if (c.out->size == 0) {
        // Impossible with the bounded answers: they are all far smaller than the buffer.
        std::abort();
    }
    c.out_sent = 0;
    stats.responses[status / 100 < 6 ? status / 100 : 5].fetch_add(1, std::memory_order_relaxed);
    c.close_after_send = close;
    c.state = State::sending;
    // A 100 Continue still on its way goes first; its completion starts this answer.
    if (!c.continue_inflight) {
        start_send(c);
    }
}

// The interim answer comes from a constant, so that the final answer can be written while the
// interim one is still being sent.
static constexpr std::string_view continue_response = "HTTP/1.1 100 Continue\r\n\r\n";

void Shard::Impl::start_continue(Connection& c) {
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_send(sqe, c.fd, continue_response.data() + c.continue_bytes_sent,
                       continue_response.size() - c.continue_bytes_sent, MSG_NOSIGNAL);
    sqe->user_data = pack(Op::send_continue, c.gen, c.index);
    c.continue_inflight = true;
}

void Shard::Impl::on_send_continue(const io_uring_cqe& cqe) {
    Connection* c = lookup(cqe.user_data);
    if (c == nullptr || c->state == State::closing) {
        return;
    }
    c->continue_inflight = false;
    if (cqe.res < 0) {
        close_for_error(*c, "send_failed", -cqe.res);
        return;
    }
    c->continue_bytes_sent = static_cast<uint8_t>(c->continue_bytes_sent + cqe.res);
    if (c->continue_bytes_sent < continue_response.size()) {
        start_continue(*c);
        return;
    }
    stats.responses[1].fetch_add(1, std::memory_order_relaxed);
    if (c->state == State::sending && !c->send_inflight) {
        start_send(*c);
    }
}

// c's answer is all sent: the exchange is over.
void Shard::Impl::on_sent(Connection& c) {
    release_exchange(c);
    if (c.close_after_send) {
        start_linger(c);
        return;
    }
    // The next request, if it is already staged (pipelined).
    c.state = State::reading_head;
    idle_timers.push(c, clock.mono_ns + idle_timers.length_ns);
    drive_staged(c);
    if (c.peer_eof && (c.state == State::reading_head || c.state == State::reading_body)) {
        // The client half-closed and every complete request it sent has its answer.
        close_connection(c);
        return;
    }
    keep_reading(c);
}

Exchange* Shard::Impl::acquire_exchange(Connection& c) {
    Exchange* ex = free_exchanges;
    if (ex == nullptr) {
        all_exchanges.push_back(std::make_unique<Exchange>());
        ex = all_exchanges.back().get();
    } else {
        free_exchanges = ex->next_free;
    }
    ex->conn = &c;
    ex->webhook.peer = c.peer;
    ex->webhook.cookie = reinterpret_cast<uint64_t>(ex);
    c.ex = ex;
    return ex;
}

void Shard::Impl::release_exchange(Connection& c) {
    if (c.ex == nullptr) {
        return;
    }
    ingest.release(c.ex->webhook);
    c.ex->conn = nullptr;
    c.ex->next_free = free_exchanges;
    free_exchanges = c.ex;
    c.ex = nullptr;
}

} // namespace portcullis::io
