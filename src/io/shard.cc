#include "portcullis/io/shard.hh"

#include "portcullis/admit/client_ip.hh"
#include "portcullis/admit/proxy_protocol.hh"
#include "portcullis/base/time.hh"
#include "portcullis/http/error_bodies.hh"
#include "shard_impl.hh"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <netinet/in.h>
#include <sys/socket.h>

namespace portcullis::io {

using base::Level;
using base::LogLine;

Shard::Impl::Impl(uint32_t i, ShardShared& s, std::vector<int> fds, size_t tls_listeners_from)
    : index(i), shared(s), snap(s.snapshot.load(std::memory_order_acquire)), cfg(&snap->config()),
      listen_fds(std::move(fds)), tls_from(tls_listeners_from),
      ingest(*snap, ingest::Tables{s.dedup, s.ordering, s.limiter, s.key_secret}, clock, *this,
             pool, static_cast<uint8_t>(i)) {
    if (tls_from < listen_fds.size() && shared.tls != nullptr) {
        tls.emplace(pool);
    }
}

Shard::Impl::~Impl() {
    if (shared.tls != nullptr) {
        shared.tls->release(tls_reader);
    }
    // After a drain every exchange is back here: connections are closed and the spool is idle.
    while (Exchange* ex = free_exchanges) {
        free_exchanges = ex->next;
        delete ex; // NOLINT(cppcoreguidelines-owning-memory)
    }
}

// ---- start-up ------------------------------------------------------------------------------

namespace {

// What a shard's recovery reads for Ingest::remember: every record while a route keeps an
// ordering (its table has no window), else those younger than the longest dedup window; with
// neither, none (only the newest segment, for a torn tail).
int64_t remember_since(const config::Config& cfg, int64_t now_ns) {
    int64_t window = 0;
    for (const config::RouteConfig& r : cfg.routes) {
        if (r.ordering) {
            return INT64_MIN;
        }
        if (r.dedup) {
            window = std::max(window, r.dedup->window_ns);
        }
    }
    return now_ns - window;
}

} // namespace

std::string Shard::Impl::init() {
    read_clocks();
    if (auto err = ring.init(ring_entries, shared.features.setup_flags()); !err.empty()) {
        return err;
    }
    if (auto err = buffers.init(ring, recv_buffer_group, recv_buffer_count, recv_buffer_size);
        !err.empty()) {
        return err;
    }
    if (auto err = doorbell.open(); !err.empty()) {
        return err;
    }
    auto remember = [this](uint64_t, const queue::JobRecord& rec) { ingest.remember(rec); };
    queue::SpoolProgress* progress =
        shared.spool_progress != nullptr ? &shared.spool_progress[index] : nullptr;
    if (auto err = spool.open(cfg->spool.dir, index, cfg->spool, remember, progress,
                              remember_since(*cfg, clock.unix_ns));
        !err.empty()) {
        return err;
    }
    linger_timers.length_ns = linger_ns;
    apply_config();
    return {};
}

void Shard::Impl::apply_config() {
    limits.header_bytes = cfg->server.header_bytes;
    limits.max_headers = cfg->server.headers;
    if (header_scratch.size() < cfg->server.headers) {
        header_scratch.resize(cfg->server.headers);
    }
    // Connections already waiting keep their deadlines; a list expires in push order, so one
    // made shorter may hold a new deadline back until the older ones ahead of it are due.
    idle_timers.length_ns = cfg->server.idle_timeout_ns;
    header_timers.length_ns = cfg->server.header_timeout_ns;
    body_timers.length_ns = cfg->server.body_timeout_ns;
    proxy_mode.reset();
    switch (cfg->server.proxy_protocol) {
    case config::ProxyProtocol::off:
        break;
    case config::ProxyProtocol::v1:
        proxy_mode = admit::ProxyMode::v1;
        break;
    case config::ProxyProtocol::v2:
        proxy_mode = admit::ProxyMode::v2;
        break;
    case config::ProxyProtocol::any:
        proxy_mode = admit::ProxyMode::any;
        break;
    }
}

void Shard::Impl::take_up_snapshot() {
    const config::Snapshot* now = shared.snapshot.load(std::memory_order_acquire);
    if (now != snap) {
        snap = now;
        cfg = &now->config();
        ingest.use(*now);
        apply_config();
    }
    if (shared.uses == nullptr) {
        return;
    }
    // Stored only when they change: the cache line stays this shard's between reloads.
    SnapshotUse& use = shared.uses[index];
    const uint64_t current = snap->generation();
    const uint64_t oldest = ingest.oldest_generation();
    if (use.oldest.load(std::memory_order_relaxed) != oldest) {
        use.oldest.store(oldest, std::memory_order_release);
    }
    if (use.current.load(std::memory_order_relaxed) != current) {
        use.current.store(current, std::memory_order_release);
    }
}

// ---- event loop ----------------------------------------------------------------------------

void Shard::Impl::run() {
    read_clocks();
    for (uint32_t i = 0; i < listen_fds.size(); ++i) {
        arm_accept(i);
    }
    arm_doorbell();
    auto spooled = [this](uint64_t cookie, bool durable) { on_spooled(cookie, durable); };
    while (true) {
        read_clocks();
        date.update(clock.unix_ns);
        take_up_snapshot();
        if (!draining && shared.draining.load(std::memory_order_relaxed)) {
            start_drain();
        }
        if (tls) {
            shared.tls->refresh(index, tls_reader); // certificates of a reload, if any
        }
        expire_timers();
        if (clock.mono_ns >= next_exchange_trim) {
            trim_exchanges();
            next_exchange_trim = clock.mono_ns + base::ns_per_s;
        }
        if (draining && drain_finished()) {
            break;
        }
        take_control_jobs();
        offer_held();
        spool.flush(ring, clock.mono_ns, spooled);
        buffers.publish();
        logs.flush(ring);
        int rc = ring.submit_and_wait(spool.wait_limit_ns(clock.mono_ns, tick_ns));
        if (rc < 0) {
            LogLine(Level::error, "io_uring_enter failed")
                .field("shard", static_cast<int64_t>(index))
                .field("error", std::strerror(-rc))
                .write();
            break;
        }
        read_clocks();
        ring.for_each_cqe([this](const io_uring_cqe& cqe) { dispatch(cqe); });
    }
    // Let the last log lines out before the thread ends.
    logs.flush(ring);
    while (!logs.idle()) {
        ring.submit_and_wait(tick_ns);
        ring.for_each_cqe([this](const io_uring_cqe& cqe) { dispatch(cqe); });
        logs.flush(ring);
    }
}

void Shard::Impl::read_clocks() {
    clock.unix_ns = base::unix_ns();
    clock.mono_ns = base::mono_ns();
}

void Shard::Impl::dispatch(const io_uring_cqe& cqe) {
    uint8_t op = op_of(cqe.user_data);
    if (queue::is_spool_tag(op)) {
        spool.on_cqe(cqe, clock.mono_ns,
                     [this](uint64_t cookie, bool durable) { on_spooled(cookie, durable); });
        return;
    }
    switch (static_cast<Op>(op)) {
    case Op::accept:
        on_accept(cqe);
        return;
    case Op::recv:
        on_recv(cqe);
        return;
    case Op::send:
        on_send(cqe);
        return;
    case Op::close:
        on_closed(cqe);
        return;
    case Op::log_write:
        logs.on_written();
        return;
    case Op::shutdown:
        on_shutdown(cqe);
        return;
    case Op::doorbell:
        on_doorbell(cqe);
        return;
    case Op::cancel:
    case Op::close_unowned:
        return;
    }
}

Connection* Shard::Impl::lookup(uint64_t ud) {
    uint32_t i = index_of(ud);
    if (i >= conns.size()) {
        return nullptr;
    }
    Connection* c = conns[i];
    if (c->state == State::free || (c->gen & 0xffffff) != gen_of(ud)) {
        return nullptr;
    }
    return c;
}

void Shard::Impl::log(LogLine& line) {
    if (!base::log_enabled(Level::warn)) {
        return;
    }
    if (!logs.append(line.finish())) {
        stats.log_lines_dropped.fetch_add(1, std::memory_order_relaxed);
    }
}

// ---- accept --------------------------------------------------------------------------------

void Shard::Impl::arm_accept(uint32_t listener) {
    io_uring_sqe* sqe = ring.sqe();
    io_uring_prep_multishot_accept(sqe, listen_fds[listener], nullptr, nullptr, SOCK_CLOEXEC);
    sqe->user_data = pack(Op::accept, 0, listener);
    ++accepts_armed;
}

void Shard::Impl::on_accept(const io_uring_cqe& cqe) {
    uint32_t listener = index_of(cqe.user_data);
    bool more = (cqe.flags & IORING_CQE_F_MORE) != 0;
    if (!more) {
        --accepts_armed;
        if (!draining && listener < listen_fds.size() && listen_fds[listener] >= 0) {
            arm_accept(listener);
        }
    }
    if (cqe.res < 0) {
        return; // ECANCELED on drain; EMFILE and the like: the re-armed accept retries
    }
    int fd = cqe.res;
    uint32_t total = shared.connections.fetch_add(1, std::memory_order_relaxed);
    if (draining || total >= cfg->server.max_connections) {
        shared.connections.fetch_sub(1, std::memory_order_relaxed);
        stats.refused_connections.fetch_add(1, std::memory_order_relaxed);
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_close(sqe, fd);
        sqe->user_data = pack(Op::close_unowned, 0, 0);
        return;
    }
    Connection& c = allocate_connection();
    c.fd = fd;
    // The peer address: multishot accept shares one address buffer between completions, so it
    // is read per connection instead (once per connection, not per request).
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
        c.peer = base::PeerAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
    }
    stats.accepted_connections.fetch_add(1, std::memory_order_relaxed);
    if (listener >= tls_from && tls) {
        // The certificates of a reload that came while this shard waited for this accept: the
        // refresh at the top of the loop ran before the wait.
        shared.tls->refresh(index, tls_reader);
        c.ssl = tls->accept(tls_reader.ctx);
        if (c.ssl == nullptr) {
            close_connection(c);
            return;
        }
    }
    if (proxy_mode) {
        // Behind a balancer, the client is known once its PROXY header is in. With
        // trusted_proxies set, only those peers may send one.
        c.state = State::reading_proxy;
        if (!snap->trusted_proxies().empty() && !snap->trusted_proxies().contains(c.peer)) {
            stats.proxy_refused.fetch_add(1, std::memory_order_relaxed);
            close_connection(c);
            return;
        }
        header_timers.push(c, clock.mono_ns + header_timers.length_ns);
    } else {
        c.state = State::reading_head;
        if (!count_client(c)) {
            close_connection(c);
            return;
        }
        // A handshake counts against timeouts.header, as the head after it does.
        TimerList& timer = c.ssl != nullptr ? header_timers : idle_timers;
        timer.push(c, clock.mono_ns + timer.length_ns);
    }
    arm_recv(c);
}

