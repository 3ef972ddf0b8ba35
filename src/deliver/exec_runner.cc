#include "portcullis/deliver/exec_runner.hh"

#include "portcullis/base/time.hh"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace portcullis::deliver {

namespace {

// Output past the heads is read into this much scratch at a time: a child writing 10 MB costs
// 160 completions.
constexpr size_t drain_bytes = 64 << 10;
// One write moves at most this much of the body; a pipe takes 64 KiB at a time anyway.
constexpr size_t max_write = size_t(1) << 30;
constexpr int64_t min_wait_ns = 1'000;
// The longest value start() puts in the environment from the job (a job id is 26 characters, a
// route name at most 64, an IPv6 address with a zone well under this).
constexpr size_t max_env_value = 128;
// The pipe-end position of io_uring reads and writes: -1 is "the file position", read(2)'s.
constexpr uint64_t file_position = ~uint64_t(0);

// Names the runners' headers files apart within the process; the pid sets processes apart.
std::atomic<uint64_t> headers_serial{0};

void close_fd(int& fd) {
    if (fd >= 0) {
        ::close(fd);
        fd = -1;
    }
}

// glibc 2.36's <sys/pidfd.h> declares these without extern "C" (fixed in 2.37), so a C++
// program cannot link them: the system calls themselves.
int pidfd_open(pid_t pid, unsigned flags) {
    return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags));
}
int pidfd_send_signal(int pidfd, int sig) {
    return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

std::string errno_text(int err) {
    return std::strerror(err);
}

// A job value that goes into the environment: printable ASCII without spaces. Route names and
// job ids are that by construction and addresses are formatted by portcullis; this only keeps
// a bug elsewhere from putting something else in a child's environment.
bool env_value_ok(std::string_view v) {
    return !v.empty() && v.size() <= max_env_value &&
           std::all_of(v.begin(), v.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// Moves fd to a number above 2, so that the child's dup2 onto 0, 1 and 2 cannot overwrite
// another of its pipe ends (only when portcullis itself runs with 0, 1 or 2 closed).
bool above_stdio(int& fd) {
    if (fd > 2) {
        return true;
    }
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    ::close(fd);
    fd = moved;
    return moved >= 0;
}

} // namespace

std::string_view exec_outcome_name(ExecOutcome::Kind k) {
    switch (k) {
    case ExecOutcome::Kind::delivered:
        return "delivered";
    case ExecOutcome::Kind::retry:
        return "retry";
    case ExecOutcome::Kind::failed:
        return "failed";
    case ExecOutcome::Kind::timed_out:
        return "timed_out";
    }
    return "failed";
}

ExecRunner::ExecRunner(io::Ring& ring, std::string headers_dir, ExecTimings timings)
    : _ring(ring), _headers_dir(std::move(headers_dir)), _timings(timings),
      _drain(std::make_unique<char[]>(drain_bytes)) {
    // The child: a new process group (the timeout signals it as a whole), an empty signal mask
    // (the control plane's thread blocks SIGTERM, SIGINT and SIGHUP) and every signal at its
    // default action (an ignored SIGPIPE would survive the exec).
    posix_spawnattr_init(&_attr);
    sigset_t none;
    sigemptyset(&none);
    sigset_t all;
    sigfillset(&all);
    posix_spawnattr_setsigmask(&_attr, &none);
    posix_spawnattr_setsigdefault(&_attr, &all);
    posix_spawnattr_setpgroup(&_attr, 0);
    posix_spawnattr_setflags(&_attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                         POSIX_SPAWN_SETPGROUP);
}

ExecRunner::~ExecRunner() {
    stop();
    for (auto& slot : _slots) {
        if (slot && slot->busy) {
            // Its reads or write are still in the ring (the caller did not dispatch until
            // idle()): the kernel may write into this memory until they complete.
            (void)slot.release(); // NOLINT(bugprone-unused-return-value)
        }
    }
    posix_spawnattr_destroy(&_attr);
}

uint32_t ExecRunner::acquire_slot() {
    uint32_t index;
    if (!_free.empty()) {
        index = _free.back();
        _free.pop_back();
    } else {
        index = static_cast<uint32_t>(_slots.size());
        _slots.push_back(std::make_unique<Slot>());
        _free.reserve(_slots.size());
    }
    Slot& s = *_slots[index];
    s.busy = true;
    s.abandoned = false;
    s.cookie = 0;
    s.pid = -1;
    s.pidfd = -1;
    s.waiting = false;
    s.reaped = false;
    s.exit_status = -1;
    s.signal = 0;
    s.stdin_fd = -1;
    s.writing = false;
    s.body = {};
    s.body_sent = 0;
    for (Stream& st : s.out) {
        st.fd = -1;
        st.reading = false;
        st.head_len = 0;
        st.bytes = 0;
    }
    s.started_ns = 0;
    s.term_at_ns = 0;
    s.kill_at_ns = 0;
    s.term_sent = false;
    s.kill_sent = false;
    s.reaped_ns = 0;
    s.cancelled = false;
    s.headers_name[0] = '\0';
    ++_busy;
    return index;
}

void ExecRunner::release_slot(uint32_t index) {
    Slot& s = *_slots[index];
    if (!s.abandoned) {
        --_running;
    }
    close_fds(s);
    s.busy = false;
    ++s.generation;
    --_busy;
    _free.push_back(index);
}

void ExecRunner::close_fds(Slot& s) {
    close_fd(s.pidfd);
    close_fd(s.stdin_fd);
    close_fd(s.out[0].fd);
    close_fd(s.out[1].fd);
}

const char* ExecRunner::headers_path(const Slot& s) {
    _path.assign(_headers_dir);
    if (!_path.empty() && _path.back() != '/') {
        _path.push_back('/');
    }
    _path.append(s.headers_name.data());
    return _path.c_str();
}

bool ExecRunner::write_headers_file(Slot& s, std::string_view json, std::string& error) {
    std::snprintf(s.headers_name.data(), s.headers_name.size(), "portcullis-headers-%ld-%llu.json",
                  static_cast<long>(getpid()),
                  static_cast<unsigned long long>(headers_serial.fetch_add(1)));
    const char* path = headers_path(s);
    int fd = -1;
    for (int attempt = 0; fd < 0; ++attempt) {
        fd = ::open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno == EEXIST && attempt == 0) {
            // Left by an earlier process that had this pid (the serial starts at 0 in each):
            // that process is gone.
            ::unlink(path);
            continue;
        }
        if (fd < 0) {
            error = std::string("headers file ") + path + ": " + errno_text(errno);
            s.headers_name[0] = '\0';
            return false;
        }
    }
    size_t done = 0;
    while (done < json.size()) {
        ssize_t n = ::write(fd, json.data() + done, json.size() - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            error = std::string("headers file ") + path + ": " + errno_text(n < 0 ? errno : EIO);
            ::close(fd);
            ::unlink(path);
            s.headers_name[0] = '\0';
            return false;
        }
        done += size_t(n);
    }
    ::close(fd);
    return true;
}

bool ExecRunner::spawn(const ExecJob& job, Slot& s, std::string& error) {
    // The environment, in _env (offsets first: appending may move the buffer).
    std::array<size_t, 7> offsets{};
    size_t count = 0;
    _env.clear();
    auto add = [&](std::string_view name_eq, std::string_view value) {
        offsets[count++] = _env.size();
        _env.append(name_eq);
        _env.append(value);
        _env.push_back('\0');
    };
    char attempt[16];
    auto [attempt_end, ec] = std::to_chars(attempt, attempt + sizeof attempt, job.attempt);
    (void)ec; // 16 characters hold any uint32_t
    char received_at[24];
    add("PORTCULLIS_JOB_ID=", job.job_id);
    add("PORTCULLIS_ROUTE=", job.route);
    add("PORTCULLIS_ATTEMPT=", std::string_view(attempt, size_t(attempt_end - attempt)));
    add("PORTCULLIS_RECEIVED_AT=", base::format_rfc3339(job.received_at_unix_ns, received_at));
    add("PORTCULLIS_SOURCE_IP=", job.source_ip);
    add("PORTCULLIS_HEADERS_FILE=", headers_path(s));
    add("PATH=", "/usr/local/bin:/usr/bin:/bin");
    std::array<char*, 8> envp{};
    for (size_t i = 0; i < count; ++i) {
        envp[i] = _env.data() + offsets[i];
    }

    _argv.clear();
    for (const std::string& arg : job.command) {
        // execve does not write through argv; the const_cast only meets its C signature.
        _argv.push_back(const_cast<char*>(arg.c_str()));
    }
    _argv.push_back(nullptr);

    // [0] the parent's end, [1] the child's: stdin, stdout, stderr.
    int in[2] = {-1, -1};
    int out[2] = {-1, -1};
    int err[2] = {-1, -1};
    auto close_all = [&] {
        for (int* p : {in, out, err}) {
            close_fd(p[0]);
            close_fd(p[1]);
        }
    };
    int fds[2];
    bool piped = pipe2(fds, O_CLOEXEC) == 0;
    if (piped) {
        in[0] = fds[1];
        in[1] = fds[0];
        piped = pipe2(fds, O_CLOEXEC) == 0;
    }
    if (piped) {
        out[0] = fds[0];
        out[1] = fds[1];
        piped = pipe2(fds, O_CLOEXEC) == 0;
    }
    if (piped) {
        err[0] = fds[0];
        err[1] = fds[1];
    }
    if (!piped || !above_stdio(in[1]) || !above_stdio(out[1]) || !above_stdio(err[1])) {
        error = "pipe: " + errno_text(errno);
        close_all();
        return false;
    }

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[1], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    // Everything else, including what another thread opened without O_CLOEXEC.
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, _argv[0], &actions, &_attr, _argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    close_fd(in[1]);
    close_fd(out[1]);
    close_fd(err[1]);
    if (rc != 0) {
        error = "cannot run " + job.command[0] + ": " + errno_text(rc);
        close_all();
        return false;
    }
    int pidfd = pidfd_open(pid, 0);
    if (pidfd < 0) {
        // Without a pidfd the loop cannot wait for it: end it here (blocking, and rare: the
        // process is out of descriptors).
        const int saved = errno;
        ::kill(pid, SIGKILL);
        while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
        error = "pidfd_open: " + errno_text(saved);
        close_all();
        return false;
    }
    s.pid = pid;
    s.pidfd = pidfd;
    s.stdin_fd = in[0];
    s.out[0].fd = out[0];
    s.out[1].fd = err[0];
    return true;
}

bool ExecRunner::start(const ExecJob& job, uint64_t cookie, int64_t now_ns, std::string& error) {
    error.clear();
    if (job.command.empty() || job.command[0].empty() || job.command[0][0] != '/') {
        error = "command: argv[0] must be an absolute path";
    } else if (std::any_of(job.command.begin(), job.command.end(),
                           [](const std::string& a) { return a.find('\0') != a.npos; })) {
        error = "command: an argument holds a NUL byte";
    } else if (!env_value_ok(job.job_id)) {
        error = "PORTCULLIS_JOB_ID: not 1 to 128 printable ASCII characters";
    } else if (!env_value_ok(job.route)) {
        error = "PORTCULLIS_ROUTE: not 1 to 128 printable ASCII characters";
    } else if (!env_value_ok(job.source_ip)) {
        error = "PORTCULLIS_SOURCE_IP: not 1 to 128 printable ASCII characters";
    }
    if (!error.empty()) {
        ++_stats.spawn_failures;
        return false;
    }
    const uint32_t index = acquire_slot();
    Slot& s = *_slots[index];
    if (!write_headers_file(s, job.headers_json, error) || !spawn(job, s, error)) {
        if (s.headers_name[0] != '\0') {
            ::unlink(headers_path(s));
        }
        s.abandoned = true; // nothing was counted as running
        release_slot(index);
        ++_stats.spawn_failures;
        return false;
    }
    ++_running;
    ++_stats.started;
    s.cookie = cookie;
    s.body = job.body;
    s.started_ns = now_ns;
    s.term_at_ns = now_ns + job.timeout_ns;
    arm_wait(index);
    arm_read(index, 0);
    arm_read(index, 1);
    if (s.body.empty()) {
        close_fd(s.stdin_fd); // EOF at once
    } else {
        arm_write(index);
    }
    return true;
}

void ExecRunner::arm_wait(uint32_t index) {
    Slot& s = *_slots[index];
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_poll_add(sqe, s.pidfd, POLLIN);
    sqe->user_data = pack(Op::wait, s.generation, index);
    s.waiting = true;
}

void ExecRunner::arm_write(uint32_t index) {
    Slot& s = *_slots[index];
    const size_t n = std::min(s.body.size() - s.body_sent, max_write);
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_write(sqe, s.stdin_fd, s.body.data() + s.body_sent, static_cast<unsigned>(n),
                        file_position);
    sqe->user_data = pack(Op::write, s.generation, index);
    s.writing = true;
}

void ExecRunner::arm_read(uint32_t index, int which) {
    Slot& s = *_slots[index];
    Stream& st = s.out[size_t(which)];
    // Whether this read lands in the head is decided here: one read at a time per stream, so
    // head_len is the same when it completes.
    char* buf = _drain.get();
    size_t len = drain_bytes;
    if (st.head_len < head_bytes) {
        buf = st.head.data() + st.head_len;
        len = head_bytes - st.head_len;
    }
    io_uring_sqe* sqe = _ring.sqe();
    io_uring_prep_read(sqe, st.fd, buf, static_cast<unsigned>(len), file_position);
    sqe->user_data = pack(which == 0 ? Op::read_stdout : Op::read_stderr, s.generation, index);
    st.reading = true;
}

void ExecRunner::signal_group(Slot& s, int sig) {
    if (s.reaped) {
        return; // its pid, the group's id, may belong to another process by now
    }
    // The group: what a script started dies with it. The leader by its pidfd too, in case it
    // left the group.
    ::kill(-s.pid, sig);
    pidfd_send_signal(s.pidfd, sig);
}

void ExecRunner::reap(Slot& s, int64_t now_ns) {
    s.reaped = true;
    s.reaped_ns = now_ns;
    close_fd(s.pidfd);
    if (s.headers_name[0] != '\0') {
        ::unlink(headers_path(s));
        s.headers_name[0] = '\0';
    }
}

void ExecRunner::cancel_all(uint32_t index) {
    Slot& s = *_slots[index];
    s.cancelled = true;
    auto cancel = [&](Op op) {
        io_uring_sqe* sqe = _ring.sqe();
        io_uring_prep_cancel64(sqe, pack(op, s.generation, index), 0);
        sqe->user_data = pack(Op::cancel, 0, 0);
    };
    if (s.waiting) {
        cancel(Op::wait);
    }
    if (s.writing) {
        cancel(Op::write);
    }
    if (s.out[0].reading) {
        cancel(Op::read_stdout);
    }
    if (s.out[1].reading) {
        cancel(Op::read_stderr);
    }
}

int64_t ExecRunner::handle(const io_uring_cqe& cqe, int64_t now_ns) {
    const auto op = static_cast<Op>((cqe.user_data >> 48) & 0xff);
    const auto generation = static_cast<uint16_t>(cqe.user_data >> 32);
    const auto index = static_cast<uint32_t>(cqe.user_data);
    if (op == Op::cancel || index >= _slots.size()) {
        return -1;
    }
    Slot& s = *_slots[index];
    if (!s.busy || s.generation != generation) {
        return -1; // cannot happen: a slot is reused only once all its completions are in
    }
    // After stop() or the linger, nothing is re-armed: the slot only waits for its completions.
    const bool rearm = !s.abandoned && !s.cancelled;
    const int res = cqe.res;
    switch (op) {
    case Op::wait: {
        s.waiting = false;
        if (s.reaped) {
            break;
        }
        siginfo_t info{};
        const int rc = waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(s.pidfd), &info,
                              WEXITED | WNOHANG);
        if (rc == 0 && info.si_pid == 0) {
            // Not exited (a poll ended early, EINTR): wait again.
            if (rearm) {
                arm_wait(index);
            }
            break;
        }
        if (rc == 0) {
            if (info.si_code == CLD_EXITED) {
                s.exit_status = info.si_status;
            } else {
                s.signal = info.si_status;
            }
        }
        // rc < 0 (ECHILD): something else reaped it, against this runner's precondition; the
        // status is lost and the attempt counts as failed.
        reap(s, now_ns);
        break;
    }
    case Op::write:
        s.writing = false;
        if (res > 0) {
            s.body_sent += size_t(res);
        }
        if ((res > 0 || res == -EAGAIN || res == -EINTR) && s.body_sent < s.body.size() && rearm) {
            arm_write(index);
        } else {
            // All written, or EPIPE (the child is gone or closed stdin), or cancelled: EOF.
            close_fd(s.stdin_fd);
        }
        break;
    case Op::read_stdout:
    case Op::read_stderr: {
        Stream& st = s.out[op == Op::read_stdout ? 0 : 1];
        st.reading = false;
        if (res > 0) {
            if (st.head_len < head_bytes) {
                st.head_len += uint32_t(res);
            }
            st.bytes += uint64_t(res);
        }
        if ((res > 0 || res == -EAGAIN || res == -EINTR) && rearm) {
            arm_read(index, op == Op::read_stdout ? 0 : 1);
        } else {
            close_fd(st.fd); // EOF, an error, or cancelled
        }
        break;
    }
    case Op::cancel:
        break;
    }
    if (s.reaped && inflight(s) == 0) {
        return index;
    }
    return -1;
}

