"""GeoIP lookups from a MaxMind-format database made here (src/roomcast/security/geoip.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from roomcast.errors import ConfigError
from roomcast.security.geoip import GeoIP, Place


def city_database(path: Path) -> Path:
    """A small database in the GeoLite2-City layout."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    writer.insert_network(
        IPSet(["198.51.100.0/24"]),
        {
            "country": {"iso_code": "NZ", "names": {"en": "New Zealand", "de": "Neuseeland"}},
            "city": {"names": {"en": "Wellington"}},
        },
    )
    writer.insert_network(
        IPSet(["2001:db8:2::/48"]),
        {"country": {"iso_code": "DE", "names": {"en": "Germany"}}},
    )
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def geoip(tmp_path: Path) -> Iterator[GeoIP]:
    opened = GeoIP.open(city_database(tmp_path / "city.mmdb"))
    yield opened
    opened.close()


def test_country_and_city(geoip: GeoIP) -> None:
    place = geoip.locate(ip_address("198.51.100.7"))
    assert place == Place("NZ", "New Zealand", "Wellington")
    assert place.fields() == {
        "country_code": "NZ",
        "country": "New Zealand",
        "city": "Wellington",
    }


def test_missing_fields_are_left_out(geoip: GeoIP) -> None:
    place = geoip.locate(ip_address("2001:db8:2:1::5"))
    assert place is not None
    assert place.fields() == {"country_code": "DE", "country": "Germany"}


def test_unknown_addresses_have_no_place(geoip: GeoIP) -> None:
    assert geoip.locate(ip_address("203.0.113.7")) is None
    assert geoip.locate(ip_address("2001:db8:9::1")) is None


def test_an_ipv6_address_in_an_ipv4_database_has_no_place(tmp_path: Path) -> None:
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["198.51.100.0/24"]), {"country": {"iso_code": "NZ"}})
    writer.to_db_file(str(tmp_path / "v4.mmdb"))
    geoip = GeoIP.open(tmp_path / "v4.mmdb")
    try:
        assert geoip.locate(ip_address("198.51.100.1")) == Place("NZ")
        assert geoip.locate(ip_address("2001:db8::1")) is None
    finally:
        geoip.close()


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"geoip_database: cannot read .*nope\.mmdb"):
        GeoIP.open(tmp_path / "nope.mmdb")


def test_a_file_that_is_no_database_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 100)
    with pytest.raises(ConfigError, match="is not a MaxMind DB file"):
        GeoIP.open(path)


def test_without_maxminddb_a_config_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "maxminddb", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'roomcast\[geoip\]'"):
        GeoIP.open(city_database(tmp_path / "city.mmdb"))
