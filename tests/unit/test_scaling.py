"""Scaling without a cluster: the request check of worker groups and torch runs, the worker
tag and the reconciler's view of workers, the clean submission environment, the worker job
script, and per-pool scaling of PoolCluster (its job class swapped for one that submits
nothing, through dask-jobqueue's own ``job_cls`` extension point)."""

import itertools
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from distributed.deploy.spec import ProcessInterface

from workbench.reconcile import find_orphans
from workbench.resources import ClusterView
from workbench.scaling.cluster import PoolAdaptive, PoolCluster
from workbench.scaling.jobs import WorkerJob, job_options
from workbench.scaling.ownership import owning_session, session_workers
from workbench.scaling.pools import ScalingError, WorkerPool, check_pool, check_total
from workbench.scaling.session import Session, clean_environ, submission_env
from workbench.scaling.workers import worker_rows
from workbench.slurm.models import Association, Job, JobState, Node, Partition
from workbench.tags import job_tag, parse_job_tag, worker_tag

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SESSION_TAG = job_tag("hub1", "alice", "")


@dataclass
class Budget:
    project: str
    granted_hours: float
    used_hours: float

    @property
    def remaining_hours(self) -> float:
        return self.granted_hours - self.used_hours


def view(left: float = 500) -> ClusterView:
    nodes = [
        Node("h100-1", "127.0.0.1", "idle", (), ("gpu",), 16, 16, 65536, 0, "h100", 4, 0),
        Node("h100-2", "127.0.0.1", "idle", (), ("gpu",), 16, 16, 65536, 0, "h100", 4, 0),
        Node("a100-1", "127.0.0.1", "idle", (), ("gpu-a100",), 16, 16, 65536, 0, "a100", 4, 0),
        Node("cpu-1", "127.0.0.1", "idle", (), ("cpu",), 8, 8, 32768),
        Node("cpu-2", "127.0.0.1", "idle", (), ("cpu",), 8, 8, 32768),
    ]
    parts = [Partition("gpu", (), 720, 60), Partition("gpu-a100", (), 480, 60),
             Partition("cpu", (), 1440, 60, default=True)]
    assocs = [Association("startup-helios", "alice"), Association("research-medai", "bob")]
    return ClusterView.build(nodes, parts, assocs, "alice",
                             [Budget("startup-helios", 500, 500 - left)])


CPU = WorkerPool("cpu", "cpu", cpus=2, memory="4G", runtime="01:00:00")
GPU = WorkerPool("gpu", "gpu", gpus=1, cpus=2, memory="8G", runtime="02:00:00")


# -- the request check ------------------------------------------------------------------------

def test_a_good_pool_passes_the_spawn_forms_check():
    checked = check_pool(GPU, "startup-helios", view(), count=2)
    r = checked.request
    assert (r.partition, r.account, r.gres, r.cpus, r.memory_mb, r.time) == (
        "gpu", "startup-helios", "gpu:h100:1", 2, 8192, "02:00:00")
    assert checked.gpu_hours(2) == 4


@pytest.mark.parametrize("pool, account, count, field, words", [
    (CPU, "startup-helios", -1, "count", "-1 is not allowed"),
    (CPU, "startup-helios", 1.5, "count", "not a whole number"),
    (CPU, "startup-helios", 9, "count", "could ever hold at once (8)"),
    (GPU, "startup-helios", 9, "count", "could ever hold at once (8)"),
    (WorkerPool("gpu", "gpu", gpus=1, gpu_type="a100"), "startup-helios", 1, "gpu_type",
     "'a100' is not a GPU type of partition gpu"),
    (GPU, "research-medai", 1, "account", "not one of your project accounts"),
    (WorkerPool("gpu", "gpu", gpus=1, runtime="13:00:00"), "startup-helios", 1, "runtime",
     "outside partition gpu's limit"),
    (WorkerPool("cpu", "cpu", gpus=0, memory="64G"), "startup-helios", 1, "memory",
     "more than a node"),
    (WorkerPool("Bad name", "cpu"), "startup-helios", 1, "name", "not a worker group name"),
    (WorkerPool("x", "nope"), "startup-helios", 1, "partition", "not a partition"),
])
def test_bad_requests_are_refused_naming_the_field(pool, account, count, field, words):
    with pytest.raises(ScalingError) as e:
        check_pool(pool, account, view(), count)
    assert e.value.field == field and words in e.value.message
    assert str(e.value).startswith(f"Invalid {field}")


