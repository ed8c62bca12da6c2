"""The local contracts against chain.md, on a real anvil (no mocks).

Interface: selectors, topic0 values, the hand-written ABIs. Behaviour: delegation through
MultiAccount, oracle signatures from the Python signer (and tampered ones), the quote lifecycle
with balances, the cancel and expiry paths. Each test gets its own funded sub-account, so the
shared session devnet is left usable for other tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from solver.devnet.artifacts import canonical_type, load_artifact, signature
from solver.devnet.deploy import DELEGATED_SIGNATURES, DevnetInfo, anvil_key, selector
from solver.oracle.signer import OracleSigner, SingleUpnlAndPriceSig

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WAD = 10**18
LONG, SHORT = 0, 1
LIMIT, MARKET = 0, 1
PENDING, LOCKED, CANCEL_PENDING, CANCELED, OPENED, CLOSE_PENDING, CANCEL_CLOSE_PENDING, CLOSED = range(8)
EXPIRED = 9
BTC = 1

SPEC_SELECTORS = {
    "sendQuote": "0x7f2755b2",
    "sendQuoteWithAffiliate": "0x40f1310c",
    "requestToClosePosition": "0x501e891f",
    "requestToCancelQuote": "0xa8ffc7ab",
    "requestToCancelCloseRequest": "0xa63b9363",
    "allocate": "0x90ca796b",
}
SPEC_TOPICS = {
    "SendQuote": "0x8a17f103c77224ce4d9bab74dad3bd002cd24cf88d2e191e86d18272c8f135dd",
    "LockQuote": "0xbd146e7cbb5d500e754c322f31ac6fff088d4b1037f7451c55520b9a5ad00cb8",
    "OpenPosition": "0xa50f98254710514f60327a4e909cd0be099a62f316299907ef997f3dc4d1cda5",
    "FillCloseRequest": "0xfa7483d69b899cf16df47cc736ab853f88135f704980d7d358a9746aead7a321",
    "Call": "0x268e99f0b37c8146a6aea7c6af329e3924d9c92c4386be924c2990926d99b661",
}
# Locked values of a 10x BTC position of 0.1 at 60,000 (trading-rules.md §1, cn = 0.01).
QTY = WAD // 10
PRICE = 60_000 * WAD
CVA, LF, PARTY_AMM = 40 * WAD, 20 * WAD, 540 * WAD
FEE_RATE = 6 * 10**14  # 0.0006 (config/local.toml)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


@dataclass
class Log:
    name: str
    address: str
    args: dict[str, Any]


def _topic_index(*contracts: Contract) -> dict[bytes, dict[str, Any]]:
    index = {}
    for c in contracts:
        for e in c.abi:
            if e["type"] == "event":
                index[keccak(text=signature(e))] = e
    return index


def _checksummed(param: dict[str, Any], value: Any) -> Any:
    if param["type"] == "address":
        return to_checksum_address(value)
    if param["type"] == "address[]":
        return [to_checksum_address(v) for v in value]
    return value


def decode_logs(receipt: Any, index: dict[bytes, dict[str, Any]]) -> list[Log]:
    """Decode by topic0, so both forms of an overloaded event come out."""
    out = []
    for raw in receipt["logs"]:
        event = index.get(bytes(raw["topics"][0]))
        if event is None:
            continue
        plain = [p for p in event["inputs"] if not p["indexed"]]
        values = abi_decode([canonical_type(p) for p in plain], bytes(raw["data"]))
        args = {p["name"]: _checksummed(p, v) for p, v in zip(plain, values, strict=True)}
        indexed = [p for p in event["inputs"] if p["indexed"]]
        for p, topic in zip(indexed, raw["topics"][1:], strict=True):
            args[p["name"]] = _checksummed(p, abi_decode([p["type"]], bytes(topic))[0])
        out.append(Log(event["name"], raw["address"], args))
    return out


@dataclass
class Chain:
    w3: Web3
    info: DevnetInfo
    oracle: OracleSigner
    symmio: Contract
    multi: Contract
    collateral: Contract
    topics: dict[bytes, dict[str, Any]]

    @property
    def solver(self) -> str:
        return self.info.solver

    def send(self, fn: Any, sender: str) -> Any:
        """Send from an unlocked anvil account; fail the test on revert."""
        receipt = self.w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}), poll_latency=0.01)
        assert receipt["status"] == 1
        return receipt

    def revert_reason(self, fn: Any, sender: str) -> str:
        with pytest.raises(ContractLogicError) as exc:
            fn.call({"from": sender})
        return str(exc.value.message)

    def logs(self, receipt: Any, name: str | None = None) -> list[Log]:
        logs = decode_logs(receipt, self.topics)
        return [log for log in logs if name is None or log.name == name]

    def quote(self, quote_id: int) -> dict[str, Any]:
        names = [c["name"] for c in self.symmio.get_function_by_name("getQuote").abi["outputs"][0]["components"]]
        return dict(zip(names, self.symmio.functions.getQuote(quote_id).call(), strict=True))

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    # ---- oracle signatures for the current nonces ------------------------------------------------
    def quote_sig(self, account: str, *, price: int = PRICE, upnl: int = 0, **kw: Any) -> SingleUpnlAndPriceSig:
        nonce_a = kw.pop("nonce_a", None)
        return self.oracle.single_upnl_and_price(
            diamond=self.symmio.address,
            chain_id=self.info.chain_id,
            party_a=account,
            nonce_a=self.symmio.functions.nonceOfPartyA(account).call() if nonce_a is None else nonce_a,
            upnl=upnl,
            symbol_id=kw.pop("symbol_id", BTC),
            price=price,
            **kw,
        )

    def lock_sig(self, account: str) -> Any:
        return self.oracle.party_b_upnl(
            diamond=self.symmio.address,
            chain_id=self.info.chain_id,
            party_b=self.solver,
            party_a=account,
            nonce_b=self.symmio.functions.nonceOfPartyB(self.solver, account).call(),
            upnl=0,
        )

    def pair_sig(self, account: str, price: int) -> Any:
        return self.oracle.pair_upnl_and_price(
            diamond=self.symmio.address,
            chain_id=self.info.chain_id,
            party_b=self.solver,
            party_a=account,
            nonce_b=self.symmio.functions.nonceOfPartyB(self.solver, account).call(),
            nonce_a=self.symmio.functions.nonceOfPartyA(account).call(),
            upnl_party_b=0,
            upnl_party_a=0,
            symbol_id=BTC,
            price=price,
        )

    # ---- calldata for MultiAccount._call -------------------------------------------------------------
    def send_quote_data(
        self,
        account: str,
        *,
        side: int = LONG,
        order: int = MARKET,
        price: int = PRICE * 101 // 100,
        quantity: int = QTY,
        locked: tuple[int, int, int, int] = (CVA, LF, PARTY_AMM, 0),
        deadline: int | None = None,
        sig: SingleUpnlAndPriceSig | None = None,
        affiliate: bool = True,
    ) -> bytes:
        sig = sig or self.quote_sig(account)
        deadline = self.now() + 600 if deadline is None else deadline
        head = [[], BTC, side, order, price, quantity, *locked, 200 * WAD, deadline]
        if affiliate:
            return bytes.fromhex(
                self.symmio.encode_abi(
                    "sendQuoteWithAffiliate", args=[*head, self.info.admin, sig.as_tuple()]
                ).removeprefix("0x")
            )
        return bytes.fromhex(self.symmio.encode_abi("sendQuote", args=[*head, sig.as_tuple()]).removeprefix("0x"))

    def encode(self, fn_name: str, *args: Any) -> bytes:
        return bytes.fromhex(self.symmio.encode_abi(fn_name, args=list(args)).removeprefix("0x"))

    def call_as_solver(self, account: str, *datas: bytes) -> Any:
        return self.send(self.multi.functions._call(account, list(datas)), self.solver)

    # ---- flows ------------------------------------------------------------------------------
    def send_quote(self, account: str, **kw: Any) -> int:
        receipt = self.call_as_solver(account, self.send_quote_data(account, **kw))
        sent = [log for log in self.logs(receipt, "SendQuote") if log.args["partyA"] == account]
        assert len(sent) == 1
        return int(sent[0].args["quoteId"])

    def lock(self, quote_id: int, account: str) -> Any:
        return self.send(self.symmio.functions.lockQuote(quote_id, self.lock_sig(account).as_tuple()), self.solver)

    def open(self, quote_id: int, account: str, filled: int, price: int, mark: int = PRICE) -> Any:
        sig = self.pair_sig(account, mark).as_tuple()
        return self.send(self.symmio.functions.openPosition(quote_id, filled, price, sig), self.solver)


@pytest.fixture(scope="module")
def chain(devnet: DevnetInfo, oracle_signer: OracleSigner) -> Chain:
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    symmio = w3.eth.contract(address=devnet.symmio, abi=load_artifact("LocalSymmio").abi)
    multi = w3.eth.contract(address=devnet.multi_account, abi=load_artifact("MultiAccount").abi)
    collateral = w3.eth.contract(address=devnet.collateral, abi=load_artifact("MockCollateral").abi)
    return Chain(w3, devnet, oracle_signer, symmio, multi, collateral, _topic_index(symmio, multi))


@pytest.fixture(scope="module")
def owner(chain: Chain) -> str:
    """First demo owner, with collateral for many sub-accounts; the solver likewise deposits its own
    backing once, so these tests never drain what the deployer gave other tests."""
    owner = chain.info.demo_accounts[0].owner
    budget = 10_000_000 * WAD
    chain.send(chain.collateral.functions.mint(owner, budget), owner)
    chain.send(chain.collateral.functions.approve(chain.multi.address, budget), owner)
    chain.send(chain.collateral.functions.mint(chain.solver, budget), chain.solver)
    chain.send(chain.collateral.functions.approve(chain.symmio.address, budget), chain.solver)
    chain.send(chain.symmio.functions.deposit(budget), chain.solver)
    return owner


@pytest.fixture
def account(chain: Chain, owner: str) -> str:
    """A fresh sub-account: 100,000 allocated, the six selectors delegated, 10,000 from the solver."""
    receipt = chain.send(chain.multi.functions.addAccount("test"), owner)
    acct = to_checksum_address(chain.logs(receipt, "AddAccount")[0].args["account"])
    chain.send(chain.multi.functions.depositAndAllocateForAccount(acct, 100_000 * WAD), owner)
    selectors = [selector(s) for s in DELEGATED_SIGNATURES]
    chain.send(chain.multi.functions.delegateAccesses(acct, chain.solver, selectors, True), owner)
    chain.send(chain.symmio.functions.allocateForPartyB(10_000 * WAD, acct), chain.solver)
    return acct


# ---------------------------------------------------------------------------------------------
# interface
# ---------------------------------------------------------------------------------------------


def test_delegated_selectors_match_spec(chain: Chain) -> None:
    by_name = {e["name"]: e for e in chain.symmio.abi if e["type"] == "function"}
    for name, expected in SPEC_SELECTORS.items():
        assert "0x" + keccak(text=signature(by_name[name]))[:4].hex() == expected, name
    assert ["0x" + selector(s).hex() for s in DELEGATED_SIGNATURES] == list(SPEC_SELECTORS.values())
    call = next(e for e in chain.multi.abi if e.get("name") == "_call")
    assert "0x" + keccak(text=signature(call))[:4].hex() == "0xbd367d8e"


def test_event_topics_match_spec(chain: Chain) -> None:
    topics = {(e["name"], len(e["inputs"])): "0x" + topic.hex() for topic, e in chain.topics.items()}
    assert topics[("SendQuote", 15)] == SPEC_TOPICS["SendQuote"]
    assert topics[("LockQuote", 2)] == SPEC_TOPICS["LockQuote"]
    assert topics[("OpenPosition", 5)] == SPEC_TOPICS["OpenPosition"]
    assert topics[("FillCloseRequest", 7)] == SPEC_TOPICS["FillCloseRequest"]
    assert topics[("Call", 5)] == SPEC_TOPICS["Call"]


def test_overloaded_events_exist_in_both_forms(chain: Chain) -> None:
    names = [e["name"] for e in chain.symmio.abi if e["type"] == "event"]
    for name in (
        "RequestToClosePosition",
        "RequestToCancelCloseRequest",
        "FillCloseRequest",
        "AcceptCancelCloseRequest",
    ):
        assert names.count(name) == 2, name
    assert {"ExpireQuote", "ExpireQuoteOpen", "ExpireQuoteClose"} <= set(names)


def _normalized(params: list[dict[str, Any]], top: bool) -> list[dict[str, Any]]:
    """Types, indexed flags and struct component names; top-level names do not affect encoding."""
    out = []
    for p in params:
        item: dict[str, Any] = {"type": p["type"]}
        if not top:
            item["name"] = p["name"]
        if "indexed" in p:
            item["indexed"] = p["indexed"]
        if "components" in p:
            item["components"] = _normalized(p["components"], top=False)
        out.append(item)
    return out


@pytest.mark.parametrize(
    ("abi_file", "contract"),
    [("Symmio.json", "LocalSymmio"), ("MultiAccount.json", "MultiAccount"), ("ERC20.json", "MockCollateral")],
)
def test_handwritten_abi_entries_exist_in_compiled_contracts(abi_file: str, contract: str) -> None:
    compiled = {(e["type"], signature(e)): e for e in load_artifact(contract).abi if "name" in e}
    written = json.loads((ROOT / "contracts_abi" / abi_file).read_text())
    assert written
    for entry in written:
        key = (entry["type"], signature(entry))
        assert key in compiled, f"{abi_file}: {key} not in {contract}"
        other = compiled[key]
        assert _normalized(entry["inputs"], True) == _normalized(other["inputs"], True), key
        assert _normalized(entry.get("outputs", []), True) == _normalized(other.get("outputs", []), True), key
        assert entry.get("stateMutability") == other.get("stateMutability"), key


# ---------------------------------------------------------------------------------------------
# delegation
# ---------------------------------------------------------------------------------------------


def test_delegated_send_quote_emits_send_quote_and_returns_id(chain: Chain, account: str) -> None:
    receipt = chain.call_as_solver(account, chain.send_quote_data(account))
    sent = chain.logs(receipt, "SendQuote")
    assert len(sent) == 1
    assert sent[0].address == chain.symmio.address
    assert sent[0].args["partyA"] == account
    quote_id = sent[0].args["quoteId"]
    calls = chain.logs(receipt, "Call")
    assert calls[0].args["_success"] is True
    assert calls[0].args["user"] == chain.solver
    assert calls[0].args["_resultData"] == abi_encode(["uint256"], [quote_id])
    assert chain.symmio.functions.getNextQuoteId().call() == quote_id
    q = chain.quote(quote_id)
    assert (q["partyA"], q["quoteStatus"], q["quantity"]) == (account, PENDING, QTY)
    assert q["affiliate"] == chain.info.admin
    assert chain.symmio.functions.getPartyAPendingQuotes(account).call() == [quote_id]


def test_undelegated_caller_is_refused(chain: Chain, account: str) -> None:
    stranger = Account.from_key(anvil_key(9)).address
    data = chain.send_quote_data(account)
    assert chain.revert_reason(chain.multi.functions._call(account, [data]), stranger) == (
        "execution reverted: MultiAccount: Unauthorized access"
    )
    # The solver holds only the six delegated selectors.
    withdraw = chain.encode("withdraw", WAD)
    assert "MultiAccount: Unauthorized access" in chain.revert_reason(
        chain.multi.functions._call(account, [withdraw]), chain.solver
    )
    assert "MultiAccount: Too many calls" in chain.revert_reason(
        chain.multi.functions._call(account, [b"\x00" * 4] * 256), chain.solver
    )


def test_owner_passes_and_diamond_revert_is_bubbled(chain: Chain, account: str, owner: str) -> None:
    # Owner needs no delegation; the diamond's reason comes back unchanged through _call.
    stale_deadline = chain.send_quote_data(account, deadline=chain.now() - 10)
    assert chain.revert_reason(chain.multi.functions._call(account, [stale_deadline]), owner) == (
        "execution reverted: PartyAFacet: Low deadline"
    )
    chain.send(chain.multi.functions._call(account, [chain.send_quote_data(account, affiliate=False)]), owner)


def test_revoke_needs_the_cooldown(chain: Chain, account: str, owner: str) -> None:
    allocate = [selector("allocate(uint256)")]
    assert chain.multi.functions.delegatedAccesses(account, chain.solver, allocate[0]).call()
    chain.send(chain.multi.functions.proposeToRevokeAccesses(account, chain.solver, allocate), owner)
    assert "MultiAccount: Cooldown not reached" in chain.revert_reason(
        chain.multi.functions.revokeAccesses(account, chain.solver, allocate), owner
    )
    assert "MultiAccount: Invalid state" in chain.revert_reason(
        chain.multi.functions.delegateAccesses(account, chain.solver, allocate, False), owner
    )


def test_smart_wallet_1271_and_owning_accounts(chain: Chain) -> None:
    signer = Account.from_key(anvil_key(8))
    artifact = load_artifact("SmartWallet1271")
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = chain.send(factory.constructor(signer.address), signer.address)
    wallet = chain.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)
    message = encode_defunct(text="Sign in to the solver")
    digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(message.body)).encode() + message.body)
    good = signer.sign_message(message).signature
    bad = Account.from_key(anvil_key(7)).sign_message(message).signature
    assert wallet.functions.isValidSignature(digest, good).call() == bytes.fromhex("1626ba7e")
    assert wallet.functions.isValidSignature(digest, bad).call() == bytes.fromhex("ffffffff")
    # The wallet can own a sub-account.
    data = chain.multi.encode_abi("addAccount", args=["wallet"])
    receipt = chain.send(wallet.functions.execute(chain.multi.address, data), signer.address)
    sub = chain.logs(receipt, "AddAccount")[0].args
    assert sub["user"] == wallet.address
    assert chain.multi.functions.owners(sub["account"]).call() == wallet.address
    assert chain.multi.functions.getAccounts(wallet.address, 0, 10).call() == [(sub["account"], "wallet")]


# ---------------------------------------------------------------------------------------------
# oracle signatures
# ---------------------------------------------------------------------------------------------


def _verify_reason(chain: Chain, msg_hash: bytes, sigs: tuple[int, str, str], gateway_sig: bytes) -> str | None:
    try:
        chain.symmio.functions.verifyMuonTSSAndGateway(msg_hash, sigs, gateway_sig).call()
    except ContractLogicError as exc:
        return str(exc.message)
    return None


def test_python_signature_is_accepted(chain: Chain) -> None:
    msg_hash = keccak(b"any message")
    sigs, gateway_sig = chain.oracle.sign_hash(msg_hash)
    assert _verify_reason(chain, msg_hash, sigs.as_tuple(), gateway_sig) is None
    ids = chain.symmio.functions.getMuonIds().call()
    assert ids[1] == chain.oracle.public_key.as_tuple()
    assert ids[2] == chain.oracle.gateway_address


def test_tampered_signatures_are_rejected(chain: Chain) -> None:
    msg_hash = keccak(b"any message")
    sigs, gateway_sig = chain.oracle.sign_hash(msg_hash)
    flipped = (sigs.signature ^ 1, sigs.owner, sigs.nonce)
    assert _verify_reason(chain, msg_hash, flipped, gateway_sig) == "execution reverted: LibMuon: TSS not verified"
    other_hash = keccak(b"another message")
    assert _verify_reason(chain, other_hash, sigs.as_tuple(), gateway_sig) == (
        "execution reverted: LibMuon: TSS not verified"
    )
    stranger = OracleSigner.generate()
    assert _verify_reason(chain, msg_hash, sigs.as_tuple(), stranger.gateway_sign(msg_hash)) == (
        "execution reverted: LibMuon: Gateway is not valid"
    )


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda c, a: c.quote_sig(a, nonce_a=c.symmio.functions.nonceOfPartyA(a).call() + 1), "TSS not verified"),
        (lambda c, a: c.quote_sig(a, timestamp=c.now() - 10_000), "Expired signature"),
        (lambda c, a: c.quote_sig(a, symbol_id=2), "TSS not verified"),
        (
            lambda c, a: OracleSigner.generate(c.oracle.muon_app_id).single_upnl_and_price(
                diamond=c.symmio.address,
                chain_id=c.info.chain_id,
                party_a=a,
                nonce_a=0,
                upnl=0,
                symbol_id=BTC,
                price=PRICE,
            ),
            "TSS not verified",
        ),
    ],
    ids=["wrong-nonce", "stale", "wrong-symbol", "unknown-key"],
)
def test_send_quote_rejects_bad_signature(
    chain: Chain, account: str, tamper: Callable[[Chain, str], SingleUpnlAndPriceSig], reason: str
) -> None:
    data = chain.send_quote_data(account, sig=tamper(chain, account))
    got = chain.revert_reason(chain.multi.functions._call(account, [data]), chain.solver)
    assert got == f"execution reverted: LibMuon: {reason}"


def test_send_quote_with_a_wrong_gateway_is_rejected(chain: Chain, account: str) -> None:
    good = chain.quote_sig(account)
    forged = SingleUpnlAndPriceSig(
        good.req_id,
        good.timestamp,
        good.upnl,
        good.price,
        OracleSigner.generate().gateway_sign(b"\x01" * 32),
        good.sigs,
    )
    data = chain.send_quote_data(account, sig=forged)
    assert chain.revert_reason(chain.multi.functions._call(account, [data]), chain.solver) == (
        "execution reverted: LibMuon: Gateway is not valid"
    )


# ---------------------------------------------------------------------------------------------
# lifecycle
# ---------------------------------------------------------------------------------------------


def test_open_and_close_settles_balances(chain: Chain, account: str) -> None:
    fn = chain.symmio.functions
    allocated_a0 = fn.allocatedBalanceOfPartyA(account).call()
    allocated_b0 = fn.allocatedBalanceOfPartyB(chain.solver, account).call()
    fee = QTY * PRICE // WAD * FEE_RATE // WAD  # MARKET: at the signed price

    quote_id = chain.send_quote(account)
    assert fn.allocatedBalanceOfPartyA(account).call() == allocated_a0 - fee
    assert fn.pendingLockedBalancesOfPartyA(account).call() == (CVA, LF, PARTY_AMM, 0)

    receipt = chain.lock(quote_id, account)
    assert [log.args for log in chain.logs(receipt, "LockQuote")] == [{"partyB": chain.solver, "quoteId": quote_id}]
    assert chain.quote(quote_id)["quoteStatus"] == LOCKED

    nonces = (fn.nonceOfPartyA(account).call(), fn.nonceOfPartyB(chain.solver, account).call())
    opened_price = 60_012 * WAD
    receipt = chain.open(quote_id, account, QTY, opened_price)
    assert chain.logs(receipt, "OpenPosition")[0].args == {
        "quoteId": quote_id,
        "partyA": account,
        "partyB": chain.solver,
        "filledAmount": QTY,
        "openedPrice": opened_price,
    }
    q = chain.quote(quote_id)
    assert (q["quoteStatus"], q["openedPrice"], q["partyB"]) == (OPENED, opened_price, chain.solver)
    assert (fn.nonceOfPartyA(account).call(), fn.nonceOfPartyB(chain.solver, account).call()) == (
        nonces[0] + 1,
        nonces[1] + 1,
    )
    requested = PRICE * 101 // 100
    assert q["lockedValues"][0] == CVA * opened_price // requested  # scaled to the fill price
    assert fn.lockedBalancesOfPartyA(account).call() == q["lockedValues"]
    assert fn.pendingLockedBalancesOfPartyA(account).call() == (0, 0, 0, 0)
    assert fn.getPartyAPendingQuotes(account).call() == []
    assert [p[0] for p in fn.getPartyAOpenPositions(account, 0, 10).call()] == [quote_id]

    close_data = chain.encode("requestToClosePosition", quote_id, 60_900 * WAD, QTY, MARKET, chain.now() + 600)
    receipt = chain.call_as_solver(account, close_data)
    requests = chain.logs(receipt, "RequestToClosePosition")
    assert len(requests) == 2  # legacy form + form with closeId
    close_id = fn.getQuoteCloseId(quote_id).call()
    assert requests[1].args["closeId"] == close_id
    assert chain.quote(quote_id)["quoteStatus"] == CLOSE_PENDING

    closed_price = 61_000 * WAD
    sig = chain.pair_sig(account, closed_price).as_tuple()
    receipt = chain.send(fn.fillCloseRequest(quote_id, QTY, closed_price, sig), chain.solver)
    fills = chain.logs(receipt, "FillCloseRequest")
    assert len(fills) == 2
    assert fills[1].args["closeId"] == close_id
    assert fills[1].args["quoteStatus"] == CLOSED
    q = chain.quote(quote_id)
    assert (q["quoteStatus"], q["closedAmount"], q["avgClosedPrice"]) == (CLOSED, QTY, closed_price)

    pnl = (closed_price - opened_price) * QTY // WAD
    assert fn.allocatedBalanceOfPartyA(account).call() == allocated_a0 - fee + pnl
    assert fn.allocatedBalanceOfPartyB(chain.solver, account).call() == allocated_b0 - pnl
    assert fn.lockedBalancesOfPartyA(account).call() == (0, 0, 0, 0)
    assert fn.lockedBalancesOfPartyB(chain.solver, account).call() == (0, 0, 0, 0)
    assert fn.getPartyAOpenPositions(account, 0, 10).call() == []
    assert fn.nonceOfPartyA(account).call() == nonces[0] + 2


def test_open_rejects_a_worse_price_and_market_partial_fill(chain: Chain, account: str) -> None:
    quote_id = chain.send_quote(account)
    chain.lock(quote_id, account)
    fn = chain.symmio.functions
    too_high = PRICE * 102 // 100
    sig = chain.pair_sig(account, PRICE).as_tuple()
    assert "PartyBFacet: Opened price isn't valid" in chain.revert_reason(
        fn.openPosition(quote_id, QTY, too_high, sig), chain.solver
    )
    assert "PartyBFacet: Invalid filledAmount" in chain.revert_reason(
        fn.openPosition(quote_id, QTY // 2, PRICE, sig), chain.solver
    )
    assert "Accessibility: Should be partyB of quote" in chain.revert_reason(
        fn.openPosition(quote_id, QTY, PRICE, sig), chain.info.admin
    )


def test_limit_partial_fill_creates_child_quote(chain: Chain, account: str) -> None:
    qty = WAD  # 1 BTC at 60,000, 10x
    locked = (400 * WAD, 200 * WAD, 5400 * WAD, 0)
    quote_id = chain.send_quote(account, order=LIMIT, price=PRICE, quantity=qty, locked=locked)
    chain.lock(quote_id, account)
    filled = 4 * WAD // 10
    receipt = chain.open(quote_id, account, filled, 59_900 * WAD)
    children = [log for log in chain.logs(receipt, "SendQuote") if log.args["partyA"] == account]
    assert len(children) == 1
    child_id = children[0].args["quoteId"]
    assert child_id != quote_id
    assert children[0].args["quantity"] == qty - filled
    child = chain.quote(child_id)
    assert (child["quoteStatus"], child["parentId"], child["quantity"]) == (PENDING, quote_id, qty - filled)
    assert child["lockedValues"][0] == locked[0] - locked[0] * filled // qty
    parent = chain.quote(quote_id)
    assert (parent["quoteStatus"], parent["quantity"]) == (OPENED, filled)
    assert chain.symmio.functions.getPartyAPendingQuotes(account).call() == [child_id]


def test_cancel_paths(chain: Chain, account: str) -> None:
    fn = chain.symmio.functions
    allocated0 = fn.allocatedBalanceOfPartyA(account).call()

    # PENDING -> CANCELED at once, fee refunded.
    pending_id = chain.send_quote(account)
    receipt = chain.call_as_solver(account, chain.encode("requestToCancelQuote", pending_id))
    assert chain.logs(receipt, "RequestToCancelQuote")[0].args["quoteStatus"] == CANCELED
    assert chain.quote(pending_id)["quoteStatus"] == CANCELED
    assert fn.allocatedBalanceOfPartyA(account).call() == allocated0

    # LOCKED -> CANCEL_PENDING -> (partyB accepts) CANCELED.
    locked_id = chain.send_quote(account)
    chain.lock(locked_id, account)
    chain.call_as_solver(account, chain.encode("requestToCancelQuote", locked_id))
    assert chain.quote(locked_id)["quoteStatus"] == CANCEL_PENDING
    receipt = chain.send(fn.acceptCancelRequest(locked_id), chain.solver)
    assert chain.logs(receipt, "AcceptCancelRequest")[0].args == {"quoteId": locked_id, "quoteStatus": CANCELED}
    assert fn.allocatedBalanceOfPartyA(account).call() == allocated0
    assert fn.pendingLockedBalancesOfPartyB(chain.solver, account).call() == (0, 0, 0, 0)

    # LOCKED -> unlock -> PENDING.
    unlock_id = chain.send_quote(account)
    chain.lock(unlock_id, account)
    receipt = chain.send(fn.unlockQuote(unlock_id), chain.solver)
    assert chain.logs(receipt, "UnlockQuote")[0].args["quoteStatus"] == PENDING
    assert chain.quote(unlock_id)["partyB"] == "0x" + "00" * 20

    # OPENED -> close requested -> cancel requested -> accepted -> OPENED.
    open_id = chain.send_quote(account)
    chain.lock(open_id, account)
    chain.open(open_id, account, QTY, PRICE)
    chain.call_as_solver(
        account, chain.encode("requestToClosePosition", open_id, 59_000 * WAD, QTY, LIMIT, chain.now() + 600)
    )
    chain.call_as_solver(account, chain.encode("requestToCancelCloseRequest", open_id))
    assert chain.quote(open_id)["quoteStatus"] == CANCEL_CLOSE_PENDING
    receipt = chain.send(fn.acceptCancelCloseRequest(open_id), chain.solver)
    accepted = chain.logs(receipt, "AcceptCancelCloseRequest")
    assert len(accepted) == 2
    assert accepted[1].args["closeId"] == fn.getQuoteCloseId(open_id).call()
    q = chain.quote(open_id)
    assert (q["quoteStatus"], q["quantityToClose"], q["requestedClosePrice"]) == (OPENED, 0, 0)


def test_expire_open_and_close_requests(chain: Chain, account: str) -> None:
    fn = chain.symmio.functions
    position_id = chain.send_quote(account)
    chain.lock(position_id, account)
    chain.open(position_id, account, QTY, PRICE)
    allocated0 = fn.allocatedBalanceOfPartyA(account).call()
    deadline = chain.now() + 2
    quote_id = chain.send_quote(account, deadline=deadline)
    close = chain.encode("requestToClosePosition", position_id, 59_000 * WAD, QTY, MARKET, deadline)
    chain.call_as_solver(account, close)
    assert "LibQuote: Quote isn't expired" in chain.revert_reason(fn.expireQuote([quote_id]), chain.info.admin)
    while int(time.time()) <= deadline:  # instant mining: a new block takes the wall-clock time
        time.sleep(0.2)
    chain.w3.provider.make_request("evm_mine", [])  # calls run on the latest block's timestamp
    receipt = chain.send(fn.expireQuote([quote_id, position_id]), chain.info.admin)
    events = [
        (log.name, log.args["quoteId"], log.args["quoteStatus"])
        for log in chain.logs(receipt)
        if log.name.startswith("ExpireQuote")
    ]
    assert events == [
        ("ExpireQuote", quote_id, EXPIRED),
        ("ExpireQuoteOpen", quote_id, EXPIRED),
        ("ExpireQuote", position_id, OPENED),
        ("ExpireQuoteClose", position_id, OPENED),
    ]
    assert chain.quote(quote_id)["quoteStatus"] == EXPIRED
    assert chain.quote(position_id)["quoteStatus"] == OPENED
    assert fn.allocatedBalanceOfPartyA(account).call() == allocated0  # the expired quote's fee is back
    assert fn.getPartyAPendingQuotes(account).call() == []


def test_lock_and_open_in_one_call_then_partial_close(chain: Chain, account: str) -> None:
    fn = chain.symmio.functions
    quote_id = chain.send_quote(account, side=SHORT, price=PRICE * 99 // 100)
    lock_sig = chain.lock_sig(account).as_tuple()
    pair_sig = chain.pair_sig(account, PRICE).as_tuple()
    receipt = chain.send(fn.lockAndOpenQuote(quote_id, QTY, PRICE, lock_sig, pair_sig), chain.solver)
    assert [log.name for log in chain.logs(receipt) if log.name in ("LockQuote", "OpenPosition")] == [
        "LockQuote",
        "OpenPosition",
    ]
    locked = chain.quote(quote_id)["lockedValues"]
    half = QTY // 2
    close = chain.encode("requestToClosePosition", quote_id, 60_500 * WAD, half, MARKET, chain.now() + 600)
    chain.call_as_solver(account, close)
    allocated_a = fn.allocatedBalanceOfPartyA(account).call()
    sig = chain.pair_sig(account, 60_100 * WAD).as_tuple()
    chain.send(fn.fillCloseRequest(quote_id, half, 60_100 * WAD, sig), chain.solver)
    q = chain.quote(quote_id)
    assert (q["quoteStatus"], q["closedAmount"], q["quantityToClose"]) == (OPENED, half, 0)
    assert q["lockedValues"] == tuple(v - v * half // QTY for v in locked)
    # SHORT closed above the open price: partyA pays (60,100 - 60,000) x 0.05 = 5.
    assert fn.allocatedBalanceOfPartyA(account).call() == allocated_a - 5 * WAD


def test_send_quote_rules(chain: Chain, account: str) -> None:
    def reason(**kw: Any) -> str:
        return chain.revert_reason(
            chain.multi.functions._call(account, [chain.send_quote_data(account, **kw)]), chain.solver
        )

    assert reason(locked=(1, 1, 1, 0)).endswith("PartyAFacet: Quote value is low")
    assert reason(locked=(CVA, 0, PARTY_AMM, 0)).endswith("PartyAFacet: LF is not enough")
    huge = (CVA, 1_000 * WAD, 200_000 * WAD, 0)
    assert reason(locked=huge).endswith("PartyAFacet: insufficient available balance")
