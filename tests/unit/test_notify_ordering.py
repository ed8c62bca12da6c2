"""Notification dates: requests before their chain effects, chain facts in chain order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from solver.notify.ordering import chain_stamp, request_stamp

pytestmark = pytest.mark.unit


def test_a_request_sorts_before_chain_facts_of_its_second() -> None:
    accepted = datetime.fromtimestamp(1_800_000_000.73, UTC)  # late in the second
    mined = chain_stamp(1_800_000_000, block_number=1000, log_index=0)  # same second, first block
    assert request_stamp(accepted) < mined


def test_chain_facts_follow_block_then_log_order_within_a_second() -> None:
    assert chain_stamp(10, 41, 5) < chain_stamp(10, 42, 0) < chain_stamp(10, 42, 1) < chain_stamp(11, 0, 0)


def test_requests_keep_their_own_order_within_a_second() -> None:
    early = datetime.fromtimestamp(1_800_000_000.100, UTC)
    late = datetime.fromtimestamp(1_800_000_000.900, UTC)
    assert request_stamp(early) < request_stamp(late) < chain_stamp(1_800_000_000, 0, 0)
