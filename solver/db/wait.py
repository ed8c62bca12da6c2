"""Prestart helpers of `solver migrate`: wait until PostgreSQL accepts connections, and tell
whether the schema is at the newest migration.

`wait_until_ready` is the pure part: it takes the connect attempt, the clock and the sleep as
arguments, so the backoff is tested without a server. `wait_for_database` binds it to psycopg.
It connects to the `postgres` maintenance database, as `solver migrate` does to create the
solver's database, so a server whose solver database does not exist yet counts as ready.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("solver.db.wait")

DEFAULT_FIRST_DELAY_S = 0.25
DEFAULT_MAX_DELAY_S = 5.0
MAX_CONNECT_TIMEOUT_S = 5  # one attempt against a host that drops packets


class DatabaseUnavailable(Exception):
    """PostgreSQL did not accept a connection before the deadline."""


@dataclass(frozen=True)
class WaitResult:
    attempts: int
    elapsed_s: float


def wait_until_ready(
    connect: Callable[[float], object],
    *,
    timeout_s: float,
    target: str,
    secret: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
    first_delay_s: float = DEFAULT_FIRST_DELAY_S,
    max_delay_s: float = DEFAULT_MAX_DELAY_S,
) -> WaitResult:
    """Call `connect(remaining_s)` until it returns, backing off between failures.

    The delay starts at `first_delay_s` and doubles up to `max_delay_s`; it never sleeps past the
    deadline, and the last attempt is made at the deadline. `target` names the server in the
    logs (pass it without the password); `secret`, if given, is removed from every logged error.
    Raises DatabaseUnavailable with the last error after `timeout_s`.
    """
    start = clock()
    deadline = start + max(timeout_s, 0.0)
    delay = first_delay_s
    attempt = 0
    while True:
        attempt += 1
        try:
            connect(max(deadline - clock(), 0.0))
        except Exception as exc:
            error = _redact(str(exc).strip() or type(exc).__name__, secret)
            now = clock()
            if now >= deadline:
                raise DatabaseUnavailable(
                    f"PostgreSQL at {target} did not accept connections within {timeout_s:g} s "
                    f"({attempt} attempt{'s' if attempt != 1 else ''}); last error: {error}"
                ) from None
            pause = min(delay, deadline - now)
            log.warning(
                "waiting for PostgreSQL at %s: attempt %d failed after %.1f s: %s; retrying in %.2f s",
                target,
                attempt,
                now - start,
                error,
                pause,
            )
            sleep(pause)
            delay = min(delay * 2, max_delay_s)
            continue
        elapsed = clock() - start
        log.info("PostgreSQL at %s accepts connections (attempt %d, %.1f s)", target, attempt, elapsed)
        return WaitResult(attempts=attempt, elapsed_s=elapsed)


def _redact(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "***")
    return " ".join(text.split())  # libpq errors span lines; keep one log line


def wait_for_database(database_url: str, timeout_s: float) -> WaitResult:
    """Wait until the server in `database_url` accepts a connection (see the module docstring)."""
    import psycopg
    from sqlalchemy.engine import make_url

    from solver.db.migrate import MAINTENANCE_DB, _conninfo

    url = make_url(database_url)
    conninfo = _conninfo(url, MAINTENANCE_DB)

    def connect(remaining_s: float) -> None:
        # libpq counts connect_timeout in whole seconds and treats anything below 2 as 2.
        per_try = max(2, min(MAX_CONNECT_TIMEOUT_S, int(remaining_s) + 1))
        with psycopg.connect(conninfo, connect_timeout=per_try) as conn:
            conn.execute("SELECT 1")

    return wait_until_ready(
        connect,
        timeout_s=timeout_s,
        target=url.render_as_string(hide_password=True),
        secret=url.password if isinstance(url.password, str) else None,
    )


@dataclass(frozen=True)
class MigrationState:
    current: str | None  # None: no alembic_version table (or no database) yet
    heads: tuple[str, ...]

    @property
    def at_head(self) -> bool:
        return self.current is not None and self.heads == (self.current,)


def migration_state(database_url: str) -> MigrationState:
    """The database's revision and the newest revision(s) of alembic/versions."""
    import psycopg
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url

    from solver.db.migrate import MAINTENANCE_DB, _conninfo, alembic_config, current

    heads = tuple(sorted(ScriptDirectory.from_config(alembic_config(database_url)).get_heads()))
    url = make_url(database_url)
    with psycopg.connect(_conninfo(url, MAINTENANCE_DB)) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone()
    at = current(database_url) if exists else None  # no database yet: nothing applied
    return MigrationState(current=at, heads=heads)
