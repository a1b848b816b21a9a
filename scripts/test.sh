#!/usr/bin/env bash
# The whole test suite on real PostgreSQL and RabbitMQ: set up what is missing, then pytest.
# Extra arguments go to pytest (`scripts/test.sh tests/unit -x`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
.venv/bin/ruff check protocol fabric actors bench tests
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
