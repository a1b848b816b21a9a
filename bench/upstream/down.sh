#!/usr/bin/env bash
# Stops what bench/upstream/up.sh started, and with --purge drops what it made.
#
#   bench/upstream/down.sh            # stop the processes named in .cache/upstream/pids/*.pid
#   bench/upstream/down.sh --purge    # and drop the upstream_* databases, the RabbitMQ vhost
#                                     # `upstream` and .cache/upstream (configs, keys, images,
#                                     # logs) but its results/; the venv .cache/upstream-venv
#                                     # is kept
#
# Only the processes in the pid files are signalled, never any found by name: each was started
# in a session of its own (setsid), so its process group is it and what it forked (gunicorn's
# workers, nova-conductor's and nova-scheduler's workers), and the group is what gets the signal.
# A pid file whose process has gone, or whose PID now belongs to a process that started at
# another time (the start time up.sh kept beside it differs), is only removed. TERM first; KILL
# for whatever is still there after the grace period (UPSTREAM_STOP_GRACE, default 20 s).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="$ROOT/.cache/upstream"
PIDS="$STATE/pids"
GRACE="${UPSTREAM_STOP_GRACE:-20}"
PG_HOST="${UPSTREAM_PG_HOST:-127.0.0.1}"
PG_PORT="${UPSTREAM_PG_PORT:-5432}"
PG_USER="${UPSTREAM_PG_USER:-postgres}"
VHOST=upstream

PURGE=0
for arg in "$@"; do
    case "$arg" in
        --purge) PURGE=1 ;;
        -h | --help) sed -n '2,15p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "down.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

log() { printf '[down.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# (The fields are counted after the command's name, which may hold spaces: "(gunicorn: maste)".)
start_time() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}' || true; }

# ours NAME: the PID in NAME.pid if that process is still the one up.sh started, else nothing.
ours() {
    local name=$1 pid
    pid=$(cat "$PIDS/$name.pid" 2>/dev/null || true)
    [[ "$pid" =~ ^[0-9]+$ && -d "/proc/$pid" ]] || return 0
    [[ "$(start_time "$pid")" == "$(cat "$PIDS/$name.start" 2>/dev/null)" ]] && echo "$pid"
    return 0
}

# signal SIG PID: the process group PID leads (setsid made it), else PID alone.
signal() {
    local sig=$1 pid=$2
    if [[ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" == "$pid" ]]; then
        kill "-$sig" -- "-$pid" 2>/dev/null || true
    else
        kill "-$sig" "$pid" 2>/dev/null || true
    fi
}

# group_alive PID: any process left in the group PID leads (or PID itself).
group_alive() {
    [[ -d "/proc/$1" ]] || [[ -n "$(ps -e -o pid=,pgid= | awk -v g="$1" '$2 == g {print $1}')" ]]
}

declare -A STOPPING=()
shopt -s nullglob
for file in "$PIDS"/*.pid; do
    name=$(basename "$file" .pid)
    pid=$(ours "$name")
    if [[ -z "$pid" ]]; then
        log "$name: not running"
        rm -f "$PIDS/$name.pid" "$PIDS/$name.start" "$PIDS/$name.fingerprint"
        continue
    fi
    log "$name: TERM to pid $pid and its process group"
    signal TERM "$pid"
    STOPPING[$name]=$pid
done

deadline=$((SECONDS + GRACE))
for name in "${!STOPPING[@]}"; do
    pid=${STOPPING[$name]}
    while group_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if group_alive "$pid"; then
        log "$name: still there after ${GRACE} s, KILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDS/$name.pid" "$PIDS/$name.start" "$PIDS/$name.fingerprint"
done
log "stopped ${#STOPPING[@]} service(s)"

if ((PURGE)); then
    for db in keystone glance placement nova_api nova nova_cell0; do
        log "dropping database upstream_$db"
        psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1 -qc \
            "DROP DATABASE IF EXISTS upstream_$db WITH (FORCE)"
    done
    if grep -qx "$VHOST" <<<"$(rabbitmqctl -q list_vhosts)"; then
        log "deleting RabbitMQ vhost $VHOST"
        rabbitmqctl -q delete_vhost "$VHOST"
    fi
    log "removing $STATE (but its results/)"
    find "$STATE" -mindepth 1 -maxdepth 1 ! -name results -exec rm -rf {} +
fi
