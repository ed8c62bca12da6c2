"""LocalOracle without I/O: the uPnL sums and their rounding, which positions count, and which
failures are refusals vs unavailability. Chain and price cache are in-memory stand-ins."""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_DOWN, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from solver.chain.types import LockedValues, OnChainQuote, QuoteStatus
from solver.core.clock import FixedClock
from solver.core.errors import ErrorCode
from solver.core.units import WAD, to_wei
from solver.market.marks import MarkPrices
from solver.oracle import hashes, schnorr
from solver.oracle.client import OracleError
from solver.oracle.local import LocalOracle, to_wad_toward_zero, upnl_numerator
from solver.oracle.signer import OracleSigner
from solver.pricing.cache import PricePoint
from solver.settings import Settings, load_settings

pytestmark = pytest.mark.unit

NOW = 1_763_700_000.0
DIAMOND = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
PARTY_A = "0xd8058efe0198ae9dD7D563e1b4938Dcbc86A1F81"
SOLVER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER_B = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
ZERO_LV = LockedValues(0, 0, 0, 0)


def position(qid: int, side: int, opened: str, qty: str, *, closed: str = "0", party_b: str = SOLVER,
             symbol_id: int = 1, status: int = QuoteStatus.OPENED) -> OnChainQuote:  # fmt: skip
    return OnChainQuote(
        id=qid, party_a=PARTY_A, party_b=party_b, symbol_id=symbol_id, position_type=side, order_type=1,
        status=status, opened_price=to_wei(Decimal(opened)), requested_open_price=0, market_price=0,
        quantity=to_wei(Decimal(qty)), closed_amount=to_wei(Decimal(closed)), locked=ZERO_LV, initial_locked=ZERO_LV,
        max_funding_rate=0, avg_closed_price=0, requested_close_price=0, quantity_to_close=0, parent_id=0,
        create_timestamp=0, status_modify_timestamp=0, deadline=0, trading_fee=0, affiliate=SOLVER,
    )  # fmt: skip


class Chain:
    def __init__(self, positions: list[OnChainQuote]) -> None:
        self.positions = positions
        self.fail = False
        self.nonces = (3, 4)

    async def open_positions(self, account: str) -> list[OnChainQuote]:
        if self.fail:
            raise ConnectionError("node down")
        return list(self.positions)

    async def nonce_of_party_a(self, account: str) -> int:
        return self.nonces[0]

    async def nonce_of_party_b(self, party_b: str, party_a: str) -> int:
        return self.nonces[1]


class Prices:
    def __init__(self) -> None:
        self.points: dict[str, PricePoint] = {}
        self.fail = False

    def set(self, symbol: str, price: str, age_s: float = 1.0) -> None:
        self.points[symbol] = PricePoint(symbol, Decimal(price), NOW - age_s)

    async def get_many(self, symbols: list[str]) -> dict[str, PricePoint]:
        if self.fail:
            raise ConnectionError("redis down")
        return {s: self.points[s] for s in symbols if s in self.points}


def settings() -> Settings:
    return load_settings(env="dev", chain={"chain_id": 31337, "symmio_address": DIAMOND})


def make(positions: list[OnChainQuote]) -> tuple[LocalOracle, Chain, Prices, OracleSigner]:
    s = settings()
    chain, prices = Chain(positions), Prices()
    signer = OracleSigner.generate(muon_app_id=s.oracle.muon_app_id)
    marks = MarkPrices(settings=s, prices=prices, clock=FixedClock(NOW))  # type: ignore[arg-type]
    return LocalOracle(signer, chain, marks, s), chain, prices, signer  # type: ignore[arg-type]


def test_toward_zero() -> None:
    assert to_wad_toward_zero(3 * WAD // 2) == 1
    assert to_wad_toward_zero(-3 * WAD // 2) == -1  # floor would give -2
    assert to_wad_toward_zero(-1) == 0
    assert to_wad_toward_zero(-WAD) == -1


@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1]),
            st.integers(1, 10**24),  # opened price, wei
            st.integers(1, 10**22),  # open quantity, wei
        ),
        max_size=6,
    ),
    st.integers(1, 10**24),
)
def test_numerator_matches_decimal(items: list[tuple[int, int, int]], mark: int) -> None:
    quotes = [
        replace(position(i, side, "1", "1"), opened_price=opened, quantity=qty)
        for i, (side, opened, qty) in enumerate(items)
    ]
    with localcontext() as ctx:
        ctx.prec = 150
        expected = sum((Decimal(1 if s == 0 else -1) * (Decimal(mark) - o) * n / WAD for s, o, n in items), Decimal(0))
        expected_wei = int(expected.to_integral_value(rounding=ROUND_DOWN))
    assert to_wad_toward_zero(upnl_numerator(quotes, {1: mark})) == expected_wei


