"""The test harness itself: `-m "not db"` leaves out every test that reaches the database without
anyone marking it and starts no cluster."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_not_db_runs_the_unit_tests_alone_without_a_cluster():
    # test_ingest_directory's tests take client, conn or db_url, none of them marked by hand.
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "not db", "-v", "-p", "no:cacheprovider",
                           "tests/test_ingest_directory.py", "tests/test_config.py"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "test_ingest_directory.py::" not in proc.stdout
    assert "tests/test_config.py::" in proc.stdout and " deselected" in proc.stdout
    assert "test cluster: not started" in proc.stdout
