"""Request/response bodies of the auth routes (http-api.md §1)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    account_address: str = Field(max_length=64)
    nonce: str = Field(max_length=128)
    issued_at: str = Field(max_length=64)
    expiration_time: str = Field(max_length=64)
    signature: str = Field(max_length=4096)
    sign_type: str | None = Field(default=None, max_length=32)


class NonceOut(BaseModel):
    nonce: str


class TokenOut(BaseModel):
    access_token: str


class VerifyOut(BaseModel):
    successful: bool
    message: str
