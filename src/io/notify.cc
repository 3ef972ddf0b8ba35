#include "portcullis/io/notify.hh"

#include "portcullis/base/log.hh"
#include "portcullis/base/time.hh"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace portcullis::io {

namespace {

constexpr size_t status_max = 200;

std::string_view env(const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr ? std::string_view(v) : std::string_view();
}

template <typename T>
bool parse_number(std::string_view text, T& out) {
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, out);
    return ec == std::errc() && ptr == end && !text.empty();
}

} // namespace

std::string one_line_status(std::string_view status) {
    std::string out;
    out.reserve(std::min(status.size(), status_max));
    for (char c : status) {
        const auto u = static_cast<unsigned char>(c);
        out.push_back(u < 0x20 || u == 0x7f ? ' ' : c);
    }
    if (out.size() > status_max) {
        size_t cut = status_max;
        // Back to the first byte of a character: continuation bytes are 10xxxxxx.
        while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xc0) == 0x80) {
            --cut;
        }
        out.resize(cut);
    }
    return out;
}

ServiceNotifier::ServiceNotifier(std::string_view notify_socket, std::string_view watchdog_usec,
                                 std::string_view watchdog_pid, pid_t self)
    : _socket_name(notify_socket), _self(self) {
    if (notify_socket.empty()) {
        return;
    }
    const bool abstract = notify_socket.front() == '@';
    // An abstract name has no terminating NUL; a path needs one.
    const size_t room = sizeof _address.sun_path - (abstract ? 0 : 1);
    if ((!abstract && notify_socket.front() != '/') || notify_socket.size() > room ||
        notify_socket.size() < 2) {
        base::LogLine(base::Level::warn, "systemd notification off: NOTIFY_SOCKET is not usable")
            .field("notify_socket", notify_socket)
            .field("reason", notify_socket.size() > room
                                 ? "longer than an AF_UNIX address"
                                 : "neither an absolute path nor an abstract name (@...)")
            .write();
        return;
    }
    _address.sun_family = AF_UNIX;
    std::memcpy(_address.sun_path, notify_socket.data(), notify_socket.size());
    if (abstract) {
        _address.sun_path[0] = '\0';
        _address_len =
            static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + notify_socket.size());
    } else {
        _address_len =
            static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + notify_socket.size() + 1);
    }
    uint64_t usec = 0;
    pid_t pid = 0;
    const bool ours = watchdog_pid.empty() || (parse_number(watchdog_pid, pid) && pid == self);
    if (ours && parse_number(watchdog_usec, usec) && usec > 0 &&
        usec < uint64_t{INT64_MAX} / 1000) {
        _watchdog_interval_ns = static_cast<int64_t>(usec) * 1000 / 2;
    }
}

ServiceNotifier ServiceNotifier::from_environment() {
    ServiceNotifier n(env("NOTIFY_SOCKET"), env("WATCHDOG_USEC"), env("WATCHDOG_PID"), getpid());
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    return n;
}

ServiceNotifier::ServiceNotifier(ServiceNotifier&& other) noexcept
    : _address(other._address), _address_len(other._address_len),
      _socket_name(std::move(other._socket_name)), _fd(other._fd), _self(other._self),
      _watchdog_interval_ns(other._watchdog_interval_ns), _next_ping_ns(other._next_ping_ns),
      _failures(other._failures) {
    other._fd = -1;
    other._address_len = 0;
}

ServiceNotifier::~ServiceNotifier() {
    if (_fd >= 0) {
        close(_fd);
    }
}

bool ServiceNotifier::send(std::string_view message) {
    if (!enabled()) {
        return true;
    }
    if (_fd < 0) {
        _fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    }
    const bool sent = _fd >= 0 && sendto(_fd, message.data(), message.size(), MSG_NOSIGNAL,
                                         reinterpret_cast<const sockaddr*>(&_address),
                                         _address_len) == static_cast<ssize_t>(message.size());
    if (!sent) {
        if (_failures++ == 0) {
            base::LogLine(base::Level::warn, "systemd notification failed (said once)")
                .field("notify_socket", _socket_name)
                .field("error", std::strerror(errno))
                .write();
        }
        return false;
    }
    return true;
}

bool ServiceNotifier::ready(std::string_view status) {
    if (!enabled()) {
        return true;
    }
    // The watchdog counts from here: READY=1 is the first sign of life systemd times.
    _next_ping_ns = base::mono_ns() + _watchdog_interval_ns;
    return send("READY=1\nMAINPID=" + std::to_string(_self) +
                "\nSTATUS=" + one_line_status(status));
}

bool ServiceNotifier::reloading(std::string_view status) {
    if (!enabled()) {
        return true;
    }
    const int64_t usec = base::mono_ns() / 1000;
    return send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) +
                "\nSTATUS=" + one_line_status(status));
}

bool ServiceNotifier::stopping(std::string_view status) {
    if (!enabled()) {
        return true;
    }
    return send("STOPPING=1\nSTATUS=" + one_line_status(status));
}

bool ServiceNotifier::watchdog(int64_t now_ns) {
    if (!enabled() || _watchdog_interval_ns == 0 || now_ns < _next_ping_ns) {
        return true;
    }
    _next_ping_ns = now_ns + _watchdog_interval_ns;
    return send("WATCHDOG=1");
}

timespec ServiceNotifier::wait_at_most(int64_t cap_ns, int64_t now_ns) const {
    int64_t wait = cap_ns;
    if (enabled() && _watchdog_interval_ns != 0) {
        wait = std::clamp<int64_t>(_next_ping_ns - now_ns, 0, cap_ns);
    }
    return timespec{static_cast<time_t>(wait / base::ns_per_s),
                    static_cast<long>(wait % base::ns_per_s)};
}

} // namespace portcullis::io
