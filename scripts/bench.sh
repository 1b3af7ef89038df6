#!/usr/bin/env bash
# Benchmark kinfrad against nginx and HAProxy on loopback, side by side, in one run.
#
# Rows (each measured with wrk at 1 and 64 connections, repetitions interleaved):
#   1. the backend directly (nginx `return 200 "hello world\n"`: the limit)
#   2. nginx   as a reverse proxy to it
#   3. HAProxy as a reverse proxy to it
#   4. kinfrad as a reverse proxy to it ([[service]]; its HTTP/1.1 fast path, the default)
#   4b. the same with KINFRA_FAST_PATH=0 (every request through hyper + hyper-util's client)
#   4c. the same as 4 while the health API is polled BENCH_POLL_RATE (100) times a second and
#       /metrics scraped every second (scripts/bench/poll.py): monitoring must not cost visitors
#   5. kinfrad's maintenance page (503, a static 8192-byte maintenance.html)
#   6. nginx   answering 503 with the same 8192-byte file
#   7. HAProxy answering 503 with the same 8192-byte file
# plus RSS per idle keep-alive connection (scripts/bench/rss_conns.py).
#
# Method: every server (backend included) is pinned to CPU 0 with one worker (nginx
# worker_processes 1, haproxy nbthread 1, kinfrad TOKIO_WORKER_THREADS=1); wrk runs one thread
# pinned to CPU 1. Raw req/s swing a lot between runs on shared machines; the ratio of each row
# to the direct row of the same repetition is what is repeatable.
#
# Usage: scripts/bench.sh          (full: 3 reps x 10 s; a few minutes)
#        BENCH_SECS=2 BENCH_REPS=1 BENCH_RSS_CONNS=500 scripts/bench.sh   (smoke run, ~1.5 min)
# Environment:
#   BENCH_SECS (10)  BENCH_REPS (3)  BENCH_CONNS ("1 64")  BENCH_WARMUP (2 s per row, 0: none)
#   BENCH_POLL_RATE (100): health API polls a second during row 4c
#   BENCH_RSS_CONNS (2000; 0 skips the RSS measurement)
#   BENCH_SERVER_CPU (0)  BENCH_CLIENT_CPU (1)
#   BENCH_MAX_FOREIGN (5), BENCH_MAX_STEAL (30): a run during which processes outside the
#     benchmark (another build or test run) used more than BENCH_MAX_FOREIGN % of a CPU, or the
#     hypervisor stole more than BENCH_MAX_STEAL % (some steal is normal here at full load), is
#     retried up to BENCH_RETRIES (2) times, keeping the cleanest; the report lists runs that
#     stayed above. BENCH_WAIT_QUIET (30): seconds to wait for the machine to go quiet first.
#   BENCH_SPIN: which connection levels run with a SCHED_IDLE busy loop on both CPUs, so an idle
#     vCPU never halts and request latency is not dominated by the hypervisor's wake-up time
#     (hundreds of µs on this VM, varying run to run). Default "1" (the 1-connection runs);
#     "" or "none" for none; e.g. "1 64" for all.
#   BENCH_SESSIONS (same): "same" starts every server in this script's session, so the kernel's
#     autogroup scheduling treats them as one group; "own" starts each with setsid in a session
#     of its own, as systemd starts services. Which one changes how often the backend preempts
#     the proxy on the shared CPU, and so the proxy ratios (see README, Performance).
#   BENCH_NO_BUILD=1: use the existing target/release binaries instead of `cargo build`
#   KINFRAD / KINFRACTL: explicit binaries (implies no build)
# Output: Markdown table on stdout and in target/bench/results.md; raw wrk outputs, response
# headers and server logs in target/bench/raw/. Progress goes to stderr.
# Exit status: 0 ok, 1 setup failure, 3 some wrk run looked wrong (see the warning in the table).
#
# Runs only on 127.0.0.1 with free ports, its own config files and pid files in a temp dir; never
# touches the system nginx/haproxy services; stops everything it started on exit.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$ROOT/scripts/bench
# shellcheck source=scripts/bench/lib.sh
. "$HERE/lib.sh"
SECS=${BENCH_SECS:-10}
REPS=${BENCH_REPS:-3}
CONNS=${BENCH_CONNS:-"1 64"}
WARMUP=${BENCH_WARMUP:-2}
RSS_N=${BENCH_RSS_CONNS:-2000}
SPIN=${BENCH_SPIN-1}
SESSIONS=${BENCH_SESSIONS:-same}
case $SESSIONS in same | own) ;; *) echo "BENCH_SESSIONS must be same or own" >&2; exit 1 ;; esac
OUT=$ROOT/target/bench
RAW=$OUT/raw
BODY_SIZE=8192
START_TIME=$(date +%s)

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------- cleanup (set up first)
PIDS=()
SPIN_PIDS=()
TMP=""
POLICY_CREATED=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    spin_stop
    local all=() pid
    for pid in "${PIDS[@]}"; do
        # nginx masters: remember their workers too, in case the master has to be killed.
        all+=("$pid")
        while read -r c; do [ -n "$c" ] && all+=("$c"); done < <(pgrep -P "$pid" 2>/dev/null || true)
    done
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    local i
    for i in $(seq 1 50); do
        local alive=0
        for pid in "${all[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${all[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$POLICY_CREATED" ]; then rm -f /usr/sbin/policy-rc.d; fi
    if [ -n "$TMP" ]; then rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools
