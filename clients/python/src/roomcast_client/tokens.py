"""Where the bearer token comes from, and the one claim the client reads from it."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import TypeAlias

__all__ = ["TokenSource", "bearer", "tenant_of"]

TokenSource: TypeAlias = str | Callable[[], str]
"""A JWT, or a function returning the current one (called before every call,
so a long-lived client can hand out fresh tokens as old ones expire)."""


def bearer(source: TokenSource) -> dict[str, str]:
    """The call metadata that authenticates with the token from ``source``."""
    token = source() if callable(source) else source
    return {"authorization": f"Bearer {token}"}


def tenant_of(source: TokenSource) -> str | None:
    """The ``tenant_id`` claim of the token, read without verifying it.

    The server verifies every token; the client only needs to know which
    tenant it acts in to decide which rooms it can name when it resumes a
    subscription. ``None`` when the token has no tenant (a platform-level
    caller) or cannot be read.
    """
    token = source() if callable(source) else source
    parts = token.split(".")
    if len(parts) != 3:
        return None
    body = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(body))
    except (binascii.Error, ValueError):
        return None
    tenant = claims.get("tenant_id") if isinstance(claims, dict) else None
    return tenant if isinstance(tenant, str) and tenant else None
