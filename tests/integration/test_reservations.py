"""Reserved h100 for start-ups and for public research, each guaranteed, on the real cluster.

The demo (cluster/allocations.yaml) reserves 2 of the 8 h100 for start-ups and 2 for research;
the guards are Slurm accounts with ``GrpTRES=billing=N`` (workbench.allocations.guards). Every
job here is submitted by hand with ``sbatch`` as a demo user (alice: start-ups, bob: research,
ida: industry), asking for GPUs in each way Slurm takes (typed, untyped, ``--gpus``), and is
cancelled at the end. Other engineers' jobs may run beside them: counts are taken from the
cluster as it is, never assumed.
"""

import json
import time

import pytest

from tests import slurm_jobs
from workbench.allocations import load
from workbench.slurm import queries
from workbench.waits import waiting_message

pytestmark = pytest.mark.slurm

#: the ways to ask for one h100 in partition gpu; untyped requests must count too
ONE_GPU = (("--gres=gpu:h100:1",), ("--gres=gpu:1",), ("--gpus=1",))
ACCOUNT = {"alice": "startup-helios", "bob": "research-medai", "ida": "industry-autotwin"}
PROGRAMME = {"alice": "startups", "bob": "research", "ida": "industry"}


def sbatch(slurm, user, *args, seconds=300):
    return slurm_jobs.sbatch(slurm, user, "-A", ACCOUNT[user], "-p", "gpu", "-t", "3", *args,
                             script=f"#!/bin/bash\nsleep {seconds}\n")


def jobs_by_id(slurm):
    return {j.job_id: j for j in slurm.run(queries.jobs())}


def idle_h100(slurm) -> dict[str, int]:
    return {n.name: n.gpus_idle for n in slurm.run(queries.nodes()) if n.gpu_type == "h100"}


def running_h100(slurm, programme: str) -> int:
    allocs = load(check_users=False)
    return sum(j.gpus for j in slurm.run(queries.jobs()) if j.state.is_running
               and j.partition == "gpu" and (p := allocs.programme_of(j.account))
               and p.name == programme)


@pytest.fixture
def cancel_after(slurm, wait_for):
    """Job ids to cancel after the test; it ends when they have left their GPUs."""
    ids = []
    yield ids
    for i in ids:
        slurm.run(queries.cancel(i))
    wait_for(lambda: not any(j.state.is_active for i, j in jobs_by_id(slurm).items()
                             if i in ids), "the test's jobs have ended", timeout=60)


def fill(slurm, user, cancel_after, wait_for, limit=8):
    """Submit one-GPU jobs as ``user`` until Slurm holds one back for the programme's limit;
    returns (running ids, the held job)."""
    running = []
    for n in range(limit + 1):
        job_id = sbatch(slurm, user, *ONE_GPU[n % len(ONE_GPU)])
        cancel_after.append(job_id)
        state = wait_for(lambda i=job_id: (j := jobs_by_id(slurm).get(i)) and (
            j.state.is_running or j.reason not in ("", "None", "Priority")) and j,
            f"{user}'s job {job_id} runs or is held")
        if state.reason == "AssocGrpBilling":
            return running, state
        assert state.state.is_running, f"{user}'s job {job_id} waits: {state.reason}"
        running.append(job_id)
    raise AssertionError(f"{user} took more than {limit} h100: no limit held them")


def claim(slurm, user, gpus, cancel_after, wait_for):
    """``user`` asks for ``gpus`` h100 as one job if one node has them free, else one-GPU jobs;
    returns the seconds until all run."""
    idle = idle_h100(slurm)
    shapes = ([f"--gres=gpu:h100:{gpus}"],) if max(idle.values()) >= gpus else \
        [["--gres=gpu:1"]] * gpus
    start = time.monotonic()
    ids = [sbatch(slurm, user, *shape) for shape in shapes]
    cancel_after.extend(ids)
    wait_for(lambda: all((j := jobs_by_id(slurm).get(i)) and j.state.is_running for i in ids),
             f"{user}'s reserved h100 run", timeout=30)
    return time.monotonic() - start


def test_startups_get_their_reserved_gpus_while_research_and_industry_fill_the_rest(
        slurm, wait_for, cancel_after):
    own = running_h100(slurm, "startups")
    _, held_ida = fill(slurm, "ida", cancel_after, wait_for)
    _, held_bob = fill(slurm, "bob", cancel_after, wait_for)
    assert held_ida.state.is_pending and held_bob.state.is_pending
    # research and industry hold all they may: at least 2 h100 minus start-ups' own stay idle
    before = idle_h100(slurm)
    assert sum(before.values()) >= 2 - own, before
    seconds = claim(slurm, "alice", 2 - own, cancel_after, wait_for) if own < 2 else 0.0
    print(f"alice's reserved h100 ran {seconds:.2f} s after submission (idle before: "
          f"{before}; ida held: {held_ida.reason}, bob held: {held_bob.reason})")
    assert seconds < 10
    # the held jobs say why, in plain words, and what is free
    snapshot = slurm.run(queries.jobs())
    nodes = slurm.run(queries.nodes())
    text = waiting_message(held_bob, snapshot, nodes)
    assert "stay free for them" in text and "reserved for startups" in text, text
    print(text)


