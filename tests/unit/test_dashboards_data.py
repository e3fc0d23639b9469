"""The dashboards' data layer on recorded Slurm output: sacct history (parsed, merged,
windowed), what managers read (GPU-hours, burn-down, utilisation, waits, reserved share) and
what support reads (sessions, nodes, failures), and the date range's messages."""

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from workbench.dashboards import aggregate, live
from workbench.dashboards.daterange import DateRange, RangeError, check_range
from workbench.dashboards.history import jobs_frame, merge
from workbench.slurm import queries
from workbench.slurm.models import Job, JobState, Node
from workbench.slurm.parse import parse_accounted_jobs, parse_jobs, parse_nodes
from workbench.tags import job_tag
from workbench.waits import describe_pending

FIXTURES = Path(__file__).parent.parent / "fixtures"
NOW = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
NOV26 = DateRange(date(2026, 11, 26), date(2026, 11, 26))


@pytest.fixture
def jobs():
    return parse_history((FIXTURES / "sacct-history-22.05.txt").read_text())


def allocs():
    prog = SimpleNamespace
    return SimpleNamespace(programmes=[
        prog(name="startups", reserved={"h100": 2},
             projects=[SimpleNamespace(name="startup-helios")]),
        prog(name="research", reserved={},
             projects=[SimpleNamespace(name="research-medai"),
                       SimpleNamespace(name="research-climate")]),
        prog(name="industry", reserved=None,
             projects=[SimpleNamespace(name="industry-autotwin")]),
    ])


# -- history -------------------------------------------------------------------------------

def parse_history(text: str) -> pd.DataFrame:
    """What the dashboards make of sacct's answer: the layer's rows as the jobs table."""
    return jobs_frame(parse_accounted_jobs(text))


def test_the_history_query_is_bounded_to_a_window_and_the_fields_shown():
    q = queries.history(datetime(2026, 11, 1, tzinfo=UTC))
    assert q.cmd == "sacct"
    assert q.args[:7] == ("-a", "-X", "-nP", "-S", "2026-11-01T00:00:00", "-E", "now")
    assert q.args[-1] == "--format=" + ",".join(queries.HISTORY_FIELDS)
    assert queries.history(datetime(2026, 11, 1, tzinfo=UTC), datetime(
        2026, 11, 2, 1, tzinfo=timezone(timedelta(hours=1)))).args[6] == "2026-11-02T00:00:00"
    assert q.env == {"TZ": "UTC"}  # times in and out are UTC


def test_sacct_rows_become_a_typed_jobs_table(jobs):
    assert len(jobs) == 11
    j = jobs.set_index("job_id")
    assert j.loc[1, "gpus"] == 2 and j.loc[1, "gpu_type"] == "h100"
    assert j.loc[1, "state"] == "CANCELLED"  # "CANCELLED by 1001"
    assert j.loc[14, "gpu_type"] == "a100" and j.loc[13, "gpus"] == 0
    assert j.loc[105, "job"] == "105_3" and pd.isna(j.loc[105, "end"])  # a running array task
    assert pd.isna(j.loc[106, "start"]) and j.loc[106, "reason"] == "Priority"
    assert j.loc[101, "start"] == pd.Timestamp("2026-11-24T08:30:00", tz="UTC")
    assert j.loc[104, "exit_code"] == "0:125"


def test_an_incremental_read_replaces_changed_jobs_and_the_window_slides(jobs):
    update = parse_history("105|105_3|sweep|alice|startup-helios|gpu|COMPLETED|0:0|None|"
                           "2026-11-26T14:00:00|2026-11-26T14:30:00|2026-11-26T15:30:00|3600|"
                           "billing=1,gres/gpu:h100=1,gres/gpu=1|h100-2\n")
    merged = merge(jobs, update, keep_from=datetime(2026, 11, 25, tzinfo=UTC))
    assert merged.job_id.tolist().count(105) == 1
    assert merged.set_index("job_id").loc[105, "state"] == "COMPLETED"
    assert 101 not in merged.job_id.values  # ended on the 24th: out of the window
    assert 106 in merged.job_id.values  # still pending: kept


def test_garbage_lines_are_skipped():
    assert parse_history("sacct: error: something\n\n").empty


# -- managers ------------------------------------------------------------------------------

