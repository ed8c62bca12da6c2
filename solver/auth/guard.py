"""Bearer-token guard: every authenticated call is scoped to the token's account."""

from __future__ import annotations

from typing import Any

from litestar import Request

from solver.auth.jwt import JwtCodec, Principal
from solver.core.errors import ErrorCode, SolverError


class TokenAuth:
    def __init__(self, codec: JwtCodec) -> None:
        self._codec = codec

    def principal_from_header(self, header: str | None) -> Principal:
        if not header:
            raise SolverError(ErrorCode.UNAUTHORIZED)
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise SolverError(ErrorCode.UNAUTHORIZED)
        return self._codec.verify(token.strip())


async def provide_principal(request: Request[Any, Any, Any], token_auth: TokenAuth) -> Principal:
    """Litestar dependency `principal` for authenticated routes."""
    return token_auth.principal_from_header(request.headers.get("authorization"))


def require_account(principal: Principal, account: str) -> None:
    """Refuse to act on an account the token was not issued for (case-insensitive)."""
    if principal.account.lower() != account.lower():
        raise SolverError(ErrorCode.FORBIDDEN_ACCOUNT)
