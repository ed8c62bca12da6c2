"""Decoding logs by topic0 (chain.md §3), including both forms of every doubly emitted event."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from hexbytes import HexBytes

from solver.chain.abi import load_abi
from solver.chain.events.decoder import ChainEvent, EventDecoder, event_signature, topic0

pytestmark = pytest.mark.unit

_SEND_QUOTE_ARGS = "address,uint256,address[],uint256,uint8,uint8" + ",uint256" * 9
SPEC_TOPICS = {  # chain.md §3
    f"SendQuote({_SEND_QUOTE_ARGS})": "0x8a17f103c77224ce4d9bab74dad3bd002cd24cf88d2e191e86d18272c8f135dd",
    "LockQuote(address,uint256)": "0xbd146e7cbb5d500e754c322f31ac6fff088d4b1037f7451c55520b9a5ad00cb8",
    "OpenPosition(uint256,address,address,uint256,uint256)": (
        "0xa50f98254710514f60327a4e909cd0be099a62f316299907ef997f3dc4d1cda5"
    ),
    "FillCloseRequest(uint256,address,address,uint256,uint256,uint8,uint256)": (
        "0xfa7483d69b899cf16df47cc736ab853f88135f704980d7d358a9746aead7a321"
    ),
    "Call(address,address,bytes,bool,bytes)": "0x268e99f0b37c8146a6aea7c6af329e3924d9c92c4386be924c2990926d99b661",
}
PARTY_A = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PARTY_B = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
SYMMIO = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
TX = "0x" + "ab" * 32
BLOCK = "0x" + "cd" * 32

# Both forms of each doubly emitted event: (legacy signature, current signature), with values.
OVERLOADS: dict[str, tuple[str, str, list[Any]]] = {
    "RequestToClosePosition": (
        "RequestToClosePosition(address,address,uint256,uint256,uint256,uint8,uint256,uint8)",
        "RequestToClosePosition(address,address,uint256,uint256,uint256,uint8,uint256,uint8,uint256)",
        [PARTY_A, PARTY_B, 7, 61_000 * 10**18, 10**17, 1, 1_900_000_000, 5],
    ),
    "RequestToCancelCloseRequest": (
        "RequestToCancelCloseRequest(address,address,uint256,uint8)",
        "RequestToCancelCloseRequest(address,address,uint256,uint8,uint256)",
        [PARTY_A, PARTY_B, 7, 6],
    ),
    "FillCloseRequest": (
        "FillCloseRequest(uint256,address,address,uint256,uint256,uint8)",
        "FillCloseRequest(uint256,address,address,uint256,uint256,uint8,uint256)",
        [7, PARTY_A, PARTY_B, 10**17, 61_000 * 10**18, 7],
    ),
    "AcceptCancelCloseRequest": (
        "AcceptCancelCloseRequest(uint256,uint8)",
        "AcceptCancelCloseRequest(uint256,uint8,uint256)",
        [7, 4],
    ),
}


@pytest.fixture(scope="module")
def decoder() -> EventDecoder:
    return EventDecoder.symmio()


def _types(signature: str) -> list[str]:
    inner = signature[signature.index("(") + 1 : -1]
    return inner.split(",") if inner else []


def raw_log(signature: str, values: list[Any], *, log_index: int = 3) -> dict[str, Any]:
    return {
        "address": SYMMIO.lower(),
        "topics": [topic0(signature)],
        "data": "0x" + encode(_types(signature), values).hex(),
        "blockNumber": 42,
        "blockHash": BLOCK,
        "transactionHash": TX,
        "logIndex": log_index,
    }


def test_topics_match_chain_md(decoder: EventDecoder) -> None:
    topics = decoder.topics
    for signature, expected in SPEC_TOPICS.items():
        assert topic0(signature) == expected
        assert topics[expected] == signature


def test_every_abi_event_has_a_decoder_including_both_overloads(decoder: EventDecoder) -> None:
    events = [e for name in ("Symmio", "MultiAccount") for e in load_abi(name) if e["type"] == "event"]
    signatures = {event_signature(e) for e in events}
    assert len(signatures) == len(events)  # overloads differ by signature
    assert set(decoder.topics.values()) == signatures
    for legacy, current, _ in OVERLOADS.values():
        assert {legacy, current} <= signatures
    assert {"ExpireQuote(uint8,uint256)", "ExpireQuoteOpen(uint8,uint256)"} <= signatures
    assert "ExpireQuoteClose(uint8,uint256,uint256)" in signatures


@pytest.mark.parametrize("name", sorted(OVERLOADS))
def test_both_forms_of_a_close_side_event_decode(decoder: EventDecoder, name: str) -> None:
    legacy_sig, current_sig, values = OVERLOADS[name]
    legacy = decoder.decode(raw_log(legacy_sig, values, log_index=3))
    current = decoder.decode(raw_log(current_sig, [*values, 11], log_index=4))
    assert legacy is not None and current is not None
    assert (legacy.name, current.name) == (name, name)
    assert (legacy.signature, current.signature) == (legacy_sig, current_sig)
    assert "closeId" not in legacy.args
    assert current.args["closeId"] == 11
    assert legacy.quote_id == current.quote_id == 7
    assert legacy.is_legacy_form and not current.is_legacy_form
    assert legacy.family == current.family == name
    assert {k: v for k, v in current.args.items() if k != "closeId"} == legacy.args


def test_expire_forms(decoder: EventDecoder) -> None:
    legacy = decoder.decode(raw_log("ExpireQuote(uint8,uint256)", [9, 5]))
    opened = decoder.decode(raw_log("ExpireQuoteOpen(uint8,uint256)", [9, 5]))
    closed = decoder.decode(raw_log("ExpireQuoteClose(uint8,uint256,uint256)", [4, 5, 2]))
    assert legacy is not None and opened is not None and closed is not None
    assert [e.name for e in (legacy, opened, closed)] == ["ExpireQuote", "ExpireQuoteOpen", "ExpireQuoteClose"]
    assert legacy.is_legacy_form and not opened.is_legacy_form and not closed.is_legacy_form
    assert legacy.family == opened.family == closed.family == "ExpireQuote"
    assert closed.args == {"quoteStatus": 4, "quoteId": 5, "closeId": 2}


def test_send_quote_fields_and_log_position(decoder: EventDecoder) -> None:
    signature = next(s for s in SPEC_TOPICS if s.startswith("SendQuote("))
    values = [PARTY_A.lower(), 12, [PARTY_B.lower()], 1, 0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    e = decoder.decode(raw_log(signature, values, log_index=9))
    assert isinstance(e, ChainEvent)
    assert e.name == "SendQuote"
    assert e.args["partyA"] == PARTY_A  # checksummed
    assert e.args["partyBsWhiteList"] == [PARTY_B]
    assert e.args["quoteId"] == 12 and e.quote_id == 12
    assert e.args["deadline"] == 11
    assert (e.block_number, e.block_hash, e.tx_hash, e.log_index) == (42, BLOCK, TX, 9)
    assert e.address == SYMMIO
    assert e.key == f"{TX}:9"


def test_web3_shaped_log_with_hexbytes(decoder: EventDecoder) -> None:
    raw = raw_log("LockQuote(address,uint256)", [PARTY_B, 3])
    web3_like = {
        **raw,
        "topics": [HexBytes(t) for t in raw["topics"]],
        "data": HexBytes(raw["data"]),
        "blockHash": HexBytes(BLOCK),
        "transactionHash": HexBytes(TX),
    }
    e = decoder.decode(web3_like)
    assert e is not None
    assert e.args == {"partyB": PARTY_B, "quoteId": 3}
    assert (e.block_hash, e.tx_hash) == (BLOCK, TX)


def test_indexed_parameters_come_from_topics(decoder: EventDecoder) -> None:
    signature = "BalanceChangePartyB(address,address,uint256,uint8)"
    raw = raw_log(signature, [PARTY_B, PARTY_A, 10**18, 2])
    indexed = ["0x" + encode(["address"], [a]).hex() for a in (PARTY_B, PARTY_A)]
    raw.update(topics=[topic0(signature), *indexed], data="0x" + encode(["uint256", "uint8"], [10**18, 2]).hex())
    e = decoder.decode(raw)
    assert e is not None
    assert e.args == {"partyB": PARTY_B, "partyA": PARTY_A, "amount": 10**18, "_type": 2}
    assert e.quote_id is None


def test_call_event_from_multi_account(decoder: EventDecoder) -> None:
    signature = "Call(address,address,bytes,bool,bytes)"
    e = decoder.decode(raw_log(signature, [PARTY_B, PARTY_A, b"\x7f\x27\x55\xb2", True, encode(["uint256"], [5])]))
    assert e is not None
    assert e.args["_success"] is True
    assert e.args["_callData"] == b"\x7f\x27\x55\xb2"
    assert e.args["_resultData"] == encode(["uint256"], [5])


def test_unknown_topic_and_malformed_data_give_none(decoder: EventDecoder) -> None:
    unknown = raw_log("Transfer(address,address,uint256)", [PARTY_A, PARTY_B, 1])
    assert decoder.decode(unknown) is None
    assert decoder.decode({**unknown, "topics": []}) is None
    truncated = raw_log("LockQuote(address,uint256)", [PARTY_B, 3])
    truncated["data"] = truncated["data"][:40]
    assert decoder.decode(truncated) is None
