"""JWT → :class:`Principal`: who is calling, in which tenant, with which roles.

Claims (docs/grpc.md has the full table):

- ``sub``: user or service id, 1-64 characters of ``A-Z a-z 0-9 _ -`` (it is
  placed in room names such as ``user.{sub}.private``);
- ``tenant_id``: same grammar; required except for platform-level principals
  (role ``super_admin`` or ``service``, without a tenant). Only a tenant-less
  ``super_admin`` administers the platform: a ``super_admin`` token with a
  ``tenant_id`` is read as that tenant's ``tenant_admin`` (its roles lose
  ``super_admin`` and gain ``tenant_admin``, and ``connection.confirmed``
  shows them so). This happens here, once, so that no check further on can
  mistake it for a platform operator;
- ``roles``: a non-empty list drawn from ``super_admin``, ``tenant_admin``,
  ``user``, ``service`` (other strings are ignored);
- ``exp``: required; ``iss`` and ``aud`` are checked when configured.

Verifying a signature costs tens of microseconds, more than the rest of a
publish, so a verified token is cached (bounded) until it expires.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import jwt

from .errors import ConfigError, InvalidArgument, TokenExpired, Unauthenticated
from .rooms import TenantId, parse_segment

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "MIN_SECRET_BYTES",
    "Principal",
    "Role",
    "TokenVerifier",
    "mint_token",
]

DEFAULT_CACHE_SIZE = 10_000
MIN_SECRET_BYTES = 32
# Asymmetric algorithms accepted with a public key; "none" is never accepted.
_PUBLIC_KEY_ALGORITHMS = ["RS256", "ES256"]


class Role(StrEnum):
    """Roles a token may carry."""

    SUPER_ADMIN = "super_admin"
    TENANT_ADMIN = "tenant_admin"
    USER = "user"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        subject: the ``sub`` claim (a user id or a service name).
        tenant: the caller's tenant, or None for platform-level principals.
        roles: the roomcast roles the token carries.
        expires_at: the token's ``exp`` (seconds since the epoch).
    """

    subject: str
    tenant: TenantId | None
    roles: frozenset[Role]
    expires_at: float

    @property
    def is_platform(self) -> bool:
        """A platform-level principal belongs to no tenant and names tenants."""
        return self.tenant is None

    @property
    def is_service(self) -> bool:
        """Whether the caller is a backend service."""
        return Role.SERVICE in self.roles

    @property
    def is_super_admin(self) -> bool:
        """Whether the caller administers the whole platform.

        Only a tenant-less ``super_admin`` does. Tokens never yield a
        ``super_admin`` of a tenant (it becomes the tenant's admin when its
        claims are read), but a principal built by hand may carry both.
        """
        return Role.SUPER_ADMIN in self.roles and self.tenant is None

    def has(self, role: Role) -> bool:
        """Whether the caller carries ``role``."""
        return role in self.roles


def _principal_from_claims(claims: dict[str, object]) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str):
        raise Unauthenticated("token has no 'sub' claim")
    try:
        parse_segment(subject, field_name="sub")
    except InvalidArgument as error:
        raise Unauthenticated(f"token claim {error.message}") from error
    raw_roles = claims.get("roles")
    if not isinstance(raw_roles, list):
        raise Unauthenticated("token claim 'roles' must be a list of roles")
    known = {role.value for role in Role}
    roles = frozenset(Role(r) for r in raw_roles if isinstance(r, str) and r in known)
    if not roles:
        raise Unauthenticated(
            "token claim 'roles' has no roomcast role (super_admin, tenant_admin, user, service)"
        )
    raw_tenant = claims.get("tenant_id")
    tenant: TenantId | None = None
    if raw_tenant not in (None, ""):
        if not isinstance(raw_tenant, str):
            raise Unauthenticated("token claim 'tenant_id' must be a string")
        try:
            tenant = TenantId(parse_segment(raw_tenant, field_name="tenant_id"))
        except InvalidArgument as error:
            raise Unauthenticated(f"token claim {error.message}") from error
    elif not (Role.SUPER_ADMIN in roles or Role.SERVICE in roles):
        raise Unauthenticated(
            "token has no 'tenant_id' claim; only super_admin and service tokens may omit it"
        )
    if tenant is not None and Role.SUPER_ADMIN in roles:
        # A super admin of one tenant administers that tenant, nothing more.
        # Reading it as the tenant's admin here, once, leaves no check further
        # on (policy, own rooms, operators' verbs) that could forget the tenant.
        roles = (roles - {Role.SUPER_ADMIN}) | {Role.TENANT_ADMIN}
    expires_at = claims.get("exp")
    if not isinstance(expires_at, int | float):
        raise Unauthenticated("token has no 'exp' claim")
    return Principal(subject, tenant, roles, float(expires_at))


