"""Compile the local contracts with the npm `solc` (via node) into solver/devnet/build/.

python -m solver.devnet.build            write artifacts
python -m solver.devnet.build --check    recompile, exit 1 if the committed artifacts differ
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from solver.devnet.artifacts import (
    BUILD_DIR,
    CONTRACT_NAMES,
    DEVNET_DIR,
    DIAMOND_FACETS,
    SOLC_SETTINGS,
    SOLC_VERSION,
    artifact_path,
    read_sources,
    signature,
    source_hash,
)

REPO_ROOT = DEVNET_DIR.parent.parent
DRIVER = DEVNET_DIR / "solc_driver.js"


class CompileError(RuntimeError):
    pass


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise CompileError("node is not on PATH (needed to run the npm solc compiler)")
    return node


def compile_sources(sources: dict[str, str]) -> dict[str, Any]:
    """Run solc standard-JSON and return `output["contracts"]`; raise on any error."""
    solc_dir = REPO_ROOT / "node_modules" / "solc"
    if not solc_dir.exists():
        raise CompileError(f"{solc_dir} not found; run `npm ci`")
    std_input = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": SOLC_SETTINGS,
    }
    proc = subprocess.run(
        [_node(), str(DRIVER), str(solc_dir)],
        input=json.dumps(std_input).encode(),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise CompileError(proc.stderr.decode(errors="replace"))
    result = json.loads(proc.stdout)
    if not str(result["version"]).startswith(SOLC_VERSION):
        raise CompileError(f"expected solc {SOLC_VERSION}, node_modules has {result['version']}")
    output = result["output"]
    errors = [e for e in output.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise CompileError("\n".join(e["formattedMessage"] for e in errors))
    contracts: dict[str, Any] = output["contracts"]
    return contracts


def build_artifacts() -> dict[str, str]:
    """Compile and render every artifact: contract name -> JSON text."""
    sources = read_sources()
    compiled = compile_sources(sources)
    digest = source_hash(sources)
    by_name = {name: data for unit in compiled.values() for name, data in unit.items()}
    rendered = {}
    for name in CONTRACT_NAMES:
        data = by_name[name]
        abi = list(data["abi"])
        for facet in DIAMOND_FACETS.get(name, ()):
            abi = merge_abi(abi, by_name[facet]["abi"])
        artifact = {
            "contractName": name,
            "abi": abi,
            "bytecode": "0x" + data["evm"]["bytecode"]["object"],
            "sourceHash": digest,
        }
        rendered[name] = json.dumps(artifact, indent=1) + "\n"
    return rendered


def merge_abi(abi: list[dict[str, Any]], facet_abi: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add the facet's functions, events and errors that the diamond does not already declare."""
    seen = {(e["type"], signature(e)) for e in abi}
    extra = [
        e for e in facet_abi if e["type"] in ("function", "event", "error") and (e["type"], signature(e)) not in seen
    ]
    return abi + extra


def write(rendered: dict[str, str]) -> None:
    BUILD_DIR.mkdir(exist_ok=True)
    for name, text in rendered.items():
        artifact_path(name).write_text(text, encoding="utf-8")


def check(rendered: dict[str, str]) -> list[str]:
    """Names whose committed artifact differs from a fresh compile (or is missing / extra)."""
    bad = [n for n, text in rendered.items() if not _same(artifact_path(n), text)]
    extra = sorted(p.stem for p in BUILD_DIR.glob("*.json") if p.stem not in rendered)
    return bad + extra


def _same(path: Path, text: str) -> bool:
    return path.exists() and path.read_text(encoding="utf-8") == text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solver.devnet.build", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed artifacts differ from the sources")
    args = parser.parse_args(argv)
    try:
        rendered = build_artifacts()
    except CompileError as exc:
        print(f"compilation failed:\n{exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = check(rendered)
        if stale:
            print(f"artifacts out of date: {', '.join(stale)}; run `python -m solver.devnet.build`", file=sys.stderr)
            return 1
        print(f"artifacts up to date ({len(rendered)} contracts)")
        return 0
    write(rendered)
    print(f"wrote {len(rendered)} artifacts to {BUILD_DIR.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
