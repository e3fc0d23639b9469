"""The allocations file: checks with line numbers, shares, the reservations' guard limits,
grants in and out of their period, budgets, and the words for a job held by a reservation."""

import datetime as dt
import itertools

import pytest

from workbench.allocations import (
    AllocationError,
    Period,
    budgets_from_usage,
    load,
    machine_report,
    plan_guards,
)
from workbench.allocations.show import format_report
from workbench.allocations.slurmsync import billed_types
from workbench.paths import data_file
from workbench.resources import InvalidRequest, validate_request
from workbench.slurm.models import GpuUse, Job, JobState, Node
from workbench.slurm.parse import parse_billing_weights
from workbench.waits import waiting_message

from .test_resources import GOOD, view

NODES = [Node(f"h100-{i}", "127.0.0.1", "idle", (), ("gpu",), 16, 16, 65536, 0, "h100", 4)
         for i in (1, 2)] + [
    Node("a100-1", "127.0.0.1", "idle", (), ("gpu-a100",), 16, 16, 65536, 0, "a100", 4),
    Node("cpu-1", "127.0.0.1", "idle", (), ("cpu",), 8, 8, 32768)]
DEMO = data_file("cluster", "allocations.yaml")
#: the day these tests read the demo's file on (its period is the year it is read in)
TODAY = dt.date(2026, 11, 26)
HEAD = "period: {start: 2026-01-01, end: 2026-12-31}\nprogrammes:\n"


def write(tmp_path, text):
    path = tmp_path / "allocations.yaml"
    path.write_text(text)
    return path


def demo():
    return load(DEMO, check_users=False, nodes=NODES, today=TODAY)


def test_the_demo_file_loads_with_shares_for_all_three_programmes():
    allocs = demo()
    assert allocs.projects_of("bob") == ["research-medai", "research-climate"]
    assert allocs.projects_of("ida") == ["industry-autotwin"]
    assert {p.name: p.reserved for p in allocs.programmes} == {
        "startups": {"h100": 2}, "research": {"h100": 2}, "industry": {}}
    assert {p.name: p.share.percent for p in allocs.programmes} == {
        "startups": 30, "research": 40, "industry": 30}
    assert allocs.period.hours == 365 * 24


@pytest.mark.parametrize("today, start, end, hours", [
    (dt.date(2026, 11, 26), dt.date(2026, 1, 1), dt.date(2026, 12, 31), 8760),
    (dt.date(2027, 11, 26), dt.date(2027, 1, 1), dt.date(2027, 12, 31), 8760),  # a year on
    (dt.date(2027, 1, 1), dt.date(2027, 1, 1), dt.date(2027, 12, 31), 8760),
    (dt.date(2028, 12, 31), dt.date(2028, 1, 1), dt.date(2028, 12, 31), 8784),  # leap year
])
def test_the_demos_period_is_the_year_it_is_read_in(today, start, end, hours):
    assert (Period.current_year(today).start, Period.current_year(today).end) == (start, end)
    allocs = load(DEMO, check_users=False, nodes=NODES, today=today)
    assert (allocs.period.start, allocs.period.end, allocs.period.hours) == (start, end, hours)
    rep = machine_report(allocs, NODES, [], [], today).as_dict()
    assert rep["period"] == {"start": start.isoformat(), "end": end.isoformat(),
                             "hours": hours}
    assert rep["machine"]["gpu_hours"] == {"a100": 4.0 * hours, "h100": 8.0 * hours}


def test_the_demos_period_read_now_is_this_years():
    year = dt.date.today().year
    assert load(DEMO, check_users=False).period == Period(dt.date(year, 1, 1),
                                                          dt.date(year, 12, 31))


