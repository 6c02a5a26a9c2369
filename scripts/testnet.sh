#!/usr/bin/env bash
# A local fraudmesh mesh in one command: builds the node, starts N nodes on 127.0.0.1,
# reports an attacker on node 1 and shows every node blocking it.
#
#   scripts/testnet.sh [--nodes N] [--once] [--dir DIR]
#
#   --nodes N   how many nodes (default 3, at least 2)
#   --once      stop everything after the demo; exit 0 only if every node blocked
#   --dir DIR   keep the node directories in DIR (must not hold a testnet yet);
#               default: a temporary directory removed on exit
#
# Node 1 is the seed; every other node bootstraps from it and trusts it, so a report on
# node 1 blocks everywhere, while the other nodes' reports only block locally
# (they are strangers to each other). Environment: FRAUDMESH_BIN=path skips the build.
# Needs: the Rust toolchain (for the build), bash, coreutils. Uses only 127.0.0.1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

NODES=3
ONCE=0
KEEP_DIR=
ATTACKER=203.0.113.66 # RFC 5737 documentation address
PEER_DEADLINE=30      # seconds for every node to see a peer
BLOCK_DEADLINE=10     # seconds for every node to block the attacker

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
die() {
    printf 'testnet.sh: %s\n' "$*" >&2
    exit 1
}

while [[ $# -gt 0 ]]; do
    case $1 in
    --nodes) NODES=${2:?--nodes needs a number}; shift 2 ;;
    --nodes=*) NODES=${1#*=}; shift ;;
    --once) ONCE=1; shift ;;
    --dir) KEEP_DIR=${2:?--dir needs a directory}; shift 2 ;;
    --dir=*) KEEP_DIR=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ $NODES =~ ^[0-9]+$ ]] && ((NODES >= 2)) || die "--nodes must be a number >= 2 (got $NODES)"

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# --- build -------------------------------------------------------------------
if [[ -n ${FRAUDMESH_BIN:-} ]]; then
    BIN=$FRAUDMESH_BIN
