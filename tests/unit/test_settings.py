"""Settings validation: clear messages, defaults refused outside dev."""

from __future__ import annotations

import pytest

from solver.core.errors import ConfigError
from solver.settings import load_settings

pytestmark = pytest.mark.unit


def test_local_config_loads_symbols() -> None:
    s = load_settings()
    assert [x.symbol_id for x in s.symbols] == [1, 2, 3]
    assert s.symbol("btcusdt") is s.symbol(1)


def test_default_jwt_secret_refused_outside_dev() -> None:
    with pytest.raises(ConfigError, match="jwt_secret"):
        load_settings(env="prod")


def test_strong_secret_accepted_in_prod() -> None:
    s = load_settings(env="prod", auth={"jwt_secret": "x" * 40})
    assert s.env == "prod"


def test_env_overrides_toml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLVER_CHAIN__CHAIN_ID", "42161")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db:5432/x")
    s = load_settings()
    assert s.chain.chain_id == 42161
    assert s.database_url == "postgresql+psycopg://u@db:5432/x"


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"chain": {"rpc_urls": []}}, "chain.rpc_urls"),
        ({"chain": {"rpc_urls": ["ftp://x"]}}, "chain.rpc_urls"),
        ({"chain": {"symmio_address": "0x123"}}, "chain.symmio_address"),
        ({"database_url": "mysql://x"}, "database_url"),
        ({"auth": {"public_base_url": "localhost:8000"}}, "auth.public_base_url"),
    ],
)
def test_invalid_values_named_in_message(override: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(**override)
    assert needle in str(err.value)


def test_missing_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLVER_CONFIG", "/nonexistent/solver.toml")
    with pytest.raises(ConfigError, match="not found"):
        load_settings()
