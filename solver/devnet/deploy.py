"""Deploy and fund the local contracts on a node (anvil), ready for the solver.

    python -m solver.devnet.deploy --rpc http://127.0.0.1:8545 --out devnet.json

Accounts are anvil's default mnemonic: index 0 admin, 1 solver (PartyB), 2.. demo owners. Each
demo owner gets a sub-account with collateral deposited and allocated, and delegates the six
selectors of chain.md §1 to the solver; the solver deposits collateral and allocates a share to
each demo sub-account (`allocateForPartyB`). Transactions are signed locally and sent one by one,
each pre-flighted by gas estimation, so a failing step stops with the contract's reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.types import Nonce, TxParams, TxReceipt, Wei

from solver.core.units import WAD, to_wei
from solver.devnet.artifacts import Artifact, load_artifact
from solver.market.locked_params import max_leverage as market_max_leverage
from solver.oracle.signer import OracleSigner
from solver.settings import SymbolConfig

log = logging.getLogger(__name__)

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
ADMIN_INDEX, SOLVER_INDEX, FIRST_DEMO_INDEX = 0, 1, 2
DEV_ORACLE_SEED = "symmio-solver-devnet"

# The functions a user delegates to the solver (chain.md §1), by canonical signature.
_SIG_TUPLE = "(bytes,uint256,int256,uint256,bytes,(uint256,address,address))"
_QUOTE_ARGS = "address[],uint256,uint8,uint8,uint256,uint256,uint256,uint256,uint256,uint256,uint256,uint256"
DELEGATED_SIGNATURES = (
    f"sendQuote({_QUOTE_ARGS},{_SIG_TUPLE})",
    f"sendQuoteWithAffiliate({_QUOTE_ARGS},address,{_SIG_TUPLE})",
    "requestToClosePosition(uint256,uint256,uint256,uint8,uint256)",
    "requestToCancelQuote(uint256)",
    "requestToCancelCloseRequest(uint256)",
    "allocate(uint256)",
)


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def anvil_key(index: int, mnemonic: str = ANVIL_MNEMONIC) -> str:
    """Private key (0x hex) of anvil's default account `index`."""
    Account.enable_unaudited_hdwallet_features()
    acct = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
    return "0x" + bytes(acct.key).hex()


def max_leverage(symbol: SymbolConfig) -> int:
    """The market's max leverage (trading-rules.md §1, one definition in solver.market), at least 1
    because the contract needs a positive maxLeverage even for a market that allows none."""
    return max(market_max_leverage(symbol), 1)


@dataclass(frozen=True)
class DemoAccount:
    owner: str
    owner_private_key: str
    account: str  # the sub-account: partyA on the diamond
    name: str


