"""The local AI Factory's lifecycle: ``workbench up``, ``down``, ``restart`` and ``status``
of the demo's cluster, accounts, hub and services, and its demo password (usage: the
docstring of :mod:`workbench.cli`). The demo's parts (:mod:`workbench.demo`) are imported in
the commands, so the site's commands never load them."""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import asdict

from .. import daemons
from ..allocations import AllocationError, apply
from ..enact import data_access, load_in_force
from ..paths import FactoryHome, secret_file
from ..slurm import SlurmError, queries
from .site import require_root


def _demo_password(home: FactoryHome) -> str:
    return secret_file(home.demo_password_file, lambda: "factory-" + secrets.token_hex(4))


def current_profile(home: FactoryHome) -> str | None:
    """``demo`` or ``site-demo`` (the local factory's profiles), or None when the site file
    is an operator's own (then this is no local factory to start)."""
    from ..demo.sitedemo import is_site_demo
    if not home.site_file.exists():
        return "demo"
    return "site-demo" if is_site_demo(home.site_file) else None


def cmd_up(args) -> int:
    from ..demo.cluster.local import LocalCluster
    from ..demo.hub import LocalHub
    from ..demo.people import People, ensure_unix_users
    from ..demo.sitedemo import SiteDemo
    require_root()
    cluster = LocalCluster()
    was = current_profile(cluster.home)
    if was is None:
        print(f"workbench: {cluster.home.site_file} is a site's own site file: `workbench up` "
              "starts the local factory only (demo or site-demo profile); nothing was "
              "started", file=sys.stderr)
        return 2
    profile = args.profile or was
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
        allocs = load_in_force(cluster.slurm)
    except AllocationError as e:
        print(f"workbench: {e}", file=sys.stderr)
        return 2
    for change in apply(allocs, cluster.slurm, cluster.shape.cluster_name):
        print(f"  {change}")
    _demo_datasets()
    data, error = data_access(allocs, dry_run=False)
    for summary in data:
        print(f"  {summary}")
    if error:
        print(f"workbench: datasets' access not updated: {error}", file=sys.stderr)
    if profile != was:
        # the hub's database changes with the profile: the other profile's hub goes
        stopped = LocalHub(public_port=args.port).down()
        print(f"Switching from the {was} profile to {profile}"
              + (f": stopped {', '.join(stopped)}" if stopped else ""))
    site_demo = SiteDemo(public_url=f"http://127.0.0.1:{args.port}/")
    if profile == "site-demo":
        print("Starting PostgreSQL and the OpenID provider (site-demo profile)...", flush=True)
        site_demo.up(people, password)
    elif was == "site-demo":
        site_demo.down()
        site_demo.remove_files()
    hub = LocalHub(public_port=args.port)
    if not args.no_hub:
        print("Starting configurable-http-proxy and JupyterHub...", flush=True)
        hub.up()
    print()
    print(f"The local AI Factory is up ({profile} profile): {hub.url}")
    if profile == "site-demo":
        print(f"Log in through the OpenID provider at {site_demo.provider.issuer} "
              f"(password {password}); {cluster.home.site_file} says how the hub runs:")
    else:
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


def _demo_datasets() -> None:
    """The demo's datasets under the datasets root (written once, kept after)."""
    from ..catalogue import demodata, fsaccess

    written = demodata.generate(fsaccess.datasets_root())
    if written:
        print(f"Generated demo datasets: {', '.join(written)}")


def cmd_down(args) -> int:
    from ..demo.cluster.local import LocalCluster
    from ..demo.hub import LocalHub
    require_root()
    cluster = LocalCluster()
    if cluster.home.slurm_conf.exists() and cluster.is_up():
        try:
            jobs = cluster.slurm.run(queries.jobs())
            for job in jobs:
                if job.state.is_active:
                    cluster.slurm.run(queries.cancel(job.job_id))
        except SlurmError as e:
            print(f"workbench: could not cancel jobs: {e}", file=sys.stderr)
    from ..demo.sitedemo import SiteDemo
    stopped = LocalHub(public_port=args.port).down() + SiteDemo().down() + cluster.down()
    print("Stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def status(port: int = 8000) -> dict:
    from ..allocations.loader import default_path as allocations_file
    from ..catalogue.model import default_path as catalogue_file
    from ..demo.cluster.local import LocalCluster
    from ..demo.hub import LocalHub
    from ..demo.people import People
    cluster = LocalCluster()
    hub = LocalHub(public_port=port)
    home = cluster.home
    profile = current_profile(home)
    out = {
        "profile": profile or "site",
        "hub_url": hub.url,
        "hub_running": hub.is_up(),
        "slurm_conf": hub.site.slurm_conf,
        "aifactory_home": str(home.root),
        # the files in force: what an operator edits
        "files": {"site": str(home.site_file) if home.site_file.exists() else None,
                  "allocations": str(allocations_file()), "catalogue": str(catalogue_file())},
        # the local factory's own logins: never at a site
        "demo_password": (home.demo_password_file.read_text().strip()
                          if profile and home.demo_password_file.exists() else None),
        "demo_users": People.load().names if profile else [],
        "daemons": {**{name: bool(cluster.running(name)) for name in cluster.pidfiles()},
                    **{name: bool(daemons.read_pid(pidfile))
                       for name, pidfile in hub.pidfiles().items()}},
        "services": hub.service_status(),
        "nodes": [],
        "partitions": [],
    }
    out["down"] = [name for name, running in out["daemons"].items() if not running]
    if not out["daemons"].get("slurmctld", True):
        # its clients would wait out their timeouts (~20 s) to say the same
        out["slurm_error"] = "the Slurm controller (slurmctld) is not running"
        return out
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
    print(f"Hub:        {st['hub_url']} ({'running' if st['hub_running'] else 'not running'}, "
          f"{st['profile']} profile)")
    print(f"slurm.conf: {st['slurm_conf']}")
    for what, path in st["files"].items():
        print(f"{what + ':':12}{path or '(none: the demo profile)'}")
    if os.geteuid() == 0 and st["demo_users"]:
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
    if st["down"]:
        print(f"Down:       {', '.join(st['down'])} (workbench up starts them again)")
    return 0


def cmd_restart(args) -> int:
    from ..demo.hub import LocalHub
    require_root()
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


def add_commands(sub) -> None:
    """up, down, restart and status, in ``workbench``'s sub-parsers."""
    up = sub.add_parser("up", help="start whatever part of the local AI Factory is not "
                        "running; print the URL and demo logins")
    up.add_argument("--no-hub", action="store_true", help="start the cluster only")
    up.add_argument("--profile", choices=("demo", "site-demo"),
                    help="demo: PAM logins of the demo people, SQLite; site-demo: the site "
                    "profile on this machine (Debian's PostgreSQL, a real OpenID provider, a "
                    "site file). Default: the profile running now (demo the first time)")
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
