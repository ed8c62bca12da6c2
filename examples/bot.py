"""A trading bot against the solver's HTTP API (http-api.md §1-§3, §6), as a client writes it.

Logs in with Sign-In with Ethereum, opens a 10x MARKET LONG on BTCUSDT, waits for the on-chain
quote id and closes the whole position. Then it opens a second one and protects it with a
trailing stop loss (`POST /stop-loss`, moved up as the mark rises) until the solver's engine
fires it and closes the position, and prints the notifications. Plain HTTP only: nothing from
the `solver` package is imported.

    python examples/bot.py                          # demo account 0 of .data/devnet.json
    python examples/bot.py --base-url http://localhost:8000 --owner-key 0x… --account 0x…

Options can also come from BOT_BASE_URL, BOT_OWNER_KEY, BOT_ACCOUNT, BOT_DEVNET_JSON.
Exits 0 when both positions were opened and closed, 1 with the server's error otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_UP, Decimal
from pathlib import Path
from typing import Any, NoReturn

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct

POLL_S = 0.5
TIMEOUT_S = 60.0
TRAIL = Decimal("0.0005")  # the stop follows 0.05 % under the best mark seen
STOP_TIMEOUT_S = 240.0
WEI = Decimal("1e-18")


def fail(message: str) -> NoReturn:
    print(f"FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def ok(resp: httpx.Response) -> Any:
    """The JSON body of a 200 answer; anything else ends the bot with the server's error body."""
    if resp.status_code != 200:
        fail(f"{resp.request.method} {resp.request.url.path} -> {resp.status_code} {resp.text}")
    return resp.json()


