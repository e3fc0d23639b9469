"""How many cases the property-based tests try, and how they are drawn.

``WORKBENCH_FUZZ_EXAMPLES`` (default 300): the cases per API (schemathesis, from its OpenAPI
document) and per property (hypothesis) of the unit tier, e.g.
``WORKBENCH_FUZZ_EXAMPLES=2000 pytest tests/unit -k fuzz``. The cases are drawn from a fixed
seed (hypothesis' ``derandomize``), so a run is reproducible and CI's verdict does not
change between runs of the same code; ``WORKBENCH_FUZZ_SEED=random`` draws new ones each
run, and a failure prints the minimal example it shrank to (write it out as a regression
test). No example database is kept (``database=None``): nothing is written to the checkout.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

#: the cases per API and per property
EXAMPLES = int(os.environ.get("WORKBENCH_FUZZ_EXAMPLES", "300"))
#: True unless WORKBENCH_FUZZ_SEED=random
DERANDOMIZE = os.environ.get("WORKBENCH_FUZZ_SEED", "") != "random"


def fuzz_settings(share: float = 1.0) -> settings:
    """hypothesis settings for ``share`` of :data:`EXAMPLES` cases: a fixed seed, no
    per-case deadline (a test checks its own time limits), no example database."""
    return settings(max_examples=max(10, int(EXAMPLES * share)), derandomize=DERANDOMIZE,
                    deadline=None, database=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])
