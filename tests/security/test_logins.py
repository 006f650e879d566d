"""Failed-login counting and alerts (src/roomcast/security/logins.py)."""

from __future__ import annotations

import base64
import json
from ipaddress import ip_address

import jwt
import pytest

from roomcast.auth import mint_token
from roomcast.security.logins import (
    BUCKETS,
    MAX_SUBJECTS_PER_ADDRESS,
    FailedLogins,
    SlidingCount,
    claimed_subject,
)

SECRET = "logins-secret-0123456789abcdef0123456789"
IP = ip_address("198.51.100.7")
OTHER = ip_address("198.51.100.8")
T0 = 1_700_000_000.0


def logins(limit: int = 5, window: float = 60.0, max_tracked: int = 100) -> FailedLogins:
    return FailedLogins(limit=limit, window=window, max_tracked=max_tracked)


def unsigned(claims: object) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{body}.c2ln"


def test_the_claimed_subject_is_read_without_verifying() -> None:
    forged = mint_token("another-secret-0123456789abcdef0123456789", subject="mallory", roles=[])
    assert claimed_subject(forged) == "mallory"
    expired = mint_token(SECRET, subject="alice", roles=["user"], tenant="acme", ttl=-60)
    assert claimed_subject(expired) == "alice"
    assert claimed_subject(jwt.encode({"sub": "eve"}, "", algorithm="none")) == "eve"


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "not.a.jwt",
        "one-part",
        unsigned(["sub", "x"]),
        unsigned({"sub": 42}),
        unsigned({"sub": "<script>alert(1)</script>"}),
        unsigned({"sub": "x" * 65}),
        unsigned({"sub": "x"}) + "x" * 20_000,
        "a.!!!.c",
    ],
    ids=repr,
)
def test_no_subject_unless_a_valid_one_is_claimed(token: str | None) -> None:
    assert claimed_subject(token) is None


def test_more_than_the_limit_alerts_once() -> None:
    tracker = logins()
    for n in range(5):
        assert tracker.record(IP, "mallory", T0 + n) is None
    alert = tracker.record(IP, "mallory", T0 + 5)
    assert alert is not None
    assert (alert.ip_address, alert.attempts, alert.window) == (IP, 6, 60.0)
    assert (alert.first_seen, alert.last_seen) == (T0, T0 + 5)
    assert alert.subjects == (("mallory", 6),)
    # Still failing within the window: counted, but no second alert.
    for n in range(6, 50):
        assert tracker.record(IP, "mallory", T0 + n) is None
    assert tracker.attempts(IP, T0 + 50) == 50


def test_the_payload_has_the_documented_fields() -> None:
    tracker = logins(limit=1)
    tracker.record(IP, None, T0)
    alert = tracker.record(IP, "bob", T0 + 1.23456)
    assert alert is not None
    assert alert.payload() == {
        "type": "failed_login",
        "attempts": 2,
        "ip_address": "198.51.100.7",
        "window": 60.0,
        "first_seen": T0,
        "last_seen": round(T0 + 1.23456, 3),
        "subjects": [{"subject": "bob", "attempts": 1}],
    }


def test_an_address_that_keeps_failing_alerts_once_per_window() -> None:
    tracker = logins()
    alerts = [
        alert
        for second in range(0, 200)
        if (alert := tracker.record(IP, None, T0 + second)) is not None
    ]
    assert [a.last_seen - T0 for a in alerts] == [5, 65, 125, 185]
    # Later alerts count the whole window, not only the failures since the last one.
    assert all(a.attempts >= 60 for a in alerts[1:])


def test_failures_spread_wider_than_the_window_do_not_alert() -> None:
    tracker = logins()
    for n in range(30):
        assert tracker.record(IP, None, T0 + n * 13) is None  # at most 5 in any 60 s
    assert tracker.attempts(IP, T0 + 29 * 13) <= 5


def test_the_window_slides() -> None:
    tracker = logins()
    tracker.record(IP, None, T0)
    for n in range(4):
        tracker.record(IP, None, T0 + 30 + n)
    # The first failure left the window: 4 in the last 60 s, then 5.
    assert tracker.record(IP, None, T0 + 60.5) is None
    assert tracker.attempts(IP, T0 + 60.5) == 5
    alert = tracker.record(IP, None, T0 + 61)
    assert alert is not None
    assert alert.attempts == 6
    assert alert.first_seen == T0 + 30


