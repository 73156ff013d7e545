"""The access policy as pure logic: who may see which dataset, which rows, which fields.

No I/O here: the gate (access/gate.py) gathers the facts (the caller's unit and its place in
the hierarchy, the owner's ancestors, the caller's active grants) and this module decides.
Keeping the decision pure makes the whole matrix testable without a database.

Rules, in order:
- the local operator (CLI) sees everything;
- a public edition (公开版, a desensitised dataset derived from a master) is seen by everyone
  in its published version only; the owner unit's staff also see versions pending approval;
  an edition nothing of which is published yet is the owner unit's alone;
- the public (anonymous callers) sees published editions and nothing else: never a master
  dataset, even one marked open and public (the public sees editions, never the master);
- open, public datasets are seen by every signed-in user, every row; sensitive fields stay masked;
- administrators of the separated roles read no data (beyond what the public sees);
- a public (not open) dataset is seen by every signed-in user;
- an unconditionally shared dataset is seen by every signed-in user, every row;
- internal data: the owner unit sees all rows; its ancestors see the rows inside their own
  jurisdiction (a province all of them); its descendants the rows inside theirs;
- sensitive data: the owner unit only;
- and, for every dataset, active grants (approved applications) add rows and fields.
Rows are matched by the dataset's jurisdiction field (administrative-code prefix) or, where it
has none, by the jurisdiction's boundary. Sensitive fields are masked unless the caller is a
data administrator or reviewer of the owner unit, or a grant names the field.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import shapely

from landcloud.access.principal import Principal
from landcloud.access.roles import DATA_ADMIN, REVIEWER
from landcloud.store.features import RowFilter


@dataclass(frozen=True)
class UnitView:
    """The caller's unit and its place in the hierarchy."""

    code: str
    kind: str  # "administrative" | "department"
    prefix: str  # jurisdiction prefix: province 2 digits, prefecture 4, county 6
    ancestors: frozenset[str] = frozenset()
    boundary: bytes | None = None


@dataclass(frozen=True)
class DatasetView:
    id: str
    owner_unit: str
    owner_ancestors: frozenset[str]
    security_level: str
    sharing_class: str
    openness: str
    jurisdiction_field: str | None
    sensitive_fields: frozenset[str]
    edition_of: str | None = None  # a public edition: its master
    published_version: int | None = None  # a public edition: the approved version

    @property
    def is_public(self) -> bool:
        return self.openness == "open" and self.security_level == "public"


@dataclass(frozen=True)
class GrantView:
    id: str
    fields: frozenset[str] | None  # None: every field (sensitive ones masked)
    region: str | None  # administrative-code prefix; None: the whole dataset
    region_boundary: bytes | None = None


@dataclass(frozen=True)
class Clause:
    """One reason to see rows: which rows, which fields, which sensitive fields in clear."""

    rows: RowFilter | None  # None: every row
    fields: frozenset[str] | None  # None: every field
    unmasked: frozenset[str] = frozenset()
    basis: str = ""


@dataclass(frozen=True)
class Access:
    visible: bool
    clauses: tuple[Clause, ...] = ()
    sensitive: frozenset[str] = frozenset()
    audited: bool = True
    reason_zh: str = ""
    reason_en: str = ""
    bases: tuple[str, ...] = field(default=())
    version: int | None = None  # the one version the caller may read (a published edition's); None: any

    @property
    def public(self) -> bool:
        """What anyone may see: a published edition read as the public reads it."""
        return self.bases == (PUBLIC_EDITION,)

    @property
    def rows(self) -> RowFilter | None:
        """The union of the clauses' rows: None when any clause admits every row."""
        if any(c.rows is None for c in self.clauses):
            return None
        prefixes: list[tuple[str, str]] = []
        areas: list[bytes] = []
        for c in self.clauses:
            assert c.rows is not None
            prefixes += [p for p in c.rows.prefixes if p not in prefixes]
            areas += [a for a in c.rows.areas if a not in areas]
        return RowFilter(tuple(prefixes), tuple(areas))

    @property
    def unrestricted(self) -> bool:
        return self.rows is None and all(c.fields is None for c in self.clauses) and not self.masked_fields()

    def masked_fields(self) -> frozenset[str]:
        clear = frozenset().union(*(c.unmasked for c in self.clauses)) if self.clauses else frozenset()
        return self.sensitive - clear

    def shape(self, props: dict[str, Any], geom: shapely.Geometry | None = None) -> dict[str, Any] | None:
        """The properties this caller may see of one row (fields dropped, values masked), None if none.

        Each clause is tested on its own, so a row seen through a narrow grant gets that grant's
        fields only, even when another clause shows other rows in full.
        """
        matching = [c for c in self.clauses if _clause_matches(c, props, geom)]
        if not matching:
            return None
        allowed: set[str] | None = set()
        unmasked: set[str] = set()
        for c in matching:
            unmasked |= c.unmasked
            if c.fields is None:
                allowed = None
            elif allowed is not None:
                allowed |= c.fields
        out = {}
        for key, value in props.items():
            if allowed is not None and key not in allowed:
                continue
            out[key] = mask(value) if key in self.sensitive and key not in unmasked else value
        return out

    @property
    def field_names(self) -> frozenset[str] | None:
        """Fields any clause shows (None: all)."""
        names: set[str] = set()
        for c in self.clauses:
            if c.fields is None:
                return None
            names |= c.fields
        return frozenset(names)


