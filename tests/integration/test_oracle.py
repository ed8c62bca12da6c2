"""The local oracle (`solver oracle`) served over real HTTP by uvicorn, read by MuonClient, with
prices in real Redis and positions on the anvil devnet; every signature is checked by the diamond
(`verifyMuonTSSAndGateway`) and used in real transactions.

Each test works on its own fresh owner and sub-account, so the shared devnet stays untouched.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from solver.__main__ import main as cli_main
from solver.chain.abi import load_abi
from solver.core.errors import ConfigError, ErrorCode
from solver.core.units import WAD, to_wei
from solver.devnet.artifacts import load_artifact
from solver.devnet.deploy import DELEGATED_SIGNATURES, DevnetInfo, selector
from solver.oracle import hashes
from solver.oracle.client import OracleError
from solver.oracle.muon import MuonClient
from solver.oracle.server import create_oracle_app
from solver.oracle.signer import PairUpnlAndPriceSig, SingleUpnlAndPriceSig, SingleUpnlSig
from solver.pricing.cache import PriceCache, PricePoint
from solver.settings import Settings
from tests.fixtures.app import settings_for

pytestmark = pytest.mark.integration

UNUSED_DB = "postgresql://unused@127.0.0.1:1/unused"  # the oracle never opens a database
BTC, LONG, SHORT, MARKET = 1, 0, 1, 1


# --- chain helpers (sync web3, keys signed locally like the solver's own sender) -------------


class Dev:
    def __init__(self, info: DevnetInfo) -> None:
        self.info = info
        self.w3 = Web3(Web3.HTTPProvider(info.rpc_url))
        self.symmio = self.w3.eth.contract(address=info.symmio, abi=load_abi("Symmio"))
        self.multi = self.w3.eth.contract(address=info.multi_account, abi=load_abi("MultiAccount"))
        self.collateral = self.w3.eth.contract(address=info.collateral, abi=load_artifact("MockCollateral").abi)

    def send(self, key: str, call: Any) -> Any:
        """Sign, send, wait; the gas estimate pre-flights the call, so a revert raises here."""
        acct = Account.from_key(key)
        tx = call.build_transaction(
            {
                "from": acct.address,
                "nonce": self.w3.eth.get_transaction_count(acct.address, "pending"),
                "chainId": self.info.chain_id,
            }
        )
        tx["gas"] = int(tx["gas"] * 3 // 2)
        raw = acct.sign_transaction(tx).raw_transaction
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(raw), timeout=60, poll_latency=0.02
        )
        assert receipt["status"] == 1
        return receipt

    def new_account(self) -> str:
        """A fresh owner (gas from the admin) and sub-account: 10,000 allocated, the six selectors
        delegated to the solver, 1,000 allocated by the solver against it."""
        owner = Account.create()
        key = owner.key.to_0x_hex()
        admin = Account.from_key(self.info.admin_private_key)
        fund = {
            "from": admin.address,
            "to": owner.address,
            "value": WAD,
            "gas": 21_000,
            "gasPrice": self.w3.eth.gas_price,
            "nonce": self.w3.eth.get_transaction_count(admin.address, "pending"),
            "chainId": self.info.chain_id,
        }
        self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(admin.sign_transaction(fund).raw_transaction)
        )
        receipt = self.send(key, self.multi.functions.addAccount("oracle-test"))
        account = self.multi.events.AddAccount().process_receipt(receipt, errors=DISCARD)[0]["args"]["account"]
        account = Web3.to_checksum_address(account)
        deposit = 10_000 * WAD
        self.send(key, self.collateral.functions.mint(owner.address, deposit))
        self.send(key, self.collateral.functions.approve(self.info.multi_account, deposit))
        self.send(key, self.multi.functions.depositAndAllocateForAccount(account, deposit))
        selectors = [selector(s) for s in DELEGATED_SIGNATURES]
        self.send(key, self.multi.functions.delegateAccesses(account, self.info.solver, selectors, True))
        self.send(self.info.solver_private_key, self.symmio.functions.allocateForPartyB(1_000 * WAD, account))
        return account

    def as_solver_call(self, account: str, fn_name: str, *args: Any) -> Any:
        """`MultiAccount._call(account, [fn(args)])` signed by the solver (the delegate)."""
        data = bytes.fromhex(self.symmio.encode_abi(fn_name, args=list(args)).removeprefix("0x"))
        return self.send(self.info.solver_private_key, self.multi.functions._call(account, [data]))

    def as_party_b(self, call: Any) -> Any:
        return self.send(self.info.solver_private_key, call)

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def nonce_a(self, account: str) -> int:
        return int(self.symmio.functions.nonceOfPartyA(account).call())

    def nonce_b(self, account: str) -> int:
        return int(self.symmio.functions.nonceOfPartyB(self.info.solver, account).call())

    def verify(self, msg_hash: bytes, sig: Any) -> None:
        """The diamond's own check of the Schnorr and gateway signatures (reverts if bad)."""
        self.symmio.functions.verifyMuonTSSAndGateway(msg_hash, sig.sigs.as_tuple(), sig.gateway_signature).call()


