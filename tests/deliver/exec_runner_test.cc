// ExecRunner end to end: real children (small /bin/sh scripts written to a temporary folder: the
// test's children, not how portcullis runs a command), driven by a real io_uring loop like the
// control plane's.
#include "portcullis/deliver/exec_runner.hh"

#include "portcullis/base/time.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <vector>

using namespace portcullis;
using deliver::ExecJob;
using deliver::ExecOutcome;
using deliver::ExecRunner;
namespace fs = std::filesystem;

namespace {

constexpr int64_t ms = 1'000'000;

struct Result {
    uint64_t cookie = 0;
    ExecOutcome::Kind kind = ExecOutcome::Kind::failed;
    int exit_status = -1;
    int signal = 0;
    std::string out;
    std::string err;
    uint64_t stdout_bytes = 0;
    uint64_t stderr_bytes = 0;
    uint64_t stdin_bytes = 0;
    int64_t duration_ns = 0;
};

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

size_t count_entries(const std::string& dir) {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) {
        ++n;
    }
    return n;
}

size_t open_fds() {
    return count_entries("/proc/self/fd");
}

// No child of this process is left unreaped.
bool no_zombies() {
    siginfo_t info{};
    return waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD;
}

class ExecRunnerTest : public ::testing::Test {
protected:
    void SetUp() override {
        io::Features f = io::probe_features();
        if (!f.available) {
            GTEST_SKIP() << "io_uring unusable here: " << f.unavailable;
        }
        // As the control plane's ring is set up.
        ASSERT_EQ(_ring.init(256, 0), "");
        std::string tmpl = (fs::temp_directory_path() / "portcullis-exec-XXXXXX").native();
        ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
        _dir = tmpl;
        _headers = _dir + "/headers";
        ASSERT_EQ(mkdir(_headers.c_str(), 0700), 0);
        // As in portcullis: the signals the server takes with sigwait are blocked in every
        // thread, and SIGPIPE is ignored. The children must get neither.
        sigset_t block;
        sigemptyset(&block);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &block, &_saved_mask);
        _saved_pipe = std::signal(SIGPIPE, SIG_IGN);
        _fds_before = open_fds();
        make_runner();
    }

    void TearDown() override {
        _runner.reset();
        pthread_sigmask(SIG_SETMASK, &_saved_mask, nullptr);
        std::signal(SIGPIPE, _saved_pipe);
        std::error_code ec;
        if (!_dir.empty()) {
            fs::remove_all(_dir, ec);
        }
    }

    void make_runner() {
        deliver::ExecTimings t;
        t.kill_grace_ns = _grace_ns;
        t.output_linger_ns = 300 * ms;
        _runner.emplace(_ring, _headers, t);
    }

    std::string script(const std::string& name, const std::string& body) {
        std::string path = _dir + "/" + name;
        std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
        chmod(path.c_str(), 0755);
        return path;
    }

    ExecJob job(const std::vector<std::string>& argv, std::string_view body = {}) {
        ExecJob j;
        j.command = argv;
        j.job_id = "01jd3v8x7e0k4s9q2m6b5n1c8h";
        j.route = "github";
        j.attempt = 3;
        j.received_at_unix_ns = 1'764'390'000'123'000'000;
        j.source_ip = "203.0.113.5";
        j.body = {reinterpret_cast<const uint8_t*>(body.data()), body.size()};
        j.headers_json = R"({"x-github-event":"push"})";
        j.timeout_ns = 30'000 * ms;
        return j;
    }

    // Runs the loop until n outcomes are in (or 30 s), then until the runner is idle.
    std::vector<Result> run(size_t n) {
        std::vector<Result> results;
        const int64_t give_up = base::mono_ns() + 30'000 * ms;
        while ((results.size() < n || !_runner->idle()) && base::mono_ns() < give_up) {
            int64_t now = base::mono_ns();
            _runner->tick(now);
            EXPECT_EQ(_ring.submit_and_wait(_runner->wait_limit_ns(now, 100 * ms)), 0);
            now = base::mono_ns();
            _ring.for_each_cqe([&](const io_uring_cqe& cqe) {
                ASSERT_TRUE(ExecRunner::owns(cqe.user_data));
                _runner->on_cqe(cqe, now, [&](uint64_t cookie, const ExecOutcome& o) {
                    Result r;
                    r.cookie = cookie;
                    r.kind = o.kind;
                    r.exit_status = o.exit_status;
                    r.signal = o.signal;
                    r.out = o.stdout_head;
                    r.err = o.stderr_head;
                    r.stdout_bytes = o.stdout_bytes;
                    r.stderr_bytes = o.stderr_bytes;
                    r.stdin_bytes = o.stdin_bytes;
                    r.duration_ns = o.duration_ns;
                    results.push_back(r);
                });
            });
        }
        EXPECT_EQ(results.size(), n) << "outcomes missing after 30 s";
        EXPECT_TRUE(_runner->idle());
        EXPECT_EQ(_runner->running(), 0u);
        return results;
    }

    Result run_one(const ExecJob& j) {
        std::string error;
        EXPECT_TRUE(_runner->start(j, 7, base::mono_ns(), error)) << error;
        std::vector<Result> r = run(1);
        return r.empty() ? Result{} : r[0];
    }

    io::Ring _ring;
    std::string _dir;
    std::string _headers;
    int64_t _grace_ns = 300 * ms;
    std::optional<ExecRunner> _runner;
    sigset_t _saved_mask{};
    void (*_saved_pipe)(int) = SIG_DFL;
    size_t _fds_before = 0;
};

} // namespace

