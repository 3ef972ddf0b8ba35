// top: a live terminal view of a running portcullis, read from the control plane's /metrics and
// /events like any other client (README, "portcullis top"). The parts that read the server's
// bytes and lay out the screen are in admin/ (metrics_text, top_model, event_reader,
// top_screen); this file holds the sockets, the terminal and the loop.
#include "commands.hh"

#include "portcullis/admin/event_reader.hh"
#include "portcullis/admin/top_model.hh"
#include "portcullis/admin/top_screen.hh"
#include "portcullis/base/address.hh"
#include "portcullis/base/encoding.hh"
#include "portcullis/base/time.hh"
#include "portcullis/cli/args.hh"
#include "portcullis/config/config.hh"
#include "portcullis/config/units.hh"
#include "portcullis/http/client.hh"

#include <array>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sstream>
#include <string>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>
#include <vector>

namespace portcullis::cli {

namespace {

constexpr size_t recent_events = 10;
// A scrape larger than this is refused rather than held (1,000 routes take about 1 MiB).
constexpr size_t max_scrape_bytes = 64 * 1024 * 1024;
constexpr int64_t connect_timeout_ns = 2 * base::ns_per_s;
constexpr int64_t scrape_timeout_ns = 10 * base::ns_per_s;

// The control plane top talks to.
struct Target {
    std::string host; // an IP literal, as the Host field and the connect take it
    uint16_t port = 0;
    std::string url; // "http://127.0.0.1:9090"
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
};

bool make_target(const config::ListenAddress& listen, Target& t, std::string& error) {
    std::string host = listen.host;
    // A wildcard listener is reached on loopback; localhost is 127.0.0.1 as the server takes it.
    if (host.empty() || host == "0.0.0.0" || host == "localhost") {
        host = "127.0.0.1";
    } else if (host == "::") {
        host = "::1";
    }
    const std::optional<base::PeerAddress> ip = base::PeerAddress::parse(host, listen.port);
    if (!ip) {
        error = base::escape_text(listen.text) + " is not an IP address and port";
        return false;
    }
    t = Target{};
    t.host = host;
    t.port = listen.port;
    t.url = "http://" + (ip->is_v4() ? host : "[" + host + "]") + ":" + std::to_string(t.port);
    if (ip->is_v4()) {
        sockaddr_in in{};
        in.sin_family = AF_INET;
        in.sin_port = htons(t.port);
        std::memcpy(&in.sin_addr, ip->addr.data() + 12, 4);
        std::memcpy(&t.addr, &in, sizeof in);
        t.addr_len = sizeof in;
    } else {
        sockaddr_in6 in6{};
        in6.sin6_family = AF_INET6;
        in6.sin6_port = htons(t.port);
        std::memcpy(&in6.sin6_addr, ip->addr.data(), 16);
        std::memcpy(&t.addr, &in6, sizeof in6);
        t.addr_len = sizeof in6;
    }
    return true;
}

// "--url http://HOST:PORT[/]": the control plane is plain HTTP.
bool parse_url(std::string_view url, Target& t, std::string& error) {
    constexpr std::string_view scheme = "http://";
    std::string head(url.substr(0, scheme.size()));
    for (char& c : head) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (head != scheme) {
        error = "--url " + base::escape_text(url) +
                ": expected http://HOST:PORT (the control plane speaks plain HTTP)";
        return false;
    }
    std::string_view authority = url.substr(scheme.size());
    if (authority.ends_with('/')) {
        authority.remove_suffix(1);
    }
    std::string why;
    const std::optional<config::ListenAddress> listen =
        config::parse_listen_address(authority, &why);
    if (!listen) {
        error = "--url " + base::escape_text(url) + ": " + why;
        return false;
    }
    if (listen->port == 0) {
        error = "--url " + base::escape_text(url) + ": port 0 is not a port to connect to";
        return false;
    }
    return make_target(*listen, t, error);
}

int64_t remaining_ms(int64_t deadline_ns) {
    const int64_t left = deadline_ns - base::mono_ns();
    return left <= 0 ? 0 : (left + base::ns_per_ms - 1) / base::ns_per_ms;
}

std::string errno_text(int e) {
    return std::strerror(e);
}

// A non-blocking TCP connection to t, connected within the timeout; -1 and error otherwise.
int connect_to(const Target& t, std::string& error) {
    const int fd = socket(t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error = "socket: " + errno_text(errno);
        return -1;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&t.addr), t.addr_len) != 0 &&
        errno != EINPROGRESS) {
        error = "connect to " + t.url + ": " + errno_text(errno);
        close(fd);
        return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    const int n = poll(&p, 1, static_cast<int>(connect_timeout_ns / base::ns_per_ms));
    int so_error = 0;
    socklen_t len = sizeof so_error;
    if (n <= 0) {
        error = "connect to " + t.url + ": " + (n == 0 ? "timed out" : errno_text(errno));
        close(fd);
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0 || so_error != 0) {
        error = "connect to " + t.url + ": " + errno_text(so_error != 0 ? so_error : errno);
        close(fd);
        return -1;
    }
    return fd;
}

// Sends all of `data` before the deadline.
bool send_all(int fd, std::string_view data, int64_t deadline_ns, std::string& error) {
    while (!data.empty()) {
        const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n > 0) {
            data.remove_prefix(static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd p{fd, POLLOUT, 0};
            if (poll(&p, 1, static_cast<int>(remaining_ms(deadline_ns))) <= 0) {
                error = "send: timed out";
                return false;
            }
            continue;
        }
        error = "send: " + errno_text(errno);
        return false;
    }
    return true;
}

// The head of a GET with the bearer token; empty when the token cannot go into a field.
std::string get_request(const Target& t, std::string_view path, const std::string& token,
                        std::string_view last_event_id, bool close) {
    const std::string authorization = "Bearer " + token;
    http::Header fields[3] = {{"Authorization", authorization}};
    size_t n = 1;
    if (path == "/events") {
        fields[n++] = {"Accept", "text/event-stream"};
        if (!last_event_id.empty()) {
            fields[n++] = {"Last-Event-ID", last_event_id};
        }
    }
    const http::OutgoingRequest r{.method = "GET",
                                  .target = path,
                                  .host = t.host,
                                  .port = t.port,
                                  .headers = std::span<const http::Header>(fields, n),
                                  .close = close};
    std::string head(8192 + token.size(), '\0');
    const size_t size = http::write_request(head, r);
    head.resize(size);
    return head;
}

struct HttpAnswer {
    uint16_t status = 0; // 0: no answer (error says why)
    std::string reason;
    std::string body;
    std::string error;
};

// GET path, the whole answer read before the deadline.
HttpAnswer http_get(const Target& t, std::string_view path, const std::string& token) {
    HttpAnswer a;
    const int64_t deadline = base::mono_ns() + scrape_timeout_ns;
    const int fd = connect_to(t, a.error);
    if (fd < 0) {
        return a;
    }
    const std::string request = get_request(t, path, token, {}, true);
    if (!send_all(fd, request, deadline, a.error)) {
        a.error = t.url + std::string(path) + ": " + a.error;
        close(fd);
        return a;
    }
    std::array<http::Header, 64> storage;
    http::ResponseParser parser(storage, http::Limits{});
    parser.reset();
    std::string pending;
    char buf[65536];
    bool done = false;
    auto take = [&](const http::ResponseParser::Step& s) {
        if (s.event == http::ResponseEvent::head) {
            a.status = parser.head().status;
            a.reason = parser.head().reason;
        } else if (s.event == http::ResponseEvent::data) {
            a.body.append(s.data);
        } else if (s.event == http::ResponseEvent::error) {
            a.error =
                t.url + std::string(path) + ": a malformed answer (" + std::string(s.detail) + ")";
            a.status = 0;
        }
        done =
            done || s.event == http::ResponseEvent::done || s.event == http::ResponseEvent::error;
    };
    while (!done) {
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, static_cast<int>(remaining_ms(deadline))) <= 0) {
                a.error = t.url + std::string(path) + ": no complete answer within 10 s";
                a.status = 0;
                break;
            }
            continue;
        }
        if (n < 0) {
            a.error = t.url + std::string(path) + ": " + errno_text(errno);
            a.status = 0;
            break;
        }
        if (n == 0) {
            take(parser.finish());
            break;
        }
        pending.append(buf, static_cast<size_t>(n));
        while (!done) {
            const http::ResponseParser::Step s = parser.feed(pending);
            take(s);
            pending.erase(0, s.consumed);
            if (s.event == http::ResponseEvent::need_more) {
                break;
            }
        }
        if (a.body.size() > max_scrape_bytes) {
            a.error = t.url + std::string(path) + ": the answer is larger than 64 MiB";
            a.status = 0;
            break;
        }
    }
    close(fd);
    if (!a.error.empty()) {
        a.status = 0;
    }
    return a;
}

