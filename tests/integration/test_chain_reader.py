"""Web3ChainReader against the project's contracts on anvil."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from solver.app import create_app
from solver.chain.web3_reader import Web3ChainReader
from solver.core.errors import ConfigError
from solver.devnet.deploy import DELEGATED_SIGNATURES, selector
from solver.settings import ChainSettings
from tests.fixtures.app import settings_for

pytestmark = pytest.mark.integration

SELECTORS = ["0x7f2755b2", "0x40f1310c", "0x501e891f", "0xa8ffc7ab", "0xa63b9363", "0x90ca796b"]
STRANGER = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture
def reader(devnet: Any) -> Web3ChainReader:
    return Web3ChainReader.from_settings(
        ChainSettings(
            chain_id=devnet.chain_id,
            rpc_urls=[devnet.rpc_url],
            multi_account_address=devnet.multi_account,
            symmio_address=devnet.symmio,
        )
    )


async def test_chain_id_and_owners(reader: Web3ChainReader, devnet: Any) -> None:
    assert await reader.chain_id() == 31337
    demo = devnet.demo_accounts[0]
    assert await reader.owner_of(demo.account) == demo.owner
    assert await reader.owner_of(demo.account.lower()) == demo.owner
    assert await reader.owner_of(STRANGER) is None
    accounts = await reader.accounts_of(demo.owner)
    assert demo.account in [a.address for a in accounts]
    assert await reader.accounts_of(STRANGER) == []


async def test_delegations_match_the_spec_selectors(reader: Web3ChainReader, devnet: Any) -> None:
    assert ["0x" + selector(sig).hex() for sig in DELEGATED_SIGNATURES] == SELECTORS
    demo = devnet.demo_accounts[0]
    for sel in SELECTORS:
        assert await reader.is_delegated(demo.account, devnet.solver, bytes.fromhex(sel[2:])) is True
        assert await reader.is_delegated(demo.account, STRANGER, bytes.fromhex(sel[2:])) is False
    # lockQuote is the solver's own function, never delegated by a user.
    assert (
        await reader.is_delegated(
            demo.account,
            devnet.solver,
            selector("lockQuote(uint256,(bytes,uint256,int256,bytes,(uint256,address,address)))"),
        )
        is False
    )


async def test_balances_nonces_and_quotes(reader: Web3ChainReader, devnet: Any) -> None:
    demo = devnet.demo_accounts[2]
    balances = await reader.party_a_balances(demo.account)
    assert balances.allocated == 100_000 * 10**18
    assert balances.locked.total_a == 0 and balances.pending_locked.total_a == 0
    assert await reader.nonce_of_party_a(demo.account) >= 0
    assert await reader.nonce_of_party_b(devnet.solver, demo.account) >= 0
    assert await reader.quote(10**9) is None
    assert isinstance(await reader.pending_quote_ids(demo.account), list)
    assert isinstance(await reader.open_positions(demo.account), list)


async def test_api_refuses_to_start_on_wrong_chain(devnet: Any, database_url: str, redis_prefix: str) -> None:
    settings = settings_for(devnet, database_url, redis_prefix, chain={"chain_id": 42161})
    with pytest.raises(BaseException) as err:  # the test client wraps startup errors in a group
        async with AsyncTestClient(app=create_app(settings)):
            pass
    found = _find(err.value, ConfigError)
    assert found is not None and "chain id 31337" in str(found)


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    if isinstance(exc, kind):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        hit = _find(inner, kind)
        if hit is not None:
            return hit
    return _find(exc.__cause__, kind) if exc.__cause__ is not None else None
