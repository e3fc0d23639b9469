"""``workbench``: start, stop and inspect the local AI Factory, and run the site's commands.

    workbench up [--profile demo|site-demo]
                                 start (or complete) cluster, accounts, hub; print URL and logins
    workbench down               stop every daemon `up` started (jobs are cancelled first)
    workbench restart [SERVICE...]
                                 restart the hub and its services (or only the named
                                 services, returning once each answers); sessions and
                                 the proxy keep running
    workbench status [--json]    profile, hub URL, slurm.conf, files in force, demo password
                                 (local factory only), services, nodes
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
    workbench site units --output DIR
                                 a systemd unit for every daemon (proxy, hub, services) of
                                 the site file, their tokens in root-only files

The local factory's commands (the demo's lifecycle) are in :mod:`workbench.cli.demo`, the
site's in :mod:`workbench.cli.site`; this module holds the parser and ``main``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..slurm import SlurmError
from . import demo, site


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="workbench",
        description="The AI Factory Workbench: a local Slurm GPU cluster with JupyterHub in "
        "front. State lives under $AIFACTORY_HOME (default /var/lib/aifactory).")
    p.add_argument("--port", type=int, default=8000,
                   help="public port of the hub's proxy (default 8000)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what is started")
    sub = p.add_subparsers(dest="command", required=True)
    demo.add_commands(sub)  # up, down, restart, status
    site.add_commands(sub)  # allocations, reconcile, audit, ai-act-summary, site
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
