"""The committed artifacts are exactly what the compiler produces from the sources (needs node)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_build_check_passes() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "solver.devnet.build", "--check"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
