#!/usr/bin/env bash
# Run the cargo-fuzz targets in fuzz/ one after another, each from its committed seeds (fuzz/seeds/)
# and with its dictionary (fuzz/dicts/); the corpus grows in fuzz/corpus/, crashes land in
# fuzz/artifacts/ (both ignored by git). Needs a nightly toolchain and `cargo install cargo-fuzz`.
#
#   scripts/fuzz.sh                  # every target for 600 s
#   scripts/fuzz.sh 10               # every target for 10 s (a smoke run)
#   scripts/fuzz.sh 600 h1_request   # one target
#
# libFuzzer runs one process on one core; on a shared machine run it niced
# (`nice -n 15 scripts/fuzz.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-600}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(control_frame config routes h1_request h1_response)
fi

dict_of() {
    case $1 in
        h1_request | h1_response) echo fuzz/dicts/http.dict ;;
        config) echo fuzz/dicts/config.dict ;;
        control_frame) echo fuzz/dicts/control_frame.dict ;;
        *) echo "" ;;
    esac
}

for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    args=(-max_total_time="$secs" -print_final_stats=1)
    dict=$(dict_of "$t")
    [[ -n $dict ]] && args+=(-dict="$dict")
    echo "fuzz.sh: $t for ${secs}s"
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- "${args[@]}"
done
