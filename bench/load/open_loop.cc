// open_loop: a constant-arrival-rate HTTP/1.1 load generator that measures latency free of
// coordinated omission (the wrk2 approach), for bench/load/latency.
//
//   open_loop --host 127.0.0.1 --port P --rate R --request FILE [--duration 10s] [--warmup 2s]
//             [--connections 128] [--unique-marker XXXX...] [--expect-status 202]
//             [--out spectrum.txt] [--drain 10s] [--spin-us 2]
//
// Request i is *intended* at t0 + i/R, whatever happened to the requests before it. When its time
// comes it goes out on an idle keep-alive connection, or waits in a FIFO backlog until one is
// free. Its latency is the time its whole response was read minus its intended time, so a server
// that stalls is charged for every request that should have been sent during the stall (a
// closed-loop client such as wrk sends nothing then and so never measures them: "coordinated
// omission"). One thread, epoll, nonblocking sockets, one request in flight per connection.
//
// It is an independent client: it links nothing of portcullis, so that a bug shared by the
// server's and the client's HTTP code cannot hide itself.
//
// Output on stdout: `key value` lines (see print_results) and a human summary; with --out, the
// latency by percentile for plotting. Exit 0 when every response had --expect-status and no
// connection failed, 1 otherwise, 2 on a usage error.
#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

constexpr int64_t ns_per_us = 1000;
constexpr int64_t ns_per_s = 1'000'000'000;

int64_t mono_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * ns_per_s + ts.tv_nsec;
}

// Log-linear histogram of nanosecond values, HdrHistogram's layout: exact below 512 ns, then 256
// linear sub-buckets per power of two, so a bucket is at most 1/256 (0.4%) of its values wide.
// Fixed size and no allocation after construction: recording is an index computation and an
// increment, whatever the rate and the duration.
class Histogram {
public:
    static constexpr int sub_bits = 8;
    static constexpr int64_t sub_count = int64_t{1} << sub_bits; // 256
    static constexpr int max_msb = 46;                           // up to ~39 hours

    Histogram() : counts_(index_of((int64_t{1} << (max_msb + 1)) - 1) + 1, 0) {}

    void record(int64_t v) {
        v = std::clamp<int64_t>(v, 0, (int64_t{1} << (max_msb + 1)) - 1);
        ++counts_[index_of(v)];
        ++total_;
        max_ = std::max(max_, v);
        min_ = std::min(min_, v);
    }

    uint64_t total() const { return total_; }
    int64_t max() const { return total_ == 0 ? 0 : max_; }

    // Nearest rank: the smallest recorded value v such that at least p% of the samples are <= v,
    // given as the highest value of its bucket (at most 0.4% above the true sample), capped by the
    // true maximum and floored by the true minimum.
    int64_t percentile(double p) const {
        if (total_ == 0) {
            return 0;
        }
        auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_)));
        rank = std::clamp<uint64_t>(rank, 1, total_);
        uint64_t seen = 0;
        for (size_t i = 0; i < counts_.size(); ++i) {
            seen += counts_[i];
            if (seen >= rank) {
                return std::clamp(highest_of(i), min_, max_);
            }
        }
        return max_;
    }

private:
    static size_t index_of(int64_t v) {
        if (v < 2 * sub_count) {
            return static_cast<size_t>(v);
        }
        const int msb = 63 - __builtin_clzll(static_cast<uint64_t>(v));
        const int shift = msb - sub_bits;
        const int64_t top = v >> shift; // in [256, 512)
        return static_cast<size_t>(2 * sub_count + (msb - sub_bits - 1) * sub_count +
                                   (top - sub_count));
    }

    static int64_t highest_of(size_t index) {
        const auto i = static_cast<int64_t>(index);
        if (i < 2 * sub_count) {
            return i;
        }
        const int64_t octave = (i - 2 * sub_count) / sub_count; // msb - sub_bits - 1
        const int64_t top = (i - 2 * sub_count) % sub_count + sub_count;
        const int shift = static_cast<int>(octave) + 1;
        return ((top + 1) << shift) - 1;
    }

    std::vector<uint64_t> counts_;
    uint64_t total_ = 0;
    int64_t max_ = 0;
    int64_t min_ = INT64_MAX;
};

