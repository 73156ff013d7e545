# landcloud — two commands: `make run` (a fresh machine to a running platform) and `make test`.
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
export LANDCLOUD_DATA_DIR ?= ./data

.PHONY: install run test system-deps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,demo]'
	@rm -f $(VENV)/.installed-*; touch $@

# The portal's front-end libraries (MapLibre GL JS, proj4, GeographicLib), served by the app; no build step.
NPM_STAMP := node_modules/.installed-$(shell sha1sum package-lock.json | cut -c1-12)
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@rm -f node_modules/.installed-*; touch $@

install: $(STAMP) $(NPM_STAMP)

run: $(STAMP) $(NPM_STAMP)
	$(BIN)/landcloud init
	$(BIN)/landcloud demo
	$(BIN)/landcloud serve --host 127.0.0.1 --port 8000

system-deps:
	@scripts/system-deps.sh

test: $(STAMP) $(NPM_STAMP) system-deps
	scripts/run-tests.sh

clean:
	rm -rf $(VENV) node_modules build dist *.egg-info .pytest_cache test-artifacts

# Benchmarks (benchmarks/README.md): pygeoapi lives in its own venv, never in the project venv.
# Its SQLiteGPKG provider loads mod_spatialite, so the venv is made from the first Python whose
# sqlite3 can load extensions (Debian's /usr/bin/python3 can; a pyenv build usually cannot).
ANCHORS := benchmarks/.venv-anchors
ANCHORS_PY ?= $(shell for p in /usr/bin/python3 python3; do $$p -c "import sqlite3; sqlite3.connect(':memory:').enable_load_extension(True)" 2>/dev/null && echo $$p && break; done)
.PHONY: bench bench-smoke bench-anchors

$(ANCHORS)/.installed:
	@test -x $(ANCHORS)/bin/python || $(or $(ANCHORS_PY),python3) -m venv $(ANCHORS)
	$(ANCHORS)/bin/pip install -q pygeoapi uvicorn starlette psycopg2-binary SQLAlchemy GeoAlchemy2
	@touch $@

bench-anchors: $(ANCHORS)/.installed

bench: $(STAMP) system-deps bench-anchors
	$(BIN)/python benchmarks/run.py --profile full

# CI: the anchors venv takes ~20 s from PyPI and the whole smoke run about a minute; it includes
# pygeoapi so that its configuration cannot rot unseen (a target whose every request fails fails the run).
bench-smoke: $(STAMP) system-deps bench-anchors
	timeout 600 $(BIN)/python benchmarks/run.py --profile smoke
