"""SIWE login against the real chain owner (anvil + MultiAccount), Redis nonces and JWT scoping."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from litestar.testing import AsyncTestClient

from solver.auth.siwe_message import SiweFields, build_message
from solver.core.errors import ErrorCode

pytestmark = pytest.mark.integration

BASE = "http://testserver.local"
ORIGIN = {"Origin": "http://localhost:3000"}


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass
class Login:
    body: dict[str, Any]
    message: str


def signed_login(
    *,
    account: str,
    owner: str,
    key: str,
    nonce: str,
    chain_id: int = 31337,
    domain: str = "localhost",
    uri: str = f"{BASE}/login",
    issued_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> Login:
    now = datetime.now(UTC)
    issued = iso(issued_at or now)
    expires = iso(expires_at or now + timedelta(hours=1))
    text = build_message(
        SiweFields(
            domain=domain,
            owner=owner,
            account_address=account,
            uri=uri,
            chain_id=chain_id,
            nonce=nonce,
            issued_at=issued,
            expiration_time=expires,
        )
    )
    sig = Account.sign_message(encode_defunct(text=text), private_key=key).signature.hex()
    body = {
        "account_address": account,
        "nonce": nonce,
        "issued_at": issued,
        "expiration_time": expires,
        "signature": "0x" + sig.removeprefix("0x"),
    }
    return Login(body=body, message=text)


async def nonce_for(api: AsyncTestClient[Any], account: str) -> str:
    resp = await api.get(f"/nonce/{account}")
    assert resp.status_code == 200, resp.text
    nonce = resp.json()["nonce"]
    assert nonce.isalnum() and len(nonce) >= 8
    return str(nonce)


@pytest.fixture
def user(devnet: Any) -> Any:
    return devnet.demo_accounts[0]


@pytest.fixture
def other(devnet: Any) -> Any:
    return devnet.demo_accounts[1]


async def login_ok(api: AsyncTestClient[Any], user: Any) -> str:
    nonce = await nonce_for(api, user.account)
    login = signed_login(account=user.account, owner=user.owner, key=user.owner_private_key, nonce=nonce)
    resp = await api.post("/login", json=login.body, headers=ORIGIN)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def assert_error(resp: Any, status: int, code: ErrorCode) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error_code", "error_message", "error_detail"}
    assert body["error_code"] == code.code
    assert isinstance(body["error_message"], str) and body["error_message"]


async def test_owner_login_issues_scoped_token(api: AsyncTestClient[Any], user: Any) -> None:
    token = await login_ok(api, user)
    auth = {"Authorization": f"Bearer {token}"}
    resp = await api.post(f"/auth/verify?party_a_address={user.account.lower()}", headers=auth)
    assert resp.json() == {"successful": True, "message": resp.json()["message"]}
    assert resp.json()["successful"] is True


async def test_lowercase_account_and_browser_domain(api: AsyncTestClient[Any], user: Any) -> None:
    account = user.account.lower()
    nonce = await nonce_for(api, account)
    login = signed_login(
        account=account, owner=user.owner, key=user.owner_private_key, nonce=nonce, domain="app.example.com"
    )
    resp = await api.post("/login", json=login.body, headers={"Origin": "https://app.example.com"})
    assert resp.status_code == 200, resp.text


async def test_token_for_a_cannot_act_on_b(api: AsyncTestClient[Any], user: Any, other: Any) -> None:
    token = await login_ok(api, user)
    resp = await api.post(f"/auth/verify?party_a_address={other.account}", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    assert resp.json()["successful"] is False


async def test_non_owner_signature_refused(api: AsyncTestClient[Any], user: Any, other: Any) -> None:
    nonce = await nonce_for(api, user.account)
    # `other`'s owner signs a message naming `user`'s account and claiming to be its owner.
    login = signed_login(account=user.account, owner=user.owner, key=other.owner_private_key, nonce=nonce)
    assert_error(await api.post("/login", json=login.body, headers=ORIGIN), 401, ErrorCode.INVALID_SIGNATURE)


async def test_nonce_is_single_use(api: AsyncTestClient[Any], user: Any) -> None:
    nonce = await nonce_for(api, user.account)
    login = signed_login(account=user.account, owner=user.owner, key=user.owner_private_key, nonce=nonce)
    assert (await api.post("/login", json=login.body, headers=ORIGIN)).status_code == 200
    assert_error(await api.post("/login", json=login.body, headers=ORIGIN), 401, ErrorCode.INVALID_NONCE)


async def test_failed_login_burns_the_nonce(api: AsyncTestClient[Any], user: Any, other: Any) -> None:
    nonce = await nonce_for(api, user.account)
    bad = signed_login(account=user.account, owner=user.owner, key=other.owner_private_key, nonce=nonce)
    assert_error(await api.post("/login", json=bad.body, headers=ORIGIN), 401, ErrorCode.INVALID_SIGNATURE)
    good = signed_login(account=user.account, owner=user.owner, key=user.owner_private_key, nonce=nonce)
    assert_error(await api.post("/login", json=good.body, headers=ORIGIN), 401, ErrorCode.INVALID_NONCE)


async def test_foreign_nonce_refused(api: AsyncTestClient[Any], user: Any, other: Any) -> None:
    nonce = await nonce_for(api, other.account)
    login = signed_login(account=user.account, owner=user.owner, key=user.owner_private_key, nonce=nonce)
    assert_error(await api.post("/login", json=login.body, headers=ORIGIN), 401, ErrorCode.INVALID_NONCE)


async def test_unknown_nonce_refused(api: AsyncTestClient[Any], user: Any) -> None:
    login = signed_login(account=user.account, owner=user.owner, key=user.owner_private_key, nonce="neverIssued123")
    assert_error(await api.post("/login", json=login.body, headers=ORIGIN), 401, ErrorCode.INVALID_NONCE)


async def test_domain_not_in_allowed_list(api: AsyncTestClient[Any], user: Any) -> None:
    nonce = await nonce_for(api, user.account)
    login = signed_login(
        account=user.account, owner=user.owner, key=user.owner_private_key, nonce=nonce, domain="evil.com"
    )
    resp = await api.post("/login", json=login.body, headers={"Origin": "https://evil.com"})
    assert_error(resp, 401, ErrorCode.DOMAIN_NOT_ALLOWED)


async def test_message_signed_for_other_domain(api: AsyncTestClient[Any], user: Any) -> None:
    nonce = await nonce_for(api, user.account)
    login = signed_login(
        account=user.account, owner=user.owner, key=user.owner_private_key, nonce=nonce, domain="evil.com"
    )
    assert_error(await api.post("/login", json=login.body, headers=ORIGIN), 401, ErrorCode.INVALID_SIGNATURE)


async def test_missing_origin_refused(api: AsyncTestClient[Any], user: Any) -> None:
    nonce = await nonce_for(api, user.account)
    login = signed_login(account=user.account, owner=user.owner, key=user.owner_private_key, nonce=nonce)
    assert_error(await api.post("/login", json=login.body), 401, ErrorCode.DOMAIN_NOT_ALLOWED)


async def test_referer_used_when_no_origin(api: AsyncTestClient[Any], user: Any) -> None:
    nonce = await nonce_for(api, user.account)
    login = signed_login(account=user.account, owner=user.owner, key=user.owner_private_key, nonce=nonce)
    resp = await api.post("/login", json=login.body, headers={"Referer": "http://localhost:3000/trade"})
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    "uri", ["https://other.example/login", f"{BASE}/v1/login", f"{BASE}/login/", "http://testserver/login"]
)
async def test_wrong_uri_refused(api: AsyncTestClient[Any], user: Any, uri: str) -> None:
    nonce = await nonce_for(api, user.account)
    login = signed_login(account=user.account, owner=user.owner, key=user.owner_private_key, nonce=nonce, uri=uri)
    assert_error(await api.post("/login", json=login.body, headers=ORIGIN), 401, ErrorCode.INVALID_SIGNATURE)


async def test_doubled_slash_from_bot_base_url(api: AsyncTestClient[Any], user: Any) -> None:
    nonce = await nonce_for(api, user.account)
    login = signed_login(
        account=user.account, owner=user.owner, key=user.owner_private_key, nonce=nonce, uri=f"{BASE}//login"
    )
    resp = await api.post(f"{BASE}//login", json=login.body, headers=ORIGIN)
    assert resp.status_code == 200, resp.text


async def test_wrong_chain_id_refused(api: AsyncTestClient[Any], user: Any) -> None:
    nonce = await nonce_for(api, user.account)
    login = signed_login(account=user.account, owner=user.owner, key=user.owner_private_key, nonce=nonce, chain_id=1)
    assert_error(await api.post("/login", json=login.body, headers=ORIGIN), 401, ErrorCode.INVALID_SIGNATURE)


async def test_expired_message_refused(api: AsyncTestClient[Any], user: Any) -> None:
    nonce = await nonce_for(api, user.account)
    now = datetime.now(UTC)
    login = signed_login(
        account=user.account,
        owner=user.owner,
        key=user.owner_private_key,
        nonce=nonce,
        issued_at=now - timedelta(hours=2),
        expires_at=now - timedelta(seconds=1),
    )
    assert_error(await api.post("/login", json=login.body, headers=ORIGIN), 401, ErrorCode.MESSAGE_EXPIRED)


async def test_future_message_refused(api: AsyncTestClient[Any], user: Any) -> None:
    nonce = await nonce_for(api, user.account)
    now = datetime.now(UTC)
    login = signed_login(
        account=user.account,
        owner=user.owner,
        key=user.owner_private_key,
        nonce=nonce,
        issued_at=now + timedelta(minutes=10),
        expires_at=now + timedelta(hours=1),
    )
    assert_error(await api.post("/login", json=login.body, headers=ORIGIN), 401, ErrorCode.MESSAGE_NOT_YET_VALID)


async def test_tampered_signature_refused(api: AsyncTestClient[Any], user: Any) -> None:
    nonce = await nonce_for(api, user.account)
    login = signed_login(account=user.account, owner=user.owner, key=user.owner_private_key, nonce=nonce)
    sig = bytearray(bytes.fromhex(login.body["signature"][2:]))
    sig[10] ^= 0x01
    login.body["signature"] = "0x" + sig.hex()
    assert_error(await api.post("/login", json=login.body, headers=ORIGIN), 401, ErrorCode.INVALID_SIGNATURE)


async def test_tampered_body_field_refused(api: AsyncTestClient[Any], user: Any) -> None:
    nonce = await nonce_for(api, user.account)
    login = signed_login(account=user.account, owner=user.owner, key=user.owner_private_key, nonce=nonce)
    login.body["expiration_time"] = iso(datetime.now(UTC) + timedelta(days=2))
    assert_error(await api.post("/login", json=login.body, headers=ORIGIN), 401, ErrorCode.INVALID_SIGNATURE)


@pytest.mark.parametrize(
    "patch",
    [
        {"signature": "0xzz"},
        {"signature": "not-hex"},
        {"account_address": "0x1234"},
        {"issued_at": "yesterday"},
        {"nonce": "bad-nonce!"},
    ],
)
async def test_malformed_bodies_are_4xx(api: AsyncTestClient[Any], user: Any, patch: dict[str, str]) -> None:
    nonce = await nonce_for(api, user.account)
    login = signed_login(account=user.account, owner=user.owner, key=user.owner_private_key, nonce=nonce)
    resp = await api.post("/login", json={**login.body, **patch}, headers=ORIGIN)
    assert 400 <= resp.status_code < 500, resp.text
    assert set(resp.json()) == {"error_code", "error_message", "error_detail"}


async def test_missing_fields_are_400(api: AsyncTestClient[Any]) -> None:
    resp = await api.post("/login", json={"nonce": "abc"}, headers=ORIGIN)
    assert_error(resp, 400, ErrorCode.VALIDATION)


async def test_not_a_sub_account_refused(api: AsyncTestClient[Any], user: Any) -> None:
    stranger = Account.create()
    nonce = await nonce_for(api, stranger.address)
    login = signed_login(account=stranger.address, owner=stranger.address, key=stranger.key.hex(), nonce=nonce)
    assert_error(await api.post("/login", json=login.body, headers=ORIGIN), 400, ErrorCode.UNKNOWN_ACCOUNT)


async def test_bad_nonce_path_is_4xx(api: AsyncTestClient[Any]) -> None:
    resp = await api.get("/nonce/not-an-address")
    assert_error(resp, 400, ErrorCode.VALIDATION)


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."],
)
async def test_bad_tokens_refused(api: AsyncTestClient[Any], user: Any, header: str) -> None:
    resp = await api.post(f"/auth/verify?party_a_address={user.account}", headers={"Authorization": header})
    assert resp.status_code == 200
    assert resp.json()["successful"] is False


@pytest.fixture(scope="module")
def contract_wallet(devnet: Any) -> Any:
    """A SmartWallet1271 (EIP-1271) owning a fresh MultiAccount sub-account."""
    from web3 import Web3

    from solver.devnet.artifacts import load_artifact
    from solver.devnet.deploy import Sender, anvil_key

    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    signer_key = anvil_key(8)
    signer = Account.from_key(signer_key)
    sender = Sender(w3, signer_key, devnet.chain_id)
    wallet = sender.deploy(load_artifact("SmartWallet1271"), signer.address)
    multi = w3.eth.contract(address=devnet.multi_account, abi=load_artifact("MultiAccount").abi)
    data = multi.encode_abi("addAccount", args=["erc1271"])
    receipt = sender.send(wallet.functions.execute(devnet.multi_account, data), "addAccount via wallet")
    account = multi.events.AddAccount().process_receipt(receipt)[0]["args"]["account"]

    @dataclass
    class Wallet:
        address: str
        account: str
        signer_key: str

    return Wallet(address=wallet.address, account=account, signer_key=signer_key)


def erc1271_login(wallet: Any, nonce: str) -> dict[str, Any]:
    from eth_account.messages import _hash_eip191_message

    now = datetime.now(UTC)
    issued, expires = iso(now), iso(now + timedelta(hours=1))
    text = build_message(
        SiweFields(
            domain="localhost",
            owner=wallet.address,
            account_address=wallet.account,
            uri=f"{BASE}/login",
            chain_id=31337,
            nonce=nonce,
            issued_at=issued,
            expiration_time=expires,
        )
    )
    digest = _hash_eip191_message(encode_defunct(text=text))
    sig = Account.unsafe_sign_hash(digest, wallet.signer_key).signature.hex()
    return {
        "account_address": wallet.account,
        "nonce": nonce,
        "issued_at": issued,
        "expiration_time": expires,
        "signature": "0x" + sig.removeprefix("0x"),
        "sign_type": "ERC4337",
    }


async def test_erc1271_contract_owner_login(api: AsyncTestClient[Any], contract_wallet: Any) -> None:
    body = erc1271_login(contract_wallet, await nonce_for(api, contract_wallet.account))
    resp = await api.post("/login", json=body, headers=ORIGIN)
    assert resp.status_code == 200, resp.text


async def test_erc1271_wrong_signer_refused(api: AsyncTestClient[Any], contract_wallet: Any, user: Any) -> None:
    wrong = type(contract_wallet)(contract_wallet.address, contract_wallet.account, user.owner_private_key)
    body = erc1271_login(wrong, await nonce_for(api, contract_wallet.account))
    assert_error(await api.post("/login", json=body, headers=ORIGIN), 401, ErrorCode.INVALID_SIGNATURE)


async def test_erc1271_needs_sign_type(api: AsyncTestClient[Any], contract_wallet: Any) -> None:
    body = erc1271_login(contract_wallet, await nonce_for(api, contract_wallet.account))
    del body["sign_type"]  # an EOA check against a contract owner must fail
    assert_error(await api.post("/login", json=body, headers=ORIGIN), 401, ErrorCode.INVALID_SIGNATURE)
