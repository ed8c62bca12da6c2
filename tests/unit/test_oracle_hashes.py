"""Packed hash layouts of chain.md §6 and the signer's struct tuples."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak, to_bytes

from solver.oracle import hashes, schnorr
from solver.oracle.signer import OracleSigner

pytestmark = pytest.mark.unit

DIAMOND = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
PARTY_A = "0xd8058efe0198ae9dD7D563e1b4938Dcbc86A1F81"
PARTY_B = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
REQ = b"\xaa" * 32


def u256(v: int) -> bytes:
    return v.to_bytes(32, "big")


def i256(v: int) -> bytes:
    return v.to_bytes(32, "big", signed=True)


def addr(a: str) -> bytes:
    return to_bytes(hexstr=a)


def test_send_quote_layout() -> None:
    expected = keccak(
        u256(7)
        + REQ
        + addr(DIAMOND)
        + addr(PARTY_A)
        + u256(3)
        + i256(-5)
        + u256(1)
        + u256(60_000)
        + u256(99)
        + u256(31337)
    )
    got = hashes.single_upnl_and_price_hash(
        muon_app_id=7,
        req_id=REQ,
        diamond=DIAMOND,
        party_a=PARTY_A,
        nonce_a=3,
        upnl=-5,
        symbol_id=1,
        price=60_000,
        timestamp=99,
        chain_id=31337,
    )
    assert got == expected


def test_lock_quote_layout() -> None:
    expected = keccak(
        u256(7) + REQ + addr(DIAMOND) + addr(PARTY_B) + addr(PARTY_A) + u256(4) + i256(-1) + u256(99) + u256(31337)
    )
    got = hashes.party_b_upnl_hash(
        muon_app_id=7,
        req_id=REQ,
        diamond=DIAMOND,
        party_b=PARTY_B,
        party_a=PARTY_A,
        nonce_b=4,
        upnl=-1,
        timestamp=99,
        chain_id=31337,
    )
    assert got == expected


def test_pair_layout_puts_party_b_first() -> None:
    expected = keccak(
        u256(7)
        + REQ
        + addr(DIAMOND)
        + addr(PARTY_B)
        + addr(PARTY_A)
        + u256(4)
        + u256(3)
        + i256(-2)
        + i256(10)
        + u256(1)
        + u256(60_000)
        + u256(99)
        + u256(31337)
    )
    got = hashes.pair_upnl_and_price_hash(
        muon_app_id=7,
        req_id=REQ,
        diamond=DIAMOND,
        party_b=PARTY_B,
        party_a=PARTY_A,
        nonce_b=4,
        nonce_a=3,
        upnl_party_b=-2,
        upnl_party_a=10,
        symbol_id=1,
        price=60_000,
        timestamp=99,
        chain_id=31337,
    )
    assert got == expected


def test_signer_output_verifies_and_tuples_follow_struct_order() -> None:
    signer = OracleSigner.generate(muon_app_id=7)
    sig = signer.pair_upnl_and_price(
        diamond=DIAMOND,
        chain_id=31337,
        party_b=PARTY_B,
        party_a=PARTY_A,
        nonce_b=4,
        nonce_a=3,
        upnl_party_b=-2,
        upnl_party_a=10,
        symbol_id=1,
        price=60_000,
        timestamp=99,
        req_id=REQ,
    )
    t = sig.as_tuple()
    assert t[:5] == (REQ, 99, 10, -2, 60_000)  # struct order: upnlPartyA before upnlPartyB
    assert t[6] == (sig.sigs.signature, signer.owner, sig.sigs.nonce)
    msg = hashes.pair_upnl_and_price_hash(
        muon_app_id=7,
        req_id=REQ,
        diamond=DIAMOND,
        party_b=PARTY_B,
        party_a=PARTY_A,
        nonce_b=4,
        nonce_a=3,
        upnl_party_b=-2,
        upnl_party_a=10,
        symbol_id=1,
        price=60_000,
        timestamp=99,
        chain_id=31337,
    )
    assert schnorr.verify(signer.public_key, msg, schnorr.Signature(sig.sigs.signature, sig.sigs.nonce))
    # Gateway: a personal_sign of the 32-byte hash, v in {27, 28}.
    assert sig.gateway_signature[64] in (27, 28)
    recovered = Account.recover_message(encode_defunct(primitive=msg), signature=sig.gateway_signature)
    assert recovered == signer.gateway_address


def test_single_sigs_default_timestamp_and_random_req_id() -> None:
    signer = OracleSigner.generate()
    a = signer.party_b_upnl(diamond=DIAMOND, chain_id=1, party_b=PARTY_B, party_a=PARTY_A, nonce_b=0, upnl=0)
    b = signer.party_b_upnl(diamond=DIAMOND, chain_id=1, party_b=PARTY_B, party_a=PARTY_A, nonce_b=0, upnl=0)
    assert len(a.req_id) == 32
    assert a.req_id != b.req_id
    assert a.timestamp > 1_700_000_000
    assert len(a.as_tuple()) == 5


def test_from_seed_is_deterministic() -> None:
    a, b = OracleSigner.from_seed("dev"), OracleSigner.from_seed("dev")
    assert (a.public_key, a.gateway_address) == (b.public_key, b.gateway_address)
    rebuilt = OracleSigner(a.schnorr_secret, a.gateway_private_key, a.muon_app_id)
    assert rebuilt.gateway_address == a.gateway_address
