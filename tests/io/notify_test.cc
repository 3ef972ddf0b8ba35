#include "portcullis/io/notify.hh"

#include "portcullis/base/time.hh"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace portcullis::io {
namespace {

// A datagram socket bound to a temporary path or an abstract name: systemd's side.
class Receiver {
public:
    explicit Receiver(bool abstract) {
        _fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        EXPECT_GE(_fd, 0);
        const std::string tag =
            "portcullis-notify-test-" + std::to_string(getpid()) + "-" + std::to_string(_counter++);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        socklen_t len = 0;
        if (abstract) {
            name = "@" + tag;
            std::memcpy(a.sun_path + 1, tag.data(), tag.size());
            len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + tag.size());
        } else {
            const char* tmp = std::getenv("TMPDIR");
            name = std::string(tmp != nullptr ? tmp : "/tmp") + "/" + tag;
            unlink(name.c_str());
            std::memcpy(a.sun_path, name.data(), name.size());
            len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + 1);
        }
        EXPECT_EQ(bind(_fd, reinterpret_cast<sockaddr*>(&a), len), 0) << std::strerror(errno);
    }
    ~Receiver() {
        close(_fd);
        if (name.front() == '/') {
            unlink(name.c_str());
        }
    }
    Receiver(const Receiver&) = delete;
    Receiver& operator=(const Receiver&) = delete;

    // The next datagram, "" when none is waiting.
    std::string next() {
        char buf[4096];
        ssize_t n = recv(_fd, buf, sizeof buf, MSG_DONTWAIT);
        return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
    }

    std::string name;

private:
    int _fd = -1;
    static inline int _counter = 0;
};

TEST(ServiceNotifier, WithoutNotifySocketSendsNothingAndSucceeds) {
    ServiceNotifier n("", "200000", "", getpid());
    EXPECT_FALSE(n.enabled());
    EXPECT_EQ(n.watchdog_interval_ns(), 0);
    EXPECT_TRUE(n.ready("up"));
    EXPECT_TRUE(n.watchdog(base::mono_ns() + base::ns_per_s));
    EXPECT_TRUE(n.stopping("down"));
    EXPECT_EQ(n.failures(), 0U);
    const timespec w = n.wait_at_most(5 * base::ns_per_s, 0);
    EXPECT_EQ(w.tv_sec, 5);
    EXPECT_EQ(w.tv_nsec, 0);
}

TEST(ServiceNotifier, OneDatagramPerMessageToAPathAndToAnAbstractName) {
    for (bool abstract : {false, true}) {
        SCOPED_TRACE(abstract ? "abstract" : "path");
        Receiver r(abstract);
        ServiceNotifier n(r.name, "", "", 4242);
        ASSERT_TRUE(n.enabled());
        EXPECT_TRUE(n.ready("listening on 127.0.0.1:8080"));
        EXPECT_EQ(r.next(), "READY=1\nMAINPID=4242\nSTATUS=listening on 127.0.0.1:8080");
        const int64_t before_us = base::mono_ns() / 1000;
        EXPECT_TRUE(n.reloading("reloading"));
        const int64_t after_us = base::mono_ns() / 1000;
        const std::string reloading = r.next();
        const std::string head = "RELOADING=1\nMONOTONIC_USEC=";
        ASSERT_EQ(reloading.substr(0, head.size()), head);
        const size_t end = reloading.find('\n', head.size());
        ASSERT_NE(end, std::string::npos);
        const int64_t usec = std::stoll(reloading.substr(head.size(), end - head.size()));
        EXPECT_GE(usec, before_us);
        EXPECT_LE(usec, after_us);
        EXPECT_EQ(reloading.substr(end), "\nSTATUS=reloading");
        EXPECT_TRUE(n.stopping("draining"));
        EXPECT_EQ(r.next(), "STOPPING=1\nSTATUS=draining");
        EXPECT_EQ(r.next(), "");
        EXPECT_EQ(n.failures(), 0U);
    }
}

