// A doorbell: wakes a thread that waits on its io_uring from any other thread. An eventfd whose
// read the owner keeps armed in its ring (re-armed at each completion); ring() adds to the
// counter, which completes that read and so ends the owner's wait. It says only "look": the
// reason is in the queues the owner drains at the top of its loop, so one doorbell serves every
// reason (enqueues from the control plane, a reload).
//
//   Doorbell bell;
//   if (auto err = bell.open(); !err.empty()) { ... }       // start-up
//   io_uring_prep_read(sqe, bell.fd(), &bell.count, sizeof bell.count, 0);   // owner, armed
//   queue.try_push(item); bell.ring();                        // any other thread
#pragma once

#include <cstdint>
#include <string>

namespace portcullis::base {

class Doorbell {
public:
    Doorbell() = default;
    ~Doorbell();
    Doorbell(const Doorbell&) = delete;
    Doorbell& operator=(const Doorbell&) = delete;

    // Creates the eventfd (close-on-exec). Returns "" or the error.
    std::string open();
    // Any thread; one write(2), which does not wait. Rings that come before the owner's read
    // completes add up to one wake-up.
    void ring() const;
    int fd() const { return _fd; }

    // Where the owner's armed read puts the counter (read and forgotten).
    uint64_t count = 0;

private:
    int _fd = -1;
};

} // namespace portcullis::base