class TokenVerifier:
    """Verifies bearer tokens and caches the principals they stand for.

    Args:
        secret: shared secret for HS256 (give this or ``public_key``).
        public_key: PEM public key for RS256/ES256.
        issuer: when set, the ``iss`` claim must equal it.
        audience: when set, the ``aud`` claim must contain it.
        cache_size: how many verified tokens to keep.
        leeway: seconds of clock skew tolerated on ``exp``.
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        leeway: float = 0.0,
    ) -> None:
        if (secret is None) == (public_key is None):
            raise ConfigError("give exactly one of a JWT secret or a JWT public key")
        self._key: str | bytes
        if secret is not None:
            if len(secret.encode()) < MIN_SECRET_BYTES:
                # RFC 7518, 3.2: "A key of the same size as the hash output
                # (for instance, 256 bits for "HS256") or larger MUST be used".
                raise ConfigError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes long")
            self._key, self._algorithms = secret, ["HS256"]
        else:
            assert public_key is not None
            self._key, self._algorithms = public_key, _PUBLIC_KEY_ALGORITHMS
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def from_public_key_file(cls, path: Path, **options: object) -> TokenVerifier:
        """A verifier for RS256/ES256 tokens signed by the key at ``path``.

        Raises:
            ConfigError: when the file cannot be read.
        """
        try:
            pem = path.read_text()
        except OSError as error:
            raise ConfigError(f"cannot read JWT public key {path}: {error.strerror}") from error
        return cls(public_key=pem, **options)  # type: ignore[arg-type]

    def verify(self, token: str, *, now: float | None = None, remember: bool = True) -> Principal:
        """The principal ``token`` stands for.

        Args:
            token: the bearer token.
            now: the time to check expiry against (seconds since the epoch).
            remember: cache the principal for the token's next use. Callers
                that present a token once (a WebSocket connection, for its
                whole life) pass False: caching their tokens would hold
                every connection's token in memory for nothing.

        Raises:
            Unauthenticated: the token is malformed, forged, or fails a claim check.
            TokenExpired: the token's ``exp`` has passed.
        """
        now = time.time() if now is None else now
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + self._leeway > now:
                return cached
            del self._cache[token]
            raise TokenExpired("token has expired")
        principal = self._decode(token)
        if not remember:
            return principal
        self._cache[token] = principal
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal

    def _decode(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._audience is not None,
                },
            )
        except jwt.ExpiredSignatureError as error:
            raise TokenExpired("token has expired") from error
        except jwt.InvalidAudienceError as error:
            raise Unauthenticated("token audience is not accepted") from error
        except jwt.InvalidIssuerError as error:
            raise Unauthenticated("token issuer is not accepted") from error
        except jwt.MissingRequiredClaimError as error:
            raise Unauthenticated(f"token has no '{error.claim}' claim") from error
        except jwt.InvalidAlgorithmError as error:
            raise Unauthenticated("token algorithm is not accepted") from error
        except jwt.InvalidSignatureError as error:
            raise Unauthenticated("token signature does not verify") from error
        except jwt.PyJWTError as error:
            # Malformed tokens, and keys of the other algorithm (InvalidKeyError
            # is no InvalidTokenError). pyjwt's own text can quote token parts;
            # say only what kind of failure it is.
            raise Unauthenticated("token is malformed or cannot be verified") from error
        return _principal_from_claims(claims)


def mint_token(
    secret: str,
    *,
    subject: str,
    roles: Iterable[str],
    tenant: str | None = None,
    ttl: float = 3600.0,
    issuer: str | None = None,
    audience: str | None = None,
    now: float | None = None,
) -> str:
    """Sign an HS256 token (for ``roomcast token``, ``--dev`` and tests)."""
    issued = time.time() if now is None else now
    claims: dict[str, object] = {
        "sub": subject,
        "roles": list(roles),
        "iat": int(issued),
        "exp": int(issued + ttl),
    }
    if tenant:
        claims["tenant_id"] = tenant
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")
