"""Queue feedback and orphan detection, on typed jobs and nodes."""

from datetime import UTC, datetime, timedelta

from spawners.feedback import ranked_queue
from workbench.reconcile import find_orphans
from workbench.slurm.models import Job, JobState, Node
from workbench.tags import job_tag, parse_job_tag
from workbench.waits import (
    estimated_start,
    queue_position,
    queue_positions,
    start_sooner,
    waiting_message,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def job(job_id, state=JobState.PENDING, partition="gpu-a100", priority=100, gpus=1,
        comment="", submitted=NOW - timedelta(minutes=10), start=None, reason="Resources"):
    return Job(job_id, "jupyter-x", "alice", "startup-helios", partition, state, reason,
               comment=comment, gpus=gpus, gpu_type="a100", cpus=1, submit_time=submitted,
               start_time=start, priority=priority)


NODES = [
    Node("a100-1", "127.0.0.1", "allocated", (), ("gpu-a100",), 16, 12, 65536, 0, "a100", 4, 4),
    Node("h100-1", "127.0.0.1", "mixed", (), ("gpu",), 16, 10, 65536, 0, "h100", 4, 1),
    Node("h100-2", "127.0.0.1", "idle", (), ("gpu",), 16, 16, 65536, 0, "h100", 4, 0),
]


def test_position_among_pending_jobs_of_the_partition():
    mine = job(3, priority=100)
    jobs = [job(1, priority=200), job(2, priority=100, submitted=NOW - timedelta(hours=1)), mine,
            job(4, partition="gpu"), job(5, state=JobState.RUNNING)]
    assert queue_position(mine, jobs) == (3, 3)


def test_every_pending_jobs_position_at_once_is_each_ones_own_position():
    jobs = [job(1, priority=200), job(2, priority=100, submitted=NOW - timedelta(hours=1)),
            job(3, priority=100), job(4, partition="gpu"), job(5, state=JobState.RUNNING),
            job(6, partition="gpu", priority=300)]
    positions = queue_positions(jobs)
    assert positions == {1: (1, 3), 2: (2, 3), 3: (3, 3), 6: (1, 2), 4: (2, 2)}
    assert all(positions[j.job_id] == queue_position(j, jobs) for j in jobs
               if j.job_id in positions)
    assert queue_position(jobs[4], jobs) == (0, 3)  # a running job has no place in the queue


def test_all_positions_at_once_are_each_jobs_own():
    jobs = [job(1, priority=200), job(2, priority=100, submitted=NOW - timedelta(hours=1)),
            job(3), job(4, partition="gpu"), job(5, state=JobState.RUNNING),
            job(6, priority=300, partition="gpu"), job(7, submitted=None)]
    positions = queue_positions(jobs)
    assert positions == {j.job_id: queue_position(j, jobs) for j in jobs
                         if j.state.is_pending}
    assert positions[3] == (3, 4) and positions[6] == (1, 2) and 5 not in positions
    mine = jobs[2]
    assert (waiting_message(mine, jobs, NODES, NOW, None, positions=positions)
            == waiting_message(mine, jobs, NODES, NOW, None))


def test_spawn_pages_rank_a_snapshot_once_and_a_new_one_again():
    first = {j.job_id: j for j in (job(1, priority=200), job(2))}
    assert ranked_queue(first) is ranked_queue(first)     # every page of this snapshot
    assert ranked_queue(first)[2] == (2, 2)
    second = {**first, 3: job(3, priority=500)}           # the next snapshot: ranked anew
    assert ranked_queue(second)[2] == (3, 3)


def test_estimate_only_in_the_future():
    assert estimated_start(job(1, start=NOW + timedelta(minutes=9)), NOW) == NOW + timedelta(
        minutes=9)
    assert estimated_start(job(1, start=NOW - timedelta(minutes=1)), NOW) is None
    assert estimated_start(job(1, start=None), NOW) is None


def test_advice_points_to_idle_gpus_elsewhere_and_fewer_gpus():
    advice = [a.text for a in start_sooner(job(1, gpus=4), NODES)]
    assert advice == ["partition gpu has 4 idle h100 GPUs on a node now"]
    many = Job(2, "j", "bob", "research-medai", "gpu", JobState.PENDING, "Resources", gpus=4,
               gpu_type="h100", cpus=1)
    nodes = [NODES[1]]  # 3 idle on h100-1 only
    assert [a.text for a in start_sooner(many, nodes)] == [
        "3 GPUs instead of 4 would start now in gpu"]


def test_waiting_message_puts_it_together():
    mine = job(7, start=NOW + timedelta(minutes=14))
    text = waiting_message(mine, [mine], NODES, NOW)
    assert text.startswith("Job 7 is waiting in partition gpu-a100: waiting for the GPUs")
    assert "Position 1 of 1 waiting there." in text
    assert "around 12:14 UTC (in 14 min)" in text
    assert "To start sooner: partition gpu has 4 idle h100 GPUs on a node now." in text


def test_tags_round_trip_and_foreign_jobs_are_not_ours():
    tag = job_tag("hub1", "alice", "")
    assert parse_job_tag(tag) == {"hub": "hub1", "user": "alice", "server": ""}
    assert parse_job_tag("") is None and parse_job_tag("my own comment") is None


def test_orphans_are_this_hubs_unowned_active_old_enough_jobs():
    mine = job_tag("hub1", "alice", "")
    jobs = [job(1, comment=mine),                                     # owned
            job(2, comment=mine),                                     # orphan
            job(3, comment=job_tag("hub2", "alice", "")),             # another hub's
            job(4, comment=""),                                       # not a workbench job
            job(5, comment=mine, state=JobState.COMPLETED),           # already over
            job(6, comment=mine, submitted=NOW - timedelta(seconds=30))]  # too young
    orphans = find_orphans(jobs, owned={1}, hub_id="hub1", min_age_s=120, now=NOW)
    assert [o.job.job_id for o in orphans] == [2]
    assert (orphans[0].user, orphans[0].server) == ("alice", "")


class RecordingHub:
    """The hub API as the route sync sees it: the requests it was sent."""

    def __init__(self):
        self.sent = []

    def request(self, method, path, **kwargs):
        self.sent.append((method, path))

    def get(self, path):
        self.sent.append(("GET", path))
        return {"/user/alice/": {}}


def test_route_sync_asks_the_hub_only_while_the_proxy_answers(caplog):
    import logging
    import socket

    from workbench.reconcile import RouteSync

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    hub = RecordingHub()
    sync = RouteSync(hub, 15, f"http://127.0.0.1:{port}")
    assert sync() and hub.sent == [("POST", "proxy"), ("GET", "proxy")]

    listener.close()  # the proxy died: nothing is sent, and the log says so once
    hub.sent.clear()
    with caplog.at_level(logging.INFO, logger="workbench.reconcile"):
        assert not sync() and not sync() and not sync()
    assert hub.sent == []
    waits = [r.message for r in caplog.records if "does not answer" in r.message]
    assert waits == [f"the proxy does not answer at http://127.0.0.1:{port}: route sync "
                     "waits for it (checked every 15 s)"]

    back = socket.socket()  # back on the same port: the routes go back at once, said once
    back.bind(("127.0.0.1", port))
    back.listen()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="workbench.reconcile"):
        assert sync() and sync()
    back.close()
    assert hub.sent == [("POST", "proxy"), ("GET", "proxy")] * 2
    assert [r.message for r in caplog.records if "answers again" in r.message] == [
        f"the proxy answers again at http://127.0.0.1:{port}: routes put back"]


def test_route_sync_without_a_proxy_address_always_asks_the_hub():
    from workbench.reconcile import RouteSync

    hub = RecordingHub()
    assert RouteSync(hub, 15)() and hub.sent == [("POST", "proxy"), ("GET", "proxy")]
