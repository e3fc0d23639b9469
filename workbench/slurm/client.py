"""Run Slurm's commands: argv lists, an explicit ``SLURM_CONF``, typed errors.

Every Slurm call of the workbench goes through :class:`SlurmClient`, synchronously (CLI,
widgets, dashboards) or with ``await`` (spawner, hub services). A call is described once as a
:class:`Query` (argv plus the parser of its output) and run by either path, so no command line
and no parser is written twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .parse import SlurmReportedErrors

log = logging.getLogger(__name__)

T = TypeVar("T")

#: environment variables a command run as another user keeps (never a shell, never argv)
SLURM_ENV = ("SLURM_CONF",)


class SlurmError(RuntimeError):
    """A Slurm command failed: carries the command, exit code, stdout and stderr."""

    def __init__(self, argv: list[str], returncode: int | None, stdout: str, stderr: str):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr.strip()
        what = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(f"{' '.join(argv)} {what}: {self.stderr or stdout.strip()}")


class SlurmUnavailable(SlurmError):
    """The controller (or slurmdbd) did not answer: a transient state, not a verdict on a job."""


_UNAVAILABLE_HINTS = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Connection refused",
    "Slurm backup controller in standby mode",
    "Unable to establish controller machine",
    "slurmdbd: Connection",
    "Problem talking to the database",
    "timed out",
)


@dataclass(frozen=True)
class Query(Generic[T]):
    """One Slurm command and how to read its output."""

    cmd: str
    args: tuple[str, ...]
    parse: Callable[[str], T]
    as_user: str | None = None
    input: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


def _identity(out: str) -> str:
    return out


@dataclass
class SlurmClient:
    """Runs Slurm commands against one cluster.

    ``slurm_conf`` points at that cluster's ``slurm.conf`` (None: Slurm's own default, as on a
    site's login node). ``bindir`` is where ``sbatch`` and friends live (None: ``$PATH``).
    ``sudo`` runs commands as another user (``as_user``): jobs are submitted and cancelled as
    their owner, never as root.
    """

    slurm_conf: str | None = None
    bindir: str | None = None
    timeout: float = 30.0
    sudo: str = "sudo"

    def executable(self, cmd: str) -> str:
        path = shutil.which(cmd, path=self.bindir) if self.bindir else shutil.which(cmd)
        if not path:
            where = self.bindir or "$PATH"
            raise SlurmError([cmd], 127, "", f"{cmd} not found in {where}; is Slurm installed?")
        return path

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        if extra:
            env.update(extra)
        return env

    def argv(self, query: Query) -> list[str]:
        argv = [self.executable(query.cmd), *query.args]
        if query.as_user:
            keep = ",".join(sorted({*SLURM_ENV, *query.env}))
            argv = [self.sudo, f"--preserve-env={keep}", "-u", query.as_user, "--", *argv]
        return argv

    def _error(self, argv, returncode, out, err) -> SlurmError:
        text = f"{err}\n{out}"
        cls = SlurmUnavailable if any(h in text for h in _UNAVAILABLE_HINTS) else SlurmError
        return cls(argv, returncode, out, err)

    @staticmethod
    def _parse(query: Query[T], argv: list[str], out: str, err: str) -> T:
        try:
            return query.parse(out)
        except SlurmReportedErrors as e:
            # exit 0 with an errors array: the controller did not answer (a transient state)
            raise SlurmUnavailable(argv, 0, out, f"{err.strip()} {e}".strip()) from e

    def run(self, query: Query[T]) -> T:
        """Run ``query`` and return its parsed output (blocking)."""
        argv = self.argv(query)
        try:
            proc = subprocess.run(
                argv, input=query.input, capture_output=True, text=True,
                env=self.environ(query.env), timeout=self.timeout,
            )
        except subprocess.TimeoutExpired as e:
            raise SlurmUnavailable(argv, None, e.stdout or "", e.stderr or "") from e
        if proc.returncode != 0:
            raise self._error(argv, proc.returncode, proc.stdout, proc.stderr)
        return self._parse(query, argv, proc.stdout, proc.stderr)

    async def arun(self, query: Query[T]) -> T:
        """Run ``query`` and return its parsed output (without blocking the event loop)."""
        argv = self.argv(query)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=(asyncio.subprocess.PIPE if query.input is not None
                   else asyncio.subprocess.DEVNULL),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=self.environ(query.env),
        )
        data = query.input.encode() if query.input is not None else None
        try:
            out, err = await asyncio.wait_for(proc.communicate(data), self.timeout)
        except TimeoutError as e:
            proc.kill()
            await proc.wait()
            raise SlurmUnavailable(argv, None, "", "") from e
        if proc.returncode != 0:
            raise self._error(argv, proc.returncode, out.decode(), err.decode())
        return self._parse(query, argv, out.decode(), err.decode())

    # plain commands -------------------------------------------------------------------

    @staticmethod
    def command(cmd: str, args: Iterable[str], as_user: str | None = None,
                input: str | None = None) -> Query[str]:
        """A command whose output is returned as text."""
        return Query(cmd, tuple(args), _identity, as_user=as_user, input=input)
