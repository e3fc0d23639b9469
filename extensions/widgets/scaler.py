"""``ClusterScaler``: a panel over :class:`~workbench.scaling.cluster.PoolCluster` and
:func:`~workbench.scaling.torchrun.torch_submit`, for ``af.ClusterScaler()`` in JupyterLab.

A view over plain objects that work without it (as ``distributed``'s cluster widget sits over
``Cluster``): every button calls the cluster's own ``scale``/``adapt`` or ``torch_submit``, so
the widget adds no rule of its own. The choices come from the spawn form's cluster view and
every request goes through its check; a refused one shows the reason, and what would fit, in
the panel's status line, and nothing is submitted.

The live table reads the kernel's one job snapshot (:func:`workbench.scaling.session.
session_jobs`), never a ``squeue`` of its own: however many panels a kernel shows, and whatever
their ``refresh_s``, the controller sees at most one ``squeue`` per
:data:`~workbench.scaling.session.SESSION_PERIOD` from it.
"""

from __future__ import annotations

import html
import logging
import threading
import time

import ipywidgets as w
from traitlets import Float, Instance, Int, List, Unicode, observe

from workbench.resources import InvalidRequest
from workbench.scaling.pools import (
    ScalingError,
    WorkerPool,
    check_nodes,
    check_pool,
    check_total,
)
from workbench.scaling.session import NotInSession, Session
from workbench.slurm import SlurmError

log = logging.getLogger(__name__)

#: what the panel starts with when no pools are given: CPU workers for data, GPU workers
DEFAULT_POOLS = (WorkerPool("cpu", "cpu", cpus=2, memory="4G", runtime="01:00:00"),
                 WorkerPool("gpu", "gpu", gpus=1, cpus=2, memory="8G", runtime="01:00:00"))
DEFAULT_COUNTS = {"cpu": 2, "gpu": 1}


class PoolRow(w.HBox):
    """One worker group: partition, GPU type, GPUs, CPUs, memory, walltime, count,
    adaptive minimum and maximum."""

    def __init__(self, pool: WorkerPool, count: int, view):
        self.view = view
        layout = {"width": "7em"}
        self.name = w.Text(pool.name, description="", layout={"width": "5em"})
        self.partition = w.Dropdown(options=list(view.partitions), value=pool.partition
                                    if pool.partition in view.partitions else None,
                                    layout={"width": "8em"})
        self.gpu_type = w.Dropdown(layout={"width": "6em"})
        self.gpus = w.BoundedIntText(pool.gpus, min=0, max=64, layout=layout)
        self.cpus = w.BoundedIntText(pool.cpus, min=1, max=1024, layout=layout)
        self.memory = w.Text(pool.memory, layout=layout)
        self.runtime = w.Text(pool.runtime, layout={"width": "8em"})
        self.count = w.BoundedIntText(count, min=0, max=1000, layout=layout)
        self.minimum = w.BoundedIntText(0, min=0, max=1000, layout=layout)
        self.maximum = w.BoundedIntText(max(count, 1), min=0, max=1000, layout=layout)
        self._types(pool.gpu_type)
        self.partition.observe(lambda _: self._types(""), names="value")
        super().__init__([self.name, self.partition, self.gpu_type, self.gpus, self.cpus,
                          self.memory, self.runtime, self.count, self.minimum, self.maximum])

    def _types(self, wanted: str) -> None:
        offer = self.view.partitions.get(self.partition.value)
        types = list(offer.gpu_types) if offer else []
        self.gpu_type.options = types or [""]
        self.gpu_type.value = wanted if wanted in types else (types[0] if types else "")

    @property
    def pool(self) -> WorkerPool:
        return WorkerPool(self.name.value.strip(), self.partition.value or "", self.gpus.value,
                          self.gpu_type.value or "", self.cpus.value, self.memory.value.strip(),
                          self.runtime.value.strip())


HEADER = ("group", "partition", "GPU type", "GPUs", "CPUs", "memory", "walltime", "count",
          "adapt min", "adapt max")


