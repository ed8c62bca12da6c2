"""Notifications of stop loss / take profit orders (http-api.md §6, `last_seen_action` values).

| step        | action (SL / TP)                          | status  | when                                   |
|-------------|-------------------------------------------|---------|----------------------------------------|
| `set`       | SetStopLoss / SetTakeProfit               | seen    | accepted by the API                    |
| `cancel`    | CancelStopLoss / CancelTakeProfit         | success | cancelled by the user or replaced      |
| `dropped`   | StopLossCancelled / TakeProfitCancelled   | failed  | cancelled by the solver (OCO, position |
|             |                                           |         | ended another way, quote never opened) |
| `triggered` | StopLossTriggered / TakeProfitTriggered   | success | fired: a MARKET close was requested    |
| `filled`    | StopLossFilled / TakeProfitFilled         | success | that close filled                      |
| `failed`    | StopLossFailed / TakeProfitFailed         | failed  | every close attempt failed             |

Each is keyed `trigger_order:{id}:{step}` (a retried step never notifies twice).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlmodel.ext.asyncio.session import AsyncSession

from solver.core.errors import ErrorCode
from solver.db.models import ActionStatus, StateType, TriggerOrder
from solver.notify import repository as notify
from solver.orders.triggers import STOP_LOSS
from solver.quotes.outbox import lane_for
from solver.settings import Settings

_ACTIONS = {
    "set": ("SetStopLoss", "SetTakeProfit", ActionStatus.SEEN, StateType.REPORT),
    "cancel": ("CancelStopLoss", "CancelTakeProfit", ActionStatus.SUCCESS, StateType.REPORT),
    "dropped": ("StopLossCancelled", "TakeProfitCancelled", ActionStatus.FAILED, StateType.ALERT),
    "triggered": ("StopLossTriggered", "TakeProfitTriggered", ActionStatus.SUCCESS, StateType.ALERT),
    "filled": ("StopLossFilled", "TakeProfitFilled", ActionStatus.SUCCESS, StateType.REPORT),
    "failed": ("StopLossFailed", "TakeProfitFailed", ActionStatus.FAILED, StateType.ALERT),
}


def action_name(kind: str, step: str) -> str:
    sl, tp, _, _ = _ACTIONS[step]
    return sl if kind == STOP_LOSS else tp


async def add(
    session: AsyncSession,
    settings: Settings,
    row: TriggerOrder,
    step: str,
    *,
    now: datetime,
    key: str | None = None,
    code: ErrorCode | None = None,
    message: str | None = None,
    filled: Decimal | None = None,
    avg_price_close: Decimal | None = None,
) -> None:
    _, _, status, state = _ACTIONS[step]
    lanes = settings.chain.lanes
    failed = status == ActionStatus.FAILED
    await notify.add(
        session,
        notify.NewNotification(
            account=row.account,
            counterparty_address=lanes[lane_for(row.account, len(lanes))],
            last_seen_action=action_name(row.kind, step),
            action_status=status,
            state_type=state,
            event_key=f"trigger_order:{row.id}:{key or step}",
            quote_id=row.quote_id,
            failure_type=code.name if failed and code is not None else None,
            failure_message=message if failed else None,
            error_code=code.code if failed and code is not None else None,
            filled_amount_close=filled,
            avg_price_close=avg_price_close,
        ),
        now=now,
    )
