"""Job history from Slurm's accounting: bounded ``sacct`` reads, incremental, shared.

The query (:func:`workbench.slurm.queries.history`) asks for allocations only, every user, a
time window and only the fields the dashboards show. The first read covers ``days`` back, in
windows of ``chunk_days`` read newest first (each ``sacct`` stays bounded however many jobs
the factory runs; what was read stays if a window fails). Each refresh then asks only for
jobs active since the last read started (minus a minute of overlap): a job that started,
changed or ended since is in that answer, one that ended before is not and needs no update.

The table is kept in the dashboards' shared cache (Parquet) in two parts, so that a refresh
costs what changed, not the size of the history: the *base* (``history.parquet``, written by
the first read and at each compaction) and the *recent* part (``history-recent.parquet``:
the jobs the incremental reads returned since, small). A refresh rewrites only the recent
part; every ``compact_s`` seconds, or when it holds more than :data:`COMPACT_ROWS` jobs, it
is folded into the base and the window slides. Every viewer and both dashboards share one
call per ``max_age``.
"""

from __future__ import annotations

import io
import logging
import time
from datetime import UTC, datetime, timedelta

import pandas as pd

from workbench.slurm import AccountedJob, SlurmError, SlurmUnavailable, queries

from .cache import Cached, SharedCache

log = logging.getLogger(__name__)

#: the jobs table's columns: :class:`workbench.slurm.AccountedJob`'s fields
COLUMNS = AccountedJob._fields

#: seconds of overlap between incremental reads (clock skew, slurmdbd's write delay)
OVERLAP_S = 120

_NAME = "history"
#: the held table's two parts (files ``NAME.parquet`` in the cache directory)
BASE, RECENT = "history", "history-recent"
#: jobs the recent part may hold before a refresh folds it into the base
COMPACT_ROWS = 5000


def jobs_frame(rows: list[AccountedJob]) -> pd.DataFrame:
    """Accounted jobs (:func:`workbench.slurm.queries.history`) as the jobs table."""
    return _typed(pd.DataFrame(rows, columns=list(COLUMNS))) if rows else empty_jobs()


def empty_jobs() -> pd.DataFrame:
    return _typed(pd.DataFrame({c: [] for c in COLUMNS}))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    for c in ("submit", "start", "end"):
        df[c] = pd.to_datetime(df[c], utc=True)
    for c in ("job_id", "elapsed_s", "gpus"):
        df[c] = df[c].astype("int64")
    for c in ("job", "name", "user", "account", "partition", "state", "exit_code", "reason",
              "gpu_type", "nodes"):
        df[c] = df[c].astype(str)
    return df


def merge(old: pd.DataFrame, new: pd.DataFrame, keep_from: datetime | None = None
          ) -> pd.DataFrame:
    """``new`` rows replace ``old`` ones of the same job; jobs that ended before ``keep_from``
    are dropped (the window slides)."""
    if old.empty:
        out = new
    elif new.empty:
        out = old
    else:
        out = pd.concat([old[~old.job_id.isin(new.job_id)], new], ignore_index=True)
    if keep_from is not None and not out.empty:
        out = out[out.end.isna() | (out.end >= pd.Timestamp(keep_from))]
    return out.sort_values("job_id", ignore_index=True)


