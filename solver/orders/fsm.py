"""Pure: the legal status moves of stop loss / take profit orders.

`triggered -> triggered` is a retry: the previous close failed and a new one (fresh price) is
attached; the compare-and-set also names the previous close, so two engines cannot both retry.
"""

from __future__ import annotations

from collections.abc import Mapping

from solver.db.models import TriggerStatus as T
from solver.quotes.fsm import IllegalTransition, check_transition, is_terminal

TRIGGER_TRANSITIONS: Mapping[T, frozenset[T]] = {
    # Armed when the quote is OPENED; dropped by the user, a replacement, or a quote that ended
    # without opening.
    T.WAITING: frozenset({T.ARMED, T.CANCELLED}),
    # Fires (with its close) or is cancelled: user, replacement, OCO, position ended otherwise.
    T.ARMED: frozenset({T.TRIGGERED, T.CANCELLED}),
    # The close fills, is retried, runs out of attempts, or the position ended another way.
    T.TRIGGERED: frozenset({T.TRIGGERED, T.FILLED, T.FAILED, T.CANCELLED}),
    T.FILLED: frozenset(),
    T.CANCELLED: frozenset(),
    T.FAILED: frozenset(),
}

__all__ = ["TRIGGER_TRANSITIONS", "IllegalTransition", "check_transition", "is_terminal"]
