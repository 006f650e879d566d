"""Authentication over gRPC: every bad credential gets UNAUTHENTICATED, and
the status never echoes the credential back.

The shared server verifies HS256 tokens; dedicated servers here verify RS256
and ES256 tokens against a public key, and the ``aud`` and ``iss`` claims.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from support.grpc import Metadata, bearer
from support.server import ServerProcess, serving
from support.tokens import MISSING, SERVICE, claims
from support.waiting import UNIT

from roomcast.auth import mint_token
from roomcast.v1 import admin_pb2, admin_pb2_grpc, realtime_pb2, realtime_pb2_grpc

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(
    header: dict[str, Any], body: dict[str, Any], key: bytes | None, digest: str = "sha256"
) -> str:
    """A JWT put together by hand: an HMAC keyed with ``key``, or unsigned.

    pyjwt refuses to sign some of these (a PEM as an HMAC key, for one).
    """
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
    if key is None:
        return f"{signing_input}."
    signature = hmac.new(key, signing_input.encode(), getattr(hashlib, digest)).digest()
    return f"{signing_input}.{_b64(signature)}"


async def call(kind: str, channel: grpc.aio.Channel, metadata: Metadata) -> Any:
    """Make one call of ``kind``; a stream is read to its first message."""
    if kind == "Publish":
        return await realtime_pb2_grpc.RealtimeServiceStub(channel).Publish(
            realtime_pb2.PublishRequest(room="global.auth", event="e"),
            metadata=metadata,
            timeout=5 * UNIT,
        )
    if kind == "Subscribe":
        stream = realtime_pb2_grpc.RealtimeServiceStub(channel).Subscribe(
            realtime_pb2.SubscribeRequest(rooms=["global.auth"]),
            metadata=metadata,
            timeout=5 * UNIT,
        )
        first = await stream.read()
        stream.cancel()
        return first
    assert kind == "ListRooms"
    return await admin_pb2_grpc.AdminServiceStub(channel).ListRooms(
        admin_pb2.ListRoomsRequest(prefix="global."), metadata=metadata, timeout=5 * UNIT
    )


async def refused(kind: str, channel: grpc.aio.Channel, metadata: Metadata) -> str:
    """Make one call that must fail with UNAUTHENTICATED; its details."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(kind, channel, metadata)
    details = caught.value.details() or ""
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, details
    assert "Traceback" not in details
    # Neither the credential nor any part of it comes back.
    for _, value in metadata:
        credential = value.partition(" ")[2]
        assert all(part not in details for part in credential.split(".") if len(part) >= 4)
    return details


RPC_KINDS = ["Publish", "Subscribe", "ListRooms"]


@dataclass(frozen=True)
class BadCredential:
    """Metadata that must not authenticate, and what the refusal says."""

    name: str
    metadata: Callable[[str], Metadata]  # from the server's secret
    says: str


def _token(secret: str, **changes: Any) -> Metadata:
    """A platform service's token (``changes`` to its claims), as metadata."""
    return bearer(jwt.encode(claims(SERVICE, **changes), secret, algorithm="HS256"))


BAD_CREDENTIALS = [
    BadCredential("no-metadata", lambda s: (), "missing 'authorization"),
    BadCredential(
        "basic-scheme",
        lambda s: (("authorization", "Basic YmFja2VuZDpodW50ZXIy"),),
        "'Bearer <token>'",
    ),
    BadCredential("bearer-empty", lambda s: (("authorization", "Bearer "),), "'Bearer <token>'"),
    BadCredential("bearer-only", lambda s: (("authorization", "Bearer"),), "'Bearer <token>'"),
    BadCredential("garbage", lambda s: bearer("garbage-token-text-0123456789"), "malformed"),
    BadCredential("three-garbage-parts", lambda s: bearer("abcd.efgh.ijkl"), "malformed"),
    BadCredential(
        "bad-signature",
        lambda s: _token("another-secret-0123456789abcdef0123456789"),
        "signature",
    ),
    BadCredential(
        "expired",
        lambda s: bearer(mint_token(s, subject="backend", roles=["service"], ttl=-60)),
        "expired",
    ),
    BadCredential(
        "alg-none",
        lambda s: bearer(handmade({"alg": "none", "typ": "JWT"}, claims(SERVICE), None)),
        "algorithm",
    ),
    BadCredential(
        "alg-HS512",
        lambda s: bearer(handmade({"alg": "HS512"}, claims(SERVICE), s.encode(), "sha512")),
        "algorithm",
    ),
    BadCredential(
        "user-without-tenant",
        lambda s: bearer(mint_token(s, subject="alice", roles=["user"])),
        "tenant_id",
    ),
    BadCredential(
        "tenant-admin-without-tenant",
        lambda s: bearer(mint_token(s, subject="boss", roles=["tenant_admin"])),
        "tenant_id",
    ),
    BadCredential(
        "tenant-malformed", lambda s: _token(s, roles=["user"], tenant_id="acme corp"), "tenant_id"
    ),
    BadCredential("roles-missing", lambda s: _token(s, roles=MISSING), "roles"),
    BadCredential("roles-not-a-list", lambda s: _token(s, roles="service"), "roles"),
    BadCredential("roles-empty", lambda s: _token(s, roles=[]), "roles"),
    BadCredential("roles-unknown-only", lambda s: _token(s, roles=["admin", "owner"]), "roles"),
    BadCredential("sub-missing", lambda s: _token(s, sub=MISSING), "'sub'"),
    BadCredential("sub-with-space", lambda s: _token(s, sub="back end"), "sub"),
    BadCredential("sub-with-dot", lambda s: _token(s, sub="back.end"), "sub"),
    BadCredential("sub-non-ascii", lambda s: _token(s, sub="bäckend"), "sub"),
    BadCredential("sub-too-long", lambda s: _token(s, sub="b" * 65), "sub"),
    BadCredential("exp-missing", lambda s: _token(s, exp=MISSING), "'exp'"),
    BadCredential(
        "not-yet-valid", lambda s: _token(s, nbf=int(time.time()) + 3600), "cannot be verified"
    ),
]


