#!/usr/bin/env bash
# The same scenarios against upstream OpenStack (up.sh) and against our fabric, then `bench
# compare` for each pair: upstream is A, ours is B, so a ratio above 1 means ours has more of it.
#
#   bench/upstream/side_by_side.sh                       # defaults below
#   bench/upstream/side_by_side.sh --iterations 500 --concurrency 32
#   bench/upstream/side_by_side.sh --scenarios "token-validate boot-and-delete image-upload-download"
#
# Options (defaults in brackets):
#   --scenarios LIST   which, of token-validate, boot-and-delete, image-upload-download
#                      ["token-validate boot-and-delete"]
#   --duration S       token-validate's measured seconds [10]
#   --iterations N     boot-and-delete's and image-upload-download's iterations [200]
#   --concurrency C    boot-and-delete's concurrency [16]; token-validate always runs 32 and
#                      image-upload-download 8, their scenarios' defaults
#   --keep-up          leave upstream running while ours is measured, and afterwards (default:
#                      stop it, by PID, before ours runs, so its idle work, e.g. nova-compute's
#                      periodic update of every node, does not share the machine with ours)
#   --no-up            do not run up.sh (upstream must already be up)
# Environment: UPSTREAM_NODES [100] is both the nodes upstream's nova-compute reports (up.sh)
# and ours' `--hosts`; the other UPSTREAM_* knobs go to up.sh as they are.
#
# Results: .cache/upstream/results/STAMP/{SCENARIO}-{upstream,ours}.json, the runs' logs, and
# SCENARIO.md (the compare table); all the tables are printed at the end, and kept in summary.md.
# Upstream's results get the process figures `bench run` records only for ours (cost.py), and
# both get the control plane's CPU seconds in all and per iteration. Ours runs with
# `--hash-cost production` (argon2id at its production cost; Keystone hashes with bcrypt at its
# default cost): it matters only to token issue, which token-validate does once, before measuring.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/bench/upstream"
STATE="$ROOT/.cache/upstream"
PY=("$ROOT/.venv/bin/python")
BENCH=("${PY[@]}" -m bench)
NODES="${UPSTREAM_NODES:-100}"

SCENARIOS="token-validate boot-and-delete"
DURATION=10
ITERATIONS=200
CONCURRENCY=16
KEEP_UP=0
DO_UP=1
while (($#)); do
    case "$1" in
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --iterations) ITERATIONS=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --keep-up) KEEP_UP=1; shift ;;
        --no-up) DO_UP=0; shift ;;
        -h | --help) sed -n '2,28p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "side_by_side.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for s in $SCENARIOS; do
    case "$s" in
        token-validate | boot-and-delete | image-upload-download) ;;
        *) echo "side_by_side.sh: no scenario $s here" >&2; exit 2 ;;
    esac
done

log() { printf '[side_by_side.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# What each scenario is run with, the same on both sides.
args_of() {
    case "$1" in
        token-validate) echo "--duration $DURATION --concurrency 32" ;;
        boot-and-delete) echo "--iterations $ITERATIONS --concurrency $CONCURRENCY" ;;
        image-upload-download) echo "--iterations $ITERATIONS --concurrency 8" ;;
    esac
}

STAMP=$(date +%Y%m%d-%H%M%S)
OUT="$STATE/results/$STAMP"
UP_STARTED=0
cleanup() {
    local rc=$?
    # up.sh undoes its own failures; what it brought up is stopped here unless asked to keep it.
    if ((UP_STARTED && !KEEP_UP)); then bash "$HERE/down.sh" || true; fi
    exit $rc
}
trap cleanup EXIT

if ((DO_UP)); then
    log "bringing upstream up (UPSTREAM_NODES=$NODES)"
    UP_STARTED=1
    UPSTREAM_NODES="$NODES" bash "$HERE/up.sh"
fi
[[ -f "$STATE/clouds.yaml" ]] || { log "no $STATE/clouds.yaml: run up.sh first"; exit 1; }
mkdir -p "$OUT"
log "results in $OUT ($(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg))"

# run SIDE SCENARIO: one `bench run`, its JSON saved, its table and log kept.
run() {
    local side=$1 scenario=$2 extra=()
    # shellcheck disable=SC2207
    local args=($(args_of "$scenario"))
    if [[ $side == upstream ]]; then
        extra=(--target upstream)
    else
        extra=(--hash-cost production)
        [[ $scenario == boot-and-delete ]] && extra+=(--hosts "$NODES")
    fi
    log "$scenario against $side: bench run $scenario ${args[*]} ${extra[*]}"
    local result="$OUT/$scenario-$side.json" wrap=()
    # Against upstream, cost.py samples its processes (bench run does it only for ours).
    [[ $side == upstream ]] && wrap=("${PY[@]}" "$HERE/cost.py" wrap --pids "$STATE/pids" --result "$result" --)
    # `bench run` exits 1 when an iteration failed or an invariant was broken: that is a
    # result (in the JSON and the table), not a failure of the run, as long as there is one.
    rm -f "$result"
    OS_CLIENT_CONFIG_FILE="$STATE/clouds.yaml" "${wrap[@]}" "${BENCH[@]}" run "$scenario" "${args[@]}" \
        "${extra[@]}" --quiet --save "$result" >"$OUT/$scenario-$side.txt" 2>"$OUT/$scenario-$side.log" \
        || log "$scenario against $side: bench run exited $? (errors or invariant violations, see below)"
    cat "$OUT/$scenario-$side.txt"
    if [[ ! -s "$result" ]]; then
        tail -n 30 "$OUT/$scenario-$side.log" >&2
        log "$scenario against $side failed: no result"
        return 1
    fi
    "${PY[@]}" "$HERE/cost.py" totals "$result"
}

cd "$ROOT"
for scenario in $SCENARIOS; do
    run upstream "$scenario"
done
if ((!KEEP_UP)); then
    log "stopping upstream before ours is measured (--keep-up to leave it)"
    bash "$HERE/down.sh"
    UP_STARTED=0
fi
for scenario in $SCENARIOS; do
    run ours "$scenario"
done

for scenario in $SCENARIOS; do
    {
        echo "### $scenario: upstream (A) vs ours (B), $(args_of "$scenario"), $NODES nodes"
        echo
        # From the results' directory, so that the table's headers are the files' short names.
        (cd "$OUT" && PYTHONPATH="$ROOT" "${BENCH[@]}" compare "$scenario-upstream.json" "$scenario-ours.json")
        echo
    } >"$OUT/$scenario.md"
done
for scenario in $SCENARIOS; do cat "$OUT/$scenario.md"; done | tee "$OUT/summary.md"
log "tables: $OUT/summary.md (and one per scenario)"
