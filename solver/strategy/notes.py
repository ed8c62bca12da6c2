"""Notifications of strategy orders (http-api.md §6, `last_seen_action` values).

| step                      | action                        | status  | when                               |
|---------------------------|-------------------------------|---------|------------------------------------|
| `created`                 | StrategyOrderCreated          | seen    | accepted by the API                |
| `status:<status>`         | StrategyOrderStatus           | success | any status change after creation;  |
|                           |                               | / failed| failed for cancelled_by_system and |
|                           |                               |         | max_retries_exceeded               |
| `sub:<n>:sent`            | StrategySubOrderSent          | seen    | sub-order n handed to instant open |
| `sub:<n>:opened`          | StrategySubOrderOpened        | success | its quote opened (quote id, fill)  |
| `sub:<n>:failed`          | StrategySubOrderFailed        | failed  | refused or failed (error code)     |

Each is keyed `strategy_order:{id}:{step}`, so a retried step never notifies twice. Sub-order
notifications carry the sub-order's temp and quote ids (listed on the order by GET
/strategy-orders/{id}); failures name the order in `failure_message`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlmodel.ext.asyncio.session import AsyncSession

from solver.db.models import ActionStatus, StateType, StrategyOrder, StrategyStatus, StrategySubOrder
from solver.notify import repository as notify
from solver.quotes.outbox import lane_for
from solver.settings import Settings

FAILED_STATUSES = frozenset({StrategyStatus.CANCELLED_BY_SYSTEM, StrategyStatus.MAX_RETRIES_EXCEEDED})


def _counterparty(settings: Settings, account: str) -> str:
    lanes = settings.chain.lanes
    return lanes[lane_for(account, len(lanes))]


def _order_type(order: StrategyOrder) -> int:
    return 0 if order.type == "limit" else 1


async def created(session: AsyncSession, settings: Settings, order: StrategyOrder, *, now: datetime) -> None:
    await notify.add(
        session,
        notify.NewNotification(
            account=order.account,
            counterparty_address=_counterparty(settings, order.account),
            last_seen_action="StrategyOrderCreated",
            action_status=ActionStatus.SEEN,
            event_key=f"strategy_order:{order.id}:created",
            order_type=_order_type(order),
        ),
        now=now,
    )


async def status_changed(session: AsyncSession, settings: Settings, order: StrategyOrder, *, now: datetime) -> None:
    failed = order.status in FAILED_STATUSES
    await notify.add(
        session,
        notify.NewNotification(
            account=order.account,
            counterparty_address=_counterparty(settings, order.account),
            last_seen_action="StrategyOrderStatus",
            action_status=ActionStatus.FAILED if failed else ActionStatus.SUCCESS,
            state_type=StateType.ALERT if failed else StateType.REPORT,
            event_key=f"strategy_order:{order.id}:status:{order.status.value}",
            order_type=_order_type(order),
            failure_type=order.status.value if failed else None,
            failure_message=f"Strategy order {order.id}: {order.status_reason or order.status.value}"
            if failed
            else None,
        ),
        now=now,
    )


async def suborder(
    session: AsyncSession,
    settings: Settings,
    order: StrategyOrder,
    sub: StrategySubOrder,
    step: str,
    *,
    now: datetime,
    temp_quote_id: int | None = None,
    filled: Decimal | None = None,
    avg_price: Decimal | None = None,
) -> None:
    """`step` is sent, opened or failed."""
    action, status = {
        "sent": ("StrategySubOrderSent", ActionStatus.SEEN),
        "opened": ("StrategySubOrderOpened", ActionStatus.SUCCESS),
        "failed": ("StrategySubOrderFailed", ActionStatus.FAILED),
    }[step]
    failed = status == ActionStatus.FAILED
    await notify.add(
        session,
        notify.NewNotification(
            account=order.account,
            counterparty_address=_counterparty(settings, order.account),
            last_seen_action=action,
            action_status=status,
            event_key=f"strategy_order:{order.id}:sub:{sub.invocation}:{step}",
            order_type=_order_type(order),
            quote_id=sub.quote_id,
            temp_quote_id=temp_quote_id,
            filled_amount_open=filled,
            avg_price_open=avg_price,
            failure_type="StrategySubOrderFailed" if failed else None,
            failure_message=f"Strategy order {order.id}, sub-order {sub.invocation}: {sub.error_message}"
            if failed
            else None,
            error_code=sub.error_code if failed else None,
        ),
        now=now,
    )
