"""Read-only view of the chain the API and engine need (the only web3 users are in solver/chain).

`ChainReader` is the interface services depend on; `Web3ChainReader` is the implementation.
"""

from __future__ import annotations

from typing import Protocol

from solver.chain.types import OnChainQuote, PartyABalances, SubAccount


class ChainReader(Protocol):
    async def chain_id(self) -> int: ...

    async def close(self) -> None: ...

    async def owner_of(self, account: str) -> str | None:
        """`MultiAccount.owners(account)`; None when the address is not a sub-account."""
        ...

    async def accounts_of(self, owner: str) -> list[SubAccount]: ...

    async def is_delegated(self, account: str, target: str, selector: bytes) -> bool: ...

    async def party_a_balances(self, account: str) -> PartyABalances: ...

    async def quote(self, quote_id: int) -> OnChainQuote | None: ...

    async def open_positions(self, account: str) -> list[OnChainQuote]: ...

    async def pending_quote_ids(self, account: str) -> list[int]: ...

    async def nonce_of_party_a(self, account: str) -> int: ...

    async def nonce_of_party_b(self, party_b: str, party_a: str) -> int: ...

    async def is_valid_signature_1271(self, wallet: str, digest: bytes, signature: bytes) -> bool:
        """EIP-1271 `isValidSignature` on a contract wallet; False on revert or a non-contract."""
        ...
