// What the sinks share to hold an outgoing stream connection on the control plane's io_uring
// (private to src/deliver, like tls_client.hh): the user_data layout, the server's addresses
// (resolved off the loop), the reconnection backoff, and one connection (socket, CONNECT,
// optional TLS, a send queue and a receive buffer, close with its pending operations
// cancelled). The protocol (what to send, what the bytes received mean, when a connection is
// usable or has failed) stays with each sink.
//
//   RingTag tag{nats_tag, slot};
//   Endpoint endpoint(ring, tag, host, port, resolve_interval_ns, ops);
//   RingConnection conn(ring, pool, tag, ops);
//   conn.init(recv_bytes);                          // start-up
//   conn.init_tls(ca, system_ca_file, where);       // when TLS may be used
//   endpoint.init();                                // an IP literal, or the resolver's first read
//   conn.open(endpoint.current());                  // socket + CONNECT (tagged connect, gen)
//   conn.start_tls(host, endpoint.host_is_ip());    // after CONNECT, when TLS is wanted
//   conn.output().append(bytes); conn.flush(true, error);
//   // CQEs: the sink decrements its `ops` for each, then
//   if (conn.completed(op, generation)) { conn.on_sent(res, error) / conn.on_received(res, f) }
//   conn.close();                                   // cancels what is pending, closes
//
// Every operation a class here puts on the ring adds one to the sink's `ops` counter; the sink
// takes one off per CQE it owns (so that idle() stays one number).
#pragma once

#include "resolver.hh"
#include "tls_client.hh"

#include "portcullis/base/buffer_pool.hh"
#include "portcullis/io/ring.hh"
#include "portcullis/tls/transport.hh"

#include <openssl/ssl.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::deliver {

// The operation of a sink's SQE, in user_data's third byte.
enum class RingOp : uint8_t { connect = 1, send, recv, event, report, cancel, flush };

// A sink's user_data: its tag in the top byte, its slot in the next, then the operation, a
// 16-bit generation (of the connection, or of a request) and a 24-bit index (of a connection
// among several, or of a request).
struct RingTag {
    uint64_t tag = 0;
    uint8_t slot = 0;

    uint64_t pack(RingOp op, uint16_t generation = 0, uint32_t index = 0) const {
        return tag << 56 | uint64_t(slot) << 48 | uint64_t(op) << 40 | uint64_t(generation) << 24 |
               (index & 0xffffff);
    }
    static RingOp op_of(uint64_t user_data) {
        return static_cast<RingOp>((user_data >> 40) & 0xff);
    }
    static uint16_t generation_of(uint64_t user_data) {
        return static_cast<uint16_t>(user_data >> 24);
    }
    static uint32_t index_of(uint64_t user_data) {
        return static_cast<uint32_t>(user_data & 0xffffff);
    }
};

// "delivered", "retry", "rejected": the outcome kinds' names, for enums that number them so.
template <typename Kind>
std::string_view outcome_kind_name(Kind k) {
    switch (static_cast<int>(k)) {
    case 0:
        return "delivered";
    case 2:
        return "rejected";
    default:
        return "retry";
    }
}

// Puts a NOP tagged `op` on the ring: it completes at the next submission (a report of outcomes
// found outside on_cqe(), or a flush after the caller's other starts of the same turn).
void post_nop(io::Ring& ring, const RingTag& tag, RingOp op, size_t& ops, uint16_t generation = 0,
              uint32_t index = 0);

// The server's addresses: an IP literal at once, a name through a Resolver whose answers arrive
// on the ring (a read of its eventfd, tagged RingOp::event).
class Endpoint {
public:
    Endpoint(io::Ring& ring, RingTag tag, std::string host, uint16_t port,
             int64_t resolve_interval_ns, size_t& ops);

    // The addresses of an IP literal, or the resolver and the first read of its eventfd (no
    // resolution asked yet: request()).
    void init();
    bool host_is_ip() const { return _host_is_ip; }
    bool has_resolver() const { return _resolver != nullptr; }
    bool resolving() const { return _resolving; }
    const std::vector<ResolvedAddress>& addresses() const { return _addresses; }
    // The address to try next, and moving past it (a failed connection).
    const ResolvedAddress& current() const { return _addresses[_cursor % _addresses.size()]; }
    size_t cursor() const { return _cursor; }
    void set_cursor(size_t cursor) { _cursor = cursor; }
    // Why the last resolution failed ("resolve HOST: why"); empty after a good one.
    const std::string& error() const { return _error; }

    // Asks for a resolution unless one is under way (or there is no resolver, or stop() came):
    // true when asked.
    bool request();
    // A resolution is due (the interval since the last answer has passed).
    bool due(int64_t now_ns) const {
        return _resolver != nullptr && !_resolving && now_ns >= _next_resolve_ns;
    }
    // `next` or the time of the next resolution, whichever comes first.
    int64_t earliest(int64_t next) const;

