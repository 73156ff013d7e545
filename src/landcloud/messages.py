"""Bilingual messages shared by every package.

A person reads every refusal this platform gives, in Chinese first; a machine reads the code.
Keeping the pair in one small value type means no layer has to invent its own error shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Message:
    """A machine-readable code with Chinese and English text."""

    code: str
    zh: str
    en: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.zh} / {self.en}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LandcloudError(Exception):
    """An error a user caused and can fix; carries a bilingual message.

    `status` is the HTTP status the API answers with; the CLI maps these to exit code 2
    (usage) or 1 (rejected) depending on the subclass.
    """

    status: int = 400

    def __init__(self, code: str, zh: str, en: str, **details: Any) -> None:
        self.message = Message(code, zh, en)
        self.details = details
        super().__init__(str(self.message))

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "error": self.message.code,
            "message_zh": self.message.zh,
            "message_en": self.message.en,
            # OGC API clients read code/description (OGC API - Common exception body)
            "code": self.message.code,
            "description": self.message.en,
        }
        if self.details:
            body["details"] = self.details
        return body


class NotFound(LandcloudError):
    status = 404


class Conflict(LandcloudError):
    status = 409


class Forbidden(LandcloudError):
    status = 403
