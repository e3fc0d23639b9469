"""From an award to a project its applicant can use, in seconds, through the running hub and
its access service: maria's decision, the account in Slurm, carla's spawn form listing it.

Run as root on the machine of the local AI Factory (hub and access service up), with the
project's environment::

    /opt/aifactory/venv/bin/python benchmarks/award.py          # ~1 min (3 runs)

Each run (``--runs``, default 3), as the demo's people with hub tokens of their own:

- set up, not timed: maria opens a call (programme startups, h100; its name unique to the
  run), carla applies for the project ``carla-bench-N`` and submits, rita (the reviewers
  group) scores it;
- **decision**: maria's ``POST api/proposals/{id}/decision`` awarding ``--hours`` GPU-hours,
  until its answer (the service applies the award to Slurm before answering);
- **in Slurm**: from the decision until ``sacctmgr show assoc`` lists the account under
  startups with ``GrpTRESMins=gres/gpu=<hours x 60>`` and carla's association;
- **carla's form**: from the decision until carla's ``/hub/spawn`` lists the project with
  its hours (the goal: under 10 s);
- **Slurm's part, measured separately**: the account and its association are deleted and the
  one apply path (``workbench.enact``, what the decision ran) puts them back from the award
  in force: its ``sacctmgr`` reads (plan) and its ``sacctmgr`` writes (apply);
- then the run's call, proposal, review and award rows and the Slurm account are removed
  (``tests/merit_story.py``, as the browser story's teardown), also when the run fails.

Prints a table, the goal and one JSON line (or writes it to ``--json FILE``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import secrets
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hubsessions import form_login, token  # noqa: E402 (as the tests)
from tests.merit_story import calls_named, remove_calls  # noqa: E402
from workbench.allocations import apply_plan, plan  # noqa: E402
from workbench.daemons import wait_until  # noqa: E402
from workbench.enact import load_in_force  # noqa: E402
from workbench.paths import FactoryHome  # noqa: E402
from workbench.slurm import SlurmClient, queries  # noqa: E402
from workbench.slurm.parse import parse_tres  # noqa: E402

HUB = "http://127.0.0.1:8000/"
#: the issue's goal: from the award to the project in the applicant's spawn form, in s
GOAL_S = 10.0
#: the longest any one part is waited for, in s
WAIT_S = 60.0
PARTS = ("decision_s", "in_slurm_s", "form_s", "sacctmgr_plan_s", "sacctmgr_apply_s")
LABELS = ("decision", "in Slurm", "carla's form", "sacctmgr plan", "sacctmgr apply")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="awards measured (default 3)")
    p.add_argument("--hours", type=float, default=50.0,
                   help="GPU-hours awarded each run (default 50)")
    p.add_argument("--hub", default=HUB, help=f"the hub's public URL (default {HUB})")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    if not 1 <= args.runs <= 20:
        p.error("--runs must be from 1 to 20")
    if not 0 < args.hours <= 1000:
        p.error("--hours must be more than 0 and at most 1000")
    return args


def ok(r, status=200) -> dict:
    if r.status_code != status:
        raise RuntimeError(f"{r.request.method} {r.url}: HTTP {r.status_code}: {r.text[:300]}")
    return r.json()


def reviewed(people: dict, name: str, project: str, hours: float) -> int:
    """A call named ``name`` and carla's proposal for ``project`` in it, reviewed by rita:
    the proposal's id."""
    maria, carla, rita = people["maria"], people["carla"], people["rita"]
    now = dt.datetime.now(dt.UTC)
    call = ok(maria.post(f"{maria.access}/calls", json={
        "name": name, "programme": "startups", "gpu_type": "h100", "gpu_hours": hours,
        "max_per_proposal": hours, "opens": (now - dt.timedelta(hours=1)).isoformat(),
        "closes": (now + dt.timedelta(days=1)).isoformat(), "eligibility": ["startup"],
        "criteria": [{"name": "excellence", "weight": 1}], "reviews_needed": 1}), 201)
    p = ok(carla.post(f"{carla.access}/calls/{call['id']}/proposals", json={
        "project": project, "organisation": "Carla Bench GmbH", "org_type": "startup",
        "abstract": "The award benchmark's proposal.", "gpu_hours": hours}), 201)
    ok(carla.post(f"{carla.access}/proposals/{p['id']}/submit"))
    ok(rita.post(f"{rita.access}/proposals/{p['id']}/reviews",
                 json={"scores": {"excellence": 4}}), 201)
    return p["id"]


