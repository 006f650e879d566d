"""Country and city of an address, from a MaxMind-format database (optional).

Off unless ``geoip_database`` names a file. The reader is the optional
dependency ``maxminddb`` (``pip install 'roomcast[geoip]'``), imported only
when a database is configured. Records are read in the GeoIP2/GeoLite2 City
and Country layout (``country.iso_code``, ``country.names.en``,
``city.names.en``); fields a database lacks are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .addresses import IPAddress

if TYPE_CHECKING:
    from maxminddb import Reader

__all__ = ["GeoIP", "Place"]

LANGUAGE = "en"


@dataclass(frozen=True, slots=True)
class Place:
    """Where an address is, as far as the database knows."""

    country_code: str = ""
    country: str = ""
    city: str = ""

    def fields(self) -> dict[str, str]:
        """The known fields, for an event payload."""
        return {
            name: value
            for name, value in (
                ("country_code", self.country_code),
                ("country", self.country),
                ("city", self.city),
            )
            if value
        }


def _get(record: Any, *path: str) -> str:
    for key in path:
        if not isinstance(record, Mapping):
            return ""
        record = record.get(key)
    return record if isinstance(record, str) else ""


class GeoIP:
    """An open MaxMind-format database.

    Args:
        reader: an open ``maxminddb`` reader (use :meth:`open`).
    """

    def __init__(self, reader: Reader) -> None:
        self._reader = reader

    @classmethod
    def open(cls, path: Path) -> GeoIP:
        """Open the database at ``path``.

        Raises:
            ConfigError: maxminddb is not installed, or the file cannot be
                read as a MaxMind DB.
        """
        try:
            import maxminddb
        except ImportError as error:
            raise ConfigError(
                f"geoip_database: reading {path} needs the maxminddb package "
                "(pip install 'roomcast[geoip]')"
            ) from error
        try:
            return cls(maxminddb.open_database(str(path)))
        except OSError as error:
            raise ConfigError(
                f"geoip_database: cannot read {path}: {error.strerror or error}"
            ) from error
        except (maxminddb.InvalidDatabaseError, ValueError) as error:
            raise ConfigError(f"geoip_database: {path} is not a MaxMind DB file") from error

    def locate(self, address: IPAddress) -> Place | None:
        """Where ``address`` is, or None when the database does not say."""
        try:
            record = self._reader.get(address)
        except (ValueError, RuntimeError):
            # An IPv6 address in an IPv4-only database, or a damaged file:
            # a location is a courtesy, never a reason to fail a connection.
            return None
        place = Place(
            country_code=_get(record, "country", "iso_code"),
            country=_get(record, "country", "names", LANGUAGE),
            city=_get(record, "city", "names", LANGUAGE),
        )
        return place if place.fields() else None

    def close(self) -> None:
        """Release the file."""
        self._reader.close()
