"""The support dashboard: who runs what, what waits and why, the nodes, what failed, and one
user's sessions, jobs and job output. Refreshes by itself."""

from __future__ import annotations

import html
import logging
import time

import ipywidgets as w
from traitlets import Float, Unicode

from workbench.dashboards.joboutput import OutputError, tail
from workbench.dashboards.source import DashboardSource, Part, shared_source

from .common import message_html, stamp, start_timer
from .table import DataTable

log = logging.getLogger(__name__)


class SupportDashboard(w.VBox):
    """Traits: ``refresh_s`` (seconds between refreshes, 0: none), ``user`` (the user shown
    below), ``status`` (the status line's text), ``last_refresh_s`` (how long the last
    refresh took). Children: the sessions, nodes, failed jobs, failed spawns and help-request
    tables, and the per-user part (``user_box``). ``close()`` stops the refresh."""

    refresh_s = Float(10.0)
    user = Unicode("")
    status = Unicode("")
    last_refresh_s = Float(0.0)

    def __init__(self, source: DashboardSource | None = None, refresh_s: float = 10.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.add_class("wb-support")
        self.source = source or shared_source()
        self.refresh_s = refresh_s
        self._status = w.HTML()
        self._refresh_button = w.Button(description="Refresh now", icon="refresh")
        self._refresh_button.on_click(lambda _: self.refresh())
        self.sessions = DataTable("sessions", "Sessions and jobs now")
        self.nodes = DataTable("nodes", "Nodes")
        self.failures = DataTable("failed-jobs", "Failed recently")
        self.failed_spawns = DataTable("failed-spawns", "Failed spawns (Slurm refused the job)")
        self.help_requests = DataTable("help-requests", "Open help requests",
                                       links={"join": "join"})
        # one user
        self.user_input = w.Combobox(placeholder="user name", description="User",
                                     ensure_option=False)
        self.user_button = w.Button(description="Show")
        self.user_button.on_click(lambda _: self.show_user(self.user_input.value))
        self.user_input.on_submit(lambda _: self.show_user(self.user_input.value))
        self._user_msg = w.HTML()
        self.user_sessions = DataTable("user-sessions", "Their sessions and jobs now")
        self.user_jobs = DataTable("user-jobs", "Their recent jobs")
        self.job_pick = w.Dropdown(description="Job", options=[])
        self.job_pick.add_class("wb-job-pick")
        self.output_button = w.Button(description="Show output")
        self.output_button.on_click(lambda _: self.show_output(self.job_pick.value))
        self.output = w.HTML()
        self.user_box = w.VBox([
            w.HTML("<h2>A user</h2>"), w.HBox([self.user_input, self.user_button]),
            self._user_msg, self.user_sessions, self.user_jobs,
            w.HBox([self.job_pick, self.output_button]), self.output])
        self.children = [w.HBox([self._status, self._refresh_button]), self.sessions,
                         self.nodes, self.failures, self.failed_spawns, self.help_requests,
                         self.user_box]
        self._timer = None
        self.refresh()
        if self.refresh_s:
            self._timer = start_timer(self.refresh, self.refresh_s)

    def close(self):
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        super().close()

    @staticmethod
    def _put(table: DataTable, part: Part) -> None:
        table.show(part.table, part.message)

    def refresh(self) -> None:
        """Read the shared caches (Slurm is asked at most once per max_age for everyone)."""
        t0 = time.perf_counter()
        try:
            view = self.source.support()
        except Exception as e:  # noqa: BLE001 - shown in the page instead of a traceback
            log.exception("support dashboard refresh")
            self.status = f"The dashboard could not refresh: {e}"
            self._status.value = message_html(self.status, "danger")
            return
        for table, part in ((self.sessions, view.sessions), (self.nodes, view.nodes),
                            (self.failures, view.failures),
                            (self.failed_spawns, view.failed_spawns),
                            (self.help_requests, view.help_requests)):
            self._put(table, part)
        if view.sessions.table is not None:
            users = sorted(set(view.sessions.table["user"]))
            self.user_input.options = users
        self.last_refresh_s = time.perf_counter() - t0
        self.status = (f"Live state as of {stamp(view.sessions.as_of)}, history as of "
                       f"{stamp(view.failures.as_of)}; refreshes every {self.refresh_s:g} s.")
        self._status.value = f"<p class='wb-status'>{html.escape(self.status)}</p>"
        if self.user:
            self.show_user(self.user, keep_output=True)

    def show_user(self, name: str, keep_output: bool = False) -> None:
        """Show ``name``'s sessions and recent jobs (a message if there is no such user)."""
        view = self.source.user(name)
        self.user = view.user
        self._user_msg.value = message_html(view.message, "info" if view.sessions.table
                                            is not None else "warning")
        self._put(self.user_sessions, view.sessions)
        self._put(self.user_jobs, view.jobs)
        ids = []
        for part in (view.sessions, view.jobs):
            if part.table is not None and not part.table.empty:
                ids += [str(j) for j in part.table["job id"]]
        ids = list(dict.fromkeys(ids))
        if list(self.job_pick.options) != ids:
            self.job_pick.options = ids
        if not keep_output:
            self.output.value = ""

    def show_output(self, job_id: str | None) -> None:
        """The tail of the chosen job's output (read as root, bounded, path-checked)."""
        if not self.user or not job_id:
            self.output.value = message_html("Choose a user and one of their jobs first.")
            return
        try:
            path, text = tail(self.user, job_id)
        except OutputError as e:
            self.output.value = message_html(str(e))
            return
        self.output.value = (f"<p class='wb-output-path'>End of {html.escape(str(path))}:</p>"
                             f"<pre class='wb-output'>{html.escape(text)}</pre>")
