"""Run a local anvil node from node_modules (dev tooling and tests).

    python -m solver.devnet.anvil [--port 8545] [--block-time 1]

`start_anvil()` returns a handle once `eth_chainId` answers; `handle.stop()` ends that process
only. Without `--block-time` anvil mines one block per transaction (instant mining).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHAIN_ID = 31337


class AnvilError(RuntimeError):
    pass


def find_anvil(root: Path = REPO_ROOT) -> Path:
    """The anvil binary: $SOLVER_ANVIL_BIN, then node_modules/@foundry-rs/anvil-<os>-<arch>, then PATH."""
    env = os.environ.get("SOLVER_ANVIL_BIN")
    if env:
        return Path(env)
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    base = root / "node_modules" / "@foundry-rs"
    candidates = [base / f"anvil-{sys.platform}-{arch}" / "bin" / "anvil", *sorted(base.glob("anvil-*/bin/anvil"))]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise AnvilError(f"anvil not found under {base} nor on PATH; run `npm ci`")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def rpc(url: str, method: str, params: Sequence[Any] = (), timeout: float = 5.0) -> Any:
    """One JSON-RPC call over HTTP (no web3 needed)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    if not url.startswith(("http://", "https://")):
        raise AnvilError(f"not an HTTP URL: {url!r}")
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310 - checked above
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - checked above
        reply = json.loads(resp.read())
    if "error" in reply:
        raise AnvilError(f"{method}: {reply['error']}")
    return reply["result"]


def set_interval_mining(url: str, seconds: int) -> None:
    """Switch a running anvil from instant to interval mining (deploy first, then slow down)."""
    rpc(url, "evm_setIntervalMining", [seconds])


@dataclass
class Anvil:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate this anvil (SIGTERM, then SIGKILL after `timeout`)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._log.close()
        with contextlib.suppress(FileNotFoundError):
            self.log_path.unlink()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Anvil:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_anvil(
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    block_time: float | None = None,
    chain_id: int = DEFAULT_CHAIN_ID,
    accounts: int = 10,
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
) -> Anvil:
    """Start anvil and wait until it answers. With `port=None` a free port is picked (retried on a race)."""
    attempts = 1 if port is not None else 3
    last_error: AnvilError | None = None
    for _ in range(attempts):
        chosen = port if port is not None else free_port(host)
        try:
            return _start_once(
                chosen,
                host=host,
                block_time=block_time,
                chain_id=chain_id,
                accounts=accounts,
                extra_args=extra_args,
                timeout=timeout,
            )
        except AnvilError as exc:
            last_error = exc
    assert last_error is not None
    raise last_error


def _start_once(
    port: int,
    *,
    host: str,
    block_time: float | None,
    chain_id: int,
    accounts: int,
    extra_args: Sequence[str],
    timeout: float,
) -> Anvil:
    cmd = [str(find_anvil()), "--host", host, "--port", str(port), "--chain-id", str(chain_id)]
    cmd += ["--accounts", str(accounts)]
    if block_time is not None:
        cmd += ["--block-time", str(block_time)]
    cmd += list(extra_args)
    fd, name = tempfile.mkstemp(prefix="anvil-", suffix=".log")
    log = os.fdopen(fd, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    node = Anvil(process=proc, url=f"http://{host}:{port}", port=port, log_path=Path(name), _log=log)
    try:
        _wait_ready(node, chain_id, timeout)
    except BaseException:
        node.stop()
        raise
    return node


def _wait_ready(node: Anvil, chain_id: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise AnvilError(f"anvil exited with code {node.process.returncode}:\n{node.log_tail()}")
        try:
            answered = int(rpc(node.url, "eth_chainId", timeout=1.0), 16)
        except (OSError, urllib.error.URLError, AnvilError):
            time.sleep(0.05)
            continue
        if answered != chain_id:
            raise AnvilError(f"{node.url} answers chain id {answered}, expected {chain_id} (port taken?)")
        return
    raise AnvilError(f"anvil did not answer within {timeout}s:\n{node.log_tail()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solver.devnet.anvil", description="Run a local anvil node.")
    parser.add_argument("--port", type=int, default=8545, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--block-time", type=float, default=None, help="seconds per block (default: instant)")
    parser.add_argument("--chain-id", type=int, default=DEFAULT_CHAIN_ID)
    args = parser.parse_args(argv)
    node = start_anvil(args.port or None, host=args.host, block_time=args.block_time, chain_id=args.chain_id)
    print(node.url, flush=True)
    stop = False

    def _handle(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
    try:
        while not stop and node.process.poll() is None:
            time.sleep(0.2)
    finally:
        node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
