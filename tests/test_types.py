"""The code type-checks. The receiver reads untrusted input, and a wrong annotation there hid a
bug that failed whole batches (a JSON list where a name was expected). mypy reads the package
as it is installed: `agent_analytics.ingest` lives in `ingest/` (pyproject's package-dir), so the
check runs over a tree of links laid out like the installed package."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ["agent_analytics"]  # every subpackage: ingest, sql, datasource, dashboards


def _installed_layout(into: Path) -> None:
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    # Parents before children: a subpackage's link goes inside its parent's directory.
    for name, folder in sorted(package_dirs.items(), key=lambda kv: kv[0].count(".")):
        target = into.joinpath(*name.split("."))
        if "." not in name:
            target.mkdir(parents=True)
            for entry in (ROOT / folder).iterdir():
                if entry.name != "__pycache__" and not (target / entry.name).exists():
                    (target / entry.name).symlink_to(entry)
        elif not target.exists():
            target.symlink_to(ROOT / folder)


def test_the_package_type_checks(tmp_path):
    _installed_layout(tmp_path / "tree")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir",
         str(tmp_path / "cache"), *(arg for name in CHECKED for arg in ("-p", name))],
        cwd=tmp_path / "tree", capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    # Every module was read (a broken link would be a missing import, which the settings ignore).
    modules = sum(name.endswith(".py") for _, _, names in os.walk(tmp_path / "tree", followlinks=True)
                  for name in names)
    checked = re.search(r"no issues found in (\d+) source files", out.stdout)
    assert checked and int(checked.group(1)) >= modules > 50, (out.stdout, modules)
