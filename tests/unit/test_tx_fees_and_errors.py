"""Pure parts of sending: fee policy, replacement rule, revert decoding, send-error classes."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode
from hypothesis import given
from hypothesis import strategies as st

from solver.chain.errors import SendError, classify_send_error, decode_revert
from solver.chain.tx.fees import FeeCapExceeded, Fees, bumped_fees, initial_fees, is_valid_replacement

pytestmark = pytest.mark.unit
GWEI = 10**9


def test_initial_fees_cover_base_fee_growth_and_respect_the_cap() -> None:
    f = initial_fees(base_fee=10 * GWEI, priority_fee=2 * GWEI, cap=100 * GWEI)
    assert f == Fees(22 * GWEI, 2 * GWEI)
    capped = initial_fees(base_fee=10 * GWEI, priority_fee=2 * GWEI, cap=15 * GWEI)
    assert capped.max_fee_per_gas == 15 * GWEI
    with pytest.raises(FeeCapExceeded):
        initial_fees(base_fee=20 * GWEI, priority_fee=2 * GWEI, cap=15 * GWEI)


@given(
    fee=st.integers(1, 10**13),
    tip=st.integers(0, 10**12),
    percent=st.integers(0, 100),
    sugg_fee=st.integers(1, 10**13),
    sugg_tip=st.integers(0, 10**12),
)
def test_a_bump_is_always_an_acceptable_replacement(
    fee: int, tip: int, percent: int, sugg_fee: int, sugg_tip: int
) -> None:
    old = Fees(max(fee, tip), tip)
    new = bumped_fees(old, Fees(max(sugg_fee, sugg_tip), sugg_tip), percent=percent, cap=10**20)
    assert is_valid_replacement(old, new)
    assert new.max_fee_per_gas >= new.max_priority_fee_per_gas
    assert new.max_fee_per_gas >= sugg_fee and new.max_priority_fee_per_gas >= sugg_tip


def test_replacement_rule_matches_the_nodes() -> None:
    assert not is_valid_replacement(Fees(100, 10), Fees(112, 12))  # 12 % is not enough
    assert is_valid_replacement(Fees(100, 8), Fees(113, 9))
    with pytest.raises(FeeCapExceeded):
        bumped_fees(Fees(100, 10), Fees(1, 1), percent=15, cap=110)


def test_revert_reasons_are_decoded() -> None:
    data = bytes.fromhex("08c379a0") + encode(["string"], ["PartyAFacet: Low deadline"])
    assert decode_revert(data) == "PartyAFacet: Low deadline"
    assert decode_revert("0x" + data.hex()) == "PartyAFacet: Low deadline"
    assert decode_revert(bytes.fromhex("4e487b71") + encode(["uint256"], [0x11])) == "panic 0x11"
    assert decode_revert(b"") == "reverted without a reason"
    assert decode_revert(bytes.fromhex("deadbeef")) == "reverted with custom error 0xdeadbeef"
    assert "malformed" in decode_revert(bytes.fromhex("08c379a0") + b"\x01")


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("already known", SendError.ALREADY_KNOWN),
        ("nonce too low: next nonce 5, tx nonce 4", SendError.NONCE_TOO_LOW),
        ("replacement transaction underpriced", SendError.UNDERPRICED),
        ("max fee per gas less than block base fee", SendError.UNDERPRICED),
        ("connection reset by peer", SendError.TRANSIENT),
    ],
)
def test_send_errors_are_classified(message: str, kind: SendError) -> None:
    assert classify_send_error(RuntimeError(message)) is kind
