#!/usr/bin/env python3
"""The disk's own append + fdatasync latency, for bench/load/run's p99 target.

Appends RECORD_BYTES-byte records to a new file in DIR (the spool's parent, so the same
filesystem and the same disk state as the spool) and calls fdatasync after each one, the way a
shard's group commit writes a batch and syncs it: the file grows on every append, as a spool
segment does. Stops after COUNT syncs or SECONDS seconds, whichever comes first, removes the
file and prints one line of key=value figures (latencies in microseconds, nearest rank):

  fsync-result count=2000 seconds=1.234 per_s=1621.0 p50_us=... p99_us=... p999_us=... max_us=...

The timed span is the write and the fdatasync together (what the spool waits for before a 202);
python's own few microseconds per loop are small against a disk's sync.

With FSYNC_PROBE_MODE=overwrite in the environment, the file is first written to its full length
(COUNT records) and synced, and then each sample writes one record over it in place, front to
back, and syncs: what a spool that wrote into already-written blocks (segments recycled, or
zero-filled ahead of the writer) would wait for. Such a sync flushes data only; an append's must
also commit the journal entry of the file's new size (ext4).

With SPECTRUM_FILE (bench/load/latency), the latency by percentile is also written there, in
open_loop's --out format: "percentile value_us 1/(1-p)" lines on HdrHistogram's ladder (5 steps
per halving of the distance to 100%), then the maximum at x = the sample count.
"""

import math
import os
import sys
import time


def percentile(sorted_ns, p):
    rank = max(1, math.ceil(p / 100.0 * len(sorted_ns)))
    return sorted_ns[rank - 1] // 1000


def write_spectrum(path, sorted_ns, mode):
    n = len(sorted_ns)
    with open(path, "w") as f:
        f.write("# percentile value_us inverse_tail (%s + fdatasync, %d samples)\n" % (mode, n))
        half = 0
        while half < 64:
            lo, hi = 1.0 - 0.5 ** half, 1.0 - 0.5 ** (half + 1)
            for step in range(5):
                p = lo + (hi - lo) * step / 5.0
                if 1.0 / (1.0 - p) > n:
                    half = 64
                    break
                rank = max(1, math.ceil(p * n))
                f.write("%.6f %.1f %.3f\n" % (100.0 * p, sorted_ns[rank - 1] / 1000.0,
                                                1.0 / (1.0 - p)))
            half += 1
        f.write("100 %.1f %.3f\n" % (sorted_ns[-1] / 1000.0, max(n, 1)))


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit("usage: fsync_probe.py DIR COUNT SECONDS RECORD_BYTES [SPECTRUM_FILE]")
    directory, count, seconds, record_bytes = (sys.argv[1], int(sys.argv[2]),
                                               float(sys.argv[3]), int(sys.argv[4]))
    path = os.path.join(directory, "fsync-probe.%d" % os.getpid())
    record = (b"x" * (record_bytes - 1)) + b"\n"
    mode = os.environ.get("FSYNC_PROBE_MODE", "append")
    if mode not in ("append", "overwrite"):
        sys.exit("fsync_probe: FSYNC_PROBE_MODE is append or overwrite, not %r" % mode)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    fd = os.open(path, flags | (os.O_APPEND if mode == "append" else 0), 0o600)
    samples = []
    try:
        if mode == "overwrite":
            os.write(fd, record * count)
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_SET)
        # The file's name made durable first, as a new segment's is, so that the first sample
        # does not carry the directory's sync.
        os.fdatasync(fd)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        start = time.perf_counter_ns()
        deadline = start + int(seconds * 1e9)
        while len(samples) < count:
            t0 = time.perf_counter_ns()
            if t0 >= deadline:
                break
            os.write(fd, record)
            os.fdatasync(fd)
            samples.append(time.perf_counter_ns() - t0)
        elapsed = (time.perf_counter_ns() - start) / 1e9
    finally:
        os.close(fd)
        os.unlink(path)
    if not samples:
        sys.exit("fsync_probe: no sample within %.1f s" % seconds)
    samples.sort()
    if len(sys.argv) == 6:
        write_spectrum(sys.argv[5], samples, mode)
    print("fsync-result mode=%s count=%d seconds=%.3f per_s=%.1f p50_us=%d p99_us=%d p999_us=%d max_us=%d"
          % (mode, len(samples), elapsed, len(samples) / elapsed, percentile(samples, 50),
             percentile(samples, 99), percentile(samples, 99.9), samples[-1] // 1000))


if __name__ == "__main__":
    main()
