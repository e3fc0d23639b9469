"""How well a job used what it held (workbench.efficiency, workbench.slurm's efficiency query).

Fixtures:
- ``sacct-efficiency-22.05.txt``: recorded from the local cluster (Slurm 22.05.8) with
  ``TZ=UTC sacct -a -nP -S now-2days --format=<EFFICIENCY_FIELDS>``, allocations with their
  steps, a few jobs kept as they were printed.
- ``nvidia-smi-query-gpu-samples.csv``: twelve samples (one per 30 s, six minutes) of a job
  holding four H100 80GB GPUs and using one, in the format NVIDIA documents for
  ``nvidia-smi --query-gpu=index,uuid,utilization.gpu,memory.used,memory.total
  --format=csv,noheader,nounits`` (one line per GPU: index, UUID, percent, MiB, MiB; H100
  80GB HBM3 reports 81559 MiB in all). The local cluster's GPUs are fake, so this file is
  written to that format, not recorded: GPU 0 averages exactly 60 %, GPU 2 is at 3 % once.

Expected figures follow Slurm's ``seff`` (contribs/seff): CPU efficiency = TotalCPU /
(Elapsed x AllocCPUS), memory efficiency = the largest step MaxRSS / the job's memory.
"""

import os
import signal
import stat
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from workbench import efficiency as eff
from workbench.daemons import wait_until
from workbench.slurm import queries
from workbench.slurm.models import JobState
from workbench.slurm.parse import (
    parse_cpu_time,
    parse_job_usage,
    parse_req_mem,
    parse_size_bytes,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"
ROOT = Path(__file__).parent.parent.parent
GiB = 2**30


@pytest.fixture(scope="module")
def usage():
    return {u.job_id: u for u in
            parse_job_usage((FIXTURES / "sacct-efficiency-22.05.txt").read_text())}


@pytest.fixture(scope="module")
def samples():
    readings = eff.parse_query_gpu((FIXTURES / "nvidia-smi-query-gpu-samples.csv").read_text())
    return eff.split_samples(readings)


# -- sacct's formats -----------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("00:08.136", 8.136),            # MM:SS.mmm, under an hour
    ("01:02:03.456", 3723.456),      # HH:MM:SS.mmm
    ("12:00:00", 43200.0),           # HH:MM:SS
    ("1-00:00:00", 86400.0),         # D-HH:MM:SS
    ("2-03:04:05", 183845.0),
    ("00:00:00", 0.0),
    ("", 0.0),
])
def test_total_cpu_in_each_of_sacct_forms(text, seconds):
    assert parse_cpu_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["1:2:3:4", "soon", "1-", "1-00:00"])
def test_a_cpu_time_that_is_not_one_is_refused(bad):
    with pytest.raises(ValueError):
        parse_cpu_time(bad)


@pytest.mark.parametrize("text, value", [
    ("4720K", 4720 * 1024), ("247676K", 247676 * 1024), ("3.5G", int(3.5 * GiB)),
    ("0", 0), ("512", 512), ("", None),
])
def test_max_rss_in_units_of_1024(text, value):
    assert parse_size_bytes(text) == value


@pytest.mark.parametrize("text, cpus, nodes, value", [
    ("2G", 1, 1, 2 * GiB),            # 22.05: the job's total
    ("4G", 4, 2, 4 * GiB),            # --mem=2G on two nodes, printed as the total
    ("4000M", 2, 1, 4000 * 2**20),
    ("4000Mc", 4, 1, 16000 * 2**20),  # before 21.08: per CPU
    ("2Gn", 4, 2, 4 * GiB),           # before 21.08: per node
    ("0", 1, 1, 0), ("", 1, 1, None),
])
def test_requested_memory_per_job_node_or_cpu(text, cpus, nodes, value):
    assert parse_req_mem(text, cpus, nodes) == value


