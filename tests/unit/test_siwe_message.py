"""SIWE message rebuild: the exact text clients sign, cross-checked with the siwe library."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from siwe import SiweMessage

from solver.auth.siwe_message import (
    SiweFields,
    build_message,
    candidate_uris,
    host_of,
    is_valid_nonce,
    parse_timestamp,
)

pytestmark = pytest.mark.unit

OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ACCOUNT = "0x5fbdb2315678afecb367f032d93f642f64180aa3"  # lowercase: kept exactly as sent

FIELDS = SiweFields(
    domain="localhost",
    owner=OWNER,
    account_address=ACCOUNT,
    uri="http://localhost:8000/login",
    chain_id=31337,
    nonce="abcDEF1234567890",
    issued_at="2025-08-04T22:19:42.123Z",
    expiration_time="2025-08-05T22:19:42.123Z",
)


def test_message_text_is_exact() -> None:
    expected = (
        "localhost wants you to sign in with your Ethereum account:\n"
        f"{OWNER}\n"
        "\n"
        f"msg: {ACCOUNT}\n"
        "\n"
        "URI: http://localhost:8000/login\n"
        "Version: 1\n"
        "Chain ID: 31337\n"
        "Nonce: abcDEF1234567890\n"
        "Issued At: 2025-08-04T22:19:42.123Z\n"
        "Expiration Time: 2025-08-05T22:19:42.123Z"
    )
    assert build_message(FIELDS) == expected
    assert not build_message(FIELDS).endswith("\n")


def test_message_matches_siwe_library() -> None:
    ref = SiweMessage(
        domain=FIELDS.domain,
        address=OWNER,
        statement=f"msg: {ACCOUNT}",
        uri=FIELDS.uri,
        version="1",
        chain_id=FIELDS.chain_id,
        nonce=FIELDS.nonce,
        issued_at=FIELDS.issued_at,
        expiration_time=FIELDS.expiration_time,
    )
    assert ref.prepare_message() == build_message(FIELDS)
    # And the library parses our text back into the same fields.
    parsed = SiweMessage.from_message(build_message(FIELDS))
    assert parsed.nonce == FIELDS.nonce
    assert parsed.statement == f"msg: {ACCOUNT}"


@pytest.mark.parametrize(
    ("nonce", "ok"),
    [
        ("abcdefgh", True),
        ("ABC123xyz789", True),
        ("abc-defgh", False),
        ("short", False),
        ("a" * 65, False),
        ("", False),
    ],
)
def test_nonce_format(nonce: str, ok: bool) -> None:
    assert is_valid_nonce(nonce) is ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-08-04T22:19:42.123Z", datetime(2025, 8, 4, 22, 19, 42, 123000, tzinfo=UTC)),
        ("2025-08-04T22:19:42Z", datetime(2025, 8, 4, 22, 19, 42, tzinfo=UTC)),
        ("2025-08-05T00:19:42.5+02:00", datetime(2025, 8, 4, 22, 19, 42, 500000, tzinfo=UTC)),
        ("2025-08-04T22:19:42.123456789Z", datetime(2025, 8, 4, 22, 19, 42, 123456, tzinfo=UTC)),
        ("2025-08-04 22:19:42Z", None),
        ("yesterday", None),
        ("2025-13-04T22:19:42Z", None),
    ],
)
def test_parse_timestamp(text: str, expected: datetime | None) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("http://localhost:3000", "localhost"),
        ("https://App.Example.com", "app.example.com"),
        ("https://app.example.com/trade?x=1", "app.example.com"),
        ("null", None),
        ("", None),
        (None, None),
    ],
)
def test_host_of(header: str | None, host: str | None) -> None:
    assert host_of(header) == host


def test_candidate_uris_keep_double_slash_and_prefix() -> None:
    uris = candidate_uris("https://solver.example/", "//login", "/login")
    assert uris == {"https://solver.example//login", "https://solver.example/login"}
    prefixed = candidate_uris("https://solver.example", "/v1/1a/0xabc/login", "/v1/1a/0xabc/login")
    assert prefixed == {"https://solver.example/v1/1a/0xabc/login"}
