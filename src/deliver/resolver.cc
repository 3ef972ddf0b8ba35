#include "resolver.hh"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <netdb.h>
#include <sys/eventfd.h>
#include <thread>
#include <unistd.h>
#include <utility>

namespace portcullis::deliver {

struct Resolver::Shared {
    std::mutex mutex;
    std::condition_variable wake;
    bool wanted = false;
    bool stopping = false;
    bool ready = false;
    Answer answer;
    int event_fd = -1;
    std::string host;
    std::string port;

    ~Shared() {
        if (event_fd >= 0) {
            ::close(event_fd);
        }
    }
};

namespace {

std::vector<ResolvedAddress> lookup(const std::string& host, const std::string& port, int flags,
                                    std::string& error) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = flags | AI_NUMERICSERV;
    addrinfo* list = nullptr;
    std::vector<ResolvedAddress> out;
    const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &list);
    if (rc != 0) {
        error = gai_strerror(rc);
        return out;
    }
    for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
        if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
            a->ai_addrlen <= sizeof(sockaddr_storage)) {
            ResolvedAddress r;
            std::copy_n(reinterpret_cast<const char*>(a->ai_addr), a->ai_addrlen,
                        reinterpret_cast<char*>(&r.addr));
            r.len = a->ai_addrlen;
            out.push_back(r);
        }
    }
    freeaddrinfo(list);
    if (out.empty()) {
        error = "no IPv4 or IPv6 address";
    }
    return out;
}

void run(const std::shared_ptr<Resolver::Shared>& s) {
    std::unique_lock lock(s->mutex);
    for (;;) {
        s->wake.wait(lock, [&] { return s->wanted || s->stopping; });
        if (s->stopping) {
            return;
        }
        s->wanted = false;
        lock.unlock();
        Resolver::Answer a;
        a.addresses = lookup(s->host, s->port, 0, a.error);
        lock.lock();
        if (s->stopping) {
            return;
        }
        s->answer = std::move(a);
        s->ready = true;
        const uint64_t one = 1;
        // Cannot fail short of a bug: the counter is far from overflowing.
        [[maybe_unused]] const ssize_t n = ::write(s->event_fd, &one, sizeof one);
    }
}

} // namespace

Resolver::Resolver(std::string host, uint16_t port) : _shared(std::make_shared<Shared>()) {
    _shared->host = std::move(host);
    _shared->port = std::to_string(port);
    _shared->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (_shared->event_fd < 0) {
        std::perror("portcullis: eventfd");
        std::abort();
    }
    std::thread(run, _shared).detach();
}

Resolver::~Resolver() {
    {
        std::lock_guard lock(_shared->mutex);
        _shared->stopping = true;
    }
    _shared->wake.notify_one();
}

int Resolver::event_fd() const {
    return _shared->event_fd;
}

void Resolver::request() {
    {
        std::lock_guard lock(_shared->mutex);
        _shared->wanted = true;
    }
    _shared->wake.notify_one();
}

bool Resolver::take(Answer& out) {
    std::lock_guard lock(_shared->mutex);
    if (!_shared->ready) {
        return false;
    }
    _shared->ready = false;
    out = std::move(_shared->answer);
    return true;
}

std::vector<ResolvedAddress> Resolver::numeric(const std::string& host, uint16_t port) {
    std::string ignored;
    return lookup(host, std::to_string(port), AI_NUMERICHOST, ignored);
}

} // namespace portcullis::deliver