TEST_F(ExecRunnerTest, BodyArrivesOnStdinByteForByte) {
    std::mt19937 rng(42);
    std::string big(1 << 20, '\0');
    for (char& c : big) {
        c = static_cast<char>(rng()); // every byte value, NULs included
    }
    const std::vector<std::string> bodies = {"", "{\"a\":1}\n", std::string("\0\xff\r\n", 4), big};
    for (size_t i = 0; i < bodies.size(); ++i) {
        const std::string out = _dir + "/body-" + std::to_string(i);
        const std::vector<std::string> argv = {script("cat.sh", "cat > \"$1\""), out};
        Result r = run_one(job(argv, bodies[i]));
        EXPECT_EQ(r.kind, ExecOutcome::Kind::delivered) << "body " << i << ": " << r.err;
        EXPECT_EQ(r.stdin_bytes, bodies[i].size()) << "body " << i;
        EXPECT_TRUE(read_file(out) == bodies[i]) << "body " << i << " differs";
    }
}

TEST_F(ExecRunnerTest, ChildThatDoesNotReadStdinBlocksNothing) {
    const std::string body(1 << 20, 'b');
    const std::vector<std::string> argv = {script("ignore.sh", "exit 0")};
    const int64_t t0 = base::mono_ns();
    Result r = run_one(job(argv, body));
    EXPECT_EQ(r.kind, ExecOutcome::Kind::delivered);
    // The pipe took what fits; the rest ended with EPIPE when the child exited.
    EXPECT_LT(r.stdin_bytes, body.size());
    EXPECT_LT(base::mono_ns() - t0, 5'000 * ms);
}

TEST_F(ExecRunnerTest, EnvironmentHoldsExactlyTheDocumentedVariables) {
    // Something portcullis's own environment may hold that a child must not see.
    setenv("PORTCULLIS_TEST_SECRET", "hunter2", 1);
    const std::vector<std::string> argv = {"/usr/bin/env"};
    Result r = run_one(job(argv, "x"));
    unsetenv("PORTCULLIS_TEST_SECRET");
    ASSERT_EQ(r.kind, ExecOutcome::Kind::delivered) << r.err;

    std::vector<std::string> lines;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) {
        lines.push_back(line);
    }
    ASSERT_EQ(lines.size(), 7u) << r.out;
    EXPECT_EQ(lines[0], "PORTCULLIS_JOB_ID=01jd3v8x7e0k4s9q2m6b5n1c8h");
    EXPECT_EQ(lines[1], "PORTCULLIS_ROUTE=github");
    EXPECT_EQ(lines[2], "PORTCULLIS_ATTEMPT=3");
    EXPECT_EQ(lines[3], "PORTCULLIS_RECEIVED_AT=2025-11-29T04:20:00.123Z");
    EXPECT_EQ(lines[4], "PORTCULLIS_SOURCE_IP=203.0.113.5");
    const std::string prefix = "PORTCULLIS_HEADERS_FILE=" + _headers + "/portcullis-headers-";
    EXPECT_EQ(lines[5].rfind(prefix, 0), 0u) << lines[5];
    EXPECT_TRUE(lines[5].ends_with(".json")) << lines[5];
    EXPECT_EQ(lines[6], "PATH=/usr/local/bin:/usr/bin:/bin");
    EXPECT_EQ(r.out.find("hunter2"), std::string::npos);
}

