"""The local AI Factory's Slurm cluster: munge, MariaDB, slurmdbd, slurmctld, several slurmd.

All on one machine, all under ``AIFACTORY_HOME``, all on non-default ports. ``up()`` is
idempotent: it starts what is not running and leaves the rest alone.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from ... import daemons
from ...paths import FactoryHome, data_file, secret_file
from ...slurm import SlurmClient, SlurmError, queries
from .shape import ClusterShape

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ports:
    slurmctld: int = 16817
    slurmdbd: int = 16819
    mariadb: int = 16306


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _program(daemon: str) -> str:
    """The process name of a daemon of :meth:`LocalCluster.pidfiles` (``slurmd-h100-1``:
    ``slurmd``; ``mariadb``: ``mariadbd``)."""
    return {"mariadb": "mariadbd"}.get(daemon, daemon.split("-")[0])


@dataclass
class LocalCluster:
    home: FactoryHome = field(default_factory=FactoryHome.from_env)
    shape: ClusterShape = field(default_factory=ClusterShape.load)
    ports: Ports = field(default_factory=Ports)
    controller_host: str = "localhost"

    @property
    def slurm(self) -> SlurmClient:
        return SlurmClient(slurm_conf=str(self.home.slurm_conf))

    # -- configuration -----------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        h = self.home
        for d in (h.root, h.etc, h.run, h.log, h.spool, h.dev, h.hub):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(h.root, 0o755)
        # users read slurm.conf and reach the munge socket; logs and state stay root's
        for d in (h.etc, h.run):
            os.chmod(d, 0o755)
        os.chmod(h.hub, 0o700)
        (h.spool / "slurmctld").mkdir(exist_ok=True)

    def render(self) -> set[str]:
        """Write slurm.conf, gres.conf, slurmdbd.conf and the MariaDB config from cluster/;
        returns the names of the files that changed."""
        changed = set()
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(data_file("cluster"))),
            undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        )
        values = dict(
            home=str(self.home.root), cluster_name=self.shape.cluster_name,
            controller_host=self.controller_host, ports=self.ports,
            nodes=self.shape.nodes, partitions=self.shape.partitions,
            node_hostname="localhost", node_addr="127.0.0.1",
            db_password=secret_file(self.home.secrets / "db_password"),
        )
        for template, target, mode in (
            ("slurm.conf.j2", self.home.slurm_conf, 0o644),
            ("gres.conf.j2", self.home.etc / "gres.conf", 0o644),
            ("slurmdbd.conf.j2", self.home.etc / "slurmdbd.conf", 0o600),
            ("mariadb.cnf.j2", self.home.etc / "mariadb.cnf", 0o644),
        ):
            text = env.get_template(template).render(**values)
            if not target.exists() or target.read_text() != text:
                target.write_text(text)
                changed.add(target.name)
            os.chmod(target, mode)
        # fake GPUs: character devices like /dev/null, one directory per node
        for node in self.shape.nodes:
            if not node.gpus:
                continue
            d = self.home.dev / node.name
            d.mkdir(exist_ok=True)
            for i in range(node.gpus):
                dev = d / f"nvidia{i}"
                if not dev.exists():
                    os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
        return changed

    # -- daemons -----------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.home.slurm_conf)}

    def start_munge(self) -> None:
        m = self.home.munge
        pidfile = m / "munged.pid"
        if self.running("munged"):
            return
        m.mkdir(exist_ok=True)
        key = m / "munge.key"
        if not key.exists():
            key.write_bytes(secrets.token_bytes(1024))
        sock_dir = self.home.run / "munge"
        sock_dir.mkdir(exist_ok=True)
        shutil.chown(m, "munge", "munge")
        shutil.chown(key, "munge", "munge")
        shutil.chown(sock_dir, "munge", "munge")
        os.chmod(m, 0o700)
        os.chmod(key, 0o400)
        os.chmod(sock_dir, 0o755)
        subprocess.run(
            ["runuser", "-u", "munge", "--", "munged",
             f"--key-file={key}", f"--socket={sock_dir / 'munge.socket'}",
             f"--pid-file={pidfile}", f"--log-file={m / 'munged.log'}",
             f"--seed-file={m / 'munged.seed'}"],
            check=True,
        )
        daemons.wait_until(lambda: (sock_dir / "munge.socket").exists(), "munged")

    def _mysql(self, sql: str) -> None:
        """Run ``sql`` as MariaDB's root (socket authentication); the statements go on stdin,
        never argv, since they may hold a password (argv is readable by every user)."""
        subprocess.run(
            ["mariadb", f"--socket={self.home.run / 'mysqld.sock'}", "-uroot"],
            input=sql, check=True, capture_output=True, text=True,
        )

    def grant_slurmdbd(self) -> None:
        """slurmdbd's database user (its password from the secrets), its database and grants;
        safe to repeat."""
        password = secret_file(self.home.secrets / "db_password")
        self._mysql(
            f"CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}';"
            f"ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}';"
            "CREATE DATABASE IF NOT EXISTS slurm_acct_db;"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        )

    def start_mariadb(self) -> None:
        if self.running("mariadb") and _port_open(self.ports.mariadb):
            return
        cnf = self.home.etc / "mariadb.cnf"
        datadir = self.home.root / "mysql"
        if not (datadir / "mysql").exists():
            datadir.mkdir(exist_ok=True)
            shutil.chown(datadir, "mysql", "mysql")
            subprocess.run(
                ["mariadb-install-db", f"--defaults-file={cnf}", "--user=mysql",
                 "--auth-root-authentication-method=socket", "--skip-test-db"],
                check=True, capture_output=True, text=True,
            )
        shutil.chown(self.home.log, "root", "mysql")
        os.chmod(self.home.log, 0o770)
        os.chmod(self.home.run, 0o775)
        shutil.chown(self.home.run, "root", "mysql")
        daemons.spawn(["mariadbd", f"--defaults-file={cnf}"], self.home.logfile("mariadbd-stdout"),
                      self.home.pidfile("mariadbd-launcher"))
        daemons.wait_until(lambda: _port_open(self.ports.mariadb), "MariaDB", 60)
        self.grant_slurmdbd()

    def start_slurmdbd(self) -> None:
        if self.running("slurmdbd") and _port_open(self.ports.slurmdbd):
            return
        subprocess.run(["slurmdbd", "-s"], check=True, env=self._env(),
                       cwd=self.home.root)
        daemons.wait_until(lambda: _port_open(self.ports.slurmdbd), "slurmdbd", 60)
        name = self.shape.cluster_name
        clusters = self.slurm.run(queries.sacctmgr_list("cluster", "cluster"))
        if name not in {row[0] for row in clusters}:
            self.slurm.run(queries.sacctmgr_modify("add", "cluster", name))

    def start_slurmctld(self) -> bool:
        """Start the controller if it is not running; True if it was started now."""
        started = not self.running("slurmctld")
        if started:
            subprocess.run(["slurmctld", "-s"], check=True, env=self._env(), cwd=self.home.root)
        daemons.wait_until(self._controller_answers, "slurmctld", 60)
        return started

    def cancel_leftovers(self) -> list[int]:
        """After a cold start (controller and nodes were down): cancel the jobs the last run
        left. Their processes died with it, and a controller killed hard may even bring back
        jobs cancelled just before (its state is saved periodically)."""
        jobs = [j.job_id for j in self.slurm.run(queries.jobs()) if j.state.is_active]
        for job_id in jobs:
            self.slurm.run(queries.cancel(job_id))
        return jobs

    def _controller_answers(self) -> bool:
        try:
            self.slurm.run(queries.ping())
            return True
        except SlurmError:
            return False

    def start_slurmds(self) -> None:
        for node in self.shape.nodes:
            if self.running(f"slurmd-{node.name}"):
                continue
            subprocess.run(["slurmd", "-N", node.name], check=True, env=self._env(),
                           cwd=self.home.root)

    def nodes_ready(self) -> bool:
        try:
            nodes = self.slurm.run(queries.nodes())
        except SlurmError:
            return False
        names = {n.name for n in self.shape.nodes}
        # a node in a maintenance reservation is up: the reservation is an operator's
        ready = {n.name for n in nodes if n.ready or n.in_maintenance}
        if not names <= ready:
            for n in nodes:
                if n.name in names and n.needs_resume:
                    try:
                        self.slurm.run(queries.resume_node(n.name))
                    except SlurmError as e:  # its slurmd came back and returned it meanwhile
                        log.info("resume %s: %s", n.name, e.stderr.strip() or e)
            return False
        return True

    def up(self, timeout: float = 120) -> list[int]:
        """Start what is not running; returns the jobs cancelled after a cold start."""
        self._prepare_dirs()
        changed = self.render()
        self.start_munge()
        self.start_mariadb()
        self.start_slurmdbd()
        nodes_down = not any(self.running(f"slurmd-{n.name}") for n in self.shape.nodes)
        started = self.start_slurmctld()
        if not started and changed & {"slurm.conf", "gres.conf"}:
            # a running controller (and its slurmds) read the new config; jobs keep running
            self.slurm.run(queries.reconfigure())
        cold = started and nodes_down
        cancelled = self.cancel_leftovers() if cold else []
        self.start_slurmds()
        daemons.wait_until(self.nodes_ready, "all Slurm nodes idle", timeout)
        return cancelled

    def is_up(self) -> bool:
        return all(self.running(name) for name in self.pidfiles())

    def pidfiles(self) -> dict[str, Path]:
        h = self.home
        files = {f"slurmd-{n.name}": h.run / f"slurmd-{n.name}.pid" for n in self.shape.nodes}
        files.update({
            "slurmctld": h.pidfile("slurmctld"), "slurmdbd": h.pidfile("slurmdbd"),
            "mariadb": h.run / "mysqld.pid", "munged": h.munge / "munged.pid",
        })
        return files

    def running(self, name: str) -> int | None:
        """The pid of daemon ``name`` (a key of :meth:`pidfiles`) if it runs; its pid file is
        the daemon's own, so the process must also bear the daemon's name."""
        return daemons.read_pid(self.pidfiles()[name], _program(name))

    def down(self) -> list[str]:
        """Stop every daemon this cluster started, by pid, in reverse order of start."""
        stopped = []
        order = [f"slurmd-{n.name}" for n in self.shape.nodes]
        order += ["slurmctld", "slurmdbd", "mariadb", "munged"]
        files = self.pidfiles()
        for name in order:
            if daemons.stop(name, files[name], program=_program(name)):
                stopped.append(name)
        daemons.stop("mariadbd-launcher", self.home.pidfile("mariadbd-launcher"))
        return stopped
