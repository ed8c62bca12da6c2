"""Auth routes: GET /nonce/{account}, POST /login, POST /auth/verify."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get, post
from litestar.params import Parameter

from solver.auth.guard import TokenAuth
from solver.auth.schemas import LoginBody, NonceOut, TokenOut, VerifyOut
from solver.auth.service import AuthService, LoginRequest
from solver.core.errors import SolverError
from solver.web.paths import original_path


@get("/nonce/{account:str}", summary="A single-use login nonce for a sub-account", tags=["auth"])
async def get_nonce(account: str, auth: AuthService) -> NonceOut:
    return NonceOut(nonce=await auth.new_nonce(account))


@post("/login", status_code=200, summary="SIWE login: returns a Bearer token", tags=["auth"])
async def login(data: LoginBody, request: Request[Any, Any, Any], auth: AuthService) -> TokenOut:
    token = await auth.login(
        LoginRequest(
            account_address=data.account_address,
            nonce=data.nonce,
            issued_at=data.issued_at,
            expiration_time=data.expiration_time,
            signature=data.signature,
            sign_type=data.sign_type,
            origin=request.headers.get("origin"),
            referer=request.headers.get("referer"),
            original_path=original_path(request.scope),
            routed_path=request.scope["path"],
        )
    )
    return TokenOut(access_token=token)


@post("/auth/verify", status_code=200, summary="Check a Bearer token for an account", tags=["auth"])
async def verify(
    request: Request[Any, Any, Any],
    token_auth: TokenAuth,
    party_a_address: Annotated[str | None, Parameter(query="party_a_address", max_length=64)] = None,
) -> VerifyOut:
    try:
        principal = token_auth.principal_from_header(request.headers.get("authorization"))
    except SolverError as exc:
        return VerifyOut(successful=False, message=exc.message)
    if party_a_address is not None and principal.account.lower() != party_a_address.lower():
        return VerifyOut(successful=False, message="The token was issued for another account.")
    return VerifyOut(successful=True, message=f"Token valid for {principal.account}.")


def auth_routes() -> list[Any]:
    return [get_nonce, login, verify]