need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have nginx || need+=(nginx)
have haproxy || need+=(haproxy)
have wrk || need+=(wrk)
have taskset || need+=(util-linux)
have pgrep || need+=(procps)
have python3 || need+=(python3)
have curl || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${need[*]}; run as root (or install them) so they can be installed"
    log "installing: ${need[*]}"
    # Keep the packages' own services from starting: this benchmark runs its own instances.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        POLICY_CREATED=1
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
    if [ -n "$POLICY_CREATED" ]; then
        rm -f /usr/sbin/policy-rc.d
        POLICY_CREATED=""
    fi
fi
export PATH=$PATH:/usr/sbin:/sbin
NGINX=$(command -v nginx)
HAPROXY=$(command -v haproxy)

check_cpus

# Room for the RSS test's connections (servers inherit this limit).
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then hard=65536; fi
ulimit -n "$hard" || true
NOFILE=$(ulimit -n)
if [ "$RSS_N" -gt 0 ] && [ "$NOFILE" -lt $((RSS_N * 3 + 200)) ]; then
    log "warning: open-file limit $NOFILE is low for BENCH_RSS_CONNS=$RSS_N"
fi
WCONN=$((NOFILE / 2))
HMAXCONN=$((NOFILE / 2 - 100)) # haproxy wants 2 fds per connection plus some

# ---------------------------------------------------------------- kinfrad binaries
if [ -n "${KINFRAD:-}" ] || [ -n "${BENCH_NO_BUILD:-}" ]; then
    KINFRAD=${KINFRAD:-$ROOT/target/release/kinfrad}
    KINFRACTL=${KINFRACTL:-$(dirname "$KINFRAD")/kinfractl}
else
    log "cargo build --release --bins"
    (cd "$ROOT" && cargo build --release --bins >&2) || die "cargo build failed"
    KINFRAD=$ROOT/target/release/kinfrad
    KINFRACTL=$ROOT/target/release/kinfractl
fi
[ -x "$KINFRAD" ] || die "no kinfrad binary at $KINFRAD"
[ -x "$KINFRACTL" ] || die "no kinfractl binary at $KINFRACTL"

# ---------------------------------------------------------------- layout
rm -rf "$RAW"
mkdir -p "$RAW/logs" "$RAW/retries" "$OUT"
TMP=$(mktemp -d /tmp/kinfra-bench.XXXXXX)
chmod 755 "$TMP" # nginx workers run unprivileged and read the page from here
mkdir -p "$TMP/templates" "$TMP/www"
python3 "$HERE/mkpage.py" "$TMP/templates/maintenance.html" "$BODY_SIZE"
cp "$TMP/templates/maintenance.html" "$TMP/www/maintenance.html"
PAGE=$TMP/www/maintenance.html
chmod -R a+rX "$TMP"
printf 'hello world\n' >"$TMP/hello.txt"

