"""LogSource chunking: ranges split by the chunk size, halved when the node refuses the size."""

from __future__ import annotations

from typing import Any

import pytest
from hexbytes import HexBytes
from web3.exceptions import Web3RPCError

from solver.chain.events.source import LogSource, is_range_too_large

pytestmark = pytest.mark.unit

ADDRESS = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"


def too_many() -> Web3RPCError:
    response = {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": -32005, "message": "query returned more than 10000 results"},
    }
    return Web3RPCError(str(response["error"]), rpc_response=response)  # type: ignore[arg-type]


class FakeEth:
    def __init__(self, max_range: int) -> None:
        self.max_range = max_range
        self.calls: list[tuple[int, int]] = []

    async def get_logs(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        start, end = params["fromBlock"], params["toBlock"]
        self.calls.append((start, end))
        if end - start + 1 > self.max_range:
            raise too_many()
        return [
            {
                "address": ADDRESS.lower(),
                "topics": [HexBytes(b"\x01" * 32)],
                "data": HexBytes(b""),
                "blockNumber": n,
                "blockHash": HexBytes(n.to_bytes(32, "big")),
                "transactionHash": HexBytes(b"\x02" * 32),
                "logIndex": 0,
            }
            for n in range(start, end + 1)
        ]


class FakeWeb3:
    def __init__(self, max_range: int) -> None:
        self.eth = FakeEth(max_range)


async def test_chunks_and_halves_on_too_many_results() -> None:
    w3 = FakeWeb3(max_range=3)
    source = LogSource(w3, chunk_blocks=8)  # type: ignore[arg-type]
    logs = await source.logs(10, 25, [ADDRESS])
    assert [r["blockNumber"] for r in logs] == list(range(10, 26))
    assert logs[0]["blockHash"] == "0x" + (10).to_bytes(32, "big").hex()
    assert logs[0]["address"] == ADDRESS
    assert logs[0]["topics"] == ["0x" + "01" * 32]
    # 8 refused, 4 refused, then 2-block chunks to the end.
    assert w3.eth.calls[:3] == [(10, 17), (10, 13), (10, 11)]
    assert all(e - s + 1 <= 2 for s, e in w3.eth.calls[3:])


async def test_other_errors_are_raised() -> None:
    class Broken(FakeEth):
        async def get_logs(self, params: dict[str, Any]) -> list[dict[str, Any]]:
            raise Web3RPCError("execution reverted")

    w3 = FakeWeb3(1)
    w3.eth = Broken(1)
    with pytest.raises(Web3RPCError):
        await LogSource(w3, chunk_blocks=4).logs(1, 2, [ADDRESS])  # type: ignore[arg-type]


def test_range_errors_are_recognised() -> None:
    assert is_range_too_large(too_many())
    assert is_range_too_large(ValueError({"code": -32602, "message": "block range is too wide"}))
    assert is_range_too_large(
        Web3RPCError("Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range")
    )
    assert not is_range_too_large(Web3RPCError("header not found"))
    assert not is_range_too_large(RuntimeError("more than 10000 results"))