@pytest.mark.parametrize("text,line,message", [
    ("programmes:\n  research:\n    projects:\n      p1:\n        gpu_hours: -1\n",
     5, "gpu_hours must be a number >= 0"),
    ("programmes:\n  research:\n    projects:\n      p1: {}\n  industry:\n    projects:\n"
     "      p1: {}\n", 7, "is used twice"),
    ("programmes:\n  Research:\n    projects: {}\n", 2, "must be lower-case"),
    ("programmes:\n  guard-x:\n    projects: {}\n", 2, "kept for the reservations"),
    ("programmes:\n  research:\n    projects:\n      p1:\n        budget: 3\n",
     5, "unknown key 'budget'"),
    ("programmes:\n  research:\n    projects:\n      p1:\n        valid_from: 2026-02-01\n"
     "        valid_until: 2026-01-01\n", 6, "before valid_from"),
    ("programmes:\n  startups:\n    reserved_gpus: {gpu_type: h100, count: 8}\n",
     3, "leave some for the others"),
    ("programmes:\n  research:\n    projects:\n      p1:\n        members: [nosuchuser9]\n",
     5, "no user of this machine"),
    # shares over 100 %
    (HEAD + "  startups:\n    share: 60%\n  research:\n    share: 50%\n", 6,
     "the shares of a100 add up to 38544 GPU-hours (110 %), more than the machine's 35040"),
    (HEAD + "  startups:\n    share: 130%\n", 4, "must be a percentage from 0% to 100%"),
    (HEAD + "  startups:\n    share: {h100: 40%}\n  research:\n    share:\n"
     "      h100: 50000\n", 6, "the shares of h100 add up to 78032"),
    # a share for a GPU type the cluster lacks
    (HEAD + "  startups:\n    share: {b200: 10%}\n", 4,
     "share for GPU type 'b200', which the cluster lacks (it has a100, h100)"),
    (HEAD + "  startups:\n    share: 30\n", 4, "share must be a percentage of the machine"),
    ("programmes:\n  startups:\n    share: 30%\n", 3, "a share needs the allocation period"),
    # a reservation larger than its share allows (3 x 8760 h > 30 % of 70080)
    (HEAD + "  startups:\n    share: 30%\n    reserved_gpus: {h100: 3}\n", 5,
     "reserving 3 h100 for the whole period takes 26280 GPU-hours, more than its h100 share "
     "of 21024 (30 %); at most 2 fit"),
    (HEAD + "  startups:\n    share: 30%\n    reserved_gpus: {h100: 2}\n  research:\n"
     "    reserved_gpus: {h100: 1}\n", 7, "reserves GPUs but has no share"),
    # a programme reserving in two conflicting ways
    (HEAD + "  startups:\n    reserved_gpus: {gpu_type: h100, count: 2, h100: 3}\n", 4,
     "mixes two ways of reserving"),
    (HEAD + "  startups:\n    reserved_gpus:\n      - {gpu_type: h100, count: 2}\n"
     "      - {gpu_type: h100, count: 1}\n", 6, "reserves h100 twice (2 and 1)"),
    (HEAD + "  startups:\n    reserved_gpus: {h100: 1, a100: 1}\n", 4,
     "all reservations must be of one GPU type"),
    (HEAD + "  startups:\n    reserved_gpus: {x100: 1}\n", 4, "which the cluster lacks"),
    (HEAD + "  a:\n    reserved_gpus: {h100: 1}\n  b:\n    reserved_gpus: {h100: 1}\n"
     "  c:\n    reserved_gpus: {h100: 1}\n", 8, "at most 2 programmes may reserve GPUs"),
    # grants over their programme's share
    (HEAD + "  startups:\n    share: {a100: 100}\n    projects:\n      p1: {gpu_hours: 60}\n"
     "      p2: {gpu_hours: 50}\n", 7, "the grants of programme startups add up to 110"),
    ("period: {start: 2026-02-01, end: 2026-01-01}\nprogrammes: {}\n", 1,
     "the period ends before it starts"),
])
def test_errors_name_the_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(AllocationError) as e:
        load(path, nodes=NODES)
    assert str(e.value).startswith(f"{path}:{line}: "), str(e.value)
    assert message in str(e.value)


def test_a_grant_outside_the_period_does_not_count_against_the_share(tmp_path):
    path = write(tmp_path, HEAD + "  startups:\n    share: {a100: 100}\n    projects:\n"
                 "      p1: {gpu_hours: 60}\n"
                 "      p2: {gpu_hours: 90, valid_from: 2027-01-01}\n")
    assert load(path, nodes=NODES).project("p2").gpu_hours == 90


def _guaranteed(limits_ok, total, reserved):
    """Every use the limits allow keeps each reservation free for its programme."""
    names = list(reserved)
    for use in itertools.product(range(total + 1), repeat=3):
        if sum(use) <= total and limits_ok(*use):
            held = [max(u, reserved.get(n, 0)) for u, n in zip(use, names, strict=True)]
            assert sum(held) <= total, use


