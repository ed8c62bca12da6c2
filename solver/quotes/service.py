"""Instant trading use cases: shared pieces and the read side (http-api.md §3).

The API process never signs or sends: an accepted request is persisted together with its
outbox intent (and a notification) in one transaction, and the chain worker executes the
intent. The write use cases live in `open_service` and `close_service`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import TypeVar

from solver.core.clock import Clock
from solver.core.errors import ErrorCode, SolverError
from solver.core.units import fmt
from solver.db.engine import SessionFactory
from solver.db.models import InstantClose, InstantOpen
from solver.market.balances import checksum
from solver.quotes import queries

log = logging.getLogger("solver.quotes")
T = TypeVar("T")

# GET lists show pending requests and those finished this recently.
RECENT = timedelta(minutes=5)
_MAX_KEY_LEN = 255


def parse_id(raw: str, what: str, not_found: ErrorCode, *, positive: bool = False) -> int:
    """A non-zero id from a path segment; `not_found` (a 404) for anything that names none."""
    text = raw.strip()
    digits = text[1:] if text.startswith("-") and not positive else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18 or int(text) == 0:
        raise SolverError(not_found, f"{text[:40]!r} is not a valid {what}.")
    return int(text)


def idempotency_key(raw: str | None) -> str | None:
    """The Idempotency-Key header: None when absent; 1..255 visible ASCII characters."""
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > _MAX_KEY_LEN or not key.isascii() or not key.isprintable():
        raise SolverError(ErrorCode.INVALID_IDEMPOTENCY_KEY)
    return key


def request_hash(fields: Mapping[str, object]) -> str:
    """sha256 of a canonical form of the parsed request (so "0.5", 0.5 and "5E-1" are equal)."""
    canon = {k: fmt(v) if isinstance(v, Decimal) else v for k, v in fields.items()}
    return hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_replay(stored_hash: str | None, new_hash: str) -> None:
    """Same Idempotency-Key: the same body is a replay, another body is a client bug (409)."""
    if stored_hash != new_hash:
        raise SolverError(ErrorCode.IDEMPOTENCY_KEY_REUSED)


async def chain_read(call: Awaitable[T]) -> T:
    """Await a chain read; a node failure becomes a 503 the trader can act on, not a 500."""
    try:
        return await call
    except SolverError:
        raise
    except Exception as exc:
        log.warning("chain read failed: %r", exc, exc_info=True)
        raise SolverError(
            ErrorCode.UNAVAILABLE, "The blockchain node could not be read right now. Please retry shortly."
        ) from exc


class InstantHistory:
    """GET /instant_open/{account}, /instant_quote_id/{id}, /instant_close/{account}."""

    def __init__(self, *, sessions: SessionFactory, clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def opens(self, account: str) -> list[InstantOpen]:
        who = checksum(account, "account")
        async with self._sessions() as session:
            return await queries.recent_opens(session, who, self._clock.now() - RECENT)

    async def closes(self, account: str) -> list[InstantClose]:
        who = checksum(account, "account")
        async with self._sessions() as session:
            return await queries.recent_closes(session, who, self._clock.now() - RECENT)

    async def by_temp_id(self, temp_quote_id: str) -> InstantOpen:
        some_id = parse_id(temp_quote_id, "temporary quote id", ErrorCode.INSTANT_NOT_FOUND)
        async with self._sessions() as session:
            row = await queries.open_by_any_id(session, some_id)
        if row is None:
            raise SolverError(ErrorCode.INSTANT_NOT_FOUND, f"No instant open with id {some_id} exists.")
        return row