struct Options {
    std::string host = "127.0.0.1";
    std::string port;
    double rate = 0;
    int64_t duration_ns = 10 * ns_per_s;
    int64_t warmup_ns = 2 * ns_per_s;
    int64_t drain_ns = 10 * ns_per_s;
    int64_t spin_ns = 2'000;
    int connections = 128;
    std::string request_file;
    std::string marker = std::string(36, 'X');
    int expect_status = 202;
    std::string out;
};

void usage(FILE* f) {
    std::fprintf(
        f,
        "usage: open_loop --port P --rate R --request FILE [--host 127.0.0.1] [--duration 10s]\n"
        "                 [--warmup 2s] [--connections 128] [--unique-marker STRING]\n"
        "                 [--expect-status 202] [--out FILE] [--drain 10s] [--spin-us 2]\n"
        "  --rate R           requests per second, intended at t0 + i/R (open loop)\n"
        "  --request FILE     one complete raw HTTP/1.1 request (head and body), keep-alive\n"
        "  --unique-marker S  every occurrence of S in FILE is replaced, per request, by a fresh\n"
        "                     value of the same length (default: 36 'X', a UUID-like value)\n"
        "  --duration, --warmup  the measured window and the unmeasured lead-in before it\n"
        "                     (suffix ms, s or m; a bare number is seconds)\n"
        "  --drain D          how long to wait after the last intended send for the rest\n"
        "  --spin-us N        poll instead of sleeping when the next send is due within N us\n"
        "                     (default 2; more lowers the client's own timing error at the\n"
        "                     cost of its CPU: use it on a core of the client's own)\n"
        "  --out FILE         the latency by percentile: percentile value_us 1/(1-p)\n");
}

// "10s", "500ms", "2m", "1.5" (seconds). Returns -1 when malformed.
int64_t parse_duration(std::string_view s) {
    double scale = 1e9;
    if (s.ends_with("ms")) {
        scale = 1e6;
        s.remove_suffix(2);
    } else if (s.ends_with("s")) {
        s.remove_suffix(1);
    } else if (s.ends_with("m")) {
        scale = 60e9;
        s.remove_suffix(1);
    }
    if (s.empty()) {
        return -1;
    }
    char* end = nullptr;
    const std::string copy(s);
    const double v = std::strtod(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size() || !(v >= 0) || v > 1e6) {
        return -1;
    }
    return static_cast<int64_t>(v * scale);
}

bool parse_args(int argc, char** argv, Options& o) {
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "-h" || a == "--help") {
            usage(stdout);
            std::exit(0);
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "open_loop: %s needs a value\n", argv[i]);
            return false;
        }
        const std::string_view v = argv[++i];
        if (a == "--host") {
            o.host = v;
        } else if (a == "--port") {
            o.port = v;
        } else if (a == "--rate") {
            o.rate = std::strtod(std::string(v).c_str(), nullptr);
        } else if (a == "--duration") {
            o.duration_ns = parse_duration(v);
        } else if (a == "--warmup") {
            o.warmup_ns = parse_duration(v);
        } else if (a == "--drain") {
            o.drain_ns = parse_duration(v);
        } else if (a == "--connections") {
            o.connections = std::atoi(std::string(v).c_str());
        } else if (a == "--request") {
            o.request_file = v;
        } else if (a == "--unique-marker") {
            o.marker = v;
        } else if (a == "--expect-status") {
            o.expect_status = std::atoi(std::string(v).c_str());
        } else if (a == "--spin-us") {
            o.spin_ns = static_cast<int64_t>(std::strtod(std::string(v).c_str(), nullptr) * 1e3);
        } else if (a == "--out") {
            o.out = v;
        } else {
            std::fprintf(stderr, "open_loop: unknown option %s\n", argv[i - 1]);
            return false;
        }
    }
    if (o.port.empty() || o.request_file.empty() || !(o.rate > 0) || o.duration_ns <= 0 ||
        o.warmup_ns < 0 || o.drain_ns < 0 || o.connections < 1 || o.marker.empty()) {
        std::fprintf(stderr, "open_loop: --port, --request and --rate > 0 are required; "
                             "durations must parse; --connections >= 1\n");
        return false;
    }
    return true;
}