def test_research_gets_its_reserved_gpus_while_startups_and_industry_fill_the_rest(
        slurm, wait_for, cancel_after):
    own = running_h100(slurm, "research")
    fill(slurm, "alice", cancel_after, wait_for)
    fill(slurm, "ida", cancel_after, wait_for)
    before = idle_h100(slurm)
    assert sum(before.values()) >= 2 - own, before
    seconds = claim(slurm, "bob", 2 - own, cancel_after, wait_for) if own < 2 else 0.0
    print(f"bob's reserved h100 ran {seconds:.2f} s after submission (idle before: {before})")
    assert seconds < 10


def test_idle_reservations_are_not_lent(slurm, wait_for, cancel_after):
    """Industry alone may hold 2 h100 (8 - 2 - 2 reserved - start-ups' 2 of reach), however
    many are idle: nothing reserved is lent, so nothing is ever preempted."""
    _, held = fill(slurm, "ida", cancel_after, wait_for)
    assert running_h100(slurm, "industry") == 2
    assert sum(idle_h100(slurm).values()) >= 4, idle_h100(slurm)  # idle, yet held back
    text = waiting_message(held, slurm.run(queries.jobs()), slurm.run(queries.nodes()))
    assert ("your programme (industry) may hold at most 2 h100 GPUs at once and hold 2 now, "
            "so that the 4 reserved for startups and research stay free for them") in text, text
    print(text)


def test_the_reservation_is_a_count_not_a_place(slurm, wait_for, cancel_after):
    """Research fills its 6 as 3 + 3: start-ups' 2 idle h100 are one per node, so a job asking
    for 2 on one node waits (and is told that 1 would start), while two 1-GPU jobs run."""
    if running_h100(slurm, "startups"):
        pytest.fail("start-ups' jobs of another test hold h100; their reservation is in use")
    for _ in range(2):
        job_id = sbatch(slurm, "bob", "--gres=gpu:h100:3")
        cancel_after.append(job_id)
        wait_for(lambda i=job_id: (j := jobs_by_id(slurm).get(i)) and j.state.is_running,
                 f"bob's 3 h100 ({job_id}) run")
    idle = idle_h100(slurm)
    assert sorted(idle.values()) == [1, 1], idle  # what guard-startups leaves, one per node
    both = sbatch(slurm, "alice", "--gres=gpu:h100:2")
    cancel_after.append(both)
    held = wait_for(lambda: (j := jobs_by_id(slurm).get(both)) and j.reason == "Resources"
                    and j, "alice's 2-GPU job waits for a node with 2 free")
    text = waiting_message(held, slurm.run(queries.jobs()), slurm.run(queries.nodes()))
    assert "1 GPU instead of 2 would start now in gpu" in text, text
    slurm.run(queries.cancel(both))
    seconds = claim(slurm, "alice", 2, cancel_after, wait_for)
    print(f"alice's two 1-GPU jobs ran {seconds:.2f} s after submission; {text}")


def spawn_page_says(api, words, seconds=45):
    """The spawn page's event stream, read until a message holds ``words``."""
    deadline = time.monotonic() + seconds
    with api.get(f"{api.base}/users/{api.user}/server/progress", stream=True,
                 timeout=seconds + 10) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                message = json.loads(line[5:]).get("message", "")
                if words in message:
                    return message
            if time.monotonic() > deadline:
                return None
    return None


@pytest.mark.hub
def test_the_spawn_page_says_when_a_reservation_holds_the_gpus(slurm, hub_api):
    """igor (industry) asks the hub for 3 h100: industry may hold 2, the job waits, and the
    spawn page says why in plain words and what is free. (igor, not ida: the scaling tests
    run ida's sessions.)"""
    igor = hub_api("igor")
    r = igor.post(f"{igor.base}/users/igor/server", json={"user_options": {
        "partition": "gpu", "account": "industry-autotwin", "gpus": 3, "gpu_type": "h100",
        "cpus": 1, "memory": "2G", "runtime": "00:10:00"}})
    assert r.status_code in (201, 202), r.text
    message = spawn_page_says(igor, "stay free for them")
    assert message, "the spawn page never said the reservation holds the job"
    assert "your programme (industry) may hold at most 2 h100 GPUs at once" in message
    assert "reserved for startups and research" in message
    assert "ask for at most 2" in message and "2 GPUs instead of 3 would start now" in message
    print(message)
