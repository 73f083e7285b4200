"""A private PostgreSQL server on 127.0.0.1, for tests and benchmarks.

``PostgresServer`` runs Debian's PostgreSQL binaries (``/usr/lib/postgresql/<N>/bin``, or
``RAY_ORCH_PG_BIN``) on a cluster of its own in a temporary directory: ``initdb``, then
``pg_ctl start`` on a free port, listening on 127.0.0.1 and on a Unix socket in that
directory. PostgreSQL refuses to run as root, so as root the cluster is made and run as
the ``postgres`` user (the directory is handed to it). The server stops and the directory
goes when the block ends.

Example:
    >>> from ray_orch.testing.postgres import PostgresServer, postgres_available
    >>> if postgres_available():
    ...     with PostgresServer() as pg:
    ...         pg.dsn.startswith("postgresql://ray_orch:")
    ... else:
    ...     True
    True
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PostgresServer", "pg_bin_dir", "postgres_available"]


def pg_bin_dir() -> Path | None:
    """Where PostgreSQL's server binaries are (``RAY_ORCH_PG_BIN``, else the newest
    Debian version), or ``None``."""
    configured = os.environ.get("RAY_ORCH_PG_BIN")
    candidates = [configured] if configured else sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
        if Path(p).parent.name.isdigit() else 0, reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def postgres_available() -> bool:
    """True when a server can be started here (the binaries are installed)."""
    return pg_bin_dir() is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A throwaway PostgreSQL cluster: ``with PostgresServer() as pg: pg.dsn``.

    Attributes:
        dsn: ``postgresql://ray_orch:<password>@127.0.0.1:<port>/ray_orch``.
        port: the TCP port on 127.0.0.1.
        password: the ``ray_orch`` role's password (tests check it never leaks).

    Args:
        database / user: the database created and the role that owns it.
        fsync: run durably (``fsync=on``, as in production: benchmarks); tests run with
            ``fsync=off``, which only a crash of the machine would notice.
    """

    def __init__(self, *, database: str = "ray_orch", user: str = "ray_orch",
                 fsync: bool = False) -> None:
        bin_dir = pg_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL's binaries are not installed "
                               "(apt-get install postgresql)")
        self._bin = bin_dir
        self.database = database
        self.user = user
        self.password = secrets.token_urlsafe(12)
        self.port = 0
        self._dir: str | None = None
        self._as_postgres = os.geteuid() == 0
        self.fsync = fsync

    @property
    def dsn(self) -> str:
        return (f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/"
                f"{self.database}")

    def _run(self, *args: str) -> None:
        command = [str(self._bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, cwd=self._dir)

    def start(self) -> PostgresServer:
        """Make the cluster, start the server, create the role and the database."""
        self._dir = tempfile.mkdtemp(prefix="rayorch-pg-")
        data, sock = os.path.join(self._dir, "data"), os.path.join(self._dir, "sock")
        os.mkdir(sock)
        pwfile = os.path.join(self._dir, "pw")
        Path(pwfile).write_text(self.password + "\n")
        if self._as_postgres:
            shutil.chown(self._dir, "postgres", "postgres")
            for path in (sock, pwfile):
                shutil.chown(path, "postgres", "postgres")
        self._run("initdb", "-D", data, "-U", self.user, "--pwfile", pwfile,
                  "-A", "scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync")
        os.unlink(pwfile)
        self.port = _free_port()
        options = (f"-k {sock} -p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=200")
        self._run("pg_ctl", "-D", data, "-o", options, "-l",
                  os.path.join(self._dir, "log"), "-w", "-t", "120", "start")
        self._run("createdb", "-h", sock, "-p", str(self.port), "-U", self.user,
                  self.database)
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        if self._dir is None:
            return
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self._run("pg_ctl", "-D", os.path.join(self._dir, "data"), "-m", "fast",
                      "-w", "stop")
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
