"""Calldata the worker sends and the receipt logs it reads back (chain.md §1, §2, §7).

Encoding is offline (no node): `Calls` holds the two contract ABIs and returns 0x hex
calldata. Amounts are wei ints here; conversion from Decimal happens before (solver.core.units).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3

from solver.chain.abi import load_abi
from solver.chain.tx.node import Log
from solver.settings import ZERO_ADDRESS

MARKET = 1
SEND_QUOTE_TOPIC = keccak(
    text="SendQuote(address,uint256,address[],uint256,uint8,uint8,uint256,uint256,uint256,uint256,uint256,"
    "uint256,uint256,uint256,uint256)"
)
SendQuoteSigTuple = tuple[bytes, int, int, int, bytes, tuple[int, str, str]]
SingleSigTuple = tuple[bytes, int, int, bytes, tuple[int, str, str]]
PairSigTuple = tuple[bytes, int, int, int, int, bytes, tuple[int, str, str]]


@dataclass(frozen=True, slots=True)
class QuoteArgs:
    party_b_whitelist: Sequence[str]
    symbol_id: int
    position_type: int
    order_type: int
    price: int
    quantity: int
    cva: int
    lf: int
    party_amm: int
    party_bmm: int
    max_funding_rate: int
    deadline: int
    affiliate: str = ZERO_ADDRESS


class Calls:
    def __init__(self, *, symmio: str, multi_account: str) -> None:
        w3 = Web3()
        self.symmio = str(to_checksum_address(symmio))
        self.multi_account = str(to_checksum_address(multi_account))
        self._symmio = w3.eth.contract(address=to_checksum_address(symmio), abi=load_abi("Symmio"))
        self._multi = w3.eth.contract(address=to_checksum_address(multi_account), abi=load_abi("MultiAccount"))

    def _s(self, fn: str, *args: Any) -> str:
        return str(self._symmio.encode_abi(fn, args=list(args)))

    # --- through MultiAccount._call, as the user's delegate ---------------------------------
    def multi_call(self, account: str, inner: Sequence[str]) -> str:
        payload = [bytes.fromhex(c[2:]) for c in inner]
        return str(self._multi.encode_abi("_call", args=[to_checksum_address(account), payload]))

    def send_quote(self, q: QuoteArgs, sig: SendQuoteSigTuple) -> str:
        return self._s(
            "sendQuoteWithAffiliate",
            [to_checksum_address(a) for a in q.party_b_whitelist],
            q.symbol_id,
            q.position_type,
            q.order_type,
            q.price,
            q.quantity,
            q.cva,
            q.lf,
            q.party_amm,
            q.party_bmm,
            q.max_funding_rate,
            q.deadline,
            to_checksum_address(q.affiliate),
            sig,
        )

    def request_to_close(self, quote_id: int, close_price: int, quantity: int, deadline: int) -> str:
        return self._s("requestToClosePosition", quote_id, close_price, quantity, MARKET, deadline)

    def request_to_cancel_quote(self, quote_id: int) -> str:
        return self._s("requestToCancelQuote", quote_id)

    def request_to_cancel_close(self, quote_id: int) -> str:
        return self._s("requestToCancelCloseRequest", quote_id)

    # --- as PartyB ---------------------------------------------------------------------------
    def lock_and_open(self, quote_id: int, filled: int, price: int, lock: SingleSigTuple, pair: PairSigTuple) -> str:
        return self._s("lockAndOpenQuote", quote_id, filled, price, lock, pair)

    def fill_close(self, quote_id: int, filled: int, price: int, pair: PairSigTuple) -> str:
        return self._s("fillCloseRequest", quote_id, filled, price, pair)

    def accept_cancel(self, quote_id: int) -> str:
        return self._s("acceptCancelRequest", quote_id)

    def accept_cancel_close(self, quote_id: int) -> str:
        return self._s("acceptCancelCloseRequest", quote_id)

    def allocate_for_party_b(self, amount: int, party_a: str) -> str:
        return self._s("allocateForPartyB", amount, to_checksum_address(party_a))

    # --- views (eth_call data) ---------------------------------------------------------------
    def party_b_balance_calls(self, party_b: str, party_a: str) -> tuple[str, str, str]:
        """allocatedBalanceOfPartyB, lockedBalancesOfPartyB, pendingLockedBalancesOfPartyB."""
        b, a = to_checksum_address(party_b), to_checksum_address(party_a)
        return (
            self._s("allocatedBalanceOfPartyB", b, a),
            self._s("lockedBalancesOfPartyB", b, a),
            self._s("pendingLockedBalancesOfPartyB", b, a),
        )


def sent_quote_ids(logs: Sequence[Log], *, symmio: str, party_a: str) -> list[int]:
    """Quote ids of the SendQuote logs of `party_a` in a receipt, in log (= calldata) order."""
    out: list[int] = []
    want_addr = to_checksum_address(symmio)
    want_a = to_checksum_address(party_a)
    for lg in sorted(logs, key=lambda x: x.log_index):
        if lg.address != want_addr or not lg.topics or lg.topics[0] != SEND_QUOTE_TOPIC:
            continue
        a, quote_id = decode(["address", "uint256"], lg.data[:64])
        if to_checksum_address(a) == want_a:
            out.append(int(quote_id))
    return out


def decode_uint(raw: bytes) -> int:
    (v,) = decode(["uint256"], raw)
    return int(v)


def decode_locked_b(raw: bytes) -> int:
    """cva + lf + partyBmm of a LockedValues tuple (cva, lf, partyAmm, partyBmm)."""
    cva, lf, _amm, bmm = decode(["(uint256,uint256,uint256,uint256)"], raw)[0]
    return int(cva) + int(lf) + int(bmm)
