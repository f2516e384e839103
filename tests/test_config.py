"""Configuration: defaults < file < CRUCIAL_* environment < keyword arguments."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from crucial.config import Config, load_config
from crucial.exceptions import ConfigError
from crucial.protocol import DEFAULT_MAX_FRAME_SIZE


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CRUCIAL_* variable and an empty HOME, so only what a test sets counts."""
    for name in list(os.environ):
        if name.startswith("CRUCIAL_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def make(text: str) -> Path:
        path = _write(tmp_path / "conf" / "crucial.toml", text)
        monkeypatch.setenv("CRUCIAL_CONFIG", str(path))
        return path

    return make


# -- defaults and precedence -----------------------------------------------------------


def test_defaults() -> None:
    cfg = load_config()
    assert cfg == Config()
    assert cfg.dso == ()
    assert cfg.token is None
    assert cfg.connect_timeout == 5.0
    assert cfg.call_timeout is None
    assert cfg.max_frame_size == DEFAULT_MAX_FRAME_SIZE
    assert cfg.pool_size == 16
    assert cfg.retries == 2
    assert cfg.dedup_window == 100_000


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().pool_size = 3  # type: ignore[misc]


def test_file_at_top_level(config_file) -> None:
    config_file('dso = ["a:1", "b:2"]\ntoken = "s3cret"\nconnect_timeout = 1.5\npool_size = 3\n')
    cfg = load_config()
    assert cfg.dso == ("a:1", "b:2")
    assert cfg.token == "s3cret"
    assert cfg.connect_timeout == 1.5
    assert cfg.pool_size == 3
    assert cfg.retries == 2  # untouched keys keep their defaults


def test_file_in_a_crucial_table(config_file) -> None:
    config_file('[crucial]\ndso = "h:9"\nretries = 0\ncall_timeout = 30\n')
    cfg = load_config()
    assert cfg.dso == ("h:9",)
    assert cfg.retries == 0
    assert cfg.call_timeout == 30.0


def test_default_file_under_home(clean_env: Path) -> None:
    _write(clean_env / ".config" / "crucial" / "config.toml", "pool_size = 4\n")
    assert load_config().pool_size == 4


def test_crucial_config_wins_over_the_home_file(clean_env: Path, config_file) -> None:
    _write(clean_env / ".config" / "crucial" / "config.toml", "pool_size = 4\n")
    config_file("pool_size = 5\n")
    assert load_config().pool_size == 5


def test_precedence(config_file, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file("connect_timeout = 1.0\npool_size = 3\nretries = 4\ntoken = 'file'\n")
    monkeypatch.setenv("CRUCIAL_CONNECT_TIMEOUT", "2.0")
    monkeypatch.setenv("CRUCIAL_POOL_SIZE", "5")
    monkeypatch.setenv("CRUCIAL_TOKEN", "env")
    cfg = load_config(pool_size=7)
    assert cfg.retries == 4  # file over default
    assert cfg.connect_timeout == 2.0  # env over file
    assert cfg.token == "env"
    assert cfg.pool_size == 7  # argument over env
    assert cfg.dedup_window == 100_000  # default


def test_env_values_are_coerced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRUCIAL_MAX_FRAME_SIZE", "1024")
    monkeypatch.setenv("CRUCIAL_CALL_TIMEOUT", "2.5")
    monkeypatch.setenv("CRUCIAL_DEDUP_WINDOW", "0")
    cfg = load_config()
    assert cfg.max_frame_size == 1024
    assert cfg.call_timeout == 2.5
    assert cfg.dedup_window == 0


@pytest.mark.parametrize("value", ["", "none", "None"])
def test_call_timeout_none_spellings(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CRUCIAL_CALL_TIMEOUT", value)
    assert load_config(call_timeout=None).call_timeout is None
    assert load_config().call_timeout is None


def test_empty_token_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRUCIAL_TOKEN", "")
    assert load_config().token is None


def test_argument_can_reset_an_env_value_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRUCIAL_CALL_TIMEOUT", "3")
    assert load_config(call_timeout=None).call_timeout is None


# -- dso ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("127.0.0.1:41001", ("127.0.0.1:41001",)),
        ("a:1,b:2", ("a:1", "b:2")),
        (" a:1 , b:2 ,, ", ("a:1", "b:2")),
        ("", ()),
        (",", ()),
    ],
)
def test_dso_from_env(monkeypatch: pytest.MonkeyPatch, raw: str, expected: tuple[str, ...]) -> None:
    monkeypatch.setenv("CRUCIAL_DSO", raw)
    assert load_config().dso == expected


def test_dso_from_arguments() -> None:
    assert load_config(dso="x:1,y:2").dso == ("x:1", "y:2")
    assert load_config(dso=["x:1", "y:2"]).dso == ("x:1", "y:2")
    assert load_config(dso=("z:3",)).dso == ("z:3",)


def test_dso_that_is_not_a_list(config_file) -> None:
    path = config_file("dso = 5\n")
    with pytest.raises(ConfigError, match="'dso'") as info:
        load_config()
    assert str(path) in str(info.value)


# -- unknown keys ---------------------------------------------------------------------------


def test_unknown_key_in_file_names_key_and_file(config_file) -> None:
    path = config_file("pool_size = 3\nconect_timeout = 2\n")
    with pytest.raises(ConfigError, match="'conect_timeout'") as info:
        load_config()
    assert str(path) in str(info.value)
    assert "connect_timeout" in str(info.value)  # the known keys are listed


def test_unknown_key_in_crucial_table(config_file) -> None:
    path = config_file("[crucial]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="'bogus'") as info:
        load_config()
    assert str(path) in str(info.value)


def test_unknown_argument_names_key_and_origin() -> None:
    with pytest.raises(ConfigError, match=r"'poolsize'.*argument"):
        load_config(poolsize=3)


def test_replace_validates() -> None:
    cfg = Config()
    assert cfg.replace(pool_size="3").pool_size == 3
    assert cfg.pool_size == 16
    with pytest.raises(ConfigError, match=r"'nope'.*argument"):
        cfg.replace(nope=1)
    with pytest.raises(ConfigError, match="'retries'"):
        cfg.replace(retries=-1)


def test_other_crucial_env_vars_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # the CRUCIAL_ namespace is shared with other components (CRUCIAL_NO_UVLOOP, later
    # backends): only field names are configuration, so strangers neither fail nor apply
    monkeypatch.setenv("CRUCIAL_CONECT_TIMEOUT", "2")
    monkeypatch.setenv("CRUCIAL_NO_UVLOOP", "1")
    assert load_config().connect_timeout == Config().connect_timeout


# -- bad values ------------------------------------------------------------------------------


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRUCIAL_CONNECT_TIMEOUT", "abc")
    with pytest.raises(ConfigError, match=r"'abc'.*'connect_timeout'.*CRUCIAL_CONNECT_TIMEOUT"):
        load_config()


def test_bad_env_value_is_reported_even_if_an_argument_overrides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRUCIAL_RETRIES", "many")
    with pytest.raises(ConfigError, match="CRUCIAL_RETRIES"):
        load_config(retries=1)


@pytest.mark.parametrize("name", ["pool_size", "retries", "max_frame_size", "dedup_window"])
def test_negative_counts_are_rejected(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"'{name}'.*argument.*negative"):
        load_config(**{name: -1})


def test_negative_pool_size_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRUCIAL_POOL_SIZE", "-2")
    with pytest.raises(ConfigError, match="CRUCIAL_POOL_SIZE"):
        load_config()


def test_bad_value_in_file_names_the_file(config_file) -> None:
    path = config_file('pool_size = "lots"\n')
    with pytest.raises(ConfigError, match="'pool_size'") as info:
        load_config()
    assert str(path) in str(info.value)


@pytest.mark.parametrize("value", ["1.5x", "", "[]"])
def test_bad_float_argument(value: str) -> None:
    with pytest.raises(ConfigError, match="connect_timeout"):
        load_config(connect_timeout=value)


@pytest.mark.parametrize("name", ["connect_timeout", "call_timeout"])
def test_negative_timeouts_are_rejected(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config(**{name: -1})


# -- the file itself --------------------------------------------------------------------------


def test_crucial_config_naming_a_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("CRUCIAL_CONFIG", str(missing))
    with pytest.raises(ConfigError, match="CRUCIAL_CONFIG") as info:
        load_config()
    assert str(missing) in str(info.value)


def test_crucial_config_naming_a_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CRUCIAL_CONFIG", str(tmp_path))
    with pytest.raises(ConfigError, match="not a file"):
        load_config()


def test_invalid_toml(config_file) -> None:
    path = config_file("pool_size = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config()
    assert str(path) in str(info.value)


def test_crucial_key_that_is_not_a_table(config_file) -> None:
    config_file('crucial = "yes"\n')
    with pytest.raises(ConfigError, match="crucial"):
        load_config()