def iso_ms(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def human(x: Decimal) -> str:
    """A decimal string rounded to 18 decimals, never in exponent form."""
    return f"{x.quantize(WEI):f}"


def siwe_text(*, owner: str, account: str, uri: str, chain_id: int, nonce: str, issued: str, expires: str) -> str:
    """The EIP-4361 text of http-api.md §1: domain `localhost`, no Resources lines."""
    return "\n".join(
        [
            "localhost wants you to sign in with your Ethereum account:",
            owner,
            "",
            f"msg: {account}",
            "",
            f"URI: {uri}",
            "Version: 1",
            f"Chain ID: {chain_id}",
            f"Nonce: {nonce}",
            f"Issued At: {issued}",
            f"Expiration Time: {expires}",
        ]
    )


def login(http: httpx.Client, base: str, key: str, account: str, chain_id: int) -> str:
    owner = Account.from_key(key).address
    nonce = ok(http.get(f"/nonce/{account}"))["nonce"]
    now = datetime.now(UTC)
    issued, expires = iso_ms(now), iso_ms(now + timedelta(hours=1))
    uri = f"{base}/login"
    text = siwe_text(
        owner=owner, account=account, uri=uri, chain_id=chain_id, nonce=nonce, issued=issued, expires=expires
    )
    signature = Account.sign_message(encode_defunct(text=text), private_key=key).signature.hex()
    body = {
        "account_address": account,
        "nonce": nonce,
        "issued_at": issued,
        "expiration_time": expires,
        "signature": "0x" + signature.removeprefix("0x"),
    }
    token: str = ok(http.post("/login", json=body, headers={"Origin": "http://localhost:3000"}))["access_token"]
    print(f"logged in: owner {owner}, account {account}")
    return token


def mark_price(http: httpx.Client, name: str) -> Decimal:
    """The market's current price from GET /get_market_info, waiting until there is one."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        info = ok(http.get("/get_market_info")).get(name)
        if info and Decimal(info["price"]) > 0:
            return Decimal(info["price"])
        time.sleep(POLL_S)
    fail(f"no price for {name} after {TIMEOUT_S:.0f} s")


def poll(what: str, fetch: Any, match: Any) -> dict[str, Any]:
    """Call `fetch()` every 0.5 s for up to 60 s until `match(item)` holds for one list item."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for item in fetch():
            if match(item):
                return dict(item)
        time.sleep(POLL_S)
    fail(f"{what} did not settle in {TIMEOUT_S:.0f} s")


def open_long(http: httpx.Client, auth: dict[str, str], account: str, symbol: dict[str, Any], leverage: int) -> Any:
    """A MARKET LONG of the smallest sensible size, accepting up to 1 % above the mark; the
    `GET /instant_open/{account}` item once it has its on-chain quote id."""
    name = symbol["name"]
    mark = mark_price(http, name)
    locked = ok(http.get(f"/get_locked_params/{name}", params={"leverage": leverage}))
    print(f"{name}: symbol id {symbol['symbol_id']}, mark {mark}, locked % at {leverage}x {locked}")
    price_step = Decimal(1).scaleb(-symbol["price_precision"])
    qty_step = Decimal(1).scaleb(-symbol["quantity_precision"])
    price = (mark * Decimal("1.01")).quantize(price_step)
    min_value = Decimal(str(symbol["min_acceptable_quote_value"]))  # cva + lf + partyAmm = N / L
    quantity = max(Decimal("0.01"), (min_value * leverage / price).quantize(qty_step, rounding=ROUND_UP))
    notional = quantity * price
    # Locked values as frontends compute them: percentages of the margin N / L.
    cva = notional * Decimal(locked["cva"]) / 100 / leverage
    lf = notional * Decimal(locked["lf"]) / 100 / leverage
    party_amm = notional * Decimal(locked["partyAmm"]) / 100 / leverage
    party_bmm = notional * Decimal(locked["partyBmm"]) / 100
    body = {
        "symbolId": symbol["symbol_id"],
        "positionType": 0,  # LONG
        "orderType": 1,  # MARKET
        "price": f"{price:f}",
        "quantity": f"{quantity:f}",
        "cva": human(cva),
        "lf": human(lf),
        "partyAmm": human(party_amm),
        "partyBmm": human(party_bmm),
        "maxFundingRate": symbol["max_funding_rate"],
        "deadline": int(time.time()) + 600,
    }
    headers = {**auth, "Idempotency-Key": str(uuid.uuid4())}
    accepted = ok(http.post("/instant_open", json=body, headers=headers))
    temp_id = accepted["temp_quote_id"]
    print(f"instant open accepted: LONG {quantity} {name} at <= {price}, temp quote id {temp_id}")

    opened = poll(
        f"instant open {temp_id}",
        lambda: ok(http.get(f"/instant_open/{account}")),
        lambda item: (
            item["temp_quote_id"] == temp_id
            and (item["status"] in ("failed", "cancelled") or (item["quote_id"] > 0 and item["status"] == "opened"))
        ),
    )
    if opened["status"] != "opened":
        fail(f"instant open {temp_id} {opened['status']}: {opened['error_code']} {opened['error_message']}")
    print(f"opened: quote id {opened['quote_id']} (temp {temp_id}) {json.dumps(opened)}")
    return opened


def close(http: httpx.Client, auth: dict[str, str], account: str, symbol: dict[str, Any], opened: Any) -> None:
    """Close the whole position at up to 1 % under the mark and wait for the fill."""
    quote_id = opened["quote_id"]
    price_step = Decimal(1).scaleb(-symbol["price_precision"])
    close_price = (mark_price(http, symbol["name"]) * Decimal("0.99")).quantize(price_step)
    body = {"quote_id": quote_id, "quantity_to_close": opened["quantity"], "close_price": f"{close_price:f}"}
    print(f"instant close: {ok(http.post('/instant_close', json=body, headers=auth))['message']}")
    closed = poll(
        f"instant close of {quote_id}",
        lambda: ok(http.get(f"/instant_close/{account}")),
        lambda item: item["quote_id"] == quote_id and item["status"] in ("filled", "failed", "cancelled"),
    )
    if closed["status"] != "filled":
        fail(f"instant close of {quote_id} {closed['status']}: {json.dumps(closed)}")
    print(f"closed: quote id {quote_id} filled {closed['quantity_to_close']} at >= {closed['close_price']}")


def trailing_stop(
    http: httpx.Client, auth: dict[str, str], *, owner: str, account: str, symbol: dict[str, Any], opened: Any
) -> None:
    """Keep a stop loss TRAIL under the best mark seen (re-posting replaces the active one) until
    the engine fires it; the solver then closes the position on its own."""
    quote_id = opened["quote_id"]
    price_step = Decimal(1).scaleb(-symbol["price_precision"])
    stop: Decimal | None = None
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        orders = [o for o in ok(http.get(f"/stop-loss/{account}", headers=auth)) if o["quote_id"] == quote_id]
        fired = next((o for o in orders if o["kind"] == "stop_loss" and o["status"] in ("triggered", "filled")), None)
        if fired is not None:
            print(f"stop loss fired: mark {fired['fire_mark']} crossed {fired['trigger_price']}")
            break
        level = (mark_price(http, symbol["name"]) * (1 - TRAIL)).quantize(price_step)
        if stop is None or level > stop:
            body = {
                "userAddress": owner,
                "accountAddress": account,
                "positionSide": 0,
                "symbolId": symbol["symbol_id"],
                "requestedPrice": opened["requested_open_price"],
                "quoteId": quote_id,
                "tpPrice": "",
                "slPrice": f"{level:f}",
                "timestamp": int(time.time() * 1000),
            }
            resp = http.post("/stop-loss", json=body, headers=auth)
            if resp.status_code == 200:
                stop = level
                print(f"stop loss at {level}")
            elif resp.status_code != 400:  # 400: the mark fell under the level meanwhile; look again
                ok(resp)
        time.sleep(POLL_S)
    else:
        fail(f"the stop loss of {quote_id} did not fire in {STOP_TIMEOUT_S:.0f} s")
    closed = poll(
        f"stop loss close of {quote_id}",
        lambda: ok(http.get(f"/instant_close/{account}")),
        lambda item: item["quote_id"] == quote_id and item["status"] in ("filled", "failed", "cancelled"),
    )
    if closed["status"] != "filled":
        fail(f"the stop loss close of {quote_id} {closed['status']}: {json.dumps(closed)}")
    print(f"stopped out: quote id {quote_id} filled {closed['quantity_to_close']} at >= {closed['close_price']}")


def trade(base: str, key: str, account: str, *, chain_id: int, name: str, leverage: int) -> None:
    with httpx.Client(base_url=base, timeout=15) as http:
        token = login(http, base, key, account, chain_id)
        auth = {"Authorization": f"Bearer {token}"}
        owner = Account.from_key(key).address
        symbols = ok(http.get("/contract-symbols"))["symbols"]
        symbol = next((s for s in symbols if s["name"] == name), None) or fail(f"no symbol {name}")

        close(http, auth, account, symbol, open_long(http, auth, account, symbol, leverage))
        opened = open_long(http, auth, account, symbol, leverage)
        trailing_stop(http, auth, owner=owner, account=account, symbol=symbol, opened=opened)

        history = ok(http.post("/position-state/0/20", json={"address": account}))
        print(f"notifications ({history['count']} in all), newest first:")
        for n in history["position_state"][:12]:
            filled = n["filled_amount_close"] or n["filled_amount_open"] or ""
            price_s = n["avg_price_close"] or n["avg_price_open"] or ""
            print(
                f"  quote {n['quote_id']:>4} (temp {n['temp_quote_id']}) {n['last_seen_action']:<32}"
                f" {n['action_status']:<8} {filled} {price_s} {n['failure_message'] or ''}".rstrip()
            )
        print("done")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("BOT_BASE_URL", "http://localhost:8000"))
    parser.add_argument("--owner-key", default=os.environ.get("BOT_OWNER_KEY"), help="the owner EOA's private key")
    parser.add_argument("--account", default=os.environ.get("BOT_ACCOUNT"), help="the sub-account (partyA)")
    parser.add_argument("--devnet-json", default=os.environ.get("BOT_DEVNET_JSON", ".data/devnet.json"))
    parser.add_argument("--chain-id", type=int, help="default: devnet.json's chain id, else 31337")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--leverage", type=int, default=10)
    args = parser.parse_args()

    devnet_path = Path(args.devnet_json)
    devnet = json.loads(devnet_path.read_text()) if devnet_path.exists() else {}
    demo = devnet.get("demo_accounts", [{}])[0]
    key = args.owner_key or demo.get("owner_private_key")
    account = args.account or demo.get("account")
    if not key or not account:
        fail(f"no owner key / account: pass --owner-key and --account, or run `solver dev` to write {devnet_path}")
    chain_id = args.chain_id or devnet.get("chain_id", 31337)
    try:
        trade(args.base_url.rstrip("/"), key, account, chain_id=chain_id, name=args.symbol, leverage=args.leverage)
    except httpx.HTTPError as e:
        fail(f"{args.base_url}: {e!r}")


if __name__ == "__main__":
    main()
