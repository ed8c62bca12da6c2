"""Where the event follower gets blocks and logs: one RPC endpoint through web3.

`logs()` walks a block range in chunks (providers cap both the range and the number of results
of one `eth_getLogs`) and halves the chunk when the node says the answer would be too large. It
returns plain dicts with hex strings, so nothing web3-typed leaves solver/chain.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

from eth_utils.address import to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import BlockNotFound, Web3RPCError
from web3.types import BlockIdentifier, FilterParams

from solver.chain.provider import KeepAliveHTTPProvider

log = logging.getLogger(__name__)

DEFAULT_CHUNK_BLOCKS = 2000

# What nodes and hosted providers answer when one eth_getLogs would return too much (geth,
# erigon, Alchemy, Infura, QuickNode, …). Kept here, the one place that classifies it.
_TOO_LARGE_CODES = frozenset({-32005, -32602, -32614})
_TOO_LARGE_WORDS = (
    "more than",
    "too many",
    "limit exceeded",
    "response size",
    "block range",
    "range is too",
    "range too",
    "exceed",
    "query timeout",
)


def is_range_too_large(exc: Exception) -> bool:
    """The node refused an eth_getLogs because of its size (retry with a smaller range)."""
    if not isinstance(exc, Web3RPCError | ValueError):
        return False
    code: object = None
    message = str(exc)
    response = getattr(exc, "rpc_response", None)
    if isinstance(response, dict) and isinstance(response.get("error"), dict):
        code = response["error"].get("code")
        message = str(response["error"].get("message", message))
    text = message.lower()
    return any(word in text for word in _TOO_LARGE_WORDS) or (code in _TOO_LARGE_CODES and "log" in text)


def _hex(value: Any) -> str:
    return value.lower() if isinstance(value, str) else "0x" + bytes(value).hex()


def _plain(raw: Any) -> dict[str, Any]:
    return {
        "address": str(to_checksum_address(raw["address"])),
        "topics": [_hex(t) for t in raw["topics"]],
        "data": _hex(raw["data"]),
        "blockNumber": int(raw["blockNumber"]),
        "blockHash": _hex(raw["blockHash"]),
        "transactionHash": _hex(raw["transactionHash"]),
        "logIndex": int(raw["logIndex"]),
        "removed": bool(raw.get("removed", False)),
    }


class LogSource:
    """Head, block hashes and chunked logs of one node."""

    def __init__(self, w3: AsyncWeb3[Any], *, chunk_blocks: int = DEFAULT_CHUNK_BLOCKS) -> None:
        if chunk_blocks < 1:
            raise ValueError("chunk_blocks must be at least 1")
        self._w3 = w3
        self._chunk = chunk_blocks

    @classmethod
    def connect(cls, rpc_url: str, *, chunk_blocks: int = DEFAULT_CHUNK_BLOCKS, timeout_s: float = 30.0) -> LogSource:
        provider = KeepAliveHTTPProvider(rpc_url, timeout_s=timeout_s)
        return cls(AsyncWeb3(provider), chunk_blocks=chunk_blocks)

    async def close(self) -> None:
        await self._w3.provider.disconnect()

    async def head(self) -> int:
        return int(await self._w3.eth.block_number)

    async def block_hash(self, number: int) -> str | None:
        """Hash of block `number` on the node's canonical chain; None when it has no such block."""
        try:
            block = await self._w3.eth.get_block(cast(BlockIdentifier, number))
        except BlockNotFound:
            return None
        value = block.get("hash")
        return None if value is None else _hex(value)

    async def block_time(self, number: int) -> int | None:
        """Unix timestamp of block `number`; None when the node has no such block."""
        try:
            block = await self._w3.eth.get_block(cast(BlockIdentifier, number))
        except BlockNotFound:
            return None
        value = block.get("timestamp")
        return None if value is None else int(value)

    async def logs(self, from_block: int, to_block: int, addresses: Sequence[str]) -> list[dict[str, Any]]:
        """Every log of `addresses` in [from_block, to_block], in chain order."""
        out: list[dict[str, Any]] = []
        chunk = self._chunk
        start = from_block
        targets = [to_checksum_address(a) for a in addresses]
        while start <= to_block:
            end = min(to_block, start + chunk - 1)
            params: FilterParams = {"fromBlock": start, "toBlock": end, "address": targets}
            try:
                raw = await self._w3.eth.get_logs(params)
            except (Web3RPCError, ValueError) as exc:
                if chunk > 1 and is_range_too_large(exc):
                    chunk = max(1, chunk // 2)
                    log.info("eth_getLogs %d-%d too large, retrying with %d blocks", start, end, chunk)
                    continue
                raise
            out.extend(_plain(r) for r in raw)
            start = end + 1
        out.sort(key=lambda r: (r["blockNumber"], r["logIndex"]))
        return out


__all__ = ["DEFAULT_CHUNK_BLOCKS", "LogSource", "is_range_too_large"]
