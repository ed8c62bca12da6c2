"""Schnorr signatures on secp256k1, in the form the Muon verifier in Symmio checks (chain.md §6).

Public key `(x, parity)` with `x < HALF_Q`. Signing hash `m` with secret `d`: random `k`,
`nonce = address(k·G)`, `e = keccak256(abi.encodePacked(uint256 x, uint8 parity, uint256 m,
address nonce))`, `s = (k − d·e) mod Q`. The contract accepts iff
`ecrecover(Q − x·s, 27 + parity, x, e·x) == nonce`, i.e. `s·G + e·P == k·G`. Pure: no I/O.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from eth_abi.packed import encode_packed
from eth_keys.datatypes import PrivateKey
from eth_keys.datatypes import PublicKey as EcPublicKey
from eth_keys.datatypes import Signature as EcSignature
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from eth_utils.exceptions import ValidationError

Q = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # secp256k1 group order
HALF_Q = (Q >> 1) + 1


@dataclass(frozen=True)
class PublicKey:
    x: int
    parity: int  # parity of y: 0 even, 1 odd

    def as_tuple(self) -> tuple[int, int]:
        """ABI tuple of `PublicKey { uint256 x; uint8 parity; }`."""
        return (self.x, self.parity)


@dataclass(frozen=True)
class Signature:
    s: int  # SchnorrSign.signature
    nonce: str  # SchnorrSign.nonce: checksum address of k·G


def _point(scalar: int) -> EcPublicKey:
    return PrivateKey(scalar.to_bytes(32, "big")).public_key


def _as_int(msg_hash: bytes | int) -> int:
    if isinstance(msg_hash, int):
        return msg_hash
    if len(msg_hash) != 32:
        raise ValueError("message hash must be 32 bytes")
    return int.from_bytes(msg_hash, "big")


def public_key(secret: int) -> PublicKey:
    """Public key of `secret`; raises when it is not usable by the verifier (x >= HALF_Q)."""
    if not 0 < secret < Q:
        raise ValueError("secret must be in [1, Q-1]")
    raw = _point(secret).to_bytes()
    x, y = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    if x >= HALF_Q:
        raise ValueError("public key x >= HALF_Q: the verifier cannot use this secret; use generate_secret()")
    return PublicKey(x=x, parity=y & 1)


def is_usable_secret(secret: int) -> bool:
    try:
        public_key(secret)
    except ValueError:
        return False
    return True


def generate_secret(randbelow: Callable[[int], int] = secrets.randbelow) -> int:
    """A random secret whose public key has x < HALF_Q (about half of all keys qualify)."""
    while True:
        secret = 1 + randbelow(Q - 1)
        if is_usable_secret(secret):
            return secret


def derive_secret(seed: bytes) -> int:
    """Deterministic usable secret from a seed (development keys only)."""
    counter = 0
    while True:
        secret = int.from_bytes(keccak(seed + counter.to_bytes(4, "big")), "big") % Q
        if secret and is_usable_secret(secret):
            return secret
        counter += 1


def challenge(key: PublicKey, msg_hash: bytes | int, nonce: str) -> int:
    packed = encode_packed(["uint256", "uint8", "uint256", "address"], [key.x, key.parity, _as_int(msg_hash), nonce])
    return int.from_bytes(keccak(packed), "big")


def sign(secret: int, msg_hash: bytes | int, *, k: int | None = None) -> Signature:
    """Sign a 32-byte hash. `k` (the nonce scalar) is random unless given (tests only)."""
    key = public_key(secret)
    m = _as_int(msg_hash)
    if m == 0:
        raise ValueError("the verifier rejects a zero message hash")
    while True:
        nonce_scalar = k if k is not None else 1 + secrets.randbelow(Q - 1)
        nonce = _point(nonce_scalar).to_checksum_address()
        e = challenge(key, m, nonce)
        s = (nonce_scalar - secret * e) % Q
        if s != 0:  # the verifier rejects s == 0
            return Signature(s=s, nonce=nonce)
        if k is not None:
            raise ValueError("this k gives s == 0; pick another")


def verify(key: PublicKey, msg_hash: bytes | int, sig: Signature) -> bool:
    """The contract's check, with the same ecrecover trick (so a pass here means a pass there)."""
    m = _as_int(msg_hash)
    if not (0 < key.x < HALF_Q and key.parity in (0, 1)):
        return False
    if not (0 < sig.s < Q and m > 0 and int(sig.nonce, 16) != 0):
        return False
    e = challenge(key, m, sig.nonce)
    digest = (Q - key.x * sig.s % Q).to_bytes(32, "big")
    try:
        recovered = EcSignature(vrs=(key.parity, key.x, e * key.x % Q)).recover_public_key_from_msg_hash(digest)
    except (BadSignature, ValidationError):
        return False
    return recovered.to_checksum_address() == to_checksum_address(sig.nonce)


def key_address(key: PublicKey) -> str:
    """Ethereum address of the public key point (what Muon puts in SchnorrSign.owner)."""
    prefix = b"\x03" if key.parity else b"\x02"
    return EcPublicKey.from_compressed_bytes(prefix + key.x.to_bytes(32, "big")).to_checksum_address()