@dataclass(frozen=True)
class DevnetInfo:
    chain_id: int
    rpc_url: str
    deploy_block: int  # first block with our contracts: where an event follower may start
    admin: str
    admin_private_key: str
    collateral: str
    symmio: str  # the diamond (LocalSymmio)
    symmio_account_facet: str
    multi_account: str
    solver: str  # PartyB
    solver_private_key: str
    muon_app_id: int
    oracle_public_key_x: str  # hex; too large for a JSON number that JavaScript reads exactly
    oracle_public_key_parity: int
    oracle_gateway: str
    oracle_schnorr_secret: str  # dev keys, so `solver oracle` can sign for this chain
    oracle_gateway_private_key: str
    demo_accounts: tuple[DemoAccount, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DevnetInfo:
        demos = tuple(DemoAccount(**d) for d in data.get("demo_accounts", ()))
        return cls(**{**data, "demo_accounts": demos})

    @classmethod
    def load(cls, path: Path) -> DevnetInfo:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def oracle_signer(self) -> OracleSigner:
        return OracleSigner(int(self.oracle_schnorr_secret, 16), self.oracle_gateway_private_key, self.muon_app_id)


class DeployError(RuntimeError):
    pass


class Sender:
    """Signs with one key and keeps its own nonce counter; waits for each receipt."""

    def __init__(self, w3: Web3, private_key: str, chain_id: int) -> None:
        self.w3 = w3
        self.chain_id = chain_id
        self.account: LocalAccount = Account.from_key(private_key)
        self.address: ChecksumAddress = self.account.address
        self.private_key = "0x" + bytes(self.account.key).hex()
        self.nonce: int = w3.eth.get_transaction_count(self.address, "pending")

    def send(self, call: ContractFunction | ContractConstructor, what: str) -> TxReceipt:
        params: TxParams = {"from": self.address, "nonce": Nonce(self.nonce), "chainId": self.chain_id}
        try:
            tx = call.build_transaction(params)  # estimates gas: a revert surfaces here, nonce unspent
        except Exception as exc:
            raise DeployError(f"{what}: {exc}") from exc
        tx["gas"] = int(tx["gas"] * 13 // 10)
        return self._sign_and_send(tx, what)

    def send_eth(self, to: ChecksumAddress, value: int) -> TxReceipt:
        tx: TxParams = {"to": to, "value": Wei(value), "gas": 21_000, "gasPrice": self.w3.eth.gas_price}
        tx.update({"from": self.address, "nonce": Nonce(self.nonce), "chainId": self.chain_id})
        return self._sign_and_send(tx, f"fund {to}")

    def deploy(self, artifact: Artifact, *args: Any) -> Contract:
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=HexStr(artifact.bytecode))
        receipt = self.send(factory.constructor(*args), f"deploy {artifact.name}")
        address = receipt["contractAddress"]
        if address is None:
            raise DeployError(f"deploy {artifact.name}: no contract address")
        return self.w3.eth.contract(address=address, abi=artifact.abi)

    def _sign_and_send(self, tx: TxParams, what: str) -> TxReceipt:
        signed = self.account.sign_transaction(cast(dict[str, Any], tx))
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        self.nonce += 1
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.02)
        if receipt["status"] != 1:
            raise DeployError(f"{what}: transaction {tx_hash.to_0x_hex()} reverted")
        log.debug("%s: gas %s", what, receipt["gasUsed"])
        return receipt