bool read_file(const std::string& path, std::string& out) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        return false;
    }
    char buf[65536];
    size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        out.append(buf, n);
    }
    const bool ok = std::ferror(f) == 0;
    std::fclose(f);
    return ok;
}

// The per-request unique value, exactly `len` characters. For 36 (a GitHub delivery GUID's
// length) a UUID-shaped string: this process' random id, then the counter. Otherwise hex digits
// of the id and the counter, the counter's low digits last (kept when `len` is short).
void unique_value(char* dst, size_t len, uint32_t run_id, uint64_t counter) {
    char buf[64];
    if (len == 36) {
        std::snprintf(buf, sizeof buf, "%08" PRIx32 "-%04" PRIx64 "-4000-8000-%012" PRIx64, run_id,
                      (counter >> 48) & 0xffff, counter & uint64_t{0xffffffffffff});
        std::memcpy(dst, buf, 36);
        return;
    }
    std::snprintf(buf, sizeof buf, "%08" PRIx32 "%016" PRIx64, run_id, counter); // 24 chars
    if (len <= 24) {
        std::memcpy(dst, buf + 24 - len, len);
    } else {
        std::memset(dst, '0', len - 24);
        std::memcpy(dst + len - 24, buf, 24);
    }
}

// What parse_response found in the bytes read so far.
enum class Parse { need_more, done, error };

struct Response {
    int status = 0;
    size_t length = 0; // head + body, bytes
    bool close = false;
};

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i]))) {
            return false;
        }
    }
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

bool has_token(std::string_view value, std::string_view token) {
    while (!value.empty()) {
        const size_t comma = value.find(',');
        if (iequals(trim(value.substr(0, comma)), token)) {
            return true;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        value.remove_prefix(comma + 1);
    }
    return false;
}

// One response at the start of `buf`: its status, its whole length (the head, then exactly
// Content-Length bytes of body) and whether the server will close. Interim 1xx responses are
// skipped. Chunked or close-delimited bodies are errors: the server under test always sends a
// length, and a client that guessed would measure the wrong thing.
Parse parse_response(std::string_view buf, Response& r, std::string& why) {
    size_t start = 0;
    for (;;) {
        const std::string_view rest = buf.substr(start);
        const size_t head_end = rest.find("\r\n\r\n");
        if (head_end == std::string_view::npos) {
            if (rest.size() > 65536) {
                why = "response head over 64 KiB";
                return Parse::error;
            }
            return Parse::need_more;
        }
        std::string_view head = rest.substr(0, head_end + 2);
        const size_t line_end = head.find("\r\n");
        const std::string_view status_line = head.substr(0, line_end);
        // "HTTP/1.x SSS reason"
        if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.") ||
            status_line[8] != ' ' || (status_line.size() > 12 && status_line[12] != ' ')) {
            why = "bad status line";
            return Parse::error;
        }
        const bool http10 = status_line[7] == '0';
        int status = 0;
        if (std::from_chars(status_line.data() + 9, status_line.data() + 12, status).ec !=
                std::errc{} ||
            status < 100 || status > 999) {
            why = "bad status code";
            return Parse::error;
        }
        head.remove_prefix(line_end + 2);
        bool have_length = false;
        size_t content_length = 0;
        bool close = http10;
        while (!head.empty()) {
            const size_t eol = head.find("\r\n");
            const std::string_view line = head.substr(0, eol);
            head.remove_prefix(eol + 2);
            const size_t colon = line.find(':');
            if (colon == std::string_view::npos || colon == 0) {
                why = "bad header line";
                return Parse::error;
            }
            const std::string_view name = line.substr(0, colon);
            const std::string_view value = trim(line.substr(colon + 1));
            if (iequals(name, "content-length")) {
                size_t n = 0;
                const auto res = std::from_chars(value.data(), value.data() + value.size(), n);
                if (res.ec != std::errc{} || res.ptr != value.data() + value.size() ||
                    (have_length && n != content_length)) {
                    why = "bad Content-Length";
                    return Parse::error;
                }
                have_length = true;
                content_length = n;
            } else if (iequals(name, "transfer-encoding")) {
                why = "Transfer-Encoding in a response (only Content-Length is accepted)";
                return Parse::error;
            } else if (iequals(name, "connection")) {
                if (has_token(value, "close")) {
                    close = true;
                } else if (has_token(value, "keep-alive")) {
                    close = false;
                }
            }
        }
        const size_t head_len = head_end + 4;
        if (status >= 100 && status < 200) {
            if (status == 101) {
                why = "101 Switching Protocols";
                return Parse::error;
            }
            start += head_len; // an interim response: the final one follows
            continue;
        }
        if (status == 204 || status == 304) {
            content_length = 0;
            have_length = true;
        }
        if (!have_length) {
            why = "response without Content-Length";
            return Parse::error;
        }
        if (rest.size() < head_len + content_length) {
            return Parse::need_more;
        }
        r.status = status;
        r.length = start + head_len + content_length;
        r.close = close;
        return Parse::done;
    }
}

