#!/usr/bin/env bash
# Brings up upstream OpenStack (keystone, glance, placement, nova) from PyPI on this machine, on
# loopback, beside our fabric and on the same PostgreSQL and RabbitMQ, so that `bench run` can
# measure both the same way (`side_by_side.sh`). See README.md beside this file.
#
#   bench/upstream/up.sh                   # idempotent: what is already up is left as it is
#   UPSTREAM_NODES=1000 bench/upstream/up.sh
#   bench/upstream/down.sh [--purge]       # stops what this started; --purge drops its data
#
# What it does, in order (each step is skipped when already done):
#  1. a virtualenv at .cache/upstream-venv with the pinned releases and gunicorn (no Apache);
#  2. configuration under .cache/upstream/etc, one directory per service;
#  3. databases upstream_{keystone,glance,placement,nova_api,nova,nova_cell0} and the RabbitMQ
#     vhost `upstream`, then each service's schema;
#  4. keystone (fernet keys, bootstrap: admin user, project, identity endpoint), then the service
#     users and the image/placement/compute endpoints (register.py);
#  5. the processes, each in a session of its own with its PID in .cache/upstream/pids/NAME.pid
#     and its output in .cache/upstream/logs/NAME.log: keystone, glance-api, placement-api and
#     nova-api under gunicorn, nova-conductor, nova-scheduler, one nova-compute whose fake
#     driver reports UPSTREAM_NODES nodes, and a stand-in for Neutron that has no networks
#     (neutron_stub.py says why nova needs one);
#  6. cells (cell0, cell1, host discovery), flavor m1.tiny, no server quota for the admin project;
#  7. .cache/upstream/clouds.yaml with the cloud `upstream`.
# A service already running is left as it is, unless its command line or configuration changed
# (a knob below, or this directory's code): then it is restarted. If a step fails, the
# processes this run started are stopped again (by PID) before it exits.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/bench/upstream"
VENV="$ROOT/.cache/upstream-venv"
STATE="$ROOT/.cache/upstream"
ETC="$STATE/etc"
PIDS="$STATE/pids"
LOGS="$STATE/logs"
DATA="$STATE/data"

# --- knobs (environment) ------------------------------------------------------------------------
NODES="${UPSTREAM_NODES:-100}"                    # nodes the one nova-compute reports
WORKERS="${UPSTREAM_WORKERS:-2}"                  # gunicorn workers per API (this machine: 2 cores)
THREADS="${UPSTREAM_THREADS:-4}"                  # threads per gunicorn worker
MAX_BUILDS="${UPSTREAM_MAX_BUILDS:-64}"           # nova-compute's concurrent builds (see nova.conf)
NOVA_WORKERS="${UPSTREAM_NOVA_WORKERS:-1}"        # nova-conductor's and nova-scheduler's processes
DB_POOL="${UPSTREAM_DB_POOL:-3}"                  # connections each process keeps per database
DB_OVERFLOW="${UPSTREAM_DB_OVERFLOW:-1}"          # and may open beyond those (see db_section)
KEYSTONE_CACHE="${UPSTREAM_KEYSTONE_CACHE:-memory}" # memory (per worker) | none (keystone's default)
PG_HOST="${UPSTREAM_PG_HOST:-127.0.0.1}"
PG_PORT="${UPSTREAM_PG_PORT:-5432}"
PG_USER="${UPSTREAM_PG_USER:-postgres}"
RABBIT_URL_BASE="${UPSTREAM_RABBIT:-guest:guest@127.0.0.1:5672}"
VHOST=upstream
KEYSTONE_PORT="${UPSTREAM_KEYSTONE_PORT:-35000}"
GLANCE_PORT="${UPSTREAM_GLANCE_PORT:-39292}"
PLACEMENT_PORT="${UPSTREAM_PLACEMENT_PORT:-38778}"
NOVA_PORT="${UPSTREAM_NOVA_PORT:-38774}"
NEUTRON_STUB_PORT="${UPSTREAM_NEUTRON_STUB_PORT:-39696}"
# The releases measured (Python 3.11). oslo.messaging 18.3 is the one known to work with them.
REQUIREMENTS=(
    "keystone==30.*" "openstack-placement==16.*" "nova==34.*" "glance==33.*"
    "oslo.messaging==18.3.*" "psycopg2-binary" "gunicorn"
)