async def test_party_a_and_party_b_upnl() -> None:
    oracle, _, prices, signer = make(
        [
            position(1, 0, "60000", "0.02"),  # LONG: +20 at 61000
            position(2, 1, "60500", "0.1", closed="0.05"),  # SHORT 0.05 open: −25
            position(3, 0, "3000", "1", party_b=OTHER_B, symbol_id=2),  # other partyB: +100 at 3100
            position(4, 0, "1", "1000", status=QuoteStatus.CLOSED),  # not open: ignored
        ]
    )
    prices.set("BTCUSDT", "61000")
    prices.set("ETHUSDT", "3100")
    a = await oracle.party_a_upnl(party_a=PARTY_A.lower())
    assert a.upnl == 95 * WAD
    a_hash = hashes.party_a_upnl_hash(
        muon_app_id=signer.muon_app_id, req_id=a.req_id, diamond=DIAMOND, party_a=PARTY_A, nonce_a=3,
        upnl=a.upnl, timestamp=a.timestamp, chain_id=31337,
    )  # fmt: skip
    assert schnorr.verify(signer.public_key, a_hash, schnorr.Signature(a.sigs.signature, a.sigs.nonce))
    b = await oracle.party_b_upnl(party_b=SOLVER, party_a=PARTY_A)
    assert b.upnl == 5 * WAD  # −(20 − 25)
    pair = await oracle.pair_upnl_and_price(party_b=SOLVER, party_a=PARTY_A, symbol_id=1)
    assert (pair.upnl_party_a, pair.upnl_party_b, pair.price) == (95 * WAD, 5 * WAD, 61_000 * WAD)
    h = hashes.pair_upnl_and_price_hash(
        muon_app_id=signer.muon_app_id, req_id=pair.req_id, diamond=DIAMOND, party_b=SOLVER, party_a=PARTY_A,
        nonce_b=4, nonce_a=3, upnl_party_b=pair.upnl_party_b, upnl_party_a=pair.upnl_party_a, symbol_id=1,
        price=pair.price, timestamp=pair.timestamp, chain_id=31337,
    )  # fmt: skip
    assert schnorr.verify(signer.public_key, h, schnorr.Signature(pair.sigs.signature, pair.sigs.nonce))
    quote = await oracle.party_a_upnl_and_price(party_a=PARTY_A, symbol_id=2)
    assert (quote.upnl, quote.price) == (95 * WAD, 3100 * WAD)


@pytest.mark.parametrize(
    ("setup", "code", "text"),
    [
        ("missing", ErrorCode.ORACLE_UNAVAILABLE, "No price is available for ETHUSDT"),  # retried
        ("stale", ErrorCode.ORACLE_REFUSED, "s old"),
        ("unpriced position", ErrorCode.ORACLE_REFUSED, "symbol id 77"),
        ("unknown symbol", ErrorCode.ORACLE_REFUSED, "Symbol id 99"),
        ("chain down", ErrorCode.ORACLE_UNAVAILABLE, "could not sign"),
        ("redis down", ErrorCode.ORACLE_UNAVAILABLE, "could not sign"),
    ],
)
async def test_refusals_and_unavailability(setup: str, code: ErrorCode, text: str) -> None:
    positions = [position(1, 0, "60000", "0.02"), position(2, 0, "3000", "1", symbol_id=2)]
    if setup == "unpriced position":
        positions.append(position(3, 0, "1", "1", symbol_id=77))
    oracle, chain, prices, _ = make(positions)
    prices.set("BTCUSDT", "61000")
    if setup != "missing":
        prices.set("ETHUSDT", "3100", age_s=60 if setup == "stale" else 1)
    chain.fail = setup == "chain down"
    prices.fail = setup == "redis down"
    symbol_id = 99 if setup == "unknown symbol" else 1
    with pytest.raises(OracleError) as exc:
        await oracle.party_a_upnl_and_price(party_a=PARTY_A, symbol_id=symbol_id)
    assert exc.value.code is code
    assert text in exc.value.message


async def test_no_positions_needs_no_price_except_the_signed_one() -> None:
    oracle, _, prices, _ = make([])
    assert (await oracle.party_b_upnl(party_b=SOLVER, party_a=PARTY_A)).upnl == 0
    with pytest.raises(OracleError):
        await oracle.party_a_upnl_and_price(party_a=PARTY_A, symbol_id=1)
    prices.set("BTCUSDT", "0.5")
    assert (await oracle.party_a_upnl_and_price(party_a=PARTY_A, symbol_id=1)).price == WAD // 2
