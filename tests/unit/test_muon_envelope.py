"""The Muon wire format: decoding answers (strictly), parsing requests, and MuonClient's
failover and refusal rules over an in-memory HTTP transport."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest

from solver.core.errors import ConfigError, ErrorCode
from solver.oracle import envelope
from solver.oracle.client import OracleError
from solver.oracle.envelope import BadRequest, MalformedEnvelope, Refusal
from solver.oracle.muon import MuonClient
from solver.oracle.signer import (
    OracleSigner,
    PairUpnlAndPriceSig,
    SchnorrSign,
    SingleUpnlAndPriceSig,
    SingleUpnlSig,
)

pytestmark = pytest.mark.unit

DIAMOND = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
PARTY_A = "0xd8058efe0198ae9dD7D563e1b4938Dcbc86A1F81"
PARTY_B = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OWNER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
NONCE = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


def answer(values: dict[str, Any], **result_overrides: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "reqId": "0x" + "ab" * 32,
        "data": {"timestamp": 1_763_700_000, "init": {"nonceAddress": NONCE.lower()}, "result": values},
        "signatures": [{"owner": OWNER, "signature": "0x" + "0f" * 32}],
        "nodeSignature": "0x" + "11" * 65,
    }
    result.update(result_overrides)
    return {"success": True, "result": result}


# --- decode -----------------------------------------------------------------------------------


def test_decode_each_method() -> None:
    single = envelope.decode(answer({"uPnl": "-5", "price": "60000000000000000000000"}), envelope.PARTY_A_WITH_PRICE)
    assert single == SingleUpnlAndPriceSig(
        req_id=b"\xab" * 32,
        timestamp=1_763_700_000,
        upnl=-5,
        price=60_000 * 10**18,
        gateway_signature=b"\x11" * 65,
        sigs=SchnorrSign(signature=int("0f" * 32, 16), owner=OWNER, nonce=NONCE),
    )
    assert envelope.decode(answer({"uPnl": "7"}), envelope.PARTY_A) == SingleUpnlSig(
        single.req_id, single.timestamp, 7, single.gateway_signature, single.sigs
    )
    b = envelope.decode(answer({"uPnl": 3}), envelope.PARTY_B)  # a JSON int is exact too
    assert isinstance(b, SingleUpnlSig) and b.upnl == 3
    pair = envelope.decode(answer({"uPnlA": "-2", "uPnlB": "2", "price": "9"}), envelope.PAIR_WITH_PRICE)
    assert isinstance(pair, PairUpnlAndPriceSig)
    assert (pair.upnl_party_a, pair.upnl_party_b, pair.price) == (-2, 2, 9)


@pytest.mark.parametrize(
    ("text", "value"),
    [("0x01", 1), ("0x" + "ff" * 32, 2**256 - 1), ("123456789", 123456789), ("0xABCdef", 0xABCDEF)],
)
def test_schnorr_signature_hex_or_decimal(text: str, value: int) -> None:
    body = answer({"uPnl": "0"}, signatures=[{"owner": OWNER, "signature": text}])
    assert envelope.decode(body, envelope.PARTY_A).sigs.signature == value


def test_encode_then_decode_round_trip() -> None:
    signer = OracleSigner.generate(muon_app_id=7)
    common = {"diamond": DIAMOND, "chain_id": 31337, "party_a": PARTY_A}
    sigs: list[tuple[str, envelope.AnySig]] = [
        (
            envelope.PARTY_A_WITH_PRICE,
            signer.single_upnl_and_price(**common, nonce_a=1, upnl=-(2**200), symbol_id=1, price=5),
        ),
        (envelope.PARTY_A, signer.party_a_upnl(**common, nonce_a=2, upnl=10**30)),
        (envelope.PARTY_B, signer.party_b_upnl(**common, party_b=PARTY_B, nonce_b=3, upnl=-1)),
        (
            envelope.PAIR_WITH_PRICE,
            signer.pair_upnl_and_price(
                **common, party_b=PARTY_B, nonce_b=1, nonce_a=2, upnl_party_b=4, upnl_party_a=-4, symbol_id=2, price=8
            ),
        ),
    ]  # fmt: skip
    for method, sig in sigs:
        wire = json.loads(json.dumps(envelope.encode(sig)))
        assert envelope.decode(wire, method) == sig
        # Numbers travel as decimal strings: no float anywhere.
        assert all(isinstance(v, str) for v in wire["result"]["data"]["result"].values())
        assert len(wire["result"]["signatures"][0]["signature"]) == 66


def test_refusal_is_not_malformed() -> None:
    with pytest.raises(Refusal) as exc:
        envelope.decode({"success": False, "error": {"message": "  price is stale  "}}, envelope.PARTY_A)
    assert exc.value.message == "price is stale"
    with pytest.raises(Refusal):
        envelope.decode({"success": False, "error": "plain string error"}, envelope.PARTY_A)
    with pytest.raises(Refusal) as long:
        envelope.decode({"success": False, "error": {"message": "x" * 5000}}, envelope.PARTY_A)
    assert len(long.value.message) == 300


def _mutations() -> list[tuple[str, Any]]:
    good = answer({"uPnl": "1", "price": "2"})

    def with_(path: list[Any], value: Any) -> Any:
        body = copy.deepcopy(good)
        node = body
        for key in path[:-1]:
            node = node[key]
        if value is _DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return body

    return [
        ("not an object", [good]),
        ("null", None),
        ("html", "<html>502</html>"),
        ("no success", {"result": good["result"]}),
        ("success string", {**good, "success": "true"}),
        ("false without message", {"success": False}),
        ("false with empty message", {"success": False, "error": {"message": " "}}),
        ("no result", {"success": True}),
        ("no data", with_(["result", "data"], _DELETE)),
        ("no values", with_(["result", "data", "result"], _DELETE)),
        ("missing price", with_(["result", "data", "result", "price"], _DELETE)),
        ("float upnl", with_(["result", "data", "result", "uPnl"], 1.5)),
        ("decimal string upnl", with_(["result", "data", "result", "uPnl"], "1.5")),
        ("exponent upnl", with_(["result", "data", "result", "uPnl"], "1e18")),
        ("bool upnl", with_(["result", "data", "result", "uPnl"], True)),
        ("upnl beyond int256", with_(["result", "data", "result", "uPnl"], str(2**255))),
        ("zero price", with_(["result", "data", "result", "price"], "0")),
        ("negative price", with_(["result", "data", "result", "price"], "-1")),
        ("price beyond uint256", with_(["result", "data", "result", "price"], str(2**256))),
        ("float timestamp", with_(["result", "data", "timestamp"], 1.5)),
        ("zero timestamp", with_(["result", "data", "timestamp"], 0)),
        ("no init", with_(["result", "data", "init"], _DELETE)),
        ("bad nonce address", with_(["result", "data", "init", "nonceAddress"], "0x1234")),
        ("no signatures", with_(["result", "signatures"], [])),
        ("signatures not a list", with_(["result", "signatures"], {"owner": OWNER})),
        ("bad owner", with_(["result", "signatures"], [{"owner": "nope", "signature": "0x01"}])),
        ("zero signature", with_(["result", "signatures"], [{"owner": OWNER, "signature": "0x00"}])),
        ("empty signature", with_(["result", "signatures"], [{"owner": OWNER, "signature": "0x"}])),
        ("int signature", with_(["result", "signatures"], [{"owner": OWNER, "signature": 5}])),
        ("garbage signature", with_(["result", "signatures"], [{"owner": OWNER, "signature": "0xzz"}])),
        ("odd reqId", with_(["result", "reqId"], "0xabc")),
        ("reqId without 0x", with_(["result", "reqId"], "ab" * 32)),
        ("no nodeSignature", with_(["result", "nodeSignature"], _DELETE)),
        ("nodeSignature not hex", with_(["result", "nodeSignature"], "signed")),
    ]


_DELETE = object()


@pytest.mark.parametrize(("what", "body"), _mutations(), ids=[m[0] for m in _mutations()])
def test_malformed_answers_raise_malformed(what: str, body: Any) -> None:
    with pytest.raises(MalformedEnvelope):
        envelope.decode(body, envelope.PARTY_A_WITH_PRICE)


# --- request parsing (server side) ------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        f"app=symmio&method=uPnl_A&params[partyA]={PARTY_A}&params[chainId]=31337&params[symmio]={DIAMOND}",
        f"app=symmio&method=uPnl_A&params%5BpartyA%5D={PARTY_A}&params%5BchainId%5D=31337&params%5Bsymmio%5D={DIAMOND}",
        f"app=symmio&method=uPnl_A&params%5bpartyA%5d={PARTY_A}&params[chainId]=31337&params%5Bsymmio]={DIAMOND}&x=1",
    ],
)
def test_parse_query_with_or_without_percent_encoded_brackets(query: str) -> None:
    app, method, params = envelope.parse_query(query.encode())
    assert (app, method) == ("symmio", "uPnl_A")
    assert params == {"partyA": PARTY_A, "chainId": "31337", "symmio": DIAMOND}
    req = envelope.parse_request(app, method, params, expected_app="symmio")
    assert req == envelope.OracleRequest(method="uPnl_A", party_a=PARTY_A, chain_id=31337, symmio=DIAMOND)


def test_parse_query_rejects_duplicates() -> None:
    with pytest.raises(BadRequest, match="twice"):
        envelope.parse_query("params[partyA]=0x1&params%5BpartyA%5D=0x2")


def test_parse_request_json_values_and_checksums() -> None:
    params = {"partyA": PARTY_A.lower(), "partyB": PARTY_B, "chainId": 31337, "symmio": DIAMOND, "symbolId": 2}
    req = envelope.parse_request("symmio", envelope.PAIR_WITH_PRICE, params, expected_app="symmio")
    assert (req.party_a, req.party_b, req.chain_id, req.symbol_id) == (PARTY_A, PARTY_B, 31337, 2)


@pytest.mark.parametrize(
    ("app", "method", "params", "message"),
    [
        ("other", "uPnl_A", {}, "unknown app"),
        ("symmio", "uPnl_C", {}, "unknown method"),
        ("symmio", None, {}, "unknown method"),
        ("symmio", "uPnl_A", [], "params must be an object"),
        ("symmio", "uPnl_B", {"partyA": PARTY_A, "chainId": "1", "symmio": DIAMOND}, "missing params"),
        ("symmio", "uPnl_A", {"partyA": "0x12", "chainId": "1", "symmio": DIAMOND}, "partyA"),
        ("symmio", "uPnl_A", {"partyA": PARTY_A, "chainId": "-1", "symmio": DIAMOND}, "chainId"),
        ("symmio", "uPnl_A", {"partyA": PARTY_A, "chainId": 1.0, "symmio": DIAMOND}, "chainId"),
        ("symmio", "uPnl_A", {"partyA": PARTY_A, "chainId": True, "symmio": DIAMOND}, "chainId"),
        ("symmio", "uPnl_A_withSymbolPrice", {"partyA": PARTY_A, "chainId": 1, "symmio": DIAMOND}, "symbolId"),
    ],
)
def test_parse_request_rejects(app: object, method: object, params: object, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        envelope.parse_request(app, method, params, expected_app="symmio")


# --- MuonClient over an in-memory transport ---------------------------------------------------

GOOD = answer({"uPnl": "-5", "price": "7"})


def client_with(handler: Any, urls: list[str]) -> MuonClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return MuonClient(urls, "symmio", 31337, DIAMOND.lower(), timeout_s=1, http=http)


async def test_client_sends_the_muon_query() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=GOOD)

    client = client_with(handler, ["http://muon.example/"])
    sig = await client.party_a_upnl_and_price(party_a=PARTY_A, symbol_id=3)
    assert (sig.upnl, sig.price) == (-5, 7)
    assert seen[0].url.path == "/v1/"
    assert dict(seen[0].url.params) == {
        "app": "symmio",
        "method": "uPnl_A_withSymbolPrice",
        "params[partyA]": PARTY_A,
        "params[chainId]": "31337",
        "params[symmio]": DIAMOND,
        "params[symbolId]": "3",
    }


async def test_client_fails_over_and_reports_unavailable() -> None:
    hits: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        hits.append(host)
        if host == "down":
            raise httpx.ConnectError("refused")
        if host == "slow":
            raise httpx.ReadTimeout("timed out")
        if host == "broken":
            return httpx.Response(502, text="bad gateway")
        if host == "garbage":
            return httpx.Response(200, json={"success": True, "result": {}})
        if host == "limited":
            return httpx.Response(429, json={"success": False, "error": {"message": "slow down"}})
        return httpx.Response(200, json=GOOD)

    hosts = ["down", "slow", "broken", "garbage", "limited"]
    client = client_with(handler, [f"http://{h}" for h in [*hosts, "good"]])
    assert (await client.party_a_upnl_and_price(party_a=PARTY_A, symbol_id=1)).price == 7
    assert hits == [*hosts, "good"]

    down = client_with(handler, [f"http://{h}" for h in hosts])
    with pytest.raises(OracleError) as exc:
        await down.party_a_upnl(party_a=PARTY_A)
    assert exc.value.code is ErrorCode.ORACLE_UNAVAILABLE and exc.value.code.status == 503


@pytest.mark.parametrize("status", [200, 400, 422])
async def test_client_refusal_does_not_fail_over(status: int) -> None:
    hits: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hits.append(request.url.host)
        return httpx.Response(status, json={"success": False, "error": {"message": "BTCUSDT price is stale"}})

    client = client_with(handler, ["http://a", "http://b"])
    with pytest.raises(OracleError) as exc:
        await client.pair_upnl_and_price(party_b=PARTY_B, party_a=PARTY_A, symbol_id=1)
    assert exc.value.code is ErrorCode.ORACLE_REFUSED and exc.value.refused
    assert "BTCUSDT price is stale" in exc.value.message
    assert hits == ["a"]


def test_client_rejects_bad_configuration() -> None:
    with pytest.raises(ConfigError):
        MuonClient([], "symmio", 1, DIAMOND)
    with pytest.raises(ConfigError):
        MuonClient(["ftp://x"], "symmio", 1, DIAMOND)
    with pytest.raises(ConfigError):
        MuonClient(["http://x"], "symmio", 1, "0x12")
