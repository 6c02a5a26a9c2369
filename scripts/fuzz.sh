#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that reads outside input (fuzz/, issue 18).
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]      default: all targets, 60 s each
#
# TARGET is one of: envelope sync sip logs config api audit numbers (fuzz/fuzz_targets/).
# Builds the targets (once, into fuzz/target/), then runs each for SECONDS on one core
# and prints one line per target: total execs, execs/s, coverage (libFuzzer's `cov:`,
# edges reached) and crashes. Exits non-zero when a target crashed or broke one of its
# assertions; the input is then in fuzz/artifacts/TARGET/ (replay it with
# `scripts/fuzz.sh TARGET` after a fix, or `fuzz/target/x86_64-unknown-linux-gnu/release/TARGET FILE`).
#
# New inputs libFuzzer finds go to fuzz/target/corpus/TARGET (not committed); the seeds
# in fuzz/corpus/TARGET are only read.
#
# Needs: cargo-fuzz (installed here with `cargo install cargo-fuzz --locked` when
# missing) and a C++ compiler (libFuzzer is built from source by libfuzzer-sys).
#
# Toolchain: cargo-fuzz's flags (-Cpasses=sancov-module and the -Cllvm-args it adds) need
# a nightly compiler. Without one, RUSTC_BOOTSTRAP=1 lets the stable compiler accept them;
# that is what this script does when `rustc` is not a nightly. It affects only the fuzz
# build (its own workspace, its own target dir), never the ordinary build.
#
# Sanitizer: `--sanitizer none`. The code under test is safe Rust (no `unsafe` in
# fraudmesh or fraudmesh-node), so AddressSanitizer would only watch the dependencies'
# unsafe code, would need -Zsanitizer (and std rebuilt for full use), and costs about 2x
# in speed. Panics, overflow (debug assertions are on: -a) and failed assertions are
# what the targets look for. Set FUZZ_SANITIZER=address to use ASan anyway.
#
# Environment: FUZZ_JOBS (default 1) runs that many libFuzzer processes per target;
# FUZZ_MAX_LEN (default 65536) bounds input size; FUZZ_NO_BUILD=1 skips the build.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ALL_TARGETS=(envelope sync sip logs config api audit numbers)
target=${1:-all}
seconds=${2:-60}
sanitizer=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-1}
max_len=${FUZZ_MAX_LEN:-65536}

die() {
    printf 'fuzz.sh: %s\n' "$*" >&2
    exit 1
}

if [[ $target == all ]]; then
    targets=("${ALL_TARGETS[@]}")
elif [[ " ${ALL_TARGETS[*]} " == *" $target "* ]]; then
    targets=("$target")
else
    die "unknown target '$target' (one of: all ${ALL_TARGETS[*]})"
fi
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || die "SECONDS must be a positive number, not '$seconds'"

command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (https://rustup.rs)"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked || die "could not install cargo-fuzz"
fi
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

build_flags=(-O -a -s "$sanitizer")
if [[ ${FUZZ_NO_BUILD:-0} != 1 ]]; then
    echo "==> cargo fuzz build ${build_flags[*]}"
    start=$SECONDS
    (cd fuzz && cargo fuzz build "${build_flags[@]}") || die "the fuzz targets do not build"
    echo "==> built in $((SECONDS - start))s"
fi

status=0
summary=()
for t in "${targets[@]}"; do
    work=fuzz/target/corpus/$t
    mkdir -p "$work" "fuzz/artifacts/$t"
    dict=fuzz/dict/$t.dict
    [[ $t == sync ]] && dict=fuzz/dict/envelope.dict
    args=(-max_total_time="$seconds" -max_len="$max_len" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048)
    [[ -f $dict ]] && args+=(-dict="$PWD/$dict")
    [[ $jobs -gt 1 ]] && args+=(-fork="$jobs")
    log=fuzz/target/$t.log
    touch "$log.start"
    echo "==> $t: ${seconds}s"
    set +e
    (cd fuzz && cargo fuzz run "${build_flags[@]}" "$t" "../$work" "corpus/$t" -- "${args[@]}") >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units:[[:space:]]*[0-9]*' "$log" | awk '{s += $NF} END {print s + 0}')
    rate=$(grep -o 'stat::average_exec_per_sec:[[:space:]]*[0-9]*' "$log" | awk '{s += $NF} END {print s + 0}')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    crashes=$(find "fuzz/artifacts/$t" -type f -newer "$log.start" 2>/dev/null | wc -l || true)
    [[ $rc -ne 0 ]] && crashes=$((crashes > 0 ? crashes : 1))
    line=$(printf '%-9s execs %12s  execs/s %8s  cov %6s  crashes %s' "$t" "$execs" "$rate" "${cov:-?}" "$crashes")
    summary+=("$line")
    echo "$line"
    if [[ $rc -ne 0 ]]; then
        status=1
        echo "fuzz.sh: $t failed (exit $rc); the end of its log ($log):" >&2
        grep -E 'panicked|ERROR|Test unit written|SUMMARY' "$log" | head -20 >&2 || tail -20 "$log" >&2
    fi
done
echo "==> summary"
printf '%s\n' "${summary[@]}"
exit $status