read -r P_BACKEND P_NGINX P_NGINX503 P_HAPROXY P_HAPROXY503 P_KINFRAD P_KINMAINT P_KINHYPER P_KINPOLL < <(python3 "$HERE/freeports.py" 9 | paste -sd' ')
declare -A PORT=(
    [direct]=$P_BACKEND [nginx]=$P_NGINX [haproxy]=$P_HAPROXY [kinfrad]=$P_KINFRAD [kinfrad-hyper]=$P_KINHYPER
    [kinfrad-polled]=$P_KINPOLL [kinfrad-maint]=$P_KINMAINT [nginx-503]=$P_NGINX503 [haproxy-503]=$P_HAPROXY503
)
ROWS=(direct nginx haproxy kinfrad kinfrad-hyper kinfrad-polled kinfrad-maint nginx-503 haproxy-503)
POLL_RATE=${BENCH_POLL_RATE:-100}
declare -A NA=()
: >"$RAW/manifest.tsv"
: >"$RAW/na.tsv"
: >"$RAW/rss.tsv"

start_bg() { # NAME CMD...: start a server in the background, pinned by the caller's CMD
    local name=$1
    shift
    # setsid execs the server itself here (a background job leads no process group).
    if [ "$SESSIONS" = own ]; then set -- setsid "$@"; fi
    "$@" >"$RAW/logs/$name.log" 2>&1 &
    PIDS+=($!)
    eval "PID_${name//-/_}=$!"
}

wait_port() { # NAME PORT
    local pidvar="PID_${1//-/_}"
    if ! python3 "$HERE/waitport.py" "$2" 15 "${!pidvar}"; then
        cat "$RAW/logs/$1.log" >&2 || true
        die "$1 did not start listening on 127.0.0.1:$2"
    fi
    kill -0 "${!pidvar}" 2>/dev/null || die "$1 exited; see $RAW/logs/$1.log"
}

# ---------------------------------------------------------------- nginx
nginx_common() { # DIR
    cat <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections $WCONN; }
http {
    access_log off;
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    types { text/html html; }
    default_type text/plain;
    keepalive_timeout 300s;
    keepalive_requests 1000000000;
EOF
}

mkdir -p "$TMP/ngx-backend" "$TMP/ngx-proxy"
{
    nginx_common "$TMP/ngx-backend"
    cat <<EOF
    server {
        listen 127.0.0.1:$P_BACKEND backlog=4096;
        location / { return 200 "hello world\n"; }
    }
}
EOF
} >"$TMP/ngx-backend/nginx.conf"

{
    nginx_common "$TMP/ngx-proxy"
    cat <<EOF
    upstream backend {
        server 127.0.0.1:$P_BACKEND;
        keepalive 64;
        keepalive_requests 1000000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$P_NGINX backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen 127.0.0.1:$P_NGINX503 backlog=4096;
        root $TMP/www;
        charset utf-8;
        open_file_cache max=16 inactive=600s;
        open_file_cache_valid 600s;
        add_header Retry-After 300 always;
        add_header X-Maintenance-Mode true always;
        add_header Cache-Control no-store always;
        add_header Vary Accept always;
        error_page 503 /maintenance.html;
        location / { return 503; }
        location = /maintenance.html { internal; }
    }
}
EOF
} >"$TMP/ngx-proxy/nginx.conf"

for n in ngx-backend ngx-proxy; do
    "$NGINX" -t -q -p "$TMP/$n/" -e "$TMP/$n/error.log" -c "$TMP/$n/nginx.conf" >&2 ||
        die "nginx config $n invalid"
done
start_bg ngx-backend taskset -c "$SCPU" "$NGINX" -p "$TMP/ngx-backend/" -e "$TMP/ngx-backend/error.log" \
    -c "$TMP/ngx-backend/nginx.conf" -g 'daemon off;'
