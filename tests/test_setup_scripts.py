"""scripts/setup.sh's parts (scripts/lib.sh), run by bash as scripts/run and scripts/test run
them: phases that say when they start and how long they took, a heartbeat in long ones, the
command that installs PostgreSQL, and build files that a run as root must not leave to a user."""
from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root: plays `sudo scripts/run` in another user's checkout")


def _nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


def _bash(script: str, cwd: Path, as_user: pwd.struct_passwd | None = None, timeout: float = 60,
          **env: str) -> subprocess.CompletedProcess:
    """`script` after sourcing scripts/lib.sh, in `cwd`, as `as_user` (dropping root) if given."""
    prefix = []
    if as_user is not None:
        prefix = ["setpriv", f"--reuid={as_user.pw_uid}", f"--regid={as_user.pw_gid}", "--clear-groups"]
    return subprocess.run([*prefix, "bash", "-c", f"set -euo pipefail; . scripts/lib.sh; {script}"], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **env})


@pytest.fixture
def checkout() -> Iterator[Path]:
    """A checkout of the scripts owned by `nobody` (as a user's clone is theirs), where we are root."""
    path = Path(tempfile.mkdtemp(prefix="aa-test-checkout-", dir="/tmp"))
    os.chmod(path, 0o755)
    shutil.copytree(REPO / "scripts", path / "scripts")
    if ROOT:
        user = _nobody()
        for p in [path, *path.rglob("*")]:
            os.chown(p, user.pw_uid, user.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_phase_says_when_it_starts_beats_while_it_runs_and_says_how_long_it_took():
    # The heartbeat runs beside the phase: if it outlived it, its open stdout would hold this run
    # until the timeout.
    # The durations are bash's $SECONDS, whole seconds of the clock: a 4 s phase that starts
    # just before a second turns says 5 s. Two beats in 4 s leave a loaded machine 2 s of slack.
    proc = _bash('aa_step "waiting" "sleeping 4 s" sleep 4', REPO, timeout=60, AA_HEARTBEAT_S="1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"setup \[\d+ s\] waiting: sleeping 4 s \.\.\.", lines[0])
    beats = [line for line in lines if "... still waiting (" in line]
    assert len(beats) >= 2 and beats[0].endswith("still waiting (1 s)"), lines
    assert re.fullmatch(r"setup \[\d+ s\] waiting: done in [45] s", lines[-1]), lines


def test_a_failing_phase_says_so_and_fails_the_script():
    # Its heartbeat's 20 s sleep ends with it: nothing holds the output open after the script.
    proc = _bash('aa_step "breaking" "exiting 3" sh -c "exit 3"; echo not reached', REPO, timeout=10,
                 AA_HEARTBEAT_S="20")
    assert proc.returncode == 3
    assert "not reached" not in proc.stdout
    assert re.search(r"breaking: FAILED after \d+ s \(exit status 3\)", proc.stderr)


def test_without_postgresql_and_without_root_the_message_names_the_install_command(checkout):
    # This machine has the server: the check is told it has not, as on a bare machine.
    proc = _bash("aa_have_pg_server() { return 1; }; aa_need_pg_server; echo not reached", checkout,
                 as_user=_nobody() if ROOT else None)
    assert proc.returncode == 1
    assert "not reached" not in proc.stdout
    assert shutil.which("apt-get"), "this test expects a Debian-like machine"
    assert "\n    sudo apt-get install postgresql\n" in proc.stderr


def _owners(path: Path) -> set[int]:
    return {os.lstat(p).st_uid for p in [path, *path.rglob("*")]}


@needs_root
def test_root_owned_build_files_are_named_with_the_exact_command_that_gives_them_back(checkout):
    """`sudo scripts/run` with an older setup left root-owned .venv and *.egg-info in a user's
    checkout; the user's next run names them and the command, which works."""
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "python").write_text("")
    (checkout / "agent_analytics.egg-info").mkdir()
    (checkout / "agent_analytics.egg-info" / "PKG-INFO").write_text("")
    nobody = _nobody()
    os.chown(checkout / ".venv", nobody.pw_uid, nobody.pw_gid)  # only a file deep inside is root's

    proc = _bash("aa_check_build_files_owned; echo not reached", checkout, as_user=nobody)
    assert proc.returncode == 1 and "not reached" not in proc.stdout
    commands = [line.strip() for line in proc.stderr.splitlines() if line.startswith("    sudo chown")]
    assert len(commands) == 1, proc.stderr
    command = commands[0]
    assert f" {checkout}/.venv" in command and f" {checkout}/agent_analytics.egg-info" in command
    # Run it as printed (we are root already; sudo itself need not be installed here).
    fix = subprocess.run(["bash", "-c", command.removeprefix("sudo ")], capture_output=True, text=True)
    assert fix.returncode == 0, fix.stderr
    assert _owners(checkout / ".venv") == _owners(checkout / "agent_analytics.egg-info") == {nobody.pw_uid}
    assert _bash("aa_check_build_files_owned", checkout, as_user=nobody).returncode == 0


@needs_root
def test_root_in_another_users_checkout_builds_as_that_user_and_gives_back_what_an_older_run_left(checkout):
    (checkout / "agent_analytics.egg-info").mkdir()  # left by root: root owns it
    (checkout / "agent_analytics.egg-info" / "PKG-INFO").write_text("")
    proc = _bash("aa_build_as_owner; aa_make_venv; echo PYTHONDONTWRITEBYTECODE=$PYTHONDONTWRITEBYTECODE",
                 checkout, timeout=120)
    assert proc.returncode == 0, proc.stderr
    nobody = _nobody().pw_uid
    assert (checkout / ".venv" / "bin" / "python").exists()
    assert _owners(checkout / ".venv") == {nobody}
    assert _owners(checkout / "agent_analytics.egg-info") == {nobody}
    assert "PYTHONDONTWRITEBYTECODE=1" in proc.stdout  # the service run as root writes no bytecode here
    # The owner's next run finds nothing to complain about.
    assert _bash("aa_check_build_files_owned", checkout, as_user=_nobody()).returncode == 0


@pytest.mark.skipif(shutil.which("npm") is None or shutil.which("node") is None, reason="needs Node.js and npm")
def test_a_failed_npm_ci_leaves_no_half_installed_packages_for_the_tests_to_trip_on(checkout):
    # What an npm ci stopped midway leaves (a package's manifest, none of its code), and a lockfile
    # npm cannot read, so that this run of npm ci fails too: the tests must then skip Grafana's
    # code (no node_modules), not run it half installed.
    js = checkout / "tests" / "grafana_js"
    (js / "node_modules" / "@grafana" / "data").mkdir(parents=True)
    (js / "node_modules" / "@grafana" / "data" / "package.json").write_text('{"version": "13.2.3"}')
    (js / "package.json").write_text((REPO / "tests" / "grafana_js" / "package.json").read_text())
    (js / "package-lock.json").write_text("{ not json")
    if ROOT:
        for p in [checkout / "tests", *(checkout / "tests").rglob("*")]:
            os.chown(p, _nobody().pw_uid, _nobody().pw_gid)
    proc = _bash("aa_build_as_owner; aa_grafana_js; echo reached", checkout, timeout=120,
                 npm_config_cache=str(checkout / ".npm-cache"), npm_config_offline="true")
    assert proc.returncode == 0 and "reached" in proc.stdout, proc.stderr
    assert "npm ci in tests/grafana_js failed" in proc.stderr, proc.stderr
    assert not (js / "node_modules").exists()
