"""Real processes for end-to-end tests: `solver api`, `solver worker`, `solver oracle`.

Each child gets the test's settings through SOLVER_* variables (solver.core.procenv), its own
process group (so SIGKILL takes the whole process), and a log file the test prints on failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from solver.auth.jwt import JwtCodec
from solver.core.clock import SystemClock
from solver.core.procenv import settings_env
from solver.devnet.anvil import free_port
from solver.devnet.deploy import DevnetInfo
from solver.settings import Settings
from tests.fixtures.app import settings_for


def stack_settings(devnet: DevnetInfo, database_url: str, redis_prefix: str, **overrides: Any) -> Settings:
    api_port, oracle_port = free_port(), free_port()
    base: dict[str, Any] = {
        "api": {"port": api_port, "host": "127.0.0.1"},
        "oracle": {
            "host": "127.0.0.1",
            "port": oracle_port,
            "muon_urls": [f"http://127.0.0.1:{oracle_port}"],
            "schnorr_secret": devnet.oracle_schnorr_secret,
            "gateway_private_key": devnet.oracle_gateway_private_key,
            "muon_app_id": devnet.muon_app_id,
        },
        "worker": {"signer_private_keys": [devnet.solver_private_key], "poll_interval_s": 0.02},
        "log_level": "INFO",
    }
    for key, value in overrides.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and key in base else value
    return settings_for(devnet, database_url, redis_prefix, **base)


class Proc:
    def __init__(self, name: str, args: list[str], settings: Settings, log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.settings = settings
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Proc:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOLVER_")}
        env.update(settings_env(self.settings))
        log = self.log_path.open("ab")
        self.starts += 1
        log.write(f"\n----- start #{self.starts} -----\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "solver", *self.args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, no graceful shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


class Stack:
    """API + worker + oracle on one settings object, and `solver engine` with `engine=True`."""

    def __init__(self, settings: Settings, log_dir: Path, *, engine: bool = False) -> None:
        self.settings = settings
        self.api = Proc("api", ["api"], settings, log_dir)
        self.worker = Proc("worker", ["worker"], settings, log_dir)
        self.oracle = Proc("oracle", ["oracle"], settings, log_dir)
        self.engine = Proc("engine", ["engine"], settings, log_dir) if engine else None
        self.base_url = f"http://127.0.0.1:{settings.api.port}"
        self.oracle_url = f"http://127.0.0.1:{settings.oracle.port}"
        self._jwt = JwtCodec(settings.auth, SystemClock())

    def start(self) -> Stack:
        self.oracle.start()
        wait_http(f"{self.oracle_url}/health", self.oracle)
        if self.engine is not None:
            self.engine.start()
        self.api.start()
        wait_http(f"{self.base_url}/health", self.api)
        self.worker.start()
        return self

    def stop(self) -> None:
        for p in (self.worker, self.api, self.engine, self.oracle):
            if p is not None:
                p.stop()

    def token(self, account: str, owner: str) -> str:
        return self._jwt.issue(account=account, owner=owner, expires_at=datetime.now(UTC) + timedelta(hours=1))

    def logs(self) -> str:
        procs = [p for p in (self.api, self.worker, self.oracle, self.engine) if p is not None]
        return "\n".join(f"===== {p.name} =====\n{p.tail()}" for p in procs)


def wait_http(url: str, proc: Proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited:\n{proc.tail()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{proc.name} did not come up:\n{proc.tail()}")
