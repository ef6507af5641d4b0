"""A local PostgreSQL cluster run from the machine's own binaries (initdb / pg_ctl).

Used by `agent-analytics up` when no DATABASE_URL is given, and by the test harness for
throwaway clusters. PostgreSQL refuses to run as root, so when we are root the cluster's
files belong to an unprivileged system user and its processes run as that user.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "agent_analytics"


class ClusterError(RuntimeError):
    """The embedded cluster could not be created, started or stopped."""


def find_pg_bindir() -> str:
    """The directory holding initdb/pg_ctl/postgres: PATH first, then Debian's layout (newest)."""
    for name in ("pg_ctl", "initdb"):
        found = shutil.which(name)
        if found:
            real = os.path.dirname(os.path.realpath(found))
            if os.path.exists(os.path.join(real, "postgres")):
                return real
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    for bindir in reversed(candidates):
        if os.path.exists(os.path.join(bindir, "postgres")):
            return bindir
    install = "apt-get install postgresql" if os.geteuid() == 0 else "sudo apt-get install postgresql"
    raise ClusterError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found; "
        f"install them (Debian, Ubuntu: {install}) or set DATABASE_URL"
    )


def _pg_config(bindir: str, flag: str) -> str | None:
    exe = os.path.join(bindir, "pg_config")
    if not os.path.exists(exe):
        exe = shutil.which("pg_config") or ""
    if not exe:
        return None
    try:
        return subprocess.run([exe, flag], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def timescaledb_installed(bindir: str | None = None) -> bool:
    """Whether the server's library and extension directories carry TimescaleDB."""
    bindir = bindir or find_pg_bindir()
    libdir = _pg_config(bindir, "--pkglibdir")
    sharedir = _pg_config(bindir, "--sharedir")
    if not libdir or not sharedir:
        return False
    has_lib = bool(glob.glob(os.path.join(libdir, "timescaledb*.so")))
    return has_lib and os.path.exists(os.path.join(sharedir, "extension", "timescaledb.control"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _service_user() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ClusterError("running as root, and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


@dataclass
class LocalCluster:
    data_dir: str
    port: int
    preload_timescaledb: bool | None = None  # None: when installed

    def __post_init__(self) -> None:
        self.bindir = find_pg_bindir()
        self.data_dir = os.path.abspath(self.data_dir)
        self.pgdata = os.path.join(self.data_dir, "pgdata")
        self.socket_dir = os.path.join(self.data_dir, "run")
        self.log_file = os.path.join(self.data_dir, "postgresql.log")
        if self.preload_timescaledb is None:
            self.preload_timescaledb = timescaledb_installed(self.bindir)
        self._user = _service_user()

    # -- running commands as the cluster's owner -------------------------------------------
    def _run(self, args: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        user = self._user

        def demote() -> None:  # runs in the child, before exec
            if user is not None:
                os.setgid(user.pw_gid)
                os.setgroups([])
                os.setuid(user.pw_uid)

        env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        if user is not None:
            env["HOME"] = self.data_dir
        proc = subprocess.run(args, capture_output=True, text=True, preexec_fn=demote, env=env,
                              cwd=self.data_dir, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(f"{os.path.basename(args[0])} failed ({proc.returncode}): "
                               f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
        return proc

    def _own(self, path: str) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _check_reachable(self) -> None:
        """As root, every parent directory must let the service user through."""
        if self._user is None:
            return
        p = Path(self.data_dir)
        for parent in [p, *p.parents]:
            st = parent.stat()
            if parent != p and not st.st_mode & 0o001 and st.st_uid != self._user.pw_uid:
                raise ClusterError(
                    f"{parent} is not reachable by the '{self._user.pw_name}' user that runs PostgreSQL "
                    f"(we are root); choose a data directory elsewhere with AA_DATA_DIR, e.g. /var/lib/agent-analytics"
                )

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return os.path.exists(os.path.join(self.pgdata, "PG_VERSION"))

    def init(self) -> bool:
        """Create the cluster if it does not exist yet. Returns True when it was created."""
        os.makedirs(self.data_dir, exist_ok=True)
        os.chmod(self.data_dir, 0o755)
        self._own(self.data_dir)
        self._check_reachable()
        os.makedirs(self.socket_dir, exist_ok=True)
        self._own(self.socket_dir)
        if self.initialized:
            return False
        self._run([os.path.join(self.bindir, "initdb"), "-D", self.pgdata, "-U", SUPERUSER,
                   "-A", "trust", "-E", "UTF8", "--no-sync"])
        with open(os.path.join(self.pgdata, "postgresql.auto.conf"), "a") as f:
            # Loopback only: trust authentication is safe only because nothing else can connect.
            f.write("listen_addresses = '127.0.0.1'\n")
            f.write("max_connections = 200\n")
            f.write("timezone = 'UTC'\n")
        return True

    def is_running(self) -> bool:
        if not self.initialized:
            return False
        proc = self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.pgdata, "status"], check=False)
        return proc.returncode == 0

    def start(self, extra_options: str = "") -> None:
        if self.is_running():
            return
        opts = f"-p {self.port} -k {self.socket_dir} {extra_options}"
        if self.preload_timescaledb:
            opts += " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
        self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.pgdata, "-l", self.log_file,
                   "-o", opts, "-w", "-t", "60", "start"])
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise ClusterError(f"PostgreSQL did not accept connections on port {self.port}; see {self.log_file}")

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.pgdata, "-m", mode, "-w", "stop"])

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create a database if missing and return its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def destroy(self) -> None:
        self.stop(mode="immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
