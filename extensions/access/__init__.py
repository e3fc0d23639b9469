"""Merit-based access: the ``access`` hub service (:mod:`.service`, ``python -m
extensions.access``): calls for compute time, proposals, peer review and awards, over
:mod:`workbench.merit`."""
