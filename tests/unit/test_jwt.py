"""JWT issue/verify: claims, expiry on the injected clock, refused algorithms and keys."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import jwt as pyjwt
import pytest
from pydantic import SecretStr

from solver.auth.jwt import JwtCodec
from solver.core.clock import FixedClock
from solver.core.errors import ErrorCode, SolverError
from solver.settings import AuthSettings

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret-0123456789abcdef0123456789"
ACCOUNT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
NOW = 1_760_000_000.0


def codec(secret: str = SECRET, at: float = NOW) -> tuple[JwtCodec, FixedClock]:
    clock = FixedClock(at)
    return JwtCodec(AuthSettings(jwt_secret=SecretStr(secret)), clock), clock


def test_round_trip_and_exp_not_before_signed_expiry() -> None:
    c, _ = codec()
    expires = datetime.fromtimestamp(NOW + 3600.5, UTC)
    token = c.issue(account=ACCOUNT, owner=OWNER, expires_at=expires)
    p = c.verify(token)
    assert (p.account, p.owner) == (ACCOUNT, OWNER)
    assert p.exp >= expires.timestamp()
    assert len(p.jti) == 32


def test_expired_token_refused() -> None:
    c, clock = codec()
    token = c.issue(account=ACCOUNT, owner=OWNER, expires_at=datetime.fromtimestamp(NOW + 60, UTC))
    clock.advance(61)
    with pytest.raises(SolverError) as err:
        c.verify(token)
    assert err.value.code is ErrorCode.TOKEN_EXPIRED


def test_wrong_key_refused() -> None:
    c, _ = codec()
    other, _ = codec(secret="another-secret-0123456789abcdef012345678")
    token = other.issue(account=ACCOUNT, owner=OWNER, expires_at=datetime.fromtimestamp(NOW + 60, UTC))
    with pytest.raises(SolverError) as err:
        c.verify(token)
    assert err.value.code is ErrorCode.INVALID_TOKEN


def _b64(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_alg_none_refused() -> None:
    c, _ = codec()
    claims = {"sub": ACCOUNT, "owner": OWNER, "iat": int(NOW), "exp": int(NOW) + 60, "jti": "x", "iss": "symmio-solver"}
    token = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + "."
    with pytest.raises(SolverError) as err:
        c.verify(token)
    assert err.value.code is ErrorCode.INVALID_TOKEN


def test_tampered_payload_refused() -> None:
    c, _ = codec()
    token = c.issue(account=ACCOUNT, owner=OWNER, expires_at=datetime.fromtimestamp(NOW + 60, UTC))
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["sub"] = OWNER
    with pytest.raises(SolverError):
        c.verify(f"{head}.{_b64(claims)}.{sig}")


def test_missing_claims_refused() -> None:
    c, _ = codec()
    token = pyjwt.encode({"sub": ACCOUNT, "exp": int(NOW) + 60}, SECRET, algorithm="HS256")
    with pytest.raises(SolverError):
        c.verify(token)
