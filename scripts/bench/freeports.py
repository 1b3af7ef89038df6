#!/usr/bin/env python3
"""Print COUNT distinct free TCP ports on 127.0.0.1, one per line (all held open while
choosing, so they are distinct; the kernel hands out ports not in use)."""
import socket
import sys

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
socks = []
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
for s in socks:
    s.close()
