"""Properties of room names, patterns and the policy (src/roomcast/rooms.py, policy.py).

Any text is a name (or pattern) of the grammar or refused with ``invalid_room``
naming the field; and, however a tenant's principal was built and whatever
the rules say, it is never allowed a room of another tenant.
"""

from __future__ import annotations

import string
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from support.strategies import PROPERTY, any_text, attempt

from roomcast.auth import Principal, Role, TokenVerifier, mint_token
from roomcast.errors import Forbidden, InvalidArgument, InvalidRoom, RoomcastError
from roomcast.policy import BUILTIN_RULES, Action, Policy, RoomRule, Scope, Who
from roomcast.rooms import (
    MAX_NAME_LENGTH,
    Room,
    RoomName,
    TenantId,
    parse_event_name,
    parse_pattern,
    parse_room_name,
    parse_segment,
)

# The grammar (docs/protocol.md, "Names"), written out here apart from the regexes.
SEGMENT_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_-")


def _is_segment(text: str) -> bool:
    return bool(text) and set(text) <= SEGMENT_CHARACTERS


def _is_name(text: str, limit: int = MAX_NAME_LENGTH) -> bool:
    return 0 < len(text) <= limit and all(_is_segment(s) for s in text.split("."))


def _is_pattern(text: str) -> bool:
    segments = text.split(".")
    return (
        0 < len(text) <= MAX_NAME_LENGTH
        and all(_is_segment(s) or s == "*" for s in segments[:-1])
        and (_is_segment(segments[-1]) or segments[-1] in {"*", "**"})
    )


def _matches(pattern: str, name: str) -> bool:
    """``*`` is one whole segment; a final ``**`` one or more further segments."""
    wanted, given_ = pattern.split("."), name.split(".")
    if wanted[-1] == "**":
        wanted = wanted[:-1]
        if len(given_) <= len(wanted):
            return False
        given_ = given_[: len(wanted)]
    return len(wanted) == len(given_) and all(
        w in ("*", g) for w, g in zip(wanted, given_, strict=True)
    )


# Text that is often nearly a name: segment characters, dots, wildcards, and
# look-alikes the regexes must not take for letters or digits.
_NEAR = st.sampled_from(
    [
        *"aZ09_-.*",
        "**",
        "\u00e9",
        "\u00df",
        "\u0663",
        "\uff11",
        "\uff41",
        "\n",
        " ",
        ":",
        "\x00",
        "\ud800",
    ]
)
segments = st.text(st.sampled_from(sorted(SEGMENT_CHARACTERS)), min_size=1, max_size=8)
names = st.lists(segments, min_size=1, max_size=5).map(".".join)
texts = (
    any_text
    | st.lists(_NEAR, max_size=24).map("".join)
    | names
    | st.lists(segments, min_size=30, max_size=60).map(".".join)  # past the length limit
)


@PROPERTY
@given(texts)
def test_any_text_is_a_room_name_of_the_grammar_or_refused_naming_the_field(text: str) -> None:
    name, error = attempt(lambda: parse_room_name(text, field_name="rooms[2]"), InvalidRoom)
    assert (name is not None) == _is_name(text)
    if name is not None:
        assert name == text
    else:
        assert isinstance(error, InvalidRoom)
        assert error.message.startswith("rooms[2]: ")


@PROPERTY
@given(texts)
def test_any_text_is_an_event_name_a_segment_or_refused(text: str) -> None:
    event, error = attempt(lambda: parse_event_name(text), InvalidArgument)
    assert (event is not None) == _is_name(text, limit=100)
    assert event is not None or str(error).startswith("event: ")
    segment, error = attempt(lambda: parse_segment(text, field_name="sub"), InvalidArgument)
    assert (segment is not None) == (_is_segment(text) and len(text) <= 64)
    assert segment is not None or str(error).startswith("sub: ")


patterns = st.lists(segments | st.just("*"), min_size=1, max_size=4).flatmap(
    lambda parts: st.sampled_from([".".join(parts), ".".join([*parts, "**"])])
) | st.just("**")


@PROPERTY
@given(texts | patterns)
def test_any_text_is_a_pattern_of_the_grammar_or_refused(text: str) -> None:
    pattern, error = attempt(lambda: parse_pattern(text), InvalidRoom)
    assert (pattern is not None) == _is_pattern(text)
    assert pattern is not None or str(error).startswith("rooms: ")


@PROPERTY
@given(patterns, names | texts)
def test_a_pattern_matches_whole_segments_only(text: str, name: str) -> None:
    pattern = parse_pattern(text)
    # (Names are checked for length where they are parsed, not here.)
    assert pattern.matches(name) == (_is_name(name, limit=len(name)) and _matches(text, name))
    assert not pattern.matches(name) or name.startswith(pattern.literal_prefix)


@PROPERTY
@given(names, segments, segments)
def test_rooms_of_two_tenants_never_share_a_key(name: str, first: str, second: str) -> None:
    one, other = Room.of(RoomName(name), TenantId(first)), Room.of(RoomName(name), TenantId(second))
    shared = Room.of(RoomName(name), None)
    assert (one.key == other.key) == (first == second)
    assert shared.key not in {one.key, other.key}
    for room in (one, other, shared):
        assert Room.from_key(room.key) == room


# -- the policy --------------------------------------------------------------------

EXP = 4_102_444_800.0  # 2100-01-01
SECRET = "property-tests-secret-of-32-bytes!"
VERIFIER = TokenVerifier(secret=SECRET)
tenants = st.sampled_from(["acme", "globex", "t1", "t-2"]) | segments
roles = st.sets(st.sampled_from(list(Role)), min_size=1)