def test_over_budget_refused_with_what_would_fit():
    with pytest.raises(ScalingError) as e:
        check_pool(GPU, "startup-helios", view(left=3), count=2)   # 2 x 1 GPU x 2 h = 4 h
    assert e.value.field == "count"
    assert "3.00 GPU-hours left" in e.value.message and "what would fit" in e.value.message
    # each group fits on its own, together they do not
    planned = [(check_pool(GPU, "startup-helios", view(left=5), 2), 2),
               (check_pool(WorkerPool("big", "gpu-a100", gpus=1, runtime="02:00:00"),
                           "startup-helios", view(left=5), 1), 1)]
    with pytest.raises(ScalingError, match="together cost 6.00 GPU-hours"):
        check_total(planned, "startup-helios", view(left=5))
    assert check_total(planned, "startup-helios", view(left=6)) == 6


# -- tags, ownership, the reconciler ----------------------------------------------------------

def job(job_id, comment, state=JobState.RUNNING, age_s=600):
    return Job(job_id, "dask-cpu", "alice", "startup-helios", "cpu", state, comment=comment,
               submit_time=NOW - timedelta(seconds=age_s))


def test_worker_tag_names_the_session():
    tag = worker_tag(SESSION_TAG, 42)
    assert parse_job_tag(tag) == {"hub": "hub1", "user": "alice", "server": "", "session": "42"}
    assert owning_session(job(7, tag)) == 42 and owning_session(job(8, SESSION_TAG)) is None
    assert parse_job_tag(SESSION_TAG + ":session=x") is None
    with pytest.raises(ValueError):
        worker_tag("my own comment", 42)


def test_reconciler_cancels_workers_whose_session_is_gone():
    w41, w42 = worker_tag(SESSION_TAG, 41), worker_tag(SESSION_TAG, 42)
    jobs = [job(41, SESSION_TAG),                       # a session a server owns
            job(42, SESSION_TAG, JobState.COMPLETED),  # a session that ended
            job(51, w41, age_s=5),                     # worker of the live session: kept
            job(52, w42, age_s=5),                     # worker of the ended one: cancelled
            job(53, worker_tag(job_tag("hub1", "bob", ""), 99)),  # session 99 owned by nobody
            job(54, worker_tag(job_tag("hub2", "bob", ""), 99)),  # another hub's
            job(55, w42, JobState.CANCELLED)]          # already over
    orphans = find_orphans(jobs, owned={41, 42}, hub_id="hub1", min_age_s=120, now=NOW)
    assert sorted(o.job.job_id for o in orphans) == [52, 53]
    assert {o.session for o in orphans} == {42, 99} and all(o.is_worker for o in orphans)
    assert [j.job_id for j in session_workers(jobs, SESSION_TAG, 41)] == [51]


def test_submission_env_drops_the_sessions_allocation_and_token():
    env = {"PATH": "/usr/bin", "HOME": "/home/alice", "SLURM_CONF": "/etc/slurm.conf",
           "SLURM_JOB_ID": "41", "SLURM_EXPORT_ENV": "HOME,PATH", "SLURMD_NODENAME": "cpu-1",
           "JUPYTERHUB_API_TOKEN": "secret", "JPY_API_TOKEN": "secret",
           "MASTER_ADDR": "x", "RANK": "0", "CUDA_VISIBLE_DEVICES": "0", "SRUN_CPUS_PER_TASK": "2"}
    assert submission_env(env) == {"PATH": "/usr/bin", "HOME": "/home/alice",
                                   "SLURM_CONF": "/etc/slurm.conf"}


def test_clean_environ_restores_the_session(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "secret")
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    with clean_environ():
        assert "JUPYTERHUB_API_TOKEN" not in os.environ and "SLURM_JOB_ID" not in os.environ
    assert os.environ["JUPYTERHUB_API_TOKEN"] == "secret" and os.environ["SLURM_JOB_ID"] == "41"


# -- the worker job -----------------------------------------------------------------------

