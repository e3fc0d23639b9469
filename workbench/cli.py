"""``workbench``: start, stop and inspect the local AI Factory.

    workbench up                 start (or complete) cluster, accounts, hub; print URL and logins
    workbench down               stop every daemon `up` started (jobs are cancelled first)
    workbench restart [SERVICE...]
                                 restart the hub and its services (or only the named
                                 services, returning once each answers); sessions and
                                 the proxy keep running
    workbench status [--json]    hub URL, slurm.conf, demo password, services, nodes
    workbench allocations apply [FILE] [--dry-run]
                                 make Slurm match the allocations file, print the changes
    workbench allocations show [FILE] [--json]
                                 the machine, programmes' shares and reserved GPUs, projects'
                                 granted, used and remaining GPU-hours
    workbench reconcile [--once] cancel jobs tagged for this hub that no server owns
    workbench audit [--json] [--user U] [--action A] [--dataset D] [--since T] [--until T]
                                 the latest audit records, filtered
    workbench ai-act-summary PROJECT [--job ID] [--json] [--output PREFIX]
                                 the project's AI Act training-data summary, from lineage
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import socket
import sys
from dataclasses import asdict
from pathlib import Path

from . import daemons
from .allocations import AllocationError, Allocations, apply, apply_plan, plan, report
from .allocations.show import format_report
from .audit import AuditLog
from .cluster.local import LocalCluster, secret_file
from .hub import LocalHub
from .paths import FactoryHome
from .people import People, ensure_unix_users
from .reconcile import reconcile_once, run_forever
from .slurm import SlurmClient, SlurmError, queries

log = logging.getLogger("workbench")


def _demo_password(home: FactoryHome) -> str:
    return secret_file(home.demo_password_file, lambda: "factory-" + secrets.token_hex(4))


def _require_root() -> None:
    if os.geteuid() != 0:
        sys.exit("workbench: run this as root (it starts daemons and creates users)")


def cmd_up(args) -> int:
    _require_root()
    cluster = LocalCluster()
    print("Starting the Slurm cluster (munge, MariaDB, slurmdbd, slurmctld, slurmd x"
          f"{len(cluster.shape.nodes)})...", flush=True)
    cancelled = cluster.up()
    if cancelled:
        print(f"Cold start: cancelled {len(cancelled)} job(s) left by the last run "
              f"({', '.join(map(str, cancelled))}); their processes are gone.")
    people = People.load()
    password = _demo_password(cluster.home)
    created = ensure_unix_users(people, password)
    if created:
        print(f"Created Unix users: {', '.join(created)}")
    try:
        allocs = Allocations.load(nodes=cluster.slurm.run(queries.nodes()))
    except AllocationError as e:
        print(f"workbench: {e}", file=sys.stderr)
        return 2
    for change in apply(allocs, cluster.slurm, cluster.shape.cluster_name):
        print(f"  {change}")
    _data_access(allocs, dry_run=False, generate=True)
    hub = LocalHub(public_port=args.port)
    if not args.no_hub:
        print("Starting configurable-http-proxy and JupyterHub...", flush=True)
        hub.up()
    print()
    print(f"The local AI Factory is up: {hub.url}")
    print(f"Demo logins (password {password}):")
    for p in people.people:
        projects = ", ".join(allocs.projects_of(p.name)) or "no project"
        print(f"  {p.name:8} {p.description} [{projects}]")
    pages = [s for s in hub.site.services() if s.port and s.display]
    if pages and not args.no_hub:
        print("Services (who may open them is the hub's decision):")
        for s in pages:
            who = ("every user" if s.access == ("users",) else
                   "groups " + ", ".join(s.access) + " and admins")
            print(f"  {hub.url}services/{s.name}/  {s.description} [{who}]")
    return 0


def cmd_down(args) -> int:
    _require_root()
    cluster = LocalCluster()
    if cluster.home.slurm_conf.exists() and cluster.is_up():
        try:
            jobs = cluster.slurm.run(queries.jobs())
            for job in jobs:
                if job.state.is_active:
                    cluster.slurm.run(queries.cancel(job.job_id))
        except SlurmError as e:
            print(f"workbench: could not cancel jobs: {e}", file=sys.stderr)
    stopped = LocalHub(public_port=args.port).down() + cluster.down()
    print("Stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def status(port: int = 8000) -> dict:
    cluster = LocalCluster()
    hub = LocalHub(public_port=port)
    home = cluster.home
    out = {
        "hub_url": hub.url,
        "hub_running": hub.is_up(),
        "slurm_conf": str(home.slurm_conf),
        "aifactory_home": str(home.root),
        "demo_password": (home.demo_password_file.read_text().strip()
                          if home.demo_password_file.exists() else None),
        "demo_users": People.load().names,
        "daemons": {name: bool(daemons.read_pid(pidfile))
                    for name, pidfile in {**cluster.pidfiles(), **hub.pidfiles()}.items()},
        "services": hub.service_status(),
        "nodes": [],
        "partitions": [],
    }
    try:
        out["nodes"] = [
            {"name": n.name, "state": n.state, "flags": list(n.flags),
             "partitions": list(n.partitions), "gpu_type": n.gpu_type, "gpus": n.gpus,
             "gpus_used": n.gpus_used, "cpus": n.cpus, "address": n.address}
            for n in cluster.slurm.run(queries.nodes())]
        out["partitions"] = [asdict(p) for p in cluster.slurm.run(queries.partitions())]
    except SlurmError as e:
        out["slurm_error"] = str(e)
    return out


def cmd_status(args) -> int:
    st = status(args.port)
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print(f"Hub:        {st['hub_url']} ({'running' if st['hub_running'] else 'not running'})")
    print(f"slurm.conf: {st['slurm_conf']}")
    if os.geteuid() == 0:
        print(f"Demo users: {', '.join(st['demo_users'])} (password {st['demo_password']})")
    for svc in st["services"]:
        where = f" at {svc['url']}" if svc["url"] else ""
        answers = "" if "answers" not in svc else (" (answers)" if svc["answers"]
                                                    else " (does not answer)")
        print(f"  service {svc['name']:20} {'running' if svc['running'] else 'stopped':8}"
              f"{where}{answers}")
    for n in st["nodes"]:
        gpus = f"{n['gpus_used']}/{n['gpus']} {n['gpu_type']} GPUs used" if n["gpus"] else "no GPU"
        print(f"  {n['name']:8} {n['state']:10} {','.join(n['partitions']):10} {gpus}")
    if "slurm_error" in st:
        print(f"Slurm: {st['slurm_error']}")
    return 0


def cmd_restart(args) -> int:
    _require_root()
    hub = LocalHub(public_port=args.port)
    if args.services:
        known = {s.name: s for s in hub.site.services()}
        unknown = [n for n in args.services if n not in known]
        if unknown:
            print(f"workbench: no such service: {', '.join(unknown)} (services: "
                  f"{', '.join(known)})", file=sys.stderr)
            return 2
        for name in args.services:
            daemons.stop(name, hub.home.pidfile(name))
        started = hub.start_services(args.services)
        hub.wait_services(started)
        print(f"Restarted: {', '.join(started)}")
        return 0
    hub.restart()
    print(f"Restarted the hub and its services; sessions kept running. {hub.url}")
    return 0


def _data_access(allocs: Allocations, dry_run: bool, generate: bool = False) -> None:
    """Generate the demo datasets (``up``), then make the projects' Unix groups and the
    dataset directories' ACLs match the allocations file (workbench.catalogue.fsaccess)."""
    from .catalogue import demodata, fsaccess
    from .catalogue.model import CatalogueError
    from .catalogue.policy import Membership

    if generate:
        written = demodata.generate(fsaccess.datasets_root())
        if written:
            print(f"Generated demo datasets: {', '.join(written)}")
    try:
        changes = fsaccess.sync_all(Membership.from_allocations(allocs), dry_run=dry_run)
    except CatalogueError as e:
        print(f"workbench: datasets' access not updated: {e}", file=sys.stderr)
        return
    for change in changes:
        print(f"  {'would: ' if dry_run else ''}{change.summary}")