// GET /events, read without blocking from the loop: the frames become summaries in `events`.
class EventStream {
public:
    enum class State : uint8_t { closed, open, unavailable };

    EventStream(const Target& t, const std::string& token) : _target(t), _token(token) {}
    ~EventStream() { stop(); }
    EventStream(const EventStream&) = delete;
    EventStream& operator=(const EventStream&) = delete;

    State state() const { return _state; }
    int fd() const { return _fd; }
    const std::string& status() const { return _status; }
    const std::deque<std::string>& events() const { return _events; }

    // Opens the stream when it is closed (once a second at most after a failure).
    void start(int64_t now_ns) {
        if (_state != State::closed || now_ns < _retry_at_ns) {
            return;
        }
        _retry_at_ns = now_ns + base::ns_per_s;
        std::string error;
        _fd = connect_to(_target, error);
        if (_fd < 0) {
            _status = "events: " + error + "; retrying";
            return;
        }
        const std::string request =
            get_request(_target, "/events", _token, _reader.last_id(), false);
        if (!send_all(_fd, request, base::mono_ns() + connect_timeout_ns, error)) {
            _status = "events: " + error + "; retrying";
            stop();
            return;
        }
        _parser.reset();
        _pending.clear();
        _reader.resume();
        _state = State::open;
        _streaming = false;
        _status.clear();
    }

