"""ABIs written from chain.md (contracts_abi/), loaded once per process."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

ABI_DIR = Path(__file__).resolve().parent.parent.parent / "contracts_abi"

ERC1271_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "isValidSignature",
        "stateMutability": "view",
        "inputs": [{"name": "hash", "type": "bytes32"}, {"name": "signature", "type": "bytes"}],
        "outputs": [{"name": "magicValue", "type": "bytes4"}],
    }
]
ERC1271_MAGIC = bytes.fromhex("1626ba7e")


@cache
def load_abi(name: str) -> list[dict[str, Any]]:
    data = json.loads((ABI_DIR / f"{name}.json").read_text())
    abi = data["abi"] if isinstance(data, dict) else data
    assert isinstance(abi, list)
    return abi