def test_worker_job_script_has_tag_account_gres_and_gpu_resource():
    opts = job_options(check_pool(GPU, "startup-helios", view()), tag=worker_tag(SESSION_TAG, 41),
                       submit_env={"PATH": "/usr/bin"}, python="/opt/venv/bin/python",
                       log_directory="/tmp", death_timeout=30)
    script = WorkerJob("tls://10.0.0.5:8786", name="gpu-0", **opts).job_script()
    for line in ("#SBATCH -p gpu", "#SBATCH -A startup-helios", "#SBATCH --cpus-per-task=2",
                 "#SBATCH --mem=8192M", "#SBATCH -t 02:00:00", "#SBATCH --gres=gpu:h100:1",
                 f"#SBATCH --comment={SESSION_TAG}:session=41", "#SBATCH -J dask-gpu"):
        assert line in script.splitlines(), (line, script)
    assert "--resources GPU=1" in script and "tls://10.0.0.5:8786" in script
    assert "--death-timeout 30" in script
    cpu = job_options(check_pool(CPU, "startup-helios", view()), tag=worker_tag(SESSION_TAG, 41),
                      submit_env=None, python="python", log_directory="/tmp", death_timeout=30)
    script = WorkerJob("tcp://x:1", name="cpu-0", **cpu).job_script()
    assert "--gres" not in script and "--resources" not in script


def test_a_tag_that_could_break_the_script_is_refused():
    with pytest.raises(ValueError):
        job_options(check_pool(CPU, "startup-helios", view()), tag="workbench:hub=a b",
                    submit_env=None, python="p", log_directory="/tmp", death_timeout=1)


# -- per-pool scaling -------------------------------------------------------------------------

_ids = itertools.count(1000)
SUBMITTED: list[tuple[str, int]] = []
CANCELLED: list[int] = []


class RecordingJob(ProcessInterface):
    """A worker job that records what would be submitted and cancelled, and starts nothing."""

    config_name = "slurm"

    def __init__(self, scheduler=None, name=None, **options):
        super().__init__()
        self.name, self.options, self.job_id = name, options, None
        self.job_header, self.worker_processes = "", 1

    @classmethod
    def default_config_name(cls):
        return "slurm"

    def job_script(self):
        return ""

    async def start(self):
        self.job_id = next(_ids)
        SUBMITTED.append((self.name, self.job_id))
        await super().start()

    async def close(self):
        CANCELLED.append(self.job_id)
        await super().close()


class RecordedSession(Session):
    def cluster_view(self, allocations_file=None):
        return view(left=self.__dict__.get("_left", 500))


def session(left=500):
    s = RecordedSession("alice", 41, "cpu-1", "127.0.0.1", SESSION_TAG, "/user/alice/")
    object.__setattr__(s, "_left", left)
    return s


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    SUBMITTED.clear()
    CANCELLED.clear()
    c = PoolCluster([CPU, GPU], "startup-helios", session=session(left=10), security=None,
                    job_cls=RecordingJob)
    yield c
    c.close()


def settle(c):
    c.sync(c._correct_state)


def test_each_pool_scales_alone(cluster):
    cluster.scale(3, pool="cpu")
    cluster.scale(1, pool="gpu")
    settle(cluster)
    assert cluster.pool_sizes() == {"cpu": 3, "gpu": 1}
    assert sorted(n for n, _ in SUBMITTED) == ["cpu-0", "cpu-1", "cpu-2", "gpu-0"]
    assert cluster.worker_spec["gpu-0"]["options"]["queue"] == "gpu"
    assert cluster.worker_spec["cpu-0"]["options"]["queue"] == "cpu"
    ids = cluster.job_ids()
    cluster.scale(1, pool="cpu")  # the newest go: cpu-2, cpu-1; gpu untouched
    settle(cluster)
    assert sorted(CANCELLED) == sorted([ids["cpu-2"], ids["cpu-1"]])
    assert cluster.pool_sizes() == {"cpu": 1, "gpu": 1}
    cluster.scale({"cpu": 0, "gpu": 0})
    settle(cluster)
    assert sorted(CANCELLED) == sorted(ids.values())


def test_growth_is_checked_before_any_job(cluster):
    with pytest.raises(ScalingError, match="10.00 GPU-hours left"):
        cluster.scale(3, pool="gpu")        # 3 x 1 GPU x 2 h = 6 h ... with 10 left fits
        cluster.scale(6, pool="gpu")        # 12 h does not
    assert cluster.pool_sizes()["gpu"] == 3
    with pytest.raises(ScalingError, match="name one"):
        cluster.scale(2)
    with pytest.raises(ScalingError, match="not a worker group"):
        cluster.scale(1, pool="tpu")
    with pytest.raises(ScalingError, match="-2 is not allowed"):
        cluster.scale(-2, pool="cpu")
    settle(cluster)
    assert sorted(n for n, _ in SUBMITTED if n.startswith("gpu")) == ["gpu-0", "gpu-1", "gpu-2"]