def deploy(
    rpc_url: str,
    symbols: Sequence[SymbolConfig],
    *,
    oracle: OracleSigner | None = None,
    admin_private_key: str | None = None,
    solver_private_key: str | None = None,
    n_demo_accounts: int = 3,
    demo_deposit: Decimal = Decimal(100_000),
    solver_deposit: Decimal = Decimal(1_000_000),
    solver_allocation_per_account: Decimal = Decimal(100_000),
    upnl_valid_time: int = 300,
    price_valid_time: int = 300,
    pending_quotes_limit: int = 50,
    balance_limit_per_user: Decimal = Decimal(10_000_000),
) -> DevnetInfo:
    """Deploy collateral, the diamond (+ facet) and MultiAccount; configure, fund and delegate."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    chain_id = w3.eth.chain_id
    oracle = oracle or OracleSigner.from_seed(DEV_ORACLE_SEED)
    admin = Sender(w3, admin_private_key or anvil_key(ADMIN_INDEX), chain_id)
    solver = Sender(w3, solver_private_key or anvil_key(SOLVER_INDEX), chain_id)
    deploy_block = w3.eth.block_number + 1

    # Contracts (admin nonces 0..3 on a fresh chain, so the addresses are stable).
    collateral = admin.deploy(load_artifact("MockCollateral"), "Mock USD", "mUSD")
    facet = admin.deploy(load_artifact("SymmioAccountFacet"))
    symmio = admin.deploy(load_artifact("LocalSymmio"), facet.address)
    multi = admin.deploy(load_artifact("MultiAccount"), symmio.address)

    # Protocol settings.
    fn = symmio.functions
    admin.send(fn.setCollateral(collateral.address), "setCollateral")
    admin.send(fn.setMuonIds(oracle.muon_app_id, oracle.gateway_address, oracle.public_key.as_tuple()), "setMuonIds")
    admin.send(fn.setMuonConfig(upnl_valid_time, price_valid_time), "setMuonConfig")
    admin.send(fn.setPendingQuotesValidLength(pending_quotes_limit), "setPendingQuotesValidLength")
    admin.send(fn.setBalanceLimitPerUser(to_wei(balance_limit_per_user)), "setBalanceLimitPerUser")
    for s in symbols:
        admin.send(
            fn.addSymbol(
                s.symbol_id,
                s.name,
                to_wei(s.min_acceptable_quote_value),
                to_wei(s.min_acceptable_portion_lf),
                to_wei(s.trading_fee),
                max_leverage(s) * WAD,
            ),
            f"addSymbol {s.name}",
        )
        if not s.is_valid:
            admin.send(fn.setSymbolValidationState(s.symbol_id, False), f"invalidate {s.name}")
    admin.send(fn.registerPartyB(solver.address), "registerPartyB")

    # The solver's collateral on the diamond.
    solver_amount = to_wei(solver_deposit)
    solver.send(collateral.functions.mint(solver.address, solver_amount), "mint for solver")
    solver.send(collateral.functions.approve(symmio.address, solver_amount), "approve for solver")
    solver.send(fn.deposit(solver_amount), "solver deposit")

    selectors = [selector(sig) for sig in DELEGATED_SIGNATURES]
    demos = []
    for i in range(n_demo_accounts):
        key = anvil_key(FIRST_DEMO_INDEX + i)
        owner = Sender(w3, key, chain_id)
        if w3.eth.get_balance(owner.address) == 0:  # beyond anvil's pre-funded accounts
            admin.send_eth(owner.address, 10 * WAD)
        name = f"demo-{i + 1}"
        receipt = owner.send(multi.functions.addAccount(name), f"addAccount {name}")
        account = to_checksum_address(multi.events.AddAccount().process_receipt(receipt)[0]["args"]["account"])
        amount = to_wei(demo_deposit)
        owner.send(collateral.functions.mint(owner.address, amount), f"mint for {name}")
        owner.send(collateral.functions.approve(multi.address, amount), f"approve for {name}")
        owner.send(multi.functions.depositAndAllocateForAccount(account, amount), f"depositAndAllocate {name}")
        owner.send(multi.functions.delegateAccesses(account, solver.address, selectors, True), f"delegate {name}")
        if solver_allocation_per_account > 0:
            solver.send(
                fn.allocateForPartyB(to_wei(solver_allocation_per_account), account), f"allocateForPartyB {name}"
            )
        demos.append(DemoAccount(owner=owner.address, owner_private_key=key, account=account, name=name))

    return DevnetInfo(
        chain_id=chain_id,
        rpc_url=rpc_url,
        deploy_block=deploy_block,
        admin=admin.address,
        admin_private_key=admin.private_key,
        collateral=collateral.address,
        symmio=symmio.address,
        symmio_account_facet=facet.address,
        multi_account=multi.address,
        solver=solver.address,
        solver_private_key=solver.private_key,
        muon_app_id=oracle.muon_app_id,
        oracle_public_key_x=hex(oracle.public_key.x),
        oracle_public_key_parity=oracle.public_key.parity,
        oracle_gateway=oracle.gateway_address,
        oracle_schnorr_secret=hex(oracle.schnorr_secret),
        oracle_gateway_private_key=oracle.gateway_private_key,
        demo_accounts=tuple(demos),
    )


def main(argv: list[str] | None = None) -> int:
    from solver.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m solver.devnet.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--rpc", default="http://127.0.0.1:8545")
    parser.add_argument("--out", type=Path, default=None, help="write DevnetInfo JSON here (default: stdout)")
    parser.add_argument("--demo-accounts", type=int, default=3)
    parser.add_argument("--oracle-seed", default=DEV_ORACLE_SEED, help="seed of the deterministic dev oracle keys")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = load_settings()
    oracle = OracleSigner.from_seed(args.oracle_seed, settings.oracle.muon_app_id)
    info = deploy(args.rpc, settings.symbols, oracle=oracle, n_demo_accounts=args.demo_accounts)
    if args.out is None:
        sys.stdout.write(info.to_json())
    else:
        args.out.write_text(info.to_json(), encoding="utf-8")
        log.info("devnet deployed: symmio %s, multi_account %s -> %s", info.symmio, info.multi_account, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
