#!/usr/bin/env python3
"""Run one wrk measurement and account for CPU used by processes outside the benchmark.

usage: runwrk.py OUTFILE OURS_PIDS_FILE -- CMD...   (CMD is `taskset -c N wrk ...`)

Writes CMD's output to OUTFILE and appends a line
  # bench-cpu: foreign=<% of one CPU> steal=<%> top=<comm:%,...>
then prints "FOREIGN STEAL" (percent of one CPU) on stdout. "Foreign" is all user+nice+system CPU time of the
machine (/proc/stat) minus that of our processes (the servers listed in OURS_PIDS_FILE, this
wrapper and CMD) and of kernel threads, so it includes short-lived processes (compilers, tests);
`top` names the biggest long-lived ones. Another build or test run on the same machine shows up
here and makes the numbers unreliable.
Exit status: CMD's.
"""
import os
import subprocess
import sys
import time

TCK = os.sysconf("SC_CLK_TCK")


def snapshot():
    """{pid: (comm, starttime, utime+stime, is_kernel_thread)}"""
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1 : s.rindex(")")]
        rest = s[s.rindex(")") + 2 :].split()
        # fields after comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14) starttime(19)
        ppid = int(rest[1])
        kthread = int(d) == 2 or ppid == 2  # ksoftirqd, kworkers: largely our network work
        procs[int(d)] = (comm, int(rest[19]), int(rest[11]) + int(rest[12]), kthread)
    return procs


def cpustat():
    """(user+nice+system+irq+softirq, steal) ticks over all CPUs."""
    with open("/proc/stat") as f:
        p = [int(x) for x in f.readline().split()[1:]]
    return p[0] + p[1] + p[2] + p[5] + p[6], (p[7] if len(p) > 7 else 0)


def delta(before, after, pid):
    comm, start, t, _k = after[pid]
    b = before.get(pid)
    return t - b[2] if b and b[1] == start else t


def main():
    out, ours_file = sys.argv[1], sys.argv[2]
    cmd = sys.argv[sys.argv.index("--") + 1 :]
    ours = {os.getpid(), os.getppid()}
    try:
        with open(ours_file) as f:
            ours |= {int(x) for x in f.read().split()}
    except OSError:
        pass
    before = snapshot()
    busy0, st0 = cpustat()
    t0 = time.monotonic()
    with open(out, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        ours.add(p.pid)
        _pid, status, ru = os.wait4(p.pid, 0)
        rc = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - t0
    busy1, st1 = cpustat()
    after = snapshot()
    ours_ticks = (ru.ru_utime + ru.ru_stime) * TCK  # CMD (wrk), reaped above
    per = {}
    for pid in after:
        d = delta(before, after, pid)
        if pid in ours or after[pid][3]:
            ours_ticks += d
        elif d > 0:
            per[after[pid][0]] = per.get(after[pid][0], 0) + d
    residual = (busy1 - busy0) - ours_ticks
    # The machine-wide residual catches short-lived processes but is noisy at light load (tick
    # sampling): count it only beyond a slack of 15 % of a CPU.
    foreign = max(residual - 0.15 * TCK * elapsed, sum(per.values()), 0) / TCK / elapsed * 100
    st = (st1 - st0) / TCK / elapsed * 100
    top = sorted(per.items(), key=lambda kv: -kv[1])[:4]
    top_s = ",".join(f"{c}:{v / TCK / elapsed * 100:.0f}%" for c, v in top) or "-"
    with open(out, "a") as f:
        f.write(
            f"# bench-cpu: foreign={foreign:.1f} steal={st:.1f} top={top_s}"
            f" residual={residual / TCK / elapsed * 100:.1f} procs={sum(per.values()) / TCK / elapsed * 100:.1f}\n"
        )
    print(f"{foreign:.1f} {st:.1f}")
    sys.exit(rc if rc >= 0 else 128 - rc)


if __name__ == "__main__":
    main()
