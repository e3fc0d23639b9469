"""The spawner's pieces without a hub: form, job script, trait help, hub config, audit."""

import asyncio
import re
import time
from types import SimpleNamespace

from traitlets.config import Config

from spawners.form import options_from_form, render_form
from spawners.jobscript import render_job_script
from spawners.slurm_gpu import SlurmGPUSpawner
from workbench import hubconfig
from workbench.audit import AuditLog
from workbench.demo.people import People, Person
from workbench.paths import FactoryHome
from workbench.resources import defaults, validate_request
from workbench.slurm import Job, JobState, SlurmUnavailable
from workbench.waits import describe_pending

from .test_resources import GOOD, view


def test_form_offers_only_the_users_accounts_and_the_live_partitions():
    v = view(accounts=("research-medai", "research-climate"))
    html = render_form(v, defaults(v))
    assert re.findall(r'<option value="([^"]+)"', html.split('id="wb-account"')[1].split(
        "</select>")[0]) == ["research-climate", "research-medai"]
    for name in ("gpu", "gpu-a100", "cpu"):
        assert f'<option value="{name}"' in html
    assert "12:00:00" in html  # gpu's MaxTime in the partitions table


def test_form_escapes_what_it_shows():
    v = view()
    html = render_form(v, {**defaults(v), "memory": '"><script>alert(1)</script>'})
    assert "<script>alert(1)" not in html
    # the value is shown, escaped, inside its own field's value attribute
    assert ('id="wb-memory" value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"'
            in html), html


def test_form_data_becomes_contract_options():
    opts = options_from_form({"partition": ["gpu"], "gpus": ["2"], "cpus": [" 4 "],
                              "memory": ["16G"], "runtime": ["01:00:00"], "gpu_type": ["h100"],
                              "account": ["startup-helios"]})
    assert opts == {"partition": "gpu", "gpus": 2, "cpus": 4, "memory": "16G",
                    "runtime": "01:00:00", "gpu_type": "h100", "account": "startup-helios"}
    assert options_from_form({"gpus": ["two"]}) == {"gpus": "two"}  # refused by validation


def test_job_script_has_only_validated_values():
    req = validate_request(GOOD, view())
    script = render_job_script(
        req, user="alice", server="", tag="workbench:hub=h:user=alice:server=",
        homedir="/home/alice", output="/home/alice/.jupyterhub-slurm-%j.log",
        env_names={"JUPYTERHUB_API_TOKEN": "secret-value", "PATH": "/x"}, env_path="/opt/v/bin",
        prologue="", argv=["/opt/v/bin/batchspawner-singleuser", "/opt/v/bin/jupyterhub-singleuser",
                           "--debug"])
    assert script.startswith("#!/bin/bash\n#SBATCH --job-name=jupyter-alice\n")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=startup-helios",
                 "#SBATCH --gres=gpu:h100:2", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32768M",
                 "#SBATCH --time=02:00:00", "#SBATCH --export=JUPYTERHUB_API_TOKEN,PATH",
                 "#SBATCH --no-requeue"):  # a session lost with its node is over
        assert line + "\n" in script
    assert "secret-value" not in script  # names are exported, values never written
    sbatch = [ln for ln in script.splitlines() if ln.startswith("#SBATCH")]
    assert len(sbatch) == 14
    # GPUs held: their use is sampled where nvidia-smi exists, into the job's own record
    assert "if command -v nvidia-smi >/dev/null; then\n    python -m workbench.efficiency " \
        '"/home/alice/.jupyterhub-slurm-${SLURM_JOB_ID}.gpu.jsonl" 30 &' in script
    cpu_only = render_job_script(
        validate_request({**GOOD, "partition": "cpu", "gpus": 0, "gpu_type": ""}, view()),
        user="alice", server="", tag="t", homedir="/home/alice", output="/o", env_names={},
        env_path="/opt/v/bin", prologue="", argv=["/opt/v/bin/jupyterhub-singleuser"])
    assert "nvidia-smi" not in cpu_only


def test_every_spawner_option_has_help():
    # the spawner's own options and those of each of its mixins (spawners/*.py)
    ours = [cls for cls in SlurmGPUSpawner.__mro__ if cls.__module__.startswith("spawners.")]
    assert len(ours) >= 6  # the spawner and its options, feedback, state, readiness, job mixins
    own = {name: t for cls in ours for name, t in cls.class_own_traits(config=True).items()}
    for name in ("slurm_conf", "default_partition", "unknown_grace", "env_bin"):
        assert name in own
    missing = [name for name, t in own.items() if not (t.help or "").strip()]
    assert missing == []
    # configured under the spawner's name, wherever the trait is declared
    c = Config()
    c.SlurmGPUSpawner.unknown_grace = 42.0
    c.SlurmGPUSpawner.slurm_timeout = 7.0
    spawner = SlurmGPUSpawner(config=c)
    assert (spawner.unknown_grace, spawner.slurm_timeout) == (42.0, 7.0)