    // Reads what has come (the fd polled readable).
    void read_some() {
        char buf[65536];
        for (;;) {
            const ssize_t n = recv(_fd, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                return;
            }
            if (n <= 0) {
                _status = n == 0 ? "events: the server closed the stream; reconnecting"
                                 : "events: " + errno_text(errno) + "; reconnecting";
                stop();
                return;
            }
            if (!on_bytes(std::string_view(buf, static_cast<size_t>(n)))) {
                return;
            }
        }
    }

    void stop() {
        if (_fd >= 0) {
            close(_fd);
            _fd = -1;
        }
        if (_state == State::open) {
            _state = State::closed;
        }
    }

private:
    // False when the stream ended (closed, refused, or unavailable for good).
    bool on_bytes(std::string_view bytes) {
        if (_streaming) {
            return body(bytes);
        }
        // The head's fields point into the bytes that complete it: they are kept until then.
        _pending.append(bytes);
        for (;;) {
            const http::ResponseParser::Step s = _parser.feed(_pending);
            if (s.event == http::ResponseEvent::head) {
                const uint16_t status = _parser.head().status;
                _pending.erase(0, s.consumed);
                if (!head(status)) {
                    return false;
                }
                _streaming = true;
                const std::string rest = std::move(_pending);
                _pending.clear();
                return rest.empty() || body(rest);
            }
            _pending.erase(0, s.consumed);
            if (s.event == http::ResponseEvent::need_more) {
                return true;
            }
            if (s.event == http::ResponseEvent::error || s.event == http::ResponseEvent::done) {
                return ended(s);
            }
        }
    }

    bool body(std::string_view in) {
        for (;;) {
            const http::ResponseParser::Step s = _parser.feed(in);
            in.remove_prefix(s.consumed);
            if (s.event == http::ResponseEvent::need_more) {
                return true;
            }
            if (s.event == http::ResponseEvent::data) {
                frames(s.data);
                continue;
            }
            if (s.event == http::ResponseEvent::error || s.event == http::ResponseEvent::done) {
                return ended(s);
            }
        }
    }

    bool ended(const http::ResponseParser::Step& s) {
        _status = s.event == http::ResponseEvent::error
                      ? "events: a malformed answer (" + std::string(s.detail) + "); reconnecting"
                      : "events: the stream ended; reconnecting";
        stop();
        return false;
    }

