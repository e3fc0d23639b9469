"""Job history from Slurm's accounting: one bounded ``sacct``, read incrementally, shared.

The query (:func:`workbench.slurm.queries.history`) asks for allocations only, every user, a
time window and only the fields the dashboards show. The first read covers ``days`` back; each
refresh then asks only for jobs active since the last read started (minus a minute of
overlap): a job that started, changed or ended since is in that answer, one that ended before
is not and needs no update. The merged table is kept (Parquet) in the dashboards' shared
cache, so every viewer and both dashboards share one call per ``max_age``.
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
    asks for a range that starts before what is held.
    """

    def __init__(self, cache: SharedCache, days: int = 92, max_age: float = 60.0):
        self.cache = cache
        self.days = days
        self.max_age = max_age
        self._memo: tuple[float, pd.DataFrame] | None = None  # (file mtime, table)

    def _path(self):
        return self.cache.directory / f"{_NAME}.parquet"

    def _load(self) -> pd.DataFrame:
        path = self._path()
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return empty_jobs()
        if self._memo and self._memo[0] == mtime:
            return self._memo[1]
        # the file itself: pd.read_parquet would import pyarrow.dataset too (0.2-0.4 s of
        # each viewer's kernel start) for the same table
        import pyarrow.parquet as pq
        df = pq.ParquetFile(path).read().to_pandas()
        self._memo = (mtime, df)
        return df

    def _save(self, df: pd.DataFrame) -> None:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        self.cache._write(_NAME, "parquet", buf.getvalue())

    def _read(self, start: datetime, end: datetime | None = None) -> pd.DataFrame:
        return jobs_frame(self.cache.client.run(queries.history(start, end)))

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
        covered = meta.get("covered_from")
        covered_from = (datetime.fromtimestamp(covered, UTC) if covered is not None
                        else keep_from)
        if meta.get("good_at") is None or not self._path().exists():
            since, old = covered_from, empty_jobs()
        else:
            since = datetime.fromtimestamp(meta["good_at"] - OVERLAP_S, UTC)
            old = self._load()
        try:
            new = self._read(since)
        except (SlurmUnavailable, SlurmError) as e:
            what = "did not answer" if isinstance(e, SlurmUnavailable) else "failed"
            meta = {**meta, "at": started,
                    "error": f"Slurm accounting (sacct) {what}: {e.stderr or e}"}
            log.warning("history: %s", meta["error"])
        else:
            self._save(merge(old, new, min(covered_from, keep_from)))
            meta = {**meta, "at": started, "good_at": started, "error": None,
                    "covered_from": min(covered_from, keep_from).timestamp()}
        self.cache.write_meta(_NAME, **meta)
        return meta

    def covered_from(self) -> datetime | None:
        """The earliest time the held table is complete from."""
        covered = self.cache.meta(_NAME).get("covered_from")
        return None if covered is None else datetime.fromtimestamp(covered, UTC)

    def cover(self, start: datetime) -> str | None:
        """Make the held table reach back to ``start`` (one extra read of what is missing);
        returns an error message, or None."""
        self.table()
        with self.cache.lock(_NAME):
            meta = self.cache.meta(_NAME)
            covered = meta.get("covered_from")
            if covered is not None and covered <= start.timestamp():
                return None
            until = datetime.fromtimestamp(covered, UTC) if covered else None
            try:
                new = self._read(start, until)
            except SlurmError as e:
                return f"Slurm accounting (sacct) failed: {e.stderr or e}"
            self._save(merge(self._load(), new))
            self.cache.write_meta(_NAME, **{**meta, "covered_from": start.timestamp()})
        return None