    // The eventfd's read completed (res its result): false when no answer came. Otherwise the
    // answer is in: the addresses replaced (the cursor back to the first), or, when it has none,
    // error() says why and the last good addresses stay. Arms the next read.
    bool on_event(int res, int64_t now_ns);

    // Cancels the eventfd's read; no resolution is asked any more.
    void stop();

private:
    io::Ring& _ring;
    RingTag _tag;
    std::string _host;
    uint16_t _port;
    int64_t _resolve_interval_ns;
    size_t& _ops;
    std::unique_ptr<Resolver> _resolver; // null for an IP literal
    std::vector<ResolvedAddress> _addresses;
    size_t _cursor = 0;
    bool _host_is_ip = false;
    bool _resolving = false;
    bool _event_armed = false;
    bool _stopped = false;
    uint64_t _event_value = 0; // the eventfd read's target
    int64_t _next_resolve_ns = 0;
    std::string _error;

    void arm_event();
};

// Reconnection delays: min_ns doubling to max_ns with each failure in a row; with jitter, a
// delay drawn evenly between min_ns and that (full jitter: many sinks or appliances do not come
// back in step).
class Backoff {
public:
    Backoff(int64_t min_ns, int64_t max_ns, bool jitter);
    // The delay before the next attempt, counting one more failure.
    int64_t next_ns();
    void reset();
    uint32_t failures() const { return _failures; }

private:
    int64_t _min_ns;
    int64_t _max_ns;
    bool _jitter;
    int64_t _current_ns = 0;
    uint32_t _failures = 0;
    std::mt19937_64 _random;
};

// One outgoing stream connection on the ring.
class RingConnection {
public:
    // What flush() did.
    enum class Flush : uint8_t { idle, sent, failed };
    // What on_sent() did.
    enum class Sent : uint8_t { more, done, failed };

    // Appends to the send queue (plaintext), growing it from the pool. An allocation that fails
    // is remembered: the next flush() fails the connection.
    class Output {
    public:
        explicit Output(RingConnection& c) : _c(c) {}
        Output& append(std::string_view s);
        size_t size() const { return _c._queued->size; }
        void resize(size_t n) { _c._queued->size = std::min(n, _c._queued->size); }

    private:
        RingConnection& _c;
    };

    RingConnection(io::Ring& ring, base::BufferPool& pool, RingTag tag, size_t& ops);
    RingConnection(const RingConnection&) = delete;
    RingConnection& operator=(const RingConnection&) = delete;
    // The sink calls close() and waits for its operations first.
    ~RingConnection();

    // Start-up: the receive buffer (plaintext) of recv_bytes and the send queue. "" or "out of
    // memory".
    std::string init(size_t recv_bytes);
    // Start-up (blocks: reads the CA file): the client TLS context (tls_client.hh). "" or what is
    // wrong, starting with `where`; the connection can then not speak TLS.
    std::string init_tls(const std::optional<std::string>& ca, const std::string& system_ca_file,
                         const std::string& where);
    bool has_tls_context() const { return _tls_ctx != nullptr; }

    // A socket (TCP_NODELAY) and its CONNECT, for a new generation. "" or "socket: why".
    std::string open(const ResolvedAddress& a);
    // "connect ADDRESS: why" for a CONNECT that completed with res.
    std::string connect_error(int res) const;
    // The client session: SNI and the name to verify, the ClientHello queued (flush() sends it).
    // "" or why not.
    std::string start_tls(const std::string& host, bool host_is_ip);
    // Why the session failed, for the log.
    std::string tls_error(const std::string& host) const;
    // Cancels the operations in flight, closes the socket and ends the session. The send queue
    // stays (the sink clears it or keeps it for the next connection).
    void close();

    bool is_open() const { return _fd >= 0; }
    uint16_t generation() const { return _generation; }
    bool tls() const { return _ssl != nullptr; }
    bool handshake_done() const { return _ssl != nullptr && tls::Transport::handshake_done(_ssl); }
    // Operations in flight (of this connection or a closed one).
    bool connecting() const { return _connecting; }
    bool sending() const { return _sending; }
    bool receiving() const { return _receiving; }
    bool busy() const { return _connecting || _sending || _receiving; }

    // A CQE of this connection's kind (connect, send, recv) completed: true when it is the open
    // connection's (then the sink handles it), false for a closed one's.
    bool completed(RingOp op, uint16_t generation);