def test_the_query_reads_steps_of_the_jobs_asked_for_in_utc():
    q = queries.efficiency([101, 83])
    assert q.cmd == "sacct" and "-X" not in q.args  # steps too: MaxRSS is per step
    assert q.args[q.args.index("-j") + 1] == "101,83"
    assert q.args[-1] == "--format=" + ",".join(queries.EFFICIENCY_FIELDS)
    assert q.env == {"TZ": "UTC"}
    with pytest.raises(ValueError):
        queries.efficiency([])
    u = queries.user_efficiency("bob", datetime(2026, 12, 1, tzinfo=UTC))
    assert u.args[:5] == ("-nP", "-u", "bob", "-S", "2026-12-01T00:00:00")


def test_recorded_jobs_with_their_steps(usage):
    assert sorted(usage) == [4, 8, 9, 11, 12, 13, 23, 50, 83, 84, 85, 101, 228, 394]
    j = usage[83]  # torch-allreduce on two nodes
    assert (j.user, j.account, j.partition, j.nodes) == ("ida", "industry-autotwin", "cpu",
                                                         "cpu-[1-2]")
    assert (j.cpus, j.nodes_count, j.elapsed_s) == (4, 2, 4)
    assert [s.step for s in j.steps] == ["batch", "0"]
    assert j.total_cpu_s == pytest.approx(8.136)  # = 0.018 (batch) + 8.118 (step 0)
    assert j.max_rss_bytes == 237932 * 1024       # step 0's; the batch step recorded none
    assert j.req_mem_bytes == 4 * GiB
    g = usage[101]
    assert (g.gpus, g.gpu_type, g.state) == (1, "h100", JobState.CANCELLED)
    assert g.start.isoformat() == "2026-12-02T12:40:16+00:00"
    assert usage[11].cancelled_by_uid == 1001 and usage[23].cancelled_by_uid == 0
    assert usage[12].cancelled_by_uid is None  # a bare "CANCELLED"
    assert usage[9].nodes == "" and usage[9].steps == ()  # cancelled before it started
    assert usage[394].state is JobState.RUNNING and usage[394].end is None
    assert usage[23].reason == "AssocGrpGRESMinutes" and usage[101].reason == ""


def test_lines_that_are_not_rows_are_skipped(usage):
    text = "sacct: error: slurmdbd: Getting response\n" + \
        (FIXTURES / "sacct-efficiency-22.05.txt").read_text().splitlines()[0] + "\n"
    assert [u.job_id for u in parse_job_usage(text)] == [4]


# -- seff's figures ------------------------------------------------------------------------

def test_cpu_and_memory_efficiency_as_seff_computes_them(usage):
    e = eff.efficiency(usage[101])
    # by seff's formula (seff is not installed here): CPU efficiency 9.834 s / (86 s x 1
    # CPU) = 11.43 % of 00:01:26 core-walltime; memory 248196K / 2G = 248196 / 2097152
    # = 11.83 % of 2.00 GB
    assert e.cpu_efficiency == pytest.approx(9.834 / 86)
    assert round(100 * e.cpu_efficiency, 2) == 11.43
    assert e.peak_memory_bytes == 248196 * 1024
    assert e.requested_memory_bytes == 2 * GiB
    assert round(100 * e.memory_efficiency, 2) == 11.83
    m = eff.efficiency(usage[83])
    # two nodes, 4 CPUs, 4 s: 8.136 / (4 x 4) = 50.85 %; 237932K / 4G = 237932 / 4194304
    # = 5.67 %
    assert round(100 * m.cpu_efficiency, 2) == 50.85
    assert round(100 * m.memory_efficiency, 2) == 5.67