@st.composite
def tenant_principals(draw: st.DrawFn, tenant: str) -> Principal:
    """A principal of ``tenant``: from a verified token, or built by hand with any roles."""
    subject = draw(st.sampled_from(["alice", "bob", "svc"]) | segments)
    chosen = draw(roles)
    if draw(st.booleans()):
        token = mint_token(SECRET, subject=subject, roles=sorted(chosen), tenant=tenant)
        return VERIFIER.verify(token, remember=False)
    # Principal's docstring: one built by hand may carry super_admin and a tenant.
    return Principal(subject, TenantId(tenant), frozenset(chosen), EXP)


# Rules that open every room to everyone: isolation must not depend on the rules.
EVERYONE = frozenset(Who)
OPEN_POLICY = Policy(
    (
        RoomRule("tenant.{tenant}.**", Scope.TENANT, EVERYONE, EVERYONE),
        RoomRule("user.{user}.**", Scope.TENANT, EVERYONE, EVERYONE),
        RoomRule("**", Scope.TENANT, EVERYONE, EVERYONE),
    )
)
POLICIES = st.sampled_from([Policy(), OPEN_POLICY, Policy((*OPEN_POLICY.rules, *BUILTIN_RULES))])


def _name_of(rule: RoomRule, bindings: dict[str, str], rest: str) -> str:
    parts = []
    for segment in rule.pattern.split("."):
        if segment.startswith("{"):
            parts.append(bindings[segment[1:-1]])
        elif segment == "**":
            parts.append(rest)
        else:
            parts.append(segment)
    return ".".join(parts)


@st.composite
def room_names(draw: st.DrawFn, **bindings: str) -> str:
    """Names of every kind of room (placeholders bound as given or drawn), or any text."""
    if draw(st.integers(0, 4)) == 0:
        return draw(texts)
    rule = draw(st.sampled_from(BUILTIN_RULES + OPEN_POLICY.rules))
    bound = {
        "tenant": draw(segments),
        "user": draw(segments),
        "id": draw(segments),
        "name": draw(segments),
    }
    bound.update(bindings)
    return _name_of(rule, bound, draw(names))


def _decide(
    policy: Policy, principal: Principal, name: str, tenant_id: str, action: Action, member: bool
) -> tuple[Any, Exception | None]:
    def decide() -> Any:
        resolved = policy.resolve(principal, name, tenant_id)
        policy.check(principal, resolved, action, is_member=member)
        return resolved

    result, error = attempt(decide, RoomcastError)
    assert error is None or isinstance(error, InvalidRoom | InvalidArgument | Forbidden)
    return result, error


@PROPERTY
@given(tenants, tenants, st.data())
def test_a_tenant_principal_is_never_allowed_a_room_of_another_tenant(
    own: str, other: str, data: st.DataObject
) -> None:
    principal = data.draw(tenant_principals(own))
    policy = data.draw(POLICIES)
    name = data.draw(room_names(tenant=other))
    tenant_id = data.draw(st.sampled_from(["", own, other]) | any_text)
    action, member = data.draw(st.sampled_from(list(Action))), data.draw(st.booleans())
    resolved, _ = _decide(policy, principal, name, tenant_id, action, member)
    if resolved is not None:
        assert resolved.room.tenant in (None, principal.tenant), resolved
        assert resolved.room.name == name
        # Only rooms of no tenant (platform, global) are shared between tenants.
        assert (resolved.room.tenant is None) == (resolved.rule.scope is not Scope.TENANT)
    if _is_name(name):  # what a pattern subscription would be offered
        room = Room.of(RoomName(name), TenantId(other))
        assert not policy.covers(principal, room) or own == other


@PROPERTY
@given(tenants, tenants, st.data())
def test_a_tenant_user_is_refused_the_tenant_rooms_of_another_tenant(
    own: str, other: str, data: st.DataObject
) -> None:
    principal = data.draw(tenant_principals(own))
    suffix = data.draw(st.sampled_from(["users", "notifications", "admins"]) | names)
    action, member = data.draw(st.sampled_from(list(Action))), data.draw(st.booleans())
    resolved, error = _decide(Policy(), principal, f"tenant.{other}.{suffix}", "", action, member)
    if own != other:
        assert resolved is None
        assert isinstance(error, Forbidden | InvalidRoom)


@PROPERTY
@given(tenants, tenants, st.data())
def test_a_user_is_refused_the_private_rooms_of_another_user(
    own: str, other_tenant: str, data: st.DataObject
) -> None:
    principal = data.draw(tenant_principals(own))
    other = data.draw(st.sampled_from(["alice", "bob", "mallory"]) | segments)
    kind = data.draw(st.sampled_from(["private", "notifications"]))
    tenant_id = data.draw(st.sampled_from(["", own, other_tenant]))
    action, member = data.draw(st.sampled_from(list(Action))), data.draw(st.booleans())
    resolved, error = _decide(
        Policy(), principal, f"user.{other}.{kind}", tenant_id, action, member
    )
    if resolved is not None:
        # Allowed: the user reading its own room, or a service of the tenant writing to it.
        assert resolved.room.tenant == principal.tenant
        if action is Action.SUBSCRIBE:
            assert principal.subject == other
        else:
            assert principal.is_service
    elif tenant_id not in ("", own):
        assert isinstance(error, Forbidden)
