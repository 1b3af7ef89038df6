#!/usr/bin/env bash
# Install what the test suite needs (Debian packages), then run every check and test:
# rustfmt, clippy (warnings are errors), unit tests and the end-to-end tests in tests/ (the proxy
# tests twice: with kinfrad's HTTP/1.1 fast path and, KINFRA_TEST_FAST_PATH=0, without it; the
# proxy, supervisor and dashboard tests once more with kinfrad on one current-thread runtime).
#
#   scripts/test.sh            # everything
#   scripts/test.sh daemon     # only tests/daemon/ (any cargo test filter works after --test)
#
# KINFRA_FUZZ_SECONDS=N also runs every fuzz target (fuzz/, scripts/fuzz.sh) for N seconds at the
# end. Off by default: it needs a nightly toolchain and cargo-fuzz, and a cold build of fuzz/
# (every dependency again, with sanitizer instrumentation) takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive for real: systemd's tools (systemd-socket-activate,
# systemd-analyze, a throwaway `systemd --user`), util-linux (setpriv), Chromium + ChromeDriver,
# python3 (the small services the supervisor and dashboard tests run) and its prometheus_client,
# prometheus for promtool (the sample alerting rules are checked and unit-tested with it),
# lintian (the Debian package's check; scripts/deb.sh installs cargo-deb itself), and etcd with
# etcdctl (the fleet tests run a real etcd cluster, tests/common/etcd.rs; curl talks to its TLS
# members).
need=()
command -v systemd-socket-activate >/dev/null || need+=(systemd)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v setpriv >/dev/null || need+=(util-linux)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
command -v lintian >/dev/null || need+=(lintian)
command -v promtool >/dev/null || need+=(prometheus)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v curl >/dev/null || need+=(curl)
# The OpenMetrics parser the /metrics tests read kinfrad's exposition with (tests/common/metrics.rs
# also tries the system's python3, which sees Debian's packages when PATH has another first).
python3 -c 'import prometheus_client' 2>/dev/null \
    || /usr/bin/python3 -c 'import prometheus_client' 2>/dev/null \
    || need+=(python3-prometheus-client)
if ((${#need[@]})); then
    sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "test.sh: need root (or sudo) to install: ${need[*]}" >&2; exit 1; }
        sudo="sudo"
    fi
    echo "test.sh: installing ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [[ $# -gt 0 ]]; then
    exec cargo test --test "$@"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --all-targets --locked
# The proxy tests again with kinfrad's HTTP/1.1 fast path off: everything served by hyper.
KINFRA_TEST_FAST_PATH=0 cargo test --locked --test proxy
# kinfrad with TOKIO_WORKER_THREADS=1 runs a current-thread runtime: tasks interleave in another
# order, which has shown races the multi-thread runtime hid.
TOKIO_WORKER_THREADS=1 cargo test --locked --test proxy --test supervise --test dashboard
if [[ -n ${KINFRA_FUZZ_SECONDS:-} ]]; then
    scripts/fuzz.sh "$KINFRA_FUZZ_SECONDS"
fi
