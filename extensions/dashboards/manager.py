"""The managers' dashboard: per programme and project the GPU-hours granted, used and left,
a burn-down, utilisation per partition, queue waits, the start-ups' reserved share, the calls
for compute time (Access), and one project's jobs; a date range, and CSV export of every
table."""

from __future__ import annotations

import html
import logging
import time
from datetime import UTC, datetime, timedelta

import ipywidgets as w
from traitlets import Any, Float, Unicode, observe

from workbench.dashboards.daterange import RangeError, check_range
from workbench.dashboards.source import DashboardSource, Part, shared_source

from . import charts
from .common import Chart, message_html, stamp
from .table import DataTable

log = logging.getLogger(__name__)


class ManagerDashboard(w.VBox):
    """Traits: ``start``/``end`` (the date range, dates; both days included), ``project``
    (the project whose jobs are listed), ``status`` (the status line's text), ``error``
    (the message for bad input, "" when none), ``last_render_s``. Each table is a
    :class:`~.table.DataTable` (``budgets``, ``usage``, ``burndown``, ``utilisation``,
    ``waits``, ``reserved``, ``calls`` and ``shares`` of merit-based access,
    ``project_jobs``); each chart a :class:`~.common.Chart`."""

    start = Any(None, allow_none=True)
    end = Any(None, allow_none=True)
    project = Unicode("")
    status = Unicode("")
    error = Unicode("")
    last_render_s = Float(0.0)

    def __init__(self, source: DashboardSource | None = None, days: int = 30, **kwargs):
        super().__init__(**kwargs)
        self.add_class("wb-manager")
        self.source = source or shared_source()
        today = datetime.now(UTC).date()
        self._start = w.DatePicker(description="From", value=today - timedelta(days=days - 1))
        self._end = w.DatePicker(description="To", value=today)
        self._presets = w.ToggleButtons(options=[("7 days", 7), ("30 days", 30),
                                                 ("92 days", 92)], value=None)
        self._presets.observe(self._preset, names="value")
        self._start.observe(lambda c: setattr(self, "start", c["new"]), names="value")
        self._end.observe(lambda c: setattr(self, "end", c["new"]), names="value")
        self._error = w.HTML()
        self._status = w.HTML()
        self.budgets = DataTable("budgets", "GPU-hours per project: granted, used, left "
                                 "(whole grant period)")
        self.budgets_chart = Chart()
        self.burndown_chart = Chart()
        self.burndown = DataTable("burndown", "Burn-down (GPU-hours left at the end of each "
                                  "day)")
        self.usage = DataTable("usage", "GPU-hours used in the range, per programme and project")
        self.utilisation_chart = Chart()
        self.utilisation = DataTable("utilisation", "Utilisation per partition")
        self.waits_chart = Chart()
        self.waits = DataTable("queue-waits", "Queue waits per programme and partition")
        self.reserved = DataTable("reserved-share", "Reserved share: GPU-hours used on the "
                                  "reserved GPU type, against what was reserved")
        self.calls = DataTable("access-calls", "Calls for compute time: offered, awarded, "
                               "left, requested, proposals by state")
        self.shares = DataTable("access-shares", "Programmes' shares: granted (file and "
                                "awards), held by open calls, left")
        self._project = w.Dropdown(description="Project", options=[])
        self._project.observe(lambda c: setattr(self, "project", c["new"] or ""), names="value")
        self.project_jobs = DataTable("project-jobs", "The project's jobs in the range")
        self.children = [
            w.HBox([self._start, self._end, self._presets]), self._error, self._status,
            self.budgets, self.budgets_chart, self.burndown_chart, self.burndown, self.usage,
            self.utilisation_chart, self.utilisation, self.waits_chart, self.waits,
            self.reserved, w.HTML("<h3>Access: calls for compute time</h3>"), self.calls,
            self.shares, w.HTML("<h3>One project</h3>"), self._project, self.project_jobs]
        self._rendering = True  # one render for both dates
        self.start, self.end = self._start.value, self._end.value
        self._rendering = False
        self.render()

    def _preset(self, change) -> None:
        if change["new"]:
            today = datetime.now(UTC).date()
            self._rendering = True  # one render for both dates
            self._start.value = today - timedelta(days=change["new"] - 1)
            self._end.value = today
            self._rendering = False
            self.render()

    def set_range(self, start, end) -> None:
        """Set both dates and render once (dates or ``YYYY-MM-DD``; bad ones are reported)."""
        self._rendering = True
        self.start, self.end = start, end
        self._rendering = False
        self.render()

    @observe("start", "end")
    def _range_changed(self, change) -> None:
        if not self._rendering:
            self.render()

    @observe("project")
    def _project_changed(self, change) -> None:
        self._show_project()

    def render(self) -> None:
        """Everything for the current range; a bad range leaves the tables as they were and
        says why."""
        t0 = time.perf_counter()
        try:
            view = self.source.manager(self.start, self.end)
        except Exception as e:  # noqa: BLE001 - shown in the page instead of a traceback
            log.exception("manager dashboard render")
            self.error = f"The dashboard could not be drawn: {e}"
            self._error.value = message_html(self.error, "danger")
            return
        if view.range is None:
            self.error = view.message
            self._error.value = message_html(self.error, "danger")
            return
        self.error = ""
        self._error.value = message_html(view.message)
        for table, part in ((self.budgets, view.budgets), (self.usage, view.usage),
                            (self.burndown, view.burndown),
                            (self.utilisation, view.utilisation), (self.waits, view.waits),
                            (self.reserved, view.reserved), (self.calls, view.calls),
                            (self.shares, view.shares)):
            table.show(part.table, part.message)
        self._charts(view)
        projects = (sorted(view.budgets.table["project"]) if view.budgets.table is not None
                    else [])
        if view.usage.table is not None and not view.usage.table.empty:
            projects = sorted(set(projects) | set(view.usage.table["project"]))
        if list(self._project.options) != projects:
            self._project.options = projects
        self._show_project()
        self.last_render_s = time.perf_counter() - t0
        self.status = (f"{view.range} ({view.range.days} days). Budgets as of "
                       f"{stamp(view.budgets.as_of)}, job history as of "
                       f"{stamp(view.usage.as_of)}.")
        self._status.value = f"<p class='wb-status'>{html.escape(self.status)}</p>"

    def _charts(self, view) -> None:
        for chart, part, draw in ((self.budgets_chart, view.budgets, charts.budgets_bar),
                                  (self.burndown_chart, view.burndown, charts.burndown_lines),
                                  (self.utilisation_chart, view.utilisation,
                                   charts.utilisation_lines),
                                  (self.waits_chart, view.waits, charts.waits_bars)):
            if part.table is None or part.table.empty:
                chart.clear()
            else:
                chart.show(draw(part.table))

    def _show_project(self) -> None:
        if not self.project:
            self.project_jobs.value, self.project_jobs.message = None, ""
            return
        try:
            rng = check_range(self.start, self.end)
        except RangeError as e:
            self.project_jobs.message = str(e)
            return
        part: Part = self.source.project_jobs(self.project, rng)
        self.project_jobs.message = part.message
        self.project_jobs.value = part.table
