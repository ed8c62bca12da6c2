"""Locked parameters and leverage (trading-rules.md §1): pure math, Decimal only.

For maintenance ratio `cn` and leverage `L`, as percentages of the margin `N / L`:
`cva% = ⅔·cn·L·100`, `lf% = ⅓·cn·L·100`, `partyAmm% = 100 − cva% − lf%`; `partyBmm%` is config
(a percentage of the notional). Hence `cva = ⅔·cn·N` and `lf = ⅓·cn·N` whatever `L` is, which
lets `check_locked_values` judge a request without knowing the client's leverage.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal
from typing import Protocol

from solver.core.errors import ErrorCode
from solver.core.units import fmt, round_to_wei

# Wide precision: notional and margins are compared exactly, never at the default 28 digits.
_CTX = Context(prec=120)
_HUNDRED = Decimal(100)
_MAX_LEVERAGE_FACTOR = Decimal("0.6")  # max_leverage = floor(0.6 / cn)
# Percent strings carry 18 decimals (the chain's fixed point); cva% and lf% are rounded up so a
# client that uses them exactly never falls below the minimum, partyAmm% takes the remainder so
# the three still add up to exactly 100.
_PERCENT_QUANTUM = Decimal(1).scaleb(-18)
# Clients compute cva/lf in floats or round them to a few decimals: accept a shortfall of
# one part per million (plus one wei) against the exact minimum. The chain itself does not check
# cva/lf against cn, so this only bounds how generous the solver's own policy is.
LOCKED_TOLERANCE = Decimal("0.000001")
_ONE_WEI = Decimal(1).scaleb(-18)


class MarketRisk(Protocol):
    """The symbol settings the math needs (`SymbolConfig` satisfies it)."""

    @property
    def maintenance_ratio(self) -> Decimal: ...
    @property
    def max_leverage_cap(self) -> int | None: ...
    @property
    def party_bmm_percent(self) -> Decimal: ...
    @property
    def min_acceptable_portion_lf(self) -> Decimal: ...
    @property
    def min_acceptable_quote_value(self) -> Decimal: ...


class LeverageError(ValueError):
    """The leverage is not allowed for the market; the message says which range is."""


@dataclass(frozen=True, slots=True)
class LockedPercents:
    """Percentages as exact Decimals (cva/lf/partyAmm of the margin, partyBmm of the notional)."""

    leverage: Decimal
    cva: Decimal
    lf: Decimal
    party_amm: Decimal
    party_bmm: Decimal

    def as_strings(self) -> dict[str, str]:
        return {
            "cva": fmt(self.cva),
            "lf": fmt(self.lf),
            "partyAmm": fmt(self.party_amm),
            "partyBmm": fmt(self.party_bmm),
            "leverage": fmt(self.leverage),
        }


def _leverage_ceiling(m: MarketRisk) -> int:
    """floor(0.6 / cn), lowered by the configured cap."""
    ceiling = int(_CTX.divide(_MAX_LEVERAGE_FACTOR, m.maintenance_ratio).to_integral_value(rounding=ROUND_FLOOR))
    if m.max_leverage_cap is not None:
        ceiling = min(ceiling, m.max_leverage_cap)
    return ceiling


def _lf_portion_ok(m: MarketRisk, leverage: Decimal) -> bool:
    # lf% ≥ 100·minPortion  ⇔  ⅓·cn·L ≥ minPortion  ⇔  cn·L ≥ 3·minPortion (exact, no division).
    return _CTX.multiply(m.maintenance_ratio, leverage) >= _CTX.multiply(Decimal(3), m.min_acceptable_portion_lf)


def allowed_leverages(m: MarketRisk) -> list[int]:
    """Every whole leverage the market allows, ascending (may be empty for a misconfigured market).

    lf% grows with L, so the LF-portion rule removes the *lowest* leverages, if any.
    """
    return [lev for lev in range(1, _leverage_ceiling(m) + 1) if _lf_portion_ok(m, Decimal(lev))]


def max_leverage(m: MarketRisk) -> int:
    """Largest allowed whole leverage, 0 when none is allowed."""
    allowed = allowed_leverages(m)
    return allowed[-1] if allowed else 0


def min_leverage(m: MarketRisk) -> int:
    allowed = allowed_leverages(m)
    return allowed[0] if allowed else 0


def locked_percents(m: MarketRisk, leverage: Decimal) -> LockedPercents:
    """Percentages for leverage `L`; LeverageError unless min ≤ L ≤ max and the LF rule holds.

    Fractional leverages inside the range are accepted (the formulas hold for any real L).
    """
    lo, hi = min_leverage(m), max_leverage(m)
    if hi == 0:
        raise LeverageError("This market allows no leverage with its current settings.")
    if not leverage.is_finite() or leverage < lo or leverage > hi or not _lf_portion_ok(m, leverage):
        raise LeverageError(f"Leverage must be between {lo} and {hi} for this market, got {fmt(leverage)}.")
    cn_l_pct = _CTX.multiply(_CTX.multiply(m.maintenance_ratio, leverage), _HUNDRED)  # cn·L·100
    cva = _CTX.divide(_CTX.multiply(cn_l_pct, Decimal(2)), Decimal(3)).quantize(_PERCENT_QUANTUM, ROUND_CEILING)
    lf = _CTX.divide(cn_l_pct, Decimal(3)).quantize(_PERCENT_QUANTUM, ROUND_CEILING)
    party_amm = _CTX.subtract(_CTX.subtract(_HUNDRED, cva), lf)
    return LockedPercents(
        leverage=leverage,
        cva=cva,
        lf=lf,
        party_amm=party_amm,
        party_bmm=m.party_bmm_percent,
    )


def locked_amounts(p: LockedPercents, notional: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """(cva, lf, partyAmm) in collateral units, as a client computes them: N × pct / 100 / L."""
    margin = _CTX.divide(notional, p.leverage)

    def part(pct: Decimal) -> Decimal:
        return _CTX.divide(_CTX.multiply(margin, pct), _HUNDRED)

    return part(p.cva), part(p.lf), part(p.party_amm)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: the error code the gate will answer with and a trader-readable message."""

    code: ErrorCode
    message: str
    required: Decimal | None = None
    actual: Decimal | None = None