class SilentSlurm:
    """The jobs snapshot of a spawner whose Slurm controller stops answering (``down``)."""

    def __init__(self, job: Job):
        self.job, self.down = job, False

    async def jobs(self, max_age=None):
        if self.down:
            raise SlurmUnavailable(["squeue"], 1, "", "slurm_load_jobs error: Unable to "
                                   "contact slurm controller (connect failure)")
        return {self.job.job_id: self.job}


def test_a_session_outlives_a_silence_shorter_than_unknown_grace_and_not_a_longer_one(
        monkeypatch):
    # the poll's own clock (time.monotonic), a grace short enough to wait out for real
    grace = 1.0
    c = Config()
    c.SlurmGPUSpawner.unknown_grace = grace
    c.SlurmGPUSpawner.poll_snapshot_age = 0.0
    spawner = SlurmGPUSpawner(config=c, user=SimpleNamespace(name="alice"))
    slurm = SilentSlurm(Job(41, "jupyter-alice", "alice", "startup-helios", "gpu",
                            JobState.RUNNING, nodes="h100-1"))
    monkeypatch.setattr(SlurmGPUSpawner, "jobs", property(lambda self: slurm))
    spawner.job_id, spawner.port = "41", 1234

    async def polls():
        assert await spawner.poll() is None          # Slurm answers: the job runs
        slurm.down = True
        assert await spawner.poll() is None          # the silence starts
        await asyncio.sleep(grace / 2)
        assert await spawner.poll() is None          # silent for half the grace: kept
        slurm.down = False
        assert await spawner.poll() is None          # answering again: the silence is over
        slurm.down = True
        started = time.monotonic()
        assert await spawner.poll() is None          # a new silence counts from here ...
        await asyncio.sleep(grace / 2)
        assert await spawner.poll() is None          # ... (a grace after the first began)
        assert spawner.job_id == "41" and spawner.last_end is None
        await asyncio.sleep(started + grace - time.monotonic() + 0.05)
        assert await spawner.poll() == 1             # silent past the grace: ended
        return time.monotonic() - started

    silent_for = asyncio.run(polls())
    assert grace <= silent_for < grace + 0.5
    assert spawner.last_end["job_id"] == 41 and spawner.last_end["state"] == "UNKNOWN"
    assert spawner.last_end["reason"] == "Slurm did not answer for 1 s"
    assert spawner.job_id == "" and spawner.port == 0   # forgotten: the hub shows it stopped


def test_pending_reasons_in_plain_words():
    assert "ahead of yours" in describe_pending("Priority")
    assert "GPU-hour" in describe_pending("AssocGrpGRESMinutes")
    assert describe_pending("QOSMaxWallDurationPerJobLimit").startswith("a project or QOS")


def test_hub_config_for_the_local_factory(tmp_path):
    c = Config()
    site = hubconfig.Site(home=FactoryHome(tmp_path), slurm_conf="/site/slurm.conf",
                          people=People((Person("alice"), Person("sam", hub_groups=("support",)),
                                         Person("admin", hub_admin=True))))
    hubconfig.configure(c, site)
    assert c.JupyterHub.spawner_class == "slurm-gpu"
    assert c.SlurmGPUSpawner.slurm_conf == "/site/slurm.conf"
    assert c.JupyterHub.cleanup_servers is False
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.Authenticator.allowed_users == {"alice", "sam", "admin"}
    assert c.Authenticator.admin_users == {"admin"}
    assert c.JupyterHub.load_groups == {"support": {"users": ["sam"]}}
    assert {r["name"] for r in c.JupyterHub.load_roles} >= {
        "support", "managers", "workbench-reconciler", "idle-culler"}
    assert {s["name"] for s in c.JupyterHub.services} >= {"workbench-reconciler", "idle-culler"}
    assert all(s["api_token"] and "command" not in s for s in c.JupyterHub.services)
    assert c.JupyterHub.db_url == f"sqlite:///{tmp_path}/hub/jupyterhub.sqlite"
    token = (tmp_path / "secrets" / "proxy_token")
    assert token.stat().st_mode & 0o077 == 0  # root-only


def test_audit_log_round_trip(tmp_path):
    log = AuditLog(tmp_path / "a.sqlite")
    log.record("alice", "session.submit", "alice/", job_id=7, partition="gpu")
    log.record("bob", "session.refused", "bob/", field="gpus")
    assert [r.action for r in log.records()] == ["session.submit", "session.refused"]
    assert log.records(actor="alice")[0].details == {"job_id": 7, "partition": "gpu"}


def test_code_passes_the_projects_lint():
    """ruff with pyproject's rules (no bare except, sorted imports, line length)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([ruff, "check", str(root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_form_shows_the_money_of_each_project():
    from workbench.allocations import ProjectBudget
    v = view()
    b = ProjectBudget("startup-helios", "startups", ("alice",), 500, 12.5, None, None, True)
    v = type(v)(v.partitions, v.accounts, {"startup-helios": b})
    html = render_form(v, defaults(v))
    table = html.split('id="wb-budgets"')[1].split("</table>")[0]
    assert "startup-helios" in table and "500" in table and "12.50" in table
    assert "487.50" in table
    assert '"left": 487.5' in html  # for the live cost line