def _load_allocations(args, slurm: SlurmClient) -> Allocations:
    path = Path(args.file) if args.file else None
    return Allocations.load(path, nodes=slurm.run(queries.nodes()))


def cmd_allocations_apply(args) -> int:
    _require_root()
    cluster = LocalCluster()
    try:
        allocs = _load_allocations(args, cluster.slurm)
    except AllocationError as e:
        print(f"workbench: {e}\nNothing was changed.", file=sys.stderr)
        return 2
    changes = plan(allocs, cluster.slurm, args.cluster or cluster.shape.cluster_name)
    _data_access(allocs, args.dry_run)  # the datasets' groups and ACLs follow the members
    if not changes:
        print(f"{allocs.path}: Slurm already matches; nothing to change.")
        return 0
    verb = "Would change" if args.dry_run else "Changed"
    if not args.dry_run:
        apply_plan(changes, cluster.slurm)
    print(f"{verb} ({allocs.path}):")
    for change in changes:
        print(f"  {change.summary}")
    return 0


def cmd_allocations_show(args) -> int:
    cluster = LocalCluster()
    try:
        allocs = _load_allocations(args, cluster.slurm)
    except AllocationError as e:
        print(f"workbench: {e}", file=sys.stderr)
        return 2
    rep = report(allocs, cluster.slurm)
    print(json.dumps(rep.as_dict(), indent=2) if args.json else format_report(rep))
    return 0


