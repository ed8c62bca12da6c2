"""Notification history route (http-api.md §6). No auth: frontends send the account in the body."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from solver.notify.schemas import NotificationOut, PositionStateBody, PositionStateOut
from solver.notify.service import HistoryQuery, NotificationHistory
from solver.web.body import exact_body

History = NamedDependency[NotificationHistory]


@post(
    "/position-state/{start:str}/{size:str}",
    status_code=200,
    summary="An account's notifications, newest first (size 1 to 100)",
    description="Body `{address, quote_id?, create_time_gte?, modify_time_gte?}`, times in unix seconds. "
    "A negative quote_id matches the temporary id.",
    tags=["notifications"],
)
async def position_state(
    start: FromPath[str],
    size: FromPath[str],
    data: JSONBody[PositionStateBody],
    request: Request[Any, Any, Any],
    notifications: History,
) -> PositionStateOut:
    body = await exact_body(request, PositionStateBody)
    total, rows = await notifications.page(
        HistoryQuery(
            address=body.address,
            start=start,
            size=size,
            quote_id=body.quote_id,
            create_time_gte=body.create_time_gte,
            modify_time_gte=body.modify_time_gte,
        )
    )
    return PositionStateOut(count=total, position_state=[NotificationOut.of(n) for n in rows])


def notify_routes() -> list[Any]:
    return [position_state]