else
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install the Rust toolchain (https://rustup.rs) and run again"
    echo "building fraudmesh (cargo build --release -p fraudmesh-node; the first build takes a few minutes)..."
    cargo build --release --quiet -p fraudmesh-node
    BIN=${CARGO_TARGET_DIR:-target}/release/fraudmesh
fi
[[ -x $BIN ]] || die "no executable at $BIN"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

# --- directories and cleanup -------------------------------------------------
if [[ -n $KEEP_DIR ]]; then
    mkdir -p "$KEEP_DIR"
    ROOT=$(cd "$KEEP_DIR" && pwd)
    for ((i = 1; i <= NODES; i++)); do
        [[ ! -e $ROOT/node$i ]] || die "$ROOT/node$i already exists: remove it or choose another --dir"
    done
else
    ROOT=$(mktemp -d "${TMPDIR:-/tmp}/fraudmesh-testnet.XXXXXX")
fi

PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((${#PIDS[@]} > 0)); then
        echo "stopping ${#PIDS[@]} node(s)..."
        kill -TERM "${PIDS[@]}" 2>/dev/null || true
        local deadline=$((SECONDS + 10)) pid
        for pid in "${PIDS[@]}"; do
            while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        done
    fi
    if [[ -z $KEEP_DIR ]]; then
        rm -rf -- "$ROOT"
    else
        echo "node directories and logs kept in $ROOT"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dir_of() { echo "$ROOT/node$1"; }
fm() { # fm I ARGS...: the CLI against node I, never hanging
    local d
    d=$(dir_of "$1")
    shift
    timeout 10 "$BIN" --dir "$d" "$@"
}

# JSON from our own CLI is compact serde_json, so these small extractors suffice.
json_num() { grep -o "\"$1\":[0-9]*" | head -n1 | cut -d: -f2; }
json_first_str() { grep -o "\"$1\":\[\"[^\"]*\"" | head -n1 | sed 's/.*\["//; s/"$//'; }

show_log() {
    echo "--- last lines of $(dir_of "$1")/node.log ---" >&2
    tail -n 20 "$(dir_of "$1")/node.log" >&2 || true
}

start_node() { # start_node I
    local d
    d=$(dir_of "$1")
    FRAUDMESH_LOG=${FRAUDMESH_LOG:-info} "$BIN" --dir "$d" run >"$d/node.log" 2>&1 &
    PIDS[$1 - 1]=$!
}

wait_up() { # wait_up I: until the node's API answers; prints its status JSON
    local i=$1 deadline=$((SECONDS + 15)) out
    while ((SECONDS < deadline)); do
        kill -0 "${PIDS[i - 1]}" 2>/dev/null || { show_log "$i"; die "node $i exited during start-up"; }
        if out=$(fm "$i" status --json 2>/dev/null); then
            echo "$out"
            return 0
        fi
        sleep 0.1
    done
    show_log "$i"
    die "node $i did not come up within 15 s"
}

# --- node 1, the seed --------------------------------------------------------
echo "mesh of $NODES nodes in $ROOT"
mkdir -p "$(dir_of 1)"
out=$(fm 1 init --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 2>&1) ||
    die "fraudmesh init failed for node 1: $out"
start_node 1
status=$(wait_up 1)
SEED_ID=$(fm 1 id)
SEED_ADDR=$(json_first_str listen <<<"$status")
[[ $SEED_ADDR == /ip4/127.0.0.1/tcp/*/p2p/"$SEED_ID" ]] ||
    die "could not read node 1's listen address from its status: $status"
echo "node 1  $SEED_ID  $SEED_ADDR  (seed)"

# --- the other nodes ---------------------------------------------------------
for ((i = 2; i <= NODES; i++)); do
    mkdir -p "$(dir_of "$i")"
    out=$(fm "$i" init --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 \
        --seed "$SEED_ADDR" --trust "$SEED_ID" 2>&1) ||
        die "fraudmesh init failed for node $i: $out"
    start_node "$i"
done
for ((i = 2; i <= NODES; i++)); do
    status=$(wait_up "$i")
    echo "node $i  $(fm "$i" id)  $(json_first_str listen <<<"$status")"
done

# --- wait for the mesh -------------------------------------------------------
printf 'waiting for every node to connect'
deadline=$((SECONDS + PEER_DEADLINE))
while :; do
    missing=()
    for ((i = 1; i <= NODES; i++)); do
        # connected, and subscribed to the sightings topic (gossip_peers)
        peers=$(fm "$i" status --json 2>/dev/null | json_num gossip_peers) || true
        ((${peers:-0} >= 1)) || missing+=("$i")
    done
    if ((${#missing[@]} == 0)); then break; fi
    if ((SECONDS >= deadline)); then
        echo
        for i in "${missing[@]}"; do show_log "$i"; done
        die "node(s) ${missing[*]} had no gossiping peer after ${PEER_DEADLINE} s"
    fi
    printf '.'
    sleep 0.2
done
echo " done"

# --- the demo ----------------------------------------------------------------
echo
echo "\$ fraudmesh --dir $(dir_of 1) report $ATTACKER --kind scan --reason demo"
t0=$(now_ms)
fm 1 report "$ATTACKER" --kind scan --reason demo
declare -A took=()
deadline=$((SECONDS + BLOCK_DEADLINE))
while ((${#took[@]} < NODES)) && ((SECONDS < deadline)); do
    for ((i = 1; i <= NODES; i++)); do
        [[ -n ${took[$i]:-} ]] && continue
        if fm "$i" check "$ATTACKER" --json 2>/dev/null | grep -q '"blocked":true'; then
            took[$i]=$(($(now_ms) - t0))
        fi
    done
    if ((${#took[@]} < NODES)); then sleep 0.05; fi
done

echo
failed=0
for ((i = 1; i <= NODES; i++)); do
    if [[ -n ${took[$i]:-} ]]; then
        printf 'node %-3s blocked %s after %5d ms\n' "$i" "$ATTACKER" "${took[$i]}"
    else
        printf 'node %-3s did NOT block %s within %d s\n' "$i" "$ATTACKER" "$BLOCK_DEADLINE"
        failed=1
    fi
done
echo "(times include the polling CLI's own start-up, about 10-30 ms per check)"

echo
echo "\$ fraudmesh --dir $(dir_of "$NODES") list"
fm "$NODES" list || true

if ((ONCE)); then
    echo
    if ((failed)); then
        for ((i = 1; i <= NODES; i++)); do [[ -n ${took[$i]:-} ]] || show_log "$i"; done
        echo "testnet: FAILED: not every node blocked the attacker"
        exit 1
    fi
    echo "testnet: ok, all $NODES nodes blocked $ATTACKER"
    exit 0
fi

# --- keep running ------------------------------------------------------------
cat <<EOF

The mesh is running (Ctrl-C stops it). Poke it from another terminal:

  $BIN --dir $(dir_of 2) check $ATTACKER
  $BIN --dir $(dir_of 1) report 198.51.100.7 --kind auth-failure --reason "try me"
  $BIN --dir $(dir_of 1) retract $ATTACKER
  $BIN --dir $(dir_of "$NODES") status
  $BIN --dir $(dir_of "$NODES") peers
  $BIN --dir $(dir_of "$NODES") list

Reports on node 1 block on every node (all trust node 1); a report on another node
blocks only there (the others see it as a stranger's: weight 0.1, capped at 0.5).
Logs: $ROOT/node*/node.log
EOF
if ((failed)); then
    echo "warning: not every node blocked the attacker (see above)" >&2
fi
# Returns on Ctrl-C (the traps stop the nodes) or when every node has exited.
wait "${PIDS[@]}" || true
echo "all nodes exited"
