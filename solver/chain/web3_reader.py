"""ChainReader over web3.py's async HTTP provider."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError, Web3Exception

from solver.chain.abi import ERC1271_ABI, ERC1271_MAGIC, load_abi
from solver.chain.provider import KeepAliveHTTPProvider
from solver.chain.types import LockedValues, OnChainQuote, PartyABalances, SubAccount
from solver.settings import ZERO_ADDRESS, ChainSettings

_PAGE = 100


class Web3ChainReader:
    def __init__(self, w3: AsyncWeb3[Any], *, multi_account: str, symmio: str) -> None:
        self._w3 = w3
        self._multi = w3.eth.contract(address=to_checksum_address(multi_account), abi=load_abi("MultiAccount"))
        self._symmio = w3.eth.contract(address=to_checksum_address(symmio), abi=load_abi("Symmio"))

    @classmethod
    def from_settings(cls, chain: ChainSettings, *, timeout_s: float = 10.0) -> Web3ChainReader:
        provider = KeepAliveHTTPProvider(chain.rpc_urls[0], timeout_s=timeout_s)
        return cls(AsyncWeb3(provider), multi_account=chain.multi_account_address, symmio=chain.symmio_address)

    async def close(self) -> None:
        """Close the provider's HTTP session (web3 keeps one per event loop)."""
        await self._w3.provider.disconnect()

    async def chain_id(self) -> int:
        return int(await self._w3.eth.chain_id)

    async def owner_of(self, account: str) -> str | None:
        owner = await self._multi.functions.owners(to_checksum_address(account)).call()
        if int(owner, 16) == 0:
            return None
        return str(to_checksum_address(owner))

    async def accounts_of(self, owner: str) -> list[SubAccount]:
        who = to_checksum_address(owner)
        total = int(await self._multi.functions.getAccountsLength(who).call())
        out: list[SubAccount] = []
        for start in range(0, total, _PAGE):
            page = await self._multi.functions.getAccounts(who, start, min(_PAGE, total - start)).call()
            out.extend(SubAccount(address=str(to_checksum_address(a[0])), name=str(a[1])) for a in page)
        return out

    async def is_delegated(self, account: str, target: str, selector: bytes) -> bool:
        fn = self._multi.functions.delegatedAccesses(
            to_checksum_address(account), to_checksum_address(target), selector
        )
        return bool(await fn.call())

    async def party_a_balances(self, account: str) -> PartyABalances:
        who = to_checksum_address(account)
        fns = self._symmio.functions
        # One block for the three reads, so allocated and locked values are consistent.
        block = await self._w3.eth.block_number
        allocated, locked, pending = await asyncio.gather(
            fns.allocatedBalanceOfPartyA(who).call(block_identifier=block),
            fns.lockedBalancesOfPartyA(who).call(block_identifier=block),
            fns.pendingLockedBalancesOfPartyA(who).call(block_identifier=block),
        )
        return PartyABalances(allocated=int(allocated), locked=_locked(locked), pending_locked=_locked(pending))

    async def quote(self, quote_id: int) -> OnChainQuote | None:
        raw = await self._symmio.functions.getQuote(quote_id).call()
        q = _quote(raw)
        return None if q.id == 0 else q

    async def open_positions(self, account: str) -> list[OnChainQuote]:
        who = to_checksum_address(account)
        out: list[OnChainQuote] = []
        start = 0
        while True:
            page = await self._symmio.functions.getPartyAOpenPositions(who, start, _PAGE).call()
            out.extend(_quote(raw) for raw in page)
            if len(page) < _PAGE:
                return out
            start += _PAGE

    async def pending_quote_ids(self, account: str) -> list[int]:
        raw = await self._symmio.functions.getPartyAPendingQuotes(to_checksum_address(account)).call()
        return [int(x) for x in raw]

    async def nonce_of_party_a(self, account: str) -> int:
        return int(await self._symmio.functions.nonceOfPartyA(to_checksum_address(account)).call())

    async def nonce_of_party_b(self, party_b: str, party_a: str) -> int:
        fn = self._symmio.functions.nonceOfPartyB(to_checksum_address(party_b), to_checksum_address(party_a))
        return int(await fn.call())

    async def is_valid_signature_1271(self, wallet: str, digest: bytes, signature: bytes) -> bool:
        who = to_checksum_address(wallet)
        if not await self._w3.eth.get_code(who):
            return False
        contract = self._w3.eth.contract(address=who, abi=ERC1271_ABI)
        try:
            magic = await contract.functions.isValidSignature(digest, signature).call()
        except (ContractLogicError, Web3Exception, ValueError):
            return False
        return bytes(magic) == ERC1271_MAGIC


def _locked(raw: Sequence[Any]) -> LockedValues:
    return LockedValues(int(raw[0]), int(raw[1]), int(raw[2]), int(raw[3]))


def _addr(raw: str) -> str:
    return str(to_checksum_address(raw)) if int(raw, 16) else ZERO_ADDRESS


def _quote(r: Sequence[Any]) -> OnChainQuote:
    # Field order of getQuote, chain.md §2.
    return OnChainQuote(
        id=int(r[0]),
        symbol_id=int(r[2]),
        position_type=int(r[3]),
        order_type=int(r[4]),
        opened_price=int(r[5]),
        requested_open_price=int(r[7]),
        market_price=int(r[8]),
        quantity=int(r[9]),
        closed_amount=int(r[10]),
        initial_locked=_locked(r[11]),
        locked=_locked(r[12]),
        max_funding_rate=int(r[13]),
        party_a=_addr(r[14]),
        party_b=_addr(r[15]),
        status=int(r[16]),
        avg_closed_price=int(r[17]),
        requested_close_price=int(r[18]),
        quantity_to_close=int(r[19]),
        parent_id=int(r[20]),
        create_timestamp=int(r[21]),
        status_modify_timestamp=int(r[22]),
        deadline=int(r[24]),
        trading_fee=int(r[25]),
        affiliate=_addr(r[26]),
    )
