"""Pure: rebuild the EIP-4361 text a client signed, and parse its timestamps.

The message text is never sent; the server rebuilds it from the body, the Origin and the
path the request arrived on (http-api.md §1). Lines joined by "\n", no trailing newline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

_NONCE = re.compile(r"^[A-Za-z0-9]{8,64}$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True, slots=True)
class SiweFields:
    domain: str
    owner: str  # EIP-55
    account_address: str  # exactly as sent
    uri: str
    chain_id: int
    nonce: str
    issued_at: str  # exactly as sent
    expiration_time: str  # exactly as sent


def build_message(f: SiweFields) -> str:
    return "\n".join(
        [
            f"{f.domain} wants you to sign in with your Ethereum account:",
            f.owner,
            "",
            f"msg: {f.account_address}",
            "",
            f"URI: {f.uri}",
            "Version: 1",
            f"Chain ID: {f.chain_id}",
            f"Nonce: {f.nonce}",
            f"Issued At: {f.issued_at}",
            f"Expiration Time: {f.expiration_time}",
        ]
    )


def is_valid_nonce(nonce: str) -> bool:
    return bool(_NONCE.match(nonce))


def parse_timestamp(text: str) -> datetime | None:
    """RFC 3339 timestamp as clients send it (`2025-08-04T22:19:42.123Z`); None if malformed."""
    if not isinstance(text, str) or not _ISO.match(text):
        return None
    normalized = text.replace("Z", "+00:00")
    # Python <3.11 parsers reject >6 fractional digits; trim nanoseconds, keep the instant.
    m = re.match(r"^(.*\.\d{6})\d+(.*)$", normalized)
    if m:
        normalized = m.group(1) + m.group(2)
    try:
        # astimezone overflows at the ends of the calendar ("0001-01-01T00:00:00+23:59").
        return datetime.fromisoformat(normalized).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def host_of(origin_or_referer: str | None) -> str | None:
    """Hostname (no port, lowercased) of an Origin or Referer header."""
    if not origin_or_referer:
        return None
    m = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://(\[[^\]]+\]|[^/:?#]+)", origin_or_referer.strip())
    if not m:
        return None
    return m.group(1).lower()


def candidate_uris(public_base_url: str, original_path: str, routed_path: str) -> set[str]:
    """The login URIs a client could have signed for the path this request arrived on.

    Bots whose base URL ends in '/' send '//login'; the URI they sign keeps that double slash.
    Behind a proxy the public base (scheme, host and any path prefix the proxy strips) comes
    from config, not from what the server sees.
    """
    base = public_base_url.rstrip("/")
    out = {base + original_path, base + routed_path}
    return {u for u in out if u}