KEYSTONE_URL="http://127.0.0.1:$KEYSTONE_PORT/v3"
GLANCE_URL="http://127.0.0.1:$GLANCE_PORT"
PLACEMENT_URL="http://127.0.0.1:$PLACEMENT_PORT"
NOVA_URL="http://127.0.0.1:$NOVA_PORT/v2.1"
NEUTRON_STUB_URL="http://127.0.0.1:$NEUTRON_STUB_PORT"
TRANSPORT_URL="rabbit://$RABBIT_URL_BASE/$VHOST"
PY="$VENV/bin/python"

log() { printf '[up.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "UPSTREAM_NODES must be a positive integer, not '$NODES'"
[[ "$KEYSTONE_CACHE" == none || "$KEYSTONE_CACHE" == memory ]] \
    || die "UPSTREAM_KEYSTONE_CACHE must be none or memory, not '$KEYSTONE_CACHE'"

# --- process bookkeeping --------------------------------------------------------------------------
# A service is running when its pid file names a live process that started when the pid file
# says (field 22 of /proc/PID/stat, kept in NAME.start), so a PID reused by something else is
# never taken for ours, here or in down.sh.
# (The fields are counted after the command's name, which may hold spaces: "(gunicorn: maste)".)
start_time() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}' || true; }

running() {
    local name=$1 pid
    [[ -f "$PIDS/$name.pid" ]] || return 1
    pid=$(<"$PIDS/$name.pid")
    [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
    [[ "$(start_time "$pid")" == "$(cat "$PIDS/$name.start" 2>/dev/null)" ]]
}

STARTED_NOW=()   # what this run started, to stop again if a later step fails

# stop NAME: TERM to its process group, KILL after 20 s if still there; forget its pid file.
stop() {
    local name=$1 pid i
    if running "$name"; then
        pid=$(<"$PIDS/$name.pid")
        log "stopping $name (pid $pid)"
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do running "$name" || break; sleep 0.2; done
        if running "$name"; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$PIDS/$name.pid" "$PIDS/$name.start" "$PIDS/$name.fingerprint"
}

# start NAME "FILES" CMD...: CMD in a session of its own (setsid: its own process group, out of
# this shell's, so it outlives the script and down.sh can stop it with the children it forks).
# A service already running with the same command line and the same FILES (its configuration
# and code) is left as it is; if either changed, it is restarted, so that a knob takes effect.
start() {
    local name=$1 files fingerprint pid
    read -ra files <<<"$2"
    shift 2
    fingerprint=$({ printf '%s\n' "$@"; cat "${files[@]}"; } | sha256sum | cut -d' ' -f1)
    if running "$name"; then
        if [[ "$(cat "$PIDS/$name.fingerprint" 2>/dev/null)" == "$fingerprint" ]]; then
            log "$name already running (pid $(<"$PIDS/$name.pid"))"
            return 0
        fi
        log "$name: its command line or configuration changed"
        stop "$name"
    fi
    log "starting $name"
    setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PIDS/$name.pid"
    start_time "$pid" >"$PIDS/$name.start"
    echo "$fingerprint" >"$PIDS/$name.fingerprint"
    STARTED_NOW+=("$name")
}

stop_started_now() {
    local name
    for name in "${STARTED_NOW[@]}"; do stop "$name"; done
}

on_exit() {
    local rc=$?
    if [[ $rc -ne 0 && ${#STARTED_NOW[@]} -gt 0 ]]; then
        log "failed (exit $rc); stopping what this run started: ${STARTED_NOW[*]}"
        stop_started_now
    fi
}
trap on_exit EXIT

# wait_http NAME URL [SECONDS]: until URL answers at all (any HTTP status below 500), while the
# service's process is alive.
wait_http() {
    local name=$1 url=$2 limit=${3:-180} i code
    for ((i = 0; i < limit * 2; i++)); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url" || true)
        if [[ "$code" =~ ^[1-4][0-9][0-9]$ ]]; then
            log "$name answers at $url (HTTP $code)"
            return 0
        fi
        if ! running "$name"; then
            tail -n 40 "$LOGS/$name.log" >&2 || true
            die "$name exited; its log is $LOGS/$name.log"
        fi
        sleep 0.5
    done
    tail -n 40 "$LOGS/$name.log" >&2 || true
    die "$name does not answer at $url after $limit s; its log is $LOGS/$name.log"
}

port_free() { ! (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- 1. the virtualenv ----------------------------------------------------------------------------
mkdir -p "$ETC" "$PIDS" "$LOGS" "$DATA"
stamp="$VENV/.bench-requirements"
if [[ ! -x "$PY" || "$(cat "$stamp" 2>/dev/null)" != "${REQUIREMENTS[*]}" ]]; then
    log "installing ${REQUIREMENTS[*]} into $VENV"
    [[ -x "$PY" ]] || /usr/bin/python3.11 -m venv "$VENV" || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip setuptools wheel
    "$VENV/bin/pip" install -q "${REQUIREMENTS[@]}"
    echo "${REQUIREMENTS[*]}" >"$stamp"
fi

# --- 2. configuration -----------------------------------------------------------------------------
# Passwords: made once, kept (0600) beside the configuration; loopback only.
secret() {
    local file="$ETC/$1"
    [[ -s "$file" ]] || (umask 077; "$PY" -c 'import secrets; print(secrets.token_urlsafe(18))' >"$file")
    cat "$file"
}
ADMIN_PASSWORD=$(secret admin-password)
SERVICE_PASSWORD=$(secret service-password)
db_url() { echo "postgresql+psycopg2://$PG_USER@$PG_HOST:$PG_PORT/upstream_$1"; }

# What each service's keystonemiddleware uses to validate the tokens it is sent.
authtoken() {  # authtoken USER
    cat <<EOF
[keystone_authtoken]
www_authenticate_uri = $KEYSTONE_URL
auth_url = $KEYSTONE_URL
auth_type = password
username = $1
password = $SERVICE_PASSWORD
project_name = service
user_domain_name = Default
project_domain_name = Default
region_name = RegionOne
service_token_roles_required = true
EOF
}
# A bounded pool. PostgreSQL here allows 100 connections in all, shared with everything else on
# the machine, and oslo.db's default (5, plus 50 more under load) per database per process would
# take them all: with 5 + 5, nova-api, nova-conductor and nova-scheduler (2 processes each, each
# with 4 databases: API, [database], cell0, cell1) and the others held 93 at the peak of
# boot-and-delete at concurrency 16. With 3 + 1 a process has a connection for each of
# gunicorn's 4 threads.
db_section() {  # db_section SECTION DB
    cat <<EOF
[$1]
connection = $(db_url "$2")
max_pool_size = $DB_POOL
max_overflow = $DB_OVERFLOW
EOF
}

mkdir -p "$ETC/keystone" "$ETC/glance" "$ETC/placement" "$ETC/nova" \
    "$DATA/keystone/fernet-keys" "$DATA/keystone/credential-keys" \
    "$DATA/glance/images" "$DATA/glance/staging" "$DATA/glance/tasks" \
    "$DATA/nova/instances" "$DATA/nova/lock"

cache_section="[cache]
enabled = false"
if [[ "$KEYSTONE_CACHE" == memory ]]; then
    # dogpile's in-process cache: each gunicorn worker caches its own token validations (with
    # more than one worker a revocation reaches the other workers' caches only at expiry).
    cache_section="[cache]
enabled = true
backend = dogpile.cache.memory"
fi
cat >"$ETC/keystone/keystone.conf" <<EOF
[DEFAULT]
debug = false
$(db_section database keystone)
[token]
provider = fernet
[fernet_tokens]
key_repository = $DATA/keystone/fernet-keys
[fernet_receipts]
key_repository = $DATA/keystone/fernet-keys
[credential]
key_repository = $DATA/keystone/credential-keys
$cache_section
EOF

cat >"$ETC/glance/glance-api.conf" <<EOF
[DEFAULT]
debug = false
enabled_backends = fs:file
worker_self_reference_url = $GLANCE_URL
$(db_section database glance)
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $DATA/glance/images/
[os_glance_staging_store]
filesystem_store_datadir = $DATA/glance/staging/
[os_glance_tasks_store]
filesystem_store_datadir = $DATA/glance/tasks/
[paste_deploy]
flavor = keystone
$(authtoken glance)
[oslo_concurrency]
lock_path = $DATA/glance
EOF
cp "$VENV/etc/glance/glance-api-paste.ini" "$ETC/glance/glance-api-paste.ini"

cat >"$ETC/placement/placement.conf" <<EOF
[DEFAULT]
debug = false
[api]
auth_strategy = keystone
$(db_section placement_database placement)
$(authtoken placement)
EOF

# nova's clients of the other services, as the nova service user.
service_client() {  # service_client SECTION [endpoint_override]
    cat <<EOF
[$1]
auth_type = password
auth_url = $KEYSTONE_URL
username = nova
password = $SERVICE_PASSWORD
project_name = service
user_domain_name = Default
project_domain_name = Default
region_name = RegionOne
valid_interfaces = internal,public
EOF
    [[ -z "${2:-}" ]] || echo "endpoint_override = $2"
}
cat >"$ETC/nova/nova.conf" <<EOF
[DEFAULT]
debug = false
host = upstream-compute
my_ip = 127.0.0.1
state_path = $DATA/nova
instances_path = $DATA/nova/instances
transport_url = $TRANSPORT_URL
# nova.virt.fake.FakeDriver reporting UPSTREAM_NODES nodes (fake_nodes.py)
compute_driver = fake_nodes.ManyNodesDriver
# Nova's default is 10 builds at once per nova-compute, i.e. per host; this one nova-compute
# stands for UPSTREAM_NODES hosts, so 10 would cap the whole cloud at 10 boots in flight.
# (With native threads builds and snapshots share one pool: the same figure for both.)
max_concurrent_builds = $MAX_BUILDS
max_concurrent_snapshots = $MAX_BUILDS
[api]
auth_strategy = keystone
$(db_section api_database nova_api)
$(db_section database nova)
$(authtoken nova)
$(service_client placement)
$(service_client glance "$GLANCE_URL")
$(service_client neutron "$NEUTRON_STUB_URL")
[scheduler]
# up.sh runs the one discovery the one compute host needs.
discover_hosts_in_cells_interval = -1
# Nova's default is one process per CPU for each (here 2, plus their parent), and each process
# keeps a pool for each of 4 databases (API, [database], cell0, cell1): the connections they took
# would leave PostgreSQL (100 in all) none for anything else. Neither is near a core's worth
# of CPU in boot-and-delete, so one process each does not lower the figures.
workers = $NOVA_WORKERS
[conductor]
workers = $NOVA_WORKERS
[oslo_concurrency]
lock_path = $DATA/nova/lock
[vnc]
enabled = false
[wsgi]
api_paste_config = $ETC/nova/api-paste.ini
EOF
cp "$VENV/etc/nova/api-paste.ini" "$ETC/nova/api-paste.ini"

# --- 3. databases, vhost, schemas -----------------------------------------------------------------
psql_() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1 -Atqc "$1"; }
# What PostgreSQL leaves for upstream, beside what else holds connections now (upstream itself
# has taken up to 65 under load, at the default UPSTREAM_DB_POOL, _OVERFLOW and _NOVA_WORKERS).
free=$(psql_ "SELECT current_setting('max_connections')::int - count(*) FILTER (WHERE datname IS NULL
              OR datname NOT LIKE 'upstream\_%') FROM pg_stat_activity")
((free >= 70)) || log "WARNING: PostgreSQL leaves upstream $free connections; it may need 65 under load"
for db in keystone glance placement nova_api nova nova_cell0; do
    if [[ -z "$(psql_ "SELECT 1 FROM pg_database WHERE datname = 'upstream_$db'")" ]]; then
        log "creating database upstream_$db"
        psql_ "CREATE DATABASE upstream_$db"
        rm -f "$STATE/synced-$db"
    fi
done
if ! grep -qx "$VHOST" <<<"$(rabbitmqctl -q list_vhosts)"; then
    log "creating RabbitMQ vhost $VHOST"
    rabbitmqctl -q add_vhost "$VHOST"
fi
rabbitmqctl -q set_permissions -p "$VHOST" "${RABBIT_URL_BASE%%:*}" '.*' '.*' '.*'

# synced NAME CMD...: runs CMD once per database lifetime (the stamp goes with a new database).
synced() {
    local name=$1; shift
    [[ -f "$STATE/synced-$name" ]] && return 0
    log "schema: $*"
    "$@" >>"$LOGS/db-sync.log" 2>&1 || { tail -n 30 "$LOGS/db-sync.log" >&2; die "$* failed"; }
    touch "$STATE/synced-$name"
}
export OS_KEYSTONE_CONFIG_DIR="$ETC/keystone" OS_GLANCE_CONFIG_DIR="$ETC/glance" \
    OS_PLACEMENT_CONFIG_DIR="$ETC/placement" OS_NOVA_CONFIG_DIR="$ETC/nova"
KCONF=(--config-file "$ETC/keystone/keystone.conf")
NCONF=(--config-file "$ETC/nova/nova.conf")
synced keystone "$VENV/bin/keystone-manage" "${KCONF[@]}" db_sync
synced glance "$VENV/bin/glance-manage" --config-file "$ETC/glance/glance-api.conf" db_sync
synced placement "$VENV/bin/placement-manage" --config-file "$ETC/placement/placement.conf" db sync
synced nova_api "$VENV/bin/nova-manage" "${NCONF[@]}" api_db sync
synced nova_cell0 "$VENV/bin/nova-manage" "${NCONF[@]}" cell_v2 map_cell0 \
    --database_connection "$(db_url nova_cell0)"
cells=$("$VENV/bin/nova-manage" "${NCONF[@]}" cell_v2 list_cells 2>/dev/null || true)
if ! grep -q ' cell1 ' <<<"$cells"; then
    log "creating cell1"
    "$VENV/bin/nova-manage" "${NCONF[@]}" cell_v2 create_cell --name cell1 >>"$LOGS/db-sync.log" 2>&1
fi
synced nova "$VENV/bin/nova-manage" "${NCONF[@]}" db sync

# --- 4. keystone ----------------------------------------------------------------------------------
chmod 700 "$DATA/keystone/fernet-keys" "$DATA/keystone/credential-keys"  # keystone checks
if [[ -z "$(ls -A "$DATA/keystone/fernet-keys")" ]]; then
    "$VENV/bin/keystone-manage" "${KCONF[@]}" fernet_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
fi
if [[ -z "$(ls -A "$DATA/keystone/credential-keys")" ]]; then
    "$VENV/bin/keystone-manage" "${KCONF[@]}" credential_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
fi
if [[ ! -f "$STATE/synced-bootstrap" || "$(cat "$STATE/synced-bootstrap")" != "$KEYSTONE_URL" ]]; then
    log "keystone-manage bootstrap (admin, identity endpoint $KEYSTONE_URL)"
    "$VENV/bin/keystone-manage" "${KCONF[@]}" bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
        --bootstrap-admin-url "$KEYSTONE_URL" --bootstrap-public-url "$KEYSTONE_URL" \
        --bootstrap-internal-url "$KEYSTONE_URL" --bootstrap-region-id RegionOne \
        >>"$LOGS/db-sync.log" 2>&1
    echo "$KEYSTONE_URL" >"$STATE/synced-bootstrap"
fi

# gunicorn NAME PORT MODULE FILES: one WSGI application, WORKERS processes of THREADS threads.
# --keep-alive: gunicorn closes an idle kept-alive connection after 2 s by default, and a client
# that picks that connection from its pool at that moment gets "connection reset by peer"
# (nova-compute's and nova-scheduler's placement calls failed so, a boot with them). 300 s is
# longer than any of the clients here leaves a connection idle while under load.
gunicorn_() {
    local name=$1 port=$2 module=$3 watched=$4
    running "$name" || port_free "$port" || die "port $port (for $name) is taken by something else"
    start "$name" "$watched $HERE/wsgi_app.py" env PYTHONPATH="$HERE" "$VENV/bin/gunicorn" \
        --name "upstream-$name" --bind "127.0.0.1:$port" --workers "$WORKERS" \
        --worker-class gthread --threads "$THREADS" --keep-alive 300 --timeout 300 \
        --graceful-timeout 10 "wsgi_app:load(\"$module\")"
}
gunicorn_ keystone "$KEYSTONE_PORT" keystone.wsgi.api "$ETC/keystone/keystone.conf"
wait_http keystone "$KEYSTONE_URL"

export UPSTREAM_AUTH_URL="$KEYSTONE_URL" UPSTREAM_PASSWORD="$ADMIN_PASSWORD" \
    UPSTREAM_SERVICE_PASSWORD="$SERVICE_PASSWORD" UPSTREAM_IMAGE_URL="$GLANCE_URL" \
    UPSTREAM_PLACEMENT_URL="$PLACEMENT_URL" UPSTREAM_COMPUTE_URL="$NOVA_URL"
registered=0
"$PY" "$HERE/register.py" keystone || registered=$?
if ((registered == 3)); then
    # Each keystone worker caches the catalog and role assignments in its own memory, and a
    # change made through one worker does not reach the other's: restart it to start afresh.
    log "keystone's catalog or users changed: restarting keystone to drop its workers' caches"
    stop keystone
    gunicorn_ keystone "$KEYSTONE_PORT" keystone.wsgi.api "$ETC/keystone/keystone.conf"
    wait_http keystone "$KEYSTONE_URL"
elif ((registered != 0)); then
    die "register.py keystone failed"
fi

# --- 5. the other services ------------------------------------------------------------------------
gunicorn_ glance "$GLANCE_PORT" glance.wsgi.api "$ETC/glance/glance-api.conf $ETC/glance/glance-api-paste.ini"
gunicorn_ placement "$PLACEMENT_PORT" placement.wsgi.api "$ETC/placement/placement.conf"
running neutron-stub || port_free "$NEUTRON_STUB_PORT" || die "port $NEUTRON_STUB_PORT is taken"
start neutron-stub "$HERE/neutron_stub.py" "$PY" "$HERE/neutron_stub.py" --port "$NEUTRON_STUB_PORT"
wait_http glance "$GLANCE_URL/"
wait_http placement "$PLACEMENT_URL/"
wait_http neutron-stub "$NEUTRON_STUB_URL/"

gunicorn_ nova-api "$NOVA_PORT" nova.wsgi.osapi_compute "$ETC/nova/nova.conf $ETC/nova/api-paste.ini"
start nova-conductor "$ETC/nova/nova.conf" "$VENV/bin/nova-conductor" "${NCONF[@]}"
start nova-scheduler "$ETC/nova/nova.conf" "$VENV/bin/nova-scheduler" "${NCONF[@]}"
# The node count is on its command line: another UPSTREAM_NODES restarts it.
start nova-compute "$ETC/nova/nova.conf $HERE/fake_nodes.py" \
    env UPSTREAM_NODES="$NODES" PYTHONPATH="$HERE" "$PY" "$HERE/fake_nodes.py" "${NCONF[@]}"
wait_http nova-api "$NOVA_URL/"

# --- 6. cells, flavor, quota ----------------------------------------------------------------------
# nova lists a node as a hypervisor only once its host is mapped to a cell, and the host can be
# mapped only once nova-compute has recorded a node: discover, look, until all are there.
log "waiting for $NODES hypervisors (nova-compute records each node and its resource provider)"
deadline=$((SECONDS + 900))
until { "$VENV/bin/nova-manage" "${NCONF[@]}" cell_v2 discover_hosts >>"$LOGS/db-sync.log" 2>&1 \
        && "$PY" "$HERE/register.py" hypervisors "$NODES" 5; }; do
    running nova-compute || { tail -n 40 "$LOGS/nova-compute.log" >&2; die "nova-compute exited"; }
    ((SECONDS < deadline)) || die "fewer than $NODES hypervisors up after 900 s: $LOGS/nova-compute.log"
    sleep 3
done
"$PY" "$HERE/register.py" nova

# --- 7. clouds.yaml -------------------------------------------------------------------------------
(umask 077; cat >"$STATE/clouds.yaml" <<EOF
# Written by bench/upstream/up.sh: upstream OpenStack on this machine's loopback.
clouds:
  upstream:
    auth:
      auth_url: http://127.0.0.1:$KEYSTONE_PORT
      username: admin
      password: $ADMIN_PASSWORD
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: public
    identity_api_version: 3
EOF
)
STARTED_NOW=()  # all up: nothing to undo from here on
log "upstream is up: OS_CLIENT_CONFIG_FILE=$STATE/clouds.yaml, cloud 'upstream'"
log "  keystone $KEYSTONE_URL  glance $GLANCE_URL  placement $PLACEMENT_URL  nova $NOVA_URL ($NODES nodes)"