TEST_F(ExecRunnerTest, HeadersFileHoldsTheJsonIsPrivateAndIsRemovedAfter) {
    const std::string copy = _dir + "/headers-copy";
    const std::vector<std::string> argv = {script("headers.sh",
                                                  "cp \"$PORTCULLIS_HEADERS_FILE\" \"$1\"\n"
                                                  "stat -c %a \"$PORTCULLIS_HEADERS_FILE\"\n"
                                                  "echo \"$PORTCULLIS_HEADERS_FILE\""),
                                           copy};
    ExecJob j = job(argv);
    const std::string json = R"({"x-github-event":"push","x-hub-signature-256":"sha256=00"})";
    j.headers_json = json;
    Result r = run_one(j);
    ASSERT_EQ(r.kind, ExecOutcome::Kind::delivered) << r.err;
    EXPECT_EQ(read_file(copy), json);
    const size_t nl = r.out.find('\n');
    ASSERT_NE(nl, std::string::npos) << r.out;
    EXPECT_EQ(r.out.substr(0, nl), "600");
    const std::string path = r.out.substr(nl + 1, r.out.size() - nl - 2);
    EXPECT_EQ(path.rfind(_headers + "/", 0), 0u) << path;
    EXPECT_FALSE(fs::exists(path)) << path << " is still there";
    EXPECT_EQ(count_entries(_headers), 0u);
}

TEST_F(ExecRunnerTest, ExitStatusesAndSignalsAreClassified) {
    struct Row {
        const char* script;
        ExecOutcome::Kind kind;
        int exit_status;
        int signal;
    };
    const Row rows[] = {
        {"exit 0", ExecOutcome::Kind::delivered, 0, 0},
        {"exit 75", ExecOutcome::Kind::retry, 75, 0},
        {"exit 1", ExecOutcome::Kind::failed, 1, 0},
        {"exit 74", ExecOutcome::Kind::failed, 74, 0},
        {"exit 76", ExecOutcome::Kind::failed, 76, 0},
        {"kill -USR1 $$", ExecOutcome::Kind::failed, -1, SIGUSR1},
        {"kill -KILL $$", ExecOutcome::Kind::failed, -1, SIGKILL},
        {"kill -TERM $$", ExecOutcome::Kind::failed, -1, SIGTERM}, // not the timeout's
    };
    std::vector<std::vector<std::string>> argvs;
    for (size_t i = 0; i < std::size(rows); ++i) {
        argvs.push_back({script("status-" + std::to_string(i) + ".sh", rows[i].script)});
    }
    for (size_t i = 0; i < std::size(rows); ++i) {
        std::string error;
        ASSERT_TRUE(_runner->start(job(argvs[i]), i, base::mono_ns(), error)) << error;
    }
    std::vector<Result> results = run(std::size(rows));
    for (const Result& r : results) {
        const Row& row = rows[r.cookie];
        EXPECT_EQ(r.kind, row.kind) << row.script;
        EXPECT_EQ(r.exit_status, row.exit_status) << row.script;
        EXPECT_EQ(r.signal, row.signal) << row.script;
    }
}

