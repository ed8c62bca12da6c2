"""One signer lane: the only code that spends a signer nonce.

Loop: track (receipts at the configured depth -> settle effects; rebroadcast; replace stuck
transactions with a fee bump) then fill (plan queued intents, sign with the local nonce counter,
record tx + attempt, commit, then broadcast). Track-before-send makes a crash harmless: a
recorded transaction is rebroadcast (same bytes, same hash) and an unrecorded one never left.
One transaction per account is in flight at a time, because oracle signatures are bound to the
parties' nonces, which openPosition and fillCloseRequest increment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from solver.chain.errors import Revert, SendError, classify_send_error
from solver.chain.tx.fees import GWEI, FeeCapExceeded, Fees, bumped_fees, initial_fees
from solver.chain.tx.node import Receipt
from solver.db.models import ChainTx, IntentKind, IntentStatus, TxAttempt, TxIntent, TxStatus
from solver.observability.heartbeat import Beat, no_beat
from solver.quotes import outbox_worker as ow
from solver.quotes.close_steps import AcceptCancelCloseStep, CancelCloseStep, CloseRequestStep, FillCloseStep
from solver.quotes.open_steps import AcceptCancelStep, AllocateStep, CancelQuoteStep, OpenQuoteStep, SendQuoteStep
from solver.quotes.steps import Outcome, Plan, Step, StepContext, revert_code

log = logging.getLogger("solver.worker")

STEPS: dict[IntentKind, Step] = {
    IntentKind.SEND_QUOTE: SendQuoteStep(),
    IntentKind.OPEN_QUOTE: OpenQuoteStep(),
    IntentKind.CANCEL_QUOTE: CancelQuoteStep(),
    IntentKind.ACCEPT_CANCEL: AcceptCancelStep,
    IntentKind.ALLOCATE_FOR_PARTY_B: AllocateStep(),
    IntentKind.CLOSE_REQUEST: CloseRequestStep(),
    IntentKind.FILL_CLOSE: FillCloseStep(),
    IntentKind.CANCEL_CLOSE: CancelCloseStep(),
    IntentKind.ACCEPT_CANCEL_CLOSE: AcceptCancelCloseStep,
}

# A nonce the chain has used while none of our hashes for it has a receipt, for this long: some
# other transaction took it (the key was used outside the solver). Ours can then never be mined.
_LOST_AFTER_S = 5.0
_PLAN_CONCURRENCY = 8


@dataclass
class LaneStats:
    sent: int = 0
    replaced: int = 0
    settled: int = 0
    in_flight: int = 0


class Lane:
    def __init__(self, *, index: int, signer: LocalAccount, ctx: StepContext, chain_id: int) -> None:
        self.index = index
        self.signer = signer
        self.address: str = signer.address
        self.ctx = ctx
        self.chain_id = chain_id
        self.next_nonce: int | None = None
        self.stats = LaneStats()
        self._checked: dict[int, int] = {}  # tx id -> head when its receipts were last polled
        self._lost_since: dict[int, float] = {}
        self._retry_after: dict[int, float] = {}  # intent id -> time
        self._failures: dict[int, int] = {}
        self._reorg_checked: int | None = None  # head when settled txs were last checked against the chain
        self._reorged: dict[int, TxStatus] = {}  # tx id -> its status before a reorg dropped it
        w = ctx.settings.worker
        self._cap = int(w.max_fee_per_gas_gwei * GWEI)
        self.beat: Beat = no_beat  # set by the worker: one beat per loop iteration
        self._beat_name = f"lane.{index}"

    def _log_ctx(self, intents: Sequence[TxIntent] = (), **fields: Any) -> dict[str, Any]:
        """`extra=` for a log line: the lane, what the intents are about, and `fields`."""
        out: dict[str, Any] = {"lane": self.index, "signer": self.address}
        if intents:
            out["account"] = intents[0].account
            out["intent_kind"] = intents[0].kind.value
            out["intent_ids"] = ",".join(str(i.id) for i in intents)
            quote_ids = sorted({i.quote_id for i in intents if i.quote_id is not None})
            if len(quote_ids) == 1:
                out["quote_id"] = quote_ids[0]
            elif quote_ids:
                out["quote_ids"] = ",".join(map(str, quote_ids))
        out.update({k: v for k, v in fields.items() if v is not None})
        return out

    # --- lifecycle -------------------------------------------------------------------------------
    async def recover(self) -> None:
        """Seed the nonce counter from the chain's pending count, or past our own transactions
        still waiting for the chain (recorded, maybe never broadcast), whichever is further."""
        async with self.ctx.sessions() as s:
            db_max = await ow.max_open_nonce(s, self.address)
        pending = await self.ctx.node.nonce(self.address, "pending")
        self.next_nonce = max(pending, -1 if db_max is None else db_max + 1)
        log.info(
            "lane %s (%s): next nonce %s",
            self.index,
            self.address,
            self.next_nonce,
            extra=self._log_ctx(nonce=self.next_nonce),
        )

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            self.beat(self._beat_name)
            try:
                if self.next_nonce is None:
                    await self.recover()
                busy, in_flight = await self.track()
                started = await self.fill(busy, in_flight)
                backoff = 0.5
                if started == 0:
                    await _wait(stop, self.ctx.settings.worker.poll_interval_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lane %s: loop error, retrying in %.1f s", self.index, backoff, extra=self._log_ctx())
                self.next_nonce = None  # re-seed: a failed commit may or may not have landed
                await _wait(stop, backoff)
                backoff = min(backoff * 2, 10.0)

    # --- tracking ---------------------------------------------------------------------------------
    async def track(self) -> tuple[set[str], int]:
        node = self.ctx.node
        head = await node.block_number()
        if head != self._reorg_checked:
            await self._unsettle_reorged()
            self._reorg_checked = head
        async with self.ctx.sessions() as s:
            txs = await ow.open_txs(s, self.address)
        busy: set[str] = set()
        latest_nonce: int | None = None
        now = self.ctx.clock.time()
        in_flight = 0
        for ot in txs:
            tx = ot.tx
            assert tx.id is not None
            if not ot.attempts:  # recorded together with its first attempt: never happens
                log.error(
                    "lane %s: transaction %s (nonce %s) has no signed attempt",
                    self.index,
                    tx.id,
                    tx.nonce,
                    extra=self._log_ctx(nonce=tx.nonce),
                )
                continue
            receipt: Receipt | None = None
            if self._checked.get(tx.id) != head or not ot.attempts[-1].broadcast_time:
                for attempt in reversed(ot.attempts):
                    receipt = await node.receipt(attempt.tx_hash)
                    if receipt is not None:
                        break
                self._checked[tx.id] = head if receipt is None else -1
            if receipt is not None:
                if head - receipt.block_number + 1 >= max(self.ctx.settings.chain.confirmations, 1):
                    await self._settle(tx, receipt)
                    continue
                busy |= ot.accounts
                in_flight += 1
                continue
            busy |= ot.accounts
            in_flight += 1
            if latest_nonce is None:
                latest_nonce = await node.nonce(self.address, "latest")
            if tx.nonce < latest_nonce:
                first = self._lost_since.setdefault(tx.id, now)
                if now - first > _LOST_AFTER_S:
                    await self._requeue_lost(tx, ot.attempts)
                continue
            self._lost_since.pop(tx.id, None)
            last = ot.attempts[-1]
            age = now - last.create_time.timestamp()
            if age > self.ctx.settings.worker.stuck_after_s:
                await self._replace(tx, last)
            elif (
                last.broadcast_time is None
                or now - last.broadcast_time.timestamp() > self.ctx.settings.worker.rebroadcast_after_s
            ):
                await self._broadcast(last)
        self.stats.in_flight = in_flight
        return busy, in_flight

    async def _settle(self, tx: ChainTx, receipt: Receipt) -> None:
        assert tx.id is not None
        block_time = await self.ctx.node.block_time(receipt.block_number)
        if receipt.status == 1:
            outcome = Outcome(receipt, block_time=block_time)
            reason = None
        else:
            reason = await self.ctx.node.revert_reason(self.address, tx.to_address, tx.data, receipt.block_number)
            code, message = revert_code(Revert(reason))
            outcome = Outcome(receipt, code, message, block_time=block_time)
        async with self.ctx.sessions() as s:
            status = TxStatus.MINED if receipt.status == 1 else TxStatus.REVERTED
            if not await ow.settle_tx(
                s,
                tx.id,
                status,
                now=self.ctx.now(),
                mined_hash=receipt.tx_hash,
                block_number=receipt.block_number,
                gas_used=receipt.gas_used,
                revert_reason=reason,
            ):
                return
            intents = await ow.intents_of_tx(s, tx.id)
            for intent in intents:
                if intent.status == IntentStatus.IN_TX:  # else applied already, before a reorg dropped the tx
                    await STEPS[intent.kind].settle(self.ctx, s, intent, outcome)
            await s.commit()
        self.stats.settled += 1
        self._checked.pop(tx.id, None)
        before = self._reorged.pop(tx.id, None)
        if before is not None and before != status:
            log.error(
                "lane %s: nonce %s was %s before a reorg and is %s now; its effects were applied as %s",
                self.index,
                tx.nonce,
                before.value,
                status.value,
                before.value,
                extra=self._log_ctx(intents, nonce=tx.nonce, tx_hash=receipt.tx_hash),
            )
        log.info(
            "lane %s: nonce %s %s in block %s",
            self.index,
            tx.nonce,
            status.value,
            receipt.block_number,
            extra=self._log_ctx(
                intents,
                nonce=tx.nonce,
                tx_hash=receipt.tx_hash,
                block_number=receipt.block_number,
                tx_status=status.value,
                revert_reason=reason,
            ),
        )

    async def _unsettle_reorged(self) -> None:
        """Put back in flight our settled transactions the chain no longer has: a reorganisation
        deeper than `confirmations` dropped their blocks, and nothing guarantees a node mines them
        again (anvil forgets them; geth re-pools them but may not keep them). One nonce read per
        block: the chain's nonce counts the signer's transactions it holds, so only those recorded
        at or above it can be gone. They are then rebroadcast or replaced and settled again (same
        nonce and calldata; their intents' effects are not applied twice). Without this an open
        stayed `opened` with no quote on chain and every later nonce waited behind the gap."""
        latest = await self.ctx.node.nonce(self.address, "latest")
        async with self.ctx.sessions() as s:
            suspects = await ow.settled_from_nonce(s, self.address, latest)
        for tx in suspects:
            assert tx.id is not None
            if tx.mined_hash is not None and await self.ctx.node.receipt(tx.mined_hash) is not None:
                continue  # the node still has it (a nonce read from a node behind): nothing to do
            async with self.ctx.sessions() as s:
                if not await ow.unsettle_tx(s, tx.id, now=self.ctx.now()):
                    continue
                await s.commit()
            self._reorged[tx.id] = tx.status
            self._checked.pop(tx.id, None)
            if self.next_nonce is not None:
                self.next_nonce = max(self.next_nonce, tx.nonce + 1)
            log.error(
                "lane %s: nonce %s (%s in block %s) is no longer on chain after a reorg; sending it again",
                self.index,
                tx.nonce,
                tx.status.value,
                tx.block_number,
                extra=self._log_ctx(nonce=tx.nonce, tx_hash=tx.mined_hash, block_number=tx.block_number),
            )

    async def _requeue_lost(self, tx: ChainTx, attempts: list[TxAttempt]) -> None:
        """Our transaction lost its nonce to a foreign one, so it never ran: put its intents back
        in the queue to be planned afresh (new signatures, a new nonce). Re-checked first: a
        receipt for any of our hashes means it did run, and then it is settled instead."""
        assert tx.id is not None
        for attempt in attempts:
            receipt = await self.ctx.node.receipt(attempt.tx_hash)
            if receipt is not None:
                await self._settle(tx, receipt)
                return
        log.error(
            "lane %s: nonce %s was used by a transaction the solver did not sign; its work is queued again",
            self.index,
            tx.nonce,
            extra=self._log_ctx(nonce=tx.nonce, tx_hash=attempts[-1].tx_hash if attempts else None),
        )
        async with self.ctx.sessions() as s:
            if not await ow.settle_tx(s, tx.id, TxStatus.LOST, now=self.ctx.now()):
                return
            await ow.requeue_intents_of_tx(s, tx.id, now=self.ctx.now())
            await s.commit()
        self._lost_since.pop(tx.id, None)

    async def _broadcast(self, attempt: TxAttempt) -> None:
        try:
            await self.ctx.node.send_raw(attempt.raw)
        except Exception as exc:
            kind = classify_send_error(exc)
            if kind in (SendError.TRANSIENT, SendError.UNDERPRICED):
                log.warning(
                    "lane %s: broadcast failed (%s): %s",
                    self.index,
                    kind.value,
                    exc,
                    extra=self._log_ctx(tx_hash=attempt.tx_hash),
                )
        assert attempt.id is not None
        async with self.ctx.sessions() as s:
            await ow.mark_broadcast(s, attempt.id, self.ctx.now())
            await s.commit()

    async def _replace(self, tx: ChainTx, last: TxAttempt) -> None:
        assert tx.id is not None
        previous = Fees(last.max_fee_per_gas, last.max_priority_fee_per_gas)
        try:
            fees = bumped_fees(
                previous,
                await self.ctx.node.suggested_fees(),
                percent=self.ctx.settings.worker.fee_bump_percent,
                cap=self._cap,
            )
        except FeeCapExceeded as exc:
            log.error(
                "lane %s: nonce %s is stuck and cannot be bumped: %s",
                self.index,
                tx.nonce,
                exc,
                extra=self._log_ctx(nonce=tx.nonce, tx_hash=last.tx_hash),
            )
            return
        raw, tx_hash = self._sign(tx.nonce, tx.to_address, tx.data, tx.gas_limit, fees)
        async with self.ctx.sessions() as s:
            attempt = await ow.add_attempt(
                s,
                tx_id=tx.id,
                tx_hash=tx_hash,
                max_fee=fees.max_fee_per_gas,
                max_priority=fees.max_priority_fee_per_gas,
                raw=raw,
                now=self.ctx.now(),
            )
            await s.commit()
        self.stats.replaced += 1
        log.warning(
            "lane %s: nonce %s stuck, replaced (max fee %s)",
            self.index,
            tx.nonce,
            fees.max_fee_per_gas,
            extra=self._log_ctx(nonce=tx.nonce, tx_hash=tx_hash, replaced_hash=last.tx_hash),
        )
        await self._broadcast(attempt)

    # --- filling ----------------------------------------------------------------------------------
    async def fill(self, busy: set[str], in_flight: int) -> int:
        room = self.ctx.settings.worker.max_in_flight - in_flight
        if room <= 0:
            return 0
        async with self.ctx.sessions() as s:
            candidates = await ow.queued(s, self.index, limit=max(room * 4, 32))
        groups = self._groups(candidates, busy)[:room]
        if not groups:
            return 0
        gate = asyncio.Semaphore(_PLAN_CONCURRENCY)

        async def plan(group: list[TxIntent]) -> Plan | None:
            async with gate:
                try:
                    return await STEPS[group[0].kind].plan(self.ctx, self.address, group)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._back_off(group, exc)
                    return None

        plans = await asyncio.gather(*(plan(g) for g in groups))
        started = 0
        if any(p is not None for p in plans):
            fee_inputs = await self.ctx.node.fee_inputs()  # once per round, not per transaction
            for p in plans:
                if p is not None and await self._submit(p, fee_inputs):
                    started += 1
        return started + sum(1 for p in plans if p is None)

    def _groups(self, candidates: list[TxIntent], busy: set[str]) -> list[list[TxIntent]]:
        now = self.ctx.clock.time()
        by_account: dict[str, list[TxIntent]] = {}
        order: list[str] = []
        for intent in candidates:
            if intent.account not in by_account:
                by_account[intent.account] = []
                order.append(intent.account)
            by_account[intent.account].append(intent)
        groups: list[list[TxIntent]] = []
        max_batch = self.ctx.settings.worker.max_batch
        for account in order:
            if account in busy:
                continue
            items = by_account[account]
            first = items[0]
            if self._retry_after.get(first.id or 0, 0) > now:
                continue
            group = [first]
            if first.kind == IntentKind.SEND_QUOTE:
                for nxt in items[1:]:
                    if nxt.kind != IntentKind.SEND_QUOTE or len(group) >= max_batch:
                        break
                    group.append(nxt)
            groups.append(group)
        return groups

    def _back_off(self, group: list[TxIntent], exc: BaseException) -> None:
        first = group[0]
        assert first.id is not None
        n = self._failures.get(first.id, 0) + 1
        self._failures[first.id] = n
        delay = min(0.5 * 2**n, 30.0) * (0.5 + random.random())
        self._retry_after[first.id] = self.ctx.clock.time() + delay
        log.warning(
            "lane %s: planning %s %s failed (%s), retry in %.1f s",
            self.index,
            first.kind.value,
            first.id,
            exc,
            delay,
            extra=self._log_ctx(group),
        )

    async def _submit(self, plan: Plan, fee_inputs: tuple[int, int]) -> bool:
        assert self.next_nonce is not None
        base_fee, tip = fee_inputs
        try:
            fees = initial_fees(base_fee=base_fee, priority_fee=tip, cap=self._cap)
        except FeeCapExceeded as exc:
            log.error(
                "lane %s: fees above the cap, not sending: %s", self.index, exc, extra=self._log_ctx(plan.intents)
            )
            return False
        nonce = self.next_nonce
        raw, tx_hash = self._sign(nonce, plan.to, plan.data, plan.gas_limit, fees)
        now = self.ctx.now()
        try:
            async with self.ctx.sessions() as s:
                locked = await ow.lock_queued(s, [i.id for i in plan.intents if i.id is not None])
                if not locked or (plan.claim is not None and not await plan.claim(s, now)):
                    await s.rollback()
                    return False
                tx = await ow.record_tx(
                    s,
                    lane=self.index,
                    sender=self.address,
                    nonce=nonce,
                    to=plan.to,
                    data=plan.data,
                    gas_limit=plan.gas_limit,
                    intents=locked,
                    now=now,
                )
                assert tx.id is not None
                attempt = await ow.add_attempt(
                    s,
                    tx_id=tx.id,
                    tx_hash=tx_hash,
                    max_fee=fees.max_fee_per_gas,
                    max_priority=fees.max_priority_fee_per_gas,
                    raw=raw,
                    now=now,
                )
                await s.commit()
        except Exception:
            self.next_nonce = None  # the commit may or may not have landed: re-seed before the next send
            raise
        self.next_nonce = nonce + 1
        self.stats.sent += 1
        for intent in plan.intents:
            self._failures.pop(intent.id or 0, None)
            self._retry_after.pop(intent.id or 0, None)
        log.info(
            "lane %s: nonce %s %s for %s",
            self.index,
            nonce,
            plan.intents[0].kind.value,
            plan.intents[0].account,
            extra=self._log_ctx(plan.intents, nonce=nonce, tx_hash=tx_hash, **_note_fields(plan.note)),
        )
        await self._broadcast(attempt)
        return True

    def _sign(self, nonce: int, to: str, data: str, gas: int, fees: Fees) -> tuple[str, str]:
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": to,
            "data": data,
            "value": 0,
            "gas": gas,
            "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
        }
        signed = self.signer.sign_transaction(tx)
        return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()


def _note_fields(note: dict[str, Any]) -> dict[str, Any]:
    """Log context a step put in its plan's note (temp quote ids of the opens it sends)."""
    temp_ids = note.get("temp_quote_ids")
    if not temp_ids:
        return {}
    if len(temp_ids) == 1:
        return {"temp_quote_id": temp_ids[0]}
    return {"temp_quote_ids": ",".join(map(str, temp_ids))}


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
