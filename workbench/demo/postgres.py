"""Debian's PostgreSQL as the site-demo's database server (and the tests' throwaway one).

A cluster of its own under a data directory, owned by the ``postgres`` user, listening on
one address and port, started and stopped with ``pg_ctl``. Roles get their password through
``psql``'s stdin, never argv; clients find it in a pgpass file (``PGPASSFILE``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .. import daemons

OWNER = "postgres"


def bindir() -> Path:
    """Debian's server binaries (``/usr/lib/postgresql/N/bin``, the newest N)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL's server is not installed (apt-get install postgresql)")
    return Path(found[-1]).parent


@dataclass
class LocalPostgres:
    data: Path  # the cluster's data directory
    port: int
    host: str = "127.0.0.1"

    @property
    def socket_dir(self) -> Path:
        return self.data.parent / "socket"

    def _as_owner(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", OWNER, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, **kw)

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> None:
        if proc.returncode:
            raise RuntimeError(f"PostgreSQL: {what} failed: {(proc.stderr or proc.stdout)[-800:]}")

    def running(self) -> bool:
        return self._as_owner([str(bindir() / "pg_ctl"), "status", "-D", str(self.data)]
                              ).returncode == 0

    def start(self, timeout: float = 60) -> None:
        """Create the cluster on first use, then start it if it is not running."""
        for d in (self.data.parent, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(d, OWNER, OWNER)
        os.chmod(self.socket_dir, 0o755)
        if not (self.data / "PG_VERSION").exists():
            self._check(self._as_owner([str(bindir() / "initdb"), "-D", str(self.data),
                                        "--auth-local=peer", "--auth-host=scram-sha-256",
                                        "-U", OWNER, "--encoding=UTF8"]), "initdb")
        if self.running():
            return
        options = (f"-p {self.port} -k {self.socket_dir} "
                   f"-c listen_addresses={self.host}")
        self._check(self._as_owner([str(bindir() / "pg_ctl"), "start", "-w", "-t",
                                    str(int(timeout)), "-D", str(self.data), "-o", options,
                                    "-l", str(self.data.parent / "postgres.log")]), "start")
        daemons.wait_until(self.running, "PostgreSQL", timeout)

    def stop(self) -> bool:
        if not (self.data / "PG_VERSION").exists() or not self.running():
            return False
        self._check(self._as_owner([str(bindir() / "pg_ctl"), "stop", "-w", "-m", "fast",
                                    "-D", str(self.data)]), "stop")
        return True

    def sql(self, statements: str, database: str = "postgres") -> str:
        """Run ``statements`` as the superuser over the local socket (stdin, never argv)."""
        proc = self._as_owner(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At",
                               "-h", str(self.socket_dir), "-p", str(self.port), "-d",
                               database], input=statements)
        self._check(proc, "psql")
        return proc.stdout

    def ensure_database(self, role: str, password: str, database: str) -> None:
        """A login role with ``password`` owning ``database`` (created once, password kept
        in step); safe to repeat."""
        quoted = password.replace("'", "''")
        self.sql(f"""DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
    CREATE ROLE "{role}" LOGIN;
  END IF;
END $$;
ALTER ROLE "{role}" PASSWORD '{quoted}';
""")
        if not self.sql(f"SELECT 1 FROM pg_database WHERE datname = '{database}'").strip():
            self.sql(f'CREATE DATABASE "{database}" OWNER "{role}";')

    def url(self, role: str, database: str) -> str:
        """The SQLAlchemy URL (no password: it is in the pgpass file)."""
        return f"postgresql+psycopg://{role}@{self.host}:{self.port}/{database}"

    def write_pgpass(self, path: Path, role: str, password: str, database: str) -> None:
        """The client's password file (mode 0600), for ``PGPASSFILE``."""
        from .. import atomicfile
        line = f"{self.host}:{self.port}:{database}:{role}:{password}\n"
        atomicfile.write_bytes(path, line.encode(), mode=0o600)
