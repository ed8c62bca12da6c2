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

    # chain/worker 1400-1499
    ORACLE_UNAVAILABLE = (1400, 503, "The price oracle could not sign this request right now. Please retry shortly.")
    ORACLE_REFUSED = (1401, 400, "The price oracle refused to sign this request.")

    # outcomes of requests the worker ran on chain (shown on failed instant opens and closes)
    TX_REVERTED = (1410, 400, "The blockchain rejected this request.")
    PRICE_MOVED = (1411, 400, "The market moved past your price before the solver could fill it.")
    REQUEST_EXPIRED = (1412, 400, "The request's deadline passed before it could be completed.")
    SOLVER_BALANCE_LOW = (1413, 503, "The solver cannot take this position right now. Please retry later.")
    TX_LOST = (1414, 500, "The transaction for this request was lost. The solver team has been alerted.")
    CANCELLED_BY_SOLVER = (1415, 400, "The solver cancelled this request.")

    # instant trading 1500-1599 (http-api.md §3, §6)
    INSTANT_NOT_FOUND = (1500, 404, "No instant request with this id exists.")
    CANCEL_TOO_LATE = (1501, 409, "It is too late to cancel: the request is already being filled on chain.")
    ALREADY_FAILED = (1502, 409, "This request has already failed: there is nothing to cancel.")
    QUOTE_NOT_FOUND = (1503, 404, "No position with this quote id exists on chain.")
    NOT_YOUR_QUOTE = (1504, 403, "This position or request belongs to another account.")
    QUOTE_NOT_WITH_SOLVER = (1505, 400, "This position is not held with this solver.")
    QUOTE_NOT_OPEN = (1506, 400, "The position is not open, so it cannot be closed now.")
    CLOSE_QUANTITY_INVALID = (
        1507,
        400,
        "The quantity to close must be more than zero, at most the open quantity, and use the market's decimals.",
    )
    REMAINDER_TOO_SMALL = (
        1508,
        400,
        "What would stay open after this close is below the market's minimum position value: "
        "close all of it, or less of it.",
    )
    CLOSE_NOT_FOUND = (1509, 404, "There is no close request in progress for this position.")
    CLOSE_ALREADY_PENDING = (1510, 409, "A close request for this position is already in progress.")
    IDEMPOTENCY_KEY_REUSED = (1511, 409, "This Idempotency-Key was already used for a different request.")
    INVALID_IDEMPOTENCY_KEY = (1512, 400, "The Idempotency-Key header must be 1 to 255 visible ASCII characters.")
    INVALID_PAGE = (1513, 400, "The page start must be 0 or more and the page size from 1 to 100.")
    CANCEL_RETRY = (1514, 409, "The request is being handed to the chain right now. Please retry the cancel shortly.")

    # stop loss / take profit 1600-1699 (http-api.md §4, trading-rules.md §4)
    TRIGGER_TEMP_QUOTE_ID = (
        1600,
        400,
        "This is a temporary quote id: wait for the real quote id of the position, then set the stop loss with it.",
    )
    TRIGGER_QUOTE_NOT_ACTIVE = (1601, 400, "A stop loss or take profit needs a position that is pending or open.")
    TRIGGER_QUOTE_MISMATCH = (1602, 400, "The position side or symbol does not match this quote.")
    TRIGGER_PRICE_MISSING = (1603, 400, "Set a take profit price, a stop loss price, or both.")
    TRIGGER_PRICES_EQUAL = (1604, 400, "The take profit and stop loss prices must differ.")
    TRIGGER_WOULD_FIRE_NOW = (1605, 400, "This trigger price would fire at once at the current mark price.")
    TRIGGER_TIMESTAMP = (1606, 400, "The request timestamp is too far from now: check your clock and send a new one.")
    TRIGGER_OWNER_MISMATCH = (1607, 403, "userAddress is not the wallet this access token was issued to.")
    TRIGGER_NOT_FOUND = (1608, 404, "There is no active stop loss or take profit for this position.")
    TRIGGER_ALREADY_FIRED = (
        1609,
        409,
        "A stop loss or take profit of this position already fired: the position is being closed.",
    )
    TRIGGER_CLOSE_FAILED = (1610, 400, "The solver could not close the position after the trigger fired.")

    # strategy orders, LIMIT and DCA 1700-1719 (http-api.md §5, trading-rules.md §3)
    STRATEGY_NOT_FOUND = (1700, 404, "No strategy order with this id exists for your account.")
    STRATEGY_INVALID_TYPE = (1701, 400, "The strategy order type must be limit or dca.")
    STRATEGY_INVALID_SYMBOL = (1702, 400, "The symbol of the strategy order is unknown or not open for trading.")
    STRATEGY_INVALID_POSITION_TYPE = (1703, 400, "position_type must be 0 (LONG) or 1 (SHORT).")
    STRATEGY_INVALID_LEVERAGE = (1704, 400, "The leverage of the strategy order is not allowed for this symbol.")
    STRATEGY_INVALID_INPUT_AMOUNT = (
        1705,
        400,
        "The input amount must be more than zero, have at most 18 decimals and reach the symbol's minimum quote value.",
    )
    STRATEGY_INVALID_MAX_SUBORDERS = (1706, 400, "max_suborders must be a whole number from 1 to 255.")
    STRATEGY_INVALID_MAX_INVOCATIONS = (1707, 400, "max_invocations must be a whole number from max_suborders to 255.")
    STRATEGY_INVALID_SLIPPAGE = (1708, 400, "slippage must be more than 0 and at most 1.")
    STRATEGY_INVALID_SETTINGS = (1709, 400, "The settings of the strategy order are not valid for its type.")
    STRATEGY_ALREADY_CLOSED = (1710, 409, "This strategy order has already ended: there is nothing to cancel.")
    STRATEGY_INVALID_QUERY = (
        1711,
        400,
        "The list filters are not valid: type is limit or dca, size from 1 to 100, before_id a positive id.",
    )

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
