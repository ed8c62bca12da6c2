"""Pure checks on the table definitions and column types (no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum

import pytest
from sqlalchemy import DateTime, Float, Numeric
from sqlalchemy.dialects import postgresql

from solver.db.audit import jsonable
from solver.db.engine import async_url
from solver.db.models import (
    INSTANT_CLOSE_ACTIVE,
    INSTANT_CLOSE_TERMINAL,
    INSTANT_OPEN_TERMINAL,
    InstantCloseStatus,
    InstantOpenStatus,
    metadata,
)
from solver.db.models.instant_close import ACTIVE_CLOSE_WHERE
from solver.db.types import Address, EnumText, checksum_address, in_check

pytestmark = pytest.mark.unit

PG = postgresql.dialect()  # type: ignore[no-untyped-call]
MONEY_COLUMNS = {
    "instant_open": {"requested_open_price", "quantity", "cva", "lf", "party_amm", "party_bmm", "max_funding_rate"},
    "instant_close": {"quantity_to_close", "close_price"},
    "notification": {"filled_amount_open", "filled_amount_close", "avg_price_open", "avg_price_close"},
}


def test_all_tables_registered() -> None:
    assert {"instant_open", "instant_close", "quote", "notification", "audit_log"} <= set(metadata.tables)


def test_money_is_numeric_78_18_and_nothing_is_float() -> None:
    for table in metadata.tables.values():
        for column in table.columns:
            assert not isinstance(column.type, Float), f"{table.name}.{column.name} is a float"
            if isinstance(column.type, Numeric):
                assert (column.type.precision, column.type.scale) == (78, 18), f"{table.name}.{column.name}"
                assert column.type.asdecimal
    for table_name, names in MONEY_COLUMNS.items():
        for name in names:
            assert isinstance(metadata.tables[table_name].c[name].type, Numeric)


def test_timestamps_are_timezone_aware() -> None:
    for table in metadata.tables.values():
        for column in table.columns:
            impl = column.type.dialect_impl(PG)
            if isinstance(impl, DateTime):
                assert impl.timezone, f"{table.name}.{column.name}"


def test_every_constraint_is_named() -> None:
    for table in metadata.tables.values():
        for constraint in table.constraints:
            assert constraint.name, f"unnamed constraint on {table.name}"
        for index in table.indexes:
            assert index.name


def test_active_close_predicate_matches_statuses() -> None:
    assert in_check("status", InstantCloseStatus).startswith("status IN (")
    listed = {s.strip(" '") for s in ACTIVE_CLOSE_WHERE.removeprefix("status IN (").removesuffix(")").split(",")}
    assert listed == {s.value for s in INSTANT_CLOSE_ACTIVE}
    assert INSTANT_CLOSE_ACTIVE.isdisjoint(INSTANT_CLOSE_TERMINAL)
    assert set(InstantCloseStatus) == INSTANT_CLOSE_ACTIVE | INSTANT_CLOSE_TERMINAL
    assert {s.value for s in INSTANT_OPEN_TERMINAL} == {"opened", "failed", "cancelled"}


def test_address_type_checksums_binds() -> None:
    t = Address()
    process = t.bind_processor(PG)
    raw = "0xabcdef0123456789abcdef0123456789abcdef01"
    expected = checksum_address(raw)
    assert expected != raw
    value = t.process_bind_param(raw.upper().replace("0X", "0x"), PG)
    assert value == expected
    assert process is None or process(value) == expected
    for bad in ("0x1234", "abcdef0123456789abcdef0123456789abcdef01", "0x" + "g" * 40):
        with pytest.raises(ValueError, match="address"):
            t.process_bind_param(bad, PG)
    assert t.process_bind_param(None, PG) is None


def test_enum_text_round_trip() -> None:
    t = EnumText(InstantOpenStatus)
    assert t.process_bind_param(InstantOpenStatus.SENT, PG) == "sent"
    assert t.process_bind_param("opened", PG) == "opened"
    assert t.process_result_value("cancel_requested", PG) is InstantOpenStatus.CANCEL_REQUESTED
    with pytest.raises(ValueError):
        t.process_bind_param("bogus", PG)


def test_jsonable_keeps_money_exact() -> None:
    class Color(Enum):
        RED = "red"

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    out = jsonable({"a": Decimal("0.000000000000000001"), "b": [Color.RED, when], 3: None, "s": {1}})
    assert out == {"a": "0.000000000000000001", "b": ["red", when.isoformat()], "3": None, "s": [1]}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_async_url(given: str, expected: str) -> None:
    assert async_url(given) == expected


def test_async_url_rejects_other_databases() -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        async_url("sqlite:///x.db")
