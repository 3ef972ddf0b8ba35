// Runs exec deliveries (SPEC section 8, sinks.NAME.exec) on the control plane's thread without
// blocking its loop: many children at once, each with the job's body on stdin, the job's facts
// in its environment and the headers in a JSON file; every pipe and the wait for the child go
// through the loop's io_uring.
//
//   ExecRunner runner(ring, "/var/lib/portcullis/exec");   // headers_dir: the caller's, 0700
//   std::string why;
//   if (!runner.start(job, cookie, now_mono, why)) { /* could not run: a failed attempt */ }
//   // each loop iteration:
//   runner.tick(now_mono);                                  // timeouts: SIGTERM, then SIGKILL
//   ring.submit_and_wait(runner.wait_limit_ns(now_mono, limit));
//   ring.for_each_cqe([&](const io_uring_cqe& c) {
//       if (ExecRunner::owns(c.user_data)) {
//           runner.on_cqe(c, now_mono, [](uint64_t cookie, const ExecOutcome& o) { ... });
//       }
//   });
//
// How a child is run:
// - posix_spawn, then pidfd_open on the new pid (not clone3 with CLONE_PIDFD). glibc's
//   posix_spawn is clone(CLONE_VM | CLONE_VFORK) on a stack of its own: nothing of portcullis's
//   address space (spool buffers, buffer rings) is copied, the exec's errno comes back from the
//   call itself (a missing program fails start(), not a later completion), and it already does
//   what a hand-written clone3 child would have to get right (signal dispositions reset before
//   the handlers could run on the shared memory, the mask, the file actions). pidfd_spawn, which
//   is that with CLONE_PIDFD, needs glibc 2.39; Debian 12 has 2.36. pidfd_open right after the
//   spawn names the right process because a pid is not reused before it is reaped and only this
//   runner reaps its children: nothing in the process may waitpid(-1) or set SIGCHLD to SIG_IGN.
// - argv is the sink's `command` as is (command[0] an absolute path, no PATH search, no shell);
//   the child is the leader of a new process group, its signal mask is empty and every signal
//   is at its default action (portcullis blocks SIGTERM/SIGINT/SIGHUP and ignores SIGPIPE, and
//   both would be inherited), and it has exactly descriptors 0, 1 and 2 (every other one is
//   closed in the child, O_CLOEXEC or not).
// - The environment is exactly PORTCULLIS_JOB_ID, PORTCULLIS_ROUTE, PORTCULLIS_ATTEMPT,
//   PORTCULLIS_RECEIVED_AT (RFC 3339 UTC, milliseconds), PORTCULLIS_SOURCE_IP,
//   PORTCULLIS_HEADERS_FILE and PATH=/usr/local/bin:/usr/bin:/bin (so that a script's own
//   commands are found); nothing of portcullis's environment, which may hold secrets. No LANG:
//   the C locale, the same on every host; a command that wants more runs through /usr/bin/env.
//   Header values are never in the environment or argv: they come from the internet.
// - The headers file (the caller's JSON object) is created 0600 with O_EXCL in headers_dir,
//   written before the spawn and removed once the child is reaped. It is written with write(2):
//   it is at most the size of a request's header block, into the page cache, and going through
//   the ring would only add a state between the start and the spawn.
// - stdin: the body, written through the ring, then closed. A child that exits or closes stdin
//   without reading it ends the write with EPIPE (portcullis ignores SIGPIPE), which is fine.
// - stdout, stderr: read through the ring; the first head_bytes of each are kept for the log
//   line, the rest read into a scratch buffer and dropped, so a chatty child never blocks.
// - The child is waited for with IORING_OP_POLL_ADD on its pidfd and reaped with
//   waitid(P_PIDFD, WNOHANG) when that fires.
// - timeout: SIGTERM to the process group, kill_grace_ns later SIGKILL (signals go to the group
//   so that what a script started dies with it, and only while the leader is unreaped, so that
//   its pid, which is the group's id, cannot have been reused).
// - The outcome is reported once the child is reaped and its pipes are done: at EOF, or
//   output_linger_ns after the reaping (something the child left behind holds them open; its
//   reads and the write are cancelled).
//
// Descriptors (for the engine's fd budget): a running child holds 4 (pidfd, the stdin pipe's
// write end, the read ends of stdout and stderr); start() briefly holds 3 more (the child's
// ends) and the headers file.
#pragma once

