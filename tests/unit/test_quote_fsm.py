"""Exhaustive check of the instant open/close transition tables."""

from __future__ import annotations

import itertools

import pytest

from solver.db.models import InstantCloseStatus as C
from solver.db.models import InstantOpenStatus as O
from solver.quotes.fsm import CLOSE_TRANSITIONS, OPEN_TRANSITIONS, IllegalTransition, check_transition, is_terminal

pytestmark = pytest.mark.unit

OPEN_LEGAL = {
    (O.PENDING, O.SENT), (O.PENDING, O.CANCELLED), (O.PENDING, O.FAILED),
    (O.SENT, O.OPENED), (O.SENT, O.FAILED), (O.SENT, O.CANCEL_REQUESTED), (O.SENT, O.CANCELLED),
    (O.CANCEL_REQUESTED, O.CANCELLED), (O.CANCEL_REQUESTED, O.OPENED), (O.CANCEL_REQUESTED, O.FAILED),
}  # fmt: skip
CLOSE_LEGAL = {
    (C.PENDING, C.SENT), (C.PENDING, C.CANCELLED), (C.PENDING, C.FAILED),
    (C.SENT, C.FILLED), (C.SENT, C.FAILED), (C.SENT, C.CANCEL_REQUESTED), (C.SENT, C.CANCELLED),
    (C.CANCEL_REQUESTED, C.CANCELLED), (C.CANCEL_REQUESTED, C.FILLED), (C.CANCEL_REQUESTED, C.FAILED),
}  # fmt: skip


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(O, O)))
def test_every_open_pair(src: O, dst: O) -> None:
    if (src, dst) in OPEN_LEGAL:
        check_transition(OPEN_TRANSITIONS, src, dst)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(OPEN_TRANSITIONS, src, dst)


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(C, C)))
def test_every_close_pair(src: C, dst: C) -> None:
    if (src, dst) in CLOSE_LEGAL:
        check_transition(CLOSE_TRANSITIONS, src, dst)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(CLOSE_TRANSITIONS, src, dst)


def test_terminal_states_match_the_models() -> None:
    from solver.db.models import INSTANT_CLOSE_TERMINAL, INSTANT_OPEN_TERMINAL

    assert {s for s in O if is_terminal(OPEN_TRANSITIONS, s)} == set(INSTANT_OPEN_TERMINAL)
    assert {s for s in C if is_terminal(CLOSE_TRANSITIONS, s)} == set(INSTANT_CLOSE_TERMINAL)


def test_a_set_of_sources_is_checked_member_by_member() -> None:
    check_transition(OPEN_TRANSITIONS, [O.SENT, O.CANCEL_REQUESTED], O.OPENED)
    with pytest.raises(IllegalTransition):
        check_transition(OPEN_TRANSITIONS, [O.PENDING, O.SENT], O.OPENED)
