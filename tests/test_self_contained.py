"""A bare clone runs its own tests: no file of the repository names a path outside it."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Folders a checkout may happen to have beside it (reached as ../NAME or by an absolute path), and
# anything under the checkout's parent folder but outside the checkout. Built from parts, so this
# file does not name them itself.
NEIGHBOURS = ("shared", ".library", ".mirror")
OUTSIDE = re.compile(r"(\.\.|/[\w.-]+)/(" + "|".join(map(re.escape, NEIGHBOURS)) + r")/|"
                     + re.escape(str(ROOT.parent) + "/") + r"(?!" + re.escape(ROOT.name) + r"/)")


def _repository_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        return [ROOT / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):  # an export without .git
        skip = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


def test_no_file_names_a_path_outside_the_repository() -> None:
    offenders = []
    for path in _repository_files():
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:4096]:  # binary fixtures
            continue
        for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)


def test_the_check_sees_such_paths() -> None:
    assert OUTSIDE.search('FIXTURES = Path("' + "/".join(["..", "shared", "fixtures"]) + '")')
    assert OUTSIDE.search('Path("' + "/".join(["", "srv", "shared", "reference", "x.yaml"]) + '")')
    assert OUTSIDE.search(str(ROOT.parent / "elsewhere" / "file"))
    assert not OUTSIDE.search(str(ROOT / "tests" / "fixtures"))
    assert not OUTSIDE.search("tests/fixtures/otlp/README.md")