enum class State { connecting, idle, writing, reading, dead };

struct Conn {
    int fd = -1;
    State state = State::dead;
    std::string request; // this connection's copy of the request, its marker patched per send
    size_t written = 0;
    std::string in;
    int64_t intended_ns = 0;
    bool measured = false;
    bool want_out = false; // EPOLLOUT registered
};

struct Stats {
    uint64_t sent_measured = 0;
    uint64_t completed_measured = 0;
    uint64_t completed_all = 0;
    uint64_t unexpected_status = 0;
    uint64_t protocol_errors = 0;
    uint64_t connection_errors = 0; // reset, closed while a request was in flight, or at idle
    uint64_t connect_errors = 0;
    uint64_t unfinished = 0; // not answered by the end of the drain
    uint64_t backlog_max = 0;
    uint64_t backlog_max_measured = 0;
    int64_t first_measured_send_ns = 0;
    int64_t last_measured_done_ns = 0;
    std::map<int, uint64_t> statuses_measured;
    std::map<int, uint64_t> statuses_all;
    std::string first_error;

    uint64_t errors() const {
        return unexpected_status + protocol_errors + connection_errors + connect_errors +
               unfinished;
    }
    void error(const std::string& what) {
        if (first_error.empty()) {
            first_error = what;
        }
    }
};

class Client {
public:
    Client(const Options& o, const addrinfo* addr, std::string request)
        : o_(o), addr_(addr), template_(std::move(request)) {
        for (size_t at = template_.find(o.marker); at != std::string::npos;
             at = template_.find(o.marker, at + o.marker.size())) {
            marker_at_.push_back(at);
        }
        uint32_t id = 0;
        if (getrandom(&id, sizeof id, 0) != sizeof id) {
            id = static_cast<uint32_t>(mono_ns() ^ getpid());
        }
        run_id_ = id;
        period_ns_ = 1e9 / o.rate;
        warm_n_ = static_cast<uint64_t>(std::ceil(static_cast<double>(o.warmup_ns) * o.rate / 1e9));
        total_n_ = warm_n_ + static_cast<uint64_t>(
                                 std::llround(static_cast<double>(o.duration_ns) * o.rate / 1e9));
        conns_.resize(static_cast<size_t>(o.connections));
    }

    size_t markers() const { return marker_at_.size(); }
    uint32_t run_id() const { return run_id_; }