    // The answer's status: 200 streams; 401/403 leave the pane off for good (the token will not
    // change); anything else is retried.
    bool head(uint16_t status) {
        if (status == 200) {
            return true;
        }
        if (status == 401 || status == 403) {
            _status = "events: " + _target.url + "/events answered " + std::to_string(status) +
                      (status == 403 ? " (the token lacks events:read): no events pane"
                                     : " (the token is not known): no events pane");
            stop();
            _state = State::unavailable;
            return false;
        }
        _status =
            "events: " + _target.url + "/events answered " + std::to_string(status) + "; retrying";
        stop();
        return false;
    }

    void frames(std::string_view data) {
        _frames.clear();
        _reader.feed(data, _frames);
        for (const admin::EventFrame& f : _frames) {
            if (auto s = admin::summarize_event(f.data)) {
                _events.push_back(s->line());
                if (_events.size() > recent_events) {
                    _events.pop_front();
                }
            }
        }
    }

    Target _target;
    std::string _token;
    int _fd = -1;
    State _state = State::closed;
    int64_t _retry_at_ns = 0;
    std::array<http::Header, 64> _storage;
    http::ResponseParser _parser{_storage, http::Limits{}};
    std::string _pending; // the head's bytes until it is complete
    bool _streaming = false;
    admin::EventStreamReader _reader;
    std::vector<admin::EventFrame> _frames;
    std::deque<std::string> _events;
    std::string _status;
};

// The signals the loop waits for, through a pipe it polls.
int signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
    const int saved = errno;
    const auto byte = static_cast<char>(sig);
    [[maybe_unused]] const ssize_t n = write(signal_pipe[1], &byte, 1);
    errno = saved;
}

// The terminal while the live view runs: the alternate screen, the cursor hidden, input without
// echo or line buffering; all restored by leave(), which the destructor calls whatever the way
// out (q, a signal, an error).
class Terminal {
public:
    ~Terminal() { leave(); }

    void enter(bool colour) {
        _colour = colour;
        if (isatty(STDIN_FILENO) != 0 && tcgetattr(STDIN_FILENO, &_saved) == 0) {
            termios raw = _saved;
            raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
            raw.c_cc[VMIN] = 1;
            raw.c_cc[VTIME] = 0;
            _restore_termios = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
        }
        write_all("\x1b[?1049h\x1b[?25l");
        _active = true;
    }

    void leave() {
        if (!_active) {
            return;
        }
        _active = false;
        write_all("\x1b[0m\x1b[?25h\x1b[?1049l");
        if (_restore_termios) {
            tcsetattr(STDIN_FILENO, TCSANOW, &_saved);
        }
    }

    static void size(size_t& width, size_t& height) {
        winsize ws{};
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
            width = ws.ws_col;
            height = ws.ws_row;
            return;
        }
        width = 80;
        height = 24;
    }

    // The whole screen in one write: home, each line then erase-to-end, erase below.
    void draw(const std::vector<admin::ScreenLine>& lines, size_t height) const {
        std::string out = "\x1b[H";
        for (size_t i = 0; i < lines.size(); ++i) {
            const admin::ScreenLine& l = lines[i];
            const char* sgr = "";
            if (_colour) {
                switch (l.style) {
                case admin::ScreenLine::Style::title:
                    sgr = "\x1b[7m";
                    break;
                case admin::ScreenLine::Style::heading:
                    sgr = "\x1b[1m";
                    break;
                case admin::ScreenLine::Style::alert:
                    sgr = "\x1b[31m";
                    break;
                case admin::ScreenLine::Style::plain:
                    break;
                }
            }
            out += sgr;
            out += l.text;
            out += *sgr != '\0' ? "\x1b[0m\x1b[K" : "\x1b[K";
            // No line feed after the screen's last row: it would scroll.
            if (i + 1 < lines.size() && i + 1 < height) {
                out += "\r\n";
            }
        }
        out += "\x1b[J";
        write_all(out);
    }

private:
    static void write_all(std::string_view s) {
        while (!s.empty()) {
            const ssize_t n = write(STDOUT_FILENO, s.data(), s.size());
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return;
            }
            s.remove_prefix(static_cast<size_t>(n));
        }
    }

    termios _saved{};
    bool _restore_termios = false;
    bool _active = false;
    bool _colour = false;
};

// UTC, as the events' times and the server's log lines are.
std::string utc_clock() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[16];
    const size_t n = std::strftime(buf, sizeof buf, "%H:%M:%SZ", &tm);
    return std::string(buf, n);
}

