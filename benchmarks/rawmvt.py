"""The raw tile query of the tile anchors (`run.py` without HTTP, `rawtiles.py` behind HTTP): one module, so both
anchors run the very same statement, and `rawtiles.py` loads in the anchors venv without the harness."""

RAW_MVT_COLUMN = {"dltb": "DLBM", "osm": "landuse"}  # the one attribute the raw tiles carry
RAW_MVT = (
    "WITH q AS (SELECT t.\"{column}\" AS attr, ST_AsMVTGeom(ST_Transform(ST_SetSRID(t.geom, 4326), 3857), ST_TileEnvelope(%(z)s, %(x)s, %(y)s), "
    "4096, 64, true) AS geom FROM \"{table}\" t WHERE t.geom && ST_SetSRID(ST_Transform(ST_TileEnvelope(%(z)s, %(x)s, %(y)s), 4326), 4490)) "
    "SELECT ST_AsMVT(q.*, 'layer', 4096, 'geom') FROM q"
)

# The settings landcloud's connections run with (store/db.py, `POSTGRES_SESSION`), given to both anchors: a
# full z8 tile was planned with a parallel worker that cost more than it saved (26 vs 17 ms on this machine), and
# the floor should be the raw query at its best.
RAW_SETTINGS = "SET jit = off; SET max_parallel_workers_per_gather = 0"
