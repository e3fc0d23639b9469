"""The catalogue as the service serves it: search, details, licence acceptance and open, for
one caller at a time, with the reason for every refusal and an audit record for every
decision that matters. The Tornado handlers (``extensions/catalogue``) only translate HTTP.

The catalogue file and the allocations file are re-read when they change on disk (the
allocations through :func:`workbench.allocations.loader.cached`); file sizes and checksums of
the distributions come from the shared storage (cached by mtime and size). Licence
acceptances live in the audit store (:class:`.policy.LicenceStore`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..audit import AuditLog
from ..slurm import SlurmClient, SlurmError
from . import fsaccess, lineage
from .model import ID_RE, Catalogue, Dataset, load
from .policy import Access, Decision, LicenceStore, Membership, acceptors_by_dataset, decide

log = logging.getLogger(__name__)


class Refusal(Exception):
    """A request the store turns down: ``status`` (400, 403, 404) and a message for the caller."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class _Watched:
    """A value re-read from a file when the file's mtime or size changes.

    The first read is the caller's (the service reads its catalogue before it listens). A
    change is read in a thread of its own while requests go on being answered from what the
    file said before: the request that notices the change waits up to ``wait`` seconds for
    it (a small catalogue: its answer already has the change), later ones do not wait (a
    catalogue of 100,000 datasets takes about a minute to read). A file that cannot be read
    leaves the last value in place, said in the log.
    """

    def __init__(self, path: Callable[[], Path], read: Callable[[Path], object],
                 wait: float = 0.5):
        self.path, self.read, self.wait = path, read, wait
        self._key: tuple | None = None
        self._value: object = None
        self._reading: threading.Thread | None = None
        self._guard = threading.Lock()

    def get(self):
        path = self.path()
        key = self._key_of(path)
        if self._key is None:
            self._value = self.read(path)
            self._key = key
            return self._value
        if key != self._key:
            with self._guard:
                started = self._reading is None
                if started:
                    self._reading = threading.Thread(
                        target=self._reread, args=(path, key), daemon=True,
                        name=f"reread {path.name}")
                    self._reading.start()
                reading = self._reading
            if started and reading is not None:
                reading.join(self.wait)
        return self._value

    @staticmethod
    def _key_of(path: Path) -> tuple:
        try:
            st = path.stat()
            return (str(path), st.st_mtime_ns, st.st_size)
        except OSError:
            return (str(path), None, None)

    def _reread(self, path: Path, key: tuple) -> None:
        started = time.monotonic()
        try:
            self._value = self.read(path)
            log.info("%s re-read in %.1f s", path, time.monotonic() - started)
        except (OSError, ValueError) as e:  # CatalogueError
            log.error("%s: %s; serving what it said before", path, e)
        finally:
            with self._guard:
                self._key = key  # a failed read is tried again when the file changes again
                self._reading = None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class CatalogueStore:
    """What the service knows; every method takes the caller's user name."""

    def __init__(self, catalogue_path: Path | None, root: Path, audit: AuditLog,
                 slurm: SlurmClient | None, licences: LicenceStore | None = None,
                 allocations_path: Path | None = None,
                 membership: Callable[[], Membership] | None = None,
                 enforce: bool = True):
        from . import model

        self.root = root
        self.audit = audit
        self.slurm = slurm
        self.licences = licences or LicenceStore(audit)
        self.enforce = enforce  # set the ACLs on licence acceptance (the service runs as root)
        self._files: dict[str, tuple[tuple, int, str]] = {}
        self._tasks: set[asyncio.Future] = set()
        self._attach_lock = asyncio.Lock()
        self._catalogue = _Watched(lambda: catalogue_path or model.default_path(), self._load)
        self._allocations_path = allocations_path
        self._members: tuple[object, Membership] | None = None  # (Allocations, from it)
        self._members_error: str | None = None
        self.membership = membership or self._membership

    def _membership(self) -> Membership:
        """The allocations file's projects; while the file is unusable, what it said last
        (the error logged once), as long as it was ever readable."""
        from ..allocations.loader import AllocationError, cached

        try:
            allocs = cached(self._allocations_path, check_users=True)
        except AllocationError as e:
            if self._members is None:
                raise
            if str(e) != self._members_error:
                log.error("%s; serving what it said before", e)
                self._members_error = str(e)
            return self._members[1]
        self._members_error = None
        if self._members is None or self._members[0] is not allocs:
            self._members = (allocs, Membership.from_allocations(allocs))
        return self._members[1]

    # -- the catalogue ----------------------------------------------------------------------

    def _load(self, path: Path) -> Catalogue:
        cat = load(path)
        for err in cat.errors:
            log.warning("catalogue: skipped %s", err)
        cat = replace(cat, datasets=tuple(self._with_files(d) for d in cat.datasets))
        cat.index  # built here, with the catalogue, not by the first search  # noqa: B018
        return cat

    def _with_files(self, d: Dataset) -> Dataset:
        """The dataset with each distribution's byte size and checksum from the storage."""
        dists = []
        for dist in d.distributions:
            path = self.root / d.id / dist.file
            try:
                st = path.stat()
            except OSError:
                dists.append(dist)
                continue
            key = (st.st_mtime_ns, st.st_size)
            cached = self._files.get(str(path))
            if cached is None or cached[0] != key:
                cached = (key, st.st_size, _sha256(path))
                self._files[str(path)] = cached
            dists.append(replace(dist, byte_size=cached[1], checksum=cached[2]))
        return replace(d, distributions=tuple(dists))

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue.get()  # type: ignore[return-value]

    def dataset(self, dataset_id: str) -> Dataset:
        if not isinstance(dataset_id, str) or not ID_RE.fullmatch(dataset_id):
            raise Refusal(400, f"{dataset_id[:80]!r} is not a dataset id (lower-case letters, "
                          "digits and '-')")
        d = self.catalogue.get(dataset_id)
        if d is None:
            raise Refusal(404, f"no dataset {dataset_id} in the catalogue")
        return d

    # -- what a caller sees ---------------------------------------------------------------

    def decision(self, d: Dataset, user: str, project: str | None = None) -> Decision:
        accepted = d.access.licence_acceptance and self.licences.accepted(d, user)
        return decide(d, user, self.membership(), accepted, project)

    def summary(self, d: Dataset, decision: Decision) -> dict:
        return {**d.metadata(), "access": decision.as_dict()}

    def list(self, user: str, project: str | None = None, offset: int = 0,
             limit: int | None = None, **filters) -> tuple[list[dict], int]:
        """One page (``offset``, ``limit``) of the datasets matching ``filters``, each with
        this caller's access, and how many match in all."""
        found = self.catalogue.find(**filters)
        page = found.page(offset, limit)
        if not page:
            return [], len(found)
        membership = self.membership()
        accepted = self.licences.all()
        out = []
        for d in page:
            ok = accepted.get(d.id, {}).get(user) == d.licence
            out.append(self.summary(d, decide(d, user, membership, ok, project)))
        return out, len(found)

    def details(self, user: str, dataset_id: str, project: str | None = None) -> dict:
        d = self.dataset(dataset_id)
        decision = self.decision(d, user, project)
        out = self.summary(d, decision)
        if d.access.licence_acceptance:
            out["licence_text"] = d.access.licence_text
        if decision.access is Access.ALLOWED:
            out["path"] = str(self.root / d.id)
            out["distributions"] = self._distributions(d)
        return out

    def _distributions(self, d: Dataset) -> list[dict]:
        return [{**dist.as_dict(), "path": str(self.root / d.id / dist.file)}
                for dist in d.distributions]

    # -- acting ---------------------------------------------------------------------------

    def accept_licence(self, user: str, dataset_id: str) -> dict:
        d = self.dataset(dataset_id)
        if not d.access.licence_acceptance:
            raise Refusal(400, f"dataset {d.id} needs no licence acceptance; open it")
        decision = self.decision(d, user)
        if decision.access is Access.REFUSED:
            self.audit.record(user, lineage.REFUSED, d.id, reason=decision.reason,
                              step="licence")
            raise Refusal(403, decision.reason)
        new = self.licences.accept(d, user, project=decision.project)  # the audit record
        if self.enforce:
            self.sync_access(d.id)
        return {"id": d.id, "licence": d.licence, "accepted": True, "new": new,
                "access": self.decision(d, user).as_dict()}

    def sync_access(self, only: str | None = None) -> list[str]:
        """Make the dataset directories' ACLs match (one dataset, or all)."""
        cat = self.catalogue
        changes = fsaccess.sync_datasets(cat, self.membership(),
                                         acceptors_by_dataset(self.licences, cat.datasets),
                                         self.root, only=only)
        return [c.summary for c in changes]

    async def open(self, user: str, dataset_id: str, job_id: int | None = None,
                   node: str | None = None, project: str | None = None) -> dict:
        d = self.dataset(dataset_id)
        ctx = lineage.JobContext(None, node, None)
        if job_id is not None:
            if self.slurm is None:
                raise Refusal(400, "this catalogue cannot check Slurm jobs")
            try:
                ctx = await lineage.check_job(self.slurm, user, job_id, node)
            except lineage.JobCheckError as e:
                raise Refusal(400, str(e)) from e
            except SlurmError as e:
                log.warning("cannot check job %s of %s: %s", job_id, user, e)
                raise Refusal(503, f"Slurm does not answer, so job {job_id} cannot be "
                              "checked; try again in a minute") from e
            project = ctx.account
        decision = self.decision(d, user, project)
        if decision.access is not Access.ALLOWED:
            self.audit.record(user, lineage.REFUSED, d.id, reason=decision.reason,
                              job_id=ctx.job_id, node=ctx.node, project=project)
            raise Refusal(403, decision.reason, access=decision.access.value)
        files = self._distributions(d)
        lineage.record_open(self.audit, user, d.id, decision.project, ctx,
                            [f["file"] for f in files])
        attached = None
        if ctx.job_id is not None:
            # the job's AdminComment follows after the answer (one scontrol at a time, each
            # writing every dataset the audit trail has for the job, so the last is whole)
            attached = lineage.admin_comment(lineage.job_datasets(self.audit, ctx.job_id, user))
            task = asyncio.ensure_future(self._attach(ctx.job_id, user, d.id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return {"id": d.id, "path": str(self.root / d.id), "distributions": files,
                "meta": d.metadata(), "project": decision.project, "job_id": ctx.job_id,
                "node": ctx.node, "job_admin_comment": attached}


    async def _attach(self, job_id: int, user: str, dataset_id: str) -> None:
        async with self._attach_lock:
            try:
                await lineage.attach_to_job(self.slurm, self.audit, job_id, user)
            except SlurmError as e:  # the audit trail has it; the job's comment is a copy
                log.warning("dataset %s opened by %s in job %s: AdminComment not set: %s",
                            dataset_id, user, job_id, e)