def test_gpu_hours_per_programme_and_project_count_only_the_part_inside_the_range(jobs):
    rng = DateRange(date(2026, 11, 24), date(2026, 11, 26))
    usage = aggregate.usage_by_project(jobs, aggregate.programme_map(allocs()), rng, NOW)
    got = {r.project: r._asdict() for r in usage.rename(columns={"GPU-hours": "h"})
           .itertuples(index=False)}
    assert got["startup-helios"]["h"] == pytest.approx(4.0 + 10 / 3600 + 1.5, abs=0.01)
    assert got["research-climate"]["h"] == 8.0
    assert got["industry-autotwin"]["h"] == 0.5
    assert got["startup-helios"]["programme"] == "startups"
    one_day = aggregate.usage_by_project(jobs, {}, NOV26, NOW).set_index("project")
    assert one_day.loc["research-climate", "GPU-hours"] == 4.0  # 1 of its 2 hours, 4 GPUs
    assert one_day.loc["research-climate", "programme"] == aggregate.OTHER


def test_queue_wait_median_and_p90_per_programme_and_partition(jobs):
    waits = aggregate.queue_waits(jobs, aggregate.programme_map(allocs()), NOV26)
    row = waits.set_index(["programme", "partition"]).loc[("startups", "gpu")]
    assert row["jobs"] == 2  # job 1 waited 1 s, task 105_3 30 min
    assert row["median wait (min)"] == pytest.approx(15.0, abs=0.1)
    assert row["p90 wait (min)"] == pytest.approx(27.0, abs=0.1)
    assert ("research", "gpu") in waits.set_index(["programme", "partition"]).index
    assert 102 not in waits  # started on the 25th


def test_reserved_share_is_used_gpu_hours_of_the_reserved_type_against_the_reservation(jobs):
    share = aggregate.reserved_share(jobs, allocs(), NOV26, NOW)
    assert share.to_dict("records") == [{
        "programme": "startups", "GPU type": "h100", "reserved GPUs": 2,
        "reserved GPU-hours": 32.0, "used GPU-hours": 1.5, "used %": 4.7}]


def test_burn_down_ends_at_what_the_allocations_report_as_left(jobs):
    budgets = [{"project": "startup-helios", "programme": "startups",
                "granted_gpu_hours": 500, "used_gpu_hours": 10.0, "remaining_gpu_hours": 490,
                "valid_from": "2026-01-01", "valid_until": "2027-12-31", "active": True}]
    rng = DateRange(date(2026, 11, 25), date(2026, 11, 26))
    bd = aggregate.burndown(jobs, budgets, rng, NOW)
    assert bd["left GPU-hours"].tolist() == [pytest.approx(491.5, abs=0.01), 490.0]
    ideal = bd["ideal left"].tolist()
    assert 500 > ideal[0] > ideal[1] > 0  # the even burn over 2026-2027
    table = aggregate.budget_table(budgets)
    assert table.loc[0, "used %"] == 2.0 and table.loc[0, "left GPU-hours"] == 490


def test_utilisation_per_partition_per_hour_for_a_short_range(jobs):
    util = aggregate.utilisation(jobs, {"gpu": 8, "gpu-a100": 4, "cpu": 0}, NOV26, NOW)
    assert set(util.partition) == {"gpu", "gpu-a100"}
    a100 = util[util.partition == "gpu-a100"].set_index("time")
    nine = a100.loc[pd.Timestamp("2026-11-26T09:00", tz="UTC")]
    assert nine["GPU-hours used"] == pytest.approx(50 / 60, abs=0.01)  # 09:10-10:00, 1 GPU
    assert nine["utilisation %"] == pytest.approx(100 * 50 / 60 / 4, abs=0.1)
    assert len(a100) == 16  # hours up to now
    week = DateRange(date(2026, 11, 20), date(2026, 11, 26))
    assert len(aggregate.utilisation(jobs, {"gpu": 8}, week, NOW)) == 7  # per day


def test_an_empty_history_gives_empty_tables_not_errors():
    empty = parse_history("")
    assert aggregate.usage_by_project(empty, {}, NOV26, NOW).empty
    assert aggregate.queue_waits(empty, {}, NOV26).empty
    assert aggregate.reserved_share(empty, allocs(), NOV26, NOW)["used GPU-hours"].sum() == 0
    assert (aggregate.utilisation(empty, {"gpu": 8}, NOV26, NOW)["utilisation %"] == 0).all()


# -- support -------------------------------------------------------------------------------

def _job(job_id, user, state, **kw):
    base = dict(name="x", account="startup-helios", partition="gpu", gpus=1, gpu_type="h100",
                time_limit_min=120, submit_time=datetime(2026, 11, 26, 14, tzinfo=UTC))
    base.update(kw)
    return Job(job_id, user=user, state=state, **base)