// What a scrape came to.
enum class ScrapeResult : uint8_t { ok, transient, fatal };

ScrapeResult scrape(const Target& t, const std::string& token, admin::Scrape& out,
                    std::string& message) {
    HttpAnswer a = http_get(t, "/metrics", token);
    if (a.status == 0) {
        message = a.error;
        return ScrapeResult::transient;
    }
    const std::string where =
        t.url + "/metrics answered " + std::to_string(a.status) + " " + base::escape_text(a.reason);
    if (a.status == 401) {
        message = where + ": the server does not know this token (PORTCULLIS_TOKEN or "
                          "--token-file)";
        return ScrapeResult::fatal;
    }
    if (a.status == 403) {
        message = where + ": the token lacks the scope metrics:read";
        return ScrapeResult::fatal;
    }
    if (a.status != 200) {
        message = where;
        return ScrapeResult::transient;
    }
    out.taken_ns = base::mono_ns();
    std::string error;
    if (!admin::read_scrape(a.body, out, error)) {
        message = t.url + "/metrics: not the Prometheus text format (" + error + ")";
        return ScrapeResult::transient;
    }
    return ScrapeResult::ok;
}

bool colour_wanted() {
    const char* term = std::getenv("TERM");
    const char* no_colour = std::getenv("NO_COLOR");
    return term != nullptr && *term != '\0' && std::string_view(term) != "dumb" &&
           (no_colour == nullptr || *no_colour == '\0');
}

// Waits until the deadline, reading the event stream meanwhile.
void pump_events(EventStream& events, int64_t deadline_ns) {
    while (base::mono_ns() < deadline_ns) {
        pollfd p{events.fd(), POLLIN, 0};
        const int timeout = static_cast<int>(remaining_ms(deadline_ns));
        if (events.state() != EventStream::State::open) {
            poll(nullptr, 0, timeout);
            continue;
        }
        if (poll(&p, 1, timeout) > 0) {
            events.read_some();
        }
    }
}

int run_once(const Target& t, const std::string& token, int64_t interval_ns) {
    EventStream events(t, token);
    events.start(base::mono_ns());
    admin::Scrape first, second;
    std::string message;
    ScrapeResult r = scrape(t, token, first, message);
    if (r != ScrapeResult::ok) {
        std::fprintf(stderr, "portcullis top: %s\n", message.c_str());
        return 1;
    }
    pump_events(events, first.taken_ns + interval_ns);
    r = scrape(t, token, second, message);
    if (r != ScrapeResult::ok) {
        std::fprintf(stderr, "portcullis top: %s\n", message.c_str());
        return 1;
    }
    // What is already on the socket belongs to the interval too.
    if (events.state() == EventStream::State::open) {
        pollfd p{events.fd(), POLLIN, 0};
        if (poll(&p, 1, 0) > 0) {
            events.read_some();
        }
    }
    const admin::TopView view = admin::make_view(&first, second, base::unix_ns() / base::ns_per_s);
    admin::ScreenInput in;
    in.view = &view;
    in.url = t.url;
    in.clock = utc_clock();
    in.status = events.status();
    in.events_state = events.state() == EventStream::State::unavailable
                          ? admin::ScreenInput::Events::unavailable
                          : admin::ScreenInput::Events::live;
    in.events = &events.events();
    size_t width = 160;
    size_t height = 0;
    if (isatty(STDOUT_FILENO) != 0) {
        Terminal::size(width, height);
        height = 0;
    }
    const std::string text = admin::screen_text(admin::render_screen(in, width, height));
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
}

