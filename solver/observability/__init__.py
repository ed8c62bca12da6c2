"""Observability: GET /metrics (one Prometheus scrape target for the whole system), loop
heartbeats and published state in Redis, and logging set up with secrets masked.

- `heartbeat`: `Heartbeats` (a loop's `beat(name)` per iteration, flushed to Redis by one task).
- `states`: what the worker (lane nonces) and the engine (feed counters) publish.
- `collect`: the system-wide families, read from Postgres and Redis on each scrape.
- `http`: request latency per route template (API process).
- `endpoint`: the route.
- `logs`: `configure_from_settings` (JSON logs, configured secrets registered for masking).
"""