    // Every connection up before t0, so that the schedule does not start with connects.
    bool connect_all() {
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        if (ep_ < 0) {
            std::perror("epoll_create1");
            return false;
        }
        for (auto& c : conns_) {
            if (!start_connect(c)) {
                return false;
            }
        }
        const int64_t deadline = mono_ns() + 10 * ns_per_s;
        std::array<epoll_event, 256> events{};
        while (std::any_of(conns_.begin(), conns_.end(),
                           [](const Conn& c) { return c.state == State::connecting; })) {
            if (mono_ns() > deadline) {
                std::fprintf(stderr, "open_loop: connections not up within 10 s\n");
                return false;
            }
            const int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 100);
            for (int i = 0; i < n; ++i) {
                Conn& c = *static_cast<Conn*>(events[static_cast<size_t>(i)].data.ptr);
                if (c.state == State::connecting && !finish_connect(c)) {
                    std::fprintf(stderr, "open_loop: connect: %s\n", stats_.first_error.c_str());
                    return false;
                }
            }
        }
        return true;
    }

    void run() {
        // Wake-ups late by the kernel's default 50 us timer slack would be charged to every
        // request sent after them: ask for the tightest slack.
        prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
        t0_ = mono_ns() + 1'000'000; // 1 ms from now: the first send is on time, not already late
        const int64_t schedule_end = intended(total_n_);
        const int64_t deadline = schedule_end + o_.drain_ns;
        std::array<epoll_event, 512> events{};
        bool pwait2 = true;
        for (;;) {
            int64_t now = mono_ns();
            // Every request whose intended time has come is due; those that find no idle
            // connection stay in the backlog (dispatched_ .. due_), oldest first.
            while (due_ < total_n_ && intended(due_) <= now) {
                ++due_;
            }
            const uint64_t backlog = due_ - dispatched_;
            stats_.backlog_max = std::max(stats_.backlog_max, backlog);
            if (due_ > warm_n_) {
                stats_.backlog_max_measured = std::max(stats_.backlog_max_measured, backlog);
            }
            while (dispatched_ < due_ && !idle_.empty()) {
                Conn& c = *idle_.back();
                idle_.pop_back();
                send_request(c, dispatched_, now);
                ++dispatched_;
            }
            if ((dispatched_ == total_n_ && in_flight_ == 0) || now >= deadline) {
                break;
            }
            if (live_ == 0) {
                stats_.error("every connection failed");
                break;
            }
            // Sleep until the next intended send (if a connection is free to take it) or until
            // a socket is ready. A send due within --spin-us is polled for instead: a sleep
            // that short costs more than it saves, and waking an idle CPU (in a VM, a halt and
            // an interrupt) is late by more than the wait itself.
            int64_t wait_ns = 100'000'000;
            if (due_ < total_n_ && !idle_.empty()) {
                wait_ns = intended(due_) - now;
            }
            wait_ns = std::clamp<int64_t>(std::min(wait_ns, deadline - now), 0, 100'000'000);
            if (wait_ns < o_.spin_ns) {
                wait_ns = 0;
            }
            int n = 0;
            if (pwait2) {
                const timespec ts{static_cast<time_t>(wait_ns / ns_per_s),
                                  static_cast<long>(wait_ns % ns_per_s)};
                n = epoll_pwait2(ep_, events.data(), static_cast<int>(events.size()), &ts, nullptr);
                if (n < 0 && errno == ENOSYS) {
                    pwait2 = false; // kernel before 5.11: millisecond timeouts, 0 below one
                    continue;
                }
            } else {
                n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()),
                               static_cast<int>(wait_ns / 1'000'000));
            }
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                std::perror("epoll_wait");
                stats_.error("epoll_wait failed");
                break;
            }
            for (int i = 0; i < n; ++i) {
                const epoll_event& ev = events[static_cast<size_t>(i)];
                on_event(*static_cast<Conn*>(ev.data.ptr), ev.events);
            }
        }
        // What the deadline left: requests never sent, or sent and never answered.
        stats_.unfinished = (total_n_ - dispatched_) + in_flight_;
        if (stats_.unfinished > 0) {
            stats_.error("requests unanswered at the end of the drain");
        }
        for (auto& c : conns_) {
            if (c.fd >= 0) {
                close(c.fd);
            }
        }
        close(ep_);
    }

    const Stats& stats() const { return stats_; }
    const Histogram& latency() const { return latency_; }
    const Histogram& send_lag() const { return send_lag_; }
    uint64_t measured_planned() const { return total_n_ - warm_n_; }
    int64_t window_start() const { return intended(warm_n_); }