// server.max_connections_per_ip, over all shards. Trusted proxies carry many clients and are
// not capped.
bool Shard::Impl::count_client(Connection& c) {
    if (shared.per_client == nullptr || snap->trusted_proxies().contains(c.peer)) {
        return true;
    }
    c.counted = shared.per_client->acquire(admit::rate_key(shared.key_secret, c.peer),
                                           cfg->server.max_connections_per_ip);
    if (!c.counted.admitted) {
        stats.refused_per_client.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    return true;
}

Connection& Shard::Impl::allocate_connection() {
    if (free_conns.empty()) {
        auto block = std::make_unique<Connection[]>(chunk);
        uint32_t base_index = static_cast<uint32_t>(conns.size());
        for (uint32_t i = 0; i < chunk; ++i) {
            block[i].index = base_index + i;
            conns.push_back(&block[i]);
        }
        for (uint32_t i = chunk; i-- > 0;) {
            free_conns.push_back(base_index + i);
        }
        conn_chunks.push_back(std::move(block));
    }
    Connection& c = *conns[free_conns.back()];
    free_conns.pop_back();
    uint32_t index_keep = c.index;
    uint32_t gen = c.gen + 1;
    c = Connection{};
    c.index = index_keep;
    c.gen = gen;
    ++open_conns;
    return c;
}

void Shard::Impl::free_connection(Connection& c) {
    // An answer still in flight when the connection closed was cancelled with it; its buffer
    // goes back only now that the close has completed.
    pool.release(c.out);
    c.out = nullptr;
    pool.release(c.tls_out);
    c.tls_out = nullptr;
    if (c.ssl != nullptr) {
        tls::Transport::close(c.ssl);
        c.ssl = nullptr;
    }
    c.state = State::free;
    free_conns.push_back(c.index);
    --open_conns;
}

// ---- timers and drain ----------------------------------------------------------------------

namespace {

template <typename F>
void expire(TimerList& list, int64_t now, F&& on_expired) {
    while (list.head != nullptr && list.head->deadline <= now) {
        Connection& c = *list.head;
        list.remove(c);
        on_expired(c);
    }
}

} // namespace

void Shard::Impl::expire_timers() {
    const int64_t now = clock.mono_ns;
    expire(idle_timers, now, [this](Connection& c) { close_connection(c); });
    expire(header_timers, now, [this](Connection& c) { on_timeout(c); });
    expire(body_timers, now, [this](Connection& c) { on_timeout(c); });
    expire(linger_timers, now, [this](Connection& c) { close_connection(c); });
}

void Shard::Impl::on_timeout(Connection& c) {
    if (c.state != State::reading_proxy && in_handshake(c)) {
        stats.tls_handshake_timeouts.fetch_add(1, std::memory_order_relaxed);
        LogLine line(Level::info, "request timed out", clock.unix_ns);
        line.field("phase", "tls_handshake");
        add_peer(line, c);
        log(line);
        close_connection(c);
        return;
    }
    const bool body = c.state == State::reading_body;
    (body ? stats.body_timeouts : stats.header_timeouts).fetch_add(1, std::memory_order_relaxed);
    LogLine line(Level::info, "request timed out", clock.unix_ns);
    std::string_view phase = body ? "body" : c.state == State::reading_proxy ? "proxy" : "header";
    line.field("phase", phase);
    add_peer(line, c);
    log(line);
    // With answers owed before this request's, a client this slow gets no 408 of its own.
    if (c.state == State::reading_proxy || c.send_inflight ||
        c.first != (body ? c.newest : nullptr)) {
        close_connection(c);
        return;
    }
    final_answer(c, 408, http::error_body::timeout);
}

void Shard::Impl::start_drain() {
    draining = true;
    drain_deadline = clock.mono_ns + cfg->server.drain_timeout_ns;
    for (int& fd : listen_fds) {
        if (fd >= 0) {
            io_uring_sqe* cancel = ring.sqe();
            io_uring_prep_cancel_fd(cancel, fd, IORING_ASYNC_CANCEL_ALL);
            cancel->flags |= IOSQE_IO_HARDLINK;
            cancel->user_data = pack(Op::cancel, 0, 0);
            io_uring_sqe* close = ring.sqe();
            io_uring_prep_close(close, fd);
            close->user_data = pack(Op::close_unowned, 0, 0);
            fd = -1;
        }
    }
    // Idle keep-alive connections have nothing in flight: close them now.
    for (Connection* c : conns) {
        if ((c->state == State::reading_head && c->timer == &idle_timers) ||
            c->state == State::reading_proxy || (is_open(*c) && in_handshake(*c))) {
            close_connection(*c);
        }
    }
}

bool Shard::Impl::drain_finished() {
    bool connections_done = open_conns == 0;
    if (!connections_done && clock.mono_ns >= drain_deadline) {
        for (Connection* c : conns) {
            if (is_open(*c) && !has_spooling(*c)) {
                close_connection(*c);
            }
        }
    }
    return (connections_done || clock.mono_ns >= drain_deadline + base::ns_per_s) &&
           held_first == nullptr && spool.drained() && accepts_armed == 0;
}

// ---- the public face -----------------------------------------------------------------------

Shard::Shard(uint32_t index, ShardShared& shared, std::vector<int> listen_fds, size_t tls_from)
    : _impl(std::make_unique<Impl>(index, shared, std::move(listen_fds), tls_from)) {}

Shard::~Shard() = default;

std::string Shard::init() {
    return _impl->init();
}

void Shard::run() {
    _impl->run();
}

const ShardStats& Shard::stats() const {
    return _impl->stats;
}

const ingest::Stats& Shard::ingest_stats() const {
    return _impl->ingest.stats();
}

const ingest::RouteStatsTable& Shard::route_stats() const {
    return _impl->ingest.route_stats();
}

const ingest::RouteStats& Shard::unmatched_stats() const {
    return _impl->ingest.unmatched_stats();
}

const queue::SpoolMetrics& Shard::spool_metrics() const {
    return _impl->spool.metrics();
}

void Shard::wake() const {
    _impl->doorbell.ring();
}

ingest::ShardPort Shard::port() {
    return {&_impl->control_inbox, &_impl->control_outbox, &_impl->doorbell};
}

} // namespace portcullis::io