def test_adapt_is_per_pool_and_checked_at_its_maximum(cluster):
    # an interval no test outlasts: the ticks below are the only ones, driven by the test
    a = cluster.adapt(pool="cpu", minimum=1, maximum=4, interval="1h")
    assert isinstance(a, PoolAdaptive) and cluster.adaptive("cpu") == (1, 4)
    assert cluster.adaptive("gpu") is None
    with pytest.raises(ScalingError, match="GPU-hours left"):
        cluster.adapt(pool="gpu", maximum=8)
    with pytest.raises(ScalingError, match="maximum"):
        cluster.adapt(pool="gpu", minimum=3, maximum=2)
    cluster.scale(2, pool="gpu")
    settle(cluster)
    assert a.plan == set() and cluster.plan == {"gpu-0", "gpu-1"}  # not ticked yet
    cluster.sync(a.adapt)  # one tick: no work queued, so the pool goes to its minimum
    settle(cluster)
    assert a.plan == {"cpu-0"} and cluster.plan == {"cpu-0", "gpu-0", "gpu-1"}
    assert a.log and a.log[-1][1] == {"status": "up", "n": 1}
    assert sorted(n for n, _ in SUBMITTED) == ["cpu-0", "gpu-0", "gpu-1"]
    cluster.sync(a.adapt)  # at its target: nothing changes, the gpu pool is not counted
    settle(cluster)
    assert a.plan == {"cpu-0"} and cluster.pool_sizes() == {"cpu": 1, "gpu": 2}
    cluster.scale(0, pool="cpu")  # scaling by hand stops that pool's adaptivity
    assert cluster.adaptive("cpu") is None


def test_dashboard_goes_through_the_users_server(cluster):
    port = cluster.dashboard_port
    assert port and cluster.dashboard_link == f"/user/alice/proxy/{port}/status"


def test_worker_table_says_why_a_worker_waits():
    jobs = [Job(7, "dask-gpu", "alice", "startup-helios", "gpu", JobState.PENDING,
                "Resources", gpus=1, priority=10, submit_time=NOW),
            Job(6, "other", "bob", "x", "gpu", JobState.PENDING, "Priority", priority=20,
                submit_time=NOW),
            Job(8, "dask-cpu", "alice", "startup-helios", "cpu", JobState.RUNNING,
                nodes="cpu-1")]
    rows = worker_rows(["gpu-0", "cpu-0", "cpu-1"], {"gpu-0": 7, "cpu-0": 8}, ["cpu-0"],
                       jobs, {"cpu": "cpu", "gpu": "gpu"})
    by = {r.name: r for r in rows}
    assert by["gpu-0"].state == "PENDING" and "position 2 of 2" in by["gpu-0"].why
    assert (by["cpu-0"].node, by["cpu-0"].connected) == ("cpu-1", True)
    assert (by["cpu-1"].state, by["cpu-1"].partition) == ("SUBMITTING", "cpu")


def test_a_job_newer_than_the_queue_read_is_submitted_not_ended():
    rows = worker_rows(["cpu-0", "cpu-1"], {"cpu-0": 8, "cpu-1": 9}, [], [], {"cpu": "cpu"},
                       newer={9})
    by = {r.name: r for r in rows}
    assert (by["cpu-0"].state, by["cpu-0"].why) == ("ENDED", "left the queue")
    assert by["cpu-1"].state == "SUBMITTED" and by["cpu-1"].partition == "cpu"


class WatchedJob:
    """A submitit job whose ``done`` records whether it was forced to ask sacct."""

    def __init__(self, job_id: int, done_at: int):
        self.job_id, self.done_at, self.forced = str(job_id), done_at, []

    def done(self, force_check=False):
        self.forced.append(force_check)
        return force_check or len(self.forced) >= self.done_at


def test_waiting_for_a_torch_run_forces_sacct_only_once_the_queue_says_it_ended():
    from tests.unit.test_scaling_widget import RecordedSlurm
    from workbench.scaling.torchrun import TorchRun

    slurm = RecordedSlurm()
    running = WatchedJob(2, done_at=3)                  # RUNNING in the recording
    TorchRun(running, 1, slurm).wait(poll_s=0.01)
    assert running.forced == [False, False, False]      # submitit's own schedule only
    failed = WatchedJob(1, done_at=99)                  # FAILED in the recording
    TorchRun(failed, 1, slurm).wait(poll_s=0.01)
    assert failed.forced == [True]
    assert slurm.calls == 1                             # one squeue for both runs