class ClusterScaler(w.VBox):
    """Scale Dask workers across partitions, or run a function with torch.distributed.

    Traits: ``engine`` ("dask" or "torch"), ``account`` (the project charged), ``status``
    (the last message, errors included), ``cost_hours`` (GPU-hours of the request as filled
    in), ``n_workers`` (Dask workers connected now), ``job_ids`` (the worker jobs, or the torch
    run's job), ``rows`` (the worker table as dicts). ``scaler.cluster`` is the plain
    :class:`PoolCluster`, ``scaler.client`` a ``distributed.Client`` on it, ``scaler.result``
    rank 0's result of the last torch run. ``refresh_s``: seconds between redraws of the
    table (the queue itself is read from the kernel's shared snapshot, at most every
    :data:`~workbench.scaling.session.SESSION_PERIOD` s whatever this is).
    """

    engine = Unicode("dask")
    account = Unicode("")
    status = Unicode("")
    cost_hours = Float(0.0)
    n_workers = Int(0)
    job_ids = List()
    rows = List()
    cluster = Instance(object, allow_none=True)

    def __init__(self, pools=None, account: str | None = None, *, cluster=None,
                 session: Session | None = None, function=None, counts=None,
                 refresh_s: float = 3.0, allocations_file: str | None = None, **kwargs):
        self.session = session or (cluster.session if cluster is not None else
                                   Session.current())
        self.allocations_file = allocations_file
        self.view = self.session.cluster_view(allocations_file)
        self.function = function
        self.result = None
        self.run = None
        self._client = None
        self._owns_cluster = cluster is None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._known: dict[int, float] = {}  # worker job id -> when this panel first saw it
        self.refresh_s = refresh_s
        if cluster is not None:
            pools = [p.pool for p in cluster.pools.values()]
            counts = counts or cluster.pool_sizes()
        pools = [p if isinstance(p, WorkerPool) else WorkerPool.from_dict(p)
                 for p in (pools or DEFAULT_POOLS)]
        counts = counts or DEFAULT_COUNTS

        self.engine_buttons = w.ToggleButtons(options=[("Dask", "dask"), ("PyTorch", "torch")],
                                              value="dask")
        self.account_select = w.Dropdown(options=list(self.view.accounts),
                                         description="Project")
        self.pool_rows = [PoolRow(p, counts.get(p.name, 0), self.view) for p in pools]
        header = w.HBox([w.HTML(f"<b>{h}</b>", layout={"width": width}) for h, width in zip(
            HEADER, ("5em", "8em", "6em", "7em", "7em", "7em", "8em", "7em", "7em", "7em"),
            strict=True)])
        self.cost_line = w.HTML()
        self.scale_button = w.Button(description="Scale", button_style="primary")
        self.adapt_button = w.Button(description="Adapt")
        self.run_button = w.Button(description="Run", button_style="primary")
        self.stop_button = w.Button(description="Stop", button_style="warning")
        self.status_line = w.HTML()
        self.dashboard = w.HTML()
        self.table = w.HTML()
        self.logs = w.HTML()
        self.buttons = w.HBox([self.scale_button, self.adapt_button, self.stop_button])

        self.cluster = cluster
        self.scale_button.on_click(lambda _: self._act(self.scale))
        self.adapt_button.on_click(lambda _: self._act(self.adapt))
        self.run_button.on_click(lambda _: self._act(self.start_run))
        self.stop_button.on_click(lambda _: self._act(self.stop))
        self.engine_buttons.observe(self._engine_picked, names="value")
        self.account_select.observe(lambda ch: setattr(self, "account", ch["new"] or ""),
                                    names="value")
        for row in self.pool_rows:
            for child in row.children:
                child.observe(lambda _: self.update_cost(), names="value")
        if account is not None:
            self.account_select.value = account if account in self.view.accounts else None
        self.account = self.account_select.value or ""
        super().__init__([w.HTML("<h3>Workers</h3>"), self.engine_buttons, self.account_select,
                          header, *self.pool_rows, self.cost_line, self.buttons,
                          self.status_line, self.dashboard, self.table, self.logs], **kwargs)
        if self.cluster is None:
            # the scheduler starts with the panel (as a dask-jobqueue cluster does), so that
            # Scale only checks the request and submits; a bad row waits for Scale
            try:
                self.ensure_cluster()
            except InvalidRequest as e:
                self._say(str(e), error=True)
        self.add_class("workbench-cluster-scaler")
        self.status_line.add_class("workbench-scaler-status")
        self.cost_line.add_class("workbench-scaler-cost")
        self.update_cost()
        self.refresh()
        self._thread = threading.Thread(target=self._refresh_loop, daemon=True,
                                        name="cluster-scaler-refresh")
        self._thread.start()

    # -- state -----------------------------------------------------------------------------

    def _engine_picked(self, change) -> None:
        self.engine = change["new"]

    @observe("engine")
    def _show_engine(self, change) -> None:
        if not hasattr(self, "buttons"):
            return
        if change["new"] == "torch":
            self.buttons.children = [self.run_button, self.stop_button]
        else:
            self.buttons.children = [self.scale_button, self.adapt_button, self.stop_button]
        if self.engine_buttons.value != change["new"]:
            self.engine_buttons.value = change["new"]
        self.update_cost()

    @observe("account")
    def _account(self, change) -> None:
        if hasattr(self, "cost_line"):
            self.update_cost()

    def _say(self, text: str, error: bool = False) -> None:
        self.status = text
        colour = "var(--jp-error-color1, #c00)" if error else "inherit"
        self.status_line.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def _act(self, action) -> None:
        """Run a button's action; a refused request or a Slurm failure becomes the status
        line (no traceback in the notebook)."""
        try:
            action()
        except (InvalidRequest, NotInSession, SlurmError, ValueError) as e:
            self._say(str(e), error=True)
        except RuntimeError as e:
            self._say(f"{type(e).__name__}: {e}", error=True)
        self.refresh()

    def update_cost(self) -> float:
        """The cost of the request as filled in, against the project's GPU-hours left."""
        try:
            planned = self._planned()
            cost = check_total(planned, self.account, self.view)
        except InvalidRequest as e:
            self.cost_line.value = (f'<span style="color:var(--jp-error-color1, #c00)">'
                                    f"{html.escape(str(e))}</span>")
            return self.cost_hours
        self.cost_hours = cost
        budget = self.view.budgets.get(self.account)
        left = (f"; project {self.account} has {budget.remaining_hours:.2f} GPU-hours left"
                if budget is not None else "")
        self.cost_line.value = html.escape(f"This request costs {cost:.2f} GPU-hours{left}.")
        return cost

    def _planned(self):
        if self.engine == "torch":
            row = self.pool_rows[0]
            checked = check_pool(row.pool, self.account, self.view)
            check_nodes(row.count.value, checked.request, self.view, "count", row.pool.name)
            return [(checked, row.count.value)]
        return [(check_pool(r.pool, self.account, self.view, r.count.value), r.count.value)
                for r in self.pool_rows]

    # -- actions (the buttons) -------------------------------------------------------------

    def ensure_cluster(self):
        """The cluster, created (without workers) from the rows on first use."""
        if self.cluster is None:
            from workbench.scaling.cluster import PoolCluster

            for r in self.pool_rows:  # refuse a bad row before a scheduler starts
                check_pool(r.pool, self.account, self.view)
            self.cluster = PoolCluster([r.pool for r in self.pool_rows], self.account,
                                       session=self.session, view=self.view,
                                       allocations_file=self.allocations_file)
        else:
            for r in self.pool_rows:
                self.cluster.define_pool(r.pool)
        return self.cluster

    def scale(self) -> None:
        """Scale every group to its count (checked as a whole first)."""
        cluster = self.ensure_cluster()
        sizes = {r.pool.name: r.count.value for r in self.pool_rows}
        cluster.scale(sizes)
        self._say("Scaling to " + ", ".join(f"{n} {p}" for p, n in sizes.items()) + ".")

    def adapt(self) -> None:
        """Adaptive scaling of every group with a maximum above 0, between its min and max."""
        cluster = self.ensure_cluster()
        done = []
        for r in self.pool_rows:
            if r.maximum.value > 0:
                cluster.adapt(pool=r.pool.name, minimum=r.minimum.value,
                              maximum=r.maximum.value)
                done.append(f"{r.pool.name} {r.minimum.value}-{r.maximum.value}")
        self._say("Adaptive: " + (", ".join(done) or "no group has a maximum above 0") + ".")

    def start_run(self) -> None:
        """PyTorch: run ``function`` on count nodes of the first group (one rank per GPU)."""
        from workbench.scaling.torchrun import torch_submit

        if self.function is None:
            raise ScalingError("function", "give the function to run: "
                               "ClusterScaler(function=train) or scaler.function = train")
        if self.run is not None and not self.run.done():
            raise ScalingError("function", f"torch run job {self.run.job_id} is still running: "
                               "stop it first")
        row = self.pool_rows[0]
        p = row.pool
        self.result = None
        self.run = torch_submit(self.function, nodes=row.count.value, gpus_per_node=p.gpus,
                                partition=p.partition, gpu_type=p.gpu_type,
                                cpus_per_task=max(1, p.cpus // max(p.gpus, 1)),
                                memory=p.memory, runtime=p.runtime, account=self.account,
                                session=self.session, allocations_file=self.allocations_file)
        self._say(f"Submitted torch run job {self.run.job_id}.")

    def stop(self) -> None:
        """Dask: every group to 0 workers (the scheduler and client stay); PyTorch: cancel."""
        if self.engine == "torch":
            if self.run is not None:
                self.run.cancel()
                self._say(f"Cancelled torch run job {self.run.job_id}.")
            return
        if self.cluster is not None:
            self.cluster.scale(0)
            self._say("Stopped: every worker job cancelled.")

    @property
    def client(self):
        """A ``distributed.Client`` of the cluster (created on first use)."""
        if self._client is None:
            from distributed import Client

            self._client = Client(self.ensure_cluster())
        return self._client

    # -- the live table --------------------------------------------------------------------

    def refresh(self) -> None:
        """Redraw the worker table from the kernel's shared job snapshot (one ``squeue`` per
        :data:`~workbench.scaling.session.SESSION_PERIOD` for every panel of the kernel)."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._refresh()
        except SlurmError as e:
            self._say(f"Slurm is not answering, the table may be stale: {e}", error=True)
        finally:
            self._lock.release()

    def _refresh(self) -> None:
        if self.engine == "torch" and self.run is not None:
            self._show_run(self.session.jobs.read())
            return
        if self.cluster is None:
            self.table.value = "<p>No workers yet: press Scale or Adapt.</p>"
            return
        snapshot = self.session.jobs
        jobs = list(snapshot.read().values())
        # job ids this panel first saw after the snapshot's query started are newer than it
        now = time.monotonic()
        for job_id in self.cluster.job_ids().values():
            self._known.setdefault(job_id, now)
        read_at = now - snapshot.age
        rows = self.cluster.worker_rows(jobs, {j for j, t in self._known.items() if t > read_at})
        self.rows = [r.as_dict() for r in rows]
        self.job_ids = [r.job_id for r in rows if r.job_id]
        self.n_workers = sum(r.connected for r in rows)
        link = self.cluster.dashboard_link
        self.dashboard.value = (f'Dask dashboard: <a href="{html.escape(link)}" '
                                f'target="_blank">{html.escape(link)}</a>')
        self.table.value = _table(
            ("worker", "Slurm job", "partition", "node", "state", "GPUs", "connected", "why"),
            [(r.name, r.job_id or "", r.partition, r.node, r.state, r.gpus,
              "yes" if r.connected else "no", r.why) for r in rows])

    def _show_run(self, jobs: dict) -> None:
        from workbench.waits import describe_pending

        run = self.run
        job = jobs.get(int(run.job_id))
        state = job.state.value if job else "ENDED"
        why = describe_pending(job.reason) if job and job.state.is_pending else ""
        self.job_ids = [int(run.job_id)]
        self.rows = [{"job_id": int(run.job_id), "state": state, "node": job.nodes if job else "",
                      "why": why}]
        self.table.value = _table(("Slurm job", "partition", "nodes", "state", "GPUs", "why"),
                                  [(run.job_id, job.partition if job else "",
                                    job.nodes if job else "", state, job.gpus if job else "",
                                    why)])
        logs = "".join(f"<b>rank {r}</b><pre>{html.escape(run.logs(r)[-2000:])}</pre>"
                       for r in range(run.ranks))
        self.logs.value = logs
        ended = job is None or not job.state.is_active  # squeue keeps ended jobs a while
        if ended and self.result is None and run.done():
            try:
                self.result = run.result()
                self._say(f"Torch run job {run.job_id} finished: scaler.result holds rank 0's "
                          "result.")
            except RuntimeError as e:
                self._say(str(e), error=True)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.refresh()

    def close(self) -> None:
        """Stop the refresh; close the client and the cluster this panel created."""
        self._stop.set()
        if self._client is not None:
            self._client.close()
        if self._owns_cluster and self.cluster is not None:
            self.cluster.close()
        super().close()


def _table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return ('<style>.workbench-workers th,.workbench-workers td{padding:2px 12px 2px 4px;'
            'text-align:left}</style>'
            f'<table class="workbench-workers"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")
