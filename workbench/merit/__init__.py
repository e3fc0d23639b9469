"""Merit-based access: calls for compute time, proposals, peer review and awards.

:mod:`.model` (the values and the checks of single fields, each refusal a
:class:`~.model.MeritError` naming the field), :mod:`.store` (their tables in the workbench's
database), :mod:`.ledger` (the share arithmetic: what a programme's share and a call have
left; who the caller is), :mod:`.views` (what each role sees), :mod:`.office` (every step,
its rules and its audit record). An award becomes a
grant in the allocations (:mod:`workbench.allocations.awards`), read by the one loader and
applied to Slurm by the one ``allocations apply`` path (:mod:`workbench.enact`). The hub
service ``access`` (``extensions/access``) serves it.
"""

from .ledger import Caller
from .model import Call, CallState, MeritError, Proposal, Review, State
from .office import Office
from .store import MeritStore

__all__ = ["Call", "CallState", "Caller", "MeritError", "MeritStore", "Office", "Proposal",
           "Review", "State"]
