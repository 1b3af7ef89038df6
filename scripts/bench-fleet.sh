#!/usr/bin/env bash
# Fleet propagation benchmark: how long a `kinfractl --fleet maint enter` (and `exit`) takes
# to reach every kinfrad of a fleet, measured from the moment the command starts to the first
# 503 maintenance answer (or the first normal answer again) on each host, for 3 and 10
# kinfrads on one 3-member etcd cluster on loopback. Beside it, the peer: etcd's own watch
# delivery (a put through the gateway to a watcher on another member), the floor of anything
# built on etcd. A figure, not a test: the target (every host within 1 s at p99) is read off
# the table.
#
# Usage: scripts/bench-fleet.sh          (40 changes per fleet size; about a minute)
# Environment: FLEET_CHANGES (40), FLEET_SIZES ("3 10"), BENCH_NO_BUILD=1 or KINFRAD=path and
# KINFRACTL=path (no build)
# Output: Markdown on stdout and in target/bench/fleet.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [ -z "${KINFRAD:-}" ] || [ -z "${KINFRACTL:-}" ]; then
    [ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release --locked -p kinfra -p kinfractl >&2
    KINFRAD=${KINFRAD:-$ROOT/target/release/kinfrad}
    KINFRACTL=${KINFRACTL:-$ROOT/target/release/kinfractl}
fi
if ! command -v etcd >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
fi
mkdir -p target/bench
python3 scripts/bench/fleet.py "$KINFRAD" "$KINFRACTL" "${FLEET_CHANGES:-40}" "${FLEET_SIZES:-3 10}" target/bench/fleet.md
