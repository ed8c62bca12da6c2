"""Deployment files and the prestart step: `solver migrate --wait/--check` against real
PostgreSQL, the backoff of solver.db.wait with a fake clock, and static checks that the
Dockerfile, docker-compose.yml, the env examples and README's configuration reference agree
with the code (CLI subcommands, the settings load_settings reads, every settings field)."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from solver.__main__ import build_parser
from solver.db import migrate
from solver.db.wait import DatabaseUnavailable, migration_state, wait_until_ready
from solver.settings import Settings, SymbolConfig, load_settings
from tests.fixtures.db import scratch_database_url

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SOLVER = [sys.executable, "-m", "solver"]
# Variables the compose file itself interpolates, not solver settings.
COMPOSE_ONLY = {"POSTGRES_PASSWORD"}


def _env(**extra: str) -> dict[str, str]:
    skip = {"DATABASE_URL", "REDIS_URL"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLVER_") and k not in skip}
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [*SOLVER, *args]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


# -- solver migrate --wait / --check against PostgreSQL -------------------------------------------


def test_migrate_wait_reaches_head_and_check_reports_it() -> None:
    url = scratch_database_url("solver_deploy")
    env = _env(DATABASE_URL=url)
    try:
        before = _run(["migrate", "--check"], env)
        assert before.returncode == 1, before.stderr
        assert "not at head" in before.stdout

        done = _run(["migrate", "--wait", "5"], env)
        assert done.returncode == 0, done.stderr
        assert "accepts connections" in done.stdout  # the wait logged its success
        state = migration_state(url)
        assert state.at_head, state
        assert migrate.current(url) == state.heads[0]

        after = _run(["migrate", "--wait", "5", "--check"], env)
        assert after.returncode == 0, after.stdout + after.stderr
        assert f"at head {state.heads[0]}" in after.stdout
    finally:
        migrate.drop_database(url)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connecting is refused


def test_migrate_wait_on_a_closed_port_fails_within_the_timeout() -> None:
    password = "not-in-any-log-7f3a"
    url = f"postgresql://solver:{password}@127.0.0.1:{_closed_port()}/solver"
    start = time.monotonic()
    res = _run(["migrate", "--wait", "2"], _env(DATABASE_URL=url))
    elapsed = time.monotonic() - start
    assert res.returncode == 1
    assert "did not accept connections within 2 s" in res.stderr
    assert "Connection refused" in res.stderr or "connection" in res.stderr.lower()
    assert password not in res.stdout + res.stderr
    assert res.stdout.count("waiting for PostgreSQL") >= 2  # each failed attempt is logged
    assert elapsed < 2 + 8  # the wait itself, plus the interpreter's start-up


# -- the backoff, with a fake clock ---------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_backs_off_until_the_connection_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    t = FakeTime()
    calls: list[float] = []

    def connect(remaining: float) -> None:
        calls.append(remaining)
        t.now += 0.01  # an attempt takes a little time
        if len(calls) < 5:
            raise OSError("connection refused by hunter2-host")

    caplog.set_level("INFO", logger="solver.db.wait")
    result = wait_until_ready(
        connect, timeout_s=30, target="postgres://u:***@db/solver", secret="hunter2", clock=t.clock, sleep=t.sleep
    )
    assert result.attempts == 5
    assert t.sleeps == [0.25, 0.5, 1.0, 2.0]
    assert calls[0] == 30 and all(a > b for a, b in itertools.pairwise(calls))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 4 and all("***-host" in w and "hunter2" not in w for w in warnings)
    assert "attempt 5" in caplog.records[-1].getMessage()


def test_wait_caps_the_delay_and_gives_up_at_the_deadline() -> None:
    t = FakeTime()

    def connect(_: float) -> None:
        raise OSError("refused")

    with pytest.raises(DatabaseUnavailable) as info:
        wait_until_ready(connect, timeout_s=20, target="db:5432", clock=t.clock, sleep=t.sleep, max_delay_s=4)
    assert t.sleeps[:6] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert max(t.sleeps) == 4
    assert t.now == pytest.approx(120)  # never sleeps past the deadline; the last try is at it
    message = str(info.value)
    assert message.startswith("PostgreSQL at db:5432 did not accept connections within 20 s")
    assert f"({len(t.sleeps) + 1} attempts); last error: refused" in message


def test_wait_with_no_time_tries_once() -> None:
    t = FakeTime()
    with pytest.raises(DatabaseUnavailable, match=r"within 0 s \(1 attempt\)"):
        wait_until_ready(lambda _: 1 / 0, timeout_s=0, target="db", clock=t.clock, sleep=t.sleep)
    assert t.sleeps == []
    ok = wait_until_ready(lambda _: None, timeout_s=0, target="db", clock=t.clock, sleep=t.sleep)
    assert ok.attempts == 1


# -- Dockerfile -----------------------------------------------------------------------------------


def _dockerfile() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _final_stage(lines: list[str]) -> list[str]:
    starts = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    return lines[starts[-1] :]


def test_dockerfile_runs_the_solver_cli_as_a_non_root_user() -> None:
    lines = _dockerfile()
    final = _final_stage(lines)
    users = [ln.split(None, 1)[1] for ln in final if ln.upper().startswith("USER ")]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user == "10001"
    entry = [ln for ln in final if ln.upper().startswith("ENTRYPOINT ")]
    assert [json.loads(e.split(None, 1)[1]) for e in entry] == [["solver"]]
    assert [json.loads(ln.split(None, 1)[1]) for ln in final if ln.upper().startswith("CMD ")] == [["api"]]
    # `solver` is the console script of the package: solver.__main__:main, the parser tested below.
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'solver = "solver.__main__:main"' in pyproject
    health = [ln for ln in final if ln.upper().startswith("HEALTHCHECK ")]
    assert len(health) == 1 and "/health" in health[0]
    env = " ".join(ln for ln in final if ln.upper().startswith("ENV "))
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    copied = {ln.split()[-1].rstrip("/").removeprefix("./") for ln in final if ln.upper().startswith("COPY ")}
    # The code resolves alembic.ini, config/ and contracts_abi/ next to the package (/app).
    assert {"solver", "alembic", "config", "contracts_abi", "/opt/venv"} <= copied
    assert any(ln.startswith("COPY alembic.ini") for ln in final)
    assert sum(ln.upper().startswith("FROM ") for ln in lines) == 2  # multi-stage


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".env", ".env.*", ".venv", "node_modules", ".git", ".data"} <= ignored


# -- docker-compose.yml ---------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return data


def _solver_services() -> dict[str, dict[str, Any]]:
    """Services running the solver image (merge keys already applied by the YAML loader)."""
    return {
        name: svc
        for name, svc in _compose()["services"].items()
        if "build" in svc or str(svc.get("image", "")).startswith("symmio-solver")
    }


def test_every_compose_command_is_a_real_cli_command() -> None:
    services = _solver_services()
    assert {"migrate", "api", "worker", "engine", "oracle"} <= set(services)
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = set(sub.choices)
    for name, svc in services.items():
        command = svc.get("command")
        assert isinstance(command, list), f"{name}: give command as a list"
        entry = svc.get("entrypoint")
        if entry is None:
            assert command[0] in commands, f"{name}: {command[0]!r} is not a solver subcommand"
            parser.parse_args(command)  # flags exist and parse (SystemExit otherwise)
        else:  # a module of the package, run with the image's python
            assert entry[:2] == ["python", "-m"] and entry[2].startswith("solver."), f"{name}: {entry}"
            assert find_spec(entry[2]) is not None, f"{name}: no module {entry[2]}"
    assert services["migrate"]["command"][:2] == ["migrate", "--wait"]
    assert services["migrate"]["restart"] == "no"


def test_compose_wiring() -> None:
    compose = _compose()
    svcs = compose["services"]
    assert svcs["postgres"]["image"].startswith("postgres:16")
    assert svcs["redis"]["image"].startswith("redis:7")
    assert "--appendonly" in svcs["redis"]["command"]
    for name in ("postgres", "redis", "api"):
        assert "test" in svcs[name]["healthcheck"], f"{name} needs a healthcheck"
    for name in ("worker", "engine", "migrate"):
        assert svcs[name]["healthcheck"] == {"disable": True}
    assert svcs["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "engine"):
        assert svcs[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("oracle", "anvil", "devnet-deploy"):
        assert svcs[name]["profiles"] == ["local"]
    for name in ("api", "worker", "engine", "migrate"):
        assert "profiles" not in svcs[name]
    # Signer keys reach the worker only.
    for name, svc in _solver_services().items():
        files = svc["env_file"] if isinstance(svc["env_file"], list) else [svc["env_file"]]
        assert (".env.worker" in files) == (name == "worker"), name


# -- environment variable names -------------------------------------------------------------------


def _settings_env_names() -> set[str]:
    """Every variable load_settings reads: SOLVER_<FIELD>, the aliases (DATABASE_URL,
    REDIS_URL), SOLVER_<GROUP> (a JSON object) and SOLVER_<GROUP>__<FIELD>, plus SOLVER_CONFIG."""
    names = {"SOLVER_CONFIG"}
    prefix = Settings.model_config.get("env_prefix", "")
    delim = Settings.model_config.get("env_nested_delimiter", "__")
    for name, field in Settings.model_fields.items():
        names.add(f"{prefix}{name}".upper())
        alias = field.validation_alias
        for choice in getattr(alias, "choices", []):
            if isinstance(choice, str):
                names.add(choice.upper())
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseModel):
            names.update(f"{prefix}{name}{delim}{sub}".upper() for sub in group.model_fields)
    return names


def _env_file_names(path: Path) -> list[str]:
    names = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if re.match(r"#\s*[A-Z][A-Z0-9_]*=", line):
            line = line.lstrip("#").strip()  # commented-out examples must be right too
        elif not line or line.startswith("#"):
            continue
        names.append(line.split("=", 1)[0].strip())
    return names


def test_the_env_scheme_is_the_one_load_settings_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("SOLVER_") and k != "SOLVER_CONFIG"]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SOLVER_WORKER__MAX_BATCH", "7")
    monkeypatch.setenv("SOLVER_CHAIN__PARTY_B_ADDRESSES", '["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]')
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:5432/x")
    monkeypatch.setenv("SOLVER_WORKER__MAX_BACTH", "9")  # a typo is ignored silently: hence these checks
    s = load_settings()
    assert s.worker.max_batch == 7
    assert s.chain.lanes == ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]
    assert s.database_url == "postgresql+psycopg://u@h:5432/x"
    known = _settings_env_names()
    assert {"SOLVER_WORKER__MAX_BATCH", "DATABASE_URL", "REDIS_URL", "SOLVER_API__HOST"} <= known
    assert "SOLVER_WORKER__MAX_BACTH" not in known


def test_env_examples_and_compose_use_only_names_the_solver_reads() -> None:
    known = _settings_env_names()
    compose_text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    for path in (ROOT / ".env.example", ROOT / ".env.worker.example"):
        names = _env_file_names(path)
        assert names, path
        for name in names:
            if name in COMPOSE_ONLY:
                assert "${" + name in compose_text, f"{name} is not used by docker-compose.yml"
                continue
            assert name in known, f"{path.name}: {name} is not read by load_settings"
    worker_names = _env_file_names(ROOT / ".env.worker.example")
    assert worker_names == ["SOLVER_WORKER__SIGNER_PRIVATE_KEYS"]
    assert "SOLVER_WORKER__SIGNER_PRIVATE_KEYS" not in _env_file_names(ROOT / ".env.example")  # worker only
    for name, svc in _solver_services().items():
        for var in svc.get("environment") or {}:
            assert var in known, f"{name}: {var} is not read by load_settings"
    for var in re.findall(r"\$\{([A-Z0-9_]+)", compose_text):
        assert var in COMPOSE_ONLY or var in known, var
    # README's .env for the local profile, and its .env.worker line.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("cat > .env <<'END'\n", 1)[1].split("\nEND\n", 1)[0]
    local = [ln.split("=", 1)[0] for ln in block.splitlines()]
    local += re.findall(r"echo '([A-Z0-9_]+)=.*' > \.env\.worker", readme)
    assert "SOLVER_WORKER__SIGNER_PRIVATE_KEYS" in local
    for name in local:
        assert name in COMPOSE_ONLY or name in known, f"README local .env: {name}"


# -- README: the configuration reference ----------------------------------------------------------


def render_default(field: FieldInfo) -> str:
    """How README's configuration reference writes a field's default."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        return "dev-only value"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list | dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def settings_fields() -> dict[str, FieldInfo]:
    """Dotted name -> field, for every setting: top level, `group.field`, `symbols[].field`."""
    out: dict[str, FieldInfo] = {}
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if name == "symbols":
            out.update({f"symbols[].{sub}": f for sub, f in SymbolConfig.model_fields.items()})
        elif isinstance(group, type) and issubclass(group, BaseModel):
            out.update({f"{name}.{sub}": f for sub, f in group.model_fields.items()})
        else:
            out[name] = field
    return out


_ROW = re.compile(r"^\| `([a-z_]+(?:\[\])?(?:\.[a-z_]+)?)` \| (.+?) \| (.+) \|$")


def _readme_reference() -> dict[str, tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("### Configuration reference")
    end = text.index("\n### ", start + 1)
    rows: dict[str, tuple[str, str]] = {}
    for line in text[start:end].splitlines():
        m = _ROW.match(line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} is listed twice"
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def test_readme_lists_every_setting_with_its_default() -> None:
    rows = _readme_reference()
    fields = settings_fields()
    missing = sorted(set(fields) - set(rows))
    unknown = sorted(set(rows) - set(fields))
    assert not missing, f"README's configuration reference lacks {missing}"
    assert not unknown, f"README's configuration reference lists settings that do not exist: {unknown}"
    for name, field in fields.items():
        default, meaning = rows[name]
        assert default == render_default(field), f"{name}: README says {default}, the code {render_default(field)}"
        assert len(meaning.strip()) > 3, f"{name}: say what it means"