    // Output.
    Output output() { return Output(*this); }
    // Puts `front` ahead of what is queued.
    bool prepend(std::string_view front);
    // Room for n more bytes at the queue's end, or nullptr (out of memory); commit() what was
    // written there.
    char* reserve(size_t n);
    void commit(size_t n) { _queued->size += n; }
    size_t queued() const { return _queued->size; }
    void clear_output();
    // Sends what is queued (sealed first with TLS, once the handshake is done) and the TLS
    // session's own bytes, unless a send is in flight. plain: the queue may go (the connection
    // is usable). Failed: `error` says why (the sink fails the connection).
    Flush flush(bool plain, std::string& error);
    // Asks for a flush after this turn of the loop rather than now: the caller is likely to queue
    // more in the same turn (the engine fills the window as replies free it), and a NOP tagged
    // RingOp::flush completes at the next submission, after them, so that they leave in one send.
    // Nothing when a send is in flight (its completion takes what gathered), one is asked
    // already, or nothing is queued. The sink calls flush_nop_done() on that NOP, then flush().
    void flush_after_turn();
    void flush_nop_done() { _flush_posted = false; }
    // A send of the open connection completed: the rest goes, or it is done (then flush() for
    // what gathered meanwhile), or it failed (`error`).
    Sent on_sent(int res, std::string& error);

    // Input. Arms a receive unless one is in flight or the socket is closed.
    void arm_recv();
    std::string_view received() const { return {_rbuf.get(), _rlen}; }
    // Drops the first n bytes received (parsed).
    void consume(size_t n);
    void clear_received() { _rlen = 0; }
    // For a close with bytes received and not parsed: a `unit` (frame, reply) cut short by a
    // server or a proxy that died mid-write, not a clean close. "the server closed the
    // connection in the middle of a UNIT (N bytes of it received)".
    std::string closed_mid(std::string_view unit) const;

    struct Received {
        enum class Kind : uint8_t { again, error, eof, data } kind = Kind::data;
        tls::Status tls = tls::Status::ok; // of the session (data only)
        bool absorbed = true;              // absorb() did not return false
        bool overflow = false;             // plaintext larger than the receive buffer's room
        bool handshake_completed = false;
        std::string error; // error: "receive: why"
    };
    // A receive of the open connection completed with res. again: armed once more. data: the
    // plaintext is appended to received() and absorb() (returning false when the connection is
    // doomed) is called, for TLS once per record's plaintext; the sink arms the next receive.
    template <typename F>
    Received on_received(int res, F&& absorb);

private:
    io::Ring& _ring;
    base::BufferPool& _pool;
    RingTag _tag;
    size_t& _ops;
    bssl::UniquePtr<SSL_CTX> _tls_ctx;
    std::unique_ptr<tls::Transport> _transport;

    uint16_t _generation = 0;
    int _fd = -1;
    SSL* _ssl = nullptr;
    bool _connecting = false; // operations in flight
    bool _sending = false;
    bool _receiving = false;
    bool _out_of_memory = false;
    bool _flush_posted = false; // a RingOp::flush NOP is on the ring
    ResolvedAddress _address;   // what the CONNECT was given: the kernel reads it at submission
    // Plaintext gathering; the bytes of the send in flight (plaintext or ciphertext); with TLS,
    // ciphertext gathering for the next send.
    base::Buffer* _queued = nullptr;
    base::Buffer* _sending_buf = nullptr;
    base::Buffer* _cipher = nullptr;
    size_t _sent = 0;
    std::unique_ptr<char[]> _rbuf; // plaintext received
    size_t _rcap = 0;
    size_t _rlen = 0;
    std::unique_ptr<char[]> _cbuf; // TLS: ciphertext received

    void cancel(RingOp op);
    void arm_send();
};

template <typename F>
RingConnection::Received RingConnection::on_received(int res, F&& absorb) {
    Received r;
    if (res == -EAGAIN || res == -EINTR || res == -ENOBUFS) {
        r.kind = Received::Kind::again;
        arm_recv();
        return r;
    }
    if (res < 0) {
        r.kind = Received::Kind::error;
        r.error = std::string("receive: ") + std::strerror(-res);
        return r;
    }
    if (res == 0) {
        r.kind = Received::Kind::eof;
        return r;
    }
    if (_ssl == nullptr) {
        _rlen += size_t(res);
        r.absorbed = absorb();
        return r;
    }
    const bool was_done = tls::Transport::handshake_done(_ssl);
    r.tls = _transport->receive(_ssl, std::string_view(_cbuf.get(), size_t(res)), _cipher,
                                [&](std::string_view plain) {
                                    if (plain.size() > _rcap - _rlen) {
                                        r.overflow = true;
                                        return false;
                                    }
                                    std::memcpy(_rbuf.get() + _rlen, plain.data(), plain.size());
                                    _rlen += plain.size();
                                    r.absorbed = absorb();
                                    return r.absorbed;
                                });
    r.handshake_completed = !was_done && tls::Transport::handshake_done(_ssl);
    return r;
}

} // namespace portcullis::deliver
