"""Bearer tokens to principals (src/roomcast/auth.py)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from support.tokens import MISSING, SECRET, claims

from roomcast.auth import DEFAULT_CACHE_SIZE, Principal, Role, TokenVerifier, mint_token
from roomcast.errors import ConfigError, RoomcastError, TokenExpired, Unauthenticated
from roomcast.rooms import TenantId

OTHER_SECRET = "another-secret-0123456789abcdef012345"
NOW = time.time()
EXP = int(NOW) + 3600


def private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())


def hs256(**changes: object) -> str:
    """A token of alice, a user of acme, expiring at ``EXP`` unless ``changes`` say otherwise."""
    return jwt.encode(claims(**{"exp": EXP, **changes}), SECRET, algorithm="HS256")


def refused(verifier: TokenVerifier, token: str, kind: type[RoomcastError]) -> str:
    """Verify ``token``, expect ``kind``, and return its message.

    Every refusal is also checked never to quote the token or any part of it.
    """
    with pytest.raises(kind) as caught:
        verifier.verify(token)
    message = caught.value.message
    assert str(caught.value) == message
    for part in [token, *token.split(".")]:
        if len(part) >= 4:
            assert part not in message
    return message


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(secret=SECRET)


# -- valid tokens ----------------------------------------------------------------


def test_a_valid_hs256_token_is_a_principal(verifier: TokenVerifier) -> None:
    principal = verifier.verify(hs256())
    assert principal == Principal("alice", TenantId("acme"), frozenset({Role.USER}), float(EXP))
    assert not principal.is_platform
    assert not principal.is_service
    assert not principal.is_super_admin
    assert principal.has(Role.USER)
    assert not principal.has(Role.TENANT_ADMIN)


def test_mint_token_makes_tokens_the_verifier_accepts(verifier: TokenVerifier) -> None:
    token = mint_token(SECRET, subject="bob", roles=["tenant_admin", "user"], tenant="acme")
    principal = verifier.verify(token)
    assert principal.subject == "bob"
    assert principal.tenant == "acme"
    assert principal.roles == {Role.TENANT_ADMIN, Role.USER}


def test_mint_token_claims() -> None:
    token = mint_token(
        SECRET,
        subject="svc",
        roles=("service",),
        ttl=60.0,
        issuer="https://id.example",
        audience="roomcast",
        now=1000.5,
    )
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_signature": False})
    assert decoded == {
        "sub": "svc",
        "roles": ["service"],
        "iat": 1000,
        "exp": 1060,
        "iss": "https://id.example",
        "aud": "roomcast",
    }
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


@pytest.mark.parametrize(
    ("algorithm", "key"),
    [("RS256", RSA_KEY), ("ES256", EC_KEY)],
)
def test_valid_public_key_tokens(
    algorithm: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
) -> None:
    verifier = TokenVerifier(public_key=public_pem(key))
    token = jwt.encode(claims(sub="carol", exp=EXP), private_pem(key), algorithm=algorithm)
    principal = verifier.verify(token)
    assert principal == Principal("carol", TenantId("acme"), frozenset({Role.USER}), float(EXP))


def test_a_verifier_from_a_public_key_file(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text(public_pem(EC_KEY))
    verifier = TokenVerifier.from_public_key_file(path, audience="roomcast")
    token = jwt.encode(claims(aud="roomcast"), private_pem(EC_KEY), algorithm="ES256")
    assert verifier.verify(token).subject == "alice"
    refused(
        verifier,
        jwt.encode(claims(aud="x"), private_pem(EC_KEY), algorithm="ES256"),
        Unauthenticated,
    )


def test_a_missing_public_key_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.pem"
    with pytest.raises(ConfigError) as caught:
        TokenVerifier.from_public_key_file(path)
    assert caught.value.message == f"cannot read JWT public key {path}: No such file or directory"


@pytest.mark.parametrize(
    ("secret", "public_key"),
    [(None, None), (SECRET, public_pem(EC_KEY))],
    ids=["neither", "both"],
)
def test_a_verifier_needs_exactly_one_key(secret: str | None, public_key: str | None) -> None:
    with pytest.raises(ConfigError, match="give exactly one of a JWT secret or a JWT public key"):
        TokenVerifier(secret=secret, public_key=public_key)


@pytest.mark.parametrize(
    ("roles", "tenant", "expected_roles", "expected_tenant"),
    [
        (["super_admin"], MISSING, {Role.SUPER_ADMIN}, None),
        (["service"], MISSING, {Role.SERVICE}, None),
        (["service"], "", {Role.SERVICE}, None),
        (["service"], "acme", {Role.SERVICE}, "acme"),
        (["super_admin", "user"], MISSING, {Role.SUPER_ADMIN, Role.USER}, None),
        (["super_admin"], "", {Role.SUPER_ADMIN}, None),
        (["super_admin"], None, {Role.SUPER_ADMIN}, None),
        # A super admin of a tenant is that tenant's admin, and no more.
        (["super_admin"], "acme", {Role.TENANT_ADMIN}, "acme"),
        (["super_admin", "tenant_admin"], "acme", {Role.TENANT_ADMIN}, "acme"),
        (["super_admin", "user"], "acme", {Role.TENANT_ADMIN, Role.USER}, "acme"),
        (["super_admin", "service"], "acme", {Role.TENANT_ADMIN, Role.SERVICE}, "acme"),
        (["user", "wizard", 3, None], "acme", {Role.USER}, "acme"),
        (["tenant_admin"], "Globex_2-x", {Role.TENANT_ADMIN}, "Globex_2-x"),
    ],
)
def test_roles_and_tenants(
    verifier: TokenVerifier,
    roles: list[object],
    tenant: object,
    expected_roles: set[Role],
    expected_tenant: str | None,
) -> None:
    principal = verifier.verify(hs256(roles=roles, tenant_id=tenant))
    assert principal.roles == expected_roles
    assert principal.tenant == expected_tenant
    assert principal.is_platform is (expected_tenant is None)


def test_platform_principals() -> None:
    verifier = TokenVerifier(secret=SECRET)
    admin = verifier.verify(hs256(roles=["super_admin"], tenant_id=MISSING))
    service = verifier.verify(hs256(sub="backend", roles=["service"], tenant_id=MISSING))
    assert admin.is_super_admin
    assert not admin.is_service
    assert service.is_service
    assert not service.is_super_admin


def test_a_super_admin_of_a_tenant_is_read_as_its_tenant_admin(verifier: TokenVerifier) -> None:
    # The token of the hardening issue: its tenant_id was ignored, which made
    # it a platform super admin able to read and act in every tenant.
    principal = verifier.verify(hs256(sub="sam", roles=["super_admin"], tenant_id="acme"))
    assert principal == Principal(
        "sam", TenantId("acme"), frozenset({Role.TENANT_ADMIN}), float(EXP)
    )
    assert not principal.is_super_admin
    assert not principal.is_platform
    assert not principal.has(Role.SUPER_ADMIN)
    assert principal.has(Role.TENANT_ADMIN)


def test_only_a_tenant_less_principal_is_a_super_admin() -> None:
    # A principal built by hand, not read from a token, may carry both: the
    # property still refuses it the platform.
    scoped = Principal("sam", TenantId("acme"), frozenset({Role.SUPER_ADMIN}), float(EXP))
    platform = Principal("root", None, frozenset({Role.SUPER_ADMIN}), float(EXP))
    assert not scoped.is_super_admin
    assert platform.is_super_admin


def test_a_token_within_the_leeway_is_accepted() -> None:
    verifier = TokenVerifier(secret=SECRET, leeway=60.0)
    # Built now: a module-level time would fall out of the leeway in a long run.
    assert verifier.verify(hs256(exp=int(time.time()) - 10)).subject == "alice"


# -- refused tokens ----------------------------------------------------------------


def test_an_expired_token(verifier: TokenVerifier) -> None:
    message = refused(verifier, hs256(exp=int(NOW) - 10), TokenExpired)
    assert message == "token has expired"


def test_token_expired_is_unauthenticated() -> None:
    assert issubclass(TokenExpired, Unauthenticated)


def test_a_token_signed_with_another_secret(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), OTHER_SECRET, algorithm="HS256")
    assert refused(verifier, token, Unauthenticated) == "token signature does not verify"


@pytest.mark.parametrize(
    ("algorithm", "key", "other"),
    [("RS256", RSA_KEY, OTHER_RSA_KEY), ("ES256", EC_KEY, OTHER_EC_KEY)],
)
def test_a_token_signed_with_another_private_key(
    algorithm: str,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    other: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
) -> None:
    verifier = TokenVerifier(public_key=public_pem(key))
    token = jwt.encode(claims(), private_pem(other), algorithm=algorithm)
    message = refused(verifier, token, Unauthenticated)
    assert message == "token signature does not verify"


def test_a_tampered_payload_does_not_verify(verifier: TokenVerifier) -> None:
    header, _, signature = hs256().split(".")
    forged = base64.urlsafe_b64encode(json.dumps(claims(roles=["super_admin"])).encode()).rstrip(
        b"="
    )
    token = f"{header}.{forged.decode()}.{signature}"
    assert refused(verifier, token, Unauthenticated) == "token signature does not verify"


def unsigned(payload: dict[str, object], alg: str = "none") -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': alg, 'typ': 'JWT'})}.{part(payload)}."


ALG_NONE_TOKENS = [
    pytest.param(jwt.encode(claims(), "", algorithm="none"), id="pyjwt-none"),
    pytest.param(unsigned(claims()), id="hand-none"),
    pytest.param(unsigned(claims(), alg="None"), id="hand-None"),
    pytest.param(unsigned(claims(roles=["super_admin"], tenant_id=MISSING)), id="hand-admin"),
]


@pytest.mark.parametrize("token", ALG_NONE_TOKENS)
def test_unsigned_tokens_are_refused_by_an_hs256_verifier(token: str) -> None:
    message = refused(TokenVerifier(secret=SECRET), token, Unauthenticated)
    assert message in (
        "token algorithm is not accepted",
        "token is malformed or cannot be verified",
    )


@pytest.mark.parametrize("token", ALG_NONE_TOKENS)
def test_unsigned_tokens_are_refused_by_a_public_key_verifier(token: str) -> None:
    verifier = TokenVerifier(public_key=public_pem(RSA_KEY))
    message = refused(verifier, token, Unauthenticated)
    assert message in (
        "token algorithm is not accepted",
        "token is malformed or cannot be verified",
    )


def test_an_hs256_token_is_refused_by_a_public_key_verifier() -> None:
    # The key confusion attack: HMAC keyed with the (public) PEM text.
    verifier = TokenVerifier(public_key=public_pem(RSA_KEY))
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert refused(verifier, token, Unauthenticated) == "token algorithm is not accepted"


def test_an_rs256_token_is_refused_by_an_hs256_verifier(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), private_pem(RSA_KEY), algorithm="RS256")
    assert refused(verifier, token, Unauthenticated) == "token algorithm is not accepted"


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30"])
def test_malformed_tokens(verifier: TokenVerifier, token: str) -> None:
    assert refused(verifier, token, Unauthenticated) == "token is malformed or cannot be verified"


@pytest.mark.parametrize(
    ("audience", "issuer", "changes", "message"),
    [
        ("roomcast", None, {"aud": "other"}, "token audience is not accepted"),
        ("roomcast", None, {"aud": ["a", "b"]}, "token audience is not accepted"),
        ("roomcast", None, {}, "token has no 'aud' claim"),
        (None, "https://id.example", {"iss": "https://evil"}, "token issuer is not accepted"),
        (None, "https://id.example", {}, "token has no 'iss' claim"),
    ],
)
def test_audience_and_issuer_when_configured(
    audience: str | None, issuer: str | None, changes: dict[str, object], message: str
) -> None:
    verifier = TokenVerifier(secret=SECRET, audience=audience, issuer=issuer)
    assert refused(verifier, hs256(**changes), Unauthenticated) == message


@pytest.mark.parametrize(
    ("audience", "issuer", "changes"),
    [
        ("roomcast", None, {"aud": "roomcast"}),
        ("roomcast", None, {"aud": ["web", "roomcast"]}),
        (None, "https://id.example", {"iss": "https://id.example"}),
        ("roomcast", "https://id.example", {"aud": "roomcast", "iss": "https://id.example"}),
        (None, None, {"aud": "anything", "iss": "anyone"}),  # not checked unless configured
    ],
)
def test_audience_and_issuer_accepted(
    audience: str | None, issuer: str | None, changes: dict[str, object]
) -> None:
    verifier = TokenVerifier(secret=SECRET, audience=audience, issuer=issuer)
    assert verifier.verify(hs256(**changes)).subject == "alice"


TENANT_REQUIRED = "token has no 'tenant_id' claim; only super_admin and service tokens may omit it"
BAD_ID = "must be 1-64 characters of A-Z a-z 0-9 _ -"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sub": MISSING}, "token has no 'sub' claim"),
        ({"exp": MISSING}, "token has no 'exp' claim"),
        ({"exp": "tomorrow"}, "token is malformed or cannot be verified"),
        ({"sub": 42}, "token is malformed or cannot be verified"),
        ({"sub": "alice.smith"}, f"token claim sub: {BAD_ID}"),
        ({"sub": "a b"}, f"token claim sub: {BAD_ID}"),
        ({"sub": "x" * 65}, f"token claim sub: {BAD_ID}"),
        ({"sub": ""}, f"token claim sub: {BAD_ID}"),
        ({"roles": MISSING}, "token claim 'roles' must be a list of roles"),
        ({"roles": "user"}, "token claim 'roles' must be a list of roles"),
        (
            {"roles": []},
            "token claim 'roles' has no roomcast role (super_admin, tenant_admin, user, service)",
        ),
        (
            {"roles": ["admin", "wizard", "USER"]},
            "token claim 'roles' has no roomcast role (super_admin, tenant_admin, user, service)",
        ),
        ({"tenant_id": MISSING}, TENANT_REQUIRED),
        ({"tenant_id": ""}, TENANT_REQUIRED),
        ({"tenant_id": None}, TENANT_REQUIRED),
        ({"tenant_id": MISSING, "roles": ["tenant_admin"]}, TENANT_REQUIRED),
        ({"tenant_id": 7}, "token claim 'tenant_id' must be a string"),
        ({"tenant_id": "ac.me"}, f"token claim tenant_id: {BAD_ID}"),
        ({"tenant_id": "x" * 65}, f"token claim tenant_id: {BAD_ID}"),
        # A super admin's tenant_id is read like anyone's, not skipped.
        ({"roles": ["super_admin"], "tenant_id": 7}, "token claim 'tenant_id' must be a string"),
        (
            {"roles": ["super_admin"], "tenant_id": ["acme"]},
            "token claim 'tenant_id' must be a string",
        ),
        ({"roles": ["super_admin"], "tenant_id": "ac.me"}, f"token claim tenant_id: {BAD_ID}"),
        ({"roles": ["super_admin"], "tenant_id": "x" * 65}, f"token claim tenant_id: {BAD_ID}"),
    ],
)
def test_claim_checks(verifier: TokenVerifier, changes: dict[str, object], message: str) -> None:
    assert refused(verifier, hs256(**changes), Unauthenticated) == message


def test_an_expired_token_is_refused_before_its_claims(verifier: TokenVerifier) -> None:
    token = hs256(exp=int(NOW) - 10, roles=[])
    assert refused(verifier, token, TokenExpired) == "token has expired"


# -- cache -------------------------------------------------------------------------


def test_a_verified_token_is_cached(verifier: TokenVerifier) -> None:
    token = hs256()
    first = verifier.verify(token, now=NOW)
    assert verifier.verify(token, now=NOW) is first
    assert verifier.verify(token, now=EXP - 1) is first


def test_a_cached_token_past_its_exp_is_expired(verifier: TokenVerifier) -> None:
    token = hs256()
    verifier.verify(token, now=NOW)
    with pytest.raises(TokenExpired, match=r"^token has expired$"):
        verifier.verify(token, now=EXP)


def test_the_leeway_applies_to_cached_tokens() -> None:
    verifier = TokenVerifier(secret=SECRET, leeway=30.0)
    token = hs256()
    principal = verifier.verify(token, now=NOW)
    assert verifier.verify(token, now=EXP + 29) is principal
    with pytest.raises(TokenExpired):
        verifier.verify(token, now=EXP + 30)


def test_the_cache_is_bounded() -> None:
    verifier = TokenVerifier(secret=SECRET, cache_size=1)
    first_token, second_token = hs256(sub="a1"), hs256(sub="a2")
    first = verifier.verify(first_token)
    second = verifier.verify(second_token)
    assert verifier.verify(second_token) is second
    again = verifier.verify(first_token)  # evicted: verified afresh
    assert again == first
    assert again is not first
    assert DEFAULT_CACHE_SIZE == 10_000


def test_a_token_presented_once_is_not_remembered(verifier: TokenVerifier) -> None:
    token = hs256()
    first = verifier.verify(token, now=NOW, remember=False)
    again = verifier.verify(token, now=NOW)  # verified afresh, then cached
    assert again == first
    assert again is not first
    assert verifier.verify(token, now=NOW) is again


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        pytest.param(hs256(roles=[]), Unauthenticated, id="claims"),
        pytest.param(
            jwt.encode(claims(), OTHER_SECRET, algorithm="HS256"), Unauthenticated, id="forged"
        ),
        pytest.param(hs256(exp=int(NOW) - 10), TokenExpired, id="expired"),
    ],
)
def test_refused_tokens_are_not_cached(
    verifier: TokenVerifier, token: str, kind: type[RoomcastError], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Refusing twice proves nothing: a cached refusal refuses too. What a
    # cache would skip is the decoding, so count it: each presentation of a
    # refused token is verified afresh.
    decoded: list[str] = []
    decode = jwt.decode

    def counted(jwt_text: str, *args: Any, **options: Any) -> Any:
        decoded.append(jwt_text)
        return decode(jwt_text, *args, **options)

    monkeypatch.setattr(jwt, "decode", counted)
    for presented in (1, 2):
        refused(verifier, token, kind)
        assert len(decoded) == presented, "the refusal was answered from a cache"
