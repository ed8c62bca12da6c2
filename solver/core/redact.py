"""Mask secrets in text bound for logs (solver.core.logging applies it to every handler). Pure.

Two layers:

- **known secrets**: the exact values the process was configured with (signer keys, JWT secret,
  oracle keys, the passwords in the database and Redis URLs; see
  solver.observability.logs.secret_values), masked wherever they appear, in any case, with or
  without a `0x`;
- **shapes** of secrets nobody registered: 32-byte hex strings (`0x` + 64 hex, or 64 bare hex: a
  private key), JWTs (`eyJ….….…`), the password in `scheme://user:password@host`, the value of an
  `Authorization` header or of a `Bearer`/`Basic` credential, `password=` / `secret=` /
  `api_key=` / `token=` style pairs.

A field whose *name* says secret (`password`, `token`, `private_key`, ...) is masked whole.

A transaction or block hash has the same shape as a private key, so free text loses it too; code
that logs a hash passes it as a field (`extra={"tx_hash": ...}`), and the fields named in
`HASH_FIELDS` skip the shape rule for 32-byte hex (known secrets are still masked there).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
MIN_SECRET_LEN = 8  # shorter registered values would mask ordinary words

# Fields whose 32-byte hex values are hashes by construction (still checked for known secrets).
HASH_FIELDS = frozenset({"tx_hash", "block_hash", "mined_hash", "tx_hashes", "replaced_hash", "topic0"})

_HEX32 = re.compile(r"(?<![0-9a-fA-FxX])(0[xX])?[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@]*:)[^\s@/]+@")
_AUTH_HEADER = re.compile(
    r"""(?ix)
    (authorization ['"]? \s* [:=,] \s* b? ['"]? \s*)   # Authorization: / 'authorization': / (b'authorization', b'
    (?:(?:bearer|basic|token|digest)\s+)?             # the scheme, if any
    [^\s'",)}\]]+                                     # the credential
    """
)
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_KEY_VALUE = re.compile(
    r"""(?ix)
    \b((?:[a-z0-9]+[_-])*(?:password|passwd|pwd|secret|api[_-]?key|apikey|access[_-]?token|auth[_-]?token
        |private[_-]?key|token))
    (['"]? \s* [:=] \s* ['"]?)
    (?!\*\*\*)([^\s'"&,;)}\]]+)
    """
)


_SECRET_NAME = re.compile(
    r"(?i)password|passwd|secret|token|private_?key|signer_?key|api_?key|authorization|credential"
)


def is_secret_name(name: str) -> bool:
    """A field or header name whose value is a secret whatever it looks like."""
    return _SECRET_NAME.search(name) is not None


def _hex_mask(m: re.Match[str]) -> str:
    return (m.group(1) or "") + MASK


class Redactor:
    """`redactor(text)` returns the text with every secret it recognises masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._known: re.Pattern[str] | None = None
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        for raw in secrets:
            value = raw.strip()
            if len(value) < MIN_SECRET_LEN:
                continue
            self._secrets.add(value)
            if value[:2] in ("0x", "0X") and len(value) > MIN_SECRET_LEN + 2:
                self._secrets.add(value[2:])  # the same key without its prefix
        if self._secrets:
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._known = re.compile("|".join(re.escape(s) for s in ordered), re.IGNORECASE)

    def __call__(self, text: str, *, hex_shapes: bool = True) -> str:
        if not text:
            return text
        if self._known is not None:
            text = self._known.sub(MASK, text)
        text = _URL_PASSWORD.sub(r"\1" + MASK + "@", text)
        text = _AUTH_HEADER.sub(r"\1" + MASK, text)
        text = _SCHEME_CREDENTIAL.sub(r"\1 " + MASK, text)
        text = _JWT.sub(MASK, text)
        text = _KEY_VALUE.sub(r"\1\2" + MASK, text)
        if hex_shapes:
            text = _HEX32.sub(_hex_mask, text)
        return text
