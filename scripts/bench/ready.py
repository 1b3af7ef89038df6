#!/usr/bin/env python3
"""How fast kinfrad is ready: fork+exec to READY=1, and to its first HTTP answer, as systemd
starts it (sockets passed with LISTEN_FDS/LISTEN_FDNAMES, NOTIFY_SOCKET, STATE_DIRECTORY); nginx
beside it as the peer (fork+exec to its first HTTP answer, with the config nginx needs).

usage: ready.py KINFRAD CONFIG NGINX RUNS OUT.md

Each start is fresh (new sockets, new state directory); the servers are pinned to CPU 0 by the
caller. Prints a Markdown table (median, p90, max in ms) and writes it to OUT.md.
"""
import http.client
import os
import socket
import statistics
import sys
import tempfile
import time


def first_answer(port, path, deadline):
    """Seconds (monotonic) at which GET path first got any HTTP answer."""
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            c.getresponse().read()
            c.close()
            return time.monotonic()
        except (OSError, http.client.HTTPException):
            time.sleep(0.0005)
    raise RuntimeError(f"no answer on port {port}")


def start_kinfrad(kinfrad, config, tmp):
    http_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    http_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    http_sock.bind(("127.0.0.1", 0))
    http_sock.listen(128)
    port = http_sock.getsockname()[1]
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctl.bind(os.path.join(tmp, "control.sock"))
    ctl.listen(16)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = os.path.join(tmp, "notify.sock")
    notify.bind(notify_path)
    state = os.path.join(tmp, "state")
    os.mkdir(state, 0o700)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "NOTIFY_SOCKET": notify_path,
        "STATE_DIRECTORY": state,
        "LISTEN_FDS": "2",
        "LISTEN_FDNAMES": "http:control",
    }
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            log = os.open(os.path.join(tmp, "kinfrad.log"), os.O_WRONLY | os.O_CREAT, 0o600)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.dup2(http_sock.fileno(), 3)
            os.dup2(ctl.fileno(), 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)
            env["LISTEN_PID"] = str(os.getpid())
            os.execve(kinfrad, [kinfrad, "--config", config], env)
        finally:
            os._exit(127)
    notify.settimeout(10)
    ready = None
    while ready is None:
        msg = notify.recv(4096).decode(errors="replace")
        if "READY=1" in msg.split("\n"):
            ready = time.monotonic()
    answer = first_answer(port, "/health", t0 + 10)
    for s in (http_sock, ctl, notify):
        s.close()
    return pid, (ready - t0) * 1e3, (answer - t0) * 1e3


def start_nginx(nginx, tmp):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(
            f"daemon off; master_process off; worker_processes 1; pid {tmp}/nginx.pid;\n"
            f"error_log {tmp}/error.log; events {{ worker_connections 64; }}\n"
            f"http {{ access_log off; client_body_temp_path {tmp}; proxy_temp_path {tmp};\n"
            f"  fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};\n"
            f"  server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }} }}\n"
        )
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(nginx, [nginx, "-p", tmp, "-c", conf])
        finally:
            os._exit(127)
    answer = first_answer(port, "/", t0 + 10)
    return pid, (answer - t0) * 1e3


def stop(pid):
    os.kill(pid, 15)
    os.waitpid(pid, 0)


def row(name, xs):
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
    return f"| {name} | {statistics.median(xs):.1f} | {p90:.1f} | {max(xs):.1f} |"


def main():
    kinfrad, config, nginx, runs, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    ready, kin_answer, ngx_answer = [], [], []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            pid, r, a = start_kinfrad(kinfrad, config, tmp)
            stop(pid)
            ready.append(r)
            kin_answer.append(a)
        with tempfile.TemporaryDirectory() as tmp:
            os.chmod(tmp, 0o755)
            pid, a = start_nginx(nginx, tmp)
            stop(pid)
            ngx_answer.append(a)
    ratio = [k / n for k, n in zip(kin_answer, ngx_answer)]
    lines = [
        f"## Start-up: {runs} fresh starts each (ms from fork+exec)",
        "",
        "| what | median | p90 | max |",
        "|---|---:|---:|---:|",
        row("kinfrad: READY=1 (packaged config, sockets passed as systemd does)", ready),
        row("kinfrad: first HTTP answer (GET /health)", kin_answer),
        row("nginx: first HTTP answer (peer)", ngx_answer),
        "",
        f"kinfrad ÷ nginx, first answer, per start: median {statistics.median(ratio):.2f} "
        f"(min {min(ratio):.2f}, max {max(ratio):.2f}).",
        "",
    ]
    text = "\n".join(lines)
    with open(out, "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
