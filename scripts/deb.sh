#!/usr/bin/env bash
# Build the Debian package kinfra_<version>-1_<arch>.deb into target/debian/ and print its path.
#
#   scripts/deb.sh            # release build (its build scripts write the man pages and shell
#                             # completions, packaging/assets.rs), then cargo-deb
#   scripts/deb.sh --no-build # package what target/release holds now
#
# cargo-deb (Cargo.toml's [package.metadata.deb]) is installed with `cargo install` when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
build=1
case "${1:-}" in
"") ;;
--no-build) build=0 ;;
*) echo "usage: scripts/deb.sh [--no-build]" >&2; exit 2 ;;
esac

if ! cargo deb --version >/dev/null 2>&1; then
    echo "deb.sh: installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" >&2
fi
if [ "$build" = 1 ]; then
    cargo build --release --locked -p kinfra -p kinfractl >&2
fi
cargo deb --no-build --quiet | tail -1
