"""``python -m extensions.help``: run the help hub service (see :mod:`extensions.help.service`)."""

from .service import main

main()
