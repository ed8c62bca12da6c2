"""The worker's view of a node: nonces, fees, pre-flight, raw sends and receipts (web3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError, TransactionNotFound
from web3.types import TxParams

from solver.chain.errors import Revert, decode_revert
from solver.chain.provider import async_web3
from solver.chain.tx.fees import Fees


@dataclass(frozen=True, slots=True)
class Log:
    address: str
    topics: tuple[bytes, ...]
    data: bytes
    log_index: int
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    status: int
    block_number: int
    block_hash: str
    gas_used: int
    logs: tuple[Log, ...]


class TxNode:
    """One RPC endpoint. Every method is a single request, so callers decide on retries."""

    def __init__(self, w3: AsyncWeb3[Any]) -> None:
        self.w3 = w3

    @classmethod
    def connect(cls, rpc_url: str, *, timeout_s: float = 10.0) -> TxNode:
        return cls(async_web3(rpc_url, timeout_s=timeout_s))

    async def close(self) -> None:
        await self.w3.provider.disconnect()

    async def chain_id(self) -> int:
        return int(await self.w3.eth.chain_id)

    async def block_number(self) -> int:
        return int(await self.w3.eth.block_number)

    async def nonce(self, address: str, block: str = "pending") -> int:
        return int(await self.w3.eth.get_transaction_count(to_checksum_address(address), block))  # type: ignore[arg-type]

    async def fee_inputs(self) -> tuple[int, int]:
        """(base fee of the latest block, suggested priority fee)."""
        block = await self.w3.eth.get_block("latest")
        base = int(block.get("baseFeePerGas", 0) or 0)
        try:
            tip = int(await self.w3.eth.max_priority_fee)
        except Exception:  # nodes without the method: a 1 gwei tip
            tip = 10**9
        return base, tip

    async def suggested_fees(self) -> Fees:
        base, tip = await self.fee_inputs()
        return Fees(max_fee_per_gas=2 * base + tip, max_priority_fee_per_gas=tip)

    async def estimate_gas(self, sender: str, to: str, data: str) -> int:
        """Pre-flight: runs the call on the latest state; raises Revert with the reason."""
        tx: TxParams = {"from": to_checksum_address(sender), "to": to_checksum_address(to), "data": HexBytes(data)}
        try:
            return int(await self.w3.eth.estimate_gas(tx))
        except ContractLogicError as exc:
            raise Revert(_reason(exc), _data(exc)) from exc

    async def call(self, sender: str, to: str, data: str, block: int | str = "latest") -> bytes:
        tx: TxParams = {"from": to_checksum_address(sender), "to": to_checksum_address(to), "data": HexBytes(data)}
        try:
            return bytes(await self.w3.eth.call(tx, block_identifier=block))  # type: ignore[arg-type]
        except ContractLogicError as exc:
            raise Revert(_reason(exc), _data(exc)) from exc

    async def revert_reason(self, sender: str, to: str, data: str, block: int) -> str:
        """Why a mined transaction reverted: replay it on the state its block left (what changed
        it is usually an earlier transaction of the same block), then on the block before."""
        for at in (block, max(block - 1, 0)):
            try:
                await self.call(sender, to, data, block=at)
            except Revert as exc:
                return exc.reason
            except Exception:  # the reason is best effort; the revert itself is certain
                return "reverted on chain"
        return "reverted on chain (the call succeeds when replayed)"

    async def send_raw(self, raw: str) -> str:
        h = await self.w3.eth.send_raw_transaction(HexBytes(raw))
        return "0x" + bytes(h).hex()

    async def receipt(self, tx_hash: str) -> Receipt | None:
        try:
            r = await self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None
        if r is None or r.get("blockNumber") is None:
            return None
        logs = tuple(
            Log(
                address=str(to_checksum_address(lg["address"])),
                topics=tuple(bytes(t) for t in lg["topics"]),
                data=bytes(lg["data"]),
                log_index=int(lg["logIndex"]),
                raw=dict(lg),
            )
            for lg in r["logs"]
        )
        return Receipt(
            tx_hash="0x" + bytes(r["transactionHash"]).hex(),
            status=int(r["status"]),
            block_number=int(r["blockNumber"]),
            block_hash="0x" + bytes(r["blockHash"]).hex(),
            gas_used=int(r["gasUsed"]),
            logs=logs,
        )

    async def block_time(self, number: int) -> int | None:
        try:
            block = await self.w3.eth.get_block(number)
        except Exception:  # a block gone in a reorg: the caller falls back to its own clock
            return None
        ts = block.get("timestamp")
        return None if ts is None else int(ts)

    async def block_hash(self, number: int) -> str | None:
        try:
            block = await self.w3.eth.get_block(number)
        except Exception:
            return None
        h = block.get("hash")
        return None if h is None else "0x" + bytes(h).hex()


def _data(exc: ContractLogicError) -> bytes:
    data = exc.data
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return b""
    return data if isinstance(data, bytes) else b""


def _reason(exc: ContractLogicError) -> str:
    data = _data(exc)
    if data:
        return decode_revert(data)
    msg = str(exc.message or exc)
    return msg.removeprefix("execution reverted: ").removeprefix("execution reverted") or "reverted without a reason"
