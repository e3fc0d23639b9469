"""``python -m extensions.catalogue``: run the catalogue hub service (see
:mod:`extensions.catalogue.service`)."""

from .service import main

main()
