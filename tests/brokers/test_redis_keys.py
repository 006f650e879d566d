"""Key and channel names (src/roomcast/brokers/redis/keys.py)."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from roomcast.brokers.redis.keys import SLOTS, KeySpace, pattern_glob, slot_of, slot_tag
from roomcast.rooms import Room

KEYS = KeySpace("roomcast")


def test_a_rooms_names_share_its_hash_tag() -> None:
    key = "acme:chat.lobby"
    assert KEYS.meta(key) == "roomcast:{acme:chat.lobby}:meta"
    assert KEYS.log(key) == "roomcast:{acme:chat.lobby}:log"
    assert KEYS.idempotency(key, "k{1}") == "roomcast:{acme:chat.lobby}:idem:k{1}"
    assert KEYS.presence(key) == "roomcast:{acme:chat.lobby}:presence"
    assert KEYS.channel(key) == b"roomcast:{acme:chat.lobby}:events"
    names = [KEYS.meta(key), KEYS.log(key), KEYS.idempotency(key, "}{"), KEYS.presence(key)]
    slots = {slot_of(name.encode()) for name in names} | {slot_of(KEYS.channel(key))}
    assert slots == {slot_of(b"acme:chat.lobby")}


@given(st.binary(max_size=40))
def test_slots_are_computed_as_redis_computes_them(name: bytes) -> None:
    assert slot_of(name) == key_slot(name)


def test_every_slot_has_a_short_tag() -> None:
    for slot in range(SLOTS):
        tag = slot_tag(slot)
        assert len(tag) <= 5
        assert slot_of(KEYS.feed(slot)) == slot
    assert KEYS.feed(0) == f"roomcast:feed:{{{slot_tag(0)}}}".encode()


def test_a_rooms_feed_is_on_its_slot() -> None:
    room = Room.from_key("acme:chat.lobby")
    assert slot_of(KEYS.feed_of(room)) == slot_of(KEYS.channel(room.key))


def test_meta_names_give_back_their_room() -> None:
    assert KEYS.room_of_meta(KEYS.meta("acme:chat.lobby").encode()) == "acme:chat.lobby"
    assert KEYS.room_of_meta(b"roomcast:{acme:chat.lobby}:log") is None
    assert KEYS.room_of_meta(b"other:{x}:meta") is None
    assert KEYS.room_of_meta(b"roomcast:{}:meta") is None
    assert fnmatch.fnmatchcase(KEYS.meta("a:b.c"), KEYS.meta_glob)


def test_channel_names_give_back_their_room() -> None:
    assert KEYS.room_of_channel(KEYS.channel("acme:chat.lobby")) == "acme:chat.lobby"
    assert KEYS.room_of_channel(KEYS.feed(7)) is None
    assert KEYS.is_feed(KEYS.feed(7))
    assert not KEYS.is_feed(KEYS.channel("chat.x"))


@pytest.mark.parametrize(
    ("pattern", "glob"),
    [("chat.*", "chat.*"), ("tenant.acme.**", "tenant.acme.*"), ("*.lobby", "*.lobby")],
)
def test_pattern_globs(pattern: str, glob: str) -> None:
    assert pattern_glob(pattern) == glob


@pytest.mark.parametrize(
    ("pattern_key", "room_key"),
    [
        ("acme|chat.*", "acme:chat.lobby"),
        ("acme|chat.*", "chat.lobby"),
        ("*|chat.*", "globex:chat.lobby"),
        ("|chat.*", "chat.lobby"),
        ("acme|tenant.acme.**", "acme:tenant.acme.a.b"),
    ],
)
def test_globs_cover_every_room_their_pattern_matches(pattern_key: str, room_key: str) -> None:
    channel = KEYS.channel(room_key).decode()
    globs = [glob.decode() for glob in KEYS.pattern_globs(pattern_key)]
    # Redis globs and fnmatch agree on * (no brackets or escapes occur here).
    assert any(fnmatch.fnmatchcase(channel, glob) for glob in globs)