#include "portcullis/io/ring.hh"

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <spawn.h>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace portcullis::deliver {

// The tag of the runner's SQEs in the top byte of user_data (see ExecRunner::owns).
constexpr uint64_t exec_tag = 0xe1;

// One delivery to run. Views: into the caller's memory, see the lifetimes below.
struct ExecJob {
    std::span<const std::string> command; // config::ExecSinkConfig::command; read by start()
    std::string_view job_id;              // the 26-character text form
    std::string_view route;
    uint32_t attempt = 1;
    int64_t received_at_unix_ns = 0;
    std::string_view source_ip;
    // Read by the kernel until the outcome is reported (or stop()): the caller keeps it alive.
    std::span<const uint8_t> body;
    std::string_view headers_json; // a JSON object; written to the headers file by start()
    int64_t timeout_ns = 60'000'000'000;
};

struct ExecOutcome {
    // delivered: exit 0. retry: exit 75 (EX_TEMPFAIL). failed: any other status or a signal.
    // timed_out: the timeout's SIGTERM was sent, whatever the child did after it.
    enum class Kind : uint8_t { delivered, retry, failed, timed_out };
    Kind kind = Kind::failed;
    int exit_status = -1; // -1 when a signal ended the child
    int signal = 0;       // the signal that ended it, 0 when it exited
    // The first bytes of each stream (at most ExecRunner::head_bytes); valid during the call.
    std::string_view stdout_head;
    std::string_view stderr_head;
    uint64_t stdout_bytes = 0; // all the child wrote, kept or dropped
    uint64_t stderr_bytes = 0;
    uint64_t stdin_bytes = 0; // body bytes the pipe took before the child closed it or exited
    int64_t duration_ns = 0;  // from start() to the reaping
};

std::string_view exec_outcome_name(ExecOutcome::Kind k); // "delivered", "retry", ...

struct ExecTimings {
    int64_t kill_grace_ns = 5'000'000'000; // SIGTERM at the timeout, SIGKILL this much later
    // After the reaping, how long pipes still held open by something the child left behind
    // (a background process) may delay the outcome.
    int64_t output_linger_ns = 1'000'000'000;
};

struct ExecStats {
    uint64_t started = 0;
    uint64_t spawn_failures = 0; // start() returned false
    uint64_t timed_out = 0;      // SIGTERM sent at the timeout
    uint64_t killed = 0;         // SIGKILL sent after the grace
    uint64_t lingered = 0;       // pipes still open output_linger_ns after the reaping
};

class ExecRunner {
public:
    static constexpr size_t head_bytes = 4096;

    // ring: the loop's, which outlives the runner. headers_dir: an existing directory only
    // portcullis can write (the caller's; its files are named portcullis-headers-<pid>-<n>.json).
    ExecRunner(io::Ring& ring, std::string headers_dir, ExecTimings timings = {});
    ExecRunner(const ExecRunner&) = delete;
    ExecRunner& operator=(const ExecRunner&) = delete;
    // stop(), then: slots with operations still in flight are left allocated (the kernel may
    // still write into them); call stop() and dispatch until idle() first to avoid that.
    ~ExecRunner();

    // Writes the headers file, spawns the child and arms its pipes and its wait. Returns false
    // with `error` set ("cannot run /path: No such file or directory", "headers file ...: ...")
    // when no child runs; then nothing is reported for `cookie` later. Otherwise the outcome is
    // reported to on_cqe()'s callback exactly once (unless stop() comes first). Blocks only for
    // the spawn itself (vfork semantics: until the child has exec'ed).
    bool start(const ExecJob& job, uint64_t cookie, int64_t now_ns, std::string& error);

    static bool owns(uint64_t user_data) { return user_data >> 56 == exec_tag; }

    // Handles a CQE whose user_data owns() says is the runner's; calls done(cookie, outcome)
    // when a child's delivery is over. done may call start().
    template <typename F>
    void on_cqe(const io_uring_cqe& cqe, int64_t now_ns, F&& done);

    // The timeouts (SIGTERM, SIGKILL) and the end of the output linger. Call once per iteration.
    void tick(int64_t now_ns);
    // How long the loop may wait before tick() has something to do, at most `limit`.
    int64_t wait_limit_ns(int64_t now_ns, int64_t limit) const;

    // Children whose outcome is still to be reported.
    size_t running() const { return _running; }
    // No operation of the runner's in flight on the ring.
    bool idle() const { return _busy == 0; }
    const ExecStats& stats() const { return _stats; }

    // Shutdown (blocks): SIGKILLs every child's group, reaps it, removes its headers file and
    // cancels its pipes' operations. Nothing is reported for these children: their attempts
    // were never settled and run again. The cancellations complete through on_cqe().
    void stop();
    // The same for one delivery (a sink a live reload removed or changed): its child is killed
    // and reaped, nothing is reported for cookie. False if no child runs for it.
    bool abandon(uint64_t cookie);

private:
    enum class Op : uint8_t { wait = 1, write, read_stdout, read_stderr, cancel };

    struct Stream {
        int fd = -1;
        bool reading = false; // a read is in flight
        uint32_t head_len = 0;
        uint64_t bytes = 0;
        std::array<char, head_bytes> head;
    };

    struct Slot {
        bool busy = false;
        bool abandoned = false; // stop(): nothing to report, freed when its operations are in
        uint16_t generation = 0;
        uint64_t cookie = 0;
        pid_t pid = -1;
        int pidfd = -1;
        bool waiting = false; // the poll on pidfd is in flight
        bool reaped = false;
        int exit_status = -1;
        int signal = 0;
        int stdin_fd = -1;
        bool writing = false; // the body's write is in flight
        std::span<const uint8_t> body;
        size_t body_sent = 0;
        std::array<Stream, 2> out; // stdout, stderr
        int64_t started_ns = 0;
        int64_t term_at_ns = 0; // the timeout
        int64_t kill_at_ns = 0; // 0 until SIGTERM was sent
        bool term_sent = false;
        bool kill_sent = false;
        int64_t reaped_ns = 0;
        bool cancelled = false;              // the linger ended: its operations were cancelled
        std::array<char, 64> headers_name{}; // NUL-terminated, in headers_dir
    };

    static uint64_t pack(Op op, uint16_t generation, uint32_t index) {
        return exec_tag << 56 | uint64_t(op) << 48 | uint64_t(generation) << 32 | index;
    }

    int inflight(const Slot& s) const {
        return int(s.waiting) + int(s.writing) + int(s.out[0].reading) + int(s.out[1].reading);
    }
    uint32_t acquire_slot();
    void release_slot(uint32_t index);
    // The headers file's path in _path (no allocation once its capacity is reached).
    const char* headers_path(const Slot& s);
    bool write_headers_file(Slot& s, std::string_view json, std::string& error);
    bool spawn(const ExecJob& job, Slot& s, std::string& error);
    void arm_wait(uint32_t index);
    void arm_write(uint32_t index);
    void arm_read(uint32_t index, int which);
    void signal_group(Slot& s, int sig);
    void reap(Slot& s, int64_t now_ns);
    void cancel_all(uint32_t index);
    // stop() and abandon(): kills and reaps the slot's child; true if operations were cancelled.
    bool abandon_slot(uint32_t index);
    void close_fds(Slot& s);
    // Handles one CQE; returns the slot whose delivery is now over (all its operations in),
    // or -1.
    int64_t handle(const io_uring_cqe& cqe, int64_t now_ns);
    static ExecOutcome outcome(const Slot& s);

    io::Ring& _ring;
    std::string _headers_dir;
    ExecTimings _timings;
    std::vector<std::unique_ptr<Slot>> _slots; // a slot's address is stable while it is busy
    std::vector<uint32_t> _free;
    size_t _running = 0;
    size_t _busy = 0; // slots not free: running, or abandoned with operations in flight
    ExecStats _stats;
    // Scratch for start(), reused: once their capacity is reached a start allocates nothing
    // of its own (posix_spawn's file actions still do).
    std::string _path;
    std::string _env;
    std::vector<char*> _argv;
    std::unique_ptr<char[]> _drain; // where output past the heads is read and dropped
    posix_spawnattr_t _attr{};
};

template <typename F>
void ExecRunner::on_cqe(const io_uring_cqe& cqe, int64_t now_ns, F&& done) {
    const int64_t index = handle(cqe, now_ns);
    if (index < 0) {
        return;
    }
    Slot& s = *_slots[size_t(index)];
    if (!s.abandoned) {
        // The slot stays busy during the call: the heads it points into are not reused by a
        // start() that done makes.
        const ExecOutcome o = outcome(s);
        done(s.cookie, o);
    }
    release_slot(uint32_t(index));
}

} // namespace portcullis::deliver
