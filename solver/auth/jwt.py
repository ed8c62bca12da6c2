"""JWT issue and verification (HS256, secret from config; `alg: none` and others refused)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import jwt

from solver.core.clock import Clock
from solver.core.errors import ErrorCode, SolverError
from solver.settings import AuthSettings

ISSUER = "symmio-solver"


@dataclass(frozen=True, slots=True)
class Principal:
    account: str  # EIP-55 sub-account (partyA)
    owner: str
    jti: str
    exp: int


class JwtCodec:
    def __init__(self, settings: AuthSettings, clock: Clock) -> None:
        self._secret = settings.jwt_secret.get_secret_value()
        self._alg = settings.jwt_algorithm
        self._clock = clock

    def issue(self, *, account: str, owner: str, expires_at: datetime) -> str:
        now = int(self._clock.time())
        # Frontends keep a token until the time they signed: exp is never earlier than that.
        exp = int(expires_at.timestamp()) + (1 if expires_at.microsecond else 0)
        claims = {
            "sub": account,
            "owner": owner,
            "iat": now,
            "exp": exp,
            "jti": uuid.uuid4().hex,
            "iss": ISSUER,
        }
        return jwt.encode(claims, self._secret, algorithm=self._alg)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self._alg],
                issuer=ISSUER,
                options={"require": ["sub", "owner", "exp", "iat", "jti", "iss"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise SolverError(ErrorCode.INVALID_TOKEN) from exc
        # Expiry against the injected clock, not the wall clock inside PyJWT.
        if int(claims["exp"]) <= int(self._clock.time()):
            raise SolverError(ErrorCode.TOKEN_EXPIRED)
        return Principal(
            account=str(claims["sub"]), owner=str(claims["owner"]), jti=str(claims["jti"]), exp=int(claims["exp"])
        )
