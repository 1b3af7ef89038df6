#!/usr/bin/env python3
"""Wait until 127.0.0.1:PORT accepts TCP connections.

usage: waitport.py PORT [TIMEOUT_S [PID]]  (gives up early when process PID is gone)
"""
import socket
import sys
import time



def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


port = int(sys.argv[1])
pid = int(sys.argv[3]) if len(sys.argv) > 3 else None
deadline = time.monotonic() + (float(sys.argv[2]) if len(sys.argv) > 2 else 15.0)
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        sys.exit(0)
    except OSError:
        if pid is not None and not alive(pid):
            print(f"waitport: process {pid} is gone", file=sys.stderr)
            sys.exit(1)
        if time.monotonic() > deadline:
            print(f"waitport: 127.0.0.1:{port} not accepting connections", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.05)
