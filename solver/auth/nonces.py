"""SIWE login nonces: single use, bound to one account, expiring (http-api.md §1).

Stored in Redis as `{prefix}nonce:{nonce}` -> lowercased account, with a TTL. Consuming is one
GETDEL, so two concurrent logins with the same nonce cannot both succeed, and a nonce is spent
whether or not the login that presents it succeeds.
"""

from __future__ import annotations

import re
import secrets
import string

import redis.asyncio as aioredis

from solver.core.redis_keys import login_nonce

# Letters and digits only: a browser SIWE library rejects anything else. 24 characters of
# 62 symbols is ~143 bits.
ALPHABET = string.ascii_letters + string.digits
NONCE_LENGTH = 24
MIN_NONCE_LENGTH = 8  # what the spec allows clients to expect; ours are always NONCE_LENGTH
MAX_NONCE_LENGTH = 64
_NONCE_RE = re.compile(rf"[A-Za-z0-9]{{{MIN_NONCE_LENGTH},{MAX_NONCE_LENGTH}}}")
_ACCOUNT_RE = re.compile(r"0x[0-9a-fA-F]{40}")


def is_valid_nonce(nonce: object) -> bool:
    return isinstance(nonce, str) and _NONCE_RE.fullmatch(nonce) is not None


def _account_key(account: str) -> str:
    if not isinstance(account, str) or _ACCOUNT_RE.fullmatch(account) is None:
        raise ValueError("account must be a 0x-prefixed 20-byte hex address")
    return account.lower()


class NonceStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, ttl_s: int) -> None:
        if ttl_s < 1:
            raise ValueError("ttl_s must be at least 1 second")
        self._redis = redis
        self._prefix = prefix
        self._ttl_s = ttl_s

    async def issue(self, account: str) -> str:
        """A fresh nonce bound to `account` (any case), valid for `ttl_s` seconds."""
        bound = _account_key(account)
        while True:
            nonce = "".join(secrets.choice(ALPHABET) for _ in range(NONCE_LENGTH))
            # NX: never overwrite a live nonce (a collision is astronomically unlikely, but
            # overwriting would silently rebind someone else's nonce).
            if await self._redis.set(login_nonce(self._prefix, nonce), bound, nx=True, ex=self._ttl_s):
                return nonce

    async def consume(self, nonce: str, account: str) -> bool:
        """Spend `nonce`; True only if it existed, had not expired and was issued for `account`.

        Malformed input is rejected before touching Redis (nothing to spend).
        """
        if not is_valid_nonce(nonce):
            return False
        try:
            expected = _account_key(account)
        except ValueError:
            expected = None  # still spend the nonce: a failed login consumes it too
        stored = await self._redis.getdel(login_nonce(self._prefix, nonce))
        if stored is None or expected is None:
            return False
        bound = stored.decode() if isinstance(stored, bytes) else str(stored)
        return secrets.compare_digest(bound, expected)
