"""What the chain worker needs from an oracle: fresh uPnL/price signatures (chain.md §6).

Two implementations: `MuonClient` (HTTP, production Muon nodes or `solver oracle`) and
`LocalOracle` (in-process). Signatures are bound to the parties' current nonces, so callers
fetch one right before sending and again after a nonce change.
"""

from __future__ import annotations

from typing import Protocol

from solver.core.errors import ErrorCode, SolverError
from solver.oracle.signer import PairUpnlAndPriceSig, SingleUpnlAndPriceSig, SingleUpnlSig


class OracleError(SolverError):
    """ORACLE_UNAVAILABLE (transport failure, timeout, garbage: retry later or elsewhere) or
    ORACLE_REFUSED (the oracle answered and declined, e.g. a stale price: retrying at once with
    the same inputs will not help)."""

    @property
    def refused(self) -> bool:
        return self.code is ErrorCode.ORACLE_REFUSED


class OracleClient(Protocol):
    async def party_a_upnl_and_price(self, *, party_a: str, symbol_id: int) -> SingleUpnlAndPriceSig:
        """`uPnl_A_withSymbolPrice`: for sendQuote / sendQuoteWithAffiliate."""
        ...

    async def party_a_upnl(self, *, party_a: str) -> SingleUpnlSig:
        """`uPnl_A`: for deallocate."""
        ...

    async def party_b_upnl(self, *, party_b: str, party_a: str) -> SingleUpnlSig:
        """`uPnl_B`: partyB's uPnL against this partyA, for lockQuote."""
        ...

    async def pair_upnl_and_price(self, *, party_b: str, party_a: str, symbol_id: int) -> PairUpnlAndPriceSig:
        """`uPnlWithSymbolPrice`: for openPosition, lockAndOpenQuote and fillCloseRequest."""
        ...

    async def close(self) -> None: ...
