#!/usr/bin/env python3
"""Run a command and report its wall time and peak memory (stdlib only).

    measure.py [--repeat K] [--once-over S] [--cwd DIR] -- CMD [ARG...]

Runs CMD up to K times (default 3) and prints one line:

    WALL_S PEAK_RSS_MIB EXIT_CODE RUNS

WALL_S is the best (lowest) wall time of the runs, from just before the
process is spawned to its exit. PEAK_RSS_MIB is the highest peak resident set
size of CMD (with the children it waited for), from the kernel's rusage of
the process (os.wait4), so no /usr/bin/time is needed. With --once-over S no
further runs are made once one run takes longer than S seconds. CMD's stdout
is discarded; if it exits non-zero, the runs stop, the tail of its stderr
goes to stderr and measure.py exits with CMD's exit code.

Why there can be one extra run: Linux keeps a process's peak RSS across
exec, so a child spawned straight from this Python process starts with
Python's footprint (10-15 MiB) as its peak. A figure above twice that floor
(measured with /bin/true) is the command's own; otherwise one more run
spawns CMD from /bin/sh, with this process as child subreaper
(PR_SET_CHILD_SUBREAPER) to reap it, which gives the command's own figure
(floor about 1 MiB, as with GNU time). Wall times never come from that run.
"""

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
import time

PR_SET_CHILD_SUBREAPER = 36


def run_direct(cmd, cwd):
    """One run spawned from here: (wall_s, peak_rss_kib, exit_code, stderr)."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    return wall, usage.ru_maxrss, proc.returncode, stderr


def set_subreaper():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def run_via_sh(cmd, cwd):
    """One run spawned by /bin/sh and reaped here: (peak_rss_kib, exit_code)."""
    script = '"$@" </dev/null >/dev/null 2>&1 & echo $!'
    sh = subprocess.Popen(["/bin/sh", "-c", script, "sh", *cmd], cwd=cwd,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    out = sh.stdout.read()
    sh.wait()
    pid = int(out.strip())
    _, status, usage = os.wait4(pid, 0)
    return usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--once-over", type=float, default=None)
    ap.add_argument("--cwd", default=None)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("no command given")

    floor_kib = run_direct(["/bin/true"], None)[1] if os.path.exists("/bin/true") else 0
    best, peak_kib, runs = None, 0, 0
    for _ in range(max(1, args.repeat)):
        try:
            wall, rss, rc, stderr = run_direct(cmd, args.cwd)
        except OSError as e:
            sys.stderr.write(f"measure.py: cannot run {cmd[0]}: {e}\n")
            print(f"0 0 127 {runs}")
            return 127
        runs += 1
        if rc != 0:
            tail = stderr.decode(errors="replace")[-4000:]
            sys.stderr.write(f"measure.py: {' '.join(cmd)} exited {rc}\n{tail}")
            print(f"{wall:.6f} {rss / 1024:.1f} {rc} {runs}")
            return rc if 0 < rc < 256 else 1
        best = wall if best is None else min(best, wall)
        peak_kib = max(peak_kib, rss)
        if args.once_over is not None and wall > args.once_over:
            break

    if peak_kib <= 2 * floor_kib and os.path.exists("/bin/sh") and set_subreaper():
        rss, rc = run_via_sh(cmd, args.cwd)
        if rc == 0:
            peak_kib = rss
    print(f"{best:.6f} {peak_kib / 1024:.1f} 0 {runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
