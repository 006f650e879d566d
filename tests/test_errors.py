"""The exception tree and its mapping to the wire (src/roomcast/errors.py)."""

from __future__ import annotations

import inspect
import re

import grpc
import pytest

import roomcast.errors as errors
from roomcast.errors import (
    Abuse,
    BrokerError,
    BrokerTimeout,
    ConfigError,
    ConnectionLimit,
    Forbidden,
    InvalidArgument,
    InvalidRoom,
    LimitExceeded,
    NotFound,
    NotMember,
    Overloaded,
    RoomcastError,
    ServerBusy,
    SlowConsumer,
    TokenExpired,
    TooLarge,
    Unauthenticated,
    Unavailable,
    UnknownType,
)
from roomcast.rpc.calls import grpc_status

Status = grpc.StatusCode

# class: (parent, gRPC status, WebSocket error frame code)
EXPECTED: dict[type[RoomcastError], tuple[type[Exception], grpc.StatusCode, str]] = {
    RoomcastError: (Exception, Status.INTERNAL, "internal"),
    ConfigError: (RoomcastError, Status.INTERNAL, "internal"),
    Unauthenticated: (RoomcastError, Status.UNAUTHENTICATED, "unauthorized"),
    TokenExpired: (Unauthenticated, Status.UNAUTHENTICATED, "unauthorized"),
    Forbidden: (RoomcastError, Status.PERMISSION_DENIED, "forbidden"),
    InvalidArgument: (RoomcastError, Status.INVALID_ARGUMENT, "bad_request"),
    NotMember: (Forbidden, Status.PERMISSION_DENIED, "not_member"),
    InvalidRoom: (InvalidArgument, Status.INVALID_ARGUMENT, "invalid_room"),
    UnknownType: (InvalidArgument, Status.INVALID_ARGUMENT, "unknown_type"),
    NotFound: (RoomcastError, Status.NOT_FOUND, "not_found"),
    LimitExceeded: (RoomcastError, Status.RESOURCE_EXHAUSTED, "rate_limited"),
    TooLarge: (LimitExceeded, Status.RESOURCE_EXHAUSTED, "too_large"),
    ConnectionLimit: (LimitExceeded, Status.RESOURCE_EXHAUSTED, "rate_limited"),
    SlowConsumer: (LimitExceeded, Status.RESOURCE_EXHAUSTED, "slow_consumer"),
    Overloaded: (LimitExceeded, Status.RESOURCE_EXHAUSTED, "overloaded"),
    ServerBusy: (Overloaded, Status.RESOURCE_EXHAUSTED, "overloaded"),
    Abuse: (LimitExceeded, Status.RESOURCE_EXHAUSTED, "rate_limited"),
    Unavailable: (RoomcastError, Status.UNAVAILABLE, "unavailable"),
    BrokerError: (RoomcastError, Status.UNAVAILABLE, "unavailable"),
    BrokerTimeout: (BrokerError, Status.DEADLINE_EXCEEDED, "unavailable"),
}


def defined_classes() -> dict[str, type]:
    return {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value) and value.__module__ == errors.__name__
    }


def tree() -> dict[str, tuple[str | None, str]]:
    """The docstring's tree: each class with its parent and the rest of its line."""
    assert errors.__doc__ is not None
    found: dict[str, tuple[str | None, str]] = {}
    stack: list[tuple[int, str]] = []  # (depth, name) of the open branches
    for line in errors.__doc__.splitlines():
        if "\u2500\u2500 " in line:  # "── "
            lead, _, text = line.partition("\u2500\u2500 ")
            depth = len(lead)
        elif line.strip() == "RoomcastError":
            depth, text = 0, line.strip()
        else:
            continue
        name, _, rest = text.partition(" ")
        while stack and stack[-1][0] >= depth:
            stack.pop()
        found[name] = (stack[-1][1] if stack else None, rest.strip())
        stack.append((depth, name))
    return found


def test_the_docstring_tree_lists_every_class_in_the_module() -> None:
    assert set(tree()) == set(defined_classes())


def test_the_docstring_tree_draws_the_real_hierarchy() -> None:
    classes = defined_classes()
    for name, (parent, _) in tree().items():
        expected = "Exception" if parent is None else parent
        assert classes[name].__bases__ == (Exception if parent is None else classes[expected],), (
            name
        )


def test_the_docstring_tree_names_the_real_status_and_frame_code() -> None:
    classes = defined_classes()
    for name, (_, rest) in tree().items():
        cls = classes[name]
        assert issubclass(cls, RoomcastError), name
        status = re.match(r"([A-Z_]{4,})\b", rest)
        if status is not None:
            assert cls.status == status.group(1), name
        frame = re.search(r'"([a-z_]+)"', rest)
        if frame is not None:
            assert cls.frame_code == frame.group(1), name


def test_every_class_in_the_module_is_in_the_expected_table() -> None:
    assert set(defined_classes().values()) == set(EXPECTED)


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda cls: cls.__name__)
def test_status_and_frame_code(cls: type[RoomcastError]) -> None:
    parent, status, frame_code = EXPECTED[cls]
    assert cls.__bases__ == (parent,)
    assert cls.status == status.name
    assert cls.frame_code == frame_code
    error = cls("rooms[0]: bad")
    assert grpc_status(error) == (status, "rooms[0]: bad")
    assert error.message == "rooms[0]: bad"
    assert str(error) == "rooms[0]: bad"
    assert isinstance(error, RoomcastError)


def test_causes_are_kept() -> None:
    def parse() -> None:
        try:
            int("x")
        except ValueError as cause:
            raise InvalidArgument("payload: not a number") from cause

    with pytest.raises(InvalidArgument) as caught:
        parse()
    assert isinstance(caught.value.__cause__, ValueError)
    assert grpc_status(caught.value) == (Status.INVALID_ARGUMENT, "payload: not a number")


def test_all_exports_every_error() -> None:
    assert sorted(errors.__all__) == sorted(defined_classes())
