"""The room policy: which kinds of room exist, where they live, who may do what.

A policy is an ordered list of :class:`RoomRule`; the first rule whose
pattern matches a room name decides. The built-in rules (:data:`BUILTIN_RULES`)
are the defaults; an operator's TOML file may replace a built-in rule (same
pattern) or add rules, which are tried before the built-ins.

Tenant isolation does not depend on the rules: :meth:`Policy.check` refuses
any caller of one tenant on a room of another before a rule is consulted, so
no policy file can open one tenant's rooms to another.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from .auth import Principal, Role
from .errors import ConfigError, Forbidden, InvalidArgument, InvalidRoom
from .rooms import Room, RoomName, TenantId, parse_room_name, parse_segment

__all__ = [
    "BUILTIN_RULES",
    "DEFAULT_HISTORY_SIZE",
    "DEFAULT_HISTORY_TTL",
    "Action",
    "Policy",
    "ResolvedRoom",
    "RoomRule",
    "Scope",
    "Who",
    "own_rooms",
]

DEFAULT_HISTORY_SIZE = 100
DEFAULT_HISTORY_TTL = 300.0


class Scope(StrEnum):
    """Where rooms of a rule live."""

    PLATFORM = "platform"  # belongs to no tenant; platform operators only
    GLOBAL = "global"  # belongs to no tenant; shared across tenants
    TENANT = "tenant"  # inside a tenant: named by {tenant} or the caller's own


class Action(StrEnum):
    """What a caller wants to do with a room."""

    SUBSCRIBE = "subscribe"
    PUBLISH = "publish"


class Who(StrEnum):
    """The kinds of caller a rule can allow."""

    SUPER_ADMIN = "super_admin"  # role super_admin, no tenant
    PLATFORM_SERVICE = "platform_service"  # role service, no tenant
    ANY_SERVICE = "any_service"  # role service, any tenant or none
    TENANT_SERVICE = "tenant_service"  # role service of the room's tenant
    TENANT_ADMIN = "tenant_admin"  # role tenant_admin of the room's tenant
    TENANT_MEMBER = "tenant_member"  # anyone of the room's tenant
    USER_SELF = "user_self"  # the user named {user} in the room, same tenant
    MEMBER = "member"  # a connection that has joined the room
    AUTHENTICATED = "authenticated"  # anyone with a valid token


_PLACEHOLDER_RE = re.compile(r"\{([a-z_]+)\}")
_SEGMENT = r"[A-Za-z0-9_-]+"


@dataclass(frozen=True, slots=True)
class RoomRule:
    """One kind of room.

    Attributes:
        pattern: names this rule covers; ``{x}`` stands for one segment (and
            binds it), a final ``**`` for one or more segments. ``{tenant}``
            binds the room's tenant, ``{user}`` the user of ``user_self``.
        scope: where the rooms live.
        subscribe: who may subscribe (and read history and presence).
        publish: who may publish.
        history_size: events kept per room (0 keeps none).
        history_ttl: seconds an event is kept.
        presence: whether joins and leaves are announced to the room's
            WebSocket members and the member list comes with ``room_joined``.
            Members are tracked (GetPresence, ``presence`` frames) either way.
    """

    pattern: str
    scope: Scope
    subscribe: frozenset[Who]
    publish: frozenset[Who]
    history_size: int = DEFAULT_HISTORY_SIZE
    history_ttl: float = DEFAULT_HISTORY_TTL
    presence: bool = True
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts: list[str] = []
        segments = self.pattern.split(".")
        bound: set[str] = set()
        for index, segment in enumerate(segments):
            placeholder = _PLACEHOLDER_RE.fullmatch(segment)
            if placeholder:
                if placeholder.group(1) in bound:
                    raise ConfigError(f"room rule pattern {self.pattern!r}: {segment} stands twice")
                bound.add(placeholder.group(1))
                parts.append(f"(?P<{placeholder.group(1)}>{_SEGMENT})")
            elif segment == "**" and index == len(segments) - 1:
                parts.append(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
            elif re.fullmatch(_SEGMENT, segment):
                parts.append(re.escape(segment))
            else:
                raise ConfigError(f"room rule pattern {self.pattern!r}: bad segment {segment!r}")
        object.__setattr__(self, "_regex", re.compile(r"\.".join(parts)))
        if self.scope is not Scope.TENANT and "{tenant}" in self.pattern:
            raise ConfigError(f"room rule {self.pattern!r}: {{tenant}} needs scope 'tenant'")

    def match(self, name: str) -> dict[str, str] | None:
        """The placeholder bindings when ``name`` is covered, else None."""
        found = self._regex.fullmatch(name)
        return None if found is None else found.groupdict()

    def allowed(self, action: Action) -> frozenset[Who]:
        """Who may perform ``action``."""
        return self.subscribe if action is Action.SUBSCRIBE else self.publish


def _rule(
    pattern: str, scope: Scope, subscribe: set[Who], publish: set[Who], *, presence: bool = False
) -> RoomRule:
    return RoomRule(pattern, scope, frozenset(subscribe), frozenset(publish), presence=presence)


_PLATFORM_OPERATORS = {Who.SUPER_ADMIN, Who.PLATFORM_SERVICE}
_TENANT_READERS = {Who.TENANT_MEMBER, Who.PLATFORM_SERVICE}
_TENANT_WRITERS = {Who.TENANT_SERVICE, Who.PLATFORM_SERVICE}

#: The built-in kinds of room (the table in the README and docs/protocol.md).
#: Presence is announced in the rooms people gather in (documents, chats,
#: global rooms), not in the rooms every connection joins on its own
#: (tenant, user, platform): there, announcing each connection to all the
#: others would cost work in the square of the room's size.
BUILTIN_RULES: tuple[RoomRule, ...] = (
    _rule("platform.admins", Scope.PLATFORM, _PLATFORM_OPERATORS, _PLATFORM_OPERATORS),
    _rule("platform.health", Scope.PLATFORM, _PLATFORM_OPERATORS, _PLATFORM_OPERATORS),
    _rule("platform.security", Scope.PLATFORM, _PLATFORM_OPERATORS, _PLATFORM_OPERATORS),
    # Published by the server itself, which acts as a platform service. It
    # keeps a quarter of an hour of 5 s snapshots: the dashboard page draws
    # its ten-minute charts from this history when it opens.
    replace(
        _rule("performance.dashboard", Scope.PLATFORM, _PLATFORM_OPERATORS, {Who.PLATFORM_SERVICE}),
        history_size=200,
        history_ttl=900.0,
    ),
    _rule(
        "tenant.{tenant}.users", Scope.TENANT, _TENANT_READERS, _TENANT_WRITERS | {Who.TENANT_ADMIN}
    ),
    _rule(
        "tenant.{tenant}.notifications",
        Scope.TENANT,
        _TENANT_READERS,
        _TENANT_WRITERS | {Who.TENANT_ADMIN},
    ),
    _rule(
        "tenant.{tenant}.admins",
        Scope.TENANT,
        {Who.TENANT_ADMIN, Who.SUPER_ADMIN, Who.PLATFORM_SERVICE},
        _TENANT_WRITERS,
    ),
    _rule(
        "user.{user}.private", Scope.TENANT, {Who.USER_SELF, Who.PLATFORM_SERVICE}, _TENANT_WRITERS
    ),
    _rule(
        "user.{user}.notifications",
        Scope.TENANT,
        {Who.USER_SELF, Who.PLATFORM_SERVICE},
        _TENANT_WRITERS,
    ),
    _rule(
        "document.{id}.collaboration",
        Scope.TENANT,
        _TENANT_READERS,
        _TENANT_WRITERS | {Who.MEMBER},
        presence=True,
    ),
    _rule(
        "chat.{id}", Scope.TENANT, _TENANT_READERS, _TENANT_WRITERS | {Who.MEMBER}, presence=True
    ),
    _rule(
        "global.{name}",
        Scope.GLOBAL,
        {Who.AUTHENTICATED},
        {Who.MEMBER, Who.ANY_SERVICE},
        presence=True,
    ),
)


@dataclass(frozen=True, slots=True)
class ResolvedRoom:
    """A room name placed in its tenant, with the rule that governs it."""

    room: Room
    rule: RoomRule
    bindings: dict[str, str]


def _qualifies(who: Who, principal: Principal, resolved: ResolvedRoom, is_member: bool) -> bool:
    tenant = resolved.room.tenant
    same_tenant = tenant is not None and principal.tenant == tenant
    match who:
        case Who.SUPER_ADMIN:
            # Said here as well as in Principal.is_super_admin: a super_admin
            # of a tenant must never pass for the platform's, whatever built it.
            return principal.tenant is None and principal.has(Role.SUPER_ADMIN)
        case Who.PLATFORM_SERVICE:
            return principal.is_service and principal.tenant is None
        case Who.ANY_SERVICE:
            return principal.is_service
        case Who.TENANT_SERVICE:
            return same_tenant and principal.is_service
        case Who.TENANT_ADMIN:
            return same_tenant and principal.has(Role.TENANT_ADMIN)
        case Who.TENANT_MEMBER:
            return same_tenant
        case Who.USER_SELF:
            return same_tenant and principal.subject == resolved.bindings.get("user")
        case Who.MEMBER:
            return is_member
        case Who.AUTHENTICATED:
            return True


class Policy:
    """Resolves room names and decides who may subscribe and publish.

    Args:
        rules: the rules, tried in order; the first match decides.
    """

    def __init__(self, rules: tuple[RoomRule, ...] = BUILTIN_RULES) -> None:
        self.rules = rules

    @classmethod
    def from_toml(cls, path: Path) -> Policy:
        """The built-in policy extended or overridden by the TOML file at ``path``.

        The file holds ``[[rooms]]`` tables with ``pattern``, ``scope``,
        ``subscribe``, ``publish`` and optional ``history_size``,
        ``history_ttl_seconds`` and ``presence``.

        Raises:
            ConfigError: naming the file, the table and the key at fault.
        """
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError(f"cannot read policy file {path}: {error.strerror}") from error
        except UnicodeDecodeError as error:
            raise ConfigError(f"policy file {path} is not UTF-8 text") from error
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"policy file {path} is not valid TOML: {error}") from error
        tables = document.get("rooms", [])
        if not isinstance(tables, list):
            raise ConfigError(f"policy file {path}: 'rooms' must be an array of tables")
        custom = [_rule_from_table(table, f"{path}: rooms[{i}]") for i, table in enumerate(tables)]
        replaced = {rule.pattern for rule in custom}
        kept = tuple(rule for rule in BUILTIN_RULES if rule.pattern not in replaced)
        return cls(tuple(custom) + kept)

    def rule_for(
        self, name: RoomName, *, field_name: str = "room"
    ) -> tuple[RoomRule, dict[str, str]]:
        """The rule covering ``name`` and its bindings.

        Raises:
            InvalidRoom: no rule covers the name.
        """
        for rule in self.rules:
            bindings = rule.match(name)
            if bindings is not None:
                return rule, bindings
        raise InvalidRoom(f"{field_name}: room {name!r} is not a known kind of room")

    def resolve(
        self, principal: Principal, name: str, tenant_id: str = "", *, field_name: str = "room"
    ) -> ResolvedRoom:
        """Place the room ``name`` in its tenant, as seen by ``principal``.

        ``tenant_id`` is the tenant a platform-level caller names; a tenant's
        caller may leave it empty or give its own tenant.

        Raises:
            InvalidRoom: the name is malformed or of no known kind.
            InvalidArgument: ``tenant_id`` is malformed or missing where needed.
            Forbidden: a tenant's caller names another tenant.
        """
        room_name = parse_room_name(name, field_name=field_name)
        rule, bindings = self.rule_for(room_name, field_name=field_name)
        named = TenantId(parse_segment(tenant_id, field_name="tenant_id")) if tenant_id else None
        if named is not None and principal.tenant is not None and named != principal.tenant:
            raise Forbidden(f"tenant_id: callers of tenant {principal.tenant!r} act only in it")
        tenant: TenantId | None
        if rule.scope is not Scope.TENANT:
            tenant = None
        elif "tenant" in bindings:
            tenant = TenantId(bindings["tenant"])
            if named is not None and named != tenant:
                raise InvalidArgument(f"tenant_id: {named!r} does not match room {room_name!r}")
        elif named is not None:
            tenant = named
        elif principal.tenant is not None:
            tenant = principal.tenant
        else:
            raise InvalidArgument(
                f"tenant_id: required for tenant room {room_name!r} from a platform-level caller"
            )
        return ResolvedRoom(Room.of(room_name, tenant), rule, bindings)

    def check(
        self,
        principal: Principal,
        resolved: ResolvedRoom,
        action: Action,
        *,
        is_member: bool = False,
    ) -> None:
        """Allow ``action`` or raise.

        Raises:
            Forbidden: naming the room and the rule that refused.
        """
        room = resolved.room
        if room.tenant is not None and principal.tenant not in (None, room.tenant):
            # Isolation comes before any rule: no rule can open another tenant's room.
            raise Forbidden(f"room {room.name!r} belongs to another tenant")
        allowed = resolved.rule.allowed(action)
        if any(_qualifies(who, principal, resolved, is_member) for who in allowed):
            return
        who = ", ".join(sorted(allowed)) or "nobody"
        raise Forbidden(
            f"may not {action} to room {room.name!r}: rule {resolved.rule.pattern!r} "
            f"allows {action} for {who}"
        )

    def covers(self, principal: Principal, room: Room) -> bool:
        """Whether ``principal`` may subscribe to ``room`` (for pattern matches).

        Used on the fan-out path to filter rooms a pattern subscription
        matches; never raises.
        """
        try:
            rule, bindings = self.rule_for(room.name)
            self.check(principal, ResolvedRoom(room, rule, bindings), Action.SUBSCRIBE)
        except (Forbidden, InvalidRoom):
            return False
        return True


_TABLE_KEYS = {
    "pattern",
    "scope",
    "subscribe",
    "publish",
    "history_size",
    "history_ttl_seconds",
    "presence",
}


def _who_set(table: dict[str, Any], key: str, where: str) -> frozenset[Who]:
    value = table.get(key, [])
    known = {who.value for who in Who}
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key}: must be a list of names")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise ConfigError(
            f"{where}.{key}: unknown {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    return frozenset(Who(v) for v in value)


def _rule_from_table(table: object, where: str) -> RoomRule:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    extra = set(table) - _TABLE_KEYS
    if extra:
        raise ConfigError(f"{where}: unknown key {sorted(extra)[0]!r}")
    pattern = table.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"{where}.pattern: required (a room name pattern)")
    try:
        scope = Scope(table.get("scope", "tenant"))
    except ValueError as error:
        raise ConfigError(f"{where}.scope: must be one of tenant, platform, global") from error
    subscribe = _who_set(table, "subscribe", where)
    publish = _who_set(table, "publish", where)
    try:
        rule = RoomRule(pattern, scope, subscribe, publish)
    except ConfigError as error:
        raise ConfigError(f"{where}.pattern: {error.message}") from error
    size = table.get("history_size", DEFAULT_HISTORY_SIZE)
    ttl = table.get("history_ttl_seconds", DEFAULT_HISTORY_TTL)
    presence = table.get("presence", True)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ConfigError(f"{where}.history_size: must be a whole number >= 0")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
        raise ConfigError(f"{where}.history_ttl_seconds: must be a number > 0")
    if not isinstance(presence, bool):
        raise ConfigError(f"{where}.presence: must be true or false")
    return replace(rule, history_size=size, history_ttl=float(ttl), presence=presence)


def own_rooms(principal: Principal) -> list[str]:
    """The rooms a connection of ``principal`` joins when it connects."""
    if principal.tenant is None:
        return ["platform.admins"] if principal.is_super_admin else []
    user, tenant = principal.subject, principal.tenant
    rooms = [
        f"user.{user}.private",
        f"user.{user}.notifications",
        f"tenant.{tenant}.users",
        f"tenant.{tenant}.notifications",
    ]
    if principal.has(Role.TENANT_ADMIN):
        rooms.append(f"tenant.{tenant}.admins")
    return rooms
