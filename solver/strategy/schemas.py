"""Request and response bodies of the strategy order routes (http-api.md §5, trading-rules.md §3).

The request is snake_case as the strategy-orders seed sends it; extra keys are ignored. Its
fields are typed `Any` here on purpose: the body model only documents the request (the schema of
each field is given by `json_schema_extra`) and the pure validator (solver.strategy.validation)
judges the exact JSON values, so one request gets every violation in one answer instead of the
first one the framework meets. Numbers are read exactly (solver.web.body.exact_body).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from solver.core.units import fmt
from solver.db.models import (
    STRATEGY_TERMINAL,
    StrategyOrder,
    StrategyStatus,
    StrategySubOrder,
    StrategyType,
    SubOrderStatus,
)
from solver.strategy.validation import MAX_DELAY_S, MAX_SUBORDERS

_DECIMAL: dict[str, Any] = {"oneOf": [{"type": "string"}, {"type": "number"}]}


def _field(description: str, schema: dict[str, Any]) -> Any:
    return Field(default=None, description=description, json_schema_extra=dict(schema))


class StrategyOrderBody(BaseModel):
    """POST /strategy-orders."""

    model_config = ConfigDict(extra="ignore")

    type: Any = _field("Required: limit or dca", {"type": "string", "enum": ["limit", "dca"]})
    symbol_id: Any = _field("Required: the symbol (see /contract-symbols)", {"type": "integer", "minimum": 1})
    position_type: Any = _field("Required: 0 LONG, 1 SHORT", {"type": "integer", "enum": [0, 1]})
    leverage: Any = _field("Required: leverage of every sub-order, within the symbol's allowed range", _DECIMAL)
    input_amount: Any = _field(
        "Required (or `initial_input_amount`): margin in collateral units (USD) committed to the order, "
        "at most 18 decimals, at least the symbol's minimum quote value",
        _DECIMAL,
    )
    initial_input_amount: Any = _field("Alias of input_amount", _DECIMAL)
    max_suborders: Any = _field(
        f"Required: 1 to {MAX_SUBORDERS}", {"type": "integer", "minimum": 1, "maximum": MAX_SUBORDERS}
    )
    max_invocations: Any = _field(
        f"Required: max_suborders to {MAX_SUBORDERS}; every attempt, success or failure, consumes one",
        {"type": "integer", "minimum": 1, "maximum": MAX_SUBORDERS},
    )
    slippage: Any = _field("Required: in (0, 1]; 0.001 is 0.1 %", _DECIMAL)
    settings: Any = _field(
        f'Required. limit: {{"price": str}}; dca: {{"delay": seconds 1 to {MAX_DELAY_S}, '
        '"price_range_from": str?, "price_range_to": str?}',
        {"type": "object"},
    )

    def raw(self) -> dict[str, Any]:
        """The values as sent (exact Decimals), for the validator."""
        return self.model_dump()


# --- answers -----------------------------------------------------------------------------------


class LimitSettingsOut(BaseModel):
    price: str


class DcaSettingsOut(BaseModel):
    delay: int  # seconds
    delay_millis: int
    price_range_from: str | None
    price_range_to: str | None


class SubOrderItem(BaseModel):
    invocation: int  # the order's n-th attempt, from 1
    status: str  # sending | sent | opened | failed
    slots: int  # sub-orders it counts for (small slices are merged)
    quantity: str
    price: str  # the request price
    temp_quote_id: int | None  # of its instant open, once created
    quote_id: int | None  # the on-chain quote, once known
    error_code: int | None
    error_message: str | None
    create_time: int  # unix seconds


class StrategyOrderItem(BaseModel):
    id: int
    type: str  # limit | dca
    account: str
    wallet: str  # = account (the seed's name for it)
    symbol_id: int
    symbol: str | None  # its name; null only if the symbol left the configuration
    position_type: int
    leverage: str
    initial_input_amount: str
    current_input_amount: str
    current_output_amount: str
    max_suborders: int
    max_invocations: int
    suborders_executed: int
    invocations_executed: int
    active_transactions: int
    slippage: str
    settings: LimitSettingsOut | DcaSettingsOut
    status: str
    status_reason: str | None
    error_code: int | None
    error_message: str | None
    creation_timestamp: int  # unix seconds
    close_timestamp: int | None  # unix seconds, only in a terminal status
    quote_ids: list[int]  # quotes its sub-orders opened, in invocation order
    suborders: list[SubOrderItem]
    version: int

    @classmethod
    def of(
        cls, row: StrategyOrder, symbol: str | None, suborders: Sequence[tuple[StrategySubOrder, int | None]] = ()
    ) -> StrategyOrderItem:
        """`suborders`: (sub-order, temp quote id of its instant open), in invocation order."""
        assert row.id is not None
        subs = sorted(suborders, key=lambda s: s[0].invocation)
        terminal = row.status in STRATEGY_TERMINAL
        return cls(
            id=row.id,
            type=StrategyType(row.type).value,
            account=row.account,
            wallet=row.account,
            symbol_id=row.symbol_id,
            symbol=symbol,
            position_type=row.position_type,
            leverage=fmt(row.leverage),
            initial_input_amount=fmt(row.initial_input_amount),
            current_input_amount=fmt(row.current_input_amount),
            current_output_amount=fmt(row.current_output_amount),
            max_suborders=row.max_suborders,
            max_invocations=row.max_invocations,
            suborders_executed=row.suborders_executed,
            invocations_executed=row.invocations_executed,
            active_transactions=row.active_transactions,
            slippage=fmt(row.slippage),
            settings=settings_of(row),
            status=StrategyStatus(row.status).value,
            status_reason=row.status_reason,
            error_code=row.error_code,
            error_message=row.error_message,
            creation_timestamp=_unix(row.create_time),
            close_timestamp=_unix(row.close_time) if terminal and row.close_time is not None else None,
            quote_ids=[s.quote_id for s, _ in subs if s.status == SubOrderStatus.OPENED and s.quote_id is not None],
            suborders=[_sub_item(s, temp) for s, temp in subs],
            version=row.version,
        )


def settings_of(row: StrategyOrder) -> LimitSettingsOut | DcaSettingsOut:
    if row.type == StrategyType.LIMIT:
        assert row.limit_price is not None
        return LimitSettingsOut(price=fmt(row.limit_price))
    delay = row.dca_delay_s or 0
    return DcaSettingsOut(
        delay=delay,
        delay_millis=delay * 1000,
        price_range_from=_money(row.band_from),
        price_range_to=_money(row.band_to),
    )


def _sub_item(s: StrategySubOrder, temp_quote_id: int | None) -> SubOrderItem:
    return SubOrderItem(
        invocation=s.invocation,
        status=SubOrderStatus(s.status).value,
        slots=s.slots,
        quantity=fmt(s.quantity),
        price=fmt(s.price),
        temp_quote_id=temp_quote_id,
        quote_id=s.quote_id,
        error_code=s.error_code,
        error_message=s.error_message,
        create_time=_unix(s.create_time),
    )


def _money(value: Decimal | None) -> str | None:
    return None if value is None else fmt(value)


def _unix(at: datetime) -> int:
    return int(at.timestamp())


def items(
    rows: Sequence[StrategyOrder],
    names: Mapping[int, str],
    suborders: Mapping[int, Sequence[tuple[StrategySubOrder, int | None]]],
) -> list[StrategyOrderItem]:
    """Answer items of `rows`; `names` maps symbol id to name, `suborders` order id to its sub-orders."""
    out = []
    for row in rows:
        assert row.id is not None
        out.append(StrategyOrderItem.of(row, names.get(row.symbol_id), suborders.get(row.id, ())))
    return out