def test_killed_over_its_memory_without_cgroups_is_out_of_memory(usage):
    """Job 228 (recorded): 600 MB held under --mem=100M on the local cluster, whose memory
    is held by the accounting poll (OverMemoryKill, no cgroup): Slurm 22.05 records FAILED
    0:9, the batch step CANCELLED by 0 with a peak RSS of 611 MiB."""
    hog = usage[228]
    assert hog.state is JobState.FAILED and hog.exit_code == "0:9"
    assert hog.out_of_memory and hog.max_rss_bytes > hog.req_mem_bytes == 100 * 2**20
    e = eff.efficiency(hog, for_support=True)
    assert e.ended == "out of memory (killed at its memory limit)"
    assert e.advice == "it ran out of its 0.1 GB: next time ask for 0.2 GB"
    # killed by signal 9 under its memory (an operator's kill -9): not memory
    under = replace(hog, steps=tuple(replace(s, max_rss_bytes=50 * 2**20) for s in hog.steps))
    assert not under.out_of_memory
    assert eff.efficiency(under).ended == "failed: killed by signal 9"


def test_no_figure_where_accounting_has_none(usage):
    running = eff.efficiency(usage[394])
    assert running.cpu_efficiency is None  # sacct adds CPU time when a step ends
    assert running.ended == "still running"
    assert eff.efficiency(usage[4]).cpu_efficiency is None  # 0 s elapsed
    assert eff.efficiency(usage[4]).memory_efficiency is None  # no MaxRSS recorded
    assert eff.efficiency(usage[9]).peak_memory_bytes is None


def test_gpu_figures_not_measured_without_samples(usage, tmp_path):
    e = eff.efficiency(usage[101])  # 1 fake h100 on the local cluster: no nvidia-smi
    assert e.gpus_held == 1
    assert (e.gpus, e.gpu_util_pct, e.gpus_used, e.gpu_peak_mem_mib, e.gpu_samples) == \
        ((), None, None, None, 0)
    assert e.as_json()["gpu_util_pct"] is None
    assert eff.read_samples(tmp_path / "none.jsonl") == []


# -- nvidia-smi samples --------------------------------------------------------------------

def test_recorded_samples_mean_utilisation_per_gpu_and_peak_memory(samples):
    assert len(samples) == 12 and all(len(s) == 4 for s in samples)
    figures = eff.gpu_figures(samples)
    assert [g.index for g in figures] == [0, 1, 2, 3]
    g0, g1, g2, g3 = figures
    # GPU 0: (0+95+62+71+64+58+66+60+63+59+61+61) / 12 = 720 / 12
    assert g0.mean_util_pct == 60.0 and g0.peak_mem_mib == 41876 and g0.mem_total_mib == 81559
    assert g0.uuid == "GPU-3f5c9a1e-7b2d-4c8e-9a61-0d2b7e4f1a93" and g0.samples == 12
    assert g1.mean_util_pct == 0.0 and g1.peak_mem_mib == 514  # a CUDA context, no work
    assert g2.mean_util_pct == 0.25  # 3 % once in 12: idle
    assert [g.used for g in figures] == [True, False, False, False]
    assert g3.peak_mem_mib == 1


def test_held_four_gpus_used_one(usage, samples):
    four = replace(usage[101], gpus=4)
    e = eff.efficiency(four, samples)
    assert e.gpus_used == 1
    assert e.gpu_util_pct == pytest.approx((60 + 0 + 0.25 + 0) / 4)
    assert e.gpu_peak_mem_mib == 41876 and e.gpu_samples == 12
    assert e.advice == "held 4 GPUs, used 1 at 60 %: next time ask for 1"


