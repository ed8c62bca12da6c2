"""Login use cases: hand out nonces, verify a SIWE login, issue the token."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct
from eth_utils.address import is_address, to_checksum_address

from solver.auth.jwt import JwtCodec
from solver.auth.nonces import NonceStore
from solver.auth.owners import OwnerResolver
from solver.auth.siwe_message import SiweFields, build_message, candidate_uris, host_of, parse_timestamp
from solver.chain.reader import ChainReader
from solver.core.clock import Clock
from solver.core.errors import ErrorCode, SolverError
from solver.settings import Settings

log = logging.getLogger("solver.auth")


@dataclass(frozen=True, slots=True)
class LoginRequest:
    account_address: str
    nonce: str
    issued_at: str
    expiration_time: str
    signature: str
    sign_type: str | None
    origin: str | None
    referer: str | None
    original_path: str
    routed_path: str


class AuthService:
    def __init__(
        self,
        *,
        settings: Settings,
        nonces: NonceStore,
        owners: OwnerResolver,
        chain: ChainReader,
        jwt: JwtCodec,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._nonces = nonces
        self._owners = owners
        self._chain = chain
        self._jwt = jwt
        self._clock = clock

    async def new_nonce(self, account: str) -> str:
        return await self._nonces.issue(_checksum(account, field="account"))

    async def login(self, req: LoginRequest) -> str:
        account = _checksum(req.account_address)
        sig = _signature_bytes(req.signature)
        # The nonce is consumed first, so any failure below also burns it.
        if not await self._nonces.consume(req.nonce, account):
            raise SolverError(ErrorCode.INVALID_NONCE)

        domain = host_of(req.origin) or host_of(req.referer)
        allowed = [d.lower() for d in self._settings.auth.allowed_domains]
        if domain is None or domain not in allowed:
            raise SolverError(
                ErrorCode.DOMAIN_NOT_ALLOWED,
                f"Login from domain {domain!r} is not allowed." if domain else "Login needs an Origin header.",
            )

        issued = parse_timestamp(req.issued_at)
        expires = parse_timestamp(req.expiration_time)
        if issued is None or expires is None:
            raise SolverError(ErrorCode.VALIDATION, "issued_at and expiration_time must be ISO 8601 timestamps.")
        now = self._clock.now()
        skew = timedelta(seconds=self._settings.auth.clock_skew_s)
        if issued > now + skew:
            raise SolverError(ErrorCode.MESSAGE_NOT_YET_VALID)
        if expires <= now or expires <= issued:
            raise SolverError(ErrorCode.MESSAGE_EXPIRED)
        if expires > now + timedelta(seconds=self._settings.auth.jwt_max_lifetime_s):
            raise SolverError(
                ErrorCode.VALIDATION,
                f"expiration_time may be at most {self._settings.auth.jwt_max_lifetime_s} seconds from now.",
            )

        owner = await self._owners.owner_of(account)
        if owner is None:
            raise SolverError(ErrorCode.UNKNOWN_ACCOUNT)

        uris = candidate_uris(self._settings.auth.public_base_url, req.original_path, req.routed_path)
        erc1271 = (req.sign_type or "").upper() == "ERC4337"
        for uri in sorted(uris):
            text = build_message(
                SiweFields(
                    domain=domain,
                    owner=owner,
                    account_address=req.account_address,
                    uri=uri,
                    chain_id=self._settings.chain.chain_id,
                    nonce=req.nonce,
                    issued_at=req.issued_at,
                    expiration_time=req.expiration_time,
                )
            )
            if await self._signed_by(owner, text, sig, erc1271=erc1271):
                log.info("login ok account=%s owner=%s", account, owner)
                return self._jwt.issue(account=account, owner=owner, expires_at=expires)
        raise SolverError(ErrorCode.INVALID_SIGNATURE)

    async def _signed_by(self, owner: str, text: str, sig: bytes, *, erc1271: bool) -> bool:
        message = encode_defunct(text=text)
        if erc1271:
            digest = _hash_eip191_message(message)
            return await self._chain.is_valid_signature_1271(owner, bytes(digest), sig)
        if len(sig) != 65:
            return False
        try:
            signer = Account.recover_message(message, signature=sig)
        except Exception:  # malformed signature values (bad v, s out of range)
            return False
        return bool(signer.lower() == owner.lower())


def _checksum(address: str, *, field: str = "account_address") -> str:
    if not isinstance(address, str) or not is_address(address.lower()):
        raise SolverError(ErrorCode.VALIDATION, f"{field} must be a 0x-prefixed 20-byte address.")
    return str(to_checksum_address(address.lower()))


def _signature_bytes(signature: str) -> bytes:
    text = signature[2:] if signature.startswith(("0x", "0X")) else signature
    if not text or len(text) > 4096 or len(text) % 2:
        raise SolverError(ErrorCode.VALIDATION, "signature must be 0x-prefixed hex.")
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise SolverError(ErrorCode.VALIDATION, "signature must be 0x-prefixed hex.") from exc
