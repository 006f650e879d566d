"""Properties of presence pages (src/roomcast/presence.py, ``members_page``).

What the code does, read from it: members are ordered by (joined_at,
connection id); a page takes members while their sizes fit ``max_bytes``,
but always at least one, however large; its token is ``repr(joined_at)/id``
of its last member, and the next page starts strictly after that place, so
members that come and go between pages shift nothing. A token that is no
such place (too long, no ``/``, no id, a time that is no finite float) is
refused with ``InvalidArgument`` naming ``page_token``; any other token is a
place and is served from there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st
from support.strategies import PROPERTY, any_text, attempt

from roomcast.bridge.frames import MAX_PAGE_TOKEN, member_size
from roomcast.errors import InvalidArgument
from roomcast.presence import MAX_TOKEN_LENGTH, ConnectionId, Member, members_page
from roomcast.rooms import TenantId

# Connection ids as the bridge makes them (secrets.token_urlsafe(12): 16
# characters), and longer ones up to 64, of the same alphabet.
_URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
connection_ids = st.text(_URLSAFE, min_size=1, max_size=64)
# Times: now-like, small, and few distinct ones so that ties are common.
times = (
    st.floats(0, 4_102_444_800, allow_nan=False)
    | st.sampled_from([0.0, 1.0, 1.5, 1_700_000_000.123456])
    | st.floats(-1e300, 1e300, allow_nan=False)
)


def _member(connection_id: str, user: str, tenant: str | None, joined_at: float) -> Member:
    return Member(
        ConnectionId(connection_id), user, None if tenant is None else TenantId(tenant), joined_at
    )


member_sets = st.dictionaries(
    connection_ids,
    st.tuples(st.text(max_size=12), st.none() | st.text(max_size=12), times),
    max_size=30,
).map(lambda drawn: [_member(cid, user, tenant, at) for cid, (user, tenant, at) in drawn.items()])
budgets = st.integers(-10, 3_000)
sizes: st.SearchStrategy[Callable[[Member], int]] = st.sampled_from(
    [member_size, lambda m: len(m.connection_id) + len(m.user_id) + 24, lambda m: 1]
)


def _order(member: Member) -> tuple[float, str]:
    return (member.joined_at, member.connection_id)


def _pages(
    members: list[Member], max_bytes: int, size: Callable[[Member], int]
) -> tuple[list[list[Member]], list[str]]:
    """Every page, following each page's token, and the tokens given."""
    pages, tokens, token = [], [], ""
    for _ in range(len(members) + 1):
        page, token = members_page(members, token, max_bytes, size)
        pages.append(page)
        tokens.append(token)
        if not token:
            return pages, tokens
    raise AssertionError(f"more than {len(members) + 1} pages for {len(members)} members")


@PROPERTY
@given(member_sets.flatmap(st.permutations), budgets, sizes)
def test_following_the_tokens_lists_every_member_once_in_order_within_budget(
    members: list[Member], max_bytes: int, size: Callable[[Member], int]
) -> None:
    pages, tokens = _pages(members, max_bytes, size)
    listed = [member for page in pages for member in page]
    assert listed == sorted(members, key=_order)
    for page, token in zip(pages, tokens, strict=True):
        assert page or not members  # an empty page only for an empty room
        used = sum(size(m) for m in page)
        assert used <= max_bytes or len(page) <= 1  # at least one member, however large
        # A client can send the token back: no longer than either shell takes.
        assert len(token) <= min(MAX_TOKEN_LENGTH, MAX_PAGE_TOKEN)
    for page, following in pairwise(pages):
        # A page stops only when the next member would not fit.
        assert sum(size(m) for m in page) + size(following[0]) > max_bytes


@PROPERTY
@given(member_sets, member_sets, budgets, st.data())
def test_members_who_come_and_go_between_pages_shift_no_one(
    members: list[Member], newcomers: list[Member], max_bytes: int, data: st.DataObject
) -> None:
    page, token = members_page(members, "", max_bytes, member_size)
    if not token:
        return
    known = {m.connection_id for m in members}
    leaving = data.draw(st.sets(st.sampled_from(sorted(known))))
    now = [m for m in members if m.connection_id not in leaving]
    now += [m for m in newcomers if m.connection_id not in known]
    rest, _ = _pages_from(now, token, max_bytes)
    last = _order(page[-1])
    # Exactly the members now present after the first page's last one, in order.
    assert rest == sorted((m for m in now if _order(m) > last), key=_order)
    assert not {m.connection_id for m in rest} & {m.connection_id for m in page}


def _pages_from(members: list[Member], token: str, max_bytes: int) -> tuple[list[Member], int]:
    listed: list[Member] = []
    for count in range(len(members) + 1):
        page, token = members_page(members, token, max_bytes, member_size)
        listed += page
        if not token:
            return listed, count + 1
    raise AssertionError("the pages do not end")


def _place(token: str) -> tuple[float, str] | None:
    """The place a token stands for, by the rule the module documents, or None."""
    when, slash, connection_id = token.partition("/")
    if len(token) > MAX_TOKEN_LENGTH or not slash or not connection_id:
        return None
    try:
        value = float(when)
    except ValueError:
        return None
    return (value, connection_id) if math.isfinite(value) else None


tokens = (
    any_text
    | st.builds(lambda at, cid: f"{at!r}/{cid}", times | st.floats(), connection_ids | any_text)
    | st.builds(
        lambda at, cid: f"{at}/{cid}",
        st.sampled_from(["", "nan", "inf", "-inf", " 1 ", "1_0", "1e999", "0x1"]),
        connection_ids,
    )
    | st.text(min_size=MAX_TOKEN_LENGTH - 2, max_size=MAX_TOKEN_LENGTH + 2)
)


@PROPERTY
@given(member_sets, tokens, budgets)
def test_any_token_is_refused_naming_it_or_served_from_the_place_it_names(
    members: list[Member], token: str, max_bytes: int
) -> None:
    result, error = attempt(
        lambda: members_page(members, token, max_bytes, member_size), InvalidArgument
    )
    place = _place(token) if token else (-math.inf, "")
    if result is None:
        assert place is None
        assert str(error).startswith("page_token: ")
        return
    assert place is not None
    page, following = result
    after = sorted((m for m in members if _order(m) > place), key=_order)
    assert page == after[: len(page)]
    assert bool(following) == (len(page) < len(after))