int run_live(const Target& t, const std::string& token, int64_t interval_ns) {
    if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        std::fprintf(stderr, "portcullis top: pipe: %s\n", std::strerror(errno));
        return 1;
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGWINCH}) {
        sigaction(sig, &sa, nullptr);
    }
    std::signal(SIGPIPE, SIG_IGN);

    Terminal term;
    term.enter(colour_wanted());
    EventStream events(t, token);
    admin::Scrape scrapes[2];
    admin::Scrape* before = nullptr;
    admin::Scrape* now = &scrapes[0];
    std::optional<admin::TopView> view;
    std::string status = "connecting to " + t.url;
    bool stdin_open = isatty(STDIN_FILENO) != 0;
    int64_t next_scrape = base::mono_ns();
    size_t width = 80, height = 24;

    auto draw = [&] {
        Terminal::size(width, height);
        admin::ScreenInput in;
        in.view = view ? &*view : nullptr;
        in.url = t.url;
        in.clock = utc_clock();
        in.status = !status.empty() ? status : events.status();
        in.events_state = events.state() == EventStream::State::unavailable
                              ? admin::ScreenInput::Events::unavailable
                              : admin::ScreenInput::Events::live;
        in.events = &events.events();
        in.keys_hint = true;
        term.draw(admin::render_screen(in, width, height), height);
    };

    for (;;) {
        if (base::mono_ns() >= next_scrape) {
            std::string message;
            const ScrapeResult r = scrape(t, token, *now, message);
            if (r == ScrapeResult::fatal) {
                term.leave();
                std::fprintf(stderr, "portcullis top: %s\n", message.c_str());
                return 1;
            }
            if (r == ScrapeResult::ok) {
                view = admin::make_view(before, *now, base::unix_ns() / base::ns_per_s);
                before = now;
                now = now == &scrapes[0] ? &scrapes[1] : &scrapes[0];
                status.clear();
                events.start(base::mono_ns());
            } else {
                // The screen stays as it was; rates start again after the reconnect.
                before = nullptr;
                events.stop();
                status = "disconnected, retrying every second: " + message;
            }
            next_scrape += interval_ns;
            if (next_scrape <= base::mono_ns()) {
                next_scrape =
                    base::mono_ns() + (r == ScrapeResult::ok ? interval_ns : base::ns_per_s);
            }
            if (r != ScrapeResult::ok) {
                next_scrape = std::min(next_scrape, base::mono_ns() + base::ns_per_s);
            }
            draw();
        }
        pollfd fds[3];
        nfds_t n = 0;
        fds[n++] = {signal_pipe[0], POLLIN, 0};
        const nfds_t stdin_at = stdin_open ? n : 99;
        if (stdin_open) {
            fds[n++] = {STDIN_FILENO, POLLIN, 0};
        }
        const nfds_t events_at = events.state() == EventStream::State::open ? n : 99;
        if (events_at != 99) {
            fds[n++] = {events.fd(), POLLIN, 0};
        }
        const int ready = poll(fds, n, static_cast<int>(remaining_ms(next_scrape)));
        if (ready <= 0) {
            continue;
        }
        if ((fds[0].revents & POLLIN) != 0) {
            char sigs[16];
            const ssize_t got = read(signal_pipe[0], sigs, sizeof sigs);
            for (ssize_t i = 0; i < got; ++i) {
                if (sigs[i] == SIGWINCH) {
                    draw();
                } else {
                    return 0;
                }
            }
        }
        if (stdin_at != 99 && fds[stdin_at].revents != 0) {
            char keys[64];
            const ssize_t got = read(STDIN_FILENO, keys, sizeof keys);
            if (got <= 0) {
                stdin_open = false;
            }
            for (ssize_t i = 0; i < got; ++i) {
                if (keys[i] == 'q' || keys[i] == 'Q') {
                    return 0;
                }
            }
        }
        if (events_at != 99 && fds[events_at].revents != 0) {
            events.read_some();
        }
    }
}

// The token: --token-file (its first line) or PORTCULLIS_TOKEN; never a command-line value,
// which any user would see in ps.
bool read_token(const ParsedArgs& a, std::string& token, std::string& error) {
    if (auto file = a.get("token-file")) {
        std::ifstream in(*file, std::ios::binary);
        if (!in) {
            error = "cannot read the token file " + base::escape_text(*file) + ": " +
                    std::strerror(errno);
            return false;
        }
        std::getline(in, token);
        while (!token.empty() &&
               (token.back() == '\r' || token.back() == ' ' || token.back() == '\t')) {
            token.pop_back();
        }
        if (token.empty()) {
            error = "the token file " + base::escape_text(*file) + " is empty";
            return false;
        }
    } else if (const char* env = std::getenv("PORTCULLIS_TOKEN"); env != nullptr && *env != 0) {
        token = env;
    } else {
        error = "no token: set PORTCULLIS_TOKEN or give --token-file FILE (a token with "
                "metrics:read, and events:read for the events pane)";
        return false;
    }
    for (const char c : token) {
        if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
            error = "the token holds a space or a control character";
            return false;
        }
    }
    return true;
}

} // namespace