def test_live_sessions_say_where_they_run_why_they_wait_and_how_long_is_left():
    jobs = [
        _job(7, "alice", JobState.RUNNING, nodes="h100-1",
             comment=job_tag("hub", "alice", ""), start_time=datetime(2026, 11, 26, 15, 0,
                                                                        tzinfo=UTC)),
        _job(8, "bob", JobState.PENDING, reason="QOSGrpGRES", priority=10,
             start_time=datetime(2026, 11, 26, 17, 0, tzinfo=UTC)),
        _job(9, "ida", JobState.PENDING, reason="Priority", priority=5),
        _job(3, "bob", JobState.COMPLETED),
    ]
    s = live.sessions(jobs, {"alice": "2026-11-26 15:55:00"}, NOW).set_index("job id")
    assert list(s.index) == [7, 8, 9]
    assert s.loc[7, "node"] == "h100-1" and s.loc[7, "session"] == "default"
    assert s.loc[7, "runtime"] == "1:00" and s.loc[7, "walltime left"] == "1:00"
    assert s.loc[7, "last activity"] == "2026-11-26 15:55:00"
    assert s.loc[8, "why waiting"] == describe_pending("QOSGrpGRES")  # the spawn page's words
    assert s.loc[8, "why waiting"] != "QOSGrpGRES"
    assert s.loc[8, "position"] == "1 of 2" and s.loc[9, "position"] == "2 of 2"
    assert s.loc[8, "estimated start"] == "2026-11-26 17:00 UTC"
    assert s.loc[8, "session"] == "(batch job)"
    assert list(live.sessions(jobs, now=NOW, user="ida")["job id"]) == [9]


def test_sessions_and_nodes_from_recorded_squeue_and_sinfo():
    jobs = parse_jobs((FIXTURES / "squeue-22.05.json").read_text())
    s = live.sessions(jobs, now=NOW)
    assert list(s["job id"]) == [2]  # job 1 failed: not live
    nodes = parse_nodes((FIXTURES / "sinfo-22.05.json").read_text())
    nodes.append(Node("h100-3", "h100-3", "idle", flags=("DRAIN",), partitions=("gpu",),
                      gpus=4, gpu_type="h100", reason="bad fan"))
    table = live.nodes(nodes).set_index("node")
    assert table.loc["h100-1", "GPUs total"] == 4 and table.loc["h100-1", "problem"] == ""
    assert table.loc["h100-3", "problem"] == "bad fan"
    assert table.loc["h100-3", "state"] == "idle (drain)"
    assert live.partition_gpus(nodes) == {"gpu-a100": 4, "cpu": 0, "gpu": 12}


def test_running_sessions_show_their_figures_so_far_batch_jobs_do_not():
    from dataclasses import replace

    from workbench import efficiency
    from workbench.slurm.models import LiveUsage, StepUsage
    from workbench.tags import job_tag
    batch = parse_jobs((FIXTURES / "squeue-22.05.json").read_text())[1]  # job 2, running
    session = replace(batch, job_id=3, comment=job_tag("hub1", "alice", ""))
    fresh = replace(batch, job_id=4, comment=job_tag("hub1", "bob", ""))
    live_use = LiveUsage(3, (StepUsage("batch", JobState.RUNNING, "", 30.0, 2**30),))
    usage = {3: efficiency.so_far(session, live_use, now=NOW),
             4: efficiency.so_far(fresh, None, now=NOW)}
    s = live.sessions([batch, session, fresh], now=NOW, usage=usage).set_index("job id")
    elapsed = (NOW - session.start_time).total_seconds()
    assert s.loc[3, "CPU use so far"] == f"{100 * 30 / elapsed:.0f} % of 1 CPU"
    assert s.loc[3, "peak memory so far"] == "1 GB of 32 GB"
    assert s.loc[3, "GPU use so far"] == ""  # it holds none
    assert s.loc[4, "CPU use so far"] == "not measured"  # started after the last sstat
    assert s.loc[2, "CPU use so far"] == ""  # a batch job: not a session


#: sacct rows (HISTORY_FIELDS) of ends the recorded history lacks, in Slurm 22.05's format
MORE_ENDS = (
    "201|201|jupyter-bob|bob|research-medai|gpu|NODE_FAIL|0:0|NodeDown|2026-11-26T12:00:00|"
    "2026-11-26T12:00:05|2026-11-26T12:40:00|2395|"
    "billing=1,cpu=1,gres/gpu:h100=1,gres/gpu=1,mem=2G,node=1|h100-2\n"
    "202|202|jupyter-ida|ida|industry-autotwin|cpu|CANCELLED by 1003|0:15|None|"
    "2026-11-26T12:10:00|2026-11-26T12:10:02|2026-11-26T13:10:02|3600|"
    "billing=1,cpu=1,mem=2G,node=1|cpu-1\n")


