"""The ``metrics`` hub service: the workbench's Prometheus metrics (see :mod:`.service`)."""
