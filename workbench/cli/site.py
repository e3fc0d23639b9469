"""The site's commands: ``workbench allocations apply|show``, ``reconcile``, ``audit``,
``ai-act-summary`` and ``site units`` (usage: the docstring of :mod:`workbench.cli`)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from dataclasses import asdict
from pathlib import Path

from ..allocations import AllocationError, Allocations, load, report
from ..allocations.show import format_report
from ..audit import AuditLog
from ..enact import enact, load_in_force
from ..hubapi import HubClient, TLSFiles
from ..paths import FactoryHome
from ..reconcile import reconcile_once, run_forever
from ..slurm import SlurmClient


def require_root() -> None:
    if os.geteuid() != 0:
        sys.exit("workbench: run this as root (it starts daemons and creates users)")


def _load_allocations(args, slurm: SlurmClient) -> Allocations:
    return load_in_force(slurm, Path(args.file) if args.file else None)


def _site():
    from ..hubconfig import Site  # the hub's composition: read when a command needs it
    return Site.from_env()


def site_slurm(site=None) -> SlurmClient:
    """The Slurm the hub fronts: the site file's ``slurm_conf`` (the demo's: the local
    cluster's), ``$SLURM_CONF`` first when set."""
    return SlurmClient(slurm_conf=os.environ.get("SLURM_CONF") or (site or _site()).slurm_conf)


def cmd_allocations_apply(args) -> int:
    require_root()
    slurm = site_slurm()
    try:
        done = enact(slurm, Path(args.file) if args.file else None, args.cluster or None,
                     dry_run=args.dry_run)
    except AllocationError as e:
        print(f"workbench: {e}\nNothing was changed.", file=sys.stderr)
        return 2
    path = done.allocations.path
    for summary in done.data:  # the datasets' groups and ACLs follow the members
        print(f"  {'would: ' if args.dry_run else ''}{summary}")
    if done.data_error:
        print(f"workbench: datasets' access not updated: {done.data_error}", file=sys.stderr)
    if not done.slurm:
        print(f"{path}: Slurm already matches; nothing to change.")
        return 0
    print(f"{'Would change' if args.dry_run else 'Changed'} ({path}):")
    for summary in done.slurm:
        print(f"  {summary}")
    return 0


def cmd_allocations_show(args) -> int:
    slurm = site_slurm()
    try:
        allocs = _load_allocations(args, slurm)
    except AllocationError as e:
        print(f"workbench: {e}", file=sys.stderr)
        return 2
    rep = report(allocs, slurm)
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
    hub = HubClient(api_url, token, tls=TLSFiles.from_env())
    site = _site()
    slurm = site_slurm(site)
    audit = AuditLog(site.audit_url)
    hub_id = args.hub_id or socket.gethostname()
    if args.once:
        done = reconcile_once(slurm, hub, hub_id, audit, args.min_age)
        print(f"cancelled {len(done)} orphan job(s)" +
              "".join(f"\n  {o.job.job_id} {o.user}/{o.server}" for o in done))
        return 0
    run_forever(slurm, hub, hub_id, audit, args.interval, args.min_age, args.routes_every,
                args.proxy_api or "")
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
    records = AuditLog(_site().audit_url).records(
        action=args.action, actor=args.user, limit=args.limit, dataset=args.dataset,
        since=args.since, until=args.until)
    if args.json:
        print(json.dumps([asdict(r) for r in records], indent=2))
    else:
        for r in records:
            print(f"{r.at} {r.actor:8} {r.action:22} {r.subject} {json.dumps(r.details)}")
    return 0


def cmd_ai_act_summary(args) -> int:
    from ..catalogue import aiact, fsaccess
    from ..catalogue import model as catalogue_model

    try:
        allocs = load()
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
    summary = aiact.build(project.name, project.programme, AuditLog(_site().audit_url), catalogue,
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


def cmd_site_units(args) -> int:
    """Write the site's systemd units (workbench.units) from its site file; nothing when the
    site file or a unit is wrong."""
    from .. import units
    from ..hubconfig import Site
    from ..sitefile import SiteError, load

    require_root()  # the units' environment files hold tokens: root's, mode 0600
    home = FactoryHome.from_env()
    if not home.site_file.exists():
        print(f"workbench: no site file at {home.site_file}: the units are a site's, made "
              "from its site file (README: Running it at a site)", file=sys.stderr)
        return 2
    try:
        site = Site.from_file(load(home.site_file), home)
        written = units.write(site, Path(args.output), public_port=args.port)
    except (SiteError, units.UnitError) as e:
        print(f"workbench: {e}\nNothing was written.", file=sys.stderr)
        return 2
    names = " ".join(p.name for p in written.units)
    print(f"Wrote {len(written.units)} units to {args.output}: {names}\n"
          f"Their tokens (root only, mode 0600): {units.env_dir(site)}/\n"
          "To start them now and at every boot:\n"
          f"  cp {' '.join(str(p) for p in written.units)} /etc/systemd/system/\n"
          f"  systemctl daemon-reload && systemctl enable --now {names}")
    return 0


def add_commands(sub) -> None:
    """allocations, reconcile, audit, ai-act-summary and site, in ``workbench``'s
    sub-parsers."""
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
    rc.add_argument("--routes-every", type=float, default=0,
                    help="seconds between putting the proxy's routes in step with the hub "
                    "(POST /hub/api/proxy; needs the proxy scope), so sessions are reachable "
                    "again soon after a proxy restart (default 0: never; the hub service "
                    "runs it every 15)")
    rc.add_argument("--proxy-api", metavar="URL",
                    help="the proxy's REST API (e.g. http://127.0.0.1:8001): the route sync "
                    "asks the hub only while the proxy answers there (default: always ask)")
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
    st = sub.add_parser("site", help="a site's operation: its systemd units")
    stsub = st.add_subparsers(dest="site_command", required=True)
    un = stsub.add_parser(
        "units", help="write a systemd unit for every daemon the workbench runs (the proxy, "
        "the hub, each hub service) from the site file ($AIFACTORY_HOME/etc/site.yaml), and "
        "each unit's tokens into a root-only file under $AIFACTORY_HOME/etc/units/; the "
        "proxy listens on workbench's --port (default 8000). Run as root")
    un.add_argument("--output", required=True, metavar="DIR",
                    help="the directory to write the units into (made if missing; units "
                         "already there are replaced), e.g. /etc/systemd/system")
    un.set_defaults(func=cmd_site_units)