start_bg ngx-proxy taskset -c "$SCPU" "$NGINX" -p "$TMP/ngx-proxy/" -e "$TMP/ngx-proxy/error.log" \
    -c "$TMP/ngx-proxy/nginx.conf" -g 'daemon off;'

# ---------------------------------------------------------------- haproxy
mkdir -p "$TMP/haproxy"
cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $HMAXCONN
    pidfile $TMP/haproxy/haproxy.pid

defaults
    mode http
    maxconn $HMAXCONN
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-request 300s
    timeout http-keep-alive 300s

frontend proxy
    bind 127.0.0.1:$P_HAPROXY
    default_backend backend

frontend maint
    bind 127.0.0.1:$P_HAPROXY503
    http-request return status 503 content-type "text/html; charset=utf-8" file $PAGE hdr Retry-After 300 hdr X-Maintenance-Mode true hdr Cache-Control no-store hdr Vary Accept

backend backend
    server s1 127.0.0.1:$P_BACKEND
EOF
"$HAPROXY" -c -q -f "$TMP/haproxy/haproxy.cfg" >&2 || die "haproxy config invalid"
start_bg haproxy taskset -c "$SCPU" "$HAPROXY" -db -f "$TMP/haproxy/haproxy.cfg"

# ---------------------------------------------------------------- kinfrad
kin_conf() { # DIR PORT WITH_SERVICE
    mkdir -p "$1/state"
    cat <<EOF
listen = ["127.0.0.1:$2"]
control_socket = "$1/c.sock"
state_dir = "$1/state"
templates_dir = "$TMP/templates"
shutdown_grace = "1s"
EOF
    if [ "$3" = 1 ]; then
        cat <<EOF

[[service]]
name = "backend"
url = "http://127.0.0.1:$P_BACKEND"
routes = ["/"]
health_check = { path = "/", interval = "5s", timeout = "1s" }
EOF
    fi
}
mkdir -p "$TMP/kin-proxy" "$TMP/kin-hyper" "$TMP/kin-poll" "$TMP/kin-maint" "$TMP/kin-check"
kin_conf "$TMP/kin-check" "$P_KINFRAD" 0 >"$TMP/kin-check/base.toml"
kin_conf "$TMP/kin-check" "$P_KINFRAD" 1 >"$TMP/kin-check/service.toml"
"$KINFRAD" --check-config --config "$TMP/kin-check/base.toml" >"$RAW/logs/kinfrad-check-base.log" 2>&1 ||
    { cat "$RAW/logs/kinfrad-check-base.log" >&2; die "kinfrad rejects even the base config"; }
if "$KINFRAD" --check-config --config "$TMP/kin-check/service.toml" >"$RAW/logs/kinfrad-check-service.log" 2>&1; then
    KIN_PROXY=1
else
    KIN_PROXY=0
    NA[kinfrad]="kinfrad has no proxy yet"
    NA[kinfrad-hyper]="kinfrad has no proxy yet"
    NA[kinfrad-polled]="kinfrad has no proxy yet"
    log "kinfrad --check-config rejects [[service]]: $(head -c 300 "$RAW/logs/kinfrad-check-service.log")"
fi
kin_conf "$TMP/kin-proxy" "$P_KINFRAD" "$KIN_PROXY" >"$TMP/kin-proxy/kinfra.toml"
kin_conf "$TMP/kin-hyper" "$P_KINHYPER" "$KIN_PROXY" >"$TMP/kin-hyper/kinfra.toml"
kin_conf "$TMP/kin-poll" "$P_KINPOLL" "$KIN_PROXY" >"$TMP/kin-poll/kinfra.toml"
kin_conf "$TMP/kin-maint" "$P_KINMAINT" "$KIN_PROXY" >"$TMP/kin-maint/kinfra.toml"
for k in kin-proxy kin-hyper kin-poll kin-maint; do
    [ "$k" != kin-maint ] && [ "$KIN_PROXY" = 0 ] && continue
    fast=1
    [ "$k" = kin-hyper ] && fast=0
    start_bg "$k" env -u JOURNAL_STREAM -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES -u NOTIFY_SOCKET \
        KINFRA_FAST_PATH=$fast TOKIO_WORKER_THREADS=1 taskset -c "$SCPU" "$KINFRAD" --config "$TMP/$k/kinfra.toml"
