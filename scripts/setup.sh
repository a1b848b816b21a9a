#!/usr/bin/env bash
# Make this machine ready to run the fabric: system packages, PostgreSQL, RabbitMQ, libvirt, the
# virtualenv at .venv. Idempotent: each step checks before acting, so re-running is cheap.
# Runs as root on Debian/Ubuntu; needs no systemd (daemons are started directly).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '[setup] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

wait_port() {
    local port=$1 what=$2
    for _ in $(seq 1 120); do port_open "$port" && return 0; sleep 0.5; done
    log "$what did not open port $port"; return 1
}

ensure_postgres() {
    if port_open 5432; then return; fi
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    if ! port_open 5432; then
        local version cluster
        version=$(ls /etc/postgresql | sort -V | tail -1)
        cluster=$(ls "/etc/postgresql/$version" | head -1)
        log "starting PostgreSQL $version/$cluster"
        pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start || true
        wait_port 5432 PostgreSQL
    fi
}

ensure_rabbitmq() {
    if port_open 5672; then return; fi
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    if ! port_open 5672; then
        log "starting RabbitMQ"
        rabbitmq-server -detached >/dev/null 2>&1 || true
        wait_port 5672 RabbitMQ
        rabbitmqctl await_startup >/dev/null 2>&1 || true
    fi
}

# The database account the fabric uses: a superuser-free role that may create databases
# (the test suite makes one per run). Trust-auth machines need no password; others get one
# written to /etc/fabric/fabric.toml, which the fabric reads by default.
ensure_database_role() {
    local psql=(runuser -u postgres -- psql -h 127.0.0.1 -qtAX)
    command -v runuser >/dev/null || psql=(psql -U postgres -h 127.0.0.1 -qtAX)
    if [[ -f /etc/fabric/fabric.toml ]] || [[ -n "${FABRIC_DATABASE_URL:-}" ]]; then return; fi
    if psql -U postgres -h 127.0.0.1 -qtAX -c 'select 1' >/dev/null 2>&1; then
        return  # trust auth as postgres: the defaults work as they are
    fi
    local password
    password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    log "creating the PostgreSQL role 'fabric'"
    "${psql[@]}" -c "do \$\$ begin
        if not exists (select from pg_roles where rolname = 'fabric') then
            create role fabric login createdb password '$password';
        else alter role fabric password '$password'; end if; end \$\$;" postgres
    "${psql[@]}" -c "select 1 from pg_database where datname = 'fabric'" postgres | grep -q 1 \
        || "${psql[@]}" -c "create database fabric owner fabric" postgres
    mkdir -p /etc/fabric
    umask 077
    printf 'database_url = "postgresql://fabric:%s@127.0.0.1:5432/fabric"\n' "$password" > /etc/fabric/fabric.toml
}

# libvirt with qemu, for the compute agent's libvirt driver, and the headers pip needs to build
# libvirt-python (so before ensure_venv). With no init system the daemons are started here;
# a PID file whose process is alive means the daemon runs.
daemon_running() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# What udev does on a booted Debian, and nothing does here: /dev/kvm belongs to the kvm group,
# which libvirt's qemu user is in. Left root-only, libvirt finds KVM usable as root but not for
# qemu, and probes qemu's capabilities again at every domain start (~45 s each time).
kvm_device_ok() { [[ ! -c /dev/kvm ]] || ! getent group kvm >/dev/null || [[ $(stat -c %G:%a /dev/kvm) == kvm:660 ]]; }

