"""CLI: `solver api | migrate | dev` (worker, engine and oracle arrive with their issues)."""

from __future__ import annotations

import argparse
import sys

from solver.core.errors import ConfigError


def _cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from solver.core.logging import configure_logging
    from solver.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    uvicorn.run(
        "solver.app:app_from_env",
        factory=True,
        host=args.host or settings.api.host,
        port=args.port or settings.api.port,
        workers=args.workers,
        log_config=None,
        proxy_headers=True,
    )
    return 0


def _cmd_migrate(_: argparse.Namespace) -> int:
    from solver.db.migrate import upgrade
    from solver.settings import load_settings

    settings = load_settings()
    upgrade(settings.database_url)
    print("database is at the latest migration")
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    from pathlib import Path

    from solver.core.logging import configure_logging
    from solver.devnet.stack import DevOptions, run_dev

    configure_logging("INFO", json_output=False)
    return run_dev(DevOptions(data_dir=Path(args.data_dir), api_port=args.port, anvil_port=args.anvil_port))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="solver", description="Symmio solver (PartyB)")
    sub = parser.add_subparsers(dest="command", required=True)
    api = sub.add_parser("api", help="run the HTTP/WebSocket API")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    api.add_argument("--workers", type=int, default=1, help="API worker processes")
    api.set_defaults(func=_cmd_api)
    mig = sub.add_parser("migrate", help="create the database if needed and upgrade it to the latest migration")
    mig.set_defaults(func=_cmd_migrate)
    dev = sub.add_parser("dev", help="everything on embedded defaults: anvil + contracts, database, API")
    dev.add_argument("--port", type=int, default=8000, help="API port")
    dev.add_argument("--anvil-port", type=int, default=8545)
    dev.add_argument("--data-dir", default=".data", help="embedded PostgreSQL/Redis data and devnet.json")
    dev.set_defaults(func=_cmd_dev)
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
