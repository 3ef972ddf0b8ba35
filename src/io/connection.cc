// Bytes in and out of a connection: the receive, what is staged while an answer is owed
// (backpressure), the send, shutdown and close. On a TLS listener the transport sits here too,
// between the socket's bytes and exchange.cc's HTTP, which sees plaintext only.
#include "portcullis/http/error_bodies.hh"
#include "shard_impl.hh"

#include <cerrno>
#include <netinet/in.h>
#include <sys/socket.h>

namespace portcullis::io {

using base::Level;
using base::LogLine;
using base::LogThrottle;

// ---- receive -------------------------------------------------------------------------------

// A receive for the room left in c's pipeline (backpressure, below).
void Shard::Impl::arm_recv(Connection& c) {
    size_t staged = staged_bytes(c);
    auto limit = static_cast<uint32_t>(staged + recv_buffer_size < pipeline_pause_bytes
                                           ? pipeline_pause_bytes - staged
                                           : recv_buffer_size);
    io_uring_sqe* sqe = ring.sqe();
    prep_limited_recv(sqe, c.fd, recv_buffer_group, limit, shared.features.recv_limit);
    sqe->user_data = pack(Op::recv, c.gen, c.index);
    c.recv_armed = true;
}

void Shard::Impl::on_recv(const io_uring_cqe& cqe) {
    bool has_buffer = (cqe.flags & IORING_CQE_F_BUFFER) != 0;
    uint16_t bid = static_cast<uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
    Connection* c = lookup(cqe.user_data);
    if (c == nullptr || c->fd < 0 || c->state == State::closing) {
        if (has_buffer) {
            buffers.recycle(bid);
        }
        return;
    }
    bool more = (cqe.flags & IORING_CQE_F_MORE) != 0;
    if (!more) {
        c->recv_armed = false;
    }
    if (cqe.res > 0 && has_buffer) {
        on_socket_bytes(*c, std::string_view(buffers.buffer(bid), static_cast<size_t>(cqe.res)));
        buffers.recycle(bid);
    } else if (has_buffer) {
        buffers.recycle(bid);
    }
    if (c->state == State::free || c->state == State::closing) {
        return;
    }
    if (cqe.res == 0) {
        on_peer_eof(*c);
        return;
    }
    if (cqe.res == -ENOBUFS) {
        // The ring ran dry for a moment (every connection of the shard draws from it). The
        // re-armed receive goes in after this iteration's buffers are published back.
        stats.recv_no_buffers.fetch_add(1, std::memory_order_relaxed);
    } else if (cqe.res < 0) {
        close_for_error(*c, "recv_failed", -cqe.res);
        return;
    }
    keep_reading(*c);
}

// The client sent all it will: the request being read cannot complete, but those already
// complete are still answered, pipelined ones included (a client may half-close after
// sending); on_sent closes once they are. With none owed, the connection closes now.
void Shard::Impl::on_peer_eof(Connection& c) {
    if (c.state == State::reading_head && in_handshake(c)) { // not one that failed already
        stats.tls_handshake_aborted.fetch_add(1, std::memory_order_relaxed);
    }
    c.peer_eof = true;
    end_input(c, false);
}

// No more input will be read. `dropped`: what was staged is gone too (input the connection
// could not hold), so the answer to the newest complete request is the last.
void Shard::Impl::end_input(Connection& c, bool dropped) {
    if (c.state == State::reading_body) {
        drop_newest(c);
        c.state = State::reading_head;
    }
    if (c.first == nullptr) {
        close_connection(c);
        return;
    }
    if (dropped && c.state == State::reading_head) {
        c.newest->last = true;
        c.state = State::finishing;
    }
    pump(c); // the last answer may now say Connection: close
}

// ---- backpressure --------------------------------------------------------------------------
//
// Pipelined requests are parsed, verified and handed to the spool while earlier ones wait for
// their answers, up to max_pipelined of them (can_start_request); bytes behind those are staged
// unparsed. Every receive is armed for the room left under pipeline_pause_bytes (arm_recv) and
// ends by itself once it is used; while a connection waits for answers with the stage full, it
// is not re-armed, and answers draining the stage re-arm it. So a client's pipeline costs
// the shard a bounded buffer and waits in the client's own socket buffers; no receive needs
// cancelling, and nothing is dropped.

bool Shard::Impl::pipeline_full(const Connection& c) {
    return c.first != nullptr && staged_bytes(c) >= pipeline_pause_bytes;
}

// After c's receive ended or its pipeline drained: re-arms the receive unless the stage is full
// (a pause, counted once) or the input is over.
void Shard::Impl::keep_reading(Connection& c) {
    if (!is_open(c) || c.input_cut || c.recv_armed || c.peer_eof) {
        return;
    }
    if (pipeline_full(c)) {
        if (!c.recv_paused) {
            c.recv_paused = true;
            stats.pipeline_pauses.fetch_add(1, std::memory_order_relaxed);
        }
        return;
    }
    c.recv_paused = false;
    arm_recv(c);
}

// Input c cannot hold (past pipeline_max_bytes, or no memory to stage it): what is staged
// stays, further bytes are dropped. The answer owed for a request in progress is still sent,
// with the close; without one the connection closes now.
void Shard::Impl::cut_input(Connection& c) {
    stats.pipeline_overflows.fetch_add(1, std::memory_order_relaxed);
    log_close(c, overflow_close_log, "pipeline_overflow", 0);
    c.input_cut = true; // not re-armed; what a live receive still brings is dropped
    if (c.staging != nullptr) {
        pool.release(c.staging);
        c.staging = nullptr;
        c.staged_from = 0;
    }
    end_input(c, true);
}

// A receive or a send failed (the peer reset the connection, mostly).
void Shard::Impl::close_for_error(Connection& c, std::string_view what, int error) {
    stats.connection_errors.fetch_add(1, std::memory_order_relaxed);
    if (c.state == State::reading_head && in_handshake(c)) { // not one that failed already
        stats.tls_handshake_aborted.fetch_add(1, std::memory_order_relaxed);
    }
    log_close(c, error_close_log, what, error);
    close_connection(c);
}

// One line per close for a reason, throttled: a flood of them costs a counter each. A job whose
// answer will not reach its sender (being written, or its 202 failed) is named: the sender will
// likely send it again.
void Shard::Impl::log_close(const Connection& c, LogThrottle& throttle, std::string_view reason,
                            int error) {
    if (!throttle.allow(clock.mono_ns, close_log_interval_ns)) {
        return;
    }
    // A reset is the client's doing; input the shard could not hold is its own limit.
    Level level = error != 0 ? Level::info : Level::warn;
    LogLine line(level, "connection closed", clock.unix_ns);
    line.field("reason", reason);
    if (error != 0) {
        line.field("error", std::string_view(std::strerror(error)));
    }
    add_peer(line, c);
    line.field("staged_bytes", static_cast<int64_t>(staged_bytes(c)));
    for (const Exchange* ex = c.first; ex != nullptr; ex = ex->next) {
        if (ex->spooling || ex->webhook.queued) {
            char id[queue::job_id_text_size];
            ex->webhook.id.format(id);
            line.field("unanswered_job", std::string_view(id, sizeof id));
            break; // the oldest; the others are in unanswered_jobs
        }
    }
    if (throttle.held_back != 0) {
        line.field("lines_held_back", static_cast<int64_t>(throttle.held_back));
        throttle.held_back = 0;
    }
    log(line);
}

void Shard::Impl::add_peer(LogLine& line, const Connection& c) {
    if (c.newest != nullptr) {
        ingest::Ingest::add_peer(line, c.newest->webhook);
        return;
    }
    char ip[INET6_ADDRSTRLEN];
    line.field("peer", c.peer.format_ip(ip));
}

void Shard::Impl::on_socket_bytes(Connection& c, std::string_view in) {
    if (c.ssl != nullptr) {
        on_tls_bytes(c, in);
        return;
    }
    on_bytes(c, in);
}

// ---- TLS -----------------------------------------------------------------------------------
//
// Ciphertext from the receive goes to the session whole (it keeps a partial record itself);
// what decrypts goes to on_bytes as a plain connection's bytes do, and backpressure works on
// that plaintext the same way. What the session has to send (handshake flights, tickets,
// alerts) collects in tls_out and goes out as soon as no send is in flight; answers are sealed
// in pump, behind those bytes.

void Shard::Impl::on_tls_bytes(Connection& c, std::string_view in) {
    if (c.state == State::lingering || c.state == State::finishing || c.input_cut) {
        return; // discarded: the connection is closing
    }
    if (c.state != State::reading_proxy) {
        decrypt(c, in);
        return;
    }
    // The PROXY header comes in the clear before the handshake; a partial one is staged.
    std::string_view pending = in;
    if (c.staging != nullptr) {
        if (!stage(c, in)) {
            cut_input(c);
            return;
        }
        pending = c.staging->view().substr(c.staged_from);
    }
    size_t used = process(c, pending);
    if (!is_open(c)) {
        return;
    }
    if (used == 0) {
        if (c.staging == nullptr && !stage(c, in)) {
            cut_input(c);
        }
        return;
    }
    base::Buffer* held = c.staging;
    c.staging = nullptr;
    c.staged_from = 0;
    if (used < pending.size()) {
        decrypt(c, pending.substr(used)); // the start of the handshake
    }
    pool.release(held);
}

void Shard::Impl::decrypt(Connection& c, std::string_view cipher) {
    bool handshaking = in_handshake(c);
    tls::Status s = tls->receive(c.ssl, cipher, c.tls_out, [&](std::string_view plain) {
        if (handshaking) {
            handshaking = false; // the first plaintext comes right after the handshake
            on_handshake_done(c);
        }
        on_bytes(c, plain);
        return is_open(c) && c.state != State::lingering && c.state != State::finishing &&
               !c.input_cut;
    });
    if (!is_open(c)) {
        return;
    }
    if (s == tls::Status::failed) {
        on_tls_failure(c);
        return;
    }
    if (handshaking && !in_handshake(c)) {
        on_handshake_done(c);
    }
    if (s == tls::Status::closed) {
        on_peer_eof(c); // close_notify: the client sent all it will
        if (!is_open(c)) {
            return;
        }
    }
    flush_tls(c);
}

// The handshake has just completed, before any plaintext is used: the deadline that ran during
// it (timeouts.header) gives way to the idle timeout, and the next head has a deadline of its
// own.
void Shard::Impl::on_handshake_done(Connection& c) {
    (SSL_session_reused(c.ssl) != 0 ? stats.tls_resumed : stats.tls_handshakes)
        .fetch_add(1, std::memory_order_relaxed);
    if (c.timer == &header_timers) {
        header_timers.remove(c);
        idle_timers.push(c, clock.mono_ns + idle_timers.length_ns);
    }
}

// The session failed: the handshake (or not TLS at all) or a record after it. An alert the
// session wrote goes out before the close; plain HTTP sent to this port gets a plain 400 that
// says why.
void Shard::Impl::on_tls_failure(Connection& c) {
    const tls::Failure f = tls->failure();
    switch (f) {
    case tls::Failure::not_tls:
    case tls::Failure::plain_http:
        stats.tls_not_tls.fetch_add(1, std::memory_order_relaxed);
        break;
    case tls::Failure::record:
        stats.tls_record_errors.fetch_add(1, std::memory_order_relaxed);
        break;
    default:
        stats.tls_handshake_failures.fetch_add(1, std::memory_order_relaxed);
        break;
    }
    if (tls_failure_log.allow(clock.mono_ns, close_log_interval_ns)) {
        LogLine line(Level::info, "connection closed", clock.unix_ns);
        line.field("reason", tls::failure_name(f)).field("detail", tls->failure_detail());
        add_peer(line, c);
        if (tls_failure_log.held_back != 0) {
            line.field("lines_held_back", static_cast<int64_t>(tls_failure_log.held_back));
            tls_failure_log.held_back = 0;
        }
        log(line);
    }
    if (f == tls::Failure::plain_http && c.tls_out == nullptr) {
        c.tls_out = pool.acquire(base::BufferPool::min_class_bytes);
        if (c.tls_out != nullptr) {
            http::Response r;
            r.status = 400;
            r.body = http::error_body::tls_required;
            r.close = true;
            r.content_type = "application/json";
            auto* data = reinterpret_cast<char*>(c.tls_out->data());
            c.tls_out->size = http::write_response({data, c.tls_out->capacity}, r, date.view());
        }
    }
    // After the handshake the session is broken: nothing more can be sent on it. Before it no
    // request is in progress, and the alert (or the 400) is the connection's last word.
    if (f == tls::Failure::record || c.first != nullptr || c.send_inflight ||
        c.tls_out == nullptr || c.tls_out->size == 0) {
        close_connection(c);
        return;
    }
    if (c.timer != nullptr) {
        c.timer->remove(c);
    }
    c.state = State::finishing;
    send_tls_out(c, true);
}

// Sends the session's own bytes (a handshake flight, a ticket) when no send is in flight.
void Shard::Impl::flush_tls(Connection& c) {
    if (c.ssl == nullptr || c.tls_out == nullptr || c.send_inflight || !is_open(c) ||
        c.state == State::lingering) {
        return;
    }
    send_tls_out(c, false);
}

// tls_out becomes the send in flight; it carries no answer. `closes`: the connection ends after.
void Shard::Impl::send_tls_out(Connection& c, bool closes) {
    c.out = c.tls_out;
    c.tls_out = nullptr;
    c.out_sent = 0;
    c.out_exchanges = 0;
    c.out_closes = closes;
    start_send(c);
}

// pump's answers, rendered in the clear into `out`, become records in tls_out (behind whatever
// the session had waiting there), and `out` is that buffer. With `closes`, a close_notify
// follows them.
bool Shard::Impl::seal_answers(Connection& c, base::Buffer*& out, bool closes) {
    const bool sealed = tls->seal(c.ssl, out->view(), c.tls_out);
    pool.release(out);
    out = nullptr;
    if (!sealed) {
        return false;
    }
    if (closes) {
        tls->close_notify(c.ssl, c.tls_out);
    }
    out = c.tls_out;
    c.tls_out = nullptr;
    return true;
}

// Bytes in and out of a connection (HTTP, below): parse them in place when nothing is staged,
// else add them to the staging buffer. Whatever cannot be used now is staged before the receive
// buffer goes back.
void Shard::Impl::on_bytes(Connection& c, std::string_view in) {
    if (c.state == State::lingering || c.state == State::finishing || c.input_cut) {
        return; // discarded: the connection is closing
    }
    if (c.staging != nullptr) {
        if (!stage(c, in)) {
            cut_input(c);
            return;
        }
        drive_staged(c);
        return;
    }
    size_t used = process(c, in);
    if (used < in.size() && is_open(c) && c.state != State::lingering) {
        if (!stage(c, in.substr(used))) {
            cut_input(c);
        }
    }
}

bool Shard::Impl::stage(Connection& c, std::string_view bytes) {
    size_t have = staged_bytes(c);
    if (have + bytes.size() > cfg->server.header_bytes + pipeline_max_bytes) {
        return false;
    }
    if (c.staging == nullptr) {
        c.staging = pool.acquire(bytes.size());
        if (c.staging == nullptr) {
            return false;
        }
    } else if (c.staging->room() < bytes.size()) {
        // Compact first; grow only if the unparsed bytes still do not fit.
        if (c.staged_from != 0) {
            std::memmove(c.staging->data(), c.staging->data() + c.staged_from, have);
            c.staging->size = have;
            c.staged_from = 0;
        }
        if (c.staging->room() < bytes.size()) {
            base::Buffer* bigger = pool.grow(c.staging, have + bytes.size());
            if (bigger == nullptr) {
                return false;
            }
            c.staging = bigger;
        }
    }
    c.staging->append(bytes.data(), bytes.size());
    return true;
}

// Parses what is staged as far as the state allows.
void Shard::Impl::drive_staged(Connection& c) {
    while (c.staging != nullptr && is_open(c)) {
        std::string_view pending = c.staging->view().substr(c.staged_from);
        size_t used = process(c, pending);
        if (c.staging == nullptr || !is_open(c)) {
            return;
        }
        c.staged_from += used;
        if (c.staged_from == c.staging->size) {
            pool.release(c.staging);
            c.staging = nullptr;
            c.staged_from = 0;
            return;
        }
        if (used == 0) {
            return;
        }
    }
}

// ---- send ----------------------------------------------------------------------------------

void Shard::Impl::start_send(Connection& c) {
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_send(sqe, c.fd, c.out->data() + c.out_sent, c.out->size - c.out_sent,
                       MSG_NOSIGNAL);
    sqe->user_data = pack(Op::send, c.gen, c.index);
    c.send_inflight = true;
}

void Shard::Impl::on_send(const io_uring_cqe& cqe) {
    Connection* c = lookup(cqe.user_data);
    if (c == nullptr || c->state == State::closing) {
        return;
    }
    c->send_inflight = false;
    if (cqe.res < 0) {
        close_for_error(*c, "send_failed", -cqe.res);
        return;
    }
    c->out_sent += static_cast<size_t>(cqe.res);
    if (c->out_sent < c->out->size) {
        start_send(*c);
        return;
    }
    pool.release(c->out);
    c->out = nullptr;
    c->out_sent = 0;
    on_sent(*c);
}

// ---- closing -------------------------------------------------------------------------------

void Shard::Impl::start_linger(Connection& c) {
    if (c.peer_eof) {
        close_connection(c);
        return;
    }
    c.state = State::lingering;
    if (c.staging != nullptr) {
        pool.release(c.staging);
        c.staging = nullptr;
        c.staged_from = 0;
    }
    // The kernel runs a shutdown in a worker thread and looks its descriptor up only then;
    // closing before it completes would let it shut down whatever socket reuses the number
    // (another client's). So close_connection leaves the close to on_shutdown meanwhile.
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_shutdown(sqe, c.fd, SHUT_WR);
    sqe->user_data = pack(Op::shutdown, c.gen, c.index);
    c.shutdown_inflight = true;
    linger_timers.push(c, clock.mono_ns + linger_timers.length_ns);
    // Draining the input reads again, paused or cut.
    c.recv_paused = false;
    c.input_cut = false;
    if (!c.recv_armed) {
        arm_recv(c);
    }
}

void Shard::Impl::close_connection(Connection& c) {
    if (c.state == State::closing || c.state == State::free) {
        return;
    }
    if (c.timer != nullptr) {
        c.timer->remove(c);
    }
    if (c.staging != nullptr) {
        pool.release(c.staging);
        c.staging = nullptr;
    }
    // Requests in progress: one whose job is in a group commit stays with the spool, which
    // settles it (on_spooled); the others end here. A 202 owed but not sent is counted.
    while (Exchange* ex = c.first) {
        c.first = ex->next;
        if (ex->spooling) {
            ex->conn = nullptr;
            continue;
        }
        if (ex->webhook.queued) {
            stats.unanswered_jobs.fetch_add(1, std::memory_order_relaxed);
        }
        release_exchange(*ex);
    }
    c.newest = nullptr;
    c.exchanges = 0;
    c.out_exchanges = 0;
    c.state = State::closing;
    // Cancel the multishot receive and any send, then close; hard-linked so that the close runs
    // whether or not there was anything to cancel.
    io_uring_sqe* cancel = ring.sqe();
    io_uring_prep_cancel_fd(cancel, c.fd, IORING_ASYNC_CANCEL_ALL);
    cancel->user_data = pack(Op::cancel, c.gen, c.index);
    if (c.shutdown_inflight) {
        return; // on_shutdown closes
    }
    cancel->flags |= IOSQE_IO_HARDLINK;
    submit_close(c);
}

void Shard::Impl::submit_close(Connection& c) {
    io_uring_sqe* close = ring.sqe();
    io_uring_prep_close(close, c.fd);
    close->user_data = pack(Op::close, c.gen, c.index);
    c.fd = -1;
}

void Shard::Impl::on_shutdown(const io_uring_cqe& cqe) {
    Connection* c = lookup(cqe.user_data);
    if (c == nullptr) {
        return;
    }
    c->shutdown_inflight = false;
    if (c->state == State::closing && c->fd >= 0) {
        submit_close(*c);
    }
}

void Shard::Impl::on_closed(const io_uring_cqe& cqe) {
    Connection* c = lookup(cqe.user_data);
    if (c == nullptr) {
        return;
    }
    shared.connections.fetch_sub(1, std::memory_order_relaxed);
    if (shared.per_client != nullptr) {
        shared.per_client->release(c->counted);
    }
    c->counted = {};
    free_connection(*c);
}

} // namespace portcullis::io
