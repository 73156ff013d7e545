"""The portal's message catalogue: Chinese by default, English available.

Texts live in `messages/<lang>.json`, never in templates or scripts; the page embeds the
catalogue of its language so the scripts translate with the same keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

LANGS: tuple[str, ...] = ("zh", "en")
DEFAULT_LANG = "zh"
LANG_COOKIE = "landcloud_lang"
_DIR = Path(__file__).parent / "messages"


@cache
def catalogue(lang: str) -> dict[str, str]:
    """Every message of a language; unknown languages get the default's."""
    if lang not in LANGS:
        lang = DEFAULT_LANG
    return json.loads((_DIR / f"{lang}.json").read_text(encoding="utf-8"))


def negotiate(query: str | None, cookie: str | None) -> str:
    """The page language: an explicit choice (?lang=), then the remembered one, then Chinese.

    The browser's Accept-Language is deliberately not followed: the portal serves Chinese land
    bureaus, and many of their machines run English-language browsers.
    """
    for choice in (query, cookie):
        if choice and choice.lower()[:2] in LANGS:
            return choice.lower()[:2]
    return DEFAULT_LANG


def translator(lang: str) -> Callable[..., str]:
    """t(key, **values): the message in `lang`, else in Chinese, else the key itself (visible, never a crash)."""
    own, fallback = catalogue(lang), catalogue(DEFAULT_LANG)

    def t(key: str, **values: object) -> str:
        text = own.get(key) or fallback.get(key) or key
        return text.format(**values) if values else text

    return t
