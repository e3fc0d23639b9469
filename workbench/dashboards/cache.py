"""A Slurm answer shared by every process on the machine: one call per ``max_age``.

Voila starts one kernel per viewer, and both dashboards run in their own service; the
in-process snapshots of :mod:`workbench.slurm.snapshot` would be paid once per viewer. Here
the raw output of a :class:`~workbench.slurm.Query` is kept in a file under one directory,
with an exclusive ``flock`` around each refresh: the first reader after ``max_age`` runs the
command, everyone else waits for it and reads the file. A failure is remembered for
``max_age`` too, so a controller that is down is not hammered by every viewer either.

It counts nothing itself: ``benchmarks/dashboards.py`` counts the calls per minute from
outside, with wrappers of the Slurm commands first on the service's PATH.
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from workbench import atomicfile
from workbench.slurm import Query, SlurmClient, SlurmError, SlurmUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


def _raw(out: str) -> str:
    return out


@dataclass
class Cached:
    """A value, when the call behind it started (epoch seconds), and the error of the last
    refresh if it failed (the value is then the last good one, or None)."""

    value: Any
    at: float | None
    error: str | None = None

    @property
    def age(self) -> float | None:
        return None if self.at is None else time.time() - self.at


class SharedCache:
    """Files under ``directory``: ``NAME.out`` (raw output), ``NAME.meta`` (JSON: when, error),
    ``NAME.lock``. Safe between processes (flock) and threads of one process (one flock per
    open file description)."""

    def __init__(self, directory: Path | str, client: SlurmClient):
        self.directory = Path(directory)
        self.client = client
        #: name → (the answer's file mtime, query, parsed value): an answer read by this
        #: process is parsed once, not at every refresh that finds it still fresh
        self._parsed: dict[str, tuple[tuple[int, int], Query, Any]] = {}

    def _path(self, name: str, ext: str) -> Path:
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"bad cache entry name {name!r}")
        return self.directory / f"{name}.{ext}"

    @contextmanager
    def lock(self, name: str):
        """Exclusive lock of entry ``name`` (between processes)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self._path(name, "lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def meta(self, name: str) -> dict:
        try:
            return json.loads(self._path(name, "meta").read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def _write(self, name: str, ext: str, data: str | bytes) -> None:
        atomicfile.write_bytes(self._path(name, ext),
                               data if isinstance(data, bytes) else data.encode())

    def write_meta(self, name: str, **meta) -> None:
        atomicfile.write_json(self._path(name, "meta"), meta)

    def get(self, name: str, query: Query[T], max_age: float) -> Cached:
        """``query``'s parsed answer, from a call started no more than ``max_age`` seconds ago
        by any process. When Slurm fails, the last good answer with the error (or None)."""
        fresh = self._fresh(name, max_age)
        if fresh is None:
            with self.lock(name):
                fresh = self._fresh(name, max_age)
                if fresh is None:
                    fresh = self._refresh(name, query)
        at, error = fresh
        good_at = self.meta(name).get("good_at")
        try:
            value = self._parse(name, query)
        except OSError:
            return Cached(None, None, error or "no answer from Slurm yet")
        return Cached(value, good_at if error else at, error)

    def _parse(self, name: str, query: Query[T]) -> T:
        """The answer's parsed value, parsed again only when the file changed."""
        path = self._path(name, "out")
        st = path.stat()
        mtime = (st.st_ino, st.st_mtime_ns)  # each answer is a new file (atomic replace)
        held = self._parsed.get(name)
        if held and held[0] == mtime and held[1] == query:
            return held[2]
        value = query.parse(path.read_text())
        self._parsed[name] = (mtime, query, value)
        return value

    def _fresh(self, name: str, max_age: float) -> tuple[float, str | None] | None:
        meta = self.meta(name)
        at = meta.get("at")
        if at is None or time.time() - at > max_age:
            return None
        return at, meta.get("error")

    def _refresh(self, name: str, query: Query) -> tuple[float, str | None]:
        started = time.time()
        good_at = self.meta(name).get("good_at")
        try:
            text = self.client.run(replace(query, parse=_raw))
        except SlurmUnavailable as e:
            error = f"Slurm did not answer ({e.stderr or 'timed out'})"
        except SlurmError as e:
            error = f"Slurm failed: {e.stderr or e}"
        else:
            self._write(name, "out", text)
            self.write_meta(name, at=started, good_at=started, error=None)
            return started, None
        log.warning("%s: %s", name, error)
        self.write_meta(name, at=started, good_at=good_at, error=error)
        return started, error

    def value(self, name: str, compute: Callable[[], Any], max_age: float,
              errors: tuple[type[Exception], ...] = (SlurmError,)) -> Cached:
        """Like :meth:`get` for a JSON-able value computed by ``compute()`` (which runs Slurm
        commands itself, e.g. the allocations' ``budgets``): one computation per ``max_age``.
        ``errors``: the failures remembered as the entry's error."""
        query = Query("value", (), json.loads)
        fresh = self._fresh(name, max_age)
        if fresh is None:
            with self.lock(name):
                fresh = self._fresh(name, max_age)
                if fresh is None:
                    started = time.time()
                    good_at = self.meta(name).get("good_at")
                    try:
                        data = json.dumps(compute(), default=str)
                    except errors as e:
                        error = (f"Slurm failed: {e.stderr or e}" if isinstance(e, SlurmError)
                                 else f"{type(e).__name__}: {e}")
                        self.write_meta(name, at=started, good_at=good_at, error=error)
                    else:
                        self._write(name, "out", data)
                        self.write_meta(name, at=started, good_at=started, error=None)
        cached_meta = self.meta(name)
        try:
            text = self._path(name, "out").read_text()
        except OSError:
            return Cached(None, None, cached_meta.get("error") or "not computed yet")
        error = cached_meta.get("error")
        return Cached(query.parse(text), cached_meta.get("good_at") if error
                      else cached_meta.get("at"), error)
