"""`solver dev` as a new user runs it: one command, embedded PostgreSQL and Redis, a funded demo
account that can log in with SIWE and read its balance."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from solver.auth.siwe_message import SiweFields, build_message
from solver.devnet.anvil import free_port

pytestmark = pytest.mark.e2e


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture
def dev_stack(tmp_path: Path) -> tuple[str, dict[str, object]]:
    api_port, anvil_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SOLVER_CONFIG")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "solver",
            "dev",
            "--port",
            str(api_port),
            "--anvil-port",
            str(anvil_port),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://localhost:{api_port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else "solver dev exited"
            try:
                if httpx.get(f"{base}/readyz", timeout=1).json().get("isReady"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        else:
            pytest.fail("solver dev did not become ready in 120 s")
        info = json.loads((tmp_path / "data" / "devnet.json").read_text())
        yield base, info
        # SIGTERM to the main process alone (as a supervisor sends it): it must stop what it started.
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert not _answers(anvil_port), "anvil still running after solver dev stopped"
        assert not (tmp_path / "data" / "pg" / "postmaster.pid").exists(), "embedded PostgreSQL still running"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_dev_stack_serves_login_and_balances(dev_stack: tuple[str, dict[str, object]]) -> None:
    base, info = dev_stack
    demo = info["demo_accounts"][0]  # type: ignore[index]
    account, owner, key = demo["account"], demo["owner"], demo["owner_private_key"]

    with httpx.Client(base_url=base, timeout=10) as client:
        assert (client.get("/docs")).status_code == 200
        nonce = client.get(f"/nonce/{account}").json()["nonce"]
        now = datetime.now(UTC)
        issued, expires = _iso(now), _iso(now + timedelta(hours=1))
        text = build_message(SiweFields("localhost", owner, account, f"{base}/login", 31337, nonce, issued, expires))
        sig = Account.sign_message(encode_defunct(text=text), private_key=key).signature.hex()
        body = {
            "account_address": account,
            "nonce": nonce,
            "issued_at": issued,
            "expiration_time": expires,
            "signature": "0x" + sig.removeprefix("0x"),
        }
        resp = client.post("/login", json=body, headers={"Origin": "http://localhost:3000"})
        assert resp.status_code == 200, resp.text
        token = resp.json()["access_token"]
        verify = client.post(f"/auth/verify?party_a_address={account}", headers={"Authorization": f"Bearer {token}"})
        assert verify.json()["successful"] is True

        balances = client.get(f"/get_balance_info/{owner}/{info['multi_account']}").json()
        party_a = balances[account]["party_a"]
        assert party_a["allocated_balance"] == "100000"
        assert party_a["available_balance"] == "100000"
