"""`solver dev` as a new user runs it: one command, embedded PostgreSQL and Redis, a funded demo
account that can log in with SIWE and read its balance, and `examples/bot.py` trading on it.

One dev stack serves the whole module; the tests run in file order (the balance check expects
the untouched demo account, the bot then trades on it)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from solver.auth.siwe_message import SiweFields, build_message
from solver.devnet.anvil import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DevStack = tuple[str, dict[str, object], Path]  # API base URL, devnet.json, data directory


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture(scope="module")
def dev_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    data_dir = tmp_path_factory.mktemp("solver_dev") / "data"
    api_port, anvil_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SOLVER_CONFIG")}
    # The API logs to stdout: a file, not a pipe nobody reads (a full pipe would block the server).
    log_path = data_dir.parent / "solver-dev.log"
    log = log_path.open("wb")
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
            str(data_dir),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://localhost:{api_port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).json().get("isReady"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        else:
            pytest.fail("solver dev did not become ready in 120 s")
        info = json.loads((data_dir / "devnet.json").read_text())
        yield base, info, data_dir
        # SIGTERM to the main process alone (as a supervisor sends it): it must stop what it started.
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert not _answers(anvil_port), "anvil still running after solver dev stopped"
        assert not (data_dir / "pg" / "postmaster.pid").exists(), "embedded PostgreSQL still running"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_dev_stack_serves_login_and_balances(dev_stack: DevStack) -> None:
    base, info, _ = dev_stack
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


def test_example_bot_opens_and_closes(dev_stack: DevStack) -> None:
    """examples/bot.py as a user runs it against `solver dev`: login, open, close, then a second
    position under a trailing stop loss that the engine fires on the replayed prices."""
    base, _, data_dir = dev_stack
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT_")}
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "examples/bot.py", "--base-url", base, "--devnet-json", str(data_dir / "devnet.json")],
        cwd=REPO,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=360,
    )
    output = run.stdout + run.stderr
    logs = "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in (data_dir / "logs").glob("*.log"))
    took = time.monotonic() - started
    assert run.returncode == 0, f"bot exited {run.returncode} after {took:.1f} s:\n{output}\n{logs}"
    opened = re.search(r"^opened: quote id (\d+) \(temp (-\d+)\)", output, re.MULTILINE)
    assert opened, output
    quote_id = int(opened.group(1))
    assert quote_id > 0, output
    assert re.search(rf"^closed: quote id {quote_id} filled ", output, re.MULTILINE), output
    assert "FillOrderInstantClose" in output, output
    # The second position: a trailing stop loss the engine fires on the replayed prices.
    opens = [int(m) for m in re.findall(r"^opened: quote id (\d+)", output, re.MULTILINE)]
    assert len(opens) == 2 and opens[1] != quote_id, output
    fired = re.search(r"^stop loss fired: mark (\S+) crossed (\S+)$", output, re.MULTILINE)
    assert fired, output
    assert Decimal(fired.group(1)) <= Decimal(fired.group(2)), output  # a LONG's stop fires at or under it
    assert re.search(rf"^stopped out: quote id {opens[1]} filled ", output, re.MULTILINE), output
