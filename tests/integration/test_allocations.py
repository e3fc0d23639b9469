"""Programmes, GPU-hour grants and shares, on real Slurm accounting (the reserved GPUs:
test_reservations.py)."""

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.slurm_jobs import sbatch
from workbench.paths import FactoryHome, data_file
from workbench.slurm import queries
from workbench.slurm.parse import parse_tres

pytestmark = pytest.mark.slurm

WORKBENCH = str(Path(sys.executable).parent / "workbench")
DEMO = data_file("cluster", "allocations.yaml")


def workbench(*args, check=True):
    return subprocess.run([WORKBENCH, *args], capture_output=True, text=True, check=check)


def associations_dump(slurm):
    return slurm.run(queries.sacctmgr_list(
        "association", "Account", "ParentName", "User", "GrpTRESMins", "QOS"))


def job(slurm, job_id):
    return next((j for j in slurm.run(queries.jobs()) if j.job_id == job_id), None)


@pytest.fixture
def cancel_after(slurm):
    ids = []
    yield ids
    for i in ids:
        slurm.run(queries.cancel(i))


def test_apply_twice_changes_nothing(slurm):
    workbench("allocations", "apply")
    out = workbench("allocations", "apply").stdout
    assert "nothing to change" in out


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["programmes"]["research"]["projects"]["research-medai"]["members"].append(
        "nosuchuser"), "member 'nosuchuser' is no user"),
    (lambda d: d["programmes"]["research"]["projects"]["research-climate"].update(
        gpu_hours=-5), "gpu_hours must be a number >= 0"),
    (lambda d: d["programmes"]["industry"]["projects"].update(
        {"research-medai": {"members": ["bob"], "gpu_hours": 1}}), "is used twice"),
    (lambda d: d["programmes"]["startups"].update(
        reserved_gpus={"gpu_type": "h100", "count": 8}), "leave some for the others"),
    (lambda d: d["programmes"]["industry"].update(share="40%"),
     "the shares of a100 add up to 38544 GPU-hours (110 %)"),
    (lambda d: d["programmes"]["research"].update(share={"h100": "40%", "b200": 100}),
     "share for GPU type 'b200', which the cluster lacks"),
    (lambda d: d["programmes"]["startups"].update(reserved_gpus={"h100": 3}),
     "reserving 3 h100 for the whole period takes 26280 GPU-hours, more than its h100 share"),
    (lambda d: d["programmes"]["research"].update(reserved_gpus=[
        {"gpu_type": "h100", "count": 2}, {"gpu_type": "h100", "count": 1}]),
     "reserves h100 twice"),
    (lambda d: d["programmes"]["industry"]["projects"]["industry-autotwin"].update(
        gpu_hours=40000), "the grants of programme industry add up to 40000 GPU-hours, over its "
     "share of 31536"),
])
def test_a_malformed_file_is_refused_with_its_line_and_changes_nothing(
        mutate, message, slurm, tmp_path):
    data = yaml.safe_load(DEMO.read_text())
    data["programmes"]["research"]["projects"]["research-climate"]["gpu_hours"] = 7  # a change
    mutate(data)
    bad = tmp_path / "allocations.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    before = associations_dump(slurm)
    proc = workbench("allocations", "apply", str(bad), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert f"{bad}:" in proc.stderr and "Nothing was changed" in proc.stderr
    line = int(proc.stderr.split(f"{bad}:")[1].split(":")[0])
    assert line > 1
    assert associations_dump(slurm) == before


def test_a_key_written_twice_is_refused(tmp_path, slurm):
    bad = tmp_path / "allocations.yaml"
    bad.write_text("programmes:\n  research:\n    projects: {}\n  research:\n    projects: {}\n")
    proc = workbench("allocations", "apply", str(bad), check=False)
    assert proc.returncode == 2 and "written twice" in proc.stderr


def sacct_rows(account):
    env = {"SLURM_CONF": str(FactoryHome.from_env().slurm_conf), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(["sacct", "-a", "-nP", "-X", "-A", account, "-S", "2000-01-01", "-E",
                          "now", "-o", "JobID,AllocTRES,ElapsedRaw,State"],
                         capture_output=True, text=True, env=env, check=True).stdout
    return {int(r.split("|")[0]): r.split("|") for r in out.splitlines()}


def settled(account):
    """Accounting has the end of every job of ``account`` (slurmdbd lags the controller)."""
    return all(r[3] not in ("RUNNING", "PENDING", "REQUEUED") for r in sacct_rows(account).values())


def test_show_reports_what_sacct_accounts(slurm, wait_for):
    show = lambda: {r["project"]: r for r in json.loads(  # noqa: E731
        workbench("allocations", "show", "--json").stdout)["projects"]}
    wait_for(lambda: settled("research-climate"), "earlier jobs settled in accounting")
    before = show()
    job_id = sbatch(slurm, "bob", "-A", "research-climate", "-p", "gpu-a100",
                    "--gres=gpu:a100:2", "-t", "2", script="#!/bin/bash\nsleep 3\n")
    wait_for(lambda: (j := job(slurm, job_id)) and j.state.is_finished, f"job {job_id} ends")
    wait_for(lambda: job_id in sacct_rows("research-climate") and settled("research-climate"),
             f"job {job_id} settled in accounting")
    after = show()

    # the same figure, straight from sacct: GPUs x elapsed seconds, over the project's jobs
    rows = sacct_rows("research-climate")
    total = sum(parse_tres(r[1]).get("gres/gpu", 0) * int(r[2]) for r in rows.values()) / 3600
    assert parse_tres(rows[job_id][1])["gres/gpu"] == 2 and int(rows[job_id][2]) >= 3
    assert after["research-climate"]["used_gpu_hours"] == pytest.approx(total, abs=1e-4)
    assert after["research-climate"]["used_gpu_hours"] > before["research-climate"][
        "used_gpu_hours"]
    assert after["research-climate"]["remaining_gpu_hours"] == pytest.approx(200 - total,
                                                                             abs=1e-4)


def test_other_programmes_cannot_take_the_startups_share(slurm, wait_for, cancel_after):
    # research may hold at most 6 of the 8 h100 at once ...
    first = sbatch(slurm, "bob", "-A", "research-medai", "-p", "gpu", "--gres=gpu:h100:4",
                   "-t", "5")
    cancel_after.append(first)
    wait_for(lambda: job(slurm, first).state.is_running, "bob's first 4 h100 run")
    second = sbatch(slurm, "bob", "-A", "research-climate", "-p", "gpu", "--gres=gpu:h100:4",
                    "-t", "5")
    cancel_after.append(second)
    pending = wait_for(lambda: (j := job(slurm, second)) and j.reason == "AssocGrpBilling"
                       and j, "bob's second job held by the guard of the start-ups' GPUs")
    assert pending.state.is_pending
    # ... so a start-up finds its 2 h100 free
    mine = sbatch(slurm, "alice", "-A", "startup-helios", "-p", "gpu", "--gres=gpu:h100:2",
                  "-t", "5")
    cancel_after.append(mine)
    wait_for(lambda: job(slurm, mine).state.is_running, "alice's 2 reserved h100 run")
    assert job(slurm, second).state.is_pending


@pytest.fixture
def tiny_grant(slurm, factory_home):
    """A project `research-tiny` (bob) with 2 GPU-minutes, in the site allocations file."""
    site = factory_home.etc / "allocations.yaml"
    assert not site.exists(), "a site allocations file is in the way of this test"
    data = yaml.safe_load(DEMO.read_text())
    data["programmes"]["research"]["projects"]["research-tiny"] = {
        "members": ["bob"], "gpu_hours": round(2 / 60, 6)}
    site.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        out = workbench("allocations", "apply").stdout
        assert "added account research-tiny under research" in out
        assert "set research-tiny grant to 0.0333333 GPU-hours" in out
        yield "research-tiny"
    finally:
        site.unlink()
        for args in (("delete", "user", "where", "name=bob", "account=research-tiny"),
                     ("delete", "account", "where", "name=research-tiny")):
            slurm.run(queries.sacctmgr_modify(*args))


def test_an_exhausted_grant_is_refused_by_slurm_and_by_the_form(
        slurm, tiny_grant, wait_for, cancel_after, hub_api):
    # spend more than half of the two GPU-minutes (2 GPUs for 40 s)
    used = sbatch(slurm, "bob", "-A", tiny_grant, "-p", "gpu-a100", "--gres=gpu:a100:2",
                  "-t", "1", script="#!/bin/bash\nsleep 40\n")
    cancel_after.append(used)
    wait_for(lambda: (j := job(slurm, used)) and j.state.is_finished, "the first job ends")
    wait_for(lambda: slurm.run(queries.enforced_usage(tiny_grant)).get("gres/gpu", 0) > 0,
             "Slurm counts the GPU-minutes used", timeout=150)

    # sbatch by hand: 2 GPU-minutes more would overrun the grant; the job is held, never runs
    # (Slurm counts whole GPU-minutes used: 1 of 2 here, so a 1 GPU-minute job would still fit)
    by_hand = sbatch(slurm, "bob", "-A", tiny_grant, "-p", "gpu-a100", "--gres=gpu:a100:2",
                     "-t", "1")
    cancel_after.append(by_hand)
    held = wait_for(lambda: (j := job(slurm, by_hand)) and j.reason == "AssocGrpGRESMinutes"
                    and j, "the job held by the grant")
    assert held.state.is_pending

    # the hub refuses before submitting, saying what is left
    api = hub_api("bob")
    before = {j.job_id for j in slurm.run(queries.jobs()) if j.user == "bob"}
    r = api.post(f"{api.base}/users/bob/server", json={"user_options": {
        "partition": "gpu-a100", "account": tiny_grant, "gpus": 1, "runtime": "00:10:00"}})
    assert r.status_code == 400, r.text
    message = r.json()["message"]
    # bob's 2 GPUs x 40 s used more than a GPU-minute of the two, so at most 0.01 GPU-hours
    # are left (0 GPUs fit), or none if Slurm counted the job longer than a minute
    assert re.fullmatch(
        rf"Invalid account: your request costs 0\.17 GPU-hours \(1 GPU for 00:10:00\), but "
        rf"project {tiny_grant} has (0\.0[01] GPU-hours left; what would fit: 0 GPUs|no "
        r"GPU-hours left \(granted 0\.0333+, used \d+\.\d\d\); ask your programme for more, "
        r"or start a CPU-only session \(0 GPUs\))", message), message
    assert not {j.job_id for j in slurm.run(queries.jobs()) if j.user == "bob"} - before


def test_show_opens_with_the_machine_and_carries_the_programmes_shares(slurm, wait_for,
                                                                       cancel_after):
    mine = sbatch(slurm, "alice", "-A", "startup-helios", "-p", "gpu", "--gres=gpu:h100:1",
                  "-t", "3")
    cancel_after.append(mine)
    wait_for(lambda: job(slurm, mine).state.is_running, "alice's h100 job runs")
    rep = json.loads(workbench("allocations", "show", "--json").stdout)
    # the demo's period: the calendar year it is read in
    year = dt.date.today().year
    start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
    hours = ((end - start).days + 1) * 24
    assert rep["period"] == {"start": start.isoformat(), "end": end.isoformat(), "hours": hours}
    assert rep["machine"] == {"gpus": {"a100": 4, "h100": 8},
                              "gpu_hours": {"a100": 4.0 * hours, "h100": 8.0 * hours}}
    progs = {p["programme"]: p for p in rep["programmes"]}
    assert {n: p["share"] for n, p in progs.items()} == {
        "startups": "30 %", "research": "40 %", "industry": "30 %"}
    assert progs["research"]["share_gpu_hours"] == pytest.approx(
        {"a100": 0.4 * 4 * hours, "h100": 0.4 * 8 * hours}, abs=0.01)
    assert progs["research"]["granted_gpu_hours"] == 1200
    assert {n: p["reserved_gpus"] for n, p in progs.items()} == {
        "startups": {"h100": 2}, "research": {"h100": 2}, "industry": {}}
    assert progs["startups"]["reserved_gpus_in_use"]["h100"] >= 1
    assert {n: p["may_hold_at_once"] for n, p in progs.items()} == {
        "startups": {"h100": 4}, "research": {"h100": 6}, "industry": {"h100": 2}}
    text = workbench("allocations", "show").stdout
    assert text.startswith(f"The machine in {start}..{end} ({hours} h):")
    assert "industry: holds at most 2 h100 at once, so the GPUs reserved for startups and " \
           "research stay free" in text
