"""Logging set up from settings: JSON lines with every configured secret masked.

`configure_from_settings(settings)` is what each process entry point calls: it registers every
secret value found in the settings (each `SecretStr`, at any depth, and the passwords of the
database and Redis URLs) with the redacting filter of solver.core.logging, on top of the
shape-based masking that needs no registration.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, SecretStr

from solver.core.logging import configure_logging
from solver.core.redact import Redactor
from solver.settings import Settings


def secret_values(settings: Settings) -> list[str]:
    out = [s.get_secret_value() for s in _secrets(settings)]
    for url in (settings.database_url, settings.redis_url, *settings.chain.rpc_urls):
        out.extend(_url_passwords(url))
    return [v for v in out if v]


def configure_from_settings(settings: Settings, *, json_output: bool = True) -> None:
    configure_logging(settings.log_level, json_output=json_output, secrets=secret_values(settings))


def _secrets(value: object) -> Iterator[SecretStr]:
    if isinstance(value, SecretStr):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets(getattr(value, name))
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from _secrets(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secrets(item)


def _url_passwords(url: str) -> list[str]:
    """The password of a URL as written (percent-encoded) and decoded."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


def settings_summary(settings: Settings) -> dict[str, str | int]:
    """Where a process connects, for its start-up line: URLs with their passwords masked here
    already (the log filter would too), no secret values."""
    mask = Redactor()
    return {
        "env": settings.env,
        "chain_id": settings.chain.chain_id,
        "rpc_urls": mask(",".join(settings.chain.rpc_urls)),
        "database_url": mask(settings.database_url),
        "redis_url": mask(settings.redis_url),
        "redis_prefix": settings.redis_prefix,
        "lanes": ",".join(settings.chain.lanes),
    }
