"""Settings -> environment variables, so a parent process can start `solver api|worker|oracle`
children on exactly its own configuration (dev stack, end-to-end tests)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, SecretStr


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def settings_env(settings: Any) -> dict[str, str]:
    """SOLVER_* variables for every group (JSON) and the scalars; symbols come from the TOML."""
    env: dict[str, str] = {
        "SOLVER_ENV": settings.env,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SOLVER_REDIS_PREFIX": settings.redis_prefix,
        "SOLVER_LOG_LEVEL": settings.log_level,
    }
    # Every settings group (a nested model), so a group added later is never silently dropped.
    for group in type(settings).model_fields:
        value = getattr(settings, group)
        if isinstance(value, BaseModel):
            env[f"SOLVER_{group.upper()}"] = json.dumps(_plain(value.model_dump(mode="python")), default=str)
    return env
