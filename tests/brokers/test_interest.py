"""What a node listens to (src/roomcast/brokers/interest.py)."""

from __future__ import annotations

import pytest

from roomcast.brokers.interest import Interest
from roomcast.errors import InvalidRoom
from roomcast.rooms import Room


def test_rooms_are_wanted_while_listened() -> None:
    interest = Interest()
    lobby = Room.from_key("acme:chat.lobby")
    assert not interest.wants(lobby)
    assert interest.add_room(lobby.key)
    assert not interest.add_room(lobby.key)
    assert interest.wants(lobby)
    assert interest.discard_room(lobby.key)
    assert not interest.discard_room(lobby.key)
    assert not interest.wants(lobby)


@pytest.mark.parametrize(
    ("pattern_key", "room_key", "wanted"),
    [
        ("acme|chat.*", "acme:chat.lobby", True),
        ("acme|chat.*", "chat.lobby", True),  # rooms of no tenant are shared
        ("acme|chat.*", "globex:chat.lobby", False),
        ("acme|chat.*", "acme:chat.lobby.old", False),
        ("*|chat.*", "globex:chat.lobby", True),
        ("|chat.*", "chat.lobby", True),
        ("|chat.*", "acme:chat.lobby", False),
        ("acme|**", "acme:a.b.c", True),
    ],
)
def test_patterns_match_as_the_hub_does(pattern_key: str, room_key: str, wanted: bool) -> None:
    interest = Interest()
    interest.add_pattern(pattern_key)
    assert interest.wants(Room.from_key(room_key)) is wanted


def test_decisions_follow_changes() -> None:
    interest = Interest()
    lobby = Room.from_key("chat.lobby")
    assert not interest.wants(lobby)
    assert interest.add_pattern("*|chat.*")
    assert not interest.add_pattern("*|chat.*")
    assert interest.wants(lobby)
    assert interest.discard_pattern("*|chat.*")
    assert not interest.discard_pattern("*|chat.*")
    assert not interest.wants(lobby)


def test_a_malformed_pattern_key_is_refused() -> None:
    with pytest.raises(InvalidRoom):
        Interest().add_pattern("acme|chat.**.x")
