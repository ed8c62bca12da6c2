"""GET /metrics, /readyz and /health against the real Postgres, Redis, anvil, worker and engine.

The module has its own database (outbox counts are exact) and a Redis prefix per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from solver.app import create_app
from solver.core import redis_keys
from solver.db import migrate
from solver.db.engine import SessionFactory, create_engine, session_factory
from solver.db.models import ChainTx, IntentKind, IntentStatus, TxIntent
from solver.devnet.deploy import DevnetInfo
from solver.engine import build_engine, run_engine
from solver.observability.collect import SCRAPE_SQL, SystemMetrics
from solver.observability.heartbeat import Heartbeats
from solver.observability.logs import configure_from_settings
from solver.pricing.cache import PriceCache, PricePoint
from solver.settings import Settings
from solver.worker import announce
from tests.fixtures.app import settings_for
from tests.fixtures.db import scratch_database_url
from tests.fixtures.trading import running_worker

pytestmark = pytest.mark.integration

LANE = "5"  # a lane no worker serves here: the intents of these tests are never picked up
ACCOUNT = "0x1111111111111111111111111111111111111111"
SOLVER = "0x2222222222222222222222222222222222222222"

FAMILIES = {
    "solver_http_request_duration_seconds",
    "solver_http_requests_in_flight",
    "solver_metrics_source_up",
    "solver_metrics_source_seconds",
    "solver_metrics_collect_seconds",
    "solver_outbox_intents",
    "solver_outbox_oldest_intent_age_seconds",
    "solver_chain_txs_unconfirmed",
    "solver_chain_tx_oldest_unconfirmed_age_seconds",
    "solver_trigger_orders",
    "solver_strategy_orders",
    "solver_strategy_suborders_in_flight",
    "solver_loop_last_beat_seconds",
    "solver_loop_up",
    "solver_worker_lane_info",
    "solver_worker_next_nonce",
    "solver_worker_chain_nonce",
    "solver_worker_nonce_lag",
    "solver_worker_in_flight_txs",
    "solver_worker_txs",
    "solver_worker_state_age_seconds",
    "solver_feed_last_frame_age_seconds",
    "solver_feed_last_publish_age_seconds",
    "solver_feed_events",
    "solver_feed_last_backoff_seconds",
    "solver_feed_state_age_seconds",
    "solver_price_age_seconds",
    "solver_price_fresh",
}


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def metrics_db_url() -> Iterator[str]:
    url = scratch_database_url("solver_metrics")
    migrate.upgrade(url)
    try:
        yield url
    finally:
        migrate.drop_database(url)


@pytest.fixture
async def db(metrics_db_url: str) -> AsyncIterator[SessionFactory]:
    engine = create_engine(metrics_db_url, pool_size=2, max_overflow=2, application_name="solver-metrics-tests")
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
def settings(devnet: DevnetInfo, metrics_db_url: str, redis_prefix: str) -> Settings:
    return settings_for(
        devnet,
        metrics_db_url,
        redis_prefix,
        worker={"signer_private_keys": [devnet.solver_private_key], "poll_interval_s": 0.05},
        observability={"heartbeat_interval_s": 0.1, "state_interval_s": 0.1},
    )


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(settings), base_url="http://testserver.local") as client:
        yield client


# --- helpers -------------------------------------------------------------------------------------


async def scrape(api: AsyncTestClient[Any]) -> dict[str, Metric]:
    resp = await api.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(resp.text)}


def value(families: dict[str, Metric], sample: str, **labels: str) -> float | None:
    """The value of the one sample named `sample` whose labels include `labels`, else None."""
    family = families.get(sample) or families.get(sample.removesuffix("_total").removesuffix("_count"))
    if family is None:
        family = next((f for f in families.values() if sample.startswith(f.name)), None)
    if family is None:
        return None
    found = [s.value for s in family.samples if s.name == sample and labels.items() <= s.labels.items()]
    assert len(found) <= 1, (sample, labels, found)
    return found[0] if found else None


async def add_intent(db: SessionFactory, kind: IntentKind = IntentKind.ALLOCATE_FOR_PARTY_B) -> TxIntent:
    async with db() as s:
        intent = TxIntent(key=f"test:{uuid.uuid4().hex}", kind=kind, lane=int(LANE), account=ACCOUNT)
        s.add(intent)
        await s.commit()
        return intent


# --- the families and the values that move -------------------------------------------------------


async def test_every_family_is_exposed_and_parses(
    api: AsyncTestClient[Any],
    settings: Settings,
    devnet: DevnetInfo,
    redis_client: aioredis.Redis,
    db: SessionFactory,
) -> None:
    # The worker: its lanes beat and publish their nonces.
    async with running_worker(settings, devnet) as worker:
        assert worker.heartbeats is not None
        await asyncio.sleep(0.3)  # a few lane iterations
        assert await worker.heartbeats.flush() >= 1
        assert await worker.heartbeats.publish_states() == 1
    # The engine's price feed (replay), with its heartbeat task, for about a second.
    engine = build_engine(settings, redis=redis_client)
    stop = asyncio.Event()
    task = asyncio.create_task(run_engine(engine, stop))
    await asyncio.sleep(1.5)
    stop.set()
    await asyncio.wait_for(task, 10)
    await api.get("/contract-symbols")

    families = await scrape(api)
    missing = FAMILIES - set(families)
    assert not missing, missing
    empty = {name for name in FAMILIES if not families[name].samples}
    assert empty <= {"solver_feed_last_backoff_seconds"}, empty  # set at the first reconnect only

    assert value(families, "solver_metrics_source_up", source="postgres") == 1
    assert value(families, "solver_metrics_source_up", source="redis") == 1
    assert value(families, "solver_loop_up", loop="lane.0") == 1
    assert value(families, "solver_loop_up", loop="feed.replay") == 1
    next_nonce = value(families, "solver_worker_next_nonce", lane="0")
    latest = value(families, "solver_worker_chain_nonce", lane="0", block="latest")
    assert next_nonce is not None and latest is not None and next_nonce >= latest
    assert value(families, "solver_worker_nonce_lag", lane="0", block="latest") == next_nonce - latest
    assert value(families, "solver_worker_lane_info", lane="0", address=devnet.solver) == 1
    published = value(families, "solver_feed_events_total", feed="replay", event="published")
    assert published is not None and published >= len(settings.symbols)
    for symbol in settings.symbols:  # the replay feed stamps its ticks now
        assert value(families, "solver_price_fresh", symbol=symbol.name) == 1
        age = value(families, "solver_price_age_seconds", symbol=symbol.name)
        assert age is not None and age < 5


async def test_outbox_depth_age_and_unconfirmed_move(api: AsyncTestClient[Any], db: SessionFactory) -> None:
    labels = {"kind": "allocate_for_party_b", "lane": LANE}
    before = await scrape(api)
    queued0 = value(before, "solver_outbox_intents", state="queued", **labels) or 0.0

    first = await add_intent(db)
    second = await add_intent(db)
    async with db() as s:  # make the first one older
        await s.execute(
            text("UPDATE tx_intent SET create_time = now() - interval '90 seconds' WHERE id = :id"), {"id": first.id}
        )
        await s.commit()
    after = await scrape(api)
    assert value(after, "solver_outbox_intents", state="queued", **labels) == queued0 + 2
    age = value(after, "solver_outbox_oldest_intent_age_seconds", state="queued", **labels)
    assert age is not None and 89 < age < 120

    # One goes into a signed transaction: queued -> in_tx, and one unconfirmed transaction.
    async with db() as s:
        nonce = int(time.time() * 1000)
        tx = ChainTx(lane=int(LANE), sender=SOLVER, nonce=nonce, to_address=ACCOUNT, data="0x", gas_limit=1)
        s.add(tx)
        await s.flush()
        await s.execute(
            text("UPDATE tx_intent SET status = 'in_tx', tx_id = :tx WHERE id = :id"), {"tx": tx.id, "id": second.id}
        )
        await s.commit()
    flying = await scrape(api)
    assert value(flying, "solver_outbox_intents", state="queued", **labels) == queued0 + 1
    assert value(flying, "solver_outbox_intents", state="in_tx", **labels) == 1
    assert value(flying, "solver_chain_txs_unconfirmed", lane=LANE) == 1

    # Mined and done, the other one cancelled: nothing of them is left in the gauges.
    async with db() as s:
        await s.execute(text("UPDATE chain_tx SET status = 'mined' WHERE id = :id"), {"id": tx.id})
        for intent, status in ((first, IntentStatus.CANCELLED), (second, IntentStatus.DONE)):
            await s.execute(
                text("UPDATE tx_intent SET status = :st WHERE id = :id"), {"st": status.value, "id": intent.id}
            )
        await s.commit()
    done = await scrape(api)
    # (A lane that is not configured has series only while it has rows in play: 0 or absent.)
    assert (value(done, "solver_outbox_intents", state="queued", **labels) or 0) == queued0
    assert not value(done, "solver_outbox_intents", state="in_tx", **labels)
    assert not value(done, "solver_chain_txs_unconfirmed", lane=LANE)
    assert value(done, "solver_chain_txs_unconfirmed", lane="0") == 0  # configured lanes always have a series


async def test_price_age_and_freshness_move(
    api: AsyncTestClient[Any], redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    before = await scrape(api)
    assert value(before, "solver_price_fresh", symbol="BTCUSDT") == 0  # no price at all
    assert value(before, "solver_price_age_seconds", symbol="BTCUSDT") is None  # missing is not age 0
    prices = PriceCache(redis_client, redis_prefix)
    now = time.time()
    await prices.set(PricePoint("BTCUSDT", Decimal("60000"), now - 2))
    await prices.set(PricePoint("ETHUSDT", Decimal("3000"), now - 100))
    after = await scrape(api)
    btc = value(after, "solver_price_age_seconds", symbol="BTCUSDT")
    eth = value(after, "solver_price_age_seconds", symbol="ETHUSDT")
    assert btc is not None and 2 <= btc < 5
    assert eth is not None and 100 <= eth < 105
    assert value(after, "solver_price_fresh", symbol="BTCUSDT") == 1
    assert value(after, "solver_price_fresh", symbol="ETHUSDT") == 0


async def test_heartbeats_show_up_and_down_then_are_forgotten(
    api: AsyncTestClient[Any], redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    live = Heartbeats(redis_client, redis_prefix)
    live.beat("test.live")
    assert await live.flush() == 1
    stale = Heartbeats(redis_client, redis_prefix, now=lambda: time.time() - 100)
    stale.beat("test.stale")
    await stale.flush()
    families = await scrape(api)
    assert value(families, "solver_loop_up", loop="test.live") == 1
    live_age = value(families, "solver_loop_last_beat_seconds", loop="test.live")
    assert live_age is not None and live_age < 5
    assert value(families, "solver_loop_up", loop="test.stale") == 0
    stale_age = value(families, "solver_loop_last_beat_seconds", loop="test.stale")
    assert stale_age is not None and 100 <= stale_age < 105

    # Silent past forget_after_s (the key expired): gone from /metrics and from the index.
    await redis_client.delete(redis_keys.heartbeat(redis_prefix, "test.stale"))
    families = await scrape(api)
    assert value(families, "solver_loop_up", loop="test.stale") is None
    assert value(families, "solver_loop_up", loop="test.live") == 1
    members = await redis_client.smembers(redis_keys.heartbeat_index(redis_prefix))
    assert members == {b"test.live"}


async def test_request_histogram_uses_the_route_template(api: AsyncTestClient[Any]) -> None:
    route = "/get_locked_params/{symbol}"
    before = await scrape(api)
    count0 = value(before, "solver_http_request_duration_seconds_count", route=route, method="GET", status="2xx")
    unmatched0 = value(
        before, "solver_http_request_duration_seconds_count", route="unmatched", method="GET", status="4xx"
    )
    for symbol in ("BTCUSDT", "ETHUSDT", "1"):
        assert (await api.get(f"/get_locked_params/{symbol}?leverage=10")).status_code == 200
    assert (await api.get("/get_locked_params/BTCUSDT?leverage=100000")).status_code == 400
    assert (await api.get(f"/no/such/path/{uuid.uuid4().hex}")).status_code == 404
    resp = await api.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    labels = dict(route=route, method="GET")
    assert value(families, "solver_http_request_duration_seconds_count", status="2xx", **labels) == (count0 or 0) + 3
    assert value(families, "solver_http_request_duration_seconds_count", status="4xx", **labels) is not None
    assert (
        value(families, "solver_http_request_duration_seconds_count", route="unmatched", method="GET", status="4xx")
        == (unmatched0 or 0) + 1
    )
    routes = {s.labels["route"] for s in families["solver_http_request_duration_seconds"].samples}
    assert not any("BTCUSDT" in r or "no/such" in r for r in routes), routes


async def test_metrics_token_guards_the_scrape(devnet: DevnetInfo, metrics_db_url: str, redis_prefix: str) -> None:
    settings = settings_for(devnet, metrics_db_url, redis_prefix, observability={"metrics_token": "scrape-secret-1"})
    async with AsyncTestClient(app=create_app(settings)) as client:
        refused = await client.get("/metrics")
        assert refused.status_code == 401 and set(refused.json()) == {"error_code", "error_message", "error_detail"}
        ok = await client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-1"})
        assert ok.status_code == 200 and "solver_outbox_intents" in ok.text


# --- scrape cost ---------------------------------------------------------------------------------


async def test_scrape_cost_stays_bounded_with_a_long_history(
    settings: Settings, db: SessionFactory, redis_client: aioredis.Redis, metrics_db_url: str
) -> None:
    """20k finished transactions and intents: the scrape reads the rows in play only (partial
    indexes, no sequential scan of the history) and stays in milliseconds."""
    async with db() as s:
        await s.execute(
            text(
                "INSERT INTO chain_tx (lane, sender, nonce, to_address, data, gas_limit, status)"
                " SELECT 7, :sender, n, :to, '0x', 1, 'mined' FROM generate_series(1, 20000) AS n"
            ),
            {"sender": "0x3333333333333333333333333333333333333333", "to": ACCOUNT},
        )
        await s.execute(
            text(
                "INSERT INTO tx_intent (key, kind, status, lane, account, tx_id)"
                " SELECT 'hist:' || t.id, 'open_quote', 'done', 7, :account, t.id"
                " FROM chain_tx t WHERE t.lane = 7"
            ),
            {"account": ACCOUNT},
        )
        await s.commit()
        await s.execute(text("ANALYZE chain_tx"))
        await s.execute(text("ANALYZE tx_intent"))
        plan = "\n".join(str(r[0]) for r in (await s.execute(text("EXPLAIN " + str(SCRAPE_SQL)))).all())
    assert "Seq Scan on tx_intent" not in plan, plan
    assert "Seq Scan on chain_tx" not in plan, plan

    engine = create_engine(metrics_db_url, pool_size=1, max_overflow=0)
    try:
        system = SystemMetrics(settings=settings, redis=redis_client, engine=engine)
        await system.collect()  # connections opened
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            families = await system.collect()
            timings.append(time.perf_counter() - started)
        by_name = {f.name: f for f in families}
        per_source = {s.labels["source"]: s.value for s in by_name["solver_metrics_source_seconds"].samples}
    finally:
        await engine.dispose()
    timings.sort()
    median, worst = timings[len(timings) // 2], timings[-1]
    print(f"\nscrape cost over 20 scrapes: median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms; last {per_source}")
    # Milliseconds on an idle machine (about 8 ms); generous bounds, as other suites may share it.
    # The plan check above is what keeps it flat as the history grows.
    assert median < 0.25, timings
    assert worst < 1.0, timings


# --- readiness and liveness ----------------------------------------------------------------------


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung dependency)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not done.is_set():
            with contextlib.suppress(OSError):
                held.append(sock.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        done.set()
        thread.join(2)
        for c in held:
            c.close()
        sock.close()


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: connecting is refused


@pytest.mark.parametrize("dependency", ["redis", "database"])
@pytest.mark.parametrize("failure", ["refused", "hangs"])
async def test_readyz_names_the_dead_dependency_quickly(
    devnet: DevnetInfo, metrics_db_url: str, redis_prefix: str, dependency: str, failure: str
) -> None:
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(silent_server()) if failure == "hangs" else _refused_port()
        overrides: dict[str, Any] = {"observability": {"probe_timeout_s": 1, "scrape_timeout_s": 1}}
        db_url = metrics_db_url
        if dependency == "redis":
            overrides["redis_url"] = f"redis://127.0.0.1:{port}/0"
        else:
            db_url = f"postgresql://postgres:pw-not-logged@127.0.0.1:{port}/solver"
        settings = settings_for(devnet, db_url, redis_prefix, **overrides)
        async with AsyncTestClient(app=create_app(settings)) as client:  # starts without it
            assert (await client.get("/health")).json() == {"status": "ok"}
            started = time.perf_counter()
            resp = await client.get("/readyz")
            took = time.perf_counter() - started
            assert resp.status_code == 503
            body = resp.json()
            assert body["isReady"] is False
            assert body["failed"] == [dependency]
            assert body["checks"][dependency] is False and body["checks"]["chain"] is True
            assert took < 3, took
            # /metrics still answers, saying which source is missing.
            started = time.perf_counter()
            families = await scrape(client)
            assert time.perf_counter() - started < 3
            source = "postgres" if dependency == "database" else "redis"
            assert value(families, "solver_metrics_source_up", source=source) == 0


async def test_readyz_reports_price_freshness_and_fails_on_it_only_when_configured(
    devnet: DevnetInfo, metrics_db_url: str, redis_prefix: str, redis_client: aioredis.Redis
) -> None:
    plain = settings_for(devnet, metrics_db_url, redis_prefix)
    async with AsyncTestClient(app=create_app(plain)) as client:
        resp = await client.get("/readyz")
        assert resp.status_code == 200
        assert resp.json()["prices"] == {"ok": False, "not_fresh": ["BTCUSDT", "ETHUSDT", "XRPUSDT"]}
        assert "prices" not in resp.json()["checks"]
    strict = settings_for(devnet, metrics_db_url, redis_prefix, observability={"ready_requires_fresh_prices": True})
    async with AsyncTestClient(app=create_app(strict)) as client:
        resp = await client.get("/readyz")
        assert resp.status_code == 503 and resp.json()["failed"] == ["prices"]
        prices = PriceCache(redis_client, redis_prefix)
        for s in strict.symbols:
            await prices.set(PricePoint(s.name, Decimal("1"), time.time()))
        resp = await client.get("/readyz")
        assert resp.status_code == 200 and resp.json()["prices"] == {"ok": True, "not_fresh": []}


# --- logs ----------------------------------------------------------------------------------------


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_worker_startup_logging_never_shows_the_signer_key(
    settings: Settings, devnet: DevnetInfo, root_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's own start-up path (settings, build, announce, lanes seeding their nonces) and
    the careless lines a future change could add: the key appears in none of them."""
    key = devnet.solver_private_key
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    db_url = settings.database_url.replace("postgres@", "postgres:db-password-xyz@")
    noisy = settings.model_copy(update={"log_level": "DEBUG", "database_url": db_url})
    configure_from_settings(noisy)
    async with running_worker(noisy, devnet) as worker:  # (the test server trusts any password)
        announce(worker)
        await asyncio.sleep(0.3)  # lanes recover: "next nonce" lines with lane context
        log = logging.getLogger("solver.worker")
        log.info("settings %r", noisy)
        log.info("dump %s", noisy.model_dump())
        log.warning("careless: %s", key, extra={"signer_key": key, "tx_hash": key})
        try:
            raise RuntimeError(f"signing failed for {key.removeprefix('0x').upper()}")
        except RuntimeError:
            log.exception("careless traceback")
        log.info("dsn %s", db_url)
    text_out = out.getvalue()
    bare = key.removeprefix("0x").lower()
    assert bare not in text_out.lower()
    assert "db-password-xyz" not in text_out
    lines = [json.loads(line) for line in text_out.splitlines() if line.startswith("{")]
    started = [r for r in lines if r["msg"].startswith("worker started")]
    assert started and started[0]["lanes"] == devnet.solver and "***" in started[0]["database_url"]
    seeded = [r for r in lines if "next nonce" in r["msg"]]
    assert seeded and seeded[0]["lane"] == 0 and seeded[0]["signer"] == devnet.solver


# --- several API processes -----------------------------------------------------------------------


def test_multiprocess_mode_sums_every_api_process(tmp_path: Any) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set, a scrape of any API process shows every process's requests."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    observe = (
        "from solver.observability.http import HttpMetrics\n"
        "m = HttpMetrics()\n"
        "m.duration.labels('/x/{id}', 'GET', '2xx').observe(0.01)\n"
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", observe], env=env, check=True, timeout=60)
    scrape_code = "from solver.observability.http import HttpMetrics\nprint(HttpMetrics().exposition().decode())\n"
    out = subprocess.run([sys.executable, "-c", scrape_code], env=env, check=True, timeout=60, capture_output=True)
    families = {f.name: f for f in text_string_to_metric_families(out.stdout.decode())}
    counts = [
        s.value
        for s in families["solver_http_request_duration_seconds"].samples
        if s.name.endswith("_count") and s.labels.get("route") == "/x/{id}"
    ]
    assert counts == [2]
