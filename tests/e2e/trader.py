"""A trader as the e2e tests drive it: instant opens and closes over plain HTTP."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import httpx

LEVERAGE = Decimal(10)
CN = Decimal("0.01")  # BTCUSDT maintenance ratio in config/local.toml


def open_body(*, quantity: str = "0.01", price: str = "60600", side: int = 0) -> dict[str, Any]:
    """Locked values exactly as a client computes them at 10x on its price (trading-rules.md §1)."""
    notional = Decimal(quantity) * Decimal(price)
    cva = notional * CN * 2 / 3
    lf = notional * CN / 3
    amm = notional / LEVERAGE - cva - lf
    return {
        "symbolId": 1,
        "positionType": side,
        "orderType": 1,
        "price": price,
        "quantity": quantity,
        "cva": f"{cva:.18f}",
        "lf": f"{lf:.18f}",
        "partyAmm": f"{amm:.18f}",
        "partyBmm": "0",
        "maxFundingRate": "200",
        "deadline": int(time.time()) + 600,
    }


class Trader:
    def __init__(self, client: httpx.AsyncClient, account: str, token: str) -> None:
        self.client = client
        self.account = account
        self.headers = {"Authorization": f"Bearer {token}"}

    async def open(self, body: dict[str, Any] | None = None, *, key: str | None = None) -> httpx.Response:
        headers = dict(self.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.client.post("/instant_open", json=body or open_body(), headers=headers)

    async def opens(self) -> list[dict[str, Any]]:
        r = await self.client.get(f"/instant_open/{self.account}")
        assert r.status_code == 200, r.text
        out: list[dict[str, Any]] = r.json()
        return out

    async def wait_open(self, temp_id: int, timeout: float = 60) -> dict[str, Any]:
        """Poll like a bot: every 0.2 s until the item has a final status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in await self.opens():
                if item["temp_quote_id"] == temp_id and item["status"] in ("opened", "failed", "cancelled"):
                    return item
            await asyncio.sleep(0.2)
        raise AssertionError(f"instant open {temp_id} did not settle")

    async def close(self, quote_id: int, quantity: str, price: str) -> httpx.Response:
        body = {"quote_id": quote_id, "quantity_to_close": quantity, "close_price": price}
        return await self.client.post("/instant_close", json=body, headers=self.headers)

    async def wait_close(self, quote_id: int, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = await self.client.get(f"/instant_close/{self.account}")
            for item in r.json():
                if item["quote_id"] == quote_id and item["status"] in ("filled", "failed", "cancelled"):
                    return dict(item)
            await asyncio.sleep(0.2)
        raise AssertionError(f"close of {quote_id} did not settle")