def test_counts_are_exact_to_within_one_run_at_the_old_edge() -> None:
    tracker = logins()
    span = 60.0 / BUCKETS
    for n in range(5):
        tracker.record(IP, None, T0 + n * span / 5)  # one run
    # 60.5 s after the first failure, but within 60 s of the run's last one:
    # the run is still counted whole.
    assert tracker.attempts(IP, T0 + 60.5) == 5
    assert tracker.attempts(IP, T0 + span + 60) == 0


def test_addresses_are_counted_apart() -> None:
    tracker = logins()
    for n in range(5):
        assert tracker.record(IP, None, T0 + n) is None
        assert tracker.record(OTHER, None, T0 + n) is None
    assert tracker.record(OTHER, None, T0 + 5) is not None
    assert tracker.attempts(IP, T0 + 5) == 5


def test_ipv4_mapped_ipv6_counts_as_the_ipv4_address() -> None:
    tracker = logins()
    mapped = ip_address("::ffff:198.51.100.7")
    for n in range(5):
        tracker.record(mapped if n % 2 else IP, None, T0 + n)
    alert = tracker.record(mapped, None, T0 + 5)
    assert alert is not None
    assert alert.ip_address == IP


def test_subjects_are_counted_across_addresses_and_bounded_per_alert() -> None:
    tracker = logins(limit=21)
    for n in range(3):
        tracker.record(OTHER, "alice", T0 + n)
    for n in range(20):
        tracker.record(IP, f"user{n}", T0 + 3 + n)
    tracker.record(IP, "alice", T0 + 23)
    assert tracker.subject_attempts("alice", T0 + 23) == 4
    alert = tracker.record(IP, "user19", T0 + 24)
    assert alert is not None
    assert len(alert.subjects) == MAX_SUBJECTS_PER_ADDRESS
    # The most recent subjects, latest last; each with its count from anywhere.
    assert alert.subjects[-2:] == (("alice", 4), ("user19", 2))
    assert "user0" not in dict(alert.subjects)


def test_a_new_episode_names_only_its_own_subjects() -> None:
    tracker = logins(limit=1)
    tracker.record(IP, "old", T0)
    tracker.record(IP, "new", T0 + 200)
    alert = tracker.record(IP, None, T0 + 201)
    assert alert is not None
    assert alert.subjects == (("new", 1),)


def test_failures_without_an_address_count_only_the_subject() -> None:
    tracker = logins(limit=1)
    for n in range(5):
        assert tracker.record(None, "alice", T0 + n) is None
    assert tracker.subject_attempts("alice", T0 + 5) == 5
    assert tracker.tracked == (0, 1)


def test_limit_zero_never_alerts_but_still_counts() -> None:
    tracker = logins(limit=0)
    assert all(tracker.record(IP, None, T0 + n / 10) is None for n in range(100))
    assert tracker.attempts(IP, T0 + 10) == 100


def test_tracked_addresses_and_subjects_are_capped_oldest_first() -> None:
    tracker = logins(limit=2, max_tracked=3)
    for n in range(10):
        tracker.record(ip_address(f"198.51.100.{n}"), f"user{n}", T0 + n)
    assert tracker.tracked == (3, 3)
    assert tracker.attempts(ip_address("198.51.100.9"), T0 + 10) == 1
    assert tracker.attempts(ip_address("198.51.100.0"), T0 + 10) == 0
    assert tracker.subject_attempts("user0", T0 + 10) == 0
    # A failing address stays (most recently used), a quiet one goes.
    tracker.record(ip_address("198.51.100.7"), None, T0 + 11)
    tracker.record(ip_address("198.51.100.50"), None, T0 + 12)
    assert tracker.attempts(ip_address("198.51.100.7"), T0 + 12) == 2
    assert tracker.attempts(ip_address("198.51.100.8"), T0 + 12) == 0


def test_a_sliding_count_holds_a_fixed_number_of_runs() -> None:
    count = SlidingCount(60.0)
    for n in range(100_000):
        count.add(T0 + n * 0.01)  # 100 per second for 1000 seconds
    now = T0 + 99_999 * 0.01
    assert count.runs <= BUCKETS + 1
    # Exact to within one run (5 s here) at the old edge.
    assert 6_000 <= count.count(now) <= 6_000 + 500
    assert count.last_seen == now
    assert count.count(now + 61) == 0
    assert count.runs == 0
