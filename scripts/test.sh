#!/usr/bin/env bash
# The test command of fraudmesh. README.md and .ci/run call exactly this.
#
#   scripts/test.sh
#
# Installs what the tests need when it is missing, then runs, in order:
#   cargo fmt --check, cargo clippy (warnings are errors), the emergency-number table's
#   freshness check, cargo test, a compile-only pass over the benches (test profile), and a short run of every
#   fuzz target (scripts/fuzz.sh, FUZZ_SECONDS each, default 20; 0 skips it; when
#   cargo-fuzz cannot be installed the run is skipped with a warning). Stops at the first failure.
#
# Needs: the Rust toolchain (https://rustup.rs). rustfmt and clippy are added with
# rustup when missing. System packages (iproute2, ipset, nftables, sip-tester,
# kamailio, kamailio-utils-modules, kamailio-extra-modules, python3) are installed with apt-get
# when missing. No prompts: safe under CI=true.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'test.sh: %s\n' "$*" >&2
    exit 1
}

# --- system packages ---------------------------------------------------------
apt_updated=0
# need_pkg CMD PKG: install Debian/Ubuntu package PKG when command CMD is missing.
need_pkg() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        die "'$cmd' is missing: install the package '$pkg' (e.g. sudo apt-get install $pkg) and run again"
    fi
    if [[ $apt_updated -eq 0 ]]; then
        say "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
    say "installing $pkg (for $cmd)"
    apt-get install -y -qq --no-install-recommends "$pkg"
    command -v "$cmd" >/dev/null 2>&1 || die "installed $pkg but '$cmd' is still not on PATH"
}

# need_kamailio_module MOD PKG: install package PKG when Kamailio's module MOD.so is
# missing (modules come in several packages; a command check cannot see them).
kamailio_module_found() {
    local d
    for d in /usr/lib/x86_64-linux-gnu/kamailio/modules /usr/lib/aarch64-linux-gnu/kamailio/modules \
        /usr/lib/kamailio/modules /usr/lib64/kamailio/modules /usr/local/lib64/kamailio/modules \
        /usr/local/lib/kamailio/modules; do
        [[ -f $d/$1.so ]] && return 0
    done
    return 1
}
need_kamailio_module() {
    local mod=$1 pkg=$2
    kamailio_module_found "$mod" && return 0
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        die "Kamailio's module '$mod' is missing: install the package '$pkg' (e.g. sudo apt-get install $pkg) and run again"
    fi
    if [[ $apt_updated -eq 0 ]]; then
        say "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
    say "installing $pkg (for Kamailio's $mod module)"
    apt-get install -y -qq --no-install-recommends "$pkg"
    kamailio_module_found "$mod" || die "installed $pkg but Kamailio's module $mod.so is still missing"
}

# Enforcer tests run real systems inside network namespaces they create (root needed).
need_pkg ip iproute2
need_pkg ipset ipset
need_pkg nft nftables
need_pkg sipp sip-tester
need_pkg kamailio kamailio
# scripts/kamailio/fraudmesh-calls.cfg (node/tests/it/calls_kamailio.rs) asks the node over
# HTTP and reads its JSON answer.
need_kamailio_module http_client kamailio-utils-modules
need_kamailio_module jansson kamailio-extra-modules
# scripts/gen-emergency.py --check: the emergency-number table is what libphonenumber's data
# in Cargo.lock gives.
need_pkg python3 python3

# --- Rust toolchain ----------------------------------------------------------
command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install the Rust toolchain (https://rustup.rs), open a new shell, and run again"

need_component() {
    local sub=$1 component=$2
    cargo "$sub" --version >/dev/null 2>&1 && return 0
    command -v rustup >/dev/null 2>&1 ||
        die "'cargo $sub' is missing and rustup is not installed: install the $component component of your toolchain"
    say "rustup component add $component"
    rustup component add "$component"
}
need_component fmt rustfmt
need_component clippy clippy

# --- the tests ---------------------------------------------------------------
start=$SECONDS
step() {
    local t=$SECONDS
    say "$*"
    "$@"
    say "ok ($((SECONDS - t))s): $*"
}

step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets -- -D warnings
step python3 scripts/gen-emergency.py --check
test_log=$(mktemp)
trap 'rm -f "$test_log"' EXIT
step cargo test --workspace 2>&1 | tee "$test_log"
# Benches are not run here (that takes minutes), only compiled so they cannot rot: in the
# test profile, which shares every dependency with the test build above (a release build
# of the workspace would add about 13 minutes on 2 cores, for the same type and link checks).
step cargo test --workspace --benches --no-run

# Every fuzz target for a short fixed time: a crash or a broken property fails the run
# (the input is then in fuzz/artifacts/). The build is an extra optimised build of the
# node without QUIC into fuzz/target/. Under CI a fuzzer that cannot be set up fails the
# run; elsewhere (say, offline) it is skipped with a warning.
fuzz_seconds=${FUZZ_SECONDS:-20}
fuzz_unavailable() {
    [[ -n ${CI:-} ]] && die "$1 (CI: fuzzing is required)"
    echo "test.sh: WARNING: $1: the fuzz targets were NOT run" >&2
}
if [[ $fuzz_seconds == 0 ]]; then
    say "fuzzing skipped (FUZZ_SECONDS=0)"
elif ! command -v c++ >/dev/null 2>&1 && ! { [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1 && need_pkg c++ g++; }; then
    fuzz_unavailable "no C++ compiler (libFuzzer is built from C++)"
elif ! cargo fuzz --version >/dev/null 2>&1 && ! { say "cargo install cargo-fuzz --locked"; cargo install cargo-fuzz --locked; }; then
    fuzz_unavailable "cargo-fuzz cannot be installed"
else
    step scripts/fuzz.sh all "$fuzz_seconds"
fi

# One closing line that counts every test of every crate (cargo prints one per binary).
sum() { grep '^test result:' "$test_log" | sed -E "s/.* ([0-9]+) $1.*/\1/" | awk '{s += $1} END {print s + 0}'; }
passed=$(sum passed)
failed=$(sum failed)
echo "test.sh: all checks passed in $((SECONDS - start))s"
echo "tests: $passed passed, $failed failed"