TEST_F(ExecRunnerTest, HeaderValuesAreNeverInterpreted) {
    const std::string victim = _dir + "/victim";
    std::ofstream(victim) << "still here";
    const std::string json = R"({"x-a":"$(touch )" + _dir + R"(/pwned1); rm -rf )" + victim +
                             R"(","x-b":"`touch )" + _dir + R"(/pwned2`","x-c":"'; touch )" + _dir +
                             R"(/pwned3; '"})";
    // A script that reads the file the way a careless consumer might not: still nothing runs,
    // because portcullis never hands the values to a shell, an argument or the environment.
    const std::vector<std::string> argvs[] = {
        {"/usr/bin/env"},
        {script("read.sh", "cat \"$PORTCULLIS_HEADERS_FILE\"")},
    };
    for (const auto& argv : argvs) {
        ExecJob j = job(argv);
        j.headers_json = json;
        Result r = run_one(j);
        EXPECT_EQ(r.kind, ExecOutcome::Kind::delivered) << argv[0] << ": " << r.err;
        if (argv[0] == "/usr/bin/env") {
            EXPECT_EQ(r.out.find("touch"), std::string::npos) << r.out;
            EXPECT_EQ(r.out.find("x-a"), std::string::npos) << r.out;
        } else {
            EXPECT_EQ(r.out, json); // byte for byte, uninterpreted
        }
    }
    EXPECT_FALSE(fs::exists(_dir + "/pwned1"));
    EXPECT_FALSE(fs::exists(_dir + "/pwned2"));
    EXPECT_FALSE(fs::exists(_dir + "/pwned3"));
    EXPECT_EQ(read_file(victim), "still here");
}

TEST_F(ExecRunnerTest, ChildStartsWithNoSignalBlockedOrIgnored) {
    // The test's thread blocks SIGTERM, SIGINT and SIGHUP and ignores SIGPIPE, as portcullis's.
    const std::vector<std::string> argv = {"/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"};
    Result r = run_one(job(argv));
    ASSERT_EQ(r.kind, ExecOutcome::Kind::delivered) << r.err;
    unsigned long long blocked = ~0ULL;
    unsigned long long ignored = ~0ULL;
    ASSERT_EQ(std::sscanf(r.out.c_str(), "SigBlk:\t%llx\nSigIgn:\t%llx", &blocked, &ignored), 2)
        << r.out;
    EXPECT_EQ(blocked, 0u) << r.out;
    // glibc's posix_spawn leaves its two internal signals (32 and 33, below SIGRTMIN) ignored in
    // the child; only a C library uses them, and it installs its own handlers at start-up.
    // Every other signal, SIGPIPE included, is at its default action.
    constexpr unsigned long long glibc_internal = 3ULL << 31;
    EXPECT_EQ(ignored & ~glibc_internal, 0u) << r.out;
}

TEST_F(ExecRunnerTest, ChildHasOnlyStdinStdoutAndStderr) {
    const std::vector<std::string> argv = {"/bin/ls", "/proc/self/fd"};
    // A descriptor portcullis opened without O_CLOEXEC must not leak either.
    const int leaky = ::open("/dev/null", O_RDONLY);
    ASSERT_GE(leaky, 3);
    Result r = run_one(job(argv));
    ::close(leaky);
    ASSERT_EQ(r.kind, ExecOutcome::Kind::delivered) << r.err;
    // ls's own directory descriptor is the fourth.
    EXPECT_EQ(r.out, "0\n1\n2\n3\n");
}

