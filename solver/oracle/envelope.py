"""The Muon HTTP wire format (http-api.md §8), shared by the Muon client and the local oracle.

Pure: no I/O. Decoding is strict because the answer comes from another process on the network:
anything off-shape raises `MalformedEnvelope` (never a KeyError/TypeError deep in a caller), and
numbers stay ints in wei (a JSON float is rejected, never rounded).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from eth_utils.address import is_address, to_checksum_address

from solver.core.units import INT256_MAX, INT256_MIN, UINT256_MAX
from solver.oracle.signer import PairUpnlAndPriceSig, SchnorrSign, SingleUpnlAndPriceSig, SingleUpnlSig

# Muon methods of the symmio app and the parameters each one takes, in order.
PARTY_A_WITH_PRICE = "uPnl_A_withSymbolPrice"
PARTY_A = "uPnl_A"
PARTY_B = "uPnl_B"
PAIR_WITH_PRICE = "uPnlWithSymbolPrice"
METHOD_PARAMS: dict[str, tuple[str, ...]] = {
    PARTY_A_WITH_PRICE: ("partyA", "chainId", "symmio", "symbolId"),
    PARTY_A: ("partyA", "chainId", "symmio"),
    PARTY_B: ("partyB", "partyA", "chainId", "symmio"),
    PAIR_WITH_PRICE: ("partyA", "partyB", "chainId", "symmio", "symbolId"),
}
# Keys of data.result for each method (uPnL values are int256, prices uint256).
RESULT_KEYS: dict[str, tuple[str, ...]] = {
    PARTY_A_WITH_PRICE: ("uPnl", "price"),
    PARTY_A: ("uPnl",),
    PARTY_B: ("uPnl",),
    PAIR_WITH_PRICE: ("uPnlA", "uPnlB", "price"),
}
_SIGNED_KEYS = frozenset({"uPnl", "uPnlA", "uPnlB"})
_MAX_MESSAGE = 300
_INT = re.compile(r"^-?[0-9]{1,80}$")
_HEX = re.compile(r"^0x[0-9a-fA-F]*$")
_PARAM_KEY = re.compile(r"^params\[([A-Za-z0-9_]{1,64})\]$")

AnySig = SingleUpnlSig | SingleUpnlAndPriceSig | PairUpnlAndPriceSig


class MalformedEnvelope(ValueError):
    """The answer is not a Muon envelope we can trust."""


class Refusal(Exception):
    """A well-formed `success: false` answer: the oracle declined to sign."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class BadRequest(ValueError):
    """A request the oracle cannot serve (unknown app or method, missing or invalid params)."""


@dataclass(frozen=True, slots=True)
class OracleRequest:
    method: str
    party_a: str
    chain_id: int
    symmio: str
    party_b: str | None = None
    symbol_id: int | None = None


# ---- client side: decode an answer ----------------------------------------------------------


def decode(body: object, method: str) -> AnySig:
    """The signature struct in a Muon answer to `method`; Refusal or MalformedEnvelope otherwise."""
    top = _obj(body, "body")
    success = top.get("success")
    if success is False:
        error = top.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if not isinstance(message, str) or not message.strip():
            raise MalformedEnvelope("success is false without an error message")
        raise Refusal(message.strip()[:_MAX_MESSAGE])
    if success is not True:
        raise MalformedEnvelope("success must be true or false")
    result = _obj(top.get("result"), "result")
    data = _obj(result.get("data"), "result.data")
    values = _obj(data.get("result"), "result.data.result")
    signatures = result.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise MalformedEnvelope("result.signatures must be a non-empty list")
    first = _obj(signatures[0], "result.signatures[0]")
    sigs = SchnorrSign(
        signature=_schnorr_s(first.get("signature")),
        owner=_address(first.get("owner"), "signatures[0].owner"),
        nonce=_address(_obj(data.get("init"), "result.data.init").get("nonceAddress"), "init.nonceAddress"),
    )
    req_id = _hex_bytes(result.get("reqId"), "result.reqId")
    gateway = _hex_bytes(result.get("nodeSignature"), "result.nodeSignature")
    ts = _int(data.get("timestamp"), "result.data.timestamp")
    if ts <= 0:
        raise MalformedEnvelope("result.data.timestamp must be positive")
    if method not in RESULT_KEYS:
        raise MalformedEnvelope(f"unknown method {method!r}")
    v = {k: _value(values.get(k), k) for k in RESULT_KEYS[method]}
    if method == PARTY_A_WITH_PRICE:
        return SingleUpnlAndPriceSig(req_id, ts, v["uPnl"], v["price"], gateway, sigs)
    if method == PAIR_WITH_PRICE:
        return PairUpnlAndPriceSig(req_id, ts, v["uPnlA"], v["uPnlB"], v["price"], gateway, sigs)
    return SingleUpnlSig(req_id, ts, v["uPnl"], gateway, sigs)


