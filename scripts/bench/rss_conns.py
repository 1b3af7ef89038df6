#!/usr/bin/env python3
"""RSS per idle keep-alive connection.

Opens N keep-alive connections to 127.0.0.1:PORT, completes one request on each (so a proxy
holds its client and upstream state), lets them idle, and reports
(sum of VmRSS of PIDS after - before) / N, as one JSON object on stdout.

usage: rss_conns.py --port P --pids PID[,PID...] [--n 2000] [--settle 2] [--upstream-port B]
"""
import argparse
import asyncio
import json
import sys
import time


def vmrss_kb(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
    return total


def established_to(port):
    """Established TCP connections whose remote port is PORT (a proxy's upstream conns)."""
    if not port:
        return None
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    rem, st = parts[2], parts[3]
                    if st == "01" and int(rem.rsplit(":", 1)[1], 16) == port:
                        n += 1
        except FileNotFoundError:
            pass
    return n


async def one_request(port, req):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(req)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return reader, writer, status


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pids", required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--upstream-port", type=int, default=0)
    ap.add_argument("--accept", default="text/html")
    a = ap.parse_args()
    pids = [int(p) for p in a.pids.split(",") if p]
    req = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\nAccept: {a.accept}\r\n"
        "User-Agent: kinfra-bench-rss\r\n\r\n"
    ).encode()

    # Warm up: a few requests on short-lived connections, then measure the baseline.
    for _ in range(3):
        r, w, _ = await one_request(a.port, req)
        w.close()
    await asyncio.sleep(a.settle)
    before = vmrss_kb(pids)
    up_before = established_to(a.upstream_port)

    conns = []
    statuses = {}
    t0 = time.monotonic()
    for start in range(0, a.n, a.batch):
        batch = await asyncio.gather(
            *(one_request(a.port, req) for _ in range(min(a.batch, a.n - start)))
        )
        for r, w, st in batch:
            conns.append((r, w))
            statuses[st] = statuses.get(st, 0) + 1
    open_secs = time.monotonic() - t0
    await asyncio.sleep(a.settle)
    after = vmrss_kb(pids)
    up_after = established_to(a.upstream_port)
    await asyncio.sleep(0.05)
    still_open = sum(1 for r, _ in conns if not r.at_eof())

    for _, w in conns:
        w.close()
    await asyncio.sleep(0.2)
    print(
        json.dumps(
            {
                "n": a.n,
                "statuses": {str(k): v for k, v in statuses.items()},
                "still_open": still_open,
                "rss_before_kb": before,
                "rss_after_kb": after,
                "bytes_per_conn": (after - before) * 1024 / a.n,
                "upstream_before": up_before,
                "upstream_after": up_after,
                "open_secs": round(open_secs, 3),
            }
        )
    )


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # noqa: BLE001 - report any failure as JSON for the report
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        sys.exit(1)