TEST_F(ExecRunnerTest, TimeoutSendsSigtermToTheGroup) {
    // sh waits for sleep; both get the SIGTERM (the group) and die of it.
    const std::vector<std::string> argv = {script("slow.sh", "sleep 30")};
    ExecJob j = job(argv);
    j.timeout_ns = 200 * ms;
    Result r = run_one(j);
    EXPECT_EQ(r.kind, ExecOutcome::Kind::timed_out);
    EXPECT_EQ(r.signal, SIGTERM);
    EXPECT_GE(r.duration_ns, 200 * ms);
    EXPECT_LT(r.duration_ns, 10'000 * ms);
    EXPECT_EQ(_runner->stats().timed_out, 1u);
    EXPECT_EQ(_runner->stats().killed, 0u);
    EXPECT_EQ(_runner->stats().lingered, 0u) << "the sleep outlived its shell";
}

TEST_F(ExecRunnerTest, ChildIgnoringSigtermIsKilledAfterTheGrace) {
    const std::vector<std::string> argv = {script("stubborn.sh", "trap '' TERM\nsleep 30")};
    ExecJob j = job(argv);
    j.timeout_ns = 200 * ms;
    Result r = run_one(j);
    EXPECT_EQ(r.kind, ExecOutcome::Kind::timed_out);
    EXPECT_EQ(r.signal, SIGKILL);
    EXPECT_GE(r.duration_ns, 200 * ms + _grace_ns);
    EXPECT_LT(r.duration_ns, 10'000 * ms);
    EXPECT_EQ(_runner->stats().timed_out, 1u);
    EXPECT_EQ(_runner->stats().killed, 1u);
}

TEST_F(ExecRunnerTest, HundredChildrenAtOnceAreAllReaped) {
    constexpr size_t n = 100;
    const std::vector<std::string> argv = {script("echo.sh", "cat\necho \" $PORTCULLIS_ATTEMPT\"")};
    std::vector<std::string> bodies;
    for (size_t i = 0; i < n; ++i) {
        bodies.push_back("child " + std::to_string(i));
    }
    for (size_t i = 0; i < n; ++i) {
        ExecJob j = job(argv, bodies[i]);
        j.attempt = static_cast<uint32_t>(i + 1);
        std::string error;
        ASSERT_TRUE(_runner->start(j, i, base::mono_ns(), error)) << i << ": " << error;
    }
    EXPECT_EQ(_runner->running(), n);
    std::vector<Result> results = run(n);
    std::vector<bool> seen(n, false);
    for (const Result& r : results) {
        ASSERT_LT(r.cookie, n);
        EXPECT_FALSE(seen[r.cookie]) << "reported twice: " << r.cookie;
        seen[r.cookie] = true;
        EXPECT_EQ(r.kind, ExecOutcome::Kind::delivered) << r.err;
        EXPECT_EQ(r.out, bodies[r.cookie] + " " + std::to_string(r.cookie + 1) + "\n");
    }
    EXPECT_TRUE(no_zombies());
    EXPECT_EQ(open_fds(), _fds_before);
    EXPECT_EQ(count_entries(_headers), 0u);
}

TEST_F(ExecRunnerTest, ChattyChildDoesNotBlockAndItsHeadsAreKept) {
    const std::vector<std::string> argv = {script("chatty.sh",
                                                  "yes 0123456789abcdef | head -c 10485760\n"
                                                  "yes err | head -c 1048576 >&2")};
    Result r = run_one(job(argv));
    EXPECT_EQ(r.kind, ExecOutcome::Kind::delivered);
    EXPECT_EQ(r.stdout_bytes, 10485760u);
    EXPECT_EQ(r.stderr_bytes, 1048576u);
    std::string expected_out;
    while (expected_out.size() < ExecRunner::head_bytes) {
        expected_out += "0123456789abcdef\n";
    }
    std::string expected_err;
    while (expected_err.size() < ExecRunner::head_bytes) {
        expected_err += "err\n";
    }
    EXPECT_TRUE(r.out == expected_out.substr(0, ExecRunner::head_bytes)) << r.out.size();
    EXPECT_TRUE(r.err == expected_err.substr(0, ExecRunner::head_bytes)) << r.err.size();
}

TEST_F(ExecRunnerTest, BackgroundProcessHoldingStdoutDelaysTheOutcomeOnlyByTheLinger) {
    // The shell exits at once; sleep keeps stdout open. Short, so that it is gone soon after.
    const std::vector<std::string> argv = {script("bg.sh", "sleep 3 &\necho started")};
    const int64_t t0 = base::mono_ns();
    Result r = run_one(job(argv));
    EXPECT_LT(base::mono_ns() - t0, 2'500 * ms);
    EXPECT_EQ(r.kind, ExecOutcome::Kind::delivered);
    EXPECT_EQ(r.out, "started\n");
    EXPECT_EQ(_runner->stats().lingered, 1u);
    EXPECT_EQ(open_fds(), _fds_before);
}

TEST_F(ExecRunnerTest, ProgramThatCannotRunIsASpawnFailureWithTheErrnoText) {
    const std::string not_executable = _dir + "/plain.txt";
    std::ofstream(not_executable) << "#!/bin/sh\nexit 0\n";
    chmod(not_executable.c_str(), 0644);
    struct Row {
        std::vector<std::string> argv;
        std::string error;
    };
    const Row rows[] = {
        {{"/nonexistent/program"}, "cannot run /nonexistent/program: No such file or directory"},
        {{not_executable}, "cannot run " + not_executable + ": Permission denied"},
        {{"sh", "-c", "true"}, "command: argv[0] must be an absolute path"},
    };
    for (const Row& row : rows) {
        std::string error;
        EXPECT_FALSE(_runner->start(job(row.argv, "body"), 1, base::mono_ns(), error));
        EXPECT_EQ(error, row.error);
    }
    EXPECT_EQ(_runner->running(), 0u);
    EXPECT_TRUE(_runner->idle());
    EXPECT_EQ(_runner->stats().spawn_failures, std::size(rows));
    EXPECT_EQ(count_entries(_headers), 0u);
    EXPECT_EQ(open_fds(), _fds_before);
    EXPECT_TRUE(no_zombies());
}

TEST_F(ExecRunnerTest, HeadersDirectoryThatIsMissingIsASpawnFailure) {
    _headers = _dir + "/missing";
    make_runner();
    std::string error;
    EXPECT_FALSE(_runner->start(job({"/bin/true"}), 1, base::mono_ns(), error));
    EXPECT_EQ(error.rfind("headers file " + _headers + "/portcullis-headers-", 0), 0u) << error;
    EXPECT_TRUE(error.ends_with(".json: No such file or directory")) << error;
}

TEST_F(ExecRunnerTest, StopKillsAndReapsWhatIsLeftAndReportsNothing) {
    const std::vector<std::string> argv = {script("long.sh", "trap '' TERM\nsleep 30")};
    for (uint64_t i = 0; i < 3; ++i) {
        std::string error;
        ASSERT_TRUE(_runner->start(job(argv, "body"), i, base::mono_ns(), error)) << error;
    }
    EXPECT_EQ(count_entries(_headers), 3u);
    const int64_t t0 = base::mono_ns();
    _runner->stop();
    EXPECT_LT(base::mono_ns() - t0, 5'000 * ms);
    EXPECT_EQ(_runner->running(), 0u);
    EXPECT_TRUE(no_zombies());
    EXPECT_EQ(count_entries(_headers), 0u);
    run(0); // the cancelled reads complete; nothing is reported
    EXPECT_EQ(open_fds(), _fds_before);
}