done

# ---------------------------------------------------------------- wait for everyone
wait_port ngx-backend "$P_BACKEND"
wait_port ngx-proxy "$P_NGINX"
wait_port ngx-proxy "$P_NGINX503"
wait_port haproxy "$P_HAPROXY"
wait_port haproxy "$P_HAPROXY503"
wait_port kin-maint "$P_KINMAINT"
[ "$KIN_PROXY" = 1 ] && wait_port kin-proxy "$P_KINFRAD"
[ "$KIN_PROXY" = 1 ] && wait_port kin-hyper "$P_KINHYPER"
[ "$KIN_PROXY" = 1 ] && wait_port kin-poll "$P_KINPOLL"

"$KINFRACTL" --socket "$TMP/kin-maint/c.sock" maint enter >"$RAW/logs/kinfractl-maint-enter.log" 2>&1 ||
    { cat "$RAW/logs/kinfractl-maint-enter.log" >&2; NA[kinfrad-maint]="kinfractl maint enter failed"; }

# ---------------------------------------------------------------- verify every row
# Same request as wrk sends (Accept: text/html, so kinfrad serves HTML rather than JSON).
check_row() { # ROW KIND(200|503) -> 0 ok; prints the reason otherwise
    local row=$1 kind=$2 code
    code=$(curl -sS --max-time 5 -o "$TMP/body-$row" -D "$RAW/headers-$row.txt" -w '%{http_code}' \
        -H 'Accept: text/html' "http://127.0.0.1:${PORT[$row]}/" 2>&1) || { echo "curl failed: $code"; return 1; }
    if [ "$kind" = 200 ]; then
        [ "$code" = 200 ] || { echo "status $code, expected 200"; return 1; }
        cmp -s "$TMP/body-$row" "$TMP/hello.txt" || { echo "body is not 'hello world'"; return 1; }
    else
        [ "$code" = 503 ] || { echo "status $code, expected 503"; return 1; }
        cmp -s "$TMP/body-$row" "$PAGE" ||
            { echo "body ($(wc -c <"$TMP/body-$row") bytes) differs from the $BODY_SIZE-byte page"; return 1; }
        local h
        for h in Retry-After X-Maintenance-Mode Cache-Control; do
            grep -qi "^$h:" "$RAW/headers-$row.txt" || { echo "no $h header"; return 1; }
        done
    fi
}
kind_of() { case $1 in *503 | kinfrad-maint) echo 503 ;; *) echo 200 ;; esac; }
for row in "${ROWS[@]}"; do
    [ -n "${NA[$row]:-}" ] && continue
    kind=$(kind_of "$row")
    why=""
    ok=0
    # kinfrad may wait for its first health check before routing: retry a few seconds.
    for attempt in $(seq 1 30); do
        if why=$(check_row "$row" "$kind"); then
            ok=1
            break
        fi
        case $row in kinfrad*) sleep 0.3 ;; *) break ;; esac
    done
    if [ "$ok" = 1 ]; then
        log "verified $row: $kind, $(wc -c <"$TMP/body-$row") bytes"
    else
        case $row in
        kinfrad*)
            log "kinfrad row $row fails verification: $why"
            NA[$row]="kinfrad check failed: $why"
            ;;
        *) die "row $row fails verification: $why (headers in $RAW/headers-$row.txt)" ;;
        esac
    fi
done
for row in "${ROWS[@]}"; do
    if [ -n "${NA[$row]:-}" ]; then printf '%s\t%s\n' "$row" "${NA[$row]}" >>"$RAW/na.tsv"; fi
done
ACTIVE=()
for row in "${ROWS[@]}"; do [ -z "${NA[$row]:-}" ] && ACTIVE+=("$row"); done

