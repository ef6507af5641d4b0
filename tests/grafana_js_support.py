"""Runs Grafana's own published code (tests/grafana_js: @grafana/schema and @grafana/data of the
pinned Grafana release, installed by scripts/setup.sh with `npm ci`) from the tests, in Node.js.

Where Node.js or the packages are missing, `run` skips the calling test with the reason, and the
run's summary line says what ran (see conftest.pytest_terminal_summary)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parent / "grafana_js"
PACKAGES = ("@grafana/data", "@grafana/schema", "typescript")
# What this test run's scripts did: script -> "ran" or the reason it did not.
RUNS: dict[str, str] = {}


def unavailable() -> str | None:
    """Why Grafana's code cannot run here, or None."""
    if shutil.which("node") is None:
        return "Node.js is not installed"
    missing = [p for p in PACKAGES if not (JS_DIR / "node_modules" / p / "package.json").is_file()]
    if missing:
        return f"{', '.join(missing)} not installed in tests/grafana_js (scripts/setup.sh runs npm ci there)"
    return None


def pinned_version(package: str) -> str:
    return json.loads((JS_DIR / "package.json").read_text())["dependencies"][package]


def installed_version(package: str) -> str:
    return json.loads((JS_DIR / "node_modules" / package / "package.json").read_text())["version"]


def run(script: str, args: list[str] | None = None, stdin: Any = None, timeout: float = 120) -> Any:
    """`node tests/grafana_js/<script> args...` with `stdin` as JSON; its stdout parsed as JSON."""
    reason = unavailable()
    if reason:
        RUNS.setdefault(script, f"not run: {reason}")
        pytest.skip(f"Grafana's own code ({script}) not run: {reason}")
    proc = subprocess.run(["node", str(JS_DIR / script), *(args or [])], cwd=JS_DIR, timeout=timeout,
                          input=json.dumps(stdin) if stdin is not None else "", capture_output=True, text=True)
    assert proc.returncode == 0, f"node {script} failed:\n{proc.stderr[-3000:]}"
    RUNS[script] = f"ran with @grafana/data {installed_version('@grafana/data')}"
    return json.loads(proc.stdout)


def try_run(script: str, args: list[str] | None = None, stdin: Any = None) -> tuple[Any, str | None]:
    """Like `run`, but (None, reason) where Grafana's code cannot run, for tests that check a model
    of it first and Grafana's own code where they can."""
    reason = unavailable()
    if reason:
        RUNS.setdefault(script, f"not run: {reason}")
        return None, reason
    return run(script, args, stdin), None


def summary() -> str:
    if not RUNS:
        return "Grafana's own code (tests/grafana_js): not used by the selected tests"
    return "Grafana's own code (tests/grafana_js): " + "; ".join(f"{k} {v}" for k, v in sorted(RUNS.items()))
