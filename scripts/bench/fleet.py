#!/usr/bin/env python3
"""Fleet propagation: from `kinfractl --fleet maint enter|exit` on one host to the first
answer that shows the change on every host, for fleets of several sizes on one 3-member etcd
cluster on loopback; and etcd's own watch delivery beside it as the floor.

Usage: fleet.py KINFRAD KINFRACTL CHANGES "SIZES" OUT.md

Every host is polled by its own thread over a kept-alive HTTP connection (GET / every 2 ms);
a change counts as arrived on a host at its first answer that shows it (503 with
X-Maintenance-Mode: true after enter; anything else after exit). The change's propagation
time is the slowest host's. Each change is made through a different host in turn.
"""
import base64
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def post(port, path, body, timeout=3):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def b64(s):
    return base64.b64encode(s.encode()).decode()


class Etcd:
    def __init__(self, root):
        self.root = root
        ports = free_ports(6)
        self.client = ports[:3]
        self.peer = ports[3:]
        cluster = ",".join(f"m{i}=http://127.0.0.1:{self.peer[i]}" for i in range(3))
        self.procs = []
        for i in range(3):
            log = open(os.path.join(root, f"etcd{i}.log"), "w")
            self.procs.append(subprocess.Popen([
                "etcd", "--name", f"m{i}", "--data-dir", os.path.join(root, f"etcd{i}"),
                "--listen-client-urls", f"http://127.0.0.1:{self.client[i]}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.client[i]}",
                "--listen-peer-urls", f"http://127.0.0.1:{self.peer[i]}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer[i]}",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"bench-{os.getpid()}",
                "--logger", "zap", "--log-level", "warn",
            ], stdout=log, stderr=log))
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if all(post(p, "/v3/kv/range", {"key": b64("x")})[0] == 200 for p in self.client):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("etcd did not come up; see " + root)

    def endpoints(self):
        return [f"http://127.0.0.1:{p}" for p in self.client]

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def watch_floor(etcd, changes):
    """etcd's own delivery: put on member 0, a watcher on member 2 sees it."""
    key = b64("/bench/floor")
    c = http.client.HTTPConnection("127.0.0.1", etcd.client[2], timeout=10)
    c.request("POST", "/v3/watch", json.dumps({"create_request": {"key": key}}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    seen = []
    ready = threading.Event()
    got = threading.Event()

    def reader():
        dec = json.JSONDecoder()
        buf = ""
        while True:
            try:
                chunk = r.read1(65536)
            except (OSError, http.client.HTTPException):
                return
            if not chunk:
                return
            buf += chunk.decode()
            while True:
                buf = buf.lstrip()
                try:
                    msg, end = dec.raw_decode(buf)
                except ValueError:
                    break
                buf = buf[end:]
                res = msg.get("result", {}) if isinstance(msg, dict) else {}
                if res.get("created"):
                    ready.set()
                if res.get("events"):
                    seen.append(time.perf_counter())
                    got.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    ready.wait(10)
    out = []
    for i in range(changes):
        got.clear()
        t0 = time.perf_counter()
        post(etcd.client[0], "/v3/kv/put", {"key": key, "value": b64(str(i))})
        if got.wait(5):
            out.append((seen[-1] - t0) * 1000)
        time.sleep(0.05)
    c.close()
    return out


class Host:
    def __init__(self, root, i, kinfrad, endpoints):
        self.name = f"host-{i}"
        d = os.path.join(root, self.name)
        os.makedirs(d)
        self.port = free_ports(1)[0]
        self.sock = os.path.join(d, "control.sock")
        cfg = os.path.join(d, "kinfra.toml")
        with open(cfg, "w") as f:
            f.write(f'listen = ["127.0.0.1:{self.port}"]\n')
            f.write(f'control_socket = "{self.sock}"\nstate_dir = "{d}/state"\n')
            f.write("[fleet]\netcd = [" + ", ".join(json.dumps(e) for e in endpoints) + "]\n")
            f.write(f'node = "{self.name}"\nprefix = "/bench"\n')
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")}
        env["RUST_LOG"] = "warn"
        self.log = open(os.path.join(d, "kinfrad.log"), "w")
        self.proc = subprocess.Popen([kinfrad, "--config", cfg], stdout=self.log,
                                     stderr=self.log, env=env)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Poller(threading.Thread):
    """Polls one host; `arm(want_maint)` starts looking for the change, `when` holds the time."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.want = None
        self.when = None
        self.armed = threading.Event()
        self.done = threading.Event()
        self.stop = False

    def arm(self, want_maint):
        self.want = want_maint
        self.when = None
        self.done.clear()
        self.armed.set()

    def run(self):
        conn = None
        while not self.stop:
            if not self.armed.wait(0.5):
                continue
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                maint = r.status == 503 and r.getheader("X-Maintenance-Mode") == "true"
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                conn = None
                time.sleep(0.002)
                continue
            if maint == self.want:
                self.when = time.perf_counter()
                self.armed.clear()
                self.done.set()
            else:
                time.sleep(0.002)


def ctl(kinfractl, host, *args):
    return subprocess.run([kinfractl, "--socket", host.sock, *args],
                          capture_output=True, text=True, timeout=30)


def run_fleet(kinfrad, kinfractl, etcd, root, size, changes):
    hosts = [Host(root, f"{size}-{i}", kinfrad, etcd.endpoints()) for i in range(size)]
    try:
        deadline = time.time() + 60
        for h in hosts:
            while True:
                r = ctl(kinfractl, h, "--json", "status")
                if r.returncode == 0:
                    f = json.loads(r.stdout).get("fleet") or {}
                    if f.get("link", {}).get("connected") and f.get("nodes") == size:
                        break
                if time.time() > deadline:
                    raise SystemExit(f"{h.name} did not join the fleet: {r.stdout} {r.stderr}")
                time.sleep(0.1)
        pollers = [Poller(h.port) for h in hosts]
        for p in pollers:
            p.start()
        spread, each, cmd = [], [], []
        for i in range(changes):
            enter = i % 2 == 0
            for p in pollers:
                p.arm(enter)
            via = hosts[i % size]
            args = (["--fleet", "maint", "enter", "--message", f"bench {i}"] if enter
                    else ["--fleet", "maint", "exit"])
            t0 = time.perf_counter()
            r = ctl(kinfractl, via, *args)
            t1 = time.perf_counter()
            if r.returncode != 0:
                raise SystemExit(f"kinfractl {' '.join(args)}: {r.stdout} {r.stderr}")
            for p in pollers:
                if not p.done.wait(10):
                    raise SystemExit(f"change {i} did not reach a host within 10 s")
            times = [(p.when - t0) * 1000 for p in pollers]
            spread.append(max(times))
            each.extend(times)
            cmd.append((t1 - t0) * 1000)
            time.sleep(0.1)
        for p in pollers:
            p.stop = True
        return spread, each, cmd
    finally:
        for h in hosts:
            h.stop()


def main():
    kinfrad, kinfractl, changes, sizes, out = sys.argv[1:6]
    changes = int(changes)
    sizes = [int(s) for s in sizes.split()]
    root = tempfile.mkdtemp(prefix="kinfra-fleet-bench-")
    etcd = Etcd(root)
    rows = []
    try:
        floor = watch_floor(etcd, changes)
        for size in sizes:
            spread, each, cmd = run_fleet(kinfrad, kinfractl, etcd, root, size, changes)
            rows.append((size, spread, each, cmd))
    finally:
        etcd.stop()
    f50 = statistics.median(floor)
    lines = [
        "# Fleet propagation",
        "",
        f"{changes} changes per fleet (`kinfractl --fleet maint enter` and `exit` in turn, each "
        "through another host), one 3-member etcd on loopback, everything on this machine "
        f"({os.cpu_count()} CPUs). Times in ms from the command's start.",
        "",
        "| fleet | every host p50 | every host p99 | every host max | one host p50 | one host p99 "
        "| command p50 | p50 ÷ etcd watch p50 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, spread, each, cmd in rows:
        lines.append(
            f"| {size} kinfrads | {statistics.median(spread):.1f} | {pct(spread, 99):.1f} | "
            f"{max(spread):.1f} | {statistics.median(each):.1f} | {pct(each, 99):.1f} | "
            f"{statistics.median(cmd):.1f} | {statistics.median(spread) / f50:.1f}× |")
    lines += [
        "",
        f"Peer: etcd's own watch delivery (put on one member, seen by a watcher on another): "
        f"p50 {f50:.2f} ms, p99 {pct(floor, 99):.2f} ms over {len(floor)} puts.",
        "",
        "\"every host\" is the slowest host of each change; \"one host\" counts every host's time "
        "on its own; \"command\" is kinfractl's own time (it answers once its host applied the "
        "change, or after 2 s).",
    ]
    text = "\n".join(lines) + "\n"
    with open(out, "w") as f:
        f.write(text)
    print(text)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
