"""One root exception and the catalogue of every error code the server can emit.

Services raise `SolverError` subclasses with an `ErrorCode`; the API maps them to the
http-api.md error body in one place (`solver.api_errors`). Codes are stable: clients match on them.
"""

from __future__ import annotations

from enum import Enum


class ErrorCode(Enum):
    """(code, HTTP status, default message shown to the trader)."""

    # general 1000-1099
    INTERNAL = (1000, 500, "Something went wrong on our side. Please try again.")
    VALIDATION = (1001, 400, "The request is not valid.")
    NOT_FOUND = (1002, 404, "The requested resource was not found.")
    PAYLOAD_TOO_LARGE = (1003, 413, "The request body is too large.")
    RATE_LIMITED = (1004, 429, "Too many requests. Please slow down.")
    UNAVAILABLE = (1005, 503, "The service is temporarily unavailable. Please retry shortly.")
    METHOD_NOT_ALLOWED = (1006, 405, "This method is not allowed on this path.")
    CONFLICT = (1007, 409, "The request conflicts with the current state.")
    # auth 1100-1199
    UNAUTHORIZED = (1100, 401, "Please log in: a valid access token is required.")
    INVALID_TOKEN = (1101, 401, "Your access token is not valid. Please log in again.")
    TOKEN_EXPIRED = (1102, 401, "Your session has expired. Please log in again.")
    FORBIDDEN_ACCOUNT = (1103, 403, "Your access token does not allow acting on this account.")
    INVALID_NONCE = (1110, 401, "The login nonce is unknown, expired or already used. Request a new one.")
    INVALID_SIGNATURE = (
        1111,
        401,
        "The login signature does not match the account owner for this domain, login URI and chain.",
    )
    DOMAIN_NOT_ALLOWED = (1112, 401, "Login from this domain is not allowed.")
    MESSAGE_EXPIRED = (1114, 401, "The login message has expired. Sign a new one.")
    MESSAGE_NOT_YET_VALID = (1115, 401, "The login message is issued in the future. Check your clock.")
    UNKNOWN_ACCOUNT = (1116, 400, "This address is not a sub-account of the MultiAccount contract.")
    # market 1200-1299
    UNKNOWN_SYMBOL = (1200, 404, "Unknown symbol.")
    INVALID_LEVERAGE = (1201, 400, "The leverage is not allowed for this symbol.")
    SYMBOL_NOT_TRADABLE = (1202, 400, "This symbol is not open for trading.")
    PRICE_UNAVAILABLE = (1203, 503, "No price is available for this symbol right now.")
    PRICE_STALE = (1204, 503, "The latest price for this symbol is too old to trade on. Please retry shortly.")
    LOCKED_VALUES_TOO_LOW = (1205, 400, "The cva and lf sent are below what this market requires for this size.")
    LEVERAGE_TOO_HIGH = (1206, 400, "The leverage (notional / locked margin) is above this market's maximum.")
    LF_PORTION_TOO_LOW = (1207, 400, "The liquidation fee (lf) is too small a share of the locked margin.")
    QUOTE_VALUE_TOO_LOW = (1208, 400, "The locked margin (cva + lf + partyAmm) is below the minimum quote value.")
    UNKNOWN_MULTI_ACCOUNT = (1209, 404, "This solver does not serve that MultiAccount contract.")

    # pre-trade gate 1300-1399 (trading-rules.md §2)
    DEADLINE_PASSED = (1300, 400, "The deadline has already passed.")
    PRICE_OUT_OF_RANGE = (1301, 400, "The requested price is too far from the current mark price.")
    QUANTITY_PRECISION = (1302, 400, "The quantity has more decimals than this market allows.")
    INSUFFICIENT_BALANCE = (1303, 400, "Your available balance does not cover this position.")
    NOT_DELEGATED = (1304, 403, "Your account has not delegated this action to the solver.")
    TOO_MANY_PENDING = (1305, 429, "You have too many instant requests in flight. Wait for them to settle.")
    SYMBOL_CAP_REACHED = (1306, 400, "The open interest cap of this market is reached.")
    TOTAL_CAP_REACHED = (1307, 400, "The solver's total open interest cap is reached.")
    POSITION_TOO_LARGE = (1308, 400, "The position is larger than this market allows.")
    REDUCE_ONLY = (1309, 403, "Your account is flagged for liquidation: only closing is allowed.")
    TOO_MANY_POSITIONS = (1310, 400, "You have reached the maximum number of open positions.")
    INVALID_ORDER = (1311, 400, "The position type or order type is not valid.")

    @property
    def code(self) -> int:
        return self.value[0]

    @property
    def status(self) -> int:
        return self.value[1]

    @property
    def message(self) -> str:
        return self.value[2]

    @classmethod
    def by_code(cls, code: int) -> ErrorCode | None:
        for member in cls:
            if member.code == code:
                return member
        return None


class SolverError(Exception):
    """Root of every domain error. `message` is a sentence a trader understands."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        detail: list[str] | None = None,
    ) -> None:
        self.code = code
        self.message = message or code.message
        self.detail = detail
        super().__init__(self.message)

    def body(self) -> dict[str, object]:
        return {"error_code": self.code.code, "error_message": self.message, "error_detail": self.detail}


class ConfigError(Exception):
    """Invalid settings: the process refuses to start."""
