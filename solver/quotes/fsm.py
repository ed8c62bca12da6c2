"""Pure: the legal status moves of instant opens and closes.

Every compare-and-set transition is checked against these tables before it is written; an
illegal move is a bug (an invariant violation), so it raises and the process crashes rather
than writing a state the recovery path cannot reason about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import TypeVar

from solver.db.models import InstantCloseStatus as C
from solver.db.models import InstantOpenStatus as O

OPEN_TRANSITIONS: Mapping[O, frozenset[O]] = {
    # Dropped before reaching the chain, or refused by the pre-flight.
    O.PENDING: frozenset({O.SENT, O.CANCELLED, O.FAILED}),
    # On chain: PartyB opens it, it fails (revert, expiry, price moved), or the user cancels.
    O.SENT: frozenset({O.OPENED, O.FAILED, O.CANCEL_REQUESTED, O.CANCELLED}),
    # The cancel races PartyB's open: either can win; an expired quote fails.
    O.CANCEL_REQUESTED: frozenset({O.CANCELLED, O.OPENED, O.FAILED}),
    O.OPENED: frozenset(),
    O.FAILED: frozenset(),
    O.CANCELLED: frozenset(),
}

CLOSE_TRANSITIONS: Mapping[C, frozenset[C]] = {
    C.PENDING: frozenset({C.SENT, C.CANCELLED, C.FAILED}),
    C.SENT: frozenset({C.FILLED, C.FAILED, C.CANCEL_REQUESTED, C.CANCELLED}),
    C.CANCEL_REQUESTED: frozenset({C.CANCELLED, C.FILLED, C.FAILED}),
    C.FILLED: frozenset(),
    C.FAILED: frozenset(),
    C.CANCELLED: frozenset(),
}


S = TypeVar("S", bound=StrEnum)


class IllegalTransition(AssertionError):
    """A status move the tables forbid: a bug, never a user error."""


def check_transition(table: Mapping[S, frozenset[S]], expected: S | Iterable[S], new: S) -> None:
    sources = [expected] if isinstance(expected, StrEnum) else list(expected)
    for source in sources:
        if new not in table[source]:
            raise IllegalTransition(f"{source.value} -> {new.value} is not a legal transition")


def is_terminal(table: Mapping[S, frozenset[S]], status: S) -> bool:
    return not table[status]