@pytest.fixture(scope="module")
def dev(devnet: DevnetInfo) -> Dev:
    return Dev(devnet)


# --- the oracle under uvicorn ----------------------------------------------------------------


@pytest.fixture
def oracle_settings(devnet: DevnetInfo, redis_prefix: str) -> Settings:
    keys = {
        "muon_app_id": devnet.muon_app_id,
        "schnorr_secret": devnet.oracle_schnorr_secret,
        "gateway_private_key": devnet.oracle_gateway_private_key,
    }
    return settings_for(devnet, UNUSED_DB, redis_prefix, oracle=keys)


@pytest.fixture
async def oracle_url(oracle_settings: Settings) -> AsyncIterator[str]:
    """`solver oracle` as the CLI runs it (its own Redis client and chain reader), on a free port."""
    config = uvicorn.Config(create_oracle_app(oracle_settings), host="127.0.0.1", port=0, log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the oracle server stopped during startup")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, 10)


@pytest.fixture
async def muon(oracle_settings: Settings, oracle_url: str) -> AsyncIterator[MuonClient]:
    client = MuonClient(
        [oracle_url],
        oracle_settings.oracle.app_name,
        oracle_settings.chain.chain_id,
        oracle_settings.chain.symmio_address,
    )
    yield client
    await client.close()


@pytest.fixture
def prices(redis_client: aioredis.Redis, redis_prefix: str) -> PriceCache:
    return PriceCache(redis_client, redis_prefix)


async def set_price(prices: PriceCache, price: str, *, age_s: float = 0.0, symbol: str = "BTCUSDT") -> None:
    await prices.set(PricePoint(symbol, Decimal(price), time.time() - age_s))


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A port nothing listens on (bound then released): connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield f"http://127.0.0.1:{port}"


# --- signatures checked by the diamond -------------------------------------------------------


async def test_each_signature_verifies_on_chain(dev: Dev, muon: MuonClient, prices: PriceCache) -> None:
    account, info = dev.new_account(), dev.info
    await set_price(prices, "60000.5")
    common = {"muon_app_id": info.muon_app_id, "diamond": info.symmio, "chain_id": info.chain_id}

    quote = await muon.party_a_upnl_and_price(party_a=account, symbol_id=BTC)
    assert (quote.upnl, quote.price) == (0, to_wei(Decimal("60000.5")))
    quote_hash = hashes.single_upnl_and_price_hash(
        **common, req_id=quote.req_id, party_a=account, nonce_a=dev.nonce_a(account), upnl=0,
        symbol_id=BTC, price=quote.price, timestamp=quote.timestamp,
    )  # fmt: skip
    dev.verify(quote_hash, quote)

    a = await muon.party_a_upnl(party_a=account)
    a_hash = hashes.party_a_upnl_hash(
        **common, req_id=a.req_id, party_a=account, nonce_a=dev.nonce_a(account), upnl=a.upnl, timestamp=a.timestamp
    )
    dev.verify(a_hash, a)

    b = await muon.party_b_upnl(party_b=info.solver, party_a=account)
    b_hash = hashes.party_b_upnl_hash(
        **common, req_id=b.req_id, party_b=info.solver, party_a=account, nonce_b=dev.nonce_b(account),
        upnl=b.upnl, timestamp=b.timestamp,
    )  # fmt: skip
    dev.verify(b_hash, b)

    pair = await muon.pair_upnl_and_price(party_b=info.solver, party_a=account, symbol_id=BTC)
    pair_hash = hashes.pair_upnl_and_price_hash(
        **common, req_id=pair.req_id, party_b=info.solver, party_a=account, nonce_b=dev.nonce_b(account),
        nonce_a=dev.nonce_a(account), upnl_party_b=pair.upnl_party_b, upnl_party_a=pair.upnl_party_a,
        symbol_id=BTC, price=pair.price, timestamp=pair.timestamp,
    )  # fmt: skip
    dev.verify(pair_hash, pair)

    # The check is meaningful: the same signature over another uPnL is rejected.
    tampered = hashes.party_a_upnl_hash(
        **common, req_id=a.req_id, party_a=account, nonce_a=dev.nonce_a(account), upnl=1, timestamp=a.timestamp
    )
    with pytest.raises(ContractLogicError):
        dev.verify(tampered, a)
    assert abs(pair.timestamp - time.time()) < 30


# --- a full trade on oracle signatures --------------------------------------------------------


async def open_position(
    dev: Dev,
    muon: MuonClient,
    account: str,
    *,
    side: int,
    requested: str,
    opened: str,
    qty: str,
    locked: tuple[str, ...],
) -> int:
    """sendQuoteWithAffiliate through `_call`, lockQuote, openPosition: every uPnL/price from the oracle."""
    sig = await muon.party_a_upnl_and_price(party_a=account, symbol_id=BTC)
    assert isinstance(sig, SingleUpnlAndPriceSig)
    cva, lf, amm = (to_wei(Decimal(v)) for v in locked)
    receipt = dev.as_solver_call(
        account, "sendQuoteWithAffiliate",
        [dev.info.solver], BTC, side, MARKET, to_wei(Decimal(requested)), to_wei(Decimal(qty)), cva, lf, amm, 0,
        200 * WAD, dev.now() + 600, dev.info.admin, sig.as_tuple(),
    )  # fmt: skip
    sent = dev.symmio.events.SendQuote().process_receipt(receipt, errors=DISCARD)
    assert [e["args"]["partyA"] for e in sent] == [account]
    quote_id = int(sent[0]["args"]["quoteId"])

    lock = await muon.party_b_upnl(party_b=dev.info.solver, party_a=account)
    dev.as_party_b(dev.symmio.functions.lockQuote(quote_id, lock.as_tuple()))
    pair = await muon.pair_upnl_and_price(party_b=dev.info.solver, party_a=account, symbol_id=BTC)
    fill = dev.symmio.functions.openPosition(quote_id, to_wei(Decimal(qty)), to_wei(Decimal(opened)), pair.as_tuple())
    dev.as_party_b(fill)
    return quote_id


def decimal_upnl(dev: Dev, account: str, mark: Decimal) -> tuple[int, int]:
    """(partyA, partyB) uPnL in wei from getQuote and Decimal math, rounded toward zero."""
    total = Decimal(0)
    with localcontext() as ctx:
        ctx.prec = 120
        for raw in dev.symmio.functions.getPartyAOpenPositions(account, 0, 50).call():
            q = dev.symmio.functions.getQuote(raw[0]).call()
            side = 1 if q[3] == LONG else -1
            opened, qty, closed = (Decimal(q[i]) / WAD for i in (5, 9, 10))
            total += side * (mark - opened) * (qty - closed)
        a = int((total * WAD).to_integral_value(rounding=ROUND_DOWN))
    return a, -a


async def test_trade_end_to_end_and_upnl_matches_decimal(dev: Dev, muon: MuonClient, prices: PriceCache) -> None:
    account, solver = dev.new_account(), dev.info.solver
    await set_price(prices, "60000")
    # 0.02 LONG at 60,000 and 0.013 SHORT at 60,000.5, both 10x (trading-rules.md §1, cn 0.01).
    long_id = await open_position(
        dev, muon, account, side=LONG, requested="60100", opened="60000", qty="0.02", locked=("8", "4", "108")
    )
    await open_position(
        dev, muon, account, side=SHORT, requested="59900", opened="60000.5", qty="0.013", locked=("5.2", "2.6", "70.2")
    )

    # A mark with 18 decimals: the products need 21, so the signed uPnL is truncated toward zero.
    mark = Decimal("60123.123456789012345678")
    await set_price(prices, str(mark))
    expected_a, expected_b = decimal_upnl(dev, account, mark)
    diff_long, diff_short = to_wei(mark) - 60_000 * WAD, to_wei(mark) - to_wei(Decimal("60000.5"))
    assert expected_a == (diff_long * 20 - diff_short * 13) // 1000  # positive: floor is truncation
    a = await muon.party_a_upnl(party_a=account)
    b = await muon.party_b_upnl(party_b=solver, party_a=account)
    pair = await muon.pair_upnl_and_price(party_b=solver, party_a=account, symbol_id=BTC)
    quote = await muon.party_a_upnl_and_price(party_a=account, symbol_id=BTC)
    assert a.upnl == quote.upnl == pair.upnl_party_a == expected_a != 0
    assert b.upnl == pair.upnl_party_b == expected_b
    assert quote.price == pair.price == to_wei(mark)

    # The diamond takes the non-zero uPnL: a new quote with it succeeds...
    receipt = dev.as_solver_call(
        account, "sendQuoteWithAffiliate",
        [solver], BTC, LONG, MARKET, 61_000 * WAD, WAD // 100, 4 * WAD, 2 * WAD, 54 * WAD, 0,
        200 * WAD, dev.now() + 600, dev.info.admin, quote.as_tuple(),
    )  # fmt: skip
    assert receipt["status"] == 1
    # ...and a close fills on a pair signature fetched after the nonce changes.
    dev.as_solver_call(
        account, "requestToClosePosition", long_id, to_wei(Decimal(60_000)), WAD * 2 // 100, MARKET, dev.now() + 600
    )
    close = await muon.pair_upnl_and_price(party_b=solver, party_a=account, symbol_id=BTC)
    assert isinstance(close, PairUpnlAndPriceSig)
    dev.as_party_b(dev.symmio.functions.fillCloseRequest(long_id, WAD * 2 // 100, close.price, close.as_tuple()))
    assert dev.symmio.functions.getQuote(long_id).call()[16] == 7  # CLOSED
    after = await muon.party_a_upnl(party_a=account)
    assert isinstance(after, SingleUpnlSig)
    # Only the SHORT is left, at a loss: truncated toward zero, not floored.
    assert after.upnl == decimal_upnl(dev, account, mark)[0] == -(diff_short * 13 // 1000)
    assert (diff_short * 13) % 1000 != 0


# --- refusals, failover, the HTTP shape ------------------------------------------------------


async def test_stale_price_is_refused_missing_price_is_unavailable(
    dev: Dev, muon: MuonClient, prices: PriceCache, oracle_url: str
) -> None:
    account = dev.new_account()
    with pytest.raises(OracleError) as missing:  # none published yet / Redis lost it: retry later
        await muon.party_a_upnl_and_price(party_a=account, symbol_id=BTC)
    assert missing.value.code is ErrorCode.ORACLE_UNAVAILABLE and not missing.value.refused
    raw = await _get(oracle_url, "uPnl_A_withSymbolPrice", dev, partyA=account, symbolId="1")
    assert raw.status_code == 503
    assert "No price is available for BTCUSDT" in raw.json()["error"]["message"]

    await set_price(prices, "60000", age_s=60)
    with pytest.raises(OracleError) as stale:
        await muon.pair_upnl_and_price(party_b=dev.info.solver, party_a=account, symbol_id=BTC)
    assert stale.value.code is ErrorCode.ORACLE_REFUSED
    assert re.search(r"BTCUSDT price is 6\d s old", stale.value.message)

    raw = await _get(oracle_url, "uPnl_A_withSymbolPrice", dev, partyA=account, symbolId="1")
    assert raw.status_code == 400
    assert raw.json() == {"success": False, "error": {"message": raw.json()["error"]["message"]}}
    assert "s old" in raw.json()["error"]["message"]

    with pytest.raises(OracleError) as unknown:
        await muon.party_a_upnl_and_price(party_a=account, symbol_id=999)
    assert unknown.value.code is ErrorCode.ORACLE_REFUSED
    assert "999" in unknown.value.message


async def test_failover_to_the_next_url(
    dev: Dev, oracle_settings: Settings, oracle_url: str, dead_url: str, prices: PriceCache
) -> None:
    await set_price(prices, "60000")
    account = dev.new_account()
    chain_id, symmio = oracle_settings.chain.chain_id, oracle_settings.chain.symmio_address

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers; returns when the client gives up
        writer.close()

    hang = await asyncio.start_server(silent, "127.0.0.1", 0)
    hang_url = f"http://127.0.0.1:{hang.sockets[0].getsockname()[1]}"
    try:
        # Connection refused, a read timeout, a 404 with a success:false body, then the oracle.
        urls = [dead_url, hang_url, f"{oracle_url}/wrong-path", oracle_url]
        client = MuonClient(urls, "symmio", chain_id, symmio, timeout_s=0.5)
        sig = await client.party_a_upnl_and_price(party_a=account, symbol_id=BTC)
        assert sig.price == 60_000 * WAD
        await client.close()

        down = MuonClient([dead_url, hang_url], "symmio", chain_id, symmio, timeout_s=0.5)
        with pytest.raises(OracleError) as exc:
            await down.party_a_upnl(party_a=account)
        assert exc.value.code is ErrorCode.ORACLE_UNAVAILABLE and not exc.value.refused
        await down.close()
    finally:
        hang.close()


async def _get(base: str, method: str, dev: Dev, *, raw_query: str | None = None, **params: str) -> httpx.Response:
    query = {"app": "symmio", "method": method, "chainId": str(dev.info.chain_id), "symmio": dev.info.symmio, **params}
    text = raw_query or "&".join(f"{k}={v}" if k in ("app", "method") else f"params[{k}]={v}" for k, v in query.items())
    async with httpx.AsyncClient() as http:
        return await http.get(f"{base}/v1/?{text}")


async def test_http_shape(dev: Dev, oracle_url: str, prices: PriceCache) -> None:
    await set_price(prices, "60000")
    account, info = dev.new_account(), dev.info
    where = f"params%5BchainId%5D={info.chain_id}&params%5Bsymmio%5D={info.symmio}"
    encoded = await _get(
        oracle_url, "", dev, raw_query=f"app=symmio&method=uPnl_B&params%5BpartyA%5D={account}"
        f"&params%5BpartyB%5D={info.solver}&{where}",
    )  # fmt: skip
    assert encoded.status_code == 200, encoded.text
    body = encoded.json()
    assert set(body) == {"success", "result"} and body["success"] is True
    result = body["result"]
    assert set(result) == {"reqId", "data", "signatures", "nodeSignature"}
    assert set(result["data"]) == {"timestamp", "init", "result"}
    assert isinstance(result["data"]["timestamp"], int)
    assert result["data"]["result"] == {"uPnl": "0"}
    assert result["signatures"][0]["signature"].startswith("0x")
    assert result["signatures"][0]["owner"] == info.oracle_signer().owner
    assert len(bytes.fromhex(result["nodeSignature"][2:])) == 65

    plain = await _get(oracle_url, "uPnlWithSymbolPrice", dev, partyA=account.lower(), partyB=info.solver, symbolId="1")
    assert plain.status_code == 200
    assert plain.json()["result"]["data"]["result"] == {"uPnlA": "0", "uPnlB": "0", "price": str(60_000 * WAD)}

    async with httpx.AsyncClient() as http:
        posted = await http.post(
            f"{oracle_url}/v1/",
            json={"app": "symmio", "method": "uPnl_A", "params": {"partyA": account, "chainId": info.chain_id,
                                                                   "symmio": info.symmio}},
        )  # fmt: skip
        assert posted.status_code == 200 and posted.json()["result"]["data"]["result"] == {"uPnl": "0"}
        health = await http.get(f"{oracle_url}/health")
        assert health.status_code == 200 and health.json()["checks"] == {"redis": True, "chain": True}

    bad = {
        "unknown method": await _get(oracle_url, "uPnl_X", dev, partyA=account),
        "missing param": await _get(oracle_url, "uPnl_A_withSymbolPrice", dev, partyA=account),
        "bad address": await _get(oracle_url, "uPnl_A", dev, partyA="0x1234"),
        "other chain": await _get(oracle_url, "uPnl_A", dev, partyA=account, chainId="1"),
        "other app": await _get(oracle_url, "", dev, raw_query="app=other&method=uPnl_A"),
    }
    for what, resp in bad.items():
        assert resp.status_code == 400, what
        assert resp.json()["success"] is False, what
        assert resp.json()["error"]["message"], what


def test_refuses_to_start_without_keys(devnet: DevnetInfo, redis_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="schnorr_secret"):
        create_oracle_app(settings_for(devnet, UNUSED_DB, redis_prefix))
    bad = settings_for(devnet, UNUSED_DB, redis_prefix, oracle={"schnorr_secret": "zz", "gateway_private_key": "0x01"})
    with pytest.raises(ConfigError) as exc:
        create_oracle_app(bad)
    assert "zz" not in str(exc.value)  # never echoes a secret
    for var in ("SOLVER_ORACLE__SCHNORR_SECRET", "SOLVER_ORACLE__GATEWAY_PRIVATE_KEY"):
        monkeypatch.delenv(var, raising=False)
    assert cli_main(["oracle", "--port", "1"]) == 2
