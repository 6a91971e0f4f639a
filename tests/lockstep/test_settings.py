"""Settings: defaults, environment overrides, and errors that name the variable to fix."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from lockstep.exceptions import ConfigurationError, LockstepError
from lockstep.settings import Settings, load_settings


def test_defaults_put_sqlite_under_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    settings = load_settings()

    assert settings.data_dir == Path("data")
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/data/lockstep.db"
    assert settings.is_sqlite
    assert settings.env == "development"
    assert settings.db_pool_size == 5
    assert settings.redis_url == ""


def test_default_database_follows_data_dir(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "state")

    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/state/lockstep.db"


def test_subclass_can_rename_the_default_database_file(tmp_path: Path) -> None:
    class AppSettings(Settings):
        default_database_file = "app.db"

    settings = load_settings(AppSettings, data_dir=tmp_path)

    assert isinstance(settings, AppSettings)
    assert settings.database_url.endswith("/app.db")


def test_explicit_postgres_url_is_kept() -> None:
    url = "postgresql+asyncpg://app@db.internal:5432/app"

    settings = load_settings(database_url=url)

    assert settings.database_url == url
    assert not settings.is_sqlite


def test_environment_variable_overrides_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKSTEP_DB_POOL_SIZE", "17")
    monkeypatch.setenv("LOCKSTEP_DATABASE_URL", "postgresql+asyncpg://u@h/d")

    settings = load_settings()

    assert settings.db_pool_size == 17
    assert settings.database_url == "postgresql+asyncpg://u@h/d"


def test_keyword_override_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKSTEP_DB_POOL_SIZE", "17")

    assert load_settings(db_pool_size=3).db_pool_size == 3


def test_unparseable_environment_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOCKSTEP_DB_POOL_SIZE", "abc")

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert "LOCKSTEP_DB_POOL_SIZE" in str(raised.value)
    assert raised.value.code == "configuration_error"
    assert isinstance(raised.value, LockstepError)
    # Not a pydantic traceback: the validation error is not chained.
    assert not isinstance(raised.value.__cause__, pydantic.ValidationError)


def test_out_of_range_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKSTEP_DB_POOL_SIZE", "0")

    with pytest.raises(ConfigurationError, match="LOCKSTEP_DB_POOL_SIZE"):
        load_settings()


def test_every_bad_variable_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKSTEP_DB_POOL_SIZE", "abc")
    monkeypatch.setenv("LOCKSTEP_LOG_FORMAT", "xml")

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert "LOCKSTEP_DB_POOL_SIZE" in str(raised.value)
    assert "LOCKSTEP_LOG_FORMAT" in str(raised.value)
    assert len(raised.value.details) == 2


@pytest.mark.parametrize(
    "url", ["mysql://u@h/d", "postgresql://u@h/d", "sqlite:///x.db", "not a url"]
)
def test_unsupported_database_scheme_names_the_variable(url: str) -> None:
    with pytest.raises(ConfigurationError, match="LOCKSTEP_DATABASE_URL") as raised:
        load_settings(database_url=url)

    assert "not supported" in str(raised.value)


def test_unsupported_scheme_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKSTEP_DATABASE_URL", "mysql://u:secret@h/d")

    with pytest.raises(ConfigurationError, match="LOCKSTEP_DATABASE_URL") as raised:
        load_settings()

    assert "secret" not in str(raised.value)


def test_settings_are_immutable() -> None:
    settings = load_settings()

    with pytest.raises(pydantic.ValidationError):
        settings.db_pool_size = 9  # type: ignore[misc]


def test_the_mirror_lease_defaults_to_half_the_redis_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings(redis_timeout=0.8).mirror_lease == 0.4
    assert load_settings(cache_mirror_lease_seconds=0.1).mirror_lease == 0.1
    monkeypatch.setenv("LOCKSTEP_REDIS_TIMEOUT", "0.2")
    monkeypatch.setenv("LOCKSTEP_CACHE_MIRROR_LEASE_SECONDS", "0.3")
    with pytest.raises(ConfigurationError, match="LOCKSTEP_CACHE_MIRROR_LEASE_SECONDS"):
        load_settings()