void ExecRunner::tick(int64_t now_ns) {
    for (uint32_t i = 0; i < _slots.size(); ++i) {
        Slot& s = *_slots[i];
        if (!s.busy || s.abandoned) {
            continue;
        }
        if (!s.reaped) {
            if (!s.term_sent && now_ns >= s.term_at_ns) {
                signal_group(s, SIGTERM);
                s.term_sent = true;
                s.kill_at_ns = now_ns + _timings.kill_grace_ns;
                ++_stats.timed_out;
            } else if (s.term_sent && !s.kill_sent && now_ns >= s.kill_at_ns) {
                signal_group(s, SIGKILL);
                s.kill_sent = true;
                ++_stats.killed;
            }
        } else if (!s.cancelled && now_ns >= s.reaped_ns + _timings.output_linger_ns) {
            // Reaped, yet its pipes are open: something it started holds them.
            cancel_all(i);
            ++_stats.lingered;
        }
    }
}

int64_t ExecRunner::wait_limit_ns(int64_t now_ns, int64_t limit) const {
    int64_t next = now_ns + limit;
    for (const auto& slot : _slots) {
        const Slot& s = *slot;
        if (!s.busy || s.abandoned) {
            continue;
        }
        if (!s.reaped && !s.term_sent) {
            next = std::min(next, s.term_at_ns);
        } else if (!s.reaped && !s.kill_sent) {
            next = std::min(next, s.kill_at_ns);
        } else if (s.reaped && !s.cancelled) {
            next = std::min(next, s.reaped_ns + _timings.output_linger_ns);
        }
    }
    return std::clamp<int64_t>(next - now_ns, min_wait_ns, limit);
}

