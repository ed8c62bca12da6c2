"""Pure fee policy: the first EIP-1559 fees of a transaction and the bump that replaces it.

Nodes accept a replacement for the same nonce only if both fee fields rise by at least 12.5 %
(geth's and anvil's rule); the bump is configured above that and never falls below what the
node suggests now, so a replacement is also competitive after a base-fee jump.
"""

from __future__ import annotations

from dataclasses import dataclass

GWEI = 10**9
MIN_BUMP_PERCENT = 13  # > 12.5 %, rounded up in integer percent


@dataclass(frozen=True, slots=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


class FeeCapExceeded(RuntimeError):
    """The fees needed are above the configured cap: the operator must decide, not the code."""


def initial_fees(*, base_fee: int, priority_fee: int, cap: int) -> Fees:
    """2 × base + tip covers six full blocks of base-fee growth (12.5 % each)."""
    tip = max(priority_fee, 1)
    fee = 2 * base_fee + tip
    if fee > cap:
        if base_fee + tip > cap:
            raise FeeCapExceeded(f"base fee {base_fee} + tip {tip} is above the cap {cap}")
        fee = cap
    return Fees(max_fee_per_gas=fee, max_priority_fee_per_gas=min(tip, fee))


def _raise(value: int, percent: int) -> int:
    return value + max(1, -(-value * percent // 100))  # ceiling, at least 1 wei


def bumped_fees(previous: Fees, suggested: Fees, *, percent: int, cap: int) -> Fees:
    """Fees for a replacement of a transaction sent with `previous`."""
    percent = max(percent, MIN_BUMP_PERCENT)
    tip = max(_raise(previous.max_priority_fee_per_gas, percent), suggested.max_priority_fee_per_gas)
    fee = max(_raise(previous.max_fee_per_gas, percent), suggested.max_fee_per_gas, tip)
    if fee > cap:
        raise FeeCapExceeded(f"a replacement needs max fee {fee}, above the cap {cap}")
    return Fees(max_fee_per_gas=fee, max_priority_fee_per_gas=tip)


def is_valid_replacement(old: Fees, new: Fees) -> bool:
    """The node-side rule: both fields at least 12.5 % higher."""
    return (
        new.max_fee_per_gas * 8 >= old.max_fee_per_gas * 9
        and new.max_priority_fee_per_gas * 8 >= old.max_priority_fee_per_gas * 9
    )