class History:
    """The shared, incrementally read job history of the last ``days`` days.

    ``table(max_age)`` gives the jobs table and when it was read (any process's read no older
    than ``max_age`` seconds serves); ``cover(start)`` reads further back once when a manager
    asks for a range that starts before what is held. ``chunk_days``: the days one ``sacct``
    of a first (or further-back) read covers; ``compact_s``: seconds between two foldings of
    the recent part into the base.
    """

    def __init__(self, cache: SharedCache, days: int = 92, max_age: float = 60.0,
                 chunk_days: int = 31, compact_s: float = 3600.0):
        self.cache = cache
        self.days = days
        self.max_age = max_age
        self.chunk_days = chunk_days
        self.compact_s = compact_s
        self._files: dict[str, tuple[float, pd.DataFrame]] = {}  # part → (mtime, rows)
        self._memo: tuple[tuple, pd.DataFrame] | None = None  # (both mtimes, table)

    def _path(self, part: str = BASE):
        return self.cache.directory / f"{part}.parquet"

    def _part(self, part: str) -> tuple[float | None, pd.DataFrame]:
        """One part's rows and its file's mtime (None, empty: no such file), read again
        only when the file changed."""
        path = self._path(part)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None, empty_jobs()
        held = self._files.get(part)
        if held and held[0] == mtime:
            return held
        # the file itself: pd.read_parquet would import pyarrow.dataset too (0.2-0.4 s of
        # each viewer's kernel start) for the same table
        import pyarrow.parquet as pq
        try:
            df = pq.ParquetFile(path).read().to_pandas()
        except OSError:  # replaced or removed between stat and read: as if not there yet
            return None, empty_jobs()
        self._files[part] = (mtime, df)
        return mtime, df

    def _load(self) -> pd.DataFrame:
        """The held table: the base with the recent part's rows in place of its own."""
        (base_at, base), (recent_at, recent) = self._part(BASE), self._part(RECENT)
        key = (base_at, recent_at)
        if self._memo is None or self._memo[0] != key:
            self._memo = (key, merge(base, recent) if not recent.empty else base)
        return self._memo[1]

    def _save(self, df: pd.DataFrame, part: str = BASE) -> None:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        self.cache._write(part, "parquet", buf.getvalue())

    def _read(self, start: datetime, end: datetime | None = None) -> pd.DataFrame:
        return jobs_frame(self.cache.client.run(queries.history(start, end)))

    def _read_back(self, start: datetime, until: datetime | None
                   ) -> tuple[pd.DataFrame, datetime | None, Exception | None]:
        """Jobs active from ``start`` to ``until`` (None: now), one ``sacct`` per
        ``chunk_days``, newest first. Returns the rows read, how far back they are complete
        (None: not at all) and the error that stopped the reading (or None)."""
        parts, reached = [], None
        hi = until
        while reached is None or reached > start:
            top = hi or datetime.now(UTC)
            lo = max(start, top - timedelta(days=self.chunk_days))
            try:
                parts.append(self._read(lo, hi))
            except (SlurmUnavailable, SlurmError) as e:
                return _union(parts), reached, e
            reached = hi = lo
        return _union(parts), reached, None

    def table(self, max_age: float | None = None, now: datetime | None = None) -> Cached:
        """The jobs table (a DataFrame), refreshed by at most one process per ``max_age``."""
        limit = self.max_age if max_age is None else max_age
        meta = self.cache.meta(_NAME)
        if meta.get("at") is None or time.time() - meta["at"] > limit:
            with self.cache.lock(_NAME):
                meta = self.cache.meta(_NAME)
                if meta.get("at") is None or time.time() - meta["at"] > limit:
                    meta = self._refresh(meta, now or datetime.now(UTC))
        good_at = meta.get("good_at")
        return Cached(self._load(), good_at, meta.get("error"))

    def _refresh(self, meta: dict, now: datetime) -> dict:
        started = time.time()
        keep_from = now - timedelta(days=self.days)
        if meta.get("good_at") is None or not self._path().exists():
            return self._first_read(meta, started, keep_from)
        try:
            new = self._read(datetime.fromtimestamp(meta["good_at"] - OVERLAP_S, UTC))
        except (SlurmUnavailable, SlurmError) as e:
            return self._failed(meta, started, e)
        covered = meta.get("covered_from")
        covered_from = (min(datetime.fromtimestamp(covered, UTC), keep_from)
                        if covered is not None else keep_from)
        _, recent = self._part(RECENT)
        recent = merge(recent, new)
        meta = {**meta, "at": started, "good_at": started, "error": None}
        if len(recent) > COMPACT_ROWS or started - meta.get("base_at", 0) > self.compact_s:
            _, base = self._part(BASE)
            self._save(merge(base, recent, covered_from))
            self._path(RECENT).unlink(missing_ok=True)
            meta.update(base_at=started, covered_from=covered_from.timestamp())
        else:
            self._save(recent, RECENT)
        self.cache.write_meta(_NAME, **meta)
        return meta

    def _first_read(self, meta: dict, started: float, keep_from: datetime) -> dict:
        covered = meta.get("covered_from")
        since = (min(datetime.fromtimestamp(covered, UTC), keep_from) if covered is not None
                 else keep_from)
        rows, reached, error = self._read_back(since, None)
        if reached is None:
            return self._failed(meta, started, error)
        self._save(rows)
        self._path(RECENT).unlink(missing_ok=True)
        meta = {**meta, "at": started, "good_at": started, "base_at": started,
                "covered_from": reached.timestamp(), "error": None}
        if error is not None:  # the newest windows are held; older ones when asked for
            meta["error"] = _message(error)
            log.warning("history: read back to %s only: %s", reached, meta["error"])
        self.cache.write_meta(_NAME, **meta)
        return meta

    def _failed(self, meta: dict, started: float, e: Exception) -> dict:
        meta = {**meta, "at": started, "error": _message(e)}
        log.warning("history: %s", meta["error"])
        self.cache.write_meta(_NAME, **meta)
        return meta

    def covered_from(self) -> datetime | None:
        """The earliest time the held table is complete from."""
        covered = self.cache.meta(_NAME).get("covered_from")
        return None if covered is None else datetime.fromtimestamp(covered, UTC)

    def cover(self, start: datetime) -> str | None:
        """Make the held table reach back to ``start`` (reads of what is missing, one per
        ``chunk_days``); returns an error message, or None."""
        self.table()
        with self.cache.lock(_NAME):
            meta = self.cache.meta(_NAME)
            covered = meta.get("covered_from")
            if covered is not None and covered <= start.timestamp():
                return None
            until = datetime.fromtimestamp(covered, UTC) if covered else None
            rows, reached, error = self._read_back(start, until)
            if reached is not None:
                _, base = self._part(BASE)
                self._save(merge(base, rows))
                self.cache.write_meta(_NAME, **{**meta, "covered_from": reached.timestamp()})
        if error is None:
            return None
        return f"Slurm accounting (sacct) failed: {getattr(error, 'stderr', '') or error}"


def _union(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Windows' rows (newest window first) as one table, a job in two windows once (the
    newer window's row)."""
    parts = [p for p in parts if not p.empty]
    if not parts:
        return empty_jobs()
    out = pd.concat(parts, ignore_index=True).drop_duplicates("job_id", keep="first")
    return out.sort_values("job_id", ignore_index=True)


def _message(e: Exception) -> str:
    what = "did not answer" if isinstance(e, SlurmUnavailable) else "failed"
    return f"Slurm accounting (sacct) {what}: {getattr(e, 'stderr', '') or e}"
