"""Local Muon-compatible signer: the Schnorr key and the gateway key in one object.

Produces the signature structs of chain.md §2 as dataclasses; `.as_tuple()` gives the ABI tuple
in field order, ready for a contract call. Used by the dev oracle, the devnet and the tests.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from eth_keys.datatypes import PrivateKey
from eth_utils.crypto import keccak

from solver.oracle import hashes, schnorr

SchnorrTuple = tuple[int, str, str]


@dataclass(frozen=True)
class SchnorrSign:
    signature: int
    owner: str
    nonce: str

    def as_tuple(self) -> SchnorrTuple:
        return (self.signature, self.owner, self.nonce)


@dataclass(frozen=True)
class SingleUpnlSig:
    req_id: bytes
    timestamp: int
    upnl: int
    gateway_signature: bytes
    sigs: SchnorrSign

    def as_tuple(self) -> tuple[bytes, int, int, bytes, SchnorrTuple]:
        return (self.req_id, self.timestamp, self.upnl, self.gateway_signature, self.sigs.as_tuple())


@dataclass(frozen=True)
class SingleUpnlAndPriceSig:
    req_id: bytes
    timestamp: int
    upnl: int
    price: int
    gateway_signature: bytes
    sigs: SchnorrSign

    def as_tuple(self) -> tuple[bytes, int, int, int, bytes, SchnorrTuple]:
        return (self.req_id, self.timestamp, self.upnl, self.price, self.gateway_signature, self.sigs.as_tuple())


@dataclass(frozen=True)
class PairUpnlSig:
    req_id: bytes
    timestamp: int
    upnl_party_a: int
    upnl_party_b: int
    gateway_signature: bytes
    sigs: SchnorrSign

    def as_tuple(self) -> tuple[bytes, int, int, int, bytes, SchnorrTuple]:
        return (
            self.req_id,
            self.timestamp,
            self.upnl_party_a,
            self.upnl_party_b,
            self.gateway_signature,
            self.sigs.as_tuple(),
        )


@dataclass(frozen=True)
class PairUpnlAndPriceSig:
    req_id: bytes
    timestamp: int
    upnl_party_a: int
    upnl_party_b: int
    price: int
    gateway_signature: bytes
    sigs: SchnorrSign

    def as_tuple(self) -> tuple[bytes, int, int, int, int, bytes, SchnorrTuple]:
        return (
            self.req_id,
            self.timestamp,
            self.upnl_party_a,
            self.upnl_party_b,
            self.price,
            self.gateway_signature,
            self.sigs.as_tuple(),
        )


def _now() -> int:
    return int(time.time())


class OracleSigner:
    """Signs the oracle messages of chain.md §6 for one (diamond, chain) pair at a time.

    Every method takes the values the contract will hash; `timestamp` defaults to now and
    `req_id` to 32 random bytes.
    """

    def __init__(self, schnorr_secret: int, gateway_private_key: bytes | str, muon_app_id: int) -> None:
        self._secret = schnorr_secret
        self.public_key = schnorr.public_key(schnorr_secret)  # validates the secret
        self.owner = schnorr.key_address(self.public_key)
        self._gateway = PrivateKey(_key_bytes(gateway_private_key))
        self.gateway_address: str = self._gateway.public_key.to_checksum_address()
        self.muon_app_id = muon_app_id

    @classmethod
    def generate(cls, muon_app_id: int = 0) -> OracleSigner:
        return cls(schnorr.generate_secret(), os.urandom(32), muon_app_id)

    @classmethod
    def from_seed(cls, seed: str, muon_app_id: int = 0) -> OracleSigner:
        """Deterministic keys (development): the same seed always gives the same oracle."""
        gateway = keccak(b"gateway:" + seed.encode())
        return cls(schnorr.derive_secret(b"schnorr:" + seed.encode()), gateway, muon_app_id)

    @property
    def schnorr_secret(self) -> int:
        return self._secret

    @property
    def gateway_private_key(self) -> str:
        return "0x" + self._gateway.to_bytes().hex()

    # ---- raw ----------------------------------------------------------------------------------
    def sign_hash(self, msg_hash: bytes) -> tuple[SchnorrSign, bytes]:
        """Schnorr signature and gateway signature (personal_sign of the 32-byte hash)."""
        sig = schnorr.sign(self._secret, msg_hash)
        return SchnorrSign(signature=sig.s, owner=self.owner, nonce=sig.nonce), self.gateway_sign(msg_hash)

    def gateway_sign(self, msg_hash: bytes) -> bytes:
        digest = keccak(b"\x19Ethereum Signed Message:\n32" + msg_hash)
        v, r, s = self._gateway.sign_msg_hash(digest).vrs
        return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + v])

    # ---- the signed messages ------------------------------------------------------------------
    def single_upnl_and_price(
        self,
        *,
        diamond: str,
        chain_id: int,
        party_a: str,
        nonce_a: int,
        upnl: int,
        symbol_id: int,
        price: int,
        timestamp: int | None = None,
        req_id: bytes | None = None,
    ) -> SingleUpnlAndPriceSig:
        """For sendQuote / sendQuoteWithAffiliate."""
        ts, rid = timestamp if timestamp is not None else _now(), req_id or os.urandom(32)
        h = hashes.single_upnl_and_price_hash(
            muon_app_id=self.muon_app_id,
            req_id=rid,
            diamond=diamond,
            party_a=party_a,
            nonce_a=nonce_a,
            upnl=upnl,
            symbol_id=symbol_id,
            price=price,
            timestamp=ts,
            chain_id=chain_id,
        )
        sigs, gw = self.sign_hash(h)
        return SingleUpnlAndPriceSig(rid, ts, upnl, price, gw, sigs)

    def party_b_upnl(
        self,
        *,
        diamond: str,
        chain_id: int,
        party_b: str,
        party_a: str,
        nonce_b: int,
        upnl: int,
        timestamp: int | None = None,
        req_id: bytes | None = None,
    ) -> SingleUpnlSig:
        """For lockQuote and deallocateForPartyB (partyB's upnl against this partyA)."""
        ts, rid = timestamp if timestamp is not None else _now(), req_id or os.urandom(32)
        h = hashes.party_b_upnl_hash(
            muon_app_id=self.muon_app_id,
            req_id=rid,
            diamond=diamond,
            party_b=party_b,
            party_a=party_a,
            nonce_b=nonce_b,
            upnl=upnl,
            timestamp=ts,
            chain_id=chain_id,
        )
        sigs, gw = self.sign_hash(h)
        return SingleUpnlSig(rid, ts, upnl, gw, sigs)

    def party_a_upnl(
        self,
        *,
        diamond: str,
        chain_id: int,
        party_a: str,
        nonce_a: int,
        upnl: int,
        timestamp: int | None = None,
        req_id: bytes | None = None,
    ) -> SingleUpnlSig:
        """For deallocate."""
        ts, rid = timestamp if timestamp is not None else _now(), req_id or os.urandom(32)
        h = hashes.party_a_upnl_hash(
            muon_app_id=self.muon_app_id,
            req_id=rid,
            diamond=diamond,
            party_a=party_a,
            nonce_a=nonce_a,
            upnl=upnl,
            timestamp=ts,
            chain_id=chain_id,
        )
        sigs, gw = self.sign_hash(h)
        return SingleUpnlSig(rid, ts, upnl, gw, sigs)

    def pair_upnl_and_price(
        self,
        *,
        diamond: str,
        chain_id: int,
        party_b: str,
        party_a: str,
        nonce_b: int,
        nonce_a: int,
        upnl_party_b: int,
        upnl_party_a: int,
        symbol_id: int,
        price: int,
        timestamp: int | None = None,
        req_id: bytes | None = None,
    ) -> PairUpnlAndPriceSig:
        """For openPosition, lockAndOpenQuote and fillCloseRequest."""
        ts, rid = timestamp if timestamp is not None else _now(), req_id or os.urandom(32)
        h = hashes.pair_upnl_and_price_hash(
            muon_app_id=self.muon_app_id,
            req_id=rid,
            diamond=diamond,
            party_b=party_b,
            party_a=party_a,
            nonce_b=nonce_b,
            nonce_a=nonce_a,
            upnl_party_b=upnl_party_b,
            upnl_party_a=upnl_party_a,
            symbol_id=symbol_id,
            price=price,
            timestamp=ts,
            chain_id=chain_id,
        )
        sigs, gw = self.sign_hash(h)
        return PairUpnlAndPriceSig(rid, ts, upnl_party_a, upnl_party_b, price, gw, sigs)

    def pair_upnl(
        self,
        *,
        diamond: str,
        chain_id: int,
        party_b: str,
        party_a: str,
        nonce_b: int,
        nonce_a: int,
        upnl_party_b: int,
        upnl_party_a: int,
        timestamp: int | None = None,
        req_id: bytes | None = None,
    ) -> PairUpnlSig:
        ts, rid = timestamp if timestamp is not None else _now(), req_id or os.urandom(32)
        h = hashes.pair_upnl_hash(
            muon_app_id=self.muon_app_id,
            req_id=rid,
            diamond=diamond,
            party_b=party_b,
            party_a=party_a,
            nonce_b=nonce_b,
            nonce_a=nonce_a,
            upnl_party_b=upnl_party_b,
            upnl_party_a=upnl_party_a,
            timestamp=ts,
            chain_id=chain_id,
        )
        sigs, gw = self.sign_hash(h)
        return PairUpnlSig(rid, ts, upnl_party_a, upnl_party_b, gw, sigs)


def _key_bytes(key: bytes | str) -> bytes:
    if isinstance(key, str):
        key = bytes.fromhex(key.removeprefix("0x"))
    if len(key) != 32:
        raise ValueError("gateway private key must be 32 bytes")
    return key