ensure_libvirt() {
    if kvm_device_ok && daemon_running /run/virtlogd.pid && daemon_running /run/libvirtd.pid && [[ -S /run/libvirt/libvirt-sock ]] \
        && command -v qemu-img >/dev/null && pkg-config --exists libvirt 2>/dev/null; then
        return
    fi
    apt_install libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils libvirt-dev pkg-config
    # The fabric wires its own networks; libvirt's NAT network `default` would put a bridge,
    # an address and firewall rules in the root namespace, so it is not started with libvirtd.
    rm -f /etc/libvirt/qemu/networks/autostart/default.xml
    if ! kvm_device_ok; then
        log "giving /dev/kvm to the kvm group"
        chgrp kvm /dev/kvm
        chmod 0660 /dev/kvm
    fi
    if ! daemon_running /run/virtlogd.pid; then
        log "starting virtlogd"
        virtlogd -d
    fi
    if ! daemon_running /run/libvirtd.pid; then
        log "starting libvirtd"
        libvirtd -d
    fi
    for _ in $(seq 1 60); do [[ -S /run/libvirt/libvirt-sock ]] && return 0; sleep 0.5; done
    log "libvirtd did not open /run/libvirt/libvirt-sock"; return 1
}

# The network agent's tools: dnsmasq (DHCP per network), nft (security groups, router NAT),
# ip (namespaces for dnsmasq), and busybox for the DHCP client and web server that stand for
# VMs in the plumbing tests.
ensure_networking() {
    command -v dnsmasq >/dev/null && command -v nft >/dev/null && command -v ip >/dev/null \
        && command -v busybox >/dev/null && command -v curl >/dev/null && return
    apt_install dnsmasq-base nftables iproute2 busybox-static curl
}

# The cloud's nameserver: PowerDNS with its PostgreSQL backend (the fabric runs its own
# pdns_server, from a config dir in its state dir, on its own port), dig for people and tests,
# dnsperf for the DNS benchmark. Debian's pdns-server also brings its own pdns.service (port 53,
# bind backend), which nothing of ours uses: right after installing, one that systemd or the
# package's scripts started is stopped, by systemctl or by its PID file, never by name.
ensure_dns() {
    local fresh=no
    dpkg-query -W -f='${Status}' pdns-server 2>/dev/null | grep -q "install ok installed" || fresh=yes
    apt_install pdns-server pdns-backend-pgsql bind9-dnsutils dnsperf
    [[ $fresh == yes ]] || return 0
    if [[ -d /run/systemd/system ]]; then
        log "disabling Debian's pdns.service (the fabric runs its own PowerDNS)"
        systemctl disable --now pdns.service >/dev/null 2>&1 || true
    fi
    if daemon_running /run/pdns/pdns.pid; then
        log "stopping the pdns_server the package started (pid $(cat /run/pdns/pdns.pid))"
        kill "$(cat /run/pdns/pdns.pid)"
    fi
}

# The dashboard's browser tests drive Debian's chromium through Playwright (whose own browser
# downloads are not used: `playwright install` needs the network at test time).
ensure_browser() {
    command -v chromium >/dev/null && return
    apt_install chromium
}

# axe-core, which the dashboard's accessibility test injects into each page, from npm into a
# cache directory that git ignores (never copied into the repository, never a CDN at test time).
# npm and node come from Debian.
ensure_axe() {
    [[ -f .cache/axe-core/node_modules/axe-core/axe.min.js ]] && return
    command -v npm >/dev/null || apt_install npm
    log "installing axe-core into .cache/axe-core"
    mkdir -p .cache/axe-core
    npm install --prefix .cache/axe-core --no-audit --no-fund --silent "axe-core@4" >/dev/null
}

ensure_venv() {
    local python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
        apt_install python3 python3-venv
        python=/usr/bin/python3
    fi
    if [[ ! -x .venv/bin/python ]]; then
        "$python" -m venv .venv 2>/dev/null || { apt_install python3-venv; rm -rf .venv; "$python" -m venv .venv; }
    fi
    # Reinstall only when the declared dependencies changed.
    local stamp=.venv/.installed digest
    digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [[ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]]; then
        log "installing the project into .venv"
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e '.[test]'
        echo "$digest" > "$stamp"
    fi
}

if [[ $(id -u) -ne 0 ]]; then log "run as root (it installs packages and starts daemons)"; exit 1; fi
command -v curl >/dev/null || apt_install curl ca-certificates
ensure_postgres
ensure_rabbitmq
ensure_database_role
ensure_libvirt
ensure_networking
ensure_dns
ensure_browser
ensure_axe
ensure_venv
log "ready"
