#!/usr/bin/env bash
# Bring the whole cloud up on this machine, in the foreground, and write ./admin-openrc.
# `source admin-openrc && openstack token issue` then works from another shell.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# The test guest, registered by `fabric up` as the public image `test-guest` (cached: a rebuild
# only when the kernel or busybox changed). Without it the cloud still comes up, with no image.
if ! bash "$ROOT/scripts/build-test-guest.sh" >/dev/null; then
    echo "[up] the test guest could not be built: no test-guest image will be registered" >&2
fi
cd "$ROOT"
exec .venv/bin/fabric up --openrc "$ROOT/admin-openrc" "$@"
