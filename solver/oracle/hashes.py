"""The message hashes the oracle signs: keccak256(abi.encodePacked(...)) of chain.md §6. Pure.

`req_id` is packed as raw bytes, `diamond` is the Symmio address, `chain_id` the chain's id.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi.packed import encode_packed
from eth_utils.crypto import keccak


def _hash(types: Sequence[str], values: Sequence[object]) -> bytes:
    return keccak(encode_packed(list(types), list(values)))


def single_upnl_and_price_hash(
    *,
    muon_app_id: int,
    req_id: bytes,
    diamond: str,
    party_a: str,
    nonce_a: int,
    upnl: int,
    symbol_id: int,
    price: int,
    timestamp: int,
    chain_id: int,
) -> bytes:
    """sendQuote / sendQuoteWithAffiliate (SingleUpnlAndPriceSig)."""
    return _hash(
        ["uint256", "bytes", "address", "address", "uint256", "int256", "uint256", "uint256", "uint256", "uint256"],
        [muon_app_id, req_id, diamond, party_a, nonce_a, upnl, symbol_id, price, timestamp, chain_id],
    )


def party_b_upnl_hash(
    *,
    muon_app_id: int,
    req_id: bytes,
    diamond: str,
    party_b: str,
    party_a: str,
    nonce_b: int,
    upnl: int,
    timestamp: int,
    chain_id: int,
) -> bytes:
    """lockQuote, deallocateForPartyB (SingleUpnlSig with partyB's upnl)."""
    return _hash(
        ["uint256", "bytes", "address", "address", "address", "uint256", "int256", "uint256", "uint256"],
        [muon_app_id, req_id, diamond, party_b, party_a, nonce_b, upnl, timestamp, chain_id],
    )


def party_a_upnl_hash(
    *,
    muon_app_id: int,
    req_id: bytes,
    diamond: str,
    party_a: str,
    nonce_a: int,
    upnl: int,
    timestamp: int,
    chain_id: int,
) -> bytes:
    """deallocate (SingleUpnlSig with partyA's upnl)."""
    return _hash(
        ["uint256", "bytes", "address", "address", "uint256", "int256", "uint256", "uint256"],
        [muon_app_id, req_id, diamond, party_a, nonce_a, upnl, timestamp, chain_id],
    )


def pair_upnl_and_price_hash(
    *,
    muon_app_id: int,
    req_id: bytes,
    diamond: str,
    party_b: str,
    party_a: str,
    nonce_b: int,
    nonce_a: int,
    upnl_party_b: int,
    upnl_party_a: int,
    symbol_id: int,
    price: int,
    timestamp: int,
    chain_id: int,
) -> bytes:
    """openPosition, lockAndOpenQuote, fillCloseRequest. partyB comes before partyA."""
    return _hash(
        [
            "uint256",
            "bytes",
            "address",
            "address",
            "address",
            "uint256",
            "uint256",
            "int256",
            "int256",
            "uint256",
            "uint256",
            "uint256",
            "uint256",
        ],
        [
            muon_app_id,
            req_id,
            diamond,
            party_b,
            party_a,
            nonce_b,
            nonce_a,
            upnl_party_b,
            upnl_party_a,
            symbol_id,
            price,
            timestamp,
            chain_id,
        ],
    )


def pair_upnl_hash(
    *,
    muon_app_id: int,
    req_id: bytes,
    diamond: str,
    party_b: str,
    party_a: str,
    nonce_b: int,
    nonce_a: int,
    upnl_party_b: int,
    upnl_party_a: int,
    timestamp: int,
    chain_id: int,
) -> bytes:
    """PairUpnlSig (no symbol, no price); the local contracts do not consume it."""
    return _hash(
        [
            "uint256",
            "bytes",
            "address",
            "address",
            "address",
            "uint256",
            "uint256",
            "int256",
            "int256",
            "uint256",
            "uint256",
        ],
        [
            muon_app_id,
            req_id,
            diamond,
            party_b,
            party_a,
            nonce_b,
            nonce_a,
            upnl_party_b,
            upnl_party_a,
            timestamp,
            chain_id,
        ],
    )
