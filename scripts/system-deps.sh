#!/usr/bin/env bash
# Debian packages the tests need (PostGIS server; Chromium and a CJK font for the portal's browser
# tests; SpatiaLite for the benchmark's GeoPackage anchor and wrk for its one-core runs); installed only when
# missing and running as root.
set -euo pipefail
need=()
ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1 || need+=(postgresql postgresql-15-postgis-3)
test -x /usr/bin/chromium || need+=(chromium)
test -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc || need+=(fonts-wqy-microhei)
# the benchmark's pygeoapi GeoPackage anchor: a Python whose sqlite3 loads SpatiaLite (Debian's does)
ls /usr/lib/*/mod_spatialite.so >/dev/null 2>&1 || need+=(libsqlite3-mod-spatialite)
# the benchmark's one-core runs of cached tiles (benchmarks/saturate.py): a load generator that outruns one core
command -v wrk >/dev/null 2>&1 || need+=(wrk)
/usr/bin/python3 -c "import ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${need[*]} (run as root or install them; the PostGIS and browser tests need them)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