private:
    int64_t intended(uint64_t i) const {
        return t0_ + static_cast<int64_t>(static_cast<double>(i) * period_ns_);
    }

    bool start_connect(Conn& c) {
        c.fd = socket(addr_->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c.fd < 0) {
            stats_.error(std::string("socket: ") + std::strerror(errno));
            ++stats_.connect_errors;
            c.state = State::dead;
            return false;
        }
        const int one = 1;
        setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c.fd, addr_->ai_addr, addr_->ai_addrlen) < 0 && errno != EINPROGRESS) {
            stats_.error(std::string("connect: ") + std::strerror(errno));
            ++stats_.connect_errors;
            close(c.fd);
            c.fd = -1;
            c.state = State::dead;
            return false;
        }
        c.state = State::connecting;
        ++live_;
        c.in.clear();
        c.want_out = true;
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT;
        ev.data.ptr = &c;
        epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
        return true;
    }

    bool finish_connect(Conn& c) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == EINPROGRESS || err == EALREADY) {
            return true;
        }
        if (err != 0) {
            stats_.error(std::string("connect: ") + std::strerror(err));
            ++stats_.connect_errors;
            epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
            close(c.fd);
            c.fd = -1;
            c.state = State::dead;
            --live_;
            return false;
        }
        set_out(c, false);
        c.state = State::idle;
        idle_.push_back(&c);
        return true;
    }

    void set_out(Conn& c, bool on) {
        if (c.want_out == on) {
            return;
        }
        epoll_event ev{};
        ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
        ev.data.ptr = &c;
        epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
        c.want_out = on;
    }

    void send_request(Conn& c, uint64_t i, int64_t now) {
        if (c.request.empty()) {
            c.request = template_;
        }
        for (const size_t at : marker_at_) {
            unique_value(c.request.data() + at, o_.marker.size(), run_id_, i);
        }
        c.intended_ns = intended(i);
        c.measured = i >= warm_n_;
        c.written = 0;
        c.state = State::writing;
        ++in_flight_;
        if (c.measured) {
            ++stats_.sent_measured;
            if (stats_.first_measured_send_ns == 0) {
                stats_.first_measured_send_ns = now;
            }
            send_lag_.record(now - c.intended_ns);
        }
        write_some(c);
    }

    void write_some(Conn& c) {
        while (c.written < c.request.size()) {
            const ssize_t n = send(c.fd, c.request.data() + c.written, c.request.size() - c.written,
                                   MSG_NOSIGNAL);
            if (n > 0) {
                c.written += static_cast<size_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                set_out(c, true);
                return;
            }
            fail(c, std::string("send: ") + std::strerror(errno));
            return;
        }
        set_out(c, false);
        c.state = State::reading;
    }

    void on_event(Conn& c, uint32_t events) {
        switch (c.state) {
        case State::connecting:
            // A reconnect after a failure: it rejoins the idle pool when up.
            finish_connect(c);
            return;
        case State::writing:
            if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) {
                write_some(c);
            }
            if (c.state != State::reading) {
                return;
            }
            [[fallthrough]];
        case State::reading:
        case State::idle:
            if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) != 0) {
                read_some(c);
            }
            return;
        case State::dead:
            return;
        }
    }

    void read_some(Conn& c) {
        char buf[16384];
        for (;;) {
            const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
            if (n > 0) {
                c.in.append(buf, static_cast<size_t>(n));
                if (static_cast<size_t>(n) < sizeof buf) {
                    break;
                }
                continue;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                break;
            }
            fail(c, n == 0 ? (c.state == State::idle ? "server closed an idle connection"
                                                     : "server closed the connection mid-request")
                           : std::string("recv: ") + std::strerror(errno));
            return;
        }
        if (c.state != State::reading) {
            // Bytes nobody asked for (no request in flight).
            fail(c, "data on an idle connection");
            return;
        }
        Response r;
        std::string why;
        switch (parse_response(c.in, r, why)) {
        case Parse::need_more:
            return;
        case Parse::error:
            ++stats_.protocol_errors;
            fail(c, why, false);
            return;
        case Parse::done:
            break;
        }
        const int64_t done = mono_ns();
        --in_flight_;
        ++stats_.completed_all;
        ++stats_.statuses_all[r.status];
        if (c.measured) {
            latency_.record(done - c.intended_ns);
            ++stats_.completed_measured;
            ++stats_.statuses_measured[r.status];
            stats_.last_measured_done_ns = std::max(stats_.last_measured_done_ns, done);
        }
        if (r.status != o_.expect_status) {
            ++stats_.unexpected_status;
            stats_.error("status " + std::to_string(r.status));
        }
        if (r.length != c.in.size()) {
            // One request in flight, so nothing may follow its response.
            ++stats_.protocol_errors;
            fail(c, "bytes after the response", false, false);
            return;
        }
        c.in.clear();
        if (r.close) {
            ++stats_.connection_errors;
            stats_.error("the server closed a keep-alive connection (Connection: close)");
            reconnect(c);
            return;
        }
        c.state = State::idle;
        idle_.push_back(&c);
    }

    // A connection that failed: the request on it (if any) is lost and counted, the connection is
    // replaced by a new one so that the offered load stays what was asked for.
    void fail(Conn& c, const std::string& why, bool count_connection = true,
              bool request_in_flight = true) {
        stats_.error(why);
        if (count_connection) {
            ++stats_.connection_errors;
        }
        if (request_in_flight && (c.state == State::writing || c.state == State::reading)) {
            --in_flight_;
        }
        if (c.state == State::idle) {
            idle_.erase(std::remove(idle_.begin(), idle_.end(), &c), idle_.end());
        }
        reconnect(c);
    }

    void reconnect(Conn& c) {
        epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
        close(c.fd);
        c.fd = -1;
        --live_;
        c.state = State::dead;
        start_connect(c);
    }

    const Options& o_;
    const addrinfo* addr_;
    std::string template_;
    std::vector<size_t> marker_at_;
    uint32_t run_id_ = 0;
    double period_ns_ = 0;
    uint64_t warm_n_ = 0;
    uint64_t total_n_ = 0;
    int64_t t0_ = 0;
    uint64_t due_ = 0;
    uint64_t dispatched_ = 0;
    uint64_t in_flight_ = 0;
    int64_t live_ = 0; // connections not dead: connecting, idle or busy
    int ep_ = -1;
    std::vector<Conn> conns_;
    std::vector<Conn*> idle_;
    Stats stats_;
    Histogram latency_;
    Histogram send_lag_;
};

