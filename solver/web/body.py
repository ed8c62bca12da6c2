"""Exact request bodies: JSON numbers decoded as Decimal, never float.

Litestar decodes JSON numbers to float, which keeps ~17 significant digits; clients may send
prices as numbers with 25 decimals. Routes keep their typed `data` parameter (OpenAPI schema and
a first validation) and re-read the raw body through `exact_body` for the values they use.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, TypeVar

from litestar import Request
from pydantic import BaseModel, ValidationError

from solver.core.errors import ErrorCode, SolverError

M = TypeVar("M", bound=BaseModel)


async def exact_body(request: Request[Any, Any, Any], model: type[M]) -> M:
    """Validate the raw JSON body with numbers decoded exactly; a 400 error body otherwise."""
    raw = await request.body()
    try:
        return model.model_validate(json.loads(raw, parse_float=Decimal))
    except ValidationError as exc:
        detail = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    except ValueError as exc:  # not JSON (also invalid UTF-8)
        detail = [str(exc)[:200]]
    raise SolverError(ErrorCode.VALIDATION, ("The request is not valid: " + "; ".join(detail))[:500], detail)
