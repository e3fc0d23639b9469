"""The dashboards' shared job history (:class:`workbench.dashboards.history.History`) over a
fake accounting that answers ``sacct -S/-E`` windows as slurmdbd does: a bounded first read
(windows, newest first), incremental refreshes that rewrite only what changed, compaction,
reading further back, and what is kept when a read fails."""

from datetime import UTC, datetime, timedelta

import pytest

from workbench.dashboards import history as hist
from workbench.dashboards.cache import SharedCache
from workbench.dashboards.history import History
from workbench.slurm import AccountedJob, SlurmUnavailable

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _now():
    """NOW is each test's own start: History reads the real clock, and a suite runs for
    many minutes after this module is imported."""
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0)


def job(job_id: int, ended_days_ago: float | None, state: str = "COMPLETED") -> AccountedJob:
    end = None if ended_days_ago is None else NOW - timedelta(days=ended_days_ago)
    start = (end or NOW) - timedelta(minutes=30)
    return AccountedJob(job_id, str(job_id), "train", "alice", "research-medai", "gpu", state,
                        "0:0", "None", start - timedelta(minutes=5), start, end, 1800, 1,
                        "h100", "h100-1")


class Accounting:
    """``sacct -a -X -S START -E END``: the jobs active in the window; records each window
    asked for, and fails the windows that start before ``fail_before``."""

    def __init__(self, jobs):
        self.jobs = {j.job_id: j for j in jobs}
        self.windows: list[tuple[datetime, datetime]] = []
        self.fail_before: datetime | None = None

    def run(self, query):
        args = list(query.args)
        start = datetime.fromisoformat(args[args.index("-S") + 1]).replace(tzinfo=UTC)
        end_arg = args[args.index("-E") + 1]
        end = (datetime.now(UTC) if end_arg == "now"
               else datetime.fromisoformat(end_arg).replace(tzinfo=UTC))
        self.windows.append((start, end))
        if self.fail_before is not None and start < self.fail_before:
            raise SlurmUnavailable(["sacct"], None, "", "timed out")
        return [j for j in self.jobs.values()
                if j.submit <= end and (j.end is None or j.end >= start)]


def about(a: datetime, b: datetime) -> bool:
    """The same time, but for the seconds the test itself took."""
    return abs((a - b).total_seconds()) < 30


@pytest.fixture
def accounting():
    # one job ending each day over 40 days, and one running
    return Accounting([job(i, i + 0.5) for i in range(40)] + [job(100, None, "RUNNING")])


def history(tmp_path, accounting, **kw) -> History:
    return History(SharedCache(tmp_path, accounting), days=kw.pop("days", 30), **kw)


def test_the_first_read_goes_back_in_bounded_windows_newest_first(tmp_path, accounting):
    h = history(tmp_path, accounting, chunk_days=7)
    table = h.table().value
    assert len(accounting.windows) == 5  # 30 days in windows of at most 7
    assert all(e - s <= timedelta(days=7, seconds=1) for s, e in accounting.windows)
    assert [s for s, _ in accounting.windows] == sorted(
        (s for s, _ in accounting.windows), reverse=True)
    # the jobs active in the 30 days, each once (a job in two windows is one row)
    assert sorted(table.job_id) == list(range(30)) + [100]
    assert about(h.covered_from(), NOW - timedelta(days=30))


def test_a_refresh_rewrites_only_the_recent_part_and_a_later_view_sees_the_change(
        tmp_path, accounting):
    h = history(tmp_path, accounting)
    h.table()
    base = tmp_path / "history.parquet"
    base_written = base.stat().st_mtime_ns
    accounting.jobs[100] = job(100, 0.0)  # the running job ended
    accounting.jobs[200] = job(200, None, "RUNNING")  # a new one started
    accounting.windows.clear()
    table = h.table(max_age=0).value
    (start, _), = accounting.windows  # one sacct, of the last minutes only
    assert NOW - start < timedelta(minutes=10)
    assert base.stat().st_mtime_ns == base_written  # the base was not rewritten
    assert (tmp_path / "history-recent.parquet").exists()
    rows = table.set_index("job_id")
    assert rows.loc[100, "state"] == "COMPLETED" and rows.loc[200, "state"] == "RUNNING"
    assert table.job_id.is_unique and table.job_id.is_monotonic_increasing
    # another process (another viewer's kernel) reads the same table from the files
    other = history(tmp_path, accounting).table().value
    assert other.equals(table)


def test_the_recent_part_is_folded_into_the_base_when_it_grows_and_the_window_slides(
        tmp_path, accounting, monkeypatch):
    h = history(tmp_path, accounting, days=30)
    h.table()
    monkeypatch.setattr(hist, "COMPACT_ROWS", 1)
    accounting.jobs[200] = job(200, None, "RUNNING")
    accounting.jobs[201] = job(201, None, "RUNNING")
    h.days = 10  # the window now ends 10 days back: older jobs leave at the compaction
    h.cache.write_meta("history", **{**h.cache.meta("history"), "covered_from":
                                     (NOW - timedelta(days=10)).timestamp()})
    table = h.table(max_age=0).value
    assert not (tmp_path / "history-recent.parquet").exists()
    assert {200, 201} <= set(table.job_id)
    assert table.job_id.max() == 201 and 20 not in set(table.job_id)


def test_a_window_that_fails_keeps_the_newer_ones_and_a_view_reads_back_later(
        tmp_path, accounting):
    accounting.fail_before = NOW - timedelta(days=15)
    h = history(tmp_path, accounting, chunk_days=7)
    got = h.table()
    assert "did not answer" in got.error
    assert set(range(14)) <= set(got.value.job_id)  # the two newest weeks are held
    assert about(h.covered_from(), NOW - timedelta(days=14))
    # a view of 30 days while accounting still fails: its message (the page shows it)
    assert h.cover(NOW - timedelta(days=30)).startswith("Slurm accounting (sacct) failed")
    accounting.fail_before = None
    assert h.cover(NOW - timedelta(days=30)) is None
    assert set(range(30)) <= set(h.table().value.job_id)


def test_a_first_read_that_fails_entirely_says_so_and_holds_nothing(tmp_path, accounting):
    accounting.fail_before = NOW + timedelta(days=1)
    got = history(tmp_path, accounting).table()
    assert got.value.empty and got.at is None
    assert got.error.startswith("Slurm accounting (sacct) did not answer")