def _obj(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedEnvelope(f"{where} must be an object")
    return value


def _int(value: object, where: str) -> int:
    """An exact integer: a JSON int or a decimal string. Floats and booleans are refused."""
    if isinstance(value, bool):
        raise MalformedEnvelope(f"{where} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT.match(value.strip()):
        return int(value.strip())
    raise MalformedEnvelope(f"{where} must be an integer, got {str(value)[:40]!r}")


def _value(value: object, key: str) -> int:
    n = _int(value, f"result.data.result.{key}")
    low, high = (INT256_MIN, INT256_MAX) if key in _SIGNED_KEYS else (1, UINT256_MAX)
    if not low <= n <= high:
        raise MalformedEnvelope(f"result.data.result.{key} is out of range")
    return n


def _schnorr_s(value: object) -> int:
    """SchnorrSign.signature: `0x` hex (what Muon sends) or a decimal string."""
    if isinstance(value, str) and _HEX.match(value) and len(value) > 2:
        s = int(value, 16)
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        s = int(value)
    else:
        raise MalformedEnvelope("signatures[0].signature must be 0x-hex or decimal")
    if not 0 < s <= UINT256_MAX:
        raise MalformedEnvelope("signatures[0].signature is out of range")
    return s


def _hex_bytes(value: object, where: str) -> bytes:
    if not (isinstance(value, str) and _HEX.match(value) and len(value) > 2 and len(value) % 2 == 0):
        raise MalformedEnvelope(f"{where} must be non-empty 0x-prefixed hex bytes")
    return bytes.fromhex(value[2:])


def _address(value: object, where: str) -> str:
    if not (isinstance(value, str) and value.startswith("0x") and is_address(value.lower())):
        raise MalformedEnvelope(f"{where} must be an address")
    return str(to_checksum_address(value.lower()))


# ---- server side: parse a request, encode an answer ------------------------------------------


def parse_query(query_string: bytes | str) -> tuple[str, str, dict[str, str]]:
    """(app, method, params) from `app=…&method=…&params[partyA]=…` (brackets may be %-encoded)."""
    raw = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=False, max_num_fields=64)
    except ValueError as exc:
        raise BadRequest("the query string is not valid") from exc
    top: dict[str, str] = {}
    params: dict[str, str] = {}
    for key, value in pairs:
        m = _PARAM_KEY.match(key)
        target, name = (params, m.group(1)) if m else (top, key)
        if name in target:
            raise BadRequest(f"parameter {key!r} is given twice")
        target[name] = value
    return top.get("app", ""), top.get("method", ""), params


def parse_request(app: object, method: object, params: object, *, expected_app: str) -> OracleRequest:
    """Validate app, method and params (JSON values or query strings) into an OracleRequest."""
    if app != expected_app:
        raise BadRequest(f"unknown app {str(app)[:40]!r}: this oracle serves {expected_app!r}")
    if not isinstance(method, str) or method not in METHOD_PARAMS:
        raise BadRequest(f"unknown method {str(method)[:40]!r}: use one of {', '.join(METHOD_PARAMS)}")
    if not isinstance(params, Mapping):
        raise BadRequest("params must be an object")
    missing = [p for p in METHOD_PARAMS[method] if params.get(p) in (None, "")]
    if missing:
        raise BadRequest(f"missing params for {method}: {', '.join(missing)}")
    return OracleRequest(
        method=method,
        party_a=_param_address(params["partyA"], "partyA"),
        party_b=_param_address(params["partyB"], "partyB") if "partyB" in METHOD_PARAMS[method] else None,
        chain_id=_param_int(params["chainId"], "chainId"),
        symmio=_param_address(params["symmio"], "symmio"),
        symbol_id=_param_int(params["symbolId"], "symbolId") if "symbolId" in METHOD_PARAMS[method] else None,
    )


def _param_address(value: object, name: str) -> str:
    if not (isinstance(value, str) and value.strip().startswith("0x") and is_address(value.strip().lower())):
        raise BadRequest(f"{name} must be a 0x-prefixed 20-byte address")
    return str(to_checksum_address(value.strip().lower()))


def _param_int(value: object, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) < 40:
        n = int(value.strip())
    else:
        raise BadRequest(f"{name} must be a non-negative integer")
    if n < 0 or n > UINT256_MAX:
        raise BadRequest(f"{name} is out of range")
    return n


def encode(sig: AnySig) -> dict[str, Any]:
    """The success envelope for a signature struct; uPnL and price as decimal strings of wei."""
    values: dict[str, str]
    if isinstance(sig, PairUpnlAndPriceSig):
        values = {"uPnlA": str(sig.upnl_party_a), "uPnlB": str(sig.upnl_party_b), "price": str(sig.price)}
    elif isinstance(sig, SingleUpnlAndPriceSig):
        values = {"uPnl": str(sig.upnl), "price": str(sig.price)}
    else:
        values = {"uPnl": str(sig.upnl)}
    return {
        "success": True,
        "result": {
            "reqId": "0x" + sig.req_id.hex(),
            "data": {"timestamp": sig.timestamp, "init": {"nonceAddress": sig.sigs.nonce}, "result": values},
            "signatures": [{"owner": sig.sigs.owner, "signature": f"0x{sig.sigs.signature:064x}"}],
            "nodeSignature": "0x" + sig.gateway_signature.hex(),
        },
    }


def encode_error(message: str) -> dict[str, Any]:
    return {"success": False, "error": {"message": message}}
