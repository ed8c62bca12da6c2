"""Column types shared by every table: money, addresses, statuses.

Money is `Numeric(78, 18)`: 60 integer digits cover uint256 wei expressed in human units, 18
fractional digits are exactly the chain's fixed point, so nothing is ever rounded on the way in
or out. Never float.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, TypeVar

from eth_utils.address import to_checksum_address
from sqlalchemy import BigInteger, Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.operators import OperatorType
from sqlalchemy.types import TypeDecorator, TypeEngine

MONEY_PRECISION = 78
MONEY_SCALE = 18
ADDRESS_LENGTH = 42
# A CHECK on every address column: the bind-side normalisation below is the first line, this is
# the one raw SQL cannot bypass.
ADDRESS_PATTERN = "^0x[0-9a-fA-F]{40}$"

_ADDRESS_RE = re.compile(ADDRESS_PATTERN)

E = TypeVar("E", bound=StrEnum)


def Money() -> Numeric[Any]:
    return Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True)


def Id() -> BigInteger:
    """Quote ids, temp ids, block numbers, unix seconds: all beyond int32 on a long-lived chain."""
    return BigInteger()


def checksum_address(value: str) -> str:
    """EIP-55 form of a 0x-prefixed any-case hex address; ValueError for anything else."""
    if not isinstance(value, str) or _ADDRESS_RE.fullmatch(value) is None:
        raise ValueError(f"not a 20-byte hex address: {value!r}")
    return str(to_checksum_address(value.lower()))


class Address(TypeDecorator[str]):
    """An address stored EIP-55 checksummed.

    Bound values are checksummed too, so `WHERE account = '0xabc…'` matches whatever case the
    client sent: comparisons are case-insensitive without `lower()` indexes.
    """

    impl = String(ADDRESS_LENGTH)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else checksum_address(value)

    def coerce_compared_value(self, op: OperatorType | None, value: Any) -> TypeEngine[Any]:
        # Literals compared with an address column go through process_bind_param as well.
        return self


class EnumText(TypeDecorator[E]):
    """A StrEnum stored as VARCHAR (a CHECK constraint lists the values).

    Not a native PG ENUM: adding a value to one needs ALTER TYPE outside a transaction; a CHECK
    is replaced in the same migration transaction as the code that needs it.
    """

    impl = String
    cache_ok = True

    def __init__(self, enum_cls: type[E], length: int = 24) -> None:
        super().__init__(length)
        self.enum_cls = enum_cls

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return self.enum_cls(value).value  # ValueError for an unknown status, before SQL runs

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum_cls(value)

    def coerce_compared_value(self, op: OperatorType | None, value: Any) -> TypeEngine[Any]:
        return self


def in_check(column: str, values: type[StrEnum]) -> str:
    """SQL for `column IN ('a', 'b', …)` from an enum (values are code constants, not input)."""
    listed = ", ".join(f"'{member.value}'" for member in values)
    return f"{column} IN ({listed})"
