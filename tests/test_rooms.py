"""Room names, room patterns and room keys (src/roomcast/rooms.py)."""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from roomcast.errors import InvalidArgument, InvalidRoom
from roomcast.rooms import (
    MAX_NAME_LENGTH,
    Room,
    RoomName,
    TenantId,
    is_pattern,
    parse_event_name,
    parse_pattern,
    parse_room_name,
    parse_segment,
)

SEGMENT_CHARS = string.ascii_letters + string.digits + "_-"
NAME_CHARS = SEGMENT_CHARS + "."

segments = st.text(alphabet=SEGMENT_CHARS, min_size=1, max_size=24)
names = (
    st.lists(segments, min_size=1, max_size=10)
    .map(".".join)
    .filter(lambda name: len(name) <= MAX_NAME_LENGTH)
)
# Names that follow the grammar in every way except their length.
long_names = st.lists(
    st.text(alphabet=SEGMENT_CHARS, min_size=40, max_size=64), min_size=5, max_size=8
).map(".".join)
foreign_chars = st.characters().filter(lambda c: c not in NAME_CHARS)
tenants = st.text(alphabet=SEGMENT_CHARS, min_size=1, max_size=64)

# -- names -------------------------------------------------------------------


@settings(deadline=None)
@given(names)
def test_every_name_of_valid_segments_parses(name: str) -> None:
    assert parse_room_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["a", "chat.lobby", "tenant.acme.users", "A-b_9.x", "x" * MAX_NAME_LENGTH, "a." * 99 + "bb"],
)
def test_names_at_the_edges_of_the_grammar_parse(name: str) -> None:
    assert parse_room_name(name) == name


@settings(deadline=None)
@given(names, st.data())
def test_a_name_with_a_foreign_character_is_refused(name: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(name)))
    bad = name[:position] + data.draw(foreign_chars) + name[position:]
    assume(len(bad) <= MAX_NAME_LENGTH)
    with pytest.raises(InvalidRoom) as caught:
        parse_room_name(bad, field_name="rooms[2]")
    assert caught.value.message.startswith("rooms[2]: ")
    assert "is not a room name" in caught.value.message


@settings(deadline=None)
@given(st.lists(segments, min_size=2, max_size=6), st.data())
def test_a_name_with_an_empty_segment_is_refused(parts: list[str], data: st.DataObject) -> None:
    parts.insert(data.draw(st.integers(1, len(parts) - 1)), "")
    bad = ".".join(parts)
    assume(len(bad) <= MAX_NAME_LENGTH)
    with pytest.raises(InvalidRoom, match=r"^room: .* is not a room name"):
        parse_room_name(bad)


@settings(deadline=None)
@given(names.filter(lambda name: len(name) < MAX_NAME_LENGTH), st.booleans())
def test_a_name_with_a_leading_or_trailing_dot_is_refused(name: str, leading: bool) -> None:
    bad = "." + name if leading else name + "."
    with pytest.raises(InvalidRoom, match=r"^target: .* is not a room name"):
        parse_room_name(bad, field_name="target")


@settings(deadline=None)
@given(long_names)
def test_a_name_over_the_limit_is_refused(name: str) -> None:
    assert len(name) > MAX_NAME_LENGTH
    with pytest.raises(InvalidRoom) as caught:
        parse_room_name(name, field_name="room")
    assert caught.value.message == (
        f"room: room name is {len(name)} characters; the limit is {MAX_NAME_LENGTH}"
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "room: a room name is required"),
        (".", "is not a room name"),
        ("..", "is not a room name"),
        ("chat lobby", "is not a room name"),
        ("chat.lobby\n", "is not a room name"),
        ("chat:lobby", "is not a room name"),
        ("chat.*", "is not a room name"),
        ("caf\u00e9", "is not a room name"),
        ("\u0661\u0662", "is not a room name"),  # Arabic-Indic digits are not 0-9
        ("x" * (MAX_NAME_LENGTH + 1), "201 characters; the limit is 200"),
    ],
)
def test_malformed_names_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(InvalidRoom) as caught:
        parse_room_name(text)
    assert fragment in caught.value.message
    assert caught.value.message.startswith("room: ")


def test_a_long_bad_name_is_shortened_in_the_message() -> None:
    bad = "a" * 150 + "!"
    with pytest.raises(InvalidRoom) as caught:
        parse_room_name(bad)
    assert bad not in caught.value.message
    assert "'" + "a" * 57 + "...'" in caught.value.message


def test_invalid_room_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        parse_room_name("")


# -- event names and segments ------------------------------------------------


