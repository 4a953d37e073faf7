#!/usr/bin/env bash
# The README's second command: the test suite against real PostgreSQL, MariaDB and Redis.
# Arguments go to pytest (e.g. ops/test.sh -q tests/test_compose.py). Each test picks its own
# Redis database, queue and source database, so this runs beside the demo or a dev worker.
set -euo pipefail
# shellcheck source=ops/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$LITESHIFT_ROOT"

ensure_venv
ensure_services
ensure_mariadb
ensure_ruby_clients
exec .venv/bin/python -m pytest "$@"
