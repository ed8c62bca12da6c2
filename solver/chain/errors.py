"""Classifying what the node says, in one place (never substring checks spread through code).

`decode_revert` turns revert data into the contract's reason; `classify_send_error` tells a
send that may be retried from one that tells us the nonce is already used.
"""

from __future__ import annotations

from enum import Enum

from eth_abi.abi import decode

_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)


class Revert(Exception):
    """A call the chain would revert (pre-flight) or did revert; `reason` is readable."""

    def __init__(self, reason: str, data: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data


def decode_revert(data: bytes | str | None) -> str:
    if data is None:
        return "reverted without a reason"
    raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else data
    if raw[:4] == _ERROR_STRING:
        try:
            (reason,) = decode(["string"], raw[4:])
            return str(reason)
        except Exception:
            return "reverted with malformed Error(string) data"
    if raw[:4] == _PANIC:
        try:
            (code,) = decode(["uint256"], raw[4:])
            return f"panic 0x{int(code):02x}"
        except Exception:
            return "reverted with a malformed panic"
    if not raw:
        return "reverted without a reason"
    return f"reverted with custom error 0x{raw[:4].hex()}"


class SendError(Enum):
    ALREADY_KNOWN = "already_known"  # the node has this exact transaction: fine
    NONCE_TOO_LOW = "nonce_too_low"  # the nonce is used: look for a receipt of one of our hashes
    UNDERPRICED = "underpriced"  # a replacement must pay more
    TRANSIENT = "transient"  # timeouts, 5xx, anything else: retry later with the same bytes


_PATTERNS: tuple[tuple[SendError, tuple[str, ...]], ...] = (
    (SendError.ALREADY_KNOWN, ("already known", "already imported", "known transaction")),
    (SendError.NONCE_TOO_LOW, ("nonce too low", "nonce has already been used", "oldnonce")),
    (
        SendError.UNDERPRICED,
        ("underpriced", "replacement transaction", "fee too low", "max fee per gas less than block base fee"),
    ),
)


def classify_send_error(exc: BaseException) -> SendError:
    text = str(exc).lower()
    for kind, needles in _PATTERNS:
        if any(n in text for n in needles):
            return kind
    return SendError.TRANSIENT
