#!/usr/bin/env bash
# Bring the whole cloud up on this machine, in the foreground, and write ./admin-openrc.
# `source admin-openrc && openstack token issue` then works from another shell.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec .venv/bin/fabric up --openrc "$ROOT/admin-openrc" "$@"
