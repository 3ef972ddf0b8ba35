// The systemd notify protocol (sd_notify(3)) without libsystemd: each message is one datagram to
// the AF_UNIX socket $NOTIFY_SOCKET names (a path, or an abstract name written "@name"), and the
// watchdog asks for WATCHDOG=1 every $WATCHDOG_USEC / 2 when it is set for this process.
//
//   ServiceNotifier notify = ServiceNotifier::from_environment(); // unsets the variables
//   notify.ready("listening on 127.0.0.1:8080");                  // READY=1, MAINPID=, STATUS=
//   while (serving) {
//       sigtimedwait(..., notify.wait_at_most(main_tick_ns, base::mono_ns()));
//       notify.watchdog(base::mono_ns());                          // WATCHDOG=1 when due
//   }
//   notify.stopping("draining");
//
// Main thread only: the shards never notify. Without $NOTIFY_SOCKET nothing is sent and every
// call returns at once. A failed send is logged once (a warning) and never stops the server:
// systemd may be restarted under us, and a service that cannot tell it is ready is still serving.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

namespace portcullis::io {

class ServiceNotifier {
public:
    // From the values of $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID (empty when unset)
    // and this process's pid. A socket name that is neither absolute nor "@..." (or too long
    // for sun_path) disables notification and is logged. The watchdog is on when watchdog_usec
    // is a positive number and watchdog_pid is empty or self.
    ServiceNotifier(std::string_view notify_socket, std::string_view watchdog_usec,
                    std::string_view watchdog_pid, pid_t self);
    // Reads the three variables and unsets them, as sd_notify(unset_environment=1) does, so
    // that the exec sink's children do not inherit them. Call before any thread starts.
    static ServiceNotifier from_environment();
    ~ServiceNotifier();
    ServiceNotifier(const ServiceNotifier&) = delete;
    ServiceNotifier& operator=(const ServiceNotifier&) = delete;
    ServiceNotifier(ServiceNotifier&& other) noexcept;
    ServiceNotifier& operator=(ServiceNotifier&&) = delete;

    bool enabled() const { return _address_len != 0; }
    // WATCHDOG_USEC / 2 in nanoseconds, 0 when there is no watchdog.
    int64_t watchdog_interval_ns() const { return _watchdog_interval_ns; }
    // Sends failed since the start (only the first is logged).
    uint64_t failures() const { return _failures; }

    // READY=1, MAINPID=<pid>, STATUS=<status>: start-up done, or a reload done (taken or
    // refused: the status says which).
    bool ready(std::string_view status);
    // RELOADING=1, MONOTONIC_USEC=<CLOCK_MONOTONIC in µs>, STATUS=<status>.
    bool reloading(std::string_view status);
    // STOPPING=1, STATUS=<status>.
    bool stopping(std::string_view status);
    // WATCHDOG=1 when the watchdog is on and its interval has passed since the last ping (or
    // READY=1); now is CLOCK_MONOTONIC in ns.
    bool watchdog(int64_t now_ns);
    // How long the main loop may sleep: at most cap_ns, less when the next ping is due sooner.
    timespec wait_at_most(int64_t cap_ns, int64_t now_ns) const;

    // One datagram as it is; true when it was sent (or when notification is off).
    bool send(std::string_view message);

private:
    sockaddr_un _address{};
    socklen_t _address_len = 0; // 0: notification off
    std::string _socket_name;   // as given, for the log
    int _fd = -1;
    pid_t _self = 0;
    int64_t _watchdog_interval_ns = 0;
    int64_t _next_ping_ns = 0;
    uint64_t _failures = 0;
};

// status on one line (newlines and other control characters become spaces), cut at 200 bytes
// on a UTF-8 character boundary: the value of STATUS=, which systemctl status shows.
std::string one_line_status(std::string_view status);

} // namespace portcullis::io