bool ExecRunner::abandon_slot(uint32_t index) {
    Slot& s = *_slots[index];
    s.abandoned = true;
    --_running;
    if (!s.reaped) {
        signal_group(s, SIGKILL);
        siginfo_t info{};
        while (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(s.pidfd), &info, WEXITED) <
                   0 &&
               errno == EINTR) {
        }
        reap(s, 0);
    }
    if (inflight(s) == 0) {
        release_slot(index);
        return false;
    }
    cancel_all(index);
    return true;
}

void ExecRunner::stop() {
    bool cancelled = false;
    for (uint32_t i = 0; i < _slots.size(); ++i) {
        Slot& s = *_slots[i];
        if (!s.busy || s.abandoned) {
            continue;
        }
        cancelled = abandon_slot(i) || cancelled;
    }
    if (cancelled) {
        // The cancellations take effect now, not at the loop's next submission.
        io_uring_submit(_ring.raw());
    }
}

bool ExecRunner::abandon(uint64_t cookie) {
    for (uint32_t i = 0; i < _slots.size(); ++i) {
        Slot& s = *_slots[i];
        if (s.busy && !s.abandoned && s.cookie == cookie) {
            abandon_slot(i); // the cancellations go with the loop's next submission
            return true;
        }
    }
    return false;
}

ExecOutcome ExecRunner::outcome(const Slot& s) {
    ExecOutcome o;
    if (s.term_sent) {
        o.kind = ExecOutcome::Kind::timed_out;
    } else if (s.signal == 0 && s.exit_status == 0) {
        o.kind = ExecOutcome::Kind::delivered;
    } else if (s.signal == 0 && s.exit_status == 75) { // EX_TEMPFAIL
        o.kind = ExecOutcome::Kind::retry;
    } else {
        o.kind = ExecOutcome::Kind::failed;
    }
    o.exit_status = s.exit_status;
    o.signal = s.signal;
    o.stdout_head = std::string_view(s.out[0].head.data(), s.out[0].head_len);
    o.stderr_head = std::string_view(s.out[1].head.data(), s.out[1].head_len);
    o.stdout_bytes = s.out[0].bytes;
    o.stderr_bytes = s.out[1].bytes;
    o.stdin_bytes = s.body_sent;
    o.duration_ns = s.reaped_ns - s.started_ns;
    return o;
}

} // namespace portcullis::deliver