@pytest.mark.parametrize("text", ["greeting", "user.notification", "a-b_c.D9", "e" * 100])
def test_valid_event_names_parse(text: str) -> None:
    assert parse_event_name(text) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "event: an event name is required"),
        ("e" * 101, "event: event name is 101 characters; the limit is 100"),
        ("user..x", "event: 'user..x' is not an event name"),
        ("hi there", "event: 'hi there' is not an event name"),
    ],
)
def test_malformed_event_names_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_event_name(text)
    assert not isinstance(caught.value, InvalidRoom)
    assert fragment in caught.value.message


@pytest.mark.parametrize("text", ["a", "acme", "Acme_Corp-2", "x" * 64])
def test_valid_segments_parse(text: str) -> None:
    assert parse_segment(text, field_name="tenant_id") == text


@pytest.mark.parametrize("text", ["", "x" * 65, "a.b", "a b", "*", "a:b"])
def test_malformed_segments_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_segment(text, field_name="user_id")
    assert caught.value.message == "user_id: must be 1-64 characters of A-Z a-z 0-9 _ -"


# -- patterns ------------------------------------------------------------------


def reference_matches(pattern: str, name: str) -> bool:
    """Segment-by-segment matcher: '*' is one segment, a final '**' one or more."""
    wanted = pattern.split(".")
    given_ = name.split(".")
    if wanted[-1] == "**":
        head = wanted[:-1]
        if len(given_) < len(head) + 1:
            return False
        given_ = given_[: len(head)]
        wanted = head
    elif len(given_) != len(wanted):
        return False
    return all(w in ("*", g) for w, g in zip(wanted, given_, strict=True))


# Few distinct segments, so that generated names and patterns often match.
small_segments = st.sampled_from(["a", "b", "ab", "a-b", "B_1"])
small_names = st.lists(small_segments, min_size=1, max_size=6).map(".".join)


@st.composite
def small_patterns(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(small_segments, st.just("*")), min_size=0, max_size=5))
    if draw(st.booleans()) or not parts:
        parts.append("**")
    return ".".join(parts)


@st.composite
def patterns_of(draw: st.DrawFn, name: str) -> str:
    """A pattern made from ``name`` by wildcarding some of its segments."""
    parts = name.split(".")
    parts = [("*" if draw(st.booleans()) else part) for part in parts]
    cut = draw(st.integers(0, len(parts)))
    if cut < len(parts):
        parts = [*parts[:cut], "**"]
    return ".".join(parts)


@settings(deadline=None, max_examples=150)
@given(small_patterns(), small_names)
def test_pattern_matching_agrees_with_the_reference(pattern: str, name: str) -> None:
    assert parse_pattern(pattern).matches(name) is reference_matches(pattern, name)


@settings(deadline=None, max_examples=100)
@given(st.data(), names)
def test_a_pattern_made_from_a_name_matches_it(data: st.DataObject, name: str) -> None:
    pattern = data.draw(patterns_of(name))
    compiled = parse_pattern(pattern)
    assert compiled.matches(name)
    assert reference_matches(pattern, name)


@settings(deadline=None, max_examples=100)
@given(st.data(), names, names)
def test_generated_patterns_agree_with_the_reference_on_other_names(
    data: st.DataObject, source: str, other: str
) -> None:
    pattern = data.draw(patterns_of(source))
    assert parse_pattern(pattern).matches(other) is reference_matches(pattern, other)


@settings(deadline=None)
@given(st.lists(small_segments, min_size=1, max_size=4), small_segments, st.text(SEGMENT_CHARS))
def test_wildcards_never_match_part_of_a_segment(head: list[str], segment: str, extra: str) -> None:
    star = parse_pattern(".".join([*head, "*"]))
    double = parse_pattern(".".join([*head, "**"]))
    prefix = ".".join(head)
    # A wildcard needs a whole segment after a dot: the prefix itself, or the
    # prefix glued to more characters, is not matched.
    assert not star.matches(prefix)
    assert not double.matches(prefix)
    assert not star.matches(prefix + segment + extra)
    assert not double.matches(prefix + segment + extra)
    assert star.matches(f"{prefix}.{segment}")
    assert double.matches(f"{prefix}.{segment}")
    assert not star.matches(f"{prefix}.{segment}.{segment}")
    assert double.matches(f"{prefix}.{segment}.{segment}")


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("chat.*", "chat.lobby", True),
        ("chat.*", "chat", False),
        ("chat.*", "chat.lobby.old", False),
        ("chat.*", "chatty.lobby", False),
        ("chat.*", "xchat.lobby", False),
        ("tenant.acme.**", "tenant.acme.users", True),
        ("tenant.acme.**", "tenant.acme.a.b", True),
        ("tenant.acme.**", "tenant.acme", False),
        ("tenant.acme.**", "tenant.acmex.users", False),
        ("*.lobby", "chat.lobby", True),
        ("*.lobby", "lobby", False),
        ("*.*", "a.b", True),
        ("*.*", "a.b.c", False),
        ("*", "a", True),
        ("*", "a.b", False),
        ("**", "a", True),
        ("**", "a.b.c", True),
        ("chat.lobby", "chat.lobby", True),
        ("chat.lobby", "chat.lobbyx", False),
        ("a-b", "a-b", True),
        ("a-b", "aXb", False),
        ("a.b", "aXb", False),  # the dot is literal, not a regex wildcard
    ],
)
def test_pattern_examples(pattern: str, name: str, expected: bool) -> None:
    assert parse_pattern(pattern).matches(name) is expected
    assert reference_matches(pattern, name) is expected


