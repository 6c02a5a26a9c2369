#!/usr/bin/env bash
# The local testnet in one command: builds fraudmesh and fraudmesh-testnet (release), starts
# a mesh of real nodes on 127.0.0.1, attacks it and prints how fast every node blocked
# every attacker, with report.json and plots in the output directory.
#
#   scripts/testnet.sh [fraudmesh-testnet run flags]
#
# Defaults: 8 nodes, scenario attack-wave. Useful flags (all of `fraudmesh-testnet run
# --help`):
#   --nodes N            how many node processes (50 fit this 2-core machine)
#   --scenario NAME      attack-wave | late-join | churn | partition | poison |
#                        flood | policy-split | spoof
#                        (spoof: as root, at least 4 nodes, in network namespaces it
#                        makes and removes)
#   --flood-keys N       flood: fresh stranger keys, 100 records each (default 1000)
#   --out DIR            where node directories, report.json and plots go
#   --hold               keep the mesh running after the scenario until Ctrl-C
#
# Exit status: 0 when every expectation of the scenario held, 1 when one failed, 2 on
# errors. Uses only 127.0.0.1 (spoof: only the namespaces it makes). Needs the Rust
# toolchain for the build (rustup.rs), unless FRAUDMESH_BIN and FRAUDMESH_TESTNET_BIN
# point at built binaries.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

if [[ -z ${FRAUDMESH_BIN:-} || -z ${FRAUDMESH_TESTNET_BIN:-} ]]; then
    command -v cargo >/dev/null 2>&1 || {
        echo "testnet.sh: cargo not found: install the Rust toolchain (https://rustup.rs) and run again" >&2
        exit 2
    }
    echo "building (cargo build --release -p fraudmesh-node -p fraudmesh-testnet; the first build takes a few minutes)..." >&2
    cargo build --release --quiet -p fraudmesh-node -p fraudmesh-testnet
    target=${CARGO_TARGET_DIR:-target}/release
    export FRAUDMESH_BIN=${FRAUDMESH_BIN:-$target/fraudmesh}
    FRAUDMESH_TESTNET_BIN=${FRAUDMESH_TESTNET_BIN:-$target/fraudmesh-testnet}
fi

exec "$FRAUDMESH_TESTNET_BIN" run "$@"
