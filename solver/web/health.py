"""Readiness probes of the real dependencies, each bounded by a timeout, all run concurrently
(so /readyz answers within about one timeout even when everything hangs).

`probes` decide readiness. `reports` (e.g. price freshness) are shown beside them and decide
nothing, unless their name is in `required`: then their `ok` field counts as a probe. A probe
that changes state is logged once (failure with its error, recovery), not on every poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("solver.readiness")

Probe = Callable[[], Awaitable[object]]
Report = Callable[[], Awaitable[Mapping[str, Any]]]  # a JSON-able mapping with a bool `ok`


@dataclass
class ReadyState:
    ready: bool
    checks: dict[str, bool]
    reports: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return sorted(name for name, ok in self.checks.items() if not ok)


class Readiness:
    def __init__(
        self,
        probes: dict[str, Probe],
        timeout_s: float = 2.0,
        *,
        reports: dict[str, Report] | None = None,
        required: Collection[str] = (),
    ) -> None:
        self._probes = probes
        self._timeout = timeout_s
        self._reports = reports or {}
        self._required = set(required)
        self._last: dict[str, bool] = {}

    async def check(self) -> dict[str, bool]:
        names = list(self._probes)
        results = await asyncio.gather(*(self._one(n, self._probes[n]) for n in names))
        return dict(zip(names, results, strict=True))

    async def state(self) -> ReadyState:
        names = list(self._reports)
        checks, reports = await asyncio.gather(
            self.check(), asyncio.gather(*(self._report(n, self._reports[n]) for n in names))
        )
        by_name = dict(zip(names, reports, strict=True))
        for name in sorted(self._required & set(by_name)):
            checks[name] = bool(by_name[name].get("ok"))
        return ReadyState(ready=all(checks.values()), checks=checks, reports=by_name)

    async def _one(self, name: str, probe: Probe) -> bool:
        error: BaseException | None = None
        try:
            await asyncio.wait_for(probe(), self._timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
        ok = error is None
        if self._last.get(name, True) != ok:
            if ok:
                log.info("readiness: %s is reachable again", name, extra={"probe": name})
            else:
                why = f"no answer within {self._timeout:g} s" if isinstance(error, TimeoutError) else repr(error)
                log.warning("readiness: %s probe failed: %s", name, why, extra={"probe": name})
        self._last[name] = ok
        return ok

    async def _report(self, name: str, report: Report) -> Mapping[str, Any]:
        try:
            return await asyncio.wait_for(report(), self._timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return {"ok": False, "error": type(exc).__name__}
