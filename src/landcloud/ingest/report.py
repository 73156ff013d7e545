"""The quality report of a submission: findings of the rules, and the verdict.

Findings are plain data so that the same report is written as JSON, shown as HTML and kept
with the accepted version. Errors reject a submission; warnings are accepted and kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one feature (or on the whole submission when `feature_index` is None).

    `location` is a (lon, lat) point in EPSG:4490 where the problem is, when there is one,
    so the portal can put it on the map.
    """

    rule: str
    severity: Severity
    message_zh: str
    message_en: str
    feature_index: int | None = None
    feature_key: str | None = None
    location: tuple[float, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.location is not None:
            data["location"] = [self.location[0], self.location[1]]
        return data
