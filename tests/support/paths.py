"""Where things are in the repository."""

from __future__ import annotations

from pathlib import Path

__all__ = ["repository"]


def repository() -> Path:
    """The repository's root folder."""
    return Path(__file__).resolve().parents[2]
