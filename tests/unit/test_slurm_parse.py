"""Parsers of the Slurm layer, on output recorded from the local cluster (Slurm 22.05).

The same paths run against the live cluster in tests/integration/test_cluster.py.
"""

import shlex
from pathlib import Path

import pytest

from workbench.slurm import JobState, queries
from workbench.slurm.parse import (
    format_duration,
    parse_assoc_mgr,
    parse_associations,
    parse_duration_min,
    parse_gres,
    parse_job_end,
    parse_job_id,
    parse_jobs,
    parse_key_values,
    parse_live_usage,
    parse_nodes,
    parse_partitions,
    parse_tres,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_nodes_from_sinfo_json():
    nodes = {n.name: n for n in parse_nodes((FIXTURES / "sinfo-22.05.json").read_text())}
    assert set(nodes) == {"h100-1", "h100-2", "a100-1", "cpu-1", "cpu-2"}
    a100 = nodes["a100-1"]
    assert (a100.gpu_type, a100.gpus, a100.gpus_used) == ("a100", 4, 0)
    assert a100.partitions == ("gpu-a100",)
    assert a100.address == "127.0.0.1"
    assert a100.ready and a100.gpus_idle == 4
    assert nodes["cpu-1"].gpus == 0


def test_jobs_from_squeue_json():
    jobs = {j.job_id: j for j in parse_jobs((FIXTURES / "squeue-22.05.json").read_text())}
    failed, running = jobs[1], jobs[2]
    assert failed.state is JobState.FAILED and failed.reason == "JobLaunchFailure"
    assert (failed.gpu_type, failed.gpus, failed.partition) == ("h100", 2, "gpu")
    assert running.state is JobState.RUNNING and running.batch_host == "cpu-1"
    assert running.user == "alice" and running.account == "startup-helios"
    assert running.time_limit_min == 60
    # the job's memory from its TRES (mem=64G, mem=32G): the request a session's peak is held to
    assert failed.memory_bytes == 64 * 2**30 and running.memory_bytes == 32 * 2**30


def test_running_steps_so_far_from_sstat():
    """Recorded from the local cluster: job 1's batch step alone, job 2's batch step and its
    srun step 0 (sstat -a -nP --noconvert, TresUsageInTot and MaxRSS in bytes)."""
    usage = parse_live_usage((FIXTURES / "sstat-live-22.05.txt").read_text())
    assert sorted(usage) == [1, 2]
    assert [s.step for s in usage[2].steps] == ["batch", "0"]
    assert usage[1].cpu_time_s == 22 and usage[1].max_rss_bytes == 61571072
    assert usage[2].cpu_time_s == 5  # batch 0 s + step 0 5 s
    assert usage[2].max_rss_bytes == 14254080  # the larger step's peak
    # sstat's complaint about a job with no running step, and a cut line: not jobs
    assert parse_live_usage("sstat: error: couldn't get steps for job 9\n7.batch|cpu=") == {}


def test_the_sstat_query_asks_every_running_step_of_all_jobs_at_once():
    q = queries.live_usage([12, 3])
    assert (q.cmd, q.args) == ("sstat", ("-a", "-nP", "--noconvert", "-j", "12,3",
                                         "--format=JobID,TresUsageInTot,MaxRSS"))
    with pytest.raises(ValueError):
        queries.live_usage([])


def test_partitions_from_scontrol():
    text = (FIXTURES / "scontrol-partition-22.05.txt").read_text()
    nodes = parse_nodes((FIXTURES / "sinfo-22.05.json").read_text())
    parts = {p.name: p for p in parse_partitions(text, nodes)}
    assert parts["gpu"].nodes == ("h100-1", "h100-2")
    assert parts["gpu"].max_time_min == 12 * 60
    assert parts["cpu"].max_time_min == 24 * 60 and parts["cpu"].default
    assert not parts["gpu"].default
    assert parts["gpu"].billing_weights == {"gres/gpu": 1.0}  # the reserved type's billing
    assert parts["cpu"].billing_weights == {"gres/gpu": 0.0}


def test_the_account_tree_from_sacctmgr():
    text = ("startups||root||normal|normal|billing=6\n"
            "startup-helios||startups|gres/gpu=30000|normal|normal|\n"
            "startup-helios|alice|||normal|normal|\n")  # recorded from the local cluster
    tree = {(a.account, a.user): a for a in parse_associations(text)}
    assert tree["startups", ""].grp_tres == {"billing": 6} and tree["startups", ""].parent == "root"
    helios = tree["startup-helios", ""]
    assert helios.grp_tres_mins == {"gres/gpu": 30000} and helios.grp_tres == {}
    assert (helios.qos, helios.default_qos) == ("normal", "normal")
    assert tree["startup-helios", "alice"].qos == "normal"
    # the four-column form (queries.associations) still reads
    assert parse_associations("a|bob|root|gres/gpu=60\n")[0].grp_tres_mins == {"gres/gpu": 60}


@pytest.mark.parametrize("text,minutes", [
    ("30", 30), ("30:30", 31), ("02:00:00", 120), ("1-00:00:00", 1440), ("1-02", 1560),
    ("UNLIMITED", None), ("INFINITE", None),
])
def test_durations(text, minutes):
    assert parse_duration_min(text) == minutes


def test_bad_duration_is_an_error():
    with pytest.raises(ValueError):
        parse_duration_min("two hours")


def test_format_duration_round_trips():
    for minutes in (1, 59, 60, 719, 1440, 2000):
        assert parse_duration_min(format_duration(minutes)) == minutes


@pytest.mark.parametrize("text,expected", [
    ("gpu:h100:4", ("h100", 4)), ("gres:gpu:a100:2", ("a100", 2)), ("gpu:2", ("", 2)),
    ("gpu:h100:2(IDX:0-1)", ("h100", 2)), ("", ("", 0)), ("(null)", ("", 0)),
])
def test_gres(text, expected):
    assert parse_gres(text) == expected


def test_gpu_indices_of_a_job():
    from workbench.slurm.parse import parse_gres_indices
    assert parse_gres_indices(["gpu:a100:3(IDX:0,2-3)"]) == (0, 2, 3)
    assert parse_gres_indices([]) == ()


def test_job_id_and_errors():
    assert parse_job_id("42\n") == 42
    assert parse_job_id("43;aifactory\n") == 43
    with pytest.raises(ValueError):
        parse_job_id("sbatch: error: Batch job submission failed")


def test_key_values_and_tres():
    assert parse_key_values("PartitionName=gpu MaxTime=12:00:00")["MaxTime"] == "12:00:00"
    assert parse_tres("cpu=4,gres/gpu=600") == {"cpu": 4, "gres/gpu": 600}


def test_key_values_read_quoted_values_as_shlex_does_and_plain_lines_alike():
    # scontrol quotes nothing in -o lines as a rule; a quoted or escaped value still reads
    # as one value (the fast path splits on whitespace only where that is the same)
    line = 'JobId=7 Comment="hub1 bob" Reason=None Path=/a\\ b'
    assert parse_key_values(line) == {"JobId": "7", "Comment": "hub1 bob", "Reason": "None",
                                      "Path": "/a b"}
    text = (FIXTURES / "scontrol-partition-22.05.txt").read_text()
    for row in filter(None, text.splitlines()):
        assert parse_key_values(row) == dict(t.partition("=")[::2] for t in shlex.split(row)
                                             if "=" in t)


def test_job_end_from_sacct():
    assert parse_job_end("CANCELLED by 1001|0:15\n") == (JobState.CANCELLED, "0:15")
    assert parse_job_end("") is None


def test_user_associations_from_the_controllers_cache():
    text = (FIXTURES / "scontrol-assoc-mgr-22.05.txt").read_text()
    rows = parse_assoc_mgr(text)
    # accounts' own rows (UserName empty) are left out; "bob(1002)" is the user bob
    assert [(a.account, a.user) for a in rows] == [("research-climate", "bob"),
                                                   ("research-medai", "bob")]
    assert parse_assoc_mgr("Current Association Manager state\n") == []


# what Debian's squeue 22.05 prints with slurmctld stopped: exit 0, an errors array
CONTROLLER_DOWN = ('{"meta": {}, "errors": [{"description": "Failed while looking for jobs", '
                   '"error_number": -1, "error": "Unspecified error", '
                   '"source": "slurm_load_jobs"}], "jobs": []}')


@pytest.mark.parametrize("run", ["sync", "async"])
def test_an_errors_array_with_exit_0_is_the_controller_not_answering(tmp_path, run):
    # a stand-in squeue with the recorded answer (the real outage: tests/integration/
    # test_crash_safety.py); the poll and `workbench status` catch SlurmUnavailable
    import asyncio

    from workbench.slurm import SlurmClient, SlurmUnavailable, queries
    fake = tmp_path / "squeue"
    fake.write_text(f"#!/bin/sh\ncat <<'JSON'\n{CONTROLLER_DOWN}\nJSON\n")
    fake.chmod(0o755)
    client = SlurmClient(bindir=str(tmp_path))
    with pytest.raises(SlurmUnavailable, match="slurm_load_jobs") as e:
        if run == "sync":
            client.run(queries.jobs())
        else:
            asyncio.run(client.arun(queries.jobs()))
    assert e.value.returncode == 0