@dataclass(frozen=True, slots=True)
class LockedCheck:
    notional: Decimal
    required_cva: Decimal
    required_lf: Decimal
    implied_leverage: Decimal | None  # None when the margin is zero
    max_leverage: int
    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return not self.violations

    def messages(self) -> list[str]:
        return [v.message for v in self.violations]


def _short(value: Decimal) -> str:
    """Amount for a message: at most 18 decimals, no exponent."""
    return fmt(round_to_wei(value))


def check_locked_values(
    m: MarketRisk,
    *,
    quantity: Decimal,
    price: Decimal,
    cva: Decimal,
    lf: Decimal,
    party_amm: Decimal,
) -> LockedCheck:
    """Judge the locked values a client sent for `quantity` at `price` (trading-rules.md §1).

    Amounts are compared as the chain will see them (rounded to 18 decimals). Rules: cva and lf
    at least ⅔·cn·N and ⅓·cn·N (within LOCKED_TOLERANCE); N / (cva + lf + partyAmm) at most the
    market's max leverage; lf ≥ minAcceptablePortionLF × margin and margin ≥
    minAcceptableQuoteValue exactly, as the contract checks them.
    """
    cva, lf, party_amm = round_to_wei(cva), round_to_wei(lf), round_to_wei(party_amm)
    notional = _CTX.multiply(quantity, price)
    cn = m.maintenance_ratio
    req_cva = _CTX.divide(_CTX.multiply(_CTX.multiply(Decimal(2), cn), notional), Decimal(3))
    req_lf = _CTX.divide(_CTX.multiply(cn, notional), Decimal(3))
    margin = _CTX.add(_CTX.add(cva, lf), party_amm)
    hi = max_leverage(m)
    out: list[Violation] = []

    def short_of(sent: Decimal, required: Decimal) -> bool:
        slack = max(_CTX.multiply(required, LOCKED_TOLERANCE), _ONE_WEI)
        return sent < _CTX.subtract(required, slack)

    if short_of(cva, req_cva):
        out.append(
            Violation(
                ErrorCode.LOCKED_VALUES_TOO_LOW,
                f"cva must be at least {_short(req_cva)} for a notional of {_short(notional)} "
                f"(⅔ × maintenance ratio {fmt(cn)} × notional), got {_short(cva)}.",
                req_cva,
                cva,
            )
        )
    if short_of(lf, req_lf):
        out.append(
            Violation(
                ErrorCode.LOCKED_VALUES_TOO_LOW,
                f"lf must be at least {_short(req_lf)} for a notional of {_short(notional)} "
                f"(⅓ × maintenance ratio {fmt(cn)} × notional), got {_short(lf)}.",
                req_lf,
                lf,
            )
        )

    implied: Decimal | None = None
    if margin.is_zero():
        out.append(
            Violation(
                ErrorCode.QUOTE_VALUE_TOO_LOW,
                "cva + lf + partyAmm must be greater than zero.",
                m.min_acceptable_quote_value,
                margin,
            )
        )
    else:
        implied = _CTX.divide(notional, margin)
        max_lev = Decimal(hi)
        if implied > _CTX.multiply(max_lev, _CTX.add(Decimal(1), LOCKED_TOLERANCE)):
            min_margin = _CTX.divide(notional, max_lev) if hi > 0 else None
            need = f"at least {_short(min_margin)}" if min_margin is not None else "impossible to satisfy"
            out.append(
                Violation(
                    ErrorCode.LEVERAGE_TOO_HIGH,
                    f"Leverage {_short(implied)} (notional / (cva + lf + partyAmm)) is above the maximum of {hi} "
                    f"for this market: cva + lf + partyAmm must be {need}, got {_short(margin)}.",
                    min_margin,
                    margin,
                )
            )
        min_lf = _CTX.multiply(m.min_acceptable_portion_lf, margin)
        if lf < min_lf:
            out.append(
                Violation(
                    ErrorCode.LF_PORTION_TOO_LOW,
                    f"lf must be at least {fmt(m.min_acceptable_portion_lf)} of cva + lf + partyAmm, "
                    f"i.e. {_short(min_lf)}, got {_short(lf)}.",
                    min_lf,
                    lf,
                )
            )
        if margin < m.min_acceptable_quote_value:
            out.append(
                Violation(
                    ErrorCode.QUOTE_VALUE_TOO_LOW,
                    f"cva + lf + partyAmm must be at least {fmt(m.min_acceptable_quote_value)}, got {_short(margin)}.",
                    m.min_acceptable_quote_value,
                    margin,
                )
            )
    return LockedCheck(
        notional=notional,
        required_cva=req_cva,
        required_lf=req_lf,
        implied_leverage=implied,
        max_leverage=hi,
        violations=tuple(out),
    )
