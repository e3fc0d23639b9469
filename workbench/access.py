"""Who may log in to the hub, decided afresh at every login (the site file's ``allow``).

A login names a Unix user (the jobs run as it). It is let in when that user exists and either
the site lets every such user in (``allow: everyone``), or the login is staff (its groups
give a hub group: support, managers, reviewers, admins), or the user is a member of a project
in the allocations file (its awards included). Otherwise the reason, in words the person can
act on.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable, Iterable

from .allocations import AllocationError

STAFF_GROUPS = frozenset({"support", "managers", "reviewers", "admins"})


def _has_unix_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def login_refusal(username: str, hub_groups: Iterable[str], allow: str,
                  allocations: Callable[[], object],
                  has_account: Callable[[str], bool] = _has_unix_account) -> str | None:
    """Why ``username`` may not log in, or None when it may. ``allocations()`` gives the
    allocations (:func:`workbench.allocations.loader.cached`); it is read only when needed."""
    if not username or not has_account(username):
        return (f"There is no account {username!r} on the cluster. Your login names the "
                "cluster account your sessions run as: ask your centre's support to create "
                "it, then log in again.")
    if allow == "everyone" or STAFF_GROUPS & set(hub_groups):
        return None
    try:
        allocs = allocations()
    except AllocationError as e:
        return (f"The workbench cannot tell which projects {username} is in (the allocations "
                f"file is unusable: {e}). Ask the centre's operators.")
    if any(username in p.members for prog in allocs.programmes for p in prog.projects):
        return None
    return (f"{username} is not a member of any project on this AI Factory. Apply for compute "
            "time in an open call, or ask your project's lead to add you, then log in again.")
