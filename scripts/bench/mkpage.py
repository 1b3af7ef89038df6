#!/usr/bin/env python3
"""Write a static HTML maintenance page of exactly SIZE bytes (default 8192).

No template syntax ({{ {% {#) so kinfrad's tera renders it byte for byte, and nginx and
HAProxy serve the very same file.
usage: mkpage.py OUT [SIZE]
"""
import sys

out = sys.argv[1]
size = int(sys.argv[2]) if len(sys.argv) > 2 else 8192

head = (
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>Down for maintenance</title>\n"
    "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;"
    "padding:0 1rem;color:#222}h1{font-size:1.6rem}p{line-height:1.5}</style>\n"
    "</head>\n<body>\n<h1>We&rsquo;ll be back soon</h1>\n"
    "<p>This site is down for scheduled maintenance. Please try again in a few minutes.</p>\n"
)
tail = "</body>\n</html>\n"
filler_line = (
    "<p class=\"pad\">Benchmark padding: this paragraph only brings the page to a fixed size "
    "so every server sends the same number of bytes.</p>\n"
)
body = head
while len(body) + len(filler_line) + len(tail) + len("<!---->\n") <= size:
    body += filler_line
gap = size - len(body) - len(tail) - len("<!---->\n")
body += "<!--" + ("x" * gap) + "-->\n" + tail
data = body.encode("ascii")
assert len(data) == size, (len(data), size)
assert b"{{" not in data and b"{%" not in data and b"{#" not in data
with open(out, "wb") as f:
    f.write(data)