def in_slurm(slurm: SlurmClient, project: str, hours: float) -> bool:
    rows = slurm.run(queries.sacctmgr_list("association", "Account", "ParentName", "User",
                                           "GrpTRESMins", where=(f"account={project}",)))
    own = [r for r in rows if not r[2]]
    return bool(own) and own[0][1] == "startups" and \
        parse_tres(own[0][3]) == {"gres/gpu": round(hours * 60)} and \
        any(r[2] == "carla" for r in rows)


def in_form(carla, hub: str, project: str, hours: float) -> bool:
    """carla's spawn form (logged in through the hub's form: the page her browser gets)
    lists ``project`` with its granted hours."""
    page = carla.get(f"{hub}hub/spawn", timeout=30).text
    return re.search(rf'<tr data-account="{re.escape(project)}"><td>{re.escape(project)}'
                     rf"</td><td>{hours:g}</td>", page) is not None


def since(start: float, check, what: str) -> float:
    wait_until(check, what, WAIT_S)
    return time.monotonic() - start


def one_run(n: int, people: dict, slurm: SlurmClient, args, db: str) -> dict:
    name = f"Award benchmark {n} {secrets.token_hex(3)}"
    project = f"carla-bench-{n}"
    try:
        pid = reviewed(people, name, project, args.hours)
        maria = people["maria"]
        start = time.monotonic()
        decided = ok(maria.post(f"{maria.access}/proposals/{pid}/decision",
                                json={"decision": "award", "gpu_hours": args.hours}))
        decision = time.monotonic() - start
        if decided["state"] != "awarded" or decided["slurm_error"]:
            raise RuntimeError(f"the award was not applied: {decided}")
        with ThreadPoolExecutor(2) as pool:
            slurm_s = pool.submit(since, start, lambda: in_slurm(slurm, project, args.hours),
                                  f"{project} in Slurm")
            form_s = pool.submit(since, start, lambda: in_form(people["carla-page"], args.hub,
                                                               project, args.hours),
                                 f"{project} in carla's form")
            figures = {"decision_s": decision, "in_slurm_s": slurm_s.result(),
                       "form_s": form_s.result()}
        figures.update(slurm_part(slurm, project))
        return {k: round(v, 3) for k, v in figures.items()}
    finally:
        remove_calls(slurm, db, calls_named(db, name))


def slurm_part(slurm: SlurmClient, project: str) -> dict:
    """What Slurm takes of an award, alone: the account deleted, then put back by the one
    apply path from the award in force (its sacctmgr reads, then its writes)."""
    slurm.run(queries.sacctmgr_modify("delete", "user", "where", "name=carla",
                                      f"account={project}"))
    slurm.run(queries.sacctmgr_modify("delete", "account", "where", f"name={project}"))
    cluster = slurm.run(queries.cluster_name())
    allocs = load_in_force(slurm)
    start = time.monotonic()
    changes = [c for c in plan(allocs, slurm, cluster) if project in c.summary]
    planned = time.monotonic()
    apply_plan(changes, slurm)
    applied = time.monotonic()
    made = sorted(c.summary for c in changes)
    if made != sorted([f"added account {project} under startups",
                       f"set {project} grant to {allocs.project(project).gpu_hours:g} "
                       "GPU-hours", f"added carla to {project}"]):
        raise RuntimeError(f"the apply path would not put back just {project}: {made}")
    return {"sacctmgr_plan_s": planned - start, "sacctmgr_apply_s": applied - planned}


def main(argv=None) -> int:
    args = parse_args(argv)
    home = FactoryHome.from_env()
    password = home.demo_password_file.read_text().strip()
    people = {u: token(args.hub, u, password, "award benchmark")
              for u in ("maria", "carla", "rita")}
    people["carla-page"] = form_login(args.hub, "carla", password)
    slurm = SlurmClient(slurm_conf=str(home.slurm_conf))
    runs = [one_run(n, people, slurm, args, home.merit_db) for n in range(1, args.runs + 1)]
    median = {k: round(statistics.median(r[k] for r in runs), 3) for k in PARTS}
    print(f"{'run':>6}" + "".join(f"{label:>16}" for label in LABELS))
    for n, r in enumerate(runs, 1):
        print(f"{n:>6}" + "".join(f"{r[k]:>15.2f}s" for k in PARTS))
    print(f"{'median':>6}" + "".join(f"{median[k]:>15.2f}s" for k in PARTS))
    worst = max(r["form_s"] for r in runs)
    met = worst < GOAL_S
    print(f"goal: award -> carla's spawn form lists the project in < {GOAL_S:g} s: "
          f"{'met' if met else 'NOT met'} (slowest {worst:.2f} s)")
    line = json.dumps({"runs": runs, "median": median, "goal_s": GOAL_S, "goal_met": met,
                       "gpu_hours": args.hours})
    print(line)
    if args.json:
        Path(args.json).write_text(line + "\n")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
