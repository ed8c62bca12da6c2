"""Secrets never reach a log line: every shape the redacting filter knows, in every part of a record."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from solver.core.logging import JsonFormatter, RedactingFilter, TextFormatter, configure_logging
from solver.core.redact import MASK, Redactor
from solver.observability.logs import secret_values, settings_summary
from solver.settings import Settings

pytestmark = pytest.mark.unit

KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
BARE_KEY = "8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIweGFiYyIsImV4cCI6MTcwMDAwMDAwMH0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
TX_HASH = "0x" + "ab" * 32
ADDRESS = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"  # 20 bytes: not a secret shape
SIGNATURE = "0x" + "1c" * 65  # 65 bytes: not a key either


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"signer key {KEY} loaded", KEY[2:]),
        (f"key={KEY.upper()[2:]}", KEY[2:].upper()),
        (f"raw {BARE_KEY}", BARE_KEY),
        (f"token {JWT} issued", JWT.split(".")[2]),
        (f"Authorization: Bearer {JWT}", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"),
        ("connect postgresql+psycopg://solver:s3cr3t-pw@db.internal:5432/solver", "s3cr3t-pw"),
        ("redis at redis://:hunter2hunter2@cache:6379/0", "hunter2hunter2"),
        ("redis at rediss://default:p%40ss@cache:6380/0", "p%40ss"),
        ("headers {'authorization': 'Basic dXNlcjpwYXNzd29yZA=='}", "dXNlcjpwYXNzd29yZA=="),
        ("scope headers [(b'authorization', b'Bearer opaque-token-1234567')]", "opaque-token-1234567"),
        ("Authorization=Token abcdefghijkl", "abcdefghijkl"),
        ("sent Bearer opaque-token-7654321 upstream", "opaque-token-7654321"),
        ("dsn host=db user=solver password=pa55word dbname=x", "pa55word"),
        ("rpc https://eth.example/v2?api_key=AKIA1234567890", "AKIA1234567890"),
        ('{"jwt_secret": "topsecretvalue"}', "topsecretvalue"),
        ("private_key: 1234abcd5678", "1234abcd5678"),
    ],
)
def test_each_secret_shape_is_masked(text: str, secret: str) -> None:
    out = Redactor()(text)
    assert secret not in out
    assert MASK in out


@pytest.mark.parametrize(
    "text",
    [
        f"account {ADDRESS} opened quote 42 (temp -1000001)",
        f"signature {SIGNATURE}",
        "calldata 0x" + "00" * 100,
        "price 60000.123456789012345678 at 1700000000.5",
        "nothing secret here: secrets are masked, passwords too",
        "https://rpc.example/path?chain=1",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor()(text) == text


def test_registered_secrets_are_masked_in_any_form() -> None:
    redact = Redactor([KEY, "short", "a-long-jwt-signing-secret"])
    for shape in (KEY, KEY.upper(), KEY[2:], KEY[2:].upper()):
        assert KEY[2:].lower() not in redact(f"x {shape} y", hex_shapes=False).lower()
    assert redact("jwt a-long-jwt-signing-secret") == f"jwt {MASK}"
    assert redact("short stays") == "short stays"  # too short to register: it would mask words


def test_masking_is_idempotent() -> None:
    redact = Redactor([KEY])
    text = f"Authorization: Bearer {JWT} postgresql://u:pw12345@h/db {KEY} password=abc12345"
    once = redact(text)
    assert redact(once) == once


def _record(msg: str, *args: Any, exc: BaseException | None = None, **extra: Any) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    record = logging.LogRecord("solver.test", logging.ERROR, __file__, 1, msg, args, exc_info)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def _json(record: logging.LogRecord, redactor: Redactor | None = None) -> tuple[str, dict[str, Any]]:
    RedactingFilter(redactor).filter(record)
    line = JsonFormatter().format(record)
    return line, json.loads(line)


def test_filter_masks_message_args_extras_and_traceback() -> None:
    try:
        raise ValueError(f"could not sign with {KEY}")
    except ValueError as exc:
        record = _record(
            "login with %s against %s",
            JWT,
            "redis://:pw-in-url-123@cache:6379",
            exc=exc,
            account=ADDRESS,
            headers={"Authorization": f"Bearer {JWT}"},
            signer_key=KEY,
            tx_hash=TX_HASH,
            quote_id=7,
        )
    line, out = _json(record)
    for secret in (KEY[2:], JWT, "pw-in-url-123", "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"):
        assert secret not in line
    assert "ValueError: could not sign with 0x***" in out["exc"]
    assert out["account"] == ADDRESS and out["quote_id"] == 7
    assert out["tx_hash"] == TX_HASH  # a hash field keeps its 32-byte hex
    assert out["signer_key"] == MASK  # its name says secret: masked whole


def test_a_known_secret_is_masked_even_in_a_hash_field() -> None:
    _, out = _json(_record("sent", tx_hash=KEY), Redactor([KEY]))
    assert out["tx_hash"] == MASK


def test_stack_info_and_bad_format_args_are_masked() -> None:
    record = _record("value %d", "not-a-number", key=KEY)
    record.stack_info = f"Stack (most recent call last):\n  sign({KEY})"
    line, _ = _json(record)
    assert KEY[2:] not in line


def test_text_formatter_shows_context_fields_masked() -> None:
    record = _record("nonce %s sent", 5, lane=0, tx_hash=TX_HASH, password="pa55w0rd-x")
    RedactingFilter().filter(record)
    line = TextFormatter().format(record)
    assert "nonce 5 sent" in line and "lane=0" in line and f"tx_hash={TX_HASH}" in line
    assert "pa55w0rd-x" not in line


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configure_logging_masks_on_every_handler(root_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    configure_logging("INFO", secrets=["registered-secret-value"])
    extra = io.StringIO()
    logging.getLogger().addHandler(logging.StreamHandler(extra))  # a handler added later...
    for h in logging.getLogger().handlers:
        assert any(isinstance(f, RedactingFilter) for f in h.filters) or h.stream is extra  # type: ignore[attr-defined]
    logging.getLogger("solver.x").warning("k=%s s=%s", KEY, "registered-secret-value")
    line = out.getvalue()
    assert KEY[2:] not in line and "registered-secret-value" not in line
    assert json.loads(line)["msg"] == f"k=0x{MASK} s={MASK}"
    # ...sees the record after the installed filter masked it (records are shared).
    assert KEY[2:] not in extra.getvalue()


def test_settings_secrets_are_found_at_any_depth() -> None:
    settings = Settings(
        env="dev",
        database_url="postgresql://solver:db-pass-123@db:5432/solver",
        redis_url="redis://:redis-pass-456@cache:6379/0",
        worker={"signer_private_keys": [KEY]},
        oracle={"schnorr_secret": BARE_KEY, "gateway_private_key": "0x" + "cd" * 32},
        auth={"jwt_secret": "jwt-secret-0123456789-0123456789-xyz"},
        observability={"metrics_token": "scrape-token-123456"},
    )
    found = set(secret_values(settings))
    for value in (
        KEY,
        BARE_KEY,
        "0x" + "cd" * 32,
        "jwt-secret-0123456789-0123456789-xyz",
        "db-pass-123",
        "redis-pass-456",
        "scrape-token-123456",
    ):
        assert value in found
    summary = json.dumps(settings_summary(settings))
    assert "db-pass-123" not in summary and "redis-pass-456" not in summary
    assert "db:5432" in summary