def test_two_reservations_are_each_guaranteed_by_the_tree():
    g = plan_guards(demo(), {"h100": 8, "a100": 4})
    assert g.gpu_type == "h100"
    assert g.parent == {"startups": "root", "research": "guard-startups",
                        "industry": "unreserved"}
    assert [(p.name, p.parent, p.limit) for p in g.pools] == [
        ("guard-startups", "root", 6), ("unreserved", "guard-startups", 2)]
    assert g.cap == {"startups": 4}
    assert g.may_hold == {"startups": 4, "research": 6, "industry": 2}

    def ok(s, r, i):  # Slurm's checks along each job's account chain
        return s <= 4 and r + i <= 6 and i <= 2
    _guaranteed(ok, 8, {"startups": 2, "research": 2, "industry": 0})
    # and the machine can still be filled: start-ups 4 + research 4, or 4 + 2 + 2
    assert ok(4, 4, 0) and ok(4, 2, 2) and ok(0, 6, 0)
    assert not ok(5, 0, 0) and not ok(0, 5, 2) and not ok(0, 0, 3)


def test_one_reservation_is_exact_and_lends_nothing(tmp_path):
    path = write(tmp_path, "programmes:\n  startups:\n    reserved_gpus: {h100: 2}\n"
                 "  research: {}\n  industry: {}\n")
    g = plan_guards(load(path, nodes=NODES), {"h100": 8})
    assert [(p.name, p.limit) for p in g.pools] == [("guard-startups", 6)]
    assert g.may_hold == {"startups": 8, "research": 6, "industry": 6}
    assert plan_guards(load(write(tmp_path, "programmes:\n  a: {}\n"), nodes=NODES),
                       {"h100": 8}).pools == ()


def test_billing_must_count_the_reserved_type_only():
    text = {"gpu": "GRES/gpu=1.0", "gpu-a100": "GRES/gpu=0", "cpu": "GRES/gpu=0"}
    weights = {p: parse_billing_weights(w) for p, w in text.items()}
    assert billed_types(NODES, weights) == {"h100"}
    assert billed_types(NODES, {**weights, "cpu": {}}) == {"h100", "CPUs"}
    assert billed_types(NODES, {**weights, "gpu-a100": {"gres/gpu": 1.0}}) == {"h100", "a100"}
    assert parse_billing_weights("CPU=0.5G,GRES/gpu=2,Mem=x") == {"cpu": 0.5, "gres/gpu": 2.0}


def test_grant_outside_its_period_is_zero():
    allocs = load(DEMO, check_users=False, today=TODAY)
    helios = allocs.project("startup-helios")
    assert helios.granted_minutes(dt.date(2026, 6, 1)) == 500 * 60
    assert helios.granted_minutes(dt.date(2028, 1, 1)) == 0


def test_budgets_count_gpu_seconds_inside_the_period():
    allocs = load(DEMO, check_users=False, today=TODAY)
    t = dt.datetime(2026, 6, 1, 12)
    usage = [GpuUse(1, "startup-helios", "alice", 2, 3600, t),          # 2 GPU-h
             GpuUse(2, "startup-helios", "alice", 4, 1800, dt.datetime(2025, 6, 1)),  # before
             GpuUse(3, "research-medai", "bob", 1, 7200, t)]            # 2 GPU-h
    b = {x.project: x for x in budgets_from_usage(allocs, usage, dt.date(2026, 6, 2))}
    assert b["startup-helios"].used_hours == pytest.approx(2.0)
    assert b["startup-helios"].remaining_hours == pytest.approx(498.0)
    assert b["research-medai"].used_hours == pytest.approx(2.0)
    expired = budgets_from_usage(allocs, usage, dt.date(2028, 1, 1))
    assert next(x for x in expired if x.project == "startup-helios").remaining_hours == 0


def job(job_id, account, state=JobState.RUNNING, gpus=1, gpu_type="h100", reason="",
        partition="gpu"):
    return Job(job_id, "j", "u", account, partition, state, reason, gpus=gpus,
               gpu_type=gpu_type, cpus=1)


