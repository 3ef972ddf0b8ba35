// The shard's doorbell, and the jobs enqueued through the control plane (POST
// /v1/routes/{route}/jobs): taken from the inbox at the top of the loop, built into records by
// Ingest::submit and committed with the connections' webhooks in the same group, handed back
// through the outbox with their answer.
#include "portcullis/base/log.hh"
#include "shard_impl.hh"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace portcullis::io {

using base::Level;
using base::LogLine;

void Shard::Impl::arm_doorbell() {
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_read(sqe, doorbell.fd(), &doorbell.count, sizeof doorbell.count, 0);
    sqe->user_data = pack(Op::doorbell, 0, 0);
}

// The read ends the loop's wait; what rang is found in the queues at the top of the loop.
void Shard::Impl::on_doorbell(const io_uring_cqe& cqe) {
    if (cqe.res < 0 && cqe.res != -EINTR && cqe.res != -EAGAIN) {
        // Cannot happen on an eventfd this shard owns; were it to, re-arming would spin. The
        // queues are still drained every turn (at least every tick).
        LogLine line(Level::error, "shard doorbell failed; the shard wakes on its tick only",
                     clock.unix_ns);
        line.field("shard", static_cast<int64_t>(index)).field("error", std::strerror(-cqe.res));
        log(line);
        return;
    }
    arm_doorbell();
}

void Shard::Impl::take_control_jobs() {
    ingest::ControlJob* job = nullptr;
    while (control_inbox.try_pop(job)) {
        // An exchange of the pool without a connection: its address is the spool's cookie, and
        // it holds the record (and its place in the held list) as a webhook's does.
        exchanges_peak = std::max(exchanges_peak, ++exchanges_in_use);
        Exchange* ex = free_exchanges;
        if (ex == nullptr) {
            ex = new Exchange; // NOLINT(cppcoreguidelines-owning-memory): the free list owns them
        } else {
            free_exchanges = ex->next;
            --free_exchange_count;
        }
        ex->conn = nullptr;
        ex->next = nullptr;
        ex->spooling = ex->answered = ex->last = ex->continue_owed = ex->head_request = false;
        ex->control = job;
        ingest::Webhook& w = ex->webhook;
        w.peer = job->peer;
        w.cookie = reinterpret_cast<uint64_t>(ex);
        w.head_mono_ns = clock.mono_ns;
        const ingest::Next next =
            ingest.submit(w, job->route, job->headers, job->body, job->token, draining);
        if (next == ingest::Next::spooling) {
            ex->spooling = true; // on_spooled() finishes it
            continue;
        }
        ex->answered = true;
        finish_control_job(*ex);
    }
}

// The job's answer is final: copied into it, and the job handed back to the control plane.
void Shard::Impl::finish_control_job(Exchange& ex) {
    ingest::ControlJob& job = *ex.control;
    const ingest::Answer& a = ex.webhook.answer;
    job.shard = static_cast<uint8_t>(index);
    job.status = a.status;
    job.outcome = ingest.enqueue_answered(ex.webhook);
    // Both fit: the answers are job ids and the error bodies, the extra line a Retry-After.
    const size_t body = std::min(a.body.size(), job.answer_text.size());
    std::copy_n(a.body.data(), body, job.answer_text.data());
    job.answer_size = static_cast<uint8_t>(body);
    const size_t extra = std::min(a.extra_headers.size(), job.extra_text.size());
    std::copy_n(a.extra_headers.data(), extra, job.extra_text.data());
    job.extra_size = static_cast<uint8_t>(extra);
    ex.control = nullptr;
    release_exchange(ex);
    // Never full: the control plane keeps at most as many jobs in this shard's hands as the
    // outbox has slots.
    control_outbox.try_push(&job);
}

} // namespace portcullis::io