std::string statuses_text(const std::map<int, uint64_t>& m) {
    if (m.empty()) {
        return "none";
    }
    std::string s;
    for (const auto& [status, n] : m) {
        if (!s.empty()) {
            s += ',';
        }
        s += std::to_string(status) + ":" + std::to_string(n);
    }
    return s;
}

double us(int64_t ns) {
    return static_cast<double>(ns) / ns_per_us;
}

// HdrHistogram's percentile ladder: 5 steps per halving of the distance to 100%, until a step
// would name the last sample; then the maximum. The third column, 1/(1-p), is the x of a "nines"
// plot (1 = 0%, 10 = 90%, 100 = 99%, ...); the maximum is put at x = the sample count.
bool write_spectrum(const std::string& path, const Histogram& h) {
    FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) {
        return false;
    }
    std::fprintf(
        f, "# percentile value_us inverse_tail (latency by percentile, %" PRIu64 " samples)\n",
        h.total());
    const auto n = static_cast<double>(h.total());
    for (int half = 0; half < 64; ++half) {
        const double lo = 1.0 - std::ldexp(1.0, -half);
        const double hi = 1.0 - std::ldexp(1.0, -(half + 1));
        bool stop = false;
        for (int step = 0; step < 5; ++step) {
            const double p = lo + (hi - lo) * step / 5.0;
            if (1.0 / (1.0 - p) > n) {
                stop = true;
                break;
            }
            std::fprintf(f, "%.6f %.1f %.3f\n", 100.0 * p, us(h.percentile(100.0 * p)),
                         1.0 / (1.0 - p));
        }
        if (stop) {
            break;
        }
    }
    std::fprintf(f, "100 %.1f %.3f\n", us(h.max()), std::max(n, 1.0));
    return std::fclose(f) == 0;
}