# ---------------------------------------------------------------- throughput
run_wrk() { # OUTFILE CONNS SECS ROW; prints "FOREIGN STEAL" CPU % seen during the run
    local poll=()
    # Row 4c: the pollers run on the client CPU, as children of the measured command (so their
    # CPU counts as ours, not foreign), only while wrk runs.
    [ "$4" = kinfrad-polled ] && poll=(python3 "$HERE/poll.py" "${PORT[$4]}" "$POLL_RATE" 1 --)
    python3 "$HERE/runwrk.py" "$1" "$RAW/ours.pids" -- taskset -c "$CCPU" "${poll[@]}" wrk -t1 -c"$2" -d"$3"s \
        --latency -H 'Accept: text/html' "http://127.0.0.1:${PORT[$4]}/" || echo "wrk exited with $?" >>"$1"
}
measure() { # REP CONNS ROW: run, retrying while other processes load the machine
    local final=$RAW/rep$1-c$2-$3.txt try f foreign steal score best="" bests=""
    for try in $(seq 1 $((RETRIES + 1))); do
        f=$RAW/retries/rep$1-c$2-$3.try$try.txt
        read -r foreign steal < <(run_wrk "$f" "$2" "$SECS" "$3" | tail -1) || true
        foreign=${foreign:-0}
        steal=${steal:-0}
        score=$(awk -v a="$foreign" -v b="$steal" 'BEGIN { print a + b }')
        if [ -z "$best" ] || gt "$bests" "$score"; then
            best=$f
            bests=$score
        fi
        if ! gt "$foreign" "$MAX_FOREIGN" && ! gt "$steal" "$MAX_STEAL"; then break; fi
        if [ "$try" -le "$RETRIES" ]; then
            log "  $3: other processes used ${foreign}% of a CPU ($(sed -n 's/.*top=\([^ ]*\).*/\1/p' "$f")), steal ${steal}%; retrying in 5 s"
            sleep 5
        fi
    done
    cp "$best" "$final"
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$final" >>"$RAW/manifest.tsv"
}
if [ "$WARMUP" != 0 ]; then
    log "warm-up: ${WARMUP}s per row"
    for row in "${ACTIVE[@]}"; do run_wrk "$RAW/warmup-$row.txt" 64 "$WARMUP" "$row" >/dev/null; done
fi
# Our processes (servers and nginx workers): CPU used by anything else is "foreign" (runwrk.py).
for pid in "${PIDS[@]}"; do
    echo "$pid"
    pgrep -P "$pid" || true
done >"$RAW/ours.pids"
wait_quiet "$RAW/ours.pids"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
spin_start() { # the spin loops count as ours, not as foreign CPU
    spin_on
    cat "$RAW/ours-servers.pids" "$RAW/spin.pids" >"$RAW/ours.pids"
}
spins() { [ "$SPIN" != none ] && [[ " $SPIN " == *" $1 "* ]]; }
cp "$RAW/ours.pids" "$RAW/ours-servers.pids"
nconns=$(wc -w <<<"$CONNS")
log "measuring: ${#ACTIVE[@]} rows x $nconns conn levels x $REPS reps x ${SECS}s (~$((${#ACTIVE[@]} * nconns * REPS * SECS / 60 + 1)) min)"
for rep in $(seq 1 "$REPS"); do
    for c in $CONNS; do
        if spins "$c"; then spin_start; fi
        for row in "${ACTIVE[@]}"; do
            measure "$rep" "$c" "$row"
            f=$RAW/rep$rep-c$c-$row.txt
            log "rep $rep/$REPS, $c conn, $row: $(grep -o 'Requests/sec:.*' "$f" || echo 'no result')" \
                "(foreign CPU $(sed -n 's/.*foreign=\([^ ]*\).*/\1/p' "$f")%, steal $(sed -n 's/.*steal=\([^ ]*\).*/\1/p' "$f")%)"
        done
        spin_stop
        cp "$RAW/ours-servers.pids" "$RAW/ours.pids"
    done
done