TEST(ServiceNotifier, WatchdogPingsEveryHalfIntervalOnlyWhenDue) {
    Receiver r(false);
    ServiceNotifier n(r.name, "200000", "", getpid());
    EXPECT_EQ(n.watchdog_interval_ns(), 100 * base::ns_per_ms);
    n.ready("up");
    r.next();
    const int64_t t0 = base::mono_ns();
    // Just after READY=1: not due yet, and the loop may sleep up to the interval, no longer.
    EXPECT_TRUE(n.watchdog(t0));
    EXPECT_EQ(r.next(), "");
    const timespec w = n.wait_at_most(5 * base::ns_per_s, t0);
    EXPECT_EQ(w.tv_sec, 0);
    EXPECT_LE(w.tv_nsec, 100 * base::ns_per_ms);
    EXPECT_TRUE(n.watchdog(t0 + 100 * base::ns_per_ms));
    EXPECT_EQ(r.next(), "WATCHDOG=1");
    EXPECT_TRUE(n.watchdog(t0 + 150 * base::ns_per_ms));
    EXPECT_EQ(r.next(), "");
    EXPECT_TRUE(n.watchdog(t0 + 200 * base::ns_per_ms));
    EXPECT_EQ(r.next(), "WATCHDOG=1");
    // Overdue: no wait at all.
    const timespec now = n.wait_at_most(5 * base::ns_per_s, t0 + base::ns_per_s);
    EXPECT_EQ(now.tv_sec, 0);
    EXPECT_EQ(now.tv_nsec, 0);
}

TEST(ServiceNotifier, WatchdogForAnotherPidOrUnparsableIsOff) {
    struct Row {
        const char* usec;
        const char* pid;
        int64_t interval_ns;
    };
    const pid_t self = 100;
    const Row rows[] = {
        {"30000000", "", 15 * base::ns_per_s},
        {"30000000", "100", 15 * base::ns_per_s},
        {"30000000", "101", 0},
        {"30000000", "x", 0},
        {"", "", 0},
        {"0", "", 0},
        {"-5", "", 0},
        {"12abc", "", 0},
    };
    for (const Row& row : rows) {
        SCOPED_TRACE(std::string("WATCHDOG_USEC=") + row.usec + " WATCHDOG_PID=" + row.pid);
        ServiceNotifier n("/run/systemd/notify", row.usec, row.pid, self);
        EXPECT_EQ(n.watchdog_interval_ns(), row.interval_ns);
    }
}

TEST(ServiceNotifier, UnusableSocketNamesTurnItOff) {
    const std::string too_long = "/" + std::string(sizeof(sockaddr_un{}.sun_path), 'x');
    for (const std::string& name :
         {std::string("relative/notify"), std::string("@"), std::string("/"), too_long}) {
        SCOPED_TRACE(name);
        ServiceNotifier n(name, "", "", getpid());
        EXPECT_FALSE(n.enabled());
        EXPECT_TRUE(n.ready("up"));
    }
}

TEST(ServiceNotifier, ASendErrorIsCountedAndNotFatal) {
    const std::string gone = "/nonexistent-portcullis-dir/notify";
    ServiceNotifier n(gone, "200000", "", getpid());
    ASSERT_TRUE(n.enabled());
    EXPECT_FALSE(n.ready("up"));
    EXPECT_FALSE(n.stopping("down"));
    EXPECT_EQ(n.failures(), 2U);
}

TEST(ServiceNotifier, FromEnvironmentReadsAndUnsetsTheVariables) {
    Receiver r(true);
    setenv("NOTIFY_SOCKET", r.name.c_str(), 1);
    setenv("WATCHDOG_USEC", "1000000", 1);
    setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
    ServiceNotifier n = ServiceNotifier::from_environment();
    EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr);
    EXPECT_EQ(std::getenv("WATCHDOG_USEC"), nullptr);
    EXPECT_EQ(std::getenv("WATCHDOG_PID"), nullptr);
    EXPECT_EQ(n.watchdog_interval_ns(), 500 * base::ns_per_ms);
    n.ready("up");
    EXPECT_EQ(r.next(), "READY=1\nMAINPID=" + std::to_string(getpid()) + "\nSTATUS=up");
}

TEST(OneLineStatus, ControlCharactersBecomeSpacesAndLongTextIsCutOnACharacter) {
    EXPECT_EQ(one_line_status("a\nb\tc\x7f"), "a b c ");
    // 199 ASCII bytes then a two-byte character: cutting at 200 would split it.
    const std::string text = std::string(199, 'x') + "\xc3\xa9" + "tail";
    EXPECT_EQ(one_line_status(text), std::string(199, 'x'));
    EXPECT_EQ(one_line_status(std::string(300, 'y')).size(), 200U);
}

} // namespace
} // namespace portcullis::io