def test_the_report_opens_with_the_machine_and_each_programmes_share():
    allocs = demo()
    usage = [GpuUse(1, "research-medai", "bob", 2, 3600, dt.datetime(2026, 3, 1)),
             GpuUse(2, "research-climate", "bob", 1, 3600, dt.datetime(2025, 3, 1))]  # before
    jobs = [job(1, "startup-helios", gpus=1), job(2, "startup-helios", gpus=2),
            job(3, "industry-autotwin", gpus=1, gpu_type="a100", partition="gpu-a100"),
            job(4, "research-medai", state=JobState.PENDING, gpus=4)]
    rep = machine_report(allocs, NODES, jobs, usage, dt.date(2026, 11, 26)).as_dict()
    assert rep["period"] == {"start": "2026-01-01", "end": "2026-12-31", "hours": 8760}
    assert rep["machine"] == {"gpus": {"a100": 4, "h100": 8},
                              "gpu_hours": {"a100": 35040.0, "h100": 70080.0}}
    progs = {p["programme"]: p for p in rep["programmes"]}
    assert progs["startups"]["share"] == "30 %"
    assert progs["startups"]["share_gpu_hours"] == {"a100": 10512.0, "h100": 21024.0}
    assert progs["research"]["granted_gpu_hours"] == 1200
    assert progs["research"]["granted_over_share"] == pytest.approx(1200 / 42048, abs=1e-4)
    assert progs["research"]["used_gpu_hours"] == pytest.approx(2.0)
    assert progs["startups"]["reserved_gpus"] == {"h100": 2}
    assert progs["startups"]["reserved_gpus_in_use"] == {"h100": 2}   # 3 running, 2 reserved
    assert progs["startups"]["gpus_in_use"] == {"h100": 3}
    assert progs["research"]["reserved_gpus_in_use"] == {"h100": 0}   # pending only
    assert progs["industry"]["reserved_gpus"] == {} and progs["industry"]["gpus_in_use"] == {
        "a100": 1}
    assert progs["industry"]["may_hold_at_once"] == {"h100": 2}
    assert progs["industry"]["kept_free_for"] == ["startups", "research"]
    text = format_report(machine_report(allocs, NODES, jobs, usage, dt.date(2026, 11, 26)))
    assert text.splitlines()[0] == "The machine in 2026-01-01..2026-12-31 (8760 h):"
    assert "h100     8 GPUs = 70,080 GPU-hours" in text


def test_a_job_held_for_another_programmes_reservation_says_so_and_what_is_free():
    allocs = demo()
    nodes = [Node("h100-1", "127.0.0.1", "allocated", (), ("gpu",), 16, 12, 65536, 0, "h100",
                  4, 4),
             Node("h100-2", "127.0.0.1", "mixed", (), ("gpu",), 16, 14, 65536, 0, "h100", 4, 2),
             Node("a100-1", "127.0.0.1", "idle", (), ("gpu-a100",), 16, 16, 65536, 0, "a100",
                  4, 0)]
    running = [job(1, "research-medai", gpus=4), job(2, "industry-autotwin", gpus=2,
                                                      gpu_type="")]
    mine = job(3, "research-climate", JobState.PENDING, gpus=2, reason="AssocGrpBilling")
    text = waiting_message(mine, [*running, mine], nodes, allocations=allocs)
    assert ("your programme (research) and industry together may hold at most 6 h100 GPUs at "
            "once and hold 6 now, so that the 2 reserved for startups stay free for them"
            ) in text
    assert "2 h100 GPUs are idle, 2 of them kept for startups; yours starts when jobs under " \
           "your programme's limit end" in text
    assert "partition gpu-a100 has 4 idle a100 GPUs on a node now" in text
    assert "instead of 2" not in text  # no room under the limit: fewer GPUs would not start
    ida = job(4, "industry-autotwin", JobState.PENDING, gpus=2, reason="AssocGrpBilling")
    text = waiting_message(ida, [*running, ida], nodes, allocations=allocs)
    assert "your programme (industry) may hold at most 2 h100 GPUs at once and hold 2 now, so "\
           "that the 4 reserved for startups and research stay free" in text
    big = job(5, "industry-autotwin", JobState.PENDING, gpus=3, reason="AssocGrpBilling")
    text = waiting_message(big, [big], nodes, allocations=allocs)
    assert "hold 0 now" in text and "ask for at most 2" in text
    assert "2 GPUs instead of 3 would start now in gpu" in text


def test_a_request_over_the_budget_says_what_is_left_and_what_fits():
    allocs = load(DEMO, check_users=False, today=TODAY)
    usage = [GpuUse(1, "startup-helios", "alice", 4, int(499 * 3600 / 4), dt.datetime(2026, 6, 1))]
    budgets = budgets_from_usage(allocs, usage, dt.date(2026, 6, 2))
    v = view()
    v = type(v)(v.partitions, v.accounts, {b.project: b for b in budgets
                                           if b.project in v.accounts})
    with pytest.raises(InvalidRequest) as e:
        validate_request(GOOD, v)  # 2 GPUs x 2 h = 4 GPU-h, 1 left
    assert e.value.field == "account"
    assert "1.00 GPU-hours left" in e.value.message
    assert "2 GPUs for at most 00:30:00" in e.value.message
    ok = validate_request({**GOOD, "runtime": "00:30:00"}, v)
    assert ok.gpu_hours == 1.0
    assert validate_request({**GOOD, "gpus": 0}, v).gpus == 0  # CPU-only costs nothing
