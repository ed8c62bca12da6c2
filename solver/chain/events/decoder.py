"""Decode raw logs by topic0 into plain `ChainEvent`s (eth_abi only, no web3).

Several Symmio events exist twice under the same name (the close-side events with and without a
trailing `closeId`, and `ExpireQuote` next to `ExpireQuoteOpen`/`ExpireQuoteClose`, chain.md §3).
Name-based decoding keeps only one overload and silently drops the other, so the table here is
keyed by topic0 = keccak of the canonical signature, built from every event of the ABI files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from solver.chain.abi import load_abi

log = logging.getLogger(__name__)

# Events emitted twice in one transaction: a legacy form and a current form (chain.md §3).
CLOSE_SIDE_EVENTS = frozenset(
    {"RequestToClosePosition", "RequestToCancelCloseRequest", "FillCloseRequest", "AcceptCancelCloseRequest"}
)
LEGACY_EXPIRE = "ExpireQuote"
CURRENT_EXPIRE = frozenset({"ExpireQuoteOpen", "ExpireQuoteClose"})


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """One decoded log. `args` holds ints, bools, bytes, strings and EIP-55 addresses."""

    name: str
    signature: str  # canonical `Name(type,…)`: tells the two overloads of a name apart
    args: Mapping[str, Any]
    block_number: int
    block_hash: str  # 0x, lowercase
    tx_hash: str  # 0x, lowercase
    log_index: int
    address: str  # emitting contract, EIP-55

    @property
    def key(self) -> str:
        """Unique per log on a given chain: the notification `event_key`."""
        return f"{self.tx_hash}:{self.log_index}"

    @property
    def quote_id(self) -> int | None:
        value = self.args.get("quoteId")
        return int(value) if value is not None else None

    @property
    def family(self) -> str:
        """The name shared by both forms of a doubly emitted event."""
        return LEGACY_EXPIRE if self.name in CURRENT_EXPIRE else self.name

    @property
    def is_legacy_form(self) -> bool:
        """The closeId-less twin of an event that the contracts also emit in its current form."""
        if self.name == LEGACY_EXPIRE:
            return True
        return self.name in CLOSE_SIDE_EVENTS and "closeId" not in self.args


@dataclass(frozen=True, slots=True)
class _EventSpec:
    name: str
    signature: str
    indexed: tuple[tuple[str, str], ...]  # (name, canonical type)
    plain: tuple[tuple[str, str], ...]


def canonical_type(param: Mapping[str, Any]) -> str:
    t = str(param["type"])
    if t.startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in param["components"])
        return f"({inner}){t[len('tuple') :]}"
    return t


def event_signature(entry: Mapping[str, Any]) -> str:
    return f"{entry['name']}({','.join(canonical_type(p) for p in entry.get('inputs', []))})"


def topic0(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def _hex(value: Any) -> str:
    """0x-lowercase hex of bytes/HexBytes/str (web3 logs and JSON-RPC logs alike)."""
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else "0x" + value.lower()
    return "0x" + bytes(value).hex()


def _bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value.removeprefix("0x"))
    return bytes(value)


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _normalize(abi_type: str, value: Any) -> Any:
    if abi_type == "address":
        return str(to_checksum_address(value))
    if abi_type.endswith("]") and abi_type.startswith("address"):
        return [str(to_checksum_address(v)) for v in value]
    if isinstance(value, tuple):
        return list(value)
    return value


class EventDecoder:
    """topic0 → decoder for every event of the given ABIs."""

    def __init__(self, abis: Iterable[Sequence[Mapping[str, Any]]]) -> None:
        self._specs: dict[str, _EventSpec] = {}
        for abi in abis:
            for entry in abi:
                if entry.get("type") != "event" or entry.get("anonymous"):
                    continue
                sig = event_signature(entry)
                inputs = entry.get("inputs", [])
                self._specs[topic0(sig)] = _EventSpec(
                    name=str(entry["name"]),
                    signature=sig,
                    indexed=tuple((str(p["name"]), canonical_type(p)) for p in inputs if p.get("indexed")),
                    plain=tuple((str(p["name"]), canonical_type(p)) for p in inputs if not p.get("indexed")),
                )

    @classmethod
    def symmio(cls) -> EventDecoder:
        """Every event of the Symmio diamond and MultiAccount (contracts_abi/)."""
        return cls([load_abi("Symmio"), load_abi("MultiAccount")])

    @property
    def topics(self) -> dict[str, str]:
        """topic0 → canonical signature."""
        return {t: s.signature for t, s in self._specs.items()}

    def decode(self, raw: Mapping[str, Any]) -> ChainEvent | None:
        """A raw log (web3 AttributeDict or JSON-RPC dict) → ChainEvent; None when unknown or malformed."""
        topics = [_hex(t) for t in raw.get("topics", ())]
        if not topics:
            return None
        spec = self._specs.get(topics[0])
        if spec is None:
            log.debug("unknown topic0", extra={"topic0": topics[0], "tx_hash": _hex(raw["transactionHash"])})
            return None
        try:
            args = self._args(spec, topics[1:], _bytes(raw.get("data", b"")))
        except (DecodingError, ValueError, OverflowError) as exc:
            # A known topic0 whose payload does not fit the ABI: another contract's event that
            # shares the signature, or an ABI mismatch. Skipping is safe: quote state is re-read.
            log.error("cannot decode %s: %s", spec.signature, exc, extra={"tx_hash": _hex(raw["transactionHash"])})
            return None
        return ChainEvent(
            name=spec.name,
            signature=spec.signature,
            args=args,
            block_number=_int(raw["blockNumber"]),
            block_hash=_hex(raw["blockHash"]),
            tx_hash=_hex(raw["transactionHash"]),
            log_index=_int(raw["logIndex"]),
            address=str(to_checksum_address(_hex(raw["address"]))),
        )

    @staticmethod
    def _args(spec: _EventSpec, indexed_topics: list[str], data: bytes) -> dict[str, Any]:
        if len(indexed_topics) != len(spec.indexed):
            raise ValueError(f"expected {len(spec.indexed)} indexed topics, got {len(indexed_topics)}")
        args: dict[str, Any] = {}
        for (name, abi_type), topic in zip(spec.indexed, indexed_topics, strict=True):
            # Dynamic indexed values are stored as their hash: keep the 32 bytes as they are.
            dynamic = abi_type in ("string", "bytes") or abi_type.endswith("]") or abi_type.startswith("(")
            value = _bytes(topic) if dynamic else decode([abi_type], _bytes(topic))[0]
            args[name] = _normalize(abi_type, value)
        values = decode([t for _, t in spec.plain], data)
        for (name, abi_type), value in zip(spec.plain, values, strict=True):
            args[name] = _normalize(abi_type, value)
        return args


__all__ = ["CLOSE_SIDE_EVENTS", "ChainEvent", "EventDecoder", "event_signature", "topic0"]
