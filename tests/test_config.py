"""Settings from options, environment and TOML (src/roomcast/config.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from support.tokens import SECRET

from roomcast.config import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HOST,
    DEFAULT_HTTP_PORT,
    ENV_PREFIX,
    ClientSettings,
    Settings,
    signing_secret,
)
from roomcast.errors import ConfigError

KEYED = {"ROOMCAST_JWT_SECRET": SECRET}


def toml(tmp_path: Path, text: str, name: str = "roomcast.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults() -> None:
    settings = Settings.load(environ=KEYED)
    assert ENV_PREFIX == "ROOMCAST_"
    assert (settings.host, settings.grpc_port, settings.http_port) == (
        DEFAULT_HOST,
        DEFAULT_GRPC_PORT,
        DEFAULT_HTTP_PORT,
    )
    assert (DEFAULT_HOST, DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT) == ("0.0.0.0", 50051, 8080)
    assert settings.broker == "memory://"
    assert settings.jwt_secret == SECRET
    assert settings.jwt_public_key is None
    assert settings.policy is None
    assert settings.dev is False
    assert re.fullmatch(r"node-[0-9a-f]{6}", settings.node_id)
    assert settings.max_payload_bytes == 64 * 1024
    assert settings.idempotency_ttl == 300.0


def test_the_secret_is_not_in_the_repr() -> None:
    settings = Settings.load(environ=KEYED)
    assert SECRET not in repr(settings)
    assert "jwt_secret" not in repr(settings)


def test_each_node_draws_its_own_id() -> None:
    assert Settings.load(environ=KEYED).node_id != Settings.load(environ=KEYED).node_id


@pytest.mark.parametrize(
    ("in_file", "in_env", "in_options", "expected"),
    [
        (True, True, True, 3000),
        (True, True, False, 2000),
        (True, False, True, 3000),
        (False, True, True, 3000),
        (True, False, False, 1000),
        (False, True, False, 2000),
        (False, False, False, DEFAULT_GRPC_PORT),
    ],
)
def test_precedence_options_then_environment_then_file(
    tmp_path: Path, in_file: bool, in_env: bool, in_options: bool, expected: int
) -> None:
    path = toml(tmp_path, "grpc_port = 1000\n" if in_file else "")
    environ = {**KEYED, **({"ROOMCAST_GRPC_PORT": "2000"} if in_env else {})}
    options = {"grpc_port": 3000} if in_options else {}
    assert Settings.load(options, environ=environ, config_file=path).grpc_port == expected


def test_each_setting_comes_from_its_own_highest_source(tmp_path: Path) -> None:
    path = toml(tmp_path, 'host = "10.0.0.1"\nbroker = "redis://file"\nhttp_port = 9000\n')
    environ = {**KEYED, "ROOMCAST_BROKER": "redis://env", "ROOMCAST_HTTP_PORT": "9100"}
    settings = Settings.load({"http_port": 9200, "host": None}, environ=environ, config_file=path)
    assert (settings.host, settings.broker, settings.http_port) == (
        "10.0.0.1",
        "redis://env",
        9200,
    )


def test_roomcast_config_names_the_file(tmp_path: Path) -> None:
    path = toml(tmp_path, "grpc_port = 1234\n")
    settings = Settings.load(environ={**KEYED, "ROOMCAST_CONFIG": str(path)})
    assert settings.grpc_port == 1234


def test_an_explicit_config_file_wins_over_roomcast_config(tmp_path: Path) -> None:
    named = toml(tmp_path, "grpc_port = 1111\n", "named.toml")
    given = toml(tmp_path, "grpc_port = 2222\n", "given.toml")
    environ = {**KEYED, "ROOMCAST_CONFIG": str(named)}
    assert Settings.load(environ=environ, config_file=given).grpc_port == 2222


def test_empty_environment_values_are_ignored(tmp_path: Path) -> None:
    path = toml(tmp_path, "grpc_port = 1000\n")
    environ = {**KEYED, "ROOMCAST_GRPC_PORT": ""}
    assert Settings.load(environ=environ, config_file=path).grpc_port == 1000


def test_values_are_coerced_to_their_types(tmp_path: Path) -> None:
    path = toml(tmp_path, 'jwt_public_key = "/keys/pub.pem"\npublish_timeout = 2\n')
    environ = {
        "ROOMCAST_DEV": "yes",
        "ROOMCAST_POLICY": "/etc/roomcast/policy.toml",
        "ROOMCAST_SHUTDOWN_GRACE": "2.5",
        "ROOMCAST_MAX_BATCH_SIZE": "17",
        "ROOMCAST_JWT_ISSUER": "https://id.example",
    }
    settings = Settings.load({"metrics_interval": "0.5"}, environ=environ, config_file=path)
    assert settings.dev is True
    assert settings.jwt_public_key == Path("/keys/pub.pem")
    assert settings.policy == Path("/etc/roomcast/policy.toml")
    assert settings.publish_timeout == 2.0
    assert isinstance(settings.publish_timeout, float)
    assert settings.shutdown_grace == 2.5
    assert settings.max_batch_size == 17
    assert settings.jwt_issuer == "https://id.example"
    assert settings.metrics_interval == 0.5


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_boolean_spellings(raw: str, expected: bool) -> None:
    assert Settings.load(environ={**KEYED, "ROOMCAST_DEV": raw}).dev is expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ROOMCAST_GRPC_PORT": "abc"}, "ROOMCAST_GRPC_PORT: 'abc' is not a valid int"),
        ({"ROOMCAST_GRPC_PORT": "80.5"}, "ROOMCAST_GRPC_PORT: '80.5' is not a valid int"),
        ({"ROOMCAST_DEV": "maybe"}, "ROOMCAST_DEV: 'maybe' is not a valid bool"),
        (
            {"ROOMCAST_PUBLISH_TIMEOUT": "soon"},
            "ROOMCAST_PUBLISH_TIMEOUT: 'soon' is not a valid float",
        ),
    ],
)
def test_environment_values_that_do_not_parse(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.load(environ={**KEYED, **environ})
    assert caught.value.message == message
    assert isinstance(caught.value.__cause__, ValueError)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"grpc_port": "x"}, "--grpc-port: 'x' is not a valid int"),
        ({"grpc_port": True}, "--grpc-port: True is not a valid int"),
        ({"dev": "perhaps"}, "--dev: 'perhaps' is not a valid bool"),
        ({"shutdown_grace": [1]}, "--shutdown-grace: [1] is not a valid float"),
    ],
)
def test_options_that_do_not_parse(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.load(options, environ=KEYED)
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('grpc_port = "abc"\n', "grpc_port: 'abc' is not a valid int"),
        ("grpc_port = true\n", "grpc_port: True is not a valid int"),
        ('dev = "sometimes"\n', "dev: 'sometimes' is not a valid bool"),
        ("colour = 1\n", "unknown setting 'colour'"),
    ],
)
def test_file_values_that_do_not_parse(tmp_path: Path, text: str, fragment: str) -> None:
    path = toml(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        Settings.load(environ=KEYED, config_file=path)
    assert caught.value.message == f"config file {path}: {fragment}"


def test_an_unreadable_config_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        Settings.load(environ=KEYED, config_file=path)
    assert caught.value.message == f"cannot read config file {path}: No such file or directory"


def test_a_config_file_that_is_not_toml(tmp_path: Path) -> None:
    path = toml(tmp_path, "grpc_port = = 1\n")
    with pytest.raises(ConfigError) as caught:
        Settings.load(environ=KEYED, config_file=path)
    assert caught.value.message.startswith(f"config file {path} is not valid TOML: ")


def test_a_jwt_key_is_required_without_dev() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.load(environ={})
    assert caught.value.message.startswith("no JWT key: set --jwt-secret or --jwt-public-key")
    assert "--dev" in caught.value.message


def test_dev_needs_no_jwt_key() -> None:
    settings = Settings.load({"dev": True}, environ={})
    assert settings.dev is True
    assert settings.jwt_secret is None


def test_a_public_key_is_a_jwt_key() -> None:
    settings = Settings.load({"jwt_public_key": "/keys/pub.pem"}, environ={})
    assert settings.jwt_public_key == Path("/keys/pub.pem")


def test_a_secret_and_a_public_key_together_are_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"^give either a JWT secret or a JWT public key, not both$"
    ):
        Settings.load({"jwt_public_key": "/keys/pub.pem"}, environ=KEYED)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"grpc_port": 65536}, "grpc_port: 65536 is not a TCP port"),
        ({"http_port": -1}, "http_port: -1 is not a TCP port"),
        ({"max_payload_bytes": 0}, "max_payload_bytes: must be greater than 0"),
        ({"max_batch_size": -5}, "max_batch_size: must be greater than 0"),
        ({"subscriber_buffer_bytes": 0}, "subscriber_buffer_bytes: must be greater than 0"),
    ],
)
def test_values_that_make_no_sense(options: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.load(options, environ=KEYED)
    assert caught.value.message == message


@pytest.mark.parametrize("port", [0, 65535])
def test_port_bounds_are_inclusive(port: int) -> None:
    assert Settings.load({"grpc_port": port, "http_port": port}, environ=KEYED).grpc_port == port


def test_replace_makes_a_changed_copy() -> None:
    settings = Settings.load(environ=KEYED)
    changed = settings.replace(host="127.0.0.1", grpc_port=1)
    assert (changed.host, changed.grpc_port) == ("127.0.0.1", 1)
    assert (settings.host, settings.grpc_port) == (DEFAULT_HOST, DEFAULT_GRPC_PORT)
    assert changed.node_id == settings.node_id


# -- client settings ------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "environ", "target", "token"),
    [
        ({"token": "t1"}, {}, "localhost:50051", "t1"),
        (
            {"target": "h:1", "token": "t1"},
            {"ROOMCAST_TARGET": "e:2", "ROOMCAST_TOKEN": "t2"},
            "h:1",
            "t1",
        ),
        ({}, {"ROOMCAST_TARGET": "e:2", "ROOMCAST_TOKEN": "t2"}, "e:2", "t2"),
        ({"target": None, "token": ""}, {"ROOMCAST_TOKEN": "t2"}, "localhost:50051", "t2"),
    ],
)
def test_client_settings(
    options: dict[str, str | None], environ: dict[str, str], target: str, token: str
) -> None:
    client = ClientSettings.load(options, environ=environ)
    assert (client.target, client.token) == (target, token)
    assert token not in repr(client)


def test_client_settings_need_a_token() -> None:
    with pytest.raises(ConfigError, match=r"^no token: pass --token or set ROOMCAST_TOKEN$"):
        ClientSettings.load({"target": "h:1"}, environ={"ROOMCAST_TARGET": "e:2"})


# -- signing secret ----------------------------------------------------------------


OPTION_SECRET = "option-secret-0123456789abcdef012345"


@pytest.mark.parametrize(
    ("option", "environ", "expected"),
    [
        (OPTION_SECRET, {"ROOMCAST_JWT_SECRET": SECRET}, OPTION_SECRET),
        (None, {"ROOMCAST_JWT_SECRET": SECRET}, SECRET),
        ("", {"ROOMCAST_JWT_SECRET": SECRET}, SECRET),
        (OPTION_SECRET, {}, OPTION_SECRET),
    ],
)
def test_signing_secret(option: str | None, environ: dict[str, str], expected: str) -> None:
    assert signing_secret(option, environ=environ) == expected


@pytest.mark.parametrize(
    ("option", "environ"),
    [("short", {}), (None, {"ROOMCAST_JWT_SECRET": "x" * 31}), ("\u00e9" * 15 + "x", {})],
)
def test_signing_secret_must_be_32_bytes(option: str | None, environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"^the JWT secret must be at least 32 bytes long$"):
        signing_secret(option, environ=environ)


def test_signing_secret_counts_bytes_not_characters() -> None:
    secret = "\u00e9" * 16  # 16 characters, 32 bytes in UTF-8
    assert signing_secret(secret, environ={}) == secret


@pytest.mark.parametrize("environ", [{}, {"ROOMCAST_JWT_SECRET": ""}])
def test_signing_secret_is_required(environ: dict[str, str]) -> None:
    with pytest.raises(
        ConfigError, match=r"^no secret: pass --jwt-secret or set ROOMCAST_JWT_SECRET$"
    ):
        signing_secret(None, environ=environ)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("grpc_port = 5.7\n", "grpc_port: 5.7 is not a valid int"),
        ("max_batch_size = -0.5\n", "max_batch_size: -0.5 is not a valid int"),
    ],
)
def test_a_fractional_whole_number_in_the_file_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    path = toml(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        Settings.load(environ=KEYED, config_file=path)
    assert caught.value.message == f"config file {path}: {message}"


def test_a_whole_float_in_the_file_is_a_whole_number(tmp_path: Path) -> None:
    path = toml(tmp_path, "grpc_port = 5000.0\n")
    settings = Settings.load(environ=KEYED, config_file=path)
    assert settings.grpc_port == 5000
    assert isinstance(settings.grpc_port, int)


def test_an_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.load({"colour": "red"}, environ=KEYED)
    assert caught.value.message == "unknown setting 'colour'"


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "roomcast.toml"
    path.write_bytes(b"\xffgrpc_port = 1\n")
    with pytest.raises(ConfigError) as caught:
        Settings.load(environ=KEYED, config_file=path)
    assert caught.value.message == f"config file {path} is not UTF-8 text"
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)


# -- known bugs (reported; these flip to failures once fixed) ---------------------


def test_a_boolean_timeout_in_the_file_is_refused(tmp_path: Path) -> None:
    path = toml(tmp_path, "publish_timeout = true\n")
    with pytest.raises(ConfigError, match="publish_timeout"):
        Settings.load(environ=KEYED, config_file=path)
