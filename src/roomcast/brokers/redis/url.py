"""Where the Redis broker connects: the ``--broker`` URL, parsed into a value.

Pure: no I/O. Accepted forms::

    redis://[[user]:password@]host[:port][/db][?prefix=NAME]
    rediss://...                                   (TLS)
    redis+cluster://[[user]:password@]host:port[,host:port...][?prefix=NAME]
    rediss+cluster://...                           (TLS)

A cluster URL names one or more nodes to discover the cluster from; a
cluster has only database 0. ``prefix`` (default ``roomcast``) starts every
key and channel name, so several deployments can share one Redis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from ...errors import ConfigError

__all__ = ["DEFAULT_PORT", "DEFAULT_PREFIX", "SCHEMES", "RedisTarget", "parse_redis_url"]

DEFAULT_PORT = 6379
DEFAULT_PREFIX = "roomcast"
SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")
# A prefix must not open a hash tag of its own ({...} decides a key's cluster
# slot) and must not need escaping in a PSUBSCRIBE glob.
_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed broker URL.

    Attributes:
        cluster: a Redis Cluster (sharded pub/sub) rather than one server.
        nodes: ``(host, port)`` of the server, or of the cluster's seed nodes.
        db: the database number (always 0 for a cluster).
        username: ACL user, if any.
        password: password, if any (never shown in ``repr``).
        tls: connect with TLS (``rediss``).
        prefix: the first part of every key and channel name.
    """

    cluster: bool
    nodes: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    prefix: str = DEFAULT_PREFIX


def _node(text: str, url: str) -> tuple[str, int]:
    host, colon, port_text = text.rpartition(":")
    if not colon:
        host, port_text = text, str(DEFAULT_PORT)
    host = host.strip("[]")  # an IPv6 literal
    if not host:
        raise ConfigError(f"broker {url!r}: a host is missing")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"broker {url!r}: {port_text!r} is not a port") from None
    if not 0 < port < 65536:
        raise ConfigError(f"broker {url!r}: {port} is not a TCP port")
    return host, port


def parse_redis_url(url: str) -> RedisTarget:
    """Parse a ``redis://``, ``rediss://`` or ``redis[s]+cluster://`` URL.

    Raises:
        ConfigError: naming what is wrong (the password is never repeated).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    shown = url.replace(parts.password, "***") if parts.password else url
    if scheme not in SCHEMES:
        raise ConfigError(f"broker {shown!r}: not a Redis URL (schemes: {', '.join(SCHEMES)})")
    cluster = scheme.endswith("+cluster")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        username = unquote(user_text) or None
        password = unquote(password_text) if colon else None
    if not hosts:
        raise ConfigError(f"broker {shown!r}: a host is missing")
    nodes = tuple(_node(text, shown) for text in hosts.split(","))
    if len(nodes) > 1 and not cluster:
        raise ConfigError(f"broker {shown!r}: several hosts need redis+cluster://")
    path = parts.path.strip("/")
    try:
        db = int(path) if path else 0
    except ValueError:
        raise ConfigError(f"broker {shown!r}: {path!r} is not a database number") from None
    if cluster and db != 0:
        raise ConfigError(f"broker {shown!r}: a Redis Cluster has only database 0")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"prefix"})
    if unknown:
        raise ConfigError(f"broker {shown!r}: unknown option {unknown[0]!r} (known: prefix)")
    prefix = query.get("prefix", [DEFAULT_PREFIX])[-1]
    if _PREFIX.fullmatch(prefix) is None:
        raise ConfigError(
            f"broker {shown!r}: prefix {prefix!r} must be 1-64 characters of A-Z a-z 0-9 _ . : -"
        )
    return RedisTarget(
        cluster=cluster,
        nodes=nodes,
        db=db,
        username=username,
        password=password,
        tls=scheme.startswith("rediss"),
        prefix=prefix,
    )