@pytest.mark.parametrize("kind", RPC_KINDS)
@pytest.mark.parametrize("bad", BAD_CREDENTIALS, ids=[bad.name for bad in BAD_CREDENTIALS])
async def test_bad_credential_is_unauthenticated(
    server: ServerProcess, channel: grpc.aio.Channel, bad: BadCredential, kind: str
) -> None:
    details = await refused(kind, channel, bad.metadata(server.secret))
    assert bad.says in details


@pytest.mark.parametrize("kind", RPC_KINDS)
async def test_good_credential_is_accepted(
    server: ServerProcess, channel: grpc.aio.Channel, kind: str
) -> None:
    # The control for the table above: the same calls with a valid token succeed.
    response = await call(kind, channel, _token(server.secret))
    if kind == "Publish":
        assert response.offset >= 1
    elif kind == "Subscribe":
        assert list(response.subscribed.rooms) == ["global.auth"]
    else:
        assert ("", "global.auth") in [(r.tenant_id, r.name) for r in response.rooms]


async def test_scheme_is_case_insensitive(server: ServerProcess, channel: grpc.aio.Channel) -> None:
    token = mint_token(server.secret, subject="backend", roles=["service"])
    response = await call("Publish", channel, (("authorization", f"bearer {token}"),))
    assert response.offset >= 1


async def test_expired_token_is_refused_after_it_was_accepted(
    server: ServerProcess, channel: grpc.aio.Channel
) -> None:
    # The server caches verified tokens; the cache must still honour exp.
    token = mint_token(server.secret, subject="backend", roles=["service"], ttl=2)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert (await call("Publish", channel, bearer(token))).offset >= 1
    await asyncio.sleep(expires - time.time() + UNIT / 10)  # until the token has expired
    details = await refused("Publish", channel, bearer(token))
    assert details == "token has expired"


# -- public keys -------------------------------------------------------------


def public_pem(key: PrivateKey) -> bytes:
    """The PEM (SubjectPublicKeyInfo) of ``key``'s public half."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class KeyServer:
    """A server that verifies tokens with the public half of ``key``."""

    process: ServerProcess
    key: PrivateKey
    pem: bytes


def _key_server(path: Path, key: PrivateKey) -> Iterator[KeyServer]:
    pem = public_pem(key)
    path.write_bytes(pem)
    with serving("--jwt-public-key", str(path), secret=None) as process:
        yield KeyServer(process, key, pem)


@pytest.fixture(scope="module")
def rs256_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyServer]:
    """A server verifying RS256 tokens."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    yield from _key_server(tmp_path_factory.mktemp("rs256") / "public.pem", key)


@pytest.fixture(scope="module")
def es256_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyServer]:
    """A server verifying ES256 tokens."""
    key = ec.generate_private_key(ec.SECP256R1())
    yield from _key_server(tmp_path_factory.mktemp("es256") / "public.pem", key)


async def test_rs256_token_signed_with_the_key_is_accepted(rs256_server: KeyServer) -> None:
    token = jwt.encode(claims(SERVICE), rs256_server.key, algorithm="RS256")
    async with rs256_server.process.channel() as channel:
        for kind in RPC_KINDS:
            assert await call(kind, channel, bearer(token))


