#!/usr/bin/env bash
# The whole suite on both stores: a throwaway PostGIS cluster unless LANDCLOUD_TEST_PG_DSN is given.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${LANDCLOUD_TEST_PG_DSN:-}" ]; then
  pgdir=$(mktemp -d /tmp/landcloud-pg.XXXXXX)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  trap 'scripts/pg-cluster.sh stop "$pgdir"' EXIT
  if dsn=$(scripts/pg-cluster.sh start "$pgdir" "$port"); then
    export LANDCLOUD_TEST_PG_DSN="$dsn"
  else
    echo "could not start a PostGIS cluster; PostGIS tests will be skipped unless LANDCLOUD_REQUIRE_POSTGIS=1" >&2
  fi
fi
.venv/bin/ruff check src tests
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadgroup --durations=20 "$@"