# ---------------------------------------------------------------- RSS per idle connection
if [ "$RSS_N" -gt 0 ]; then
    ngx_workers() { pgrep -P "$1" | paste -sd,; }
    for row in "${ROWS[@]}"; do
        if [ -n "${NA[$row]:-}" ]; then
            printf '%s\tn/a (%s)\n' "$row" "${NA[$row]}" >>"$RAW/rss.tsv"
            continue
        fi
        up=0
        case $row in
        direct) pids=$(ngx_workers "$PID_ngx_backend") ;;
        nginx) pids=$(ngx_workers "$PID_ngx_proxy") up=$P_BACKEND ;;
        nginx-503) pids=$(ngx_workers "$PID_ngx_proxy") ;;
        haproxy) pids=$PID_haproxy up=$P_BACKEND ;;
        haproxy-503) pids=$PID_haproxy ;;
        kinfrad) pids=$PID_kin_proxy up=$P_BACKEND ;;
        kinfrad-hyper) pids=$PID_kin_hyper up=$P_BACKEND ;;
        kinfrad-polled)
            printf '%s\tn/a (same process kind as row 4)\n' "$row" >>"$RAW/rss.tsv"
            continue
            ;;
        kinfrad-maint) pids=$PID_kin_maint ;;
        esac
        log "RSS: $RSS_N idle keep-alive connections to $row (pids $pids)"
        res=$(taskset -c "$CCPU" python3 "$HERE/rss_conns.py" --port "${PORT[$row]}" --pids "$pids" \
            --n "$RSS_N" --upstream-port "$up") || true
        [ -n "$res" ] || res='{"error": "rss_conns.py printed nothing"}'
        printf '%s\t%s\n' "$row" "$res" >>"$RAW/rss.tsv"
        sleep 1
    done
fi

# ---------------------------------------------------------------- report
{
    echo "Setup: servers pinned to CPU $SCPU with one worker each (nginx worker_processes 1, haproxy nbthread 1,"
    echo "kinfrad TOKIO_WORKER_THREADS=1), backend = its own nginx on the same CPU; wrk -t1 pinned to CPU $CCPU;"
    echo "$REPS reps x ${SECS}s per row and connection level, rows interleaved; every request sends"
    echo "\`Accept: text/html\` (kinfrad answers JSON to non-browsers). nginx proxies with upstream keepalive 64;"
    echo "HAProxy with default connection reuse. Maintenance rows serve the same $BODY_SIZE-byte file."
    if [ "$SESSIONS" = own ]; then
        echo "Every server ran in a session of its own (BENCH_SESSIONS=own: setsid, as systemd starts services)."
    else
        echo "Every server ran in the script's session (BENCH_SESSIONS=same: one scheduler autogroup)."
    fi
    if [ "$SPIN" != none ] && [ -n "$SPIN" ]; then
        echo "Runs at $SPIN connection level(s) had a SCHED_IDLE busy loop on each CPU (BENCH_SPIN) so vCPUs never halt:"
        echo "without it, 1-connection latency is mostly the VM's wake-up time, not the server's work."
    fi
    echo
    echo "- host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $ncpu CPUs, kernel $(uname -r)"
    echo "- nginx: $("$NGINX" -v 2>&1 | sed 's/.*version: //'); haproxy: $("$HAPROXY" -v 2>&1 | head -1 | awk '{print $3}');" \
        "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}'); kinfrad: $("$KINFRAD" --version 2>&1 | awk '{print $2}')" \
        "(binary built $(date -r "$KINFRAD" '+%F %T'); git HEAD now $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ', work tree dirty'))"
    for row in kinfrad-maint nginx-503 haproxy-503; do
        [ -f "$RAW/headers-$row.txt" ] || continue
        echo "- $row response headers: $(tr -d '\r' <"$RAW/headers-$row.txt" | sed 1d | grep -v '^$' | sed 's/^/`/; s/$/`/' | paste -sd' ')"
    done
    echo "- load average at start of measuring: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- runtime: $(($(date +%s) - START_TIME)) s; raw wrk outputs in target/bench/raw/"
} >"$RAW/meta.md"
rc=0
BENCH_MAX_FOREIGN=$MAX_FOREIGN BENCH_MAX_STEAL=$MAX_STEAL python3 "$HERE/report.py" "$RAW" "$OUT/results.md" || rc=$?
log "results in $OUT/results.md (runtime $(($(date +%s) - START_TIME)) s)"
exit "$rc"
