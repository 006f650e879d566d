"""Remembered publish results (src/roomcast/idempotency.py)."""

from __future__ import annotations

from roomcast.idempotency import IdempotencyCache


def test_a_result_is_remembered_until_the_ttl() -> None:
    cache: IdempotencyCache[int] = IdempotencyCache(ttl=10.0, max_keys=100)
    cache.put("k", 42, now=100.0)
    assert cache.get("k", now=100.0) == 42
    assert cache.get("k", now=109.999) == 42
    # Exactly ttl seconds later it is gone.
    assert cache.get("k", now=110.0) is None
    assert len(cache) == 0


def test_unknown_keys_have_no_result() -> None:
    cache: IdempotencyCache[str] = IdempotencyCache(ttl=10.0, max_keys=100)
    assert cache.get("nope", now=0.0) is None
    cache.put("k", "r", now=0.0)
    assert cache.get("K", now=0.0) is None


def test_only_expired_entries_are_dropped() -> None:
    cache: IdempotencyCache[str] = IdempotencyCache(ttl=10.0, max_keys=100)
    cache.put("a", "ra", now=0.0)
    cache.put("b", "rb", now=5.0)
    cache.put("c", "rc", now=9.0)
    assert cache.get("b", now=12.0) == "rb"
    assert len(cache) == 2
    assert cache.get("a", now=12.0) is None
    assert cache.get("c", now=18.999) == "rc"
    assert cache.get("b", now=18.999) is None
    assert len(cache) == 1


def test_putting_a_key_again_renews_it() -> None:
    cache: IdempotencyCache[str] = IdempotencyCache(ttl=10.0, max_keys=100)
    cache.put("a", "first", now=0.0)
    cache.put("b", "rb", now=1.0)
    cache.put("a", "second", now=8.0)
    assert len(cache) == 2
    assert cache.get("a", now=15.0) == "second"
    assert cache.get("b", now=15.0) is None
    assert len(cache) == 1


def test_the_oldest_keys_are_dropped_beyond_max_keys() -> None:
    cache: IdempotencyCache[int] = IdempotencyCache(ttl=1000.0, max_keys=3)
    for index in range(5):
        cache.put(f"k{index}", index, now=float(index))
        assert len(cache) <= 3
    assert len(cache) == 3
    assert [cache.get(f"k{index}", now=5.0) for index in range(5)] == [None, None, 2, 3, 4]


def test_a_renewed_key_is_the_newest_for_max_keys() -> None:
    cache: IdempotencyCache[int] = IdempotencyCache(ttl=1000.0, max_keys=2)
    cache.put("a", 1, now=0.0)
    cache.put("b", 2, now=1.0)
    cache.put("a", 3, now=2.0)
    cache.put("c", 4, now=3.0)
    assert cache.get("a", now=4.0) == 3
    assert cache.get("b", now=4.0) is None
    assert cache.get("c", now=4.0) == 4
