"""``python -m extensions.metrics``: run the metrics hub service (see
:mod:`extensions.metrics.service`)."""

from .service import main

main()
