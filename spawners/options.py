"""The spawn form and the request check of ``SlurmGPUSpawner``: the live cluster as the user
sees it (partitions, GPU types, their accounts and GPU-hours), rendered as a form and used to
validate ``user_options`` before anything is submitted."""

from __future__ import annotations

from jupyterhub.spawner import SpawnException
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable

from workbench import resources
from workbench.allocations import Allocations
from workbench.resources import ClusterView, InvalidRequest, defaults, validate_request
from workbench.slurm import SlurmError

from . import form, presets


async def _apply_user_options(spawner: ClusterOptionsMixin, user_options: dict) -> None:
    await spawner.validate_options(user_options)


class ClusterOptionsMixin(LoggingConfigurable):
    """Form and validation; the spawner provides ``slurm``, ``audit``, ``user``, ``last_end``
    and ``request`` (set here to the validated request)."""

    default_partition = Unicode(
        "gpu",
        help="Partition the spawn form preselects (and the REST API uses when none is "
        "given). Example: 'gpu'.",
    ).tag(config=True)

    allocations_file = Unicode(
        None, allow_none=True,
        help="""The allocations file (programmes, projects, GPU-hour grants) whose budgets the
        form shows and requests are checked against. None (default): looked up at each spawn,
        AIFACTORY_HOME/etc/allocations.yaml if present, else the demo file. Empty: no budget
        check in the hub (Slurm still enforces its limits).
        Example: '/etc/aifactory/allocations.yaml'.""",
    ).tag(config=True)

    cluster_view_age = Float(
        2.0, min=0.0, allow_none=True,
        help="""Seconds of age the spawn form and the check of a start accept from the hub's
        shared node (sinfo) and partition (scontrol) snapshots: starts at the same moment
        share one call of each instead of one of each per start (40 starts at once: 80
        calls). None: both asked for every start. Example: 2.0.""",
    ).tag(config=True)

    @default("options_form")
    def _default_options_form(self):
        return ClusterOptionsMixin.render_options_form

    @default("options_from_form")
    def _default_options_from_form(self):
        return form.options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return _apply_user_options

    # -- the form and validation -----------------------------------------------------------

    def allocations(self) -> Allocations | None:
        """The allocations of :attr:`allocations_file` (None: no budget check here)."""
        return resources.budget_allocations(self.allocations_file, self.log, self._log_name)

    async def budgets(self) -> list:
        """GPU-hours granted, used and left per project (one sacct); [] without a file."""
        return await resources.project_budgets(self.allocations(), self.slurm)

    async def cluster_view(self) -> ClusterView:
        """Partitions, GPU types, this user's accounts and their GPU-hours, from Slurm now."""
        return await resources.cluster_view(self.slurm, self.user.name, self.allocations(),
                                            self.cluster_view_age)

    async def render_options_form(self) -> str:
        try:
            view = await self.cluster_view()
        except SlurmError as e:
            self.log.warning("%s: cannot build the spawn form: %s", self._log_name, e)
            return ('<p class="alert alert-danger">The cluster is not answering right now, so '
                    "no server can be started. Try again in a minute; if it persists, tell "
                    "the AI Factory's support.</p>")
        current = defaults(view, self.default_partition)
        previous = self.orm_spawner.user_options if self.orm_spawner else None
        if previous:
            try:
                current = validate_request(previous, view, self.default_partition).as_options()
            except InvalidRequest:
                pass  # last time's options no longer fit this cluster: offer the defaults
        return form.render_form(view, current, last_end=self.last_end, user=self.user.name,
                                presets=presets.form_presets(self, view))

    preset = None  # the preset the form's choices came from (spawners.form.options_from_form)

    async def validate_options(self, user_options: dict) -> None:
        """Validate ``user_options`` against the live cluster; HTTP 400 if they do not fit.
        A start from a preset marks it last used once its options pass."""
        preset, self.preset = self.preset, None
        try:
            view = await self.cluster_view()
        except SlurmError as e:
            raise SpawnException(
                "The cluster is not answering, so your request cannot be checked. "
                "Try again in a minute.", reason="slurm-unavailable", status_code=503,
                log_message=f"cluster view failed: {e}") from e
        try:
            self.request = validate_request(user_options or {}, view, self.default_partition)
        except InvalidRequest as e:
            self.audit.record(self.user.name, "session.refused", self._log_name,
                              field=e.field, message=e.message)
            raise SpawnException(f"Invalid {e.field}: {e.message}", reason="invalid-options",
                                 status_code=400) from None
        if preset:
            presets.mark_used(self, preset)
