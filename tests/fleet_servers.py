"""Real servers for the fleet tests: a PostgreSQL + pgvector cluster and a mosquitto broker.

Both are started from the tests themselves in a temporary folder, on a free loopback port, and
can be stopped and started again on the same port (the fault tests take the server away under
running doors). Nothing here is a mock: PostgreSQL is the build that the ``pgserver`` package
ships (with pgvector), mosquitto is Debian's binary run with a config file of our own, never the
system service.

When ``GFN_EDGE_TEST_PG_DSN`` names an existing server, the tests use it instead (tests that must
stop the server skip then, since they cannot stop someone else's).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Optional

PG_USER = "pgserver"  # PostgreSQL refuses to run as root: the same system user pgserver creates
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class PgCluster:
    """A throw-away PostgreSQL cluster (pgserver's binaries) listening on 127.0.0.1:port."""

    def __init__(self, root: Optional[Path] = None, settings: Optional[dict[str, str]] = None):
        """``settings``: extra postgresql.conf lines (name -> value), after the defaults so they win."""
        with warnings.catch_warnings():  # pgserver's import warns about XDG_RUNTIME_DIR, which it does not need here
            warnings.simplefilter("ignore")
            from pgserver._commands import (
                POSTGRES_BIN_PATH,  # the packaged PostgreSQL with pgvector
            )

        self.bin = Path(POSTGRES_BIN_PATH)
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="gfn-pg-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = self.root / "data"
        self.port = free_port()
        self._user: Optional[str] = None
        if os.geteuid() == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from pgserver.utils import ensure_user_exists

            ensure_user_exists(PG_USER)
            self._user = PG_USER
            os.chmod(self.root, 0o755)
            pw = pwd.getpwnam(PG_USER)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "-N")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.root}'\n"
                "fsync = off\nfull_page_writes = off\nmax_connections = 200\n"  # fsync off: an OS crash only; commits stay durable
                "shared_buffers = 256MB\nmaintenance_work_mem = 512MB\n"
            )
            conf.writelines(f"{name} = {value}\n" for name, value in (settings or {}).items())
        self.start()

    def _run(self, exe: str, *args: str, timeout: float = 60.0) -> None:
        kwargs = {"user": self._user} if self._user else {}
        proc = subprocess.run([str(self.bin / exe), *args], capture_output=True, text=True, timeout=timeout, cwd=self.root, **kwargs)
        if proc.returncode != 0:
            log_text = (self.root / "log").read_text(errors="replace")[-2000:] if (self.root / "log").exists() else ""
            raise RuntimeError(f"{exe} {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}\n{log_text}")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        if not _wait_port(self.port, 30):
            raise RuntimeError(f"PostgreSQL did not listen on port {self.port}")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def close(self) -> None:
        if self.running():
            try:
                self.stop("immediate")
            except RuntimeError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def create_database(admin_dsn: str) -> str:
    """A fresh, empty place for one gallery on the server of ``admin_dsn``; returns its DSN.

    A schema of its own, selected by the DSN's ``search_path`` (pgvector installed once in
    ``public``): milliseconds, where CREATE DATABASE takes seconds on a loaded machine.
    """
    import psycopg

    name = "gfn_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(7453)")  # two sessions creating the extension at once
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
        conn.execute("SELECT pg_advisory_unlock(7453)")
        conn.execute(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in admin_dsn else "?"
    return f"{admin_dsn}{sep}options=-csearch_path%3D{name},public"


def drop_database(admin_dsn: str, dsn: str) -> None:
    import psycopg

    name = dsn.rsplit("search_path%3D", 1)[1].split(",", 1)[0]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


class Mosquitto:
    """A mosquitto broker on 127.0.0.1:port with a config file in ``root`` (never the system service)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.root / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n")
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        self._log = open(self.root / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=self._log, stderr=subprocess.STDOUT)
        if not _wait_port(self.port, 10):
            self.stop()
            raise RuntimeError(f"mosquitto did not listen on port {self.port}: {(self.root / 'mosquitto.log').read_text()[-500:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self._log.close()


def serve_postgres(dsn_file: Path) -> None:
    """Run a PgCluster until SIGTERM/SIGINT, its DSN written to ``dsn_file`` once it listens.

    For test runs that cannot start one themselves: the emulated aarch64 device tests
    (scripts/arm64_tests.sh) reach the host's server over loopback, as a door unit reaches a site's.
    """
    import signal

    cluster = PgCluster()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        tmp = Path(str(dsn_file) + ".tmp")
        tmp.write_text(cluster.dsn())
        tmp.replace(dsn_file)
        stop.wait()
    finally:
        cluster.close()


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "postgres":
        sys.exit("usage: python tests/fleet_servers.py postgres DSN_FILE")
    serve_postgres(Path(sys.argv[2]))
