"""CLI: `solver api | worker | engine | oracle | prices | migrate | dev`."""

from __future__ import annotations

import argparse
import sys

from solver.core.errors import ConfigError


def _cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from solver.observability.logs import configure_from_settings
    from solver.settings import load_settings

    settings = load_settings()
    configure_from_settings(settings)
    uvicorn.run(
        "solver.app:app_from_env",
        factory=True,
        host=args.host or settings.api.host,
        port=args.port or settings.api.port,
        workers=args.workers,
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=5,  # then drop idle keep-alive connections, so a stop is prompt
    )
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from solver.db.migrate import upgrade
    from solver.db.wait import DatabaseUnavailable, migration_state, wait_for_database
    from solver.observability.logs import configure_from_settings
    from solver.settings import load_settings

    settings = load_settings()
    configure_from_settings(settings)
    if args.wait is not None:
        try:
            wait_for_database(settings.database_url, args.wait)
        except DatabaseUnavailable as exc:
            print(f"solver: {exc}", file=sys.stderr)
            return 1
    if args.check:
        state = migration_state(settings.database_url)
        if not state.at_head:
            print(f"database is at {state.current or 'no revision'}, not at head {', '.join(state.heads)}")
            return 1
        print(f"database is at head {state.current}")
        return 0
    upgrade(settings.database_url)
    print("database is at the latest migration")
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    from pathlib import Path

    from solver.core.logging import configure_logging
    from solver.devnet.stack import DevOptions, run_dev

    configure_logging("INFO", json_output=False)
    return run_dev(DevOptions(data_dir=Path(args.data_dir), api_port=args.port, anvil_port=args.anvil_port))


def _cmd_oracle(args: argparse.Namespace) -> int:
    import uvicorn

    from solver.observability.logs import configure_from_settings
    from solver.oracle.server import create_oracle_app
    from solver.settings import load_settings

    settings = load_settings()
    configure_from_settings(settings)
    app = create_oracle_app(settings)  # ConfigError (exit 2) without the oracle keys
    uvicorn.run(
        app,
        host=args.host or settings.oracle.host,
        port=args.port or settings.oracle.port,
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from solver.observability.logs import configure_from_settings
    from solver.settings import load_settings
    from solver.worker import main as worker_main

    settings = load_settings()
    configure_from_settings(settings)
    lanes = [int(x) for x in args.lanes.split(",")] if args.lanes else None
    return worker_main(settings, only_lanes=lanes)


def _cmd_engine(_: argparse.Namespace) -> int:
    from solver.engine import main as engine_main
    from solver.observability.logs import configure_from_settings
    from solver.settings import load_settings

    settings = load_settings()
    configure_from_settings(settings)
    return engine_main(settings)


def _cmd_prices(args: argparse.Namespace) -> int:
    """The engine's price feed alone, on the replay source (random walk or CSV)."""
    from pathlib import Path

    from solver.engine import main as engine_main
    from solver.observability.logs import configure_from_settings
    from solver.settings import PricingSettings, load_settings

    settings = load_settings()
    configure_from_settings(settings)
    overrides = {
        "source": "replay",
        "replay_interval_s": args.interval,
        "replay_seed": args.seed,
        "replay_csv": Path(args.csv) if args.csv else None,
    }
    pricing = PricingSettings.model_validate({**settings.pricing.model_dump(), **overrides})
    return engine_main(settings.model_copy(update={"pricing": pricing}), with_loops=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="solver", description="Symmio solver (PartyB)")
    sub = parser.add_subparsers(dest="command", required=True)
    api = sub.add_parser("api", help="run the HTTP/WebSocket API")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    api.add_argument("--workers", type=int, default=1, help="API worker processes")
    api.set_defaults(func=_cmd_api)
    mig = sub.add_parser("migrate", help="create the database if needed and upgrade it to the latest migration")
    mig.add_argument(
        "--wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="first wait (with backoff) until PostgreSQL accepts connections; exit 1 after SECONDS",
    )
    mig.add_argument("--check", action="store_true", help="do not migrate: exit 1 unless the database is at head")
    mig.set_defaults(func=_cmd_migrate)
    dev = sub.add_parser("dev", help="everything on embedded defaults: anvil + contracts, database, API")
    dev.add_argument("--port", type=int, default=8000, help="API port")
    dev.add_argument("--anvil-port", type=int, default=8545)
    dev.add_argument("--data-dir", default=".data", help="embedded PostgreSQL/Redis data and devnet.json")
    dev.set_defaults(func=_cmd_dev)
    oracle = sub.add_parser("oracle", help="run the local oracle: Muon-shaped uPnL/price signatures (dev, tests)")
    oracle.add_argument("--host", default=None)
    oracle.add_argument("--port", type=int, default=None)
    oracle.set_defaults(func=_cmd_oracle)
    worker = sub.add_parser("worker", help="run the chain worker (the only holder of signer keys)")
    worker.add_argument("--lanes", default=None, help="comma-separated lane indexes to run (default: all keys)")
    worker.set_defaults(func=_cmd_worker)
    engine = sub.add_parser("engine", help="run the engine: price feed (settings.pricing) and its loops")
    engine.set_defaults(func=_cmd_engine)
    prices = sub.add_parser(
        "prices", help="only the price feed, on the replay source (random walk or a CSV of ts,symbol,price)"
    )
    prices.add_argument("--interval", type=float, default=1.0, help="seconds between ticks")
    prices.add_argument("--seed", type=int, default=7)
    prices.add_argument("--csv", default=None)
    prices.set_defaults(func=_cmd_prices)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"solver: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
