"""Fixtures more than one folder uses, defined once.

A folder's ``conftest.py`` imports the ones it uses: each folder then has
instances of its own (its own shared server, for one), as it had when each
conftest defined them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from support.server import ServerProcess, serving

__all__ = ["server", "unique"]


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """One server shared by the folder's tests that need no special settings."""
    with serving() as process:
        yield process


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names unique to one test, so tests sharing a server never meet."""
    suffix = uuid.uuid4().hex[:10]
    return lambda prefix: f"{prefix}{suffix}"
