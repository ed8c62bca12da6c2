"""Readiness probes of the real dependencies, each bounded by a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Probe = Callable[[], Awaitable[object]]


class Readiness:
    def __init__(self, probes: dict[str, Probe], timeout_s: float = 2.0) -> None:
        self._probes = probes
        self._timeout = timeout_s

    async def check(self) -> dict[str, bool]:
        names = list(self._probes)
        results = await asyncio.gather(*(self._one(self._probes[n]) for n in names))
        return dict(zip(names, results, strict=True))

    async def _one(self, probe: Probe) -> bool:
        try:
            await asyncio.wait_for(probe(), self._timeout)
        except asyncio.CancelledError:
            raise
        except Exception:
            return False
        return True
