"""The platform secret: signs bearer tokens and encrypts TOTP secrets at rest.

Set LANDCLOUD_SECRET_KEY on every application server of a deployment (they share it and hold
no other state); a single-machine install gets one generated into the data folder (mode 0600).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path

from cryptography.fernet import Fernet

from landcloud.config import Settings


def secret_key(settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


def derived_key(settings: Settings, purpose: str) -> bytes:
    """A separate 32-byte key per purpose, so one leaked use does not expose the others."""
    return hashlib.sha256(f"{purpose}\x00{secret_key(settings)}".encode()).digest()


def fernet(settings: Settings) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derived_key(settings, "totp-at-rest")))
