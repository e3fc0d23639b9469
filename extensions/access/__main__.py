"""``python -m extensions.access``: run the access hub service (:mod:`.service`)."""

from .service import main

main()
