"""The security monitoring settings (src/roomcast/config.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from roomcast.config import Settings
from roomcast.errors import ConfigError
from roomcast.security.watch import SecurityWatch

KEYED = {"ROOMCAST_JWT_SECRET": "test-secret-0123456789abcdef0123456789"}


def test_defaults() -> None:
    settings = Settings.load(environ=KEYED)
    assert settings.failed_login_limit == 5
    assert settings.failed_login_window == 60.0
    assert settings.new_location_days == 30.0
    assert settings.security_max_tracked == 10_000
    assert settings.trusted_proxies == ""
    assert settings.geoip_database is None


def test_from_the_environment_and_toml(tmp_path: Path) -> None:
    config = tmp_path / "roomcast.toml"
    config.write_text(
        'trusted_proxies = "10.0.0.0/8, 192.0.2.10"\n'
        "failed_login_window = 120\n"
        'geoip_database = "/var/lib/GeoLite2-City.mmdb"\n'
    )
    settings = Settings.load(
        environ={**KEYED, "ROOMCAST_FAILED_LOGIN_LIMIT": "10", "ROOMCAST_NEW_LOCATION_DAYS": "7"},
        config_file=config,
    )
    assert settings.failed_login_limit == 10
    assert settings.failed_login_window == 120.0
    assert settings.new_location_days == 7.0
    assert settings.trusted_proxies == "10.0.0.0/8, 192.0.2.10"
    assert settings.geoip_database == Path("/var/lib/GeoLite2-City.mmdb")
    watch = SecurityWatch(settings)
    assert len(watch.proxies.networks) == 2
    assert (watch.logins.limit, watch.logins.window) == (10, 120.0)
    assert watch.locations.horizon == 7 * 86_400


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TRUSTED_PROXIES", "10.0.0.1, lb.internal", "trusted_proxies: 'lb.internal'"),
        ("FAILED_LOGIN_LIMIT", "-1", "failed_login_limit: must be 0 (off) or more"),
        ("FAILED_LOGIN_WINDOW", "0", "failed_login_window: must be greater than 0"),
        ("NEW_LOCATION_DAYS", "-3", "new_location_days: must be 0 (off) or more"),
        ("SECURITY_MAX_TRACKED", "0", "security_max_tracked: must be greater than 0"),
    ],
)
def test_bad_values_are_refused_by_name(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.load(environ={**KEYED, f"ROOMCAST_{name}": value})


def test_geoip_is_opened_only_when_configured(tmp_path: Path) -> None:
    watch = SecurityWatch(Settings.load(environ=KEYED))
    watch.open()
    assert watch.geoip is None
    missing = SecurityWatch(
        Settings.load(environ={**KEYED, "ROOMCAST_GEOIP_DATABASE": str(tmp_path / "x.mmdb")})
    )
    with pytest.raises(ConfigError, match="geoip_database: cannot read"):
        missing.open()