int run_top(int argc, char** argv) {
    Command cmd{"top",
                "(-c PATH | --url http://HOST:PORT) [--token-file FILE] [--once] "
                "[--interval DURATION]",
                "A live view of a running portcullis, refreshed every second: requests and "
                "refusals per route, queues, sinks, spool, connections, TLS handshakes and the "
                "recent events, read from the control plane's /metrics and /events. The token "
                "(scopes metrics:read, and events:read for the events pane) comes from "
                "--token-file or the environment variable PORTCULLIS_TOKEN. q or Ctrl-C quits. "
                "Exit status 0 on q, 1 when the server refuses the token (or, with --once, "
                "cannot be reached), 2 on bad usage or configuration.",
                {{"config", 'c', "PATH", "the configuration: top connects to its admin.listen"},
                 {"url", 0, "URL", "the control plane's http://HOST:PORT instead of -c"},
                 {"token-file", 0, "FILE", "read the token from FILE (else PORTCULLIS_TOKEN)"},
                 {"once", 0, "",
                  "print one plain snapshot (two scrapes an interval apart) and "
                  "exit"},
                 {"interval", 0, "DURATION", "between refreshes (default 1s, 100ms to 1h)"}}};
    ParsedArgs a = cmd.parse(argc, argv);
    if (a.help) {
        std::fputs(cmd.usage().c_str(), stdout);
        return 0;
    }
    if (!a.error.empty()) {
        std::fprintf(stderr, "portcullis top: %s\n", a.error.c_str());
        return 2;
    }
    if (a.has("config") == a.has("url")) {
        std::fprintf(stderr, "portcullis top: give either -c PATH or --url http://HOST:PORT\n");
        return 2;
    }
    int64_t interval_ns = base::ns_per_s;
    if (auto text = a.get("interval")) {
        const std::optional<int64_t> ns = config::parse_duration_ns(*text);
        if (!ns) {
            std::fprintf(stderr, "portcullis top: --interval %s: %s\n",
                         base::escape_text(*text).c_str(), config::duration_error(*text).c_str());
            return 2;
        }
        if (*ns < 100 * base::ns_per_ms || *ns > 3600 * base::ns_per_s) {
            std::fprintf(stderr, "portcullis top: --interval %s: expected 100ms to 1h\n",
                         base::escape_text(*text).c_str());
            return 2;
        }
        interval_ns = *ns;
    }
    Target target;
    std::string error;
    if (auto url = a.get("url")) {
        if (!parse_url(*url, target, error)) {
            std::fprintf(stderr, "portcullis top: %s\n", error.c_str());
            return 2;
        }
    } else {
        const std::string path = *a.get("config");
        config::LoadResult loaded = config::load(path);
        if (!loaded.ok()) {
            for (const auto& d : loaded.errors) {
                std::fprintf(stderr, "error: %s\n", d.format().c_str());
            }
            return 2;
        }
        const config::ListenAddress listen = loaded.config->admin.listen.value_or(
            config::ListenAddress{"127.0.0.1", 9090, "127.0.0.1:9090"});
        if (listen.port == 0) {
            std::fprintf(stderr,
                         "portcullis top: admin.listen in %s is %s: port 0 is the kernel's "
                         "choice at each start; give the bound port (the \"listening\" log "
                         "line) with --url http://HOST:PORT\n",
                         base::escape_text(path).c_str(), base::escape_text(listen.text).c_str());
            return 2;
        }
        if (!make_target(listen, target, error)) {
            std::fprintf(stderr, "portcullis top: admin.listen in %s: %s\n",
                         base::escape_text(path).c_str(), error.c_str());
            return 2;
        }
    }
    std::string token;
    if (!read_token(a, token, error)) {
        std::fprintf(stderr, "portcullis top: %s\n", error.c_str());
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    if (a.has("once")) {
        return run_once(target, token, interval_ns);
    }
    if (isatty(STDOUT_FILENO) == 0) {
        std::fprintf(stderr, "portcullis top: the live view needs a terminal on stdout; --once "
                             "prints a plain snapshot\n");
        return 2;
    }
    return run_live(target, token, interval_ns);
}

} // namespace portcullis::cli
