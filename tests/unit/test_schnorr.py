"""Schnorr sign/verify of chain.md §6, checked against independent curve arithmetic."""

from __future__ import annotations

import pytest
from eth_keys import keys
from eth_utils import keccak

from solver.oracle import schnorr
from solver.oracle.schnorr import HALF_Q, Q

pytestmark = pytest.mark.unit

# secp256k1, affine arithmetic written out here so the test does not trust the code under test.
P = 2**256 - 2**32 - 977
G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)
Point = tuple[int, int] | None


def _add(a: Point, b: Point) -> Point:
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0:
        return None
    tangent = a == b
    lam = 3 * a[0] * a[0] * pow(2 * a[1], -1, P) % P if tangent else (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return (x, (lam * (a[0] - x) - a[1]) % P)


def _mul(k: int, point: Point) -> Point:
    result: Point = None
    while k:
        if k & 1:
            result = _add(result, point)
        point = _add(point, point)
        k >>= 1
    return result


def _address(point: Point) -> str:
    assert point is not None
    raw = point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")
    return keys.PublicKey(raw).to_checksum_address()


MSG = keccak(b"symmio")


@pytest.fixture(scope="module")
def secret() -> int:
    return schnorr.generate_secret()


def test_generated_key_is_usable_and_parity_matches_y(secret: int) -> None:
    key = schnorr.public_key(secret)
    point = _mul(secret, G)
    assert point is not None
    assert key.x == point[0] < HALF_Q
    assert key.parity == point[1] & 1


def test_public_key_refuses_x_above_half_q() -> None:
    unusable = next(d for d in range(2, 200) if not schnorr.is_usable_secret(d))
    with pytest.raises(ValueError, match="HALF_Q"):
        schnorr.public_key(unusable)


def test_derived_secret_is_deterministic_and_usable() -> None:
    assert schnorr.derive_secret(b"seed") == schnorr.derive_secret(b"seed")
    assert schnorr.derive_secret(b"seed") != schnorr.derive_secret(b"other")
    assert schnorr.is_usable_secret(schnorr.derive_secret(b"seed"))


def test_signature_satisfies_the_schnorr_equation(secret: int) -> None:
    """s·G + e·P == k·G, and the nonce is the address of k·G."""
    k = 0x1234567890ABCDEF
    sig = schnorr.sign(secret, MSG, k=k)
    key = schnorr.public_key(secret)
    assert sig.nonce == _address(_mul(k, G))
    e = schnorr.challenge(key, MSG, sig.nonce)
    assert _add(_mul(sig.s, G), _mul(e, _mul(secret, G))) == _mul(k, G)


@pytest.mark.parametrize("n", range(5))
def test_round_trip(secret: int, n: int) -> None:
    msg = keccak(n.to_bytes(4, "big"))
    sig = schnorr.sign(secret, msg)
    assert schnorr.verify(schnorr.public_key(secret), msg, sig)
    assert schnorr.verify(schnorr.public_key(secret), int.from_bytes(msg, "big"), sig)


def test_nonces_are_random(secret: int) -> None:
    assert schnorr.sign(secret, MSG).nonce != schnorr.sign(secret, MSG).nonce


def test_tampering_fails(secret: int) -> None:
    key = schnorr.public_key(secret)
    sig = schnorr.sign(secret, MSG)
    other_key = schnorr.public_key(schnorr.generate_secret())
    assert not schnorr.verify(key, keccak(b"other"), sig)
    assert not schnorr.verify(key, MSG, schnorr.Signature(sig.s ^ 1, sig.nonce))
    assert not schnorr.verify(key, MSG, schnorr.Signature((sig.s + 1) % Q, sig.nonce))
    assert not schnorr.verify(key, MSG, schnorr.Signature(sig.s, "0x" + "11" * 20))
    assert not schnorr.verify(other_key, MSG, sig)
    assert not schnorr.verify(schnorr.PublicKey(key.x, 1 - key.parity), MSG, sig)


def test_verifier_rejects_out_of_range_inputs(secret: int) -> None:
    key = schnorr.public_key(secret)
    sig = schnorr.sign(secret, MSG)
    assert not schnorr.verify(key, MSG, schnorr.Signature(0, sig.nonce))
    assert not schnorr.verify(key, MSG, schnorr.Signature(sig.s + Q, sig.nonce))
    assert not schnorr.verify(key, MSG, schnorr.Signature(sig.s, "0x" + "00" * 20))
    assert not schnorr.verify(schnorr.PublicKey(key.x + HALF_Q, key.parity), MSG, sig)
    assert not schnorr.verify(key, 0, sig)
    with pytest.raises(ValueError):
        schnorr.sign(secret, 0)


def test_key_address_is_the_public_key_point_address(secret: int) -> None:
    assert schnorr.key_address(schnorr.public_key(secret)) == _address(_mul(secret, G))
