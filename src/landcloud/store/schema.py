"""Imports every package's table module so the shared MetaData is complete."""

from landcloud.access import tables as access_tables  # noqa: F401
from landcloud.catalog import tables as catalog_tables  # noqa: F401
from landcloud.ingest import tables as ingest_tables  # noqa: F401
from landcloud.publish import tables as publish_tables  # noqa: F401
from landcloud.store import tables as store_tables  # noqa: F401
