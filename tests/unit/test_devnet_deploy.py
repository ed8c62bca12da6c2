"""Pure parts of the devnet: leverage from config, DevnetInfo JSON, artifact freshness."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from solver.devnet.artifacts import CONTRACT_NAMES, artifact_path, load_all, source_hash
from solver.devnet.deploy import DemoAccount, DevnetInfo, anvil_key, max_leverage
from solver.settings import SymbolConfig

pytestmark = pytest.mark.unit


def _symbol(cn: str, cap: int | None) -> SymbolConfig:
    return SymbolConfig(
        symbol_id=1,
        name="BTCUSDT",
        symbol="BTC",
        price_precision=1,
        quantity_precision=3,
        maintenance_ratio=Decimal(cn),
        max_leverage_cap=cap,
        min_acceptable_quote_value=Decimal(10),
        min_acceptable_portion_lf=Decimal("0.001"),
        trading_fee=Decimal("0.0006"),
        max_notional_value=Decimal(1),
        notional_cap=Decimal(1),
    )


@pytest.mark.parametrize(
    ("cn", "cap", "expected"),
    [("0.01", 50, 50), ("0.01", None, 60), ("0.04", None, 15), ("0.013", None, 46), ("0.7", None, 1)],
)
def test_max_leverage(cn: str, cap: int | None, expected: int) -> None:
    assert max_leverage(_symbol(cn, cap)) == expected


def test_anvil_keys_are_the_well_known_ones() -> None:
    assert anvil_key(0) == "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    assert anvil_key(1) == "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def test_devnet_info_json_round_trip() -> None:
    info = DevnetInfo(
        chain_id=31337,
        rpc_url="http://127.0.0.1:8545",
        deploy_block=1,
        admin="0xA",
        admin_private_key="0x1",
        collateral="0xC",
        symmio="0xS",
        symmio_account_facet="0xF",
        multi_account="0xM",
        solver="0xB",
        solver_private_key="0x2",
        muon_app_id=0,
        oracle_public_key_x="0x3",
        oracle_public_key_parity=1,
        oracle_gateway="0xG",
        oracle_schnorr_secret="0x4",
        oracle_gateway_private_key="0x5",
        demo_accounts=(DemoAccount(owner="0xO", owner_private_key="0x6", account="0xP", name="demo-1"),),
    )
    assert DevnetInfo.from_dict(json.loads(info.to_json())) == info


def test_committed_artifacts_match_the_sources() -> None:
    """Cheap guard (no compiler): an edited .sol without a rebuild fails here."""
    digest = source_hash()
    for name in CONTRACT_NAMES:
        assert json.loads(artifact_path(name).read_text())["sourceHash"] == digest, name
    assert set(load_all()) == set(CONTRACT_NAMES)
