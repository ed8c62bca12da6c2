"""`solver dev`: the system on embedded defaults, in one command.

anvil (npm) with the project's contracts deployed and demo accounts funded and delegated, a
database and Redis (the ones in DATABASE_URL / REDIS_URL, else embedded engines in the data
directory), migrations, then the local oracle, the engine (replay price feed) and the chain worker as
child processes (the same commands an operator runs, on this process's settings) and the API
in this process. Prints the URLs and a ready demo account.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

from solver.core.procenv import settings_env
from solver.devnet.anvil import free_port, start_anvil
from solver.devnet.deploy import DevnetInfo, deploy
from solver.devnet.embedded import start_embedded
from solver.settings import Settings, load_settings


@dataclass(frozen=True)
class DevOptions:
    data_dir: Path
    api_port: int = 8000
    anvil_port: int = 8545
    block_time: float | None = None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _dev_settings(base: Settings, info: DevnetInfo, database_url: str, redis_url: str, api_port: int) -> Settings:
    oracle_port = 8546 if _port_free(8546) else free_port()
    return load_settings(
        env="dev",
        database_url=database_url,
        redis_url=redis_url,
        chain={
            **base.chain.model_dump(),
            "chain_id": info.chain_id,
            "rpc_urls": [info.rpc_url],
            "multi_account_address": info.multi_account,
            "symmio_address": info.symmio,
            "collateral_address": info.collateral,
            "solver_address": info.solver,
            "start_block": info.deploy_block,
        },
        auth={**base.auth.model_dump(), "public_base_url": f"http://localhost:{api_port}"},
        api={**base.api.model_dump(), "port": api_port},
        oracle={
            **base.oracle.model_dump(),
            "host": "127.0.0.1",
            "port": oracle_port,
            "muon_urls": [f"http://127.0.0.1:{oracle_port}"],
            "muon_app_id": info.muon_app_id,
            "schnorr_secret": info.oracle_schnorr_secret,
            "gateway_private_key": info.oracle_gateway_private_key,
        },
        worker={**base.worker.model_dump(), "signer_private_keys": [info.solver_private_key]},
    )


class Child:
    """A `solver <command>` child on the dev settings, logging to the data directory."""

    def __init__(self, command: list[str], settings: Settings, log_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOLVER_") or k == "SOLVER_CONFIG"}
        env.update(settings_env(settings))
        self.name = command[0]
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "solver", *command], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def _wait_http(url: str, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited; see {child.log_path}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{child.name} did not start; see {child.log_path}")


def banner(settings: Settings, info: DevnetInfo, data_dir: Path) -> str:
    demo = info.demo_accounts[0]
    base = f"http://localhost:{settings.api.port}"
    lines = "\n".join(
        [
            "",
            "Symmio solver (dev) is up",
            f"  API            {base}",
            f"  API docs       {base}/docs  (Swagger UI: {base}/docs/swagger)",
            f"  oracle (Muon)  {settings.oracle.muon_urls[0]}/v1/",
            "  logs           {data_dir}/logs/ (worker, oracle, engine)",
            f"  chain (anvil)  {info.rpc_url}  chain id {info.chain_id}",
            f"  MultiAccount   {info.multi_account}",
            f"  Symmio         {info.symmio}",
            f"  solver/PartyB  {info.solver}",
            "  demo trader (sub-account funded with collateral and delegated to the solver):",
            f"    owner        {demo.owner}",
            f"    owner key    {demo.owner_private_key}   (anvil dev key: never use on a real chain)",
            f"    sub-account  {demo.account}",
            f"  {len(info.demo_accounts)} demo accounts, addresses and dev keys: {{data_dir}}/devnet.json",
            "",
        ]
    )
    return lines.replace("{data_dir}", str(data_dir))


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run_dev(options: DevOptions) -> int:
    import uvicorn

    from solver.app import create_app
    from solver.db.migrate import drop_database, upgrade

    base = load_settings()
    options.data_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        port = options.anvil_port if _port_free(options.anvil_port) else None
        anvil = start_anvil(port, block_time=options.block_time)
        stack.callback(anvil.stop)
        info = deploy(anvil.url, base.symbols)
        (options.data_dir / "devnet.json").write_text(info.to_json())

        database_url = os.environ.get("DATABASE_URL")
        redis_url = os.environ.get("REDIS_URL")
        if not database_url or not redis_url:
            embedded = start_embedded(options.data_dir)
            stack.callback(embedded.stop)
            database_url = database_url or embedded.database_url
            redis_url = redis_url or embedded.redis_url
        if not os.environ.get("DATABASE_URL"):
            # A fresh chain every run: requests, quotes and sent transactions of the last run's
            # chain would be meaningless (and its nonces wrong), so the embedded database starts over.
            drop_database(database_url)
        upgrade(database_url)

        settings = _dev_settings(base, info, database_url, redis_url, options.api_port)
        logs = options.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        oracle = Child(["oracle"], settings, logs / "oracle.log")
        stack.callback(oracle.stop)
        _wait_http(f"{settings.oracle.muon_urls[0]}/health", oracle)
        engine = Child(["engine"], settings, logs / "engine.log")  # replay price feed by default
        stack.callback(engine.stop)
        worker = Child(["worker"], settings, logs / "worker.log")
        stack.callback(worker.stop)
        print(banner(settings, info, options.data_dir), flush=True)
        # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit so the
        # ExitStack still stops anvil and the embedded engines.
        signal.signal(signal.SIGTERM, _exit_on_signal)
        uvicorn.run(
            create_app(settings),
            host=settings.api.host,
            port=settings.api.port,
            log_config=None,
            timeout_graceful_shutdown=5,
        )
    return 0
