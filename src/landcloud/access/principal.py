"""Who is asking: the one value every route passes to the gate."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from landcloud.access.roles import DATA_ROLES

PrincipalKind = Literal["anonymous", "user", "system"]


@dataclass(frozen=True)
class Principal:
    """A caller. `system` is the local operator at the server's shell (the CLI), never an HTTP caller.

    `scopes` narrows what a personal API token may do ("read", "submit", "manage"); None means
    the full rights of the user's roles (a signed-in session or bearer token).
    """

    kind: PrincipalKind
    user_id: str | None = None
    username: str | None = None
    unit: str | None = None
    unit_kind: str | None = None  # "administrative" | "department"
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] | None = None
    via: str | None = None  # "bearer" | "session" | "api_token" | "oidc" | "cli"
    ip: str | None = None
    # when the credential stops counting (a token's or session's expiry): a decision remembered for it
    # (`access.decisions`) ends then too; None: it does not expire (the public, the CLI)
    until: datetime | None = None

    @property
    def actor(self) -> str:
        if self.kind == "anonymous":
            return "anonymous"
        if self.kind == "system":
            return self.username or "system"
        return self.username or self.user_id or "?"

    def has_role(self, *roles: str) -> bool:
        return self.kind == "system" or bool(self.roles & set(roles))

    def allows(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes

    @property
    def reads_data(self) -> bool:
        """Separated administrators read no data; a token without "read" reads none either."""
        if self.kind == "system":
            return True
        if self.kind == "anonymous":
            return True  # the public: open, public datasets only (the gate decides)
        return bool(self.roles & DATA_ROLES) and self.allows("read")


ANONYMOUS = Principal("anonymous")


def system_principal(name: str = "cli") -> Principal:
    return Principal("system", username=f"system:{name}", via="cli")
