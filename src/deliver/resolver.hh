// The HTTP sink's resolver: getaddrinfo on a thread of its own, so that the control plane's
// loop never waits for DNS. Private to src/deliver.
//
//   Resolver r("app.internal", 8443);          // starts the thread
//   arm a read of r.event_fd() on the ring;      // 8 bytes: an answer is ready
//   r.request();                                // ask for a (new) resolution
//   // when the read completes:
//   Resolver::Answer a;
//   if (r.take(a)) { use a.addresses or a.error; }   // then arm the read again
//
// The loop and the thread share one mutex. The loop takes it in request() and take() only: at
// start-up, every resolve interval (30 s by default) and after a failed connect, never per
// delivery, and the thread holds it only to swap a flag or the answer in (never across
// getaddrinfo), so the loop never waits on DNS through it.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace portcullis::deliver {

struct ResolvedAddress {
    sockaddr_storage addr{};
    socklen_t len = 0;
};

class Resolver {
public:
    struct Answer {
        std::vector<ResolvedAddress> addresses; // getaddrinfo's order (RFC 6724)
        std::string error;                      // gai_strerror's text when none
    };

    // Starts the thread; aborts when no eventfd or thread can be had (start-up only).
    Resolver(std::string host, uint16_t port);
    // Asks the thread to stop and leaves it: a getaddrinfo in progress finishes on its own time
    // and the thread exits after it (the state it uses is shared, freed by the last owner).
    ~Resolver();
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    // Readable (a counter of 8 bytes) when an answer is ready.
    int event_fd() const;
    // Asks for a resolution; one already asked for and not started counts once.
    void request();
    // The latest answer, if one came since the last take.
    bool take(Answer& out);

    // Synchronous lookup of an IP literal (AI_NUMERICHOST: no DNS); empty when host is not one.
    static std::vector<ResolvedAddress> numeric(const std::string& host, uint16_t port);

    // What the loop and the thread share; freed by whichever lets go of it last.
    struct Shared;

private:
    std::shared_ptr<Shared> _shared;
};

} // namespace portcullis::deliver
