#!/usr/bin/env python3
"""Run CMD while polling kinfrad's monitoring endpoints, as orchestrators and monitors would.

usage: poll.py PORT RATE SCRAPE_EVERY -- CMD...

While CMD (the wrk measurement) runs, GETs the health API (`/api/health/readiness` and
`/api/health`, alternately) RATE times a second over one keep-alive connection, and `/metrics`
every SCRAPE_EVERY seconds over another, each on a fixed schedule (a late poll is not made up
for). CMD's output goes to stdout; then a line
  # bench-poll: health=<n> health_bad=<n> metrics=<n> metrics_bad=<n> seconds=<s>
(bad: not a 200, or no answer). Exit status: CMD's.
"""
import http.client
import subprocess
import sys
import threading
import time


def poller(port, paths, every, stop, counts, key):
    conn = None
    nxt = time.monotonic()
    i = 0
    while not stop.is_set():
        path = paths[i % len(paths)]
        i += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path, headers={"Accept": "application/json"})
            r = conn.getresponse()
            r.read()
            ok = r.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            if conn is not None:
                conn.close()
            conn = None
        counts[key] += 1
        if not ok:
            counts[key + "_bad"] += 1
        nxt += every
        delay = nxt - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            nxt = time.monotonic()


def main():
    port, rate, scrape = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    cmd = sys.argv[sys.argv.index("--") + 1 :]
    counts = {"health": 0, "health_bad": 0, "metrics": 0, "metrics_bad": 0}
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=poller,
            args=(port, ["/api/health/readiness", "/api/health"], 1 / rate, stop, counts, "health"),
        ),
        threading.Thread(target=poller, args=(port, ["/metrics"], scrape, stop, counts, "metrics")),
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    sys.stdout.flush()
    rc = subprocess.call(cmd)
    stop.set()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    print(
        f"# bench-poll: health={counts['health']} health_bad={counts['health_bad']} "
        f"metrics={counts['metrics']} metrics_bad={counts['metrics_bad']} seconds={secs:.1f}",
        flush=True,
    )
    sys.exit(rc if rc >= 0 else 128 - rc)


if __name__ == "__main__":
    main()
