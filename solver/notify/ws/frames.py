"""Pure: what WebSocket clients send (parsed leniently, rejected with a clear reason) and the
frames the server pushes (http-api.md §7). No I/O.

Error frames are the HTTP error body, `{"error_code", "error_message", "error_detail"}`, except
on the Binance-protocol mark price stream, which answers like Binance:
`{"error": {"code": int, "msg": str}, "id": <request id>}`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_utils.address import is_address, to_checksum_address

from solver.core.errors import ErrorCode
from solver.core.units import fmt, round_to_wei

MAX_MESSAGE_CHARS = 16_384
_QUOTES = "\"'` \t\r\n"
_MARK_STREAM = re.compile(r"^(?:(!markprice@arr)|([a-z0-9]{1,32})@markprice)(@1s)?$")


class FrameError(ValueError):
    """A client message that cannot be used; `frame` is the error frame to send back."""

    def __init__(self, code: ErrorCode, message: str, detail: list[str] | None = None) -> None:
        super().__init__(message)
        self.frame = error_frame(code, message, detail)


def error_frame(code: ErrorCode, message: str | None = None, detail: list[str] | None = None) -> str:
    return json.dumps({"error_code": code.code, "error_message": message or code.message, "error_detail": detail})


def checksum_or_none(text: str) -> str | None:
    t = text.strip()
    if len(t) != 42 or not t.startswith(("0x", "0X")) or not is_address(t.lower()):
        return None
    return str(to_checksum_address(t.lower()))


def _shown(text: str) -> str:
    return text if len(text) <= 60 else text[:60] + "…"


def _too_long(text: str) -> None:
    if len(text) > MAX_MESSAGE_CHARS:
        raise FrameError(ErrorCode.VALIDATION, f"Messages are limited to {MAX_MESSAGE_CHARS} characters.")


# --- upnl-ws -----------------------------------------------------------------------------------


def parse_account(text: str) -> str:
    """The bare account address (surrounding whitespace and quotes tolerated), EIP-55."""
    _too_long(text)
    bare = text.strip(_QUOTES)
    found = checksum_or_none(bare)
    if found is None:
        raise FrameError(
            ErrorCode.VALIDATION,
            f"Send the account address as plain text (0x followed by 40 hex digits), got {_shown(bare)!r}.",
            ["account: not an address"],
        )
    return found


def balance_frame(
    *,
    upnl: Decimal,
    timestamp: int,
    available: Decimal,
    allocated: Decimal,
    cva: Decimal,
    lf: Decimal,
    party_a_mm: Decimal,
    pending_cva: Decimal,
    pending_lf: Decimal,
    pending_party_a_mm: Decimal,
) -> str:
    """The upnl-ws object; decimal USD written as exact JSON numbers (never via float)."""
    fields: list[tuple[str, str]] = [
        ("upnl", _number(upnl)),
        ("timestamp", str(int(timestamp))),
        ("available_balance", _number(available)),
        ("allocated_balance", _number(allocated)),
        ("cva", _number(cva)),
        ("lf", _number(lf)),
        ("party_a_mm", _number(party_a_mm)),
        ("pending_cva", _number(pending_cva)),
        ("pending_lf", _number(pending_lf)),
        ("pending_party_a_mm", _number(pending_party_a_mm)),
    ]
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields) + "}"


def _number(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    return fmt(round_to_wei(value))


# --- position-state-ws3 ------------------------------------------------------------------------


def parse_addresses(text: str) -> tuple[list[str], list[str]]:
    """`{"address": ["0x…", …]}` (also a single string, a bare JSON list or a bare address) ->
    (EIP-55 addresses, the entries that are not addresses). An empty list stops all pushes; a
    message with no address at all but some garbage is rejected (FrameError)."""
    _too_long(text)
    raw: Any
    stripped = text.strip()
    if stripped.startswith("{"):
        body = _json(stripped)
        if not isinstance(body, dict) or "address" not in body:
            raise FrameError(ErrorCode.VALIDATION, 'Send {"address": ["0x…", …]}: the list of accounts to follow.')
        raw = body["address"]
    elif stripped.startswith("["):
        raw = _json(stripped)
    else:
        raw = stripped.strip(_QUOTES)
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise FrameError(ErrorCode.VALIDATION, '"address" must be a list of account addresses.')
    good: dict[str, None] = {}
    bad: list[str] = []
    for item in items:
        found = checksum_or_none(item) if isinstance(item, str) else None
        if found is None:
            bad.append(_shown(str(item)))
        else:
            good[found] = None
    if bad and not good:
        raise FrameError(
            ErrorCode.VALIDATION,
            'No account address in the message: send {"address": ["0x…", …]} (0x followed by 40 hex digits).',
            bad[:20],
        )
    return list(good), bad


# --- funding-rate-ws ---------------------------------------------------------------------------


def parse_symbols(text: str) -> list[str]:
    """`{"symbols": ["BTCUSDT", …]}` -> the names as sent (an empty list pauses the pushes)."""
    _too_long(text)
    body = _json(text.strip())
    symbols = body.get("symbols") if isinstance(body, dict) else None
    if not isinstance(symbols, list) or not all(isinstance(s, str | int) and not isinstance(s, bool) for s in symbols):
        raise FrameError(
            ErrorCode.VALIDATION, 'Send {"symbols": ["BTCUSDT", …]}: a list of market names (empty to pause).'
        )
    return [str(s) for s in symbols]


def funding_frame(items: dict[str, tuple[int, Decimal, Decimal]]) -> str:
    """Bare map name -> {next_funding_time (ms), next_funding_rate_long, next_funding_rate_short}."""
    return json.dumps(
        {
            name: {
                "next_funding_time": t,
                "next_funding_rate_long": fmt(long),
                "next_funding_rate_short": fmt(short),
            }
            for name, (t, long, short) in items.items()
        },
        separators=(",", ":"),
    )


# --- mark price stream (Binance futures combined-stream protocol) ------------------------------


@dataclass(frozen=True, slots=True)
class BinanceRequest:
    method: str  # SUBSCRIBE | UNSUBSCRIBE | LIST_SUBSCRIPTIONS
    params: list[str]
    id: Any  # echoed back as sent (int, str or null)


class BinanceError(ValueError):
    def __init__(self, code: int, msg: str, request_id: Any = None) -> None:
        super().__init__(msg)
        self.frame = json.dumps({"error": {"code": code, "msg": msg}, "id": request_id})


def parse_binance(text: str) -> BinanceRequest:
    if len(text) > MAX_MESSAGE_CHARS:
        raise BinanceError(2, f"Invalid request: messages are limited to {MAX_MESSAGE_CHARS} characters")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise BinanceError(3, f"Invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BinanceError(2, "Invalid request: expected a JSON object")
    rid = body.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, int | str)):
        raise BinanceError(2, "Invalid request: id must be an integer or a string", None)
    method = body.get("method")
    if method not in ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS"):
        raise BinanceError(2, f"Invalid request: unknown method {method!r}", rid)
    params = body.get("params", [])
    if method != "LIST_SUBSCRIPTIONS" and (
        not isinstance(params, list) or not params or not all(isinstance(p, str) for p in params)
    ):
        raise BinanceError(2, "Invalid request: params must be a non-empty list of stream names", rid)
    return BinanceRequest(method=method, params=list(params) if isinstance(params, list) else [], id=rid)


@dataclass(frozen=True, slots=True)
class MarkStream:
    name: str  # as the client spelled it, echoed in each push
    symbol: str | None  # market name for `<symbol>@markPrice`, None for the all-market array
    every_s: int  # 1 with the `@1s` suffix, else 3 (Binance's default period)


def parse_stream(name: str, known: set[str]) -> MarkStream:
    """`!markPrice@arr[@1s]` or `<symbol>@markPrice[@1s]` for a market this solver prices."""
    m = _MARK_STREAM.match(name.strip().lower())
    if m is None:
        raise ValueError(f"unknown stream {name!r}: this server serves !markPrice@arr@1s and <symbol>@markPrice@1s")
    symbol = None if m.group(1) else m.group(2).upper()
    if symbol is not None and symbol not in known:
        raise ValueError(f"unknown symbol in stream {name!r}")
    return MarkStream(name=name, symbol=symbol, every_s=1 if m.group(3) else 3)


@dataclass(frozen=True, slots=True)
class MarkItem:
    symbol: str
    price: Decimal
    ts_ms: int  # the price's source time
    funding_rate: Decimal
    next_funding_ms: int

    def event(self) -> dict[str, Any]:
        p = fmt(self.price)
        return {
            "e": "markPriceUpdate",
            "E": self.ts_ms,
            "s": self.symbol,
            "p": p,
            "i": p,
            "P": p,
            "r": fmt(self.funding_rate),
            "T": self.next_funding_ms,
        }


def mark_frame(stream: MarkStream, items: dict[str, MarkItem]) -> str | None:
    """The combined-stream message for one stream, or None when it has nothing fresh to say."""
    data: Any
    if stream.symbol is None:
        if not items:
            return None
        data = [item.event() for item in items.values()]
    else:
        item = items.get(stream.symbol)
        if item is None:
            return None
        data = item.event()
    return json.dumps({"stream": stream.name, "data": data}, separators=(",", ":"))


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise FrameError(ErrorCode.VALIDATION, "The message is not valid JSON.", [str(exc)[:200]]) from exc