def cmd_reconcile(args) -> int:
    """Cancel this hub's orphan jobs (as the hub service, or once by hand as root)."""
    api_url = args.api_url or os.environ.get("JUPYTERHUB_API_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api_url or not token:
        print("workbench: reconcile needs the hub's API URL and a token with admin:server_state "
              "(JUPYTERHUB_API_URL, JUPYTERHUB_API_TOKEN; set for it when run as a hub service)",
              file=sys.stderr)
        return 2
    home = FactoryHome.from_env()
    slurm = SlurmClient(slurm_conf=os.environ.get("SLURM_CONF") or str(home.slurm_conf))
    audit = AuditLog(home.audit_db)
    hub_id = args.hub_id or socket.gethostname()
    if args.once:
        done = reconcile_once(slurm, api_url, token, hub_id, audit, args.min_age)
        print(f"cancelled {len(done)} orphan job(s)" +
              "".join(f"\n  {o.job.job_id} {o.user}/{o.server}" for o in done))
        return 0
    run_forever(slurm, api_url, token, hub_id, audit, args.interval, args.min_age)
    return 0


def _when(text: str | None):
    """``2026-11-26``, ``2026-11-26T15:00``, or ``2h`` / ``30m`` / ``7d`` (ago), in UTC."""
    from datetime import UTC, datetime, timedelta

    if text is None:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is no time: give 2026-11-26, 2026-11-26T15:00, or 2h, 30m, 7d (ago)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def cmd_audit(args) -> int:
    records = AuditLog(FactoryHome.from_env().audit_db).records(
        action=args.action, actor=args.user, limit=args.limit, dataset=args.dataset,
        since=args.since, until=args.until)
    if args.json:
        print(json.dumps([asdict(r) for r in records], indent=2))
    else:
        for r in records:
            print(f"{r.at} {r.actor:8} {r.action:22} {r.subject} {json.dumps(r.details)}")
    return 0


def cmd_ai_act_summary(args) -> int:
    from .catalogue import aiact, fsaccess
    from .catalogue import model as catalogue_model

    try:
        allocs = Allocations.load()
        catalogue = catalogue_model.load()
    except (AllocationError, catalogue_model.CatalogueError) as e:
        print(f"workbench: {e}", file=sys.stderr)
        return 2
    project = allocs.project(args.project)
    if project is None:
        names = ", ".join(p.name for p in allocs.projects)
        print(f"workbench: no project {args.project!r} in {allocs.path} (projects: {names})",
              file=sys.stderr)
        return 2
    home = FactoryHome.from_env()
    summary = aiact.build(project.name, project.programme, AuditLog(home.audit_db), catalogue,
                          fsaccess.datasets_root(home), job=args.job)
    text = aiact.markdown(summary)
    if args.output:
        prefix = Path(args.output)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{prefix}.md").write_text(text)
        Path(f"{prefix}.json").write_text(summary.to_json() + "\n")
        print(f"wrote {prefix}.md and {prefix}.json", file=sys.stderr)
    print(summary.to_json() if args.json else text, end="" if not args.json else "\n")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="workbench",
        description="The AI Factory Workbench: a local Slurm GPU cluster with JupyterHub in "
        "front. State lives under $AIFACTORY_HOME (default /var/lib/aifactory).")
    p.add_argument("--port", type=int, default=8000,
                   help="public port of the hub's proxy (default 8000)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what is started")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start whatever part of the local AI Factory is not "
                        "running; print the URL and demo logins")
    up.add_argument("--no-hub", action="store_true", help="start the cluster only")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="cancel jobs and stop every daemon `up` started").set_defaults(
        func=cmd_down)
    rs = sub.add_parser("restart", help="restart the hub and its services (new code and "
                        "config take effect; the proxy and the sessions keep running)")
    rs.add_argument("services", nargs="*", metavar="SERVICE",
                    help="restart only these hub services, not the hub (returns once each "
                         "answers)")
    rs.set_defaults(func=cmd_restart)
    st = sub.add_parser("status", help="hub URL, slurm.conf, demo password, nodes")
    st.add_argument("--json", action="store_true", help="one JSON object")
    st.set_defaults(func=cmd_status)
    al = sub.add_parser("allocations", help="programmes, projects and grants")
    alsub = al.add_subparsers(dest="allocations_command", required=True)
    file_help = ("the allocations file (default: $AIFACTORY_HOME/etc/allocations.yaml if "
                 "present, else the demo's cluster/allocations.yaml)")
    ap = alsub.add_parser("apply", help="make Slurm's accounts, associations, grants and QOS "
                          "match the allocations file; print what changed")
    ap.add_argument("file", nargs="?", help=file_help)
    ap.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    ap.add_argument("--cluster", help="Slurm cluster name (default: the local cluster's)")
    ap.set_defaults(func=cmd_allocations_apply)
    show = alsub.add_parser("show", help="the machine's GPU-hours in the allocation period, "
                            "each programme's share, grants, use and reserved GPUs; granted, "
                            "used and remaining GPU-hours per project")
    show.add_argument("file", nargs="?", help=file_help)
    show.add_argument("--json", action="store_true", help="JSON output")
    show.set_defaults(func=cmd_allocations_show)
    rc = sub.add_parser("reconcile", help="cancel jobs tagged for this hub that no server "
                        "owns, and worker jobs whose session is gone (runs as the hub "
                        "service workbench-reconciler)")
    rc.add_argument("--once", action="store_true", help="one pass, then exit")
    rc.add_argument("--interval", type=float, default=300,
                    help="seconds between passes (default 300)")
    rc.add_argument("--min-age", type=float, default=120,
                    help="leave jobs younger than this many seconds alone (default 120)")
    rc.add_argument("--hub-id", help="the hub name in job tags (default: this host's name)")
    rc.add_argument("--api-url", help="the hub API (default: $JUPYTERHUB_API_URL)")
    rc.set_defaults(func=cmd_reconcile)
    au = sub.add_parser("audit", help="the latest audit records")
    au.add_argument("--json", action="store_true", help="JSON output")
    au.add_argument("--limit", type=int, default=50, help="how many records (default 50)")
    au.add_argument("--user", help="only this user's records")
    au.add_argument("--action", help="only this action, or a family: 'dataset.*'")
    au.add_argument("--dataset", help="only records about this dataset (its dataset.* actions)")
    au.add_argument("--since", type=_when, help="from this time on (UTC): 2026-11-26, "
                    "2026-11-26T15:00, or 2h, 30m, 7d (that long ago)")
    au.add_argument("--until", type=_when, help="before this time (same forms as --since)")
    au.set_defaults(func=cmd_audit)
    ai = sub.add_parser("ai-act-summary", help="a project's training-data summary in the "
                        "structure of the Commission's template (Art. 53(1)(d) AI Act), built "
                        "from what its jobs opened through the catalogue")
    ai.add_argument("project", help="the project (a Slurm account of the allocations file)")
    ai.add_argument("--job", type=int, help="only what this Slurm job opened")
    ai.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    ai.add_argument("--output", metavar="PREFIX",
                    help="also write PREFIX.md and PREFIX.json (e.g. summaries/medai)")
    ai.set_defaults(func=cmd_ai_act_summary)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (SlurmError, TimeoutError, RuntimeError) as e:
        print(f"workbench: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
