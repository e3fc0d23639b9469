"""Pieces both dashboards share: a status line, a chart area, the refresh timer."""

from __future__ import annotations

import html
import logging
from datetime import UTC, datetime

import ipywidgets as w
from IPython.display import display

log = logging.getLogger(__name__)


def message_html(text: str, kind: str = "warning") -> str:
    """A message in the page (``kind``: warning, danger, info)."""
    if not text:
        return ""
    return (f"<div class='wb-message alert alert-{kind}' role='status'>"
            f"{html.escape(text)}</div>")


def stamp(at: float | None) -> str:
    if not at:
        return "never"
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S UTC")


#: the dashboards' chart mime type: plotly's figure JSON, drawn by the dashboards' own
#: renderer (``extensions/dashboards/js``: plotly.js's basic bundle, 1 MB instead of 4.8 MB)
CHART_MIME = "application/vnd.aifactory.chart+json"


class Chart(w.Output):
    """One plotly figure, replaced on each update; ``figure`` is the last one shown."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.figure = None

    def show(self, fig: dict) -> None:
        """Show ``fig`` (plotly's JSON, :mod:`.charts`) as :data:`CHART_MIME` only (drawn by
        the dashboards' chart renderer, the one frontend extension for it that the services
        load): no copy of plotly.js and no HTML fallback in the page."""
        self.figure = fig
        self.clear_output(wait=True)
        with self:
            display({CHART_MIME: fig}, raw=True)

    def clear(self) -> None:
        self.figure = None
        self.clear_output()


def start_timer(callback, seconds: float):
    """A periodic callback on the kernel's event loop (stopped by ``.stop()``)."""
    from tornado.ioloop import PeriodicCallback
    timer = PeriodicCallback(callback, seconds * 1000)
    timer.start()
    return timer
