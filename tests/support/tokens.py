"""Tokens in tests: the secret test servers share, JWT claims, real tokens and their principals."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from roomcast.auth import Principal, TokenVerifier, mint_token

__all__ = ["MISSING", "SECRET", "SERVICE", "USER", "claims", "principal", "token", "user"]

#: The JWT secret of test servers and verifiers (HS256 wants 32 bytes or more).
SECRET: Final = "test-secret-0123456789abcdef0123456789"
#: A claim's value that leaves the claim out of :func:`claims`.
MISSING: Final[Any] = object()
#: Who holds a token: alice, a user of acme …
USER: Final[Mapping[str, object]] = {"sub": "alice", "roles": ["user"], "tenant_id": "acme"}
#: … or backend, a platform service (no tenant).
SERVICE: Final[Mapping[str, object]] = {"sub": "backend", "roles": ["service"]}


def claims(who: Mapping[str, object] = USER, /, **changes: object) -> dict[str, object]:
    """The claims of a token ``who`` holds, issued now and valid for an hour.

    ``changes`` replace or add claims; a claim changed to :data:`MISSING` is left out.
    """
    now = int(time.time())
    values = {**who, "iat": now, "exp": now + 3600, **changes}
    return {key: value for key, value in values.items() if value is not MISSING}


def token(sub: str, *roles: str, tenant: str | None = "acme", ttl: float = 3600) -> str:
    """A token signed with :data:`SECRET` for ``sub`` (a user unless ``roles`` say otherwise)."""
    return mint_token(SECRET, subject=sub, roles=roles or ("user",), tenant=tenant, ttl=ttl)


def principal(sub: str, *roles: str, tenant: str | None = "acme") -> Principal:
    """The principal of a real :func:`token` valid for an hour (tenant None: platform-level)."""
    return TokenVerifier(secret=SECRET).verify(token(sub, *roles, tenant=tenant))


def user(sub: str, tenant: str = "acme") -> Principal:
    """A user's principal, read from a real token valid for an hour."""
    return principal(sub, "user", tenant=tenant)
