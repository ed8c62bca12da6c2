"""The event follower: Symmio and MultiAccount logs → quote mirror and notifications.

It walks the chain from a saved cursor (`follower_cursor`), `confirmations` blocks behind the
head, one batch of blocks per DB transaction: the batch's effects, the hashes of its blocks
(`follower_block`) and the new cursor commit together, so a crash repeats a whole batch or none
of it. Before each batch the cursor block's hash is compared with the node's; on a mismatch
(a reorganisation) it walks back through the saved hashes to a block both agree on, re-reads the
mirror rows written after it and moves the cursor there, and the batches after it re-apply the
new chain. Re-applying is harmless: mirror rows are re-read from the chain and notifications
are keyed by log. The cursor moves by compare-and-set, so two processes following under one
name never apply a batch twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from solver.chain.events.decoder import ChainEvent, EventDecoder
from solver.chain.reader import ChainReader
from solver.core.clock import Clock
from solver.db.engine import SessionFactory, session_scope
from solver.db.models import FollowerBlock, FollowerCursor, Quote
from solver.notify.ordering import chain_stamp
from solver.observability.heartbeat import Beat, no_beat
from solver.quotes import mirror
from solver.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_BATCH_BLOCKS = 2000
DEFAULT_KEEP_BLOCKS = 128
_MAX_BACKOFF_S = 30.0


class BlockSource(Protocol):
    """What the follower needs from a node (solver.chain.events.source.LogSource)."""

    async def head(self) -> int: ...

    async def block_hash(self, number: int) -> str | None: ...

    async def block_time(self, number: int) -> int | None: ...

    async def logs(self, from_block: int, to_block: int, addresses: Sequence[str]) -> Sequence[Mapping[str, Any]]: ...


class CursorMoved(Exception):
    """Another process following under the same name moved the cursor first."""


@dataclass(frozen=True, slots=True)
class Cursor:
    block_number: int  # the last block applied
    block_hash: str


class EventFollower:
    def __init__(
        self,
        name: str,
        source: BlockSource,
        chain_reader: ChainReader,
        sessions: SessionFactory,
        settings: Settings,
        *,
        clock: Clock,
        decoder: EventDecoder | None = None,
        addresses: Sequence[str] | None = None,
        batch_blocks: int = DEFAULT_BATCH_BLOCKS,
        keep_blocks: int = DEFAULT_KEEP_BLOCKS,
        poll_interval_s: float = 1.0,
    ) -> None:
        if batch_blocks < 1 or keep_blocks < 1:
            raise ValueError("batch_blocks and keep_blocks must be at least 1")
        chain = settings.chain
        self.name = name
        self._source = source
        self._reader = chain_reader
        self._sessions = sessions
        self._clock = clock
        self._decoder = decoder or EventDecoder.symmio()
        self._addresses = list(addresses or (chain.symmio_address, chain.multi_account_address))
        self._lanes = list(chain.lanes)
        self._lane_set = mirror.lane_set(self._lanes)
        self._confirmations = chain.confirmations
        self._start_block = chain.start_block
        self._batch_blocks = batch_blocks
        self._keep_blocks = keep_blocks
        self._poll_interval_s = poll_interval_s
        self.caught_up = False  # after the last step: nothing confirmed is left to apply
        self.beat: Beat = no_beat  # set by the worker: one beat per loop iteration

    async def step(self) -> int:
        """Apply one batch of confirmed blocks (rewinding first on a reorg); returns events applied.

        `caught_up` tells whether another step would find confirmed blocks to apply.
        """
        self.caught_up = False
        cursor = await self.cursor()
        head = await self._source.head()
        if cursor is not None:
            if head < cursor.block_number:  # a lagging node, or a reorg to a shorter chain: wait
                log.info("%s: node head %d is behind the cursor %d, waiting", self.name, head, cursor.block_number)
                self.caught_up = True
                return 0
            if await self._source.block_hash(cursor.block_number) != cursor.block_hash:
                try:
                    cursor = await self._rewind(cursor)
                except CursorMoved:
                    return 0
        # `confirmations` counts the block itself, as the worker does for receipts: with 1, a
        # block is applied as soon as it is the head; with 2, once one block is on top of it.
        safe_head = head - max(self._confirmations - 1, 0)
        start = cursor.block_number + 1 if cursor is not None else self._start_block
        if start > safe_head:
            self.caught_up = True
            return 0
        end = min(safe_head, start + self._batch_blocks - 1)
        end_hash = await self._source.block_hash(end)
        raw = await self._source.logs(start, end, self._addresses)
        if end_hash is None or not await self._unchanged(cursor, end, end_hash, raw):
            log.info("%s: chain moved while reading %d-%d, retrying", self.name, start, end)
            return 0
        hashes = {int(r["blockNumber"]): str(r["blockHash"]).lower() for r in raw}
        hashes[end] = end_hash
        events = mirror.dedupe([e for e in map(self._decoder.decode, raw) if e is not None])
        try:
            applied = await self._apply(cursor, end, events, hashes)
        except CursorMoved:
            return 0
        self.caught_up = end >= safe_head
        if applied:
            log.info("%s: blocks %d-%d, %d events applied", self.name, start, end, applied)
        return applied

    async def sync(self) -> int:
        """Step until caught up; returns the events applied."""
        total = await self.step()
        while not self.caught_up:
            total += await self.step()
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Follow until `stop` is set; errors are logged and retried with a backoff."""
        backoff = self._poll_interval_s
        while not stop.is_set():
            self.beat(f"follower.{self.name}")
            try:
                await self.step()
                backoff = self._poll_interval_s
            except Exception:
                log.exception("%s: step failed, retrying in %.1fs", self.name, backoff)
                await _wait(stop, backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            if self.caught_up:
                await _wait(stop, self._poll_interval_s)

    async def cursor(self) -> Cursor | None:
        async with self._sessions() as session:
            row = await session.get(FollowerCursor, self.name)
            return None if row is None else Cursor(row.block_number, row.block_hash)

    # -- one batch --------------------------------------------------------------------------------

    async def _unchanged(
        self, cursor: Cursor | None, end: int, end_hash: str, raw: Sequence[Mapping[str, Any]]
    ) -> bool:
        """The logs belong to the chain the cursor is on: no reorg below `end` while reading."""
        if any(int(r["blockNumber"]) == end and str(r["blockHash"]).lower() != end_hash for r in raw):
            return False
        if await self._source.block_hash(end) != end_hash:
            return False
        return cursor is None or await self._source.block_hash(cursor.block_number) == cursor.block_hash

    async def _apply(self, cursor: Cursor | None, end: int, events: list[ChainEvent], hashes: dict[int, str]) -> int:
        touched = mirror.touches(events)
        # Chain reads before the transaction, so it stays short. Every touched quote is read:
        # its partyB as it stands now decides whether it is ours (`mirror.is_ours`).
        quotes = await mirror.fetch_quotes(self._reader, touched)
        now = self._clock.now()
        # A notification is dated by its block, not by when the follower read it (which lags by
        # the confirmation depth): the newest-first history then interleaves chain events with
        # the worker's own notifications in the order they happened. Within a block, chain order.
        block_times: dict[int, int | None] = {}
        for number in sorted({e.block_number for e in events}):
            block_times[number] = await self._source.block_time(number)

        def stamp(e: ChainEvent) -> datetime:
            ts = block_times.get(e.block_number)
            return now if ts is None else chain_stamp(ts, e.block_number, e.log_index)

        applied = 0
        async with session_scope(self._sessions) as session:
            await self._move_cursor(session, cursor, Cursor(end, hashes[end]), now=now)
            known = await mirror.known(session, list(touched))
            for quote_id, t in sorted(touched.items()):
                q = quotes[quote_id]
                party_bs = t.party_bs if q is None else {*t.party_bs, q.party_b}
                if not mirror.is_ours(
                    self._lane_set,
                    party_bs=party_bs,
                    whitelist=t.whitelist,
                    instant_open=quote_id in known.temp_ids,
                    mirrored=quote_id in known.mirrored,
                ):
                    continue
                applied += await mirror.apply_touch(
                    session,
                    t,
                    q,
                    lanes=self._lanes,
                    temp_quote_id=known.temp_ids.get(quote_id),
                    now=now,
                    stamp=stamp,
                )
            await self._save_blocks(session, hashes)
        return applied

    async def _move_cursor(
        self, session: AsyncSession, old: Cursor | None, new: Cursor | None, *, now: datetime
    ) -> None:
        """Compare-and-set: raise CursorMoved unless the cursor still is `old`."""
        table = FollowerCursor.__table__  # type: ignore[attr-defined]
        if old is None:
            if new is None:
                return
            stmt = (
                insert(table)
                .values(name=self.name, block_number=new.block_number, block_hash=new.block_hash, modify_time=now)
                .on_conflict_do_nothing(index_elements=["name"])
                .returning(table.c.name)
            )
            done = (await session.exec(stmt)).first() is not None
        else:
            where = (
                col(FollowerCursor.name) == self.name,
                col(FollowerCursor.block_number) == old.block_number,
                col(FollowerCursor.block_hash) == old.block_hash,
            )
            if new is None:
                result = await session.exec(delete(FollowerCursor).where(*where))
            else:
                result = await session.exec(
                    update(FollowerCursor)
                    .where(*where)
                    .values(block_number=new.block_number, block_hash=new.block_hash, modify_time=now)
                )
            done = result.rowcount == 1
        if not done:
            raise CursorMoved(self.name)

    async def _save_blocks(self, session: AsyncSession, hashes: dict[int, str]) -> None:
        """Remember the hashes of the applied blocks; keep the newest `keep_blocks` rows."""
        rows = [{"name": self.name, "block_number": n, "block_hash": h} for n, h in sorted(hashes.items())]
        stmt = insert(FollowerBlock).values(rows)
        await session.exec(
            stmt.on_conflict_do_update(
                index_elements=["name", "block_number"], set_={"block_hash": stmt.excluded.block_hash}
            )
        )
        newest = (
            select(FollowerBlock.block_number)
            .where(col(FollowerBlock.name) == self.name)
            .order_by(col(FollowerBlock.block_number).desc())
            .limit(self._keep_blocks)
        )
        await session.exec(
            delete(FollowerBlock).where(
                col(FollowerBlock.name) == self.name, col(FollowerBlock.block_number).not_in(newest.scalar_subquery())
            )
        )

    # -- reorganisations --------------------------------------------------------------------------

    async def _rewind(self, cursor: Cursor) -> Cursor | None:
        """Move the cursor back to the newest saved block the node still has; None = start over."""
        async with self._sessions() as session:
            saved = await session.exec(
                select(FollowerBlock)
                .where(col(FollowerBlock.name) == self.name, col(FollowerBlock.block_number) < cursor.block_number)
                .order_by(col(FollowerBlock.block_number).desc())
                .limit(self._keep_blocks)
            )
            candidates = [Cursor(b.block_number, b.block_hash) for b in saved.all()]
        target: Cursor | None = None
        for c in candidates:
            if await self._source.block_hash(c.block_number) == c.block_hash:
                target = c
                break
        floor = target.block_number if target is not None else self._start_block - 1
        log.warning(
            "%s: reorg below block %d (its hash changed); rewinding to %s",
            self.name,
            cursor.block_number,
            floor if target is not None else f"start block {self._start_block} (no saved block matches)",
            extra={"block_number": cursor.block_number, "block_hash": cursor.block_hash},
        )
        # Mirror rows written from the dropped blocks: re-read them on the chain as it is now.
        async with self._sessions() as session:
            rows = await session.exec(
                select(Quote.quote_id, Quote.party_a, Quote.block_number).where(col(Quote.block_number) > floor)
            )
            stale = [(int(q), str(a), int(b)) for q, a, b in rows.all()]
        quotes = await mirror.fetch_quotes(self._reader, [q for q, _, _ in stale])
        now = self._clock.now()
        async with session_scope(self._sessions) as session:
            await self._move_cursor(session, cursor, target, now=now)
            await session.exec(
                delete(FollowerBlock).where(
                    col(FollowerBlock.name) == self.name, col(FollowerBlock.block_number) > floor
                )
            )
            for quote_id, party_a, block_number in stale:
                q = quotes[quote_id]
                if q is None or q.party_a.lower() != party_a.lower():  # gone, or the id now names another quote
                    await mirror.delete_quote(session, quote_id)
                else:
                    values = mirror.mirror_values(q, block_number=block_number, temp_quote_id=None)
                    await mirror.upsert_quote(session, values, now=now)
        return target


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


__all__ = ["BlockSource", "Cursor", "CursorMoved", "EventFollower"]
