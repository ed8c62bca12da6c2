"""Structured JSON logs on stdout. Context (quote/temp/tx ids, account, lane) goes in `extra=`.

Every handler `configure_logging` installs carries a `RedactingFilter` (solver.core.redact):
secrets are masked in the message, its arguments, the `extra` fields and the traceback before
any formatter sees the record. Pass the process's configured secrets (`secrets=`) so they are
masked in any shape; the shapes of keys, JWTs, URL passwords and Authorization headers are
masked regardless.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from solver.core.redact import HASH_FIELDS, MASK, Redactor, is_secret_name

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_PLAIN = (str, int, float, bool)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            out[key] = value if isinstance(value, _PLAIN) or value is None else str(value)
        if record.exc_info or record.exc_text:
            # exc_text when a filter already rendered (and redacted) the traceback.
            out["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines (`solver dev`): the context fields follow the message as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line


class RedactingFilter(logging.Filter):
    """Masks secrets in a record in place (message with its args merged, extra fields, traceback,
    stack). Idempotent, so a record passing several handlers is masked once in effect."""

    _exc_formatter = logging.Formatter()

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor
        try:
            message = record.getMessage()
        except Exception:  # bad format args: keep what can be shown, masked
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        for key, value in _extras(record).items():
            if value is not None and is_secret_name(key):
                setattr(record, key, MASK)
            elif isinstance(value, str):
                setattr(record, key, redact(value, hex_shapes=key not in HASH_FIELDS))
            elif value is not None and not isinstance(value, (int, float, bool)):
                setattr(record, key, redact(str(value), hex_shapes=key not in HASH_FIELDS))
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exc_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def configure_logging(level: str = "INFO", *, json_output: bool = True, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if json_output else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    redacting = RedactingFilter(Redactor(secrets))
    for h in root.handlers:  # every handler of the process: records propagate to the root's
        h.addFilter(redacting)
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; RPC URLs can carry API keys.
    logging.getLogger("httpx").setLevel(logging.WARNING)
