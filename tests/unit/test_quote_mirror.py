"""Pure parts of the follower's event application: who is ours, overload dedupe, row values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from solver.chain.events.decoder import ChainEvent
from solver.chain.types import LockedValues, OnChainQuote
from solver.quotes import mirror

pytestmark = pytest.mark.unit

OURS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER_B = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
PARTY_A = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
ZERO = "0x" + "00" * 20
WAD = 10**18


def ev(name: str, tx: str = "0x01", index: int = 0, block: int = 10, **args: Any) -> ChainEvent:
    return ChainEvent(
        name=name,
        signature=f"{name}(...)",
        args=args,
        block_number=block,
        block_hash="0x" + "aa" * 32,
        tx_hash=tx,
        log_index=index,
        address=OTHER_B,
    )


def quote(**kw: Any) -> OnChainQuote:
    zero = LockedValues(0, 0, 0, 0)
    fields: dict[str, Any] = {
        "id": 7,
        "party_a": PARTY_A,
        "party_b": ZERO,
        "symbol_id": 1,
        "position_type": 0,
        "order_type": 1,
        "status": 0,
        "opened_price": 0,
        "requested_open_price": 60_600 * WAD,
        "market_price": 60_000 * WAD,
        "quantity": WAD // 10,
        "closed_amount": 0,
        "locked": LockedValues(40 * WAD, 20 * WAD, 540 * WAD, 0),
        "initial_locked": zero,
        "max_funding_rate": 200 * WAD,
        "avg_closed_price": 0,
        "requested_close_price": 0,
        "quantity_to_close": 0,
        "parent_id": 0,
        "create_timestamp": 1,
        "status_modify_timestamp": 1,
        "deadline": 1_900_000_000,
        "trading_fee": 6 * 10**14,
        "affiliate": ZERO,
    }
    fields.update(kw)
    return OnChainQuote(**fields)


def test_is_ours_rule() -> None:
    lanes = mirror.lane_set([OURS])
    assert mirror.is_ours(lanes, party_bs=[OURS.lower()])
    assert mirror.is_ours(lanes, whitelist=[OTHER_B, OURS.upper().replace("0X", "0x")])
    assert mirror.is_ours(lanes, instant_open=True)
    assert mirror.is_ours(lanes, mirrored=True)
    assert not mirror.is_ours(lanes, party_bs=[OTHER_B], whitelist=[OTHER_B])
    assert not mirror.is_ours(lanes)


def test_dedupe_keeps_the_close_id_form_only() -> None:
    events = [
        ev("FillCloseRequest", index=1, quoteId=7, filledAmount=1),
        ev("FillCloseRequest", index=2, quoteId=7, filledAmount=1, closeId=3),
        ev("ExpireQuote", index=3, quoteId=8, quoteStatus=9),
        ev("ExpireQuoteOpen", index=4, quoteId=8, quoteStatus=9),
        # Another quote in the same tx: its legacy form stays, as nothing replaces it.
        ev("FillCloseRequest", index=5, quoteId=9, filledAmount=1),
        # Same quote, another tx: independent.
        ev("FillCloseRequest", tx="0x02", index=1, quoteId=7, filledAmount=1),
        ev("LockQuote", index=6, quoteId=7, partyB=OURS),
    ]
    kept = [(e.tx_hash, e.log_index) for e in mirror.dedupe(events)]
    assert kept == [("0x01", 2), ("0x01", 4), ("0x01", 5), ("0x02", 1), ("0x01", 6)]


def test_touches_collects_parties_per_quote() -> None:
    events = [
        ev("SendQuote", block=5, quoteId=7, partyA=PARTY_A, partyBsWhiteList=[OURS]),
        ev("LockQuote", block=6, quoteId=7, partyB=OTHER_B),
        ev("UnlockQuote", block=8, quoteId=7, partyB=ZERO),
        ev("Call", block=8, user=OURS),
        ev("AcceptCancelRequest", block=9, quoteId=11, quoteStatus=3),
    ]
    got = mirror.touches(events)
    assert sorted(got) == [7, 11]
    assert got[7].whitelist == {OURS} and got[7].party_bs == {OTHER_B}
    assert got[7].last_block == 8
    assert [e.name for e in got[7].events] == ["SendQuote", "LockQuote", "UnlockQuote"]


def test_mirror_values_in_human_units() -> None:
    pending = mirror.mirror_values(quote(), block_number=12, temp_quote_id=-5)
    assert pending["party_b"] is None and pending["opened_price"] is None and pending["avg_closed_price"] is None
    assert pending["requested_open_price"] == Decimal(60_600)
    assert pending["quantity"] == Decimal("0.1")
    assert pending["trading_fee"] == Decimal("0.0006")
    assert (pending["block_number"], pending["temp_quote_id"]) == (12, -5)
    closed = mirror.mirror_values(
        quote(party_b=OURS, status=7, opened_price=60_012 * WAD, closed_amount=WAD // 10, avg_closed_price=61 * 10**21),
        block_number=13,
        temp_quote_id=None,
    )
    assert closed["party_b"] == OURS
    assert (closed["opened_price"], closed["avg_closed_price"]) == (Decimal(60_012), Decimal(61_000))


def test_notifications_carry_fill_amounts_and_prices() -> None:
    q = quote(party_b=OURS, order_type=0)
    opened = mirror.notification_for(
        ev("OpenPosition", tx="0xabc", index=4, quoteId=7, filledAmount=WAD // 10, openedPrice=60_012 * WAD),
        q,
        party_b=OURS,
        temp_quote_id=-3,
    )
    assert (opened.filled_amount_open, opened.avg_price_open) == (Decimal("0.1"), Decimal(60_012))
    assert opened.filled_amount_close is None
    assert (opened.event_key, opened.last_seen_action, opened.order_type) == ("0xabc:4", "OpenPosition", 0)
    assert (opened.account, opened.counterparty_address, opened.temp_quote_id) == (PARTY_A, OURS, -3)
    filled = mirror.notification_for(
        ev("FillCloseRequest", quoteId=7, filledAmount=WAD // 20, closedPrice=61_000 * WAD, closeId=1),
        q,
        party_b=OURS,
        temp_quote_id=None,
    )
    assert (filled.filled_amount_close, filled.avg_price_close) == (Decimal("0.05"), Decimal(61_000))


def test_counterparty_prefers_the_quote_then_our_whitelisted_lane() -> None:
    lanes = [OTHER_B, OURS]
    assert mirror.counterparty(quote(party_b=OURS), lanes) == OURS
    assert mirror.counterparty(quote(), lanes, [OURS.lower()]) == OURS
    assert mirror.counterparty(quote(), lanes) == OTHER_B