@settings(deadline=None)
@given(st.lists(st.one_of(small_segments, st.just("*")), min_size=0, max_size=3), st.data())
def test_double_star_is_allowed_only_as_the_last_segment(
    parts: list[str], data: st.DataObject
) -> None:
    after = data.draw(st.lists(st.one_of(small_segments, st.just("*")), min_size=1, max_size=3))
    pattern = ".".join([*parts, "**", *after])
    with pytest.raises(InvalidRoom) as caught:
        parse_pattern(pattern, field_name="rooms")
    assert caught.value.message.startswith("rooms: ")
    assert "only as the last segment" in caught.value.message


@pytest.mark.parametrize(
    "pattern",
    ["chat.lob*", "chat.*lobby", "a**", "**a", "***", "a.***", "chat.*.", ".chat", "a..b", "a b"],
)
def test_wildcards_must_stand_as_whole_segments(pattern: str) -> None:
    with pytest.raises(InvalidRoom) as caught:
        parse_pattern(pattern, field_name="rooms[1]")
    assert caught.value.message.startswith("rooms[1]: ")
    assert "is not a room pattern" in caught.value.message


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("", "rooms: a room name or pattern is required"),
        ("a." * 100 + "**", "rooms: pattern is 202 characters; the limit is 200"),
    ],
)
def test_empty_and_overlong_patterns_are_refused(pattern: str, fragment: str) -> None:
    with pytest.raises(InvalidRoom) as caught:
        parse_pattern(pattern)
    assert caught.value.message == fragment


def test_a_plain_name_is_a_pattern_matching_only_itself() -> None:
    compiled = parse_pattern("chat.lobby")
    assert compiled.text == "chat.lobby"
    assert compiled.matches("chat.lobby")
    assert not compiled.matches("chat.lobby2")
    assert not compiled.matches("chat")


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [("chat.*", "chat."), ("tenant.acme.**", "tenant.acme."), ("**", ""), ("a.b", "a.b")],
)
def test_literal_prefix_is_the_text_before_the_first_wildcard(pattern: str, prefix: str) -> None:
    assert parse_pattern(pattern).literal_prefix == prefix


@pytest.mark.parametrize(
    ("text", "expected"), [("chat.*", True), ("**", True), ("chat.lobby", False), ("", False)]
)
def test_is_pattern(text: str, expected: bool) -> None:
    assert is_pattern(text) is expected


def test_patterns_compare_by_text() -> None:
    assert parse_pattern("chat.*") == parse_pattern("chat.*")
    assert parse_pattern("chat.*") != parse_pattern("chat.**")


# -- rooms and keys ------------------------------------------------------------


@settings(deadline=None)
@given(names, st.one_of(st.none(), tenants))
def test_room_keys_round_trip(name: str, tenant: str | None) -> None:
    room = Room.of(RoomName(name), None if tenant is None else TenantId(tenant))
    assert room.name == name
    assert room.tenant == tenant
    assert Room.from_key(room.key) == room


@settings(deadline=None)
@given(names, tenants, tenants)
def test_one_name_in_two_tenants_has_two_keys(name: str, first: str, second: str) -> None:
    assume(first != second)
    one = Room.of(RoomName(name), TenantId(first))
    other = Room.of(RoomName(name), TenantId(second))
    shared = Room.of(RoomName(name), None)
    assert len({one.key, other.key, shared.key}) == 3


@settings(deadline=None)
@given(names, st.one_of(st.none(), tenants), names, st.one_of(st.none(), tenants))
def test_keys_differ_whenever_rooms_differ(
    name: str, tenant: str | None, other_name: str, other_tenant: str | None
) -> None:
    assume((name, tenant) != (other_name, other_tenant))
    one = Room.of(RoomName(name), None if tenant is None else TenantId(tenant))
    other = Room.of(RoomName(other_name), None if other_tenant is None else TenantId(other_tenant))
    assert one.key != other.key


def test_room_key_examples() -> None:
    assert Room.of(RoomName("chat.lobby"), TenantId("acme")).key == "acme:chat.lobby"
    assert Room.of(RoomName("global.news"), None).key == "global.news"
    assert Room.from_key("global.news") == Room(RoomName("global.news"), None, "global.news")
    assert Room.from_key("acme:chat.lobby") == Room(
        RoomName("chat.lobby"), TenantId("acme"), "acme:chat.lobby"
    )
