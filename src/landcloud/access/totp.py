"""TOTP (RFC 6238), the second factor every administrator role needs.

Secrets are stored encrypted with a key derived from the platform secret (secrets.fernet), so
a copy of the database alone does not yield them.
"""

from __future__ import annotations

from datetime import datetime

import pyotp
from cryptography.fernet import InvalidToken

from landcloud import clock
from landcloud.access.secrets import fernet
from landcloud.config import Settings
from landcloud.messages import LandcloudError

ISSUER = "landcloud 国土资源云"
DIGITS = 6
INTERVAL = 30
WINDOW = 1  # one step either side: clocks of phones drift


def new_secret() -> str:
    """A fresh base32 secret (160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, username: str) -> str:
    """The otpauth:// URI an authenticator app reads (usually from a QR code)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).provisioning_uri(name=username, issuer_name=ISSUER)


def code_at(secret: str, at: datetime | None = None) -> str:
    """The code for a moment (for tests and for showing the operator that enrolment works)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).at(at or clock.now())


def verify(secret: str, code: str | None, at: datetime | None = None) -> bool:
    """Whether the code is valid at `at` (default now), one step either side; constant-time compare."""
    if not code:
        return False
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isdigit():
        return False
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).verify(code, for_time=at or clock.now(), valid_window=WINDOW)


def encrypt_secret(settings: Settings, secret: str) -> str:
    return fernet(settings).encrypt(secret.encode()).decode()


def decrypt_secret(settings: Settings, token: str) -> str:
    try:
        return fernet(settings).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise LandcloudError(
            "totp.undecryptable",
            "无法解密已登记的动态口令密钥（平台密钥已更换？）；请由安全管理员重新登记",
            "the enrolled TOTP secret cannot be decrypted (was the platform secret changed?); ask the security "
            "administrator to enrol it again",
        ) from exc