void print_results(const Options& o, const Client& client) {
    const Stats& s = client.stats();
    const Histogram& h = client.latency();
    const double window_s = static_cast<double>(o.duration_ns) / 1e9;
    // Achieved: measured responses over the span from the window's start to the last of them;
    // a server that falls behind stretches the span and the rate drops below the target.
    double span_s = window_s;
    if (s.completed_measured > 0) {
        span_s = std::max(
            window_s, static_cast<double>(s.last_measured_done_ns - client.window_start()) / 1e9);
    }
    const double achieved = static_cast<double>(s.completed_measured) / span_s;
    std::printf("target_rate %.1f\n", o.rate);
    std::printf("duration_s %.3f\n", window_s);
    std::printf("connections %d\n", o.connections);
    std::printf("planned %" PRIu64 "\n", client.measured_planned());
    std::printf("sent %" PRIu64 "\n", s.sent_measured);
    std::printf("completed %" PRIu64 "\n", s.completed_measured);
    std::printf("achieved_rate %.1f\n", achieved);
    std::printf("p50_us %.0f\n", us(h.percentile(50)));
    std::printf("p90_us %.0f\n", us(h.percentile(90)));
    std::printf("p99_us %.0f\n", us(h.percentile(99)));
    std::printf("p999_us %.0f\n", us(h.percentile(99.9)));
    std::printf("p9999_us %.0f\n", us(h.percentile(99.99)));
    std::printf("max_us %.0f\n", us(h.max()));
    std::printf("send_lag_p99_us %.0f\n", us(client.send_lag().percentile(99)));
    std::printf("send_lag_max_us %.0f\n", us(client.send_lag().max()));
    std::printf("backlog_max %" PRIu64 "\n", s.backlog_max_measured);
    std::printf("backlog_max_all %" PRIu64 "\n", s.backlog_max);
    std::printf("errors %" PRIu64 "\n", s.errors());
    std::printf("unexpected_status %" PRIu64 "\n", s.unexpected_status);
    std::printf("protocol_errors %" PRIu64 "\n", s.protocol_errors);
    std::printf("connection_errors %" PRIu64 "\n", s.connection_errors);
    std::printf("connect_errors %" PRIu64 "\n", s.connect_errors);
    std::printf("unfinished %" PRIu64 "\n", s.unfinished);
    std::printf("statuses %s\n", statuses_text(s.statuses_measured).c_str());
    std::printf("statuses_all %s\n", statuses_text(s.statuses_all).c_str());
    std::printf("completed_all %" PRIu64 "\n", s.completed_all);

    std::printf("# open loop: %.0f req/s intended over %.1f s (after %.1f s warm-up), %d "
                "connections\n",
                o.rate, window_s, static_cast<double>(o.warmup_ns) / 1e9, o.connections);
    std::printf("#   sent %" PRIu64 " of %" PRIu64 ", completed %" PRIu64
                ", achieved %.0f req/s, backlog max %" PRIu64 "\n",
                s.sent_measured, client.measured_planned(), s.completed_measured, achieved,
                s.backlog_max_measured);
    std::printf("#   latency from intended send: p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  "
                "p99.9 %.2f ms  p99.99 %.2f ms  max %.2f ms\n",
                us(h.percentile(50)) / 1e3, us(h.percentile(90)) / 1e3, us(h.percentile(99)) / 1e3,
                us(h.percentile(99.9)) / 1e3, us(h.percentile(99.99)) / 1e3, us(h.max()) / 1e3);
    std::printf("#   send lag (intended -> written): p99 %.3f ms  max %.3f ms\n",
                us(client.send_lag().percentile(99)) / 1e3, us(client.send_lag().max()) / 1e3);
    std::printf("#   statuses (warm-up included) %s; errors %" PRIu64 "\n",
                statuses_text(s.statuses_all).c_str(), s.errors());
    if (!s.first_error.empty()) {
        std::printf("#   first error: %s\n", s.first_error.c_str());
    }
}

} // namespace

int main(int argc, char** argv) {
    Options o;
    if (!parse_args(argc, argv, o)) {
        usage(stderr);
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    std::string request;
    if (!read_file(o.request_file, request) || request.empty()) {
        std::fprintf(stderr, "open_loop: cannot read %s\n", o.request_file.c_str());
        return 2;
    }
    // Room for the connections (and a reconnect each) whatever the shell's soft limit.
    rlimit nofile{};
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* addr = nullptr;
    if (const int rc = getaddrinfo(o.host.c_str(), o.port.c_str(), &hints, &addr); rc != 0) {
        std::fprintf(stderr, "open_loop: %s:%s: %s\n", o.host.c_str(), o.port.c_str(),
                     gai_strerror(rc));
        return 2;
    }
    int rc = 1;
    {
        Client client(o, addr, std::move(request));
        if (client.connect_all()) {
            client.run();
            print_results(o, client);
            if (!o.out.empty() && !write_spectrum(o.out, client.latency())) {
                std::fprintf(stderr, "open_loop: cannot write %s\n", o.out.c_str());
            } else {
                rc = client.stats().errors() == 0 ? 0 : 1;
            }
        }
    }
    freeaddrinfo(addr);
    return rc;
}
