"""Compiled local contracts: where they live, how they are keyed, how to load them.

Artifacts are committed (`solver/devnet/build/<Contract>.json`) so nothing at runtime needs node.
Each carries `sourceHash`, the sha256 of the sources and compiler settings it was built from;
`load_artifact` refuses a stale one, so an edited .sol without a rebuild fails loudly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DEVNET_DIR = Path(__file__).resolve().parent
CONTRACTS_DIR = DEVNET_DIR / "contracts"
BUILD_DIR = DEVNET_DIR / "build"

SOLC_VERSION = "0.8.30"
# viaIR: sendQuoteWithAffiliate takes 14 arguments, beyond the legacy pipeline's stack reach.
SOLC_SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "viaIR": True,
    "evmVersion": "cancun",
    "metadata": {"bytecodeHash": "none"},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
}
# Contracts that get an artifact (the rest are libraries, interfaces and abstract bases).
CONTRACT_NAMES = (
    "LocalSymmio",
    "SymmioAccountFacet",
    "MultiAccount",
    "PartyAAccount",
    "MockCollateral",
    "SmartWallet1271",
)
# The diamond's artifact carries the ABI of every function reachable at its address: its own and
# those its fallback delegates to these facets.
DIAMOND_FACETS: dict[str, tuple[str, ...]] = {"LocalSymmio": ("SymmioAccountFacet",)}


class StaleArtifactError(RuntimeError):
    """The artifact was built from other sources: run `python -m solver.devnet.build`."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # 0x-prefixed creation code

    def entries(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.abi if e.get("type") == kind]


def canonical_type(param: dict[str, Any]) -> str:
    """ABI parameter -> canonical type string (tuples expanded), as used in selectors."""
    t = str(param["type"])
    if t.startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in param["components"])
        return f"({inner}){t[len('tuple') :]}"
    return t


def signature(entry: dict[str, Any]) -> str:
    """`name(type,...)` of a function/event/error ABI entry."""
    return f"{entry.get('name', '')}({','.join(canonical_type(p) for p in entry.get('inputs', []))})"


def read_sources() -> dict[str, str]:
    """File name -> content of every .sol file, in a stable order."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(CONTRACTS_DIR.glob("*.sol"))}


def source_hash(sources: dict[str, str] | None = None) -> str:
    src = read_sources() if sources is None else sources
    h = hashlib.sha256()
    for name in sorted(src):
        h.update(name.encode() + b"\0" + src[name].encode() + b"\0")
    h.update(json.dumps({"solc": SOLC_VERSION, "settings": SOLC_SETTINGS}, sort_keys=True).encode())
    return h.hexdigest()


def artifact_path(name: str) -> Path:
    return BUILD_DIR / f"{name}.json"


@cache
def _current_hash() -> str:
    return source_hash()


def load_artifact(name: str, *, check_fresh: bool = True) -> Artifact:
    path = artifact_path(name)
    if not path.exists():
        raise FileNotFoundError(f"no artifact {path}; run `python -m solver.devnet.build`")
    data = json.loads(path.read_text(encoding="utf-8"))
    if check_fresh and data["sourceHash"] != _current_hash():
        raise StaleArtifactError(f"{path.name} is stale; run `python -m solver.devnet.build`")
    return Artifact(name=data["contractName"], abi=data["abi"], bytecode=data["bytecode"])


def load_all(*, check_fresh: bool = True) -> dict[str, Artifact]:
    return {n: load_artifact(n, check_fresh=check_fresh) for n in CONTRACT_NAMES}