def _rs256_forgeries(server: KeyServer) -> list[tuple[str, str]]:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return [
        ("another RSA key", jwt.encode(claims(SERVICE), other, algorithm="RS256")),
        # The classic confusion attack: HMAC keyed with the (public) PEM text.
        (
            "HS256 keyed with the public key",
            handmade({"alg": "HS256"}, claims(SERVICE), server.pem),
        ),
        ("HS256 with some secret", mint_token("x" * 32, subject="a", roles=["service"])),
        ("alg none", handmade({"alg": "none"}, claims(SERVICE), None)),
    ]


async def test_rs256_forgeries_are_unauthenticated(rs256_server: KeyServer) -> None:
    async with rs256_server.process.channel() as channel:
        for name, token in _rs256_forgeries(rs256_server):
            for kind in RPC_KINDS:
                details = await refused(kind, channel, bearer(token))
                assert "token" in details, name


async def test_hs256_with_public_key_says_algorithm_not_accepted(rs256_server: KeyServer) -> None:
    token = handmade({"alg": "HS256", "typ": "JWT"}, claims(SERVICE), rs256_server.pem)
    async with rs256_server.process.channel() as channel:
        details = await refused("Publish", channel, bearer(token))
    assert details == "token algorithm is not accepted"


async def test_es256_token_signed_with_the_key_is_accepted(es256_server: KeyServer) -> None:
    token = jwt.encode(claims(SERVICE), es256_server.key, algorithm="ES256")
    async with es256_server.process.channel() as channel:
        response = await call("Publish", channel, bearer(token))
    assert response.offset >= 1


async def test_es256_token_signed_with_another_key_is_unauthenticated(
    es256_server: KeyServer,
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(claims(SERVICE), other, algorithm="ES256")
    async with es256_server.process.channel() as channel:
        details = await refused("Publish", channel, bearer(token))
    assert details == "token signature does not verify"


@pytest.mark.parametrize(
    ("server_kind", "alg"), [("rs256_server", "ES256"), ("es256_server", "RS256")]
)
async def test_token_of_the_other_asymmetric_algorithm_is_unauthenticated(
    request: pytest.FixtureRequest, server_kind: str, alg: str
) -> None:
    server: KeyServer = request.getfixturevalue(server_kind)
    signer: PrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if alg == "ES256"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    token = jwt.encode(claims(SERVICE), signer, algorithm=alg)
    async with server.process.channel() as channel:
        await refused("Publish", channel, bearer(token))


# -- audience and issuer -----------------------------------------------------

AUDIENCE = "roomcast"
ISSUER = "https://issuer.test"


@pytest.fixture(scope="module")
def claims_server() -> Iterator[ServerProcess]:
    """A server that requires aud=roomcast and iss=https://issuer.test."""
    with serving("--jwt-audience", AUDIENCE, "--jwt-issuer", ISSUER) as process:
        yield process


@pytest.mark.parametrize(
    ("aud", "iss"),
    [
        (AUDIENCE, ISSUER),
        (["other", AUDIENCE], ISSUER),
    ],
    ids=["aud-and-iss", "aud-list-containing-roomcast"],
)
async def test_accepted_audience_and_issuer(
    claims_server: ServerProcess, aud: str | list[str], iss: str
) -> None:
    token = jwt.encode(claims(SERVICE, aud=aud, iss=iss), claims_server.secret, algorithm="HS256")
    async with claims_server.channel() as channel:
        for kind in RPC_KINDS:
            assert await call(kind, channel, bearer(token))


@pytest.mark.parametrize(
    ("aud", "iss", "says"),
    [
        ("other", ISSUER, "token audience is not accepted"),
        (["other", "another"], ISSUER, "token audience is not accepted"),
        (MISSING, ISSUER, "token has no 'aud' claim"),
        (AUDIENCE, "https://evil.test", "token issuer is not accepted"),
        (AUDIENCE, MISSING, "token has no 'iss' claim"),
    ],
    ids=["wrong-aud", "wrong-aud-list", "missing-aud", "wrong-iss", "missing-iss"],
)
@pytest.mark.parametrize("kind", RPC_KINDS)
async def test_refused_audience_and_issuer(
    claims_server: ServerProcess,
    kind: str,
    aud: str | list[str],  # or MISSING
    iss: str,  # or MISSING
    says: str,
) -> None:
    token = jwt.encode(claims(SERVICE, aud=aud, iss=iss), claims_server.secret, algorithm="HS256")
    async with claims_server.channel() as channel:
        details = await refused(kind, channel, bearer(token))
    assert details == says
