"""No product module is over MAX_LINES lines (issue 19, one home per concept): a module that grows
past it holds more than one concept, and is split along the seam between them."""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def _product_modules() -> list[Path]:
    """Every Python file of the product: those git tracks, but for the tests (and, in an export
    without .git, the files a checkout holds outside its tools' folders). What is generated (the
    dashboards' JSON) is no Python."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "*.py"], cwd=ROOT, capture_output=True, check=True).stdout
        files = [ROOT / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache"}
        files = [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]
    return sorted(p for p in files if p.relative_to(ROOT).parts[0] != "tests" and p.is_file())


def test_no_product_module_is_over_the_limit() -> None:
    modules = _product_modules()
    # The listing holds the product (an empty one would pass whatever the sizes).
    names = {p.relative_to(ROOT).as_posix() for p in modules}
    assert {"ingest/normalise.py", "sql/migrate.py", "datasource/engine.py", "bench/dataset.py"} <= names
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in modules}
    over = sorted((n, name) for name, n in sizes.items() if n > MAX_LINES)
    assert not over, f"modules over {MAX_LINES} lines: " + ", ".join(f"{name} ({n})" for n, name in reversed(over))