def _clause_matches(c: Clause, props: dict[str, Any], geom: shapely.Geometry | None) -> bool:
    if c.rows is None or c.rows.matches_props(props):
        return True
    if c.rows.areas and geom is not None:
        return any(shapely.intersects(area, geom) for area in c.rows.area_geometries())
    return False


def mask(value: Any) -> Any:
    """2301**********1234: keep enough to recognise, never enough to use."""
    if value is None:
        return None
    text = str(value)
    if len(text) > 8:
        return text[:4] + "*" * (len(text) - 8) + text[-4:]
    if len(text) > 2:
        return text[0] + "*" * (len(text) - 2) + text[-1]
    return "*" * len(text)


PUBLIC_EDITION = "public_edition"
DENIED_ZH = "无权访问该数据集"
DENIED_EN = "no access to this dataset"


def _jurisdiction_rows(ds: DatasetView, unit: UnitView) -> RowFilter:
    if ds.jurisdiction_field:
        return RowFilter(prefixes=((ds.jurisdiction_field, unit.prefix),))
    if unit.boundary is not None:
        return RowFilter(areas=(unit.boundary,))
    return RowFilter()


def _grant_clauses(ds: DatasetView, grants: Iterable[GrantView]) -> list[Clause]:
    out = []
    for g in grants:
        if g.region is None:
            rows: RowFilter | None = None
        elif ds.jurisdiction_field:
            rows = RowFilter(prefixes=((ds.jurisdiction_field, g.region),))
        elif g.region_boundary is not None:
            rows = RowFilter(areas=(g.region_boundary,))
        else:
            rows = RowFilter()
        unmasked = (g.fields or frozenset()) & ds.sensitive_fields
        out.append(Clause(rows, g.fields, unmasked, f"grant:{g.id}"))
    return out


def decide(principal: Principal, ds: DatasetView, unit: UnitView | None, grants: Iterable[GrantView] = ()) -> Access:
    """What `principal` may read of dataset `ds`."""
    sensitive = ds.sensitive_fields
    if principal.kind == "system":
        return Access(True, (Clause(None, None, sensitive, "system"),), sensitive, audited=not ds.is_public, bases=("system",))
    privileged = (
        unit is not None
        and unit.code == ds.owner_unit
        and principal.has_role(DATA_ADMIN, REVIEWER)
        and principal.allows("read")
    )
    clear = sensitive if privileged else frozenset()
    if ds.edition_of is not None:
        return _decide_edition(principal, ds, unit)
    if principal.kind == "anonymous" or not principal.reads_data:
        # the public sees editions, never the master; so do the separated administrators and tokens without "read"
        return Access(False, reason_zh=DENIED_ZH, reason_en=DENIED_EN)
    if ds.is_public:
        return Access(True, (Clause(None, None, clear, "public"),), sensitive, audited=False, bases=("public",))
    if not principal.reads_data or unit is None:
        return Access(False, reason_zh=DENIED_ZH, reason_en=DENIED_EN)
    clauses: list[Clause] = []
    if ds.security_level == "public" or (ds.sharing_class == "unconditional" and ds.security_level != "sensitive"):
        clauses.append(Clause(None, None, clear, "shared"))
    elif unit.kind == "administrative":
        if unit.code == ds.owner_unit:
            clauses.append(Clause(None, None, clear, "owner"))
        elif ds.security_level == "internal" and unit.code in ds.owner_ancestors:
            clauses.append(Clause(_jurisdiction_rows(ds, unit), None, frozenset(), "ancestor"))
        elif ds.security_level == "internal" and ds.owner_unit in unit.ancestors:
            clauses.append(Clause(_jurisdiction_rows(ds, unit), None, frozenset(), "descendant"))
    clauses += _grant_clauses(ds, grants)
    if not clauses:
        return Access(False, reason_zh=DENIED_ZH, reason_en=DENIED_EN)
    return Access(True, tuple(clauses), sensitive, audited=True, bases=tuple(c.basis for c in clauses))


def _decide_edition(principal: Principal, ds: DatasetView, unit: UnitView | None) -> Access:
    """An edition is public data once approved; before that (and its pending versions) the owner unit's."""
    if principal.kind == "user" and principal.reads_data and unit is not None and unit.code == ds.owner_unit:
        return Access(True, (Clause(None, None, frozenset(), "edition_owner"),), ds.sensitive_fields, audited=False,
                      bases=("edition_owner",))
    if ds.published_version is not None:
        return Access(True, (Clause(None, None, frozenset(), PUBLIC_EDITION),), ds.sensitive_fields, audited=False,
                      bases=(PUBLIC_EDITION,), version=ds.published_version)
    return Access(False, reason_zh=DENIED_ZH, reason_en=DENIED_EN)
