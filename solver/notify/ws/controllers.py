"""WebSocket routes (http-api.md §7), each at `/ws/<name>` and `/<name>`, and the Binance-style
book ticker. No auth: like the REST market data, the channels only read.

- `upnl-ws`: the account address as text in; `{upnl, timestamp, available_balance, …}` out
  every `ws.upnl_interval_s`.
- `position-state-ws3`: `{"address": ["0x…"]}` in; each §6 notification of those accounts out.
- `funding-rate-ws`: `{"symbols": ["BTCUSDT"]}` in (`[]` pauses); `{"BTCUSDT": {next_funding_time,
  next_funding_rate_long, next_funding_rate_short}}` out every `ws.funding_interval_s`.
- `mark-price-ws`: Binance SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS in;
  `{"stream": "!markPrice@arr@1s", "data": [...]}` out every second.

The mark price stream is also served at `/stream` and `/ws/stream` (with `?streams=a/b`), the
paths of Binance's combined-stream endpoint, so a client configured with a Binance-like base URL
works unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import WebSocket, get, websocket
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from solver.notify.ws.channels import FundingChannel, MarkPriceChannel, PositionStateChannel, UpnlChannel
from solver.notify.ws.marks import BookTickerOut
from solver.notify.ws.service import Streams
from solver.notify.ws.session import Connection, serve

StreamsDep = NamedDependency[Streams]
Socket = WebSocket[Any, Any, Any]


def _paths(name: str) -> list[str]:
    return [f"/ws/{name}", f"/{name}"]


@websocket(_paths("upnl-ws"))
async def upnl_ws(socket: Socket, streams: StreamsDep) -> None:
    conn = Connection(socket)
    await serve(conn, UpnlChannel(conn, streams))


@websocket(_paths("position-state-ws3"))
async def position_state_ws(socket: Socket, streams: StreamsDep) -> None:
    conn = Connection(socket)
    await serve(conn, PositionStateChannel(conn, streams))


@websocket(_paths("funding-rate-ws"))
async def funding_rate_ws(socket: Socket, streams: StreamsDep) -> None:
    conn = Connection(socket)
    await serve(conn, FundingChannel(conn, streams))


@websocket([*_paths("mark-price-ws"), *_paths("stream")])
async def mark_price_ws(socket: Socket, streams: StreamsDep) -> None:
    conn = Connection(socket)
    channel = MarkPriceChannel(conn, streams)
    channel.subscribe_query(socket.query_params.get("streams"))
    await serve(conn, channel)


@get(
    "/fapi/v1/ticker/bookTicker",
    summary="Best bid and ask the solver quotes now, hedger fee included (Binance format)",
    description="Ask = mark × (1 + hedger_fee_open), bid = mark × (1 − hedger_fee_open), rounded like the fills "
    "to the price precision; quantity = max_notional_value / mark. Markets without a fresh price are left "
    "out; with `symbol`, that market's object (503 when its price is stale).",
    tags=["market"],
)
async def book_ticker(
    streams: StreamsDep,
    symbol: Annotated[str | None, QueryParameter(name="symbol", description="Market name, e.g. BTCUSDT")] = None,
) -> list[BookTickerOut] | BookTickerOut:
    if symbol is None:
        return await streams.marks.book_tickers()
    return await streams.marks.book_ticker(symbol)


def ws_routes() -> list[Any]:
    return [upnl_ws, position_state_ws, funding_rate_ws, mark_price_ws, book_ticker]
