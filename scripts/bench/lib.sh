# Shared by scripts/bench.sh and scripts/bench-fanout.sh (sourced). Sets the settings both take
# from the environment (below). Its functions expect: log, HERE (this directory), RAW (raw output
# dir) and an array SPIN_PIDS.

SCPU=${BENCH_SERVER_CPU:-0}
CCPU=${BENCH_CLIENT_CPU:-1}
MAX_FOREIGN=${BENCH_MAX_FOREIGN:-5}
MAX_STEAL=${BENCH_MAX_STEAL:-30}
RETRIES=${BENCH_RETRIES:-2}
WAIT_QUIET=${BENCH_WAIT_QUIET:-30}

# check_cpus: sets ncpu; with one CPU, server and client share it (and say so).
check_cpus() {
    ncpu=$(nproc)
    if [ "$ncpu" -lt 2 ]; then
        log "warning: only $ncpu CPU; server and client share it, ratios will be rougher"
        SCPU=0
        CCPU=0
    fi
}

# gt A B: is the number A greater than B?
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }

# wait_quiet PIDS_FILE: wait (up to WAIT_QUIET s) until processes other than those listed use at
# most MAX_FOREIGN % of a CPU; say so when it stays busy (busy runs are retried, then flagged).
wait_quiet() {
    local waited=0 foreign=0
    while :; do
        read -r foreign _ < <(python3 "$HERE/runwrk.py" "$RAW/quiet-check.txt" "$1" -- sleep 2) || true
        if ! gt "${foreign:-0}" "$MAX_FOREIGN" || [ "$waited" -ge "$WAIT_QUIET" ]; then break; fi
        log "machine busy (other processes use ${foreign}% of a CPU: $(sed -n 's/.*top=//p' "$RAW/quiet-check.txt")); waiting"
        sleep 3
        waited=$((waited + 5))
    done
    if gt "${foreign:-0}" "$MAX_FOREIGN"; then
        log "warning: still busy; measuring anyway (busy runs are retried, then flagged)"
    fi
}

# spin_on: a SCHED_IDLE busy loop per CPU used (it yields to any real work at once), so an idle
# vCPU never halts; their pids go to SPIN_PIDS and $RAW/spin.pids.
spin_on() {
    local cpu
    for cpu in $(printf '%s\n' "$SCPU" "$CCPU" | sort -u); do
        chrt -i 0 taskset -c "$cpu" python3 -c 'while True: pass' &
        SPIN_PIDS+=($!)
    done
    printf '%s\n' "${SPIN_PIDS[@]}" >"$RAW/spin.pids"
}

spin_stop() {
    local pid
    for pid in "${SPIN_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${SPIN_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    SPIN_PIDS=()
}
