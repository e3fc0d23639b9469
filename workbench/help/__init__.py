"""Pair-debugging: help requests that share a user's server with support for a time box.

- :mod:`.store`: the requests and their expiry, durable in SQLite;
- :mod:`.hubshares`: the hub's own sharing API (grant, revoke, list);
- :mod:`.jobinfo`: the job behind a session and the tail of its output;
- :mod:`.desk`: what the ``help`` hub service (:mod:`extensions.help.service`) does per call,
  and the timer that ends requests when their time is up.
"""

from .desk import SUPPORT_GROUP, Caller, HelpDesk
from .hubshares import HubShares
from .store import HelpError, HelpRequest, HelpStore, State

__all__ = ["SUPPORT_GROUP", "Caller", "HelpDesk", "HelpError", "HelpRequest", "HelpStore",
           "HubShares", "State"]
