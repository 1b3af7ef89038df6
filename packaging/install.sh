#!/usr/bin/env bash
# Install kinfrad/kinfractl with their systemd units, sysusers.d entry and example config.
#
# Usage: packaging/install.sh [--bin-dir DIR] [--vendor] [--no-reload]
#   --bin-dir DIR  take kinfrad and kinfractl from DIR (default: target/release of this checkout)
#   --vendor       install units to /usr/lib/systemd/system and the sysusers entry to
#                  /usr/lib/sysusers.d (distribution packages); default /etc/systemd/system and
#                  /etc/sysusers.d (local administrator)
#   --no-reload    do not create the kinfra group or run `systemctl daemon-reload`
# Environment: DESTDIR=/some/staging/root installs below that directory (packaging, tests). With
# DESTDIR set nothing outside it is touched: no group is created and systemd is not reloaded.
#
# Running it again is safe: binaries, units and the sysusers entry are replaced,
# /etc/kinfra/kinfra.toml is only written when absent (local edits are kept).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
bin_dir="$repo/target/release"
vendor=0
reload=1

die() {
    echo "install.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
    --bin-dir)
        [ $# -ge 2 ] || die "--bin-dir needs a directory"
        bin_dir="$2"
        shift 2
        ;;
    --bin-dir=*)
        bin_dir="${1#--bin-dir=}"
        shift
        ;;
    --vendor)
        vendor=1
        shift
        ;;
    --no-reload)
        reload=0
        shift
        ;;
    -h | --help)
        sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument: $1 (try --help)" ;;
    esac
done

destdir="${DESTDIR:-}"
destdir="${destdir%/}"
if [ -n "$destdir" ]; then
    case "$destdir" in
    /*) ;;
    *) die "DESTDIR must be an absolute path: $destdir" ;;
    esac
fi

if [ "$vendor" = 1 ]; then
    unit_dir=/usr/lib/systemd/system
    sysusers_dir=/usr/lib/sysusers.d
else
    unit_dir=/etc/systemd/system
    sysusers_dir=/etc/sysusers.d
fi

for b in kinfrad kinfractl; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b not found (build it with: cargo build --release, or pass --bin-dir)"
done
for f in units/kinfra.service units/kinfra.socket units/kinfra-control.socket \
    packaging/sysusers.d/kinfra.conf packaging/kinfra.toml; do
    [ -f "$repo/$f" ] || die "$repo/$f is missing"
done

# The units run /usr/bin/kinfrad: keep the binaries there.
install -d -m 0755 "$destdir/usr/bin" "$destdir$unit_dir" "$destdir$sysusers_dir"
install -m 0755 "$bin_dir/kinfrad" "$bin_dir/kinfractl" "$destdir/usr/bin/"
install -m 0644 "$repo/units/kinfra.service" "$repo/units/kinfra.socket" \
    "$repo/units/kinfra-control.socket" "$destdir$unit_dir/"
install -m 0644 "$repo/packaging/sysusers.d/kinfra.conf" "$destdir$sysusers_dir/kinfra.conf"

install -d -m 0755 "$destdir/etc/kinfra"
if [ -e "$destdir/etc/kinfra/kinfra.toml" ]; then
    echo "kept existing $destdir/etc/kinfra/kinfra.toml"
else
    install -m 0644 "$repo/packaging/kinfra.toml" "$destdir/etc/kinfra/kinfra.toml"
fi

# Only on the live system: DESTDIR is a staging tree.
if [ -z "$destdir" ] && [ "$reload" = 1 ]; then
    # SocketGroup=kinfra in kinfra-control.socket needs the group before the socket starts.
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers "$sysusers_dir/kinfra.conf"
    elif ! getent group kinfra >/dev/null; then
        groupadd --system kinfra
    fi
    # /run/systemd/system exists only when systemd is the running init.
    if [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
        systemctl daemon-reload
    fi
fi

cat <<EOF
installed kinfrad and kinfractl to $destdir/usr/bin, units to $destdir$unit_dir
Next: systemctl enable --now kinfra.socket kinfra-control.socket
      (kinfra.service starts on the first connection, or: systemctl enable --now kinfra.service)
EOF
