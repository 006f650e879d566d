"""The pure fan-out core (src/roomcast/hub.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import roomcast.hub
from roomcast.hub import ANY_TENANT, Hub, PatternSubscription, _AnyTenant
from roomcast.rooms import Room, RoomName, TenantId, parse_pattern

ACME = TenantId("acme")
GLOBEX = TenantId("globex")


def room(name: str, tenant: str | None = "acme") -> Room:
    return Room.of(RoomName(name), None if tenant is None else TenantId(tenant))


def everything(_: Room) -> bool:
    return True


def by_pattern(
    pattern: str,
    recipient: str,
    tenant: TenantId | _AnyTenant | None = ACME,
    permits: Callable[[Room], bool] = everything,
) -> PatternSubscription[str]:
    return PatternSubscription(parse_pattern(pattern), tenant, recipient, permits)


# -- exact rooms ---------------------------------------------------------------


def test_add_reports_the_first_interest_in_a_room() -> None:
    hub: Hub[str] = Hub()
    lobby = room("chat.lobby")
    assert hub.add(lobby, "r1") is True
    assert hub.add(lobby, "r2") is False
    assert hub.add(lobby, "r1") is False  # again: still one subscription
    assert hub.recipients(lobby) == ("r1", "r2")
    assert hub.subscription_count == 2


def test_discard_reports_the_last_interest_in_a_room() -> None:
    hub: Hub[str] = Hub()
    lobby = room("chat.lobby")
    hub.add(lobby, "r1")
    hub.add(lobby, "r2")
    assert hub.discard(lobby, "r1") is False
    assert hub.discard(lobby, "r1") is False  # absent: no error, no change
    assert hub.discard(lobby, "r2") is True
    assert hub.discard(lobby, "r2") is False
    assert hub.recipients(lobby) == ()
    assert list(hub.rooms()) == []


def test_discard_from_a_room_never_subscribed() -> None:
    hub: Hub[str] = Hub()
    assert hub.discard(room("chat.lobby"), "r1") is False


def test_one_name_in_two_tenants_is_two_rooms() -> None:
    hub: Hub[str] = Hub()
    assert hub.add(room("chat.lobby", "acme"), "a") is True
    assert hub.add(room("chat.lobby", "globex"), "g") is True
    assert hub.recipients(room("chat.lobby", "acme")) == ("a",)
    assert hub.recipients(room("chat.lobby", "globex")) == ("g",)
    assert hub.recipients(room("chat.lobby", None)) == ()


def test_rooms_lists_rooms_with_exact_subscribers() -> None:
    hub: Hub[str] = Hub()
    hub.add(room("chat.a"), "r1")
    hub.add(room("chat.a"), "r2")
    hub.add(room("global.b", None), "r1")
    hub.add_pattern(by_pattern("chat.*", "r3"))
    assert sorted(r.key for r in hub.rooms()) == ["acme:chat.a", "global.b"]
    assert hub.subscription_count == 4


# -- patterns --------------------------------------------------------------------


def test_pattern_interest_is_reference_counted_by_key() -> None:
    hub: Hub[str] = Hub()
    first = by_pattern("chat.*", "r1")
    second = by_pattern("chat.*", "r2")
    assert first.key == second.key == "acme|chat.*"
    assert hub.add_pattern(first) is True
    assert hub.add_pattern(second) is False
    assert hub.pattern_keys == ["acme|chat.*"]
    assert hub.discard_pattern(first) is False
    assert hub.discard_pattern(first) is False  # absent: no change to the count
    assert hub.pattern_keys == ["acme|chat.*"]
    assert hub.discard_pattern(second) is True
    assert hub.pattern_keys == []
    assert hub.discard_pattern(second) is False


@pytest.mark.parametrize(
    ("tenant", "key"),
    [(ACME, "acme|chat.*"), (GLOBEX, "globex|chat.*"), (None, "|chat.*"), (ANY_TENANT, "*|chat.*")],
)
def test_pattern_keys_name_the_scope(tenant: TenantId | _AnyTenant | None, key: str) -> None:
    assert by_pattern("chat.*", "r", tenant).key == key


def test_patterns_in_different_scopes_are_counted_apart() -> None:
    hub: Hub[str] = Hub()
    assert hub.add_pattern(by_pattern("chat.*", "r1", ACME)) is True
    assert hub.add_pattern(by_pattern("chat.*", "r2", GLOBEX)) is True
    assert hub.add_pattern(by_pattern("chat.*", "r3", ANY_TENANT)) is True
    assert hub.add_pattern(by_pattern("chat.**", "r4", ACME)) is True
    assert sorted(hub.pattern_keys) == ["*|chat.*", "acme|chat.*", "acme|chat.**", "globex|chat.*"]


def test_the_same_recipient_may_hold_one_pattern_twice() -> None:
    hub: Hub[str] = Hub()
    first = by_pattern("chat.*", "r1")
    again = by_pattern("chat.*", "r1")
    hub.add_pattern(first)
    hub.add_pattern(again)
    assert hub.subscription_count == 2
    assert hub.recipients(room("chat.x")) == ("r1",)
    assert hub.discard_pattern(first) is False
    assert hub.recipients(room("chat.x")) == ("r1",)
    assert hub.discard_pattern(again) is True
    assert hub.recipients(room("chat.x")) == ()


def test_a_recipient_subscribed_exactly_and_by_pattern_gets_each_event_once() -> None:
    hub: Hub[str] = Hub()
    lobby = room("chat.lobby")
    hub.add(lobby, "r1")
    hub.add_pattern(by_pattern("chat.*", "r1"))
    hub.add_pattern(by_pattern("chat.**", "r1"))
    hub.add_pattern(by_pattern("chat.*", "r2"))
    assert hub.recipients(lobby) == ("r1", "r2")
    assert hub.subscriber_count(lobby) == 2


@pytest.mark.parametrize(
    ("scope", "room_tenant", "expected"),
    [
        (ACME, "acme", True),
        (ACME, "globex", False),
        (ACME, None, True),  # rooms of no tenant (global, platform)
        (None, None, True),
        (None, "acme", False),
        (ANY_TENANT, "acme", True),
        (ANY_TENANT, "globex", True),
        (ANY_TENANT, None, True),
    ],
)
def test_pattern_subscriptions_are_scoped_to_their_tenant(
    scope: TenantId | _AnyTenant | None, room_tenant: str | None, expected: bool
) -> None:
    subscription = by_pattern("chat.*", "r1", scope)
    target = room("chat.lobby", room_tenant)
    assert subscription.matches(target) is expected
    hub: Hub[str] = Hub()
    hub.add_pattern(subscription)
    assert hub.recipients(target) == (("r1",) if expected else ())


def test_a_pattern_matches_only_names_it_covers() -> None:
    subscription = by_pattern("chat.*", "r1", ANY_TENANT)
    assert subscription.matches(room("chat.lobby"))
    assert not subscription.matches(room("chat.lobby.old"))
    assert not subscription.matches(room("global.lobby", None))


def test_permits_has_the_final_word() -> None:
    seen: list[str] = []

    def own_room_only(target: Room) -> bool:
        seen.append(target.key)
        return target.name == "user.alice.private"

    hub: Hub[str] = Hub()
    hub.add_pattern(by_pattern("user.*.private", "alice", ACME, own_room_only))
    assert hub.recipients(room("user.alice.private")) == ("alice",)
    assert hub.recipients(room("user.bob.private")) == ()
    assert seen == ["acme:user.alice.private", "acme:user.bob.private"]


def test_permits_is_not_asked_about_rooms_outside_the_scope() -> None:
    asked: list[Room] = []

    def permits(target: Room) -> bool:
        asked.append(target)
        return True

    subscription = by_pattern("chat.*", "r1", ACME, permits)
    assert subscription.matches(room("chat.lobby", "globex")) is False
    assert subscription.matches(room("global.x", None)) is False  # name does not match
    assert asked == []


# -- plans -----------------------------------------------------------------------


def test_plans_are_cached_until_subscriptions_change() -> None:
    calls: list[str] = []

    def permits(target: Room) -> bool:
        calls.append(target.key)
        return True

    hub: Hub[str] = Hub()
    lobby = room("chat.lobby")
    hub.add_pattern(by_pattern("chat.*", "p", ACME, permits))
    assert hub.recipients(lobby) == ("p",)
    assert hub.recipients(lobby) == ("p",)
    assert calls == ["acme:chat.lobby"]  # the second answer came from the cache

    hub.add(lobby, "r1")
    assert hub.recipients(lobby) == ("r1", "p")
    hub.discard(lobby, "r1")
    assert hub.recipients(lobby) == ("p",)
    assert len(calls) == 3


def test_adding_a_pattern_invalidates_every_plan() -> None:
    hub: Hub[str] = Hub()
    a, b = room("chat.a"), room("chat.b")
    hub.add(a, "ra")
    assert hub.recipients(a) == ("ra",)
    assert hub.recipients(b) == ()
    pattern = by_pattern("chat.*", "p")
    hub.add_pattern(pattern)
    assert hub.recipients(a) == ("ra", "p")
    assert hub.recipients(b) == ("p",)
    hub.discard_pattern(pattern)
    assert hub.recipients(a) == ("ra",)
    assert hub.recipients(b) == ()


def test_exact_changes_invalidate_only_their_room() -> None:
    calls: list[str] = []

    def permits(target: Room) -> bool:
        calls.append(target.key)
        return True

    hub: Hub[str] = Hub()
    a, b = room("chat.a"), room("chat.b")
    hub.add_pattern(by_pattern("chat.*", "p", ACME, permits))
    hub.recipients(a)
    hub.recipients(b)
    hub.add(a, "ra")
    hub.recipients(a)
    hub.recipients(b)
    assert calls == ["acme:chat.a", "acme:chat.b", "acme:chat.a"]


def test_the_plan_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roomcast.hub, "MAX_CACHED_PLANS", 4)
    hub: Hub[str] = Hub()
    hub.add_pattern(by_pattern("chat.*", "p"))
    for index in range(10):
        assert hub.recipients(room(f"chat.r{index}")) == ("p",)
        assert len(hub._plans) <= 4
    assert len(hub._plans) == 2  # cleared at the 9th room, then two cached
    # Answers stay right after the cache started over.
    assert hub.recipients(room("chat.r0")) == ("p",)
    assert hub.recipients(room("global.x", None)) == ()


def test_the_default_plan_bound() -> None:
    assert roomcast.hub.MAX_CACHED_PLANS == 65_536


def test_any_tenant_reads_well() -> None:
    assert repr(ANY_TENANT) == "ANY_TENANT"
    assert "ANY_TENANT" in repr(by_pattern("chat.*", "r", ANY_TENANT))
