"""Loop heartbeats and published state, written to Redis for GET /metrics (any API replica).

Each long-running loop calls `beat(name)` once per iteration: a dict write, no I/O, nothing that
can fail or block the loop. `Heartbeats.run(stop)`, one task per process, writes the beats
recorded since its last pass every `interval_s` (one pipelined round trip), so a loop that
stops iterating stops being refreshed and its age grows:

- `{prefix}heartbeat:{loop}` = unix time of the last beat, expiring after `forget_after_s` (a
  loop renamed or removed disappears from /metrics a day later instead of alerting forever);
- `{prefix}heartbeats` = the set of loop names, for the reader.

State providers (`add_state(kind, name, provider)`) are called every `state_interval_s` (or
their own `every_s`: the feeds' counters, which cost no I/O, go with every flush), each
bounded by a timeout, and their mapping written to the hash `{prefix}metrics:{kind}:{name}` with
a `ts` field (worker lanes: nonces; feeds: counters). A failing provider or Redis is logged
(at most once a minute) and skipped: observability never stops the work it observes.

Loop names in use: `lane.{i}`, `follower.{name}` (worker); `feed.{source}`,
`triggers.ticks|poll`, `health.ticks|poll`, `strategy.ticks|poll` (engine).
Replicas running the same loop (engines partitioned by symbol) share its name: the newest beat
wins, so one live replica hides a dead one; per-replica liveness is the orchestrator's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from solver.core import redis_keys

log = logging.getLogger("solver.observability")

Beat = Callable[[str], None]
StateValue = str | int | float
StateProvider = Callable[[], Awaitable[Mapping[str, StateValue | None]]]


def no_beat(_: str) -> None:
    """The default `beat` of a loop nobody observes (tests, tools)."""


@dataclass(slots=True)
class _State:
    kind: str
    name: str
    provider: StateProvider
    every_s: float | None  # None: state_interval_s
    due_at: float = 0.0  # monotonic


class Heartbeats:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        interval_s: float = 1.0,
        state_interval_s: float = 5.0,
        forget_after_s: float = 86_400,
        provider_timeout_s: float = 3.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._interval = interval_s
        self._state_interval = state_interval_s
        self._ttl = max(int(forget_after_s), 1)
        self._provider_timeout = provider_timeout_s
        self._now = now  # wall time on purpose: ages are read by another process
        self._beats: dict[str, float] = {}
        self._states: list[_State] = []
        self._last_error_log = float("-inf")
        self.owned: list[Redis] = []  # clients closed by `close()`

    # --- the loops' side: no I/O --------------------------------------------------------------
    def beat(self, loop: str) -> None:
        self._beats[loop] = self._now()

    def add_state(self, kind: str, name: str, provider: StateProvider, *, every_s: float | None = None) -> None:
        """Publish `provider()` every `every_s` (default `state_interval_s`; a provider without I/O
        can use the beat interval, so the times it reports are never older than that)."""
        self._states.append(_State(kind, name, provider, every_s))

    # --- the writer ---------------------------------------------------------------------------
    async def flush(self) -> int:
        """Write the beats recorded since the last flush; how many were written."""
        beats, self._beats = self._beats, {}
        if not beats:
            return 0
        try:
            pipe = self._redis.pipeline(transaction=False)
            for loop, ts in beats.items():
                pipe.set(redis_keys.heartbeat(self._prefix, loop), repr(ts), ex=self._ttl)
            pipe.sadd(redis_keys.heartbeat_index(self._prefix), *beats)
            await pipe.execute()
        except Exception as exc:
            for loop, ts in beats.items():  # not lost: written with the next flush
                self._beats.setdefault(loop, ts)
            self._warn("heartbeats not written", exc)
            return 0
        return len(beats)

    async def publish_states(self, *, only_due: bool = False) -> int:
        """Call the state providers (all, or those due; concurrently, each bounded) and write
        what they return."""
        now = time.monotonic()
        states = [s for s in self._states if not only_due or s.due_at <= now]
        if not states:
            return 0
        for s in states:
            s.due_at = now + (self._state_interval if s.every_s is None else s.every_s)
        results = await asyncio.gather(*(self._one_state(s) for s in states))
        written = [(s, r) for s, r in zip(states, results, strict=True) if r is not None]
        if not written:
            return 0
        try:
            pipe = self._redis.pipeline(transaction=True)  # a reader never sees a hash half rewritten
            for state, mapping in written:
                key = redis_keys.metrics_state(self._prefix, state.kind, state.name)
                pipe.delete(key)
                pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
                pipe.expire(key, self._ttl)
            pipe.sadd(redis_keys.metrics_state_index(self._prefix), *(f"{s.kind}:{s.name}" for s, _ in written))
            await pipe.execute()
        except Exception as exc:
            self._warn("metrics state not written", exc)
            return 0
        return len(written)

    async def _one_state(self, state: _State) -> dict[str, StateValue] | None:
        try:
            raw = await asyncio.wait_for(state.provider(), self._provider_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._warn(f"metrics state {state.kind}:{state.name} unavailable", exc)
            return None
        out: dict[str, StateValue] = {k: v for k, v in raw.items() if v is not None}
        out["ts"] = repr(self._now())
        return out

    async def run(self, stop: asyncio.Event) -> None:
        """Flush beats every `interval_s` and each state at its own interval until `stop`."""
        while not stop.is_set():
            await self.flush()
            await self.publish_states(only_due=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)

    async def close(self) -> None:
        for client in self.owned:
            await client.aclose()

    def _warn(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 60:
            self._last_error_log = now
            log.warning("%s: %s: %s", what, type(exc).__name__, exc)