def test_not_supported_readings_are_not_measured():
    text = ("0, GPU-aa, [N/A], 1200, 16384\n"
            "1, GPU-bb, 40, [Not Supported], [Not Supported]\n"
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n")
    a, b = eff.parse_query_gpu(text)
    assert (a.util_pct, a.mem_used_mib, a.mem_total_mib) == (None, 1200, 16384)
    assert (b.util_pct, b.mem_used_mib) == (40.0, None)
    fa, fb = eff.gpu_figures([[a, b]])
    assert fa.mean_util_pct is None and not fa.used and fb.peak_mem_mib is None


def _fake_nvidia_smi(tmp_path: Path, body: str) -> dict:
    """A PATH whose nvidia-smi is a script: the sampler runs it as it would the real one."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bindir}:/usr/bin:/bin"}


def test_sampling_writes_json_lines_read_back_as_the_same_readings(tmp_path, monkeypatch):
    lines = (FIXTURES / "nvidia-smi-query-gpu-samples.csv").read_text().splitlines()[4:8]
    env = _fake_nvidia_smi(tmp_path, 'echo "$@" >> "$0.argv"\ncat <<EOF\n'
                           + "\n".join(lines) + "\nEOF\n")
    monkeypatch.setenv("PATH", env["PATH"])
    out = tmp_path / "gpu.jsonl"
    assert eff.sample_gpus(out, every=0.01, gpus=["0", "2"], max_samples=3) == 3
    back = eff.read_samples(out)
    assert len(back) == 3 and back[0] == eff.parse_query_gpu("\n".join(lines))
    argv = (tmp_path / "bin" / "nvidia-smi.argv").read_text().splitlines()[0].split()
    assert argv == ["--query-gpu=index,uuid,utilization.gpu,memory.used,memory.total",
                    "--format=csv,noheader,nounits", "-i", "0,2"]
    with out.open("a") as f:
        f.write('{"at": "2026-12-02T12:00:00+00:00", "gpus": [{"ind')  # killed mid-line
    assert len(eff.read_samples(out)) == 3


def test_sampling_stops_when_told_and_when_nvidia_smi_keeps_failing(tmp_path, monkeypatch):
    env = _fake_nvidia_smi(tmp_path, 'echo "0, GPU-aa, 50, 100, 200"\n')
    monkeypatch.setenv("PATH", env["PATH"])
    stop = threading.Event()
    stop.set()
    assert eff.sample_gpus(tmp_path / "a.jsonl", every=60, stop=stop) == 1  # one, then stop
    (tmp_path / "bin" / "nvidia-smi").write_text("#!/bin/sh\necho 'No devices were found'\n"
                                                 "exit 6\n")
    assert eff.sample_gpus(tmp_path / "b.jsonl", every=0.01) == 0
    assert eff.read_samples(tmp_path / "b.jsonl") == []


def test_without_nvidia_smi_nothing_is_sampled(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    out = tmp_path / "gpu.jsonl"
    assert eff.sample_gpus(out, every=0.01, max_samples=5) == 0
    assert not out.exists()


def test_the_sampler_runs_in_a_job_until_slurm_sends_sigterm(tmp_path):
    env = {**os.environ, **_fake_nvidia_smi(tmp_path, 'echo "$@" > "$0.argv"\n'
                                            'echo "0, GPU-aa, 50, 100, 200"\n'),
           "PYTHONPATH": str(ROOT)}
    out = tmp_path / "gpu.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "workbench.efficiency", str(out), "0.05",
                             "1,3"], env=env)
    try:
        wait_until(lambda: len(eff.read_samples(out)) >= 2, "two samples", timeout=20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert eff.read_samples(out)[0][0].util_pct == 50.0
    assert (tmp_path / "bin" / "nvidia-smi.argv").read_text().split()[-2:] == ["-i", "1,3"]
    usage = subprocess.run([sys.executable, "-m", "workbench.efficiency"], env=env,
                           capture_output=True, text=True)
    assert usage.returncode == 2 and "usage:" in usage.stderr


# -- advice --------------------------------------------------------------------------------

def test_advice_on_memory_asked_for_and_not_used(usage):
    big = replace(usage[101], req_mem_bytes=64 * GiB,
                  steps=(replace(usage[101].steps[0], max_rss_bytes=3 * GiB),))
    assert eff.efficiency(big).advice == "peak memory 3 GB of 64 GB requested"
    # 242 MB of 2 GB is little, but 2 GB is not worth a line
    assert eff.efficiency(usage[101]).advice is None


def test_advice_on_cpus_only_for_a_long_job_on_several(usage):
    long8 = replace(usage[83], elapsed_s=3600, cpus=8, total_cpu_s=3600 * 1.2,
                    req_mem_bytes=1 * GiB)
    # 4320 s / (3600 s x 8) = 15 %: 1.2 CPUs busy on average
    assert eff.efficiency(long8).advice == "used 1.2 of 8 CPUs on average: next time ask for 2"
    assert eff.efficiency(usage[83]).advice is None  # 4 s prove nothing


def test_advice_for_idle_gpus_out_of_memory_and_a_job_that_used_what_it_held(usage, samples):
    idle = [[r for r in s if r.index != 0] for s in samples]  # GPUs 1-3 only
    assert eff.efficiency(replace(usage[101], gpus=3), idle).advice == \
        "held 3 GPUs, used none: next time ask for a session without GPUs"
    busy = [[r for r in s if r.index == 0] for s in samples]
    assert eff.efficiency(replace(usage[101], gpus=1), busy).advice is None
    assert eff.efficiency(replace(usage[101], gpus=4), samples[:5]).advice is None  # 2.5 min
    oom = replace(usage[101], state=JobState.OUT_OF_MEMORY, exit_code="0:125")
    assert eff.efficiency(oom).advice == "it ran out of its 2 GB: next time ask for 4 GB"


# -- how it ended --------------------------------------------------------------------------

@pytest.mark.parametrize("state, exit_code, kwargs, for_user, for_support", [
    ("COMPLETED", "0:0", {}, "ended normally", "ended normally"),
    ("CANCELLED by 1001", "0:0", {"cancelled_by_owner": True}, "stopped by you",
     "cancelled by its owner"),
    ("CANCELLED by 1001", "0:0", {"culled_after_min": 60}, "idle-culled after 60 min",
     "idle-culled after 60 min"),
    ("CANCELLED by 0", "0:0", {"cancelled_by_owner": False}, "cancelled by an operator",
     "cancelled by an operator or the workbench's clean-up"),
    ("CANCELLED", "0:15", {}, "cancelled", "cancelled"),
    ("TIMEOUT", "0:0", {}, "walltime reached", "timed out (walltime reached)"),
    ("NODE_FAIL", "0:0", {}, "node failure", "node failure (NODE_FAIL)"),
    ("OUT_OF_MEMORY", "0:125", {}, "out of memory: ask for more next time",
     "out of memory (killed at its memory limit)"),
    ("FAILED", "0:125", {}, "out of memory: ask for more next time",
     "out of memory (killed at its memory limit)"),
    ("CANCELLED", "0:9", {"out_of_memory": True}, "out of memory: ask for more next time",
     "out of memory (killed at its memory limit)"),  # signal 9 with a step OUT_OF_MEMORY
    ("FAILED", "1:0", {}, "failed with exit code 1", "failed with exit code 1"),
    ("FAILED", "0:11", {}, "failed: killed by signal 11", "failed: killed by signal 11"),
    ("BOOT_FAIL", "0:0", {}, "its node failed to boot", "its node failed to boot"),
    ("DEADLINE", "0:0", {}, "deadline reached", "deadline reached"),
    ("PREEMPTED", "0:0", {}, "preempted by a higher-priority job",
     "preempted by a higher-priority job"),
    ("RUNNING", "0:0", {}, "still running", "still running"),
    ("PENDING", "0:0", {}, "waiting in the queue", "waiting in the queue"),
])
def test_every_way_a_job_ends_in_plain_words(state, exit_code, kwargs, for_user, for_support):
    assert eff.ended_how(state, exit_code, **kwargs) == for_user
    assert eff.ended_how(state, exit_code, for_support=True, **kwargs) == for_support


def test_who_cancelled_from_the_owners_uid(usage):
    assert eff.efficiency(usage[11], owner_uid=1001).ended == "stopped by you"
    assert eff.efficiency(usage[11], owner_uid=1001, for_support=True).ended == \
        "cancelled by its owner"
    assert eff.efficiency(usage[23], owner_uid=1002).ended == "cancelled by an operator"
    assert eff.efficiency(usage[12], owner_uid=1001).ended == "cancelled"  # Slurm said nobody
    assert eff.efficiency(usage[12], cancelled_by_owner=True).ended == "stopped by you"
    assert eff.efficiency(usage[84]).ended == "failed with exit code 1"


def test_a_step_killed_at_its_memory_limit_makes_the_job_out_of_memory(usage):
    step = replace(usage[13].steps[0], state=JobState.OUT_OF_MEMORY, exit_code="0:125")
    oom = replace(usage[13], state=JobState.FAILED, exit_code="0:9", steps=(step,))
    assert oom.out_of_memory
    assert eff.efficiency(oom).ended == "out of memory: ask for more next time"
    assert not usage[13].out_of_memory  # 0:9 alone is scancel's SIGKILL


# -- a running session's figures so far ----------------------------------------------------

def _running(cpus=2, gpus=0, memory=2 * 2**30, started_s_ago=100):
    from workbench.slurm.models import Job
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    start = datetime.fromtimestamp(now.timestamp() - started_s_ago, UTC)
    return now, Job(7, "jupyterhub", "bob", "research-medai", "gpu", JobState.RUNNING,
                    cpus=cpus, gpus=gpus, gpu_type="h100" if gpus else "", start_time=start,
                    memory_bytes=memory)


def test_so_far_cpu_time_of_the_running_steps_over_elapsed_times_cpus():
    from workbench.slurm.models import LiveUsage, StepUsage
    now, job = _running(cpus=2, started_s_ago=100)
    live = LiveUsage(7, (StepUsage("batch", JobState.RUNNING, "", 50.0, 300 * 2**20),
                         StepUsage("0", JobState.RUNNING, "", 30.0, 500 * 2**20)))
    e = eff.so_far(job, live, now=now)
    assert e.ended == "still running" and e.elapsed_s == 100 and e.cpus == 2
    assert e.cpu_time_s == 80 and e.cpu_efficiency == pytest.approx(80 / 200)
    assert e.peak_memory_bytes == 500 * 2**20  # the larger step's peak, as seff reads it
    assert e.memory_efficiency == pytest.approx(500 / 2048)
    assert eff.short_figures(e) == {"cpu": "40 % of 2 CPUs", "memory": "0.5 GB of 2 GB",
                                    "gpu": ""}
    assert e.advice is None  # 100 s in: too early to tell


def test_so_far_advice_once_the_session_has_run_ten_minutes():
    from workbench.slurm.models import LiveUsage, StepUsage
    now, job = _running(cpus=1, memory=64 * 2**30, started_s_ago=599)
    live = LiveUsage(7, (StepUsage("batch", JobState.RUNNING, "", 50.0, 3 * 2**30),))
    assert eff.so_far(job, live, now=now).advice is None
    now, job = _running(cpus=1, memory=64 * 2**30, started_s_ago=600)
    assert eff.so_far(job, live, now=now).advice == "peak memory 3 GB of 64 GB requested"


def test_so_far_without_sstat_figures_is_not_measured_never_zero():
    now, job = _running(gpus=4)
    e = eff.so_far(job, None, now=now)
    assert e.cpu_efficiency is None and e.peak_memory_bytes is None
    assert e.gpu_util_pct is None and e.gpus_held == 4 and e.advice is None
    assert eff.short_figures(e) == {"cpu": "not measured", "memory": "not measured",
                                    "gpu": "not measured"}
    assert eff.short_figures(None)["cpu"] == "not measured"


def test_so_far_gpus_from_the_samples_so_far(samples):
    from workbench.slurm.models import LiveUsage
    now, job = _running(gpus=4, started_s_ago=3600)
    e = eff.so_far(job, LiveUsage(7, ()), samples, now=now)
    assert e.gpus_used == 1 and e.gpu_samples == 12
    assert e.advice == "held 4 GPUs, used 1 at 60 %: next time ask for 1"
    assert eff.short_figures(e)["gpu"] == "1 of 4 busy, 15 %"