def test_a_job_killed_over_its_memory_without_cgroups_reads_out_of_memory(jobs):
    """FAILED 0:9: a kill -9 or (OverMemoryKill, no cgroup) the memory limit; the steps
    decide, and the ids they named are said out of memory."""
    killed = ("301|301|train|bob|research-medai|cpu|FAILED|0:9|None|2026-11-26T12:00:00|"
              "2026-11-26T12:00:05|2026-11-26T12:01:00|55|billing=1,cpu=1,mem=100M,node=1|"
              "cpu-1\n302|302|train|bob|research-medai|cpu|FAILED|0:9|None|"
              "2026-11-26T12:00:00|2026-11-26T12:00:05|2026-11-26T12:02:00|115|"
              "billing=1,cpu=1,mem=100M,node=1|cpu-1\n")
    jobs = pd.concat([jobs, parse_history(killed)], ignore_index=True)
    since = datetime(2026, 11, 26, tzinfo=UTC)
    assert live.killed_candidates(jobs, since) == [302, 301]  # newest first
    f = live.failures(jobs, since, out_of_memory={301}).set_index("job id")
    assert f.loc["301", "what happened"] == "out of memory (killed at its memory limit)"
    assert f.loc["302", "what happened"] == "failed: killed by signal 9"


def test_recent_failures_list_failures_only_newest_first_in_supports_words(jobs):
    # The old table also listed CANCELLED jobs (1: alice's stop, "CANCELLED by 1001"; 4 and
    # 20: "CANCELLED by 0"), so its first rows were 20, 4, 1 and job 4's Slurm's reason was
    # AssocGrpGRES; a stopped, culled or operator-cancelled job is no longer a failure.
    jobs = pd.concat([jobs, parse_history(MORE_ENDS)], ignore_index=True)
    f = live.failures(jobs, datetime(2026, 11, 26, tzinfo=UTC))
    assert f["job id"].tolist() == ["201", "104", "103", "102"]  # newest end first
    by_id = f.set_index("job id")
    assert by_id.loc["103", "what happened"] == "timed out (walltime reached)"
    assert by_id.loc["104", "what happened"] == "out of memory (killed at its memory limit)"
    assert by_id.loc["104", "exit code"] == "0:125"
    assert by_id.loc["102", "what happened"] == "failed with exit code 1"
    assert by_id.loc["102", "exit code"] == "1:0"
    assert by_id.loc["201", "what happened"] == "node failure (NODE_FAIL)"
    assert by_id.loc["201", "Slurm's reason"] == "NodeDown"
    assert by_id.loc["104", "Slurm's reason"] == ""  # sacct's "None"
    # the owner's stop (1), the culler's stop through the hub (202: scancel as the owner,
    # an hour idle), Slurm's or an operator's cancel (4, 20), clean exits (13, 14)
    for ended_normally in ("1", "202", "4", "20", "13", "14"):
        assert ended_normally not in by_id.index
    assert not any("by you" in w for w in f["what happened"])
    ida = live.failures(jobs, datetime(2026, 11, 26, tzinfo=UTC), user="ida")
    assert ida["job id"].tolist() == ["104"]
    assert live.failures(jobs, datetime(2026, 11, 26, 12, 0, tzinfo=UTC))[
        "job id"].tolist() == ["201"]  # ended since noon
    assert live.failures(jobs, datetime(2026, 11, 26, tzinfo=UTC), limit=2)[
        "job id"].tolist() == ["201", "104"]


def test_no_failures_is_an_empty_table_with_the_columns(jobs):
    f = live.failures(jobs[jobs.state == "COMPLETED"], datetime(2026, 11, 20, tzinfo=UTC))
    assert f.empty and list(f.columns) == live.FAILURE_COLUMNS


def test_a_users_recent_jobs(jobs):
    r = live.recent_jobs(jobs, "alice", datetime(2026, 11, 20, tzinfo=UTC))
    assert r["job id"].tolist() == ["1", "105_3", "101"]  # newest submit first
    assert r.set_index("job id").loc["105_3", "ended"] == ""
    assert live.recent_jobs(jobs, "nobody", datetime(2026, 11, 20, tzinfo=UTC)).empty


# -- date range ----------------------------------------------------------------------------

@pytest.mark.parametrize("start,end,words", [
    (None, "2026-11-26", "Choose a start date"),
    ("2026-11-26", "", "Choose a end date"),
    ("2026-11-26", "2026-11-01", "is after the end"),
    ("2016-11-26", "2026-11-26", "longer than the 366 days"),
    ("2027-01-01", "2027-01-02", "starts in the future"),
    ("26/11/2026", "2026-11-26", "not a date"),
])
def test_bad_ranges_are_refused_with_a_message(start, end, words):
    with pytest.raises(RangeError, match=words):
        check_range(start, end, today=date(2026, 11, 26))


def test_a_good_range_includes_both_days():
    rng = check_range("2026-11-01", date(2026, 11, 26), today=date(2026, 11, 26))
    assert rng.days == 26 and rng.end_time == datetime(2026, 11, 27, tzinfo=UTC)
