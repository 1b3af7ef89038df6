#!/usr/bin/env bash
# Start-up benchmark: how soon kinfrad says READY=1 and answers its first request after
# fork+exec, started as systemd starts it (the HTTP and control sockets passed with LISTEN_FDS
# and LISTEN_FDNAMES, NOTIFY_SOCKET, STATE_DIRECTORY) with the packaged configuration
# (packaging/kinfra.toml), with nginx's time to its first answer beside it as the peer. A
# figure, not a test: the target (READY=1 within 50 ms) is checked by reading the table.
#
# Usage: scripts/bench-ready.sh      (20 starts of each; a few seconds)
# Environment: READY_RUNS (20), BENCH_SERVER_CPU (0), BENCH_NO_BUILD=1 or KINFRAD=path (no build)
# Output: Markdown on stdout and in target/bench/ready.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUNS=${READY_RUNS:-20}
SCPU=${BENCH_SERVER_CPU:-0}
if [ -z "${KINFRAD:-}" ]; then
    [ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release --locked -p kinfra >&2
    KINFRAD=$ROOT/target/release/kinfrad
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
fi
mkdir -p target/bench
taskset -c "$SCPU" python3 scripts/bench/ready.py "$KINFRAD" "$ROOT/packaging/kinfra.toml" "$NGINX" "$RUNS" target/bench/ready.md
