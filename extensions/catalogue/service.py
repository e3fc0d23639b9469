"""The ``catalogue`` hub service: governed datasets for every hub user.

API (JSON, under ``/services/catalogue/api/``; the caller's own hub token or OAuth cookie):

- ``GET datasets`` (``q``, ``theme``, ``licence``, ``format``, ``personal_data``,
  ``data_space``, ``project``; ``offset`` and ``limit``, 100 by default, at most 10,000):
  a page of the matching datasets, each with ``access`` for this caller: ``{"status":
  "allowed" | "licence-required" | "refused", "reason": ..., "project": ...}``, and
  ``count``, how many match in all;
- ``GET datasets/{id}`` (``project``): the same for one dataset, plus its licence text when
  it must be accepted, and its path and distributions when the caller may read it;
- ``POST datasets/{id}/licence`` ``{"accept": true}``: accept its licence (the file system
  opens the data to the caller at once);
- ``POST datasets/{id}/open`` ``{"job_id": N, "node": "h100-1", "project": "..."}``: 200 with
  the path and distributions, or 403 ``{"message": ...}`` naming the rule; recorded in the
  audit trail and attached to the job (lineage);
- ``GET catalogue.jsonld``: the whole catalogue as DCAT-AP JSON-LD.
- ``GET openapi.json``: this API as an OpenAPI 3 document (:mod:`.openapi`).

Unknown ids are 404; unknown or repeated parameters, ``offset``/``limit`` not in digits 0-9,
malformed bodies (:mod:`workbench.webinput`) 400, a body over 64 KiB 413; a path is only ever
returned for a dataset the caller may read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from traitlets import Bool, Unicode, default
from traitlets.config import Application

from extensions.catalogue.openapi import DOCUMENT, MAX_NAME, MAX_QUERY
from extensions.hubservice import APIHandler, OpenAPIHandler, ServiceError, serve
from workbench.audit import AuditLog
from workbench.catalogue import jsonld
from workbench.catalogue.fsaccess import datasets_root
from workbench.catalogue.model import FORMATS, THEMES
from workbench.catalogue.policy import LicenceStore
from workbench.catalogue.store import CatalogueStore, Refusal
from workbench.paths import FactoryHome
from workbench.slurm import SlurmClient
from workbench.webinput import query_int, whole

log = logging.getLogger("extensions.catalogue")

#: query parameters of GET datasets (each at most MAX_QUERY characters, a project MAX_NAME)
QUERY_PARAMS = ("q", "theme", "licence", "format", "personal_data", "data_space", "project",
                "offset", "limit")
#: query parameters of GET datasets/{id}
DATASET_PARAMS = ("project",)
#: datasets per page of GET datasets: by default, and at most
PAGE, MAX_PAGE = 100, 10_000
_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


def check_name(key: str, value) -> None:
    """A project or node name, wherever it is given: printable text of at most MAX_NAME
    characters; else 400 naming ``key``."""
    if not isinstance(value, str) or len(value) > MAX_NAME or not value.isprintable():
        raise ServiceError(400, f"{key} must be a name of at most {MAX_NAME} characters")


class CatalogueHandler(APIHandler):
    refusals = (*APIHandler.refusals, Refusal)

    @property
    def store(self) -> CatalogueStore:
        return self.settings["store"]


    def query(self, allowed: tuple[str, ...]) -> dict[str, str]:
        """The query parameters, each once, known, one line of UTF-8 text; else 400."""
        args = self.request.query_arguments
        unknown = sorted(set(args) - set(allowed))
        if unknown:
            raise ServiceError(400, f"unknown query parameter {unknown[0][:40]!r}; allowed: "
                               f"{', '.join(allowed)}")
        out = {}
        for key, values in args.items():
            if len(values) != 1:
                raise ServiceError(400, f"give {key} once")
            try:
                value = values[0].decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise ServiceError(400, f"{key} is not UTF-8 text") from e
            if len(value) > MAX_QUERY or any(ord(c) < 32 for c in value):
                raise ServiceError(400, f"{key} must be one line of at most {MAX_QUERY} "
                                   "characters")
            out[key] = value
        if "project" in out:
            check_name("project", out["project"])
        return out

    def filters(self) -> dict:
        out = self.query(QUERY_PARAMS)
        if out.get("theme") and out["theme"].upper() not in THEMES:
            raise ServiceError(400, f"theme {out['theme'][:40]!r} is not an EU data theme; "
                               f"allowed: {', '.join(sorted(THEMES))}")
        if out.get("format") and out["format"].upper() not in FORMATS:
            raise ServiceError(400, f"format {out['format'][:40]!r}; allowed: "
                               f"{', '.join(sorted(FORMATS))}")
        if "personal_data" in out:
            flag = out["personal_data"].lower()
            if flag not in _TRUE | _FALSE:
                raise ServiceError(400, "personal_data must be true or false")
            out["personal_data"] = flag in _TRUE
        if "format" in out:
            out["fmt"] = out.pop("format")
        out["offset"] = query_int("offset", out.get("offset", "0"))
        out["limit"] = query_int("limit", out.get("limit", str(PAGE)), 1, MAX_PAGE)
        return out

    def body(self) -> dict:
        data = self.json_body()
        if not isinstance(data, dict):
            raise ServiceError(400, "the body must be a JSON object")
        return data


class DatasetsHandler(CatalogueHandler):
    def get(self):
        filters = self.filters()
        project = filters.pop("project", None)
        page, total = self.store.list(self.user, project=project, **filters)
        self.write_json({"datasets": page, "count": total, "offset": filters["offset"],
                         "limit": filters["limit"]})


class DatasetHandler(CatalogueHandler):
    def get(self, dataset_id):
        project = self.query(DATASET_PARAMS).get("project")
        self.write_json(self.store.details(self.user, dataset_id, project))


class LicenceHandler(CatalogueHandler):
    def post(self, dataset_id):
        body = self.body()
        unknown = set(body) - {"accept"}
        if unknown or body.get("accept") is not True:
            raise ServiceError(400, 'send {"accept": true} to accept the licence')
        self.write_json(self.store.accept_licence(self.user, dataset_id))


class OpenHandler(CatalogueHandler):
    async def post(self, dataset_id):
        body = self.body()
        unknown = sorted(set(body) - {"job_id", "node", "project"})
        if unknown:
            raise ServiceError(400, f"unknown field {unknown[0][:40]!r}; allowed: job_id, "
                               "node, project")
        job_id = body.get("job_id")
        if job_id is not None:
            if isinstance(job_id, str):
                job_id = whole(job_id.strip())
            if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id <= 0:
                raise ServiceError(400, "job_id must be a Slurm job id (a whole number)")
        for key in ("node", "project"):
            if body.get(key) is not None:
                check_name(key, body[key])
        self.write_json(await self.store.open(self.user, dataset_id, job_id,
                                              body.get("node"), body.get("project")))


class JsonLdHandler(CatalogueHandler):
    def get(self):
        store = self.store
        base = f"{self.request.protocol}://{self.request.host}" \
               f"{self.settings['service_prefix']}api/"
        membership = store.membership()
        allowed = {d.id for d in store.catalogue.datasets
                   if store.decision(d, self.user).access.value == "allowed"} \
            if membership.projects_of(self.user) else set()
        doc = jsonld.catalogue_document(store.catalogue, base, store.root, allowed)
        self.set_status(200)
        self.set_header("Content-Type", "application/ld+json")
        self.set_header("Cache-Control", "no-store")
        self.finish(jsonld.dumps(doc))


ROUTES = [
    (r"api/openapi.json", OpenAPIHandler),
    (r"api/datasets", DatasetsHandler),
    (r"api/datasets/([^/]+)", DatasetHandler),
    (r"api/datasets/([^/]+)/licence", LicenceHandler),
    (r"api/datasets/([^/]+)/open", OpenHandler),
    (r"api/catalogue.jsonld", JsonLdHandler),
]


class CatalogueService(Application):
    """Run the catalogue service (``workbench up`` starts it with the hub's environment)."""

    name = "workbench-catalogue"
    description = __doc__

    catalogue = Unicode(
        help="""The catalogue file. Default: $AIFACTORY_HOME/etc/catalogue.yaml if present,
        else the demo's cluster/catalogue.yaml. Example: '/etc/aifactory/catalogue.yaml'.""",
    ).tag(config=True)

    allocations = Unicode(
        help="""The allocations file (who is in which project and programme). Default: as
        `workbench allocations` finds it. Example: '/var/lib/aifactory/etc/allocations.yaml'.""",
    ).tag(config=True)

    datasets_root = Unicode(
        help="""Where the datasets live on the cluster's shared storage, one directory per
        dataset id. Default: $AIFACTORY_HOME/datasets. Example: '/shared/datasets'.""",
    ).tag(config=True)

    @default("datasets_root")
    def _default_root(self):
        return str(datasets_root())

    licences = Unicode(
        help="""The JSON file earlier versions kept the licence acceptances in: imported
        once into the audit store (audit_db, which holds them now) when found, then renamed
        with '.imported' added. Default: $AIFACTORY_HOME/catalogue/licences.json.
        Example: '/var/lib/aifactory/catalogue/licences.json'.""",
    ).tag(config=True)

    @default("licences")
    def _default_licences(self):
        return str(FactoryHome.from_env().root / "catalogue" / "licences.json")

    audit_db = Unicode(
        help="""The one audit store (workbench.audit): a SQLite file or a SQLAlchemy URL
        (the site's database, $WORKBENCH_DATABASE_URL, wins). Default: that, else
        $AIFACTORY_HOME/hub/audit.sqlite.
        Example: 'postgresql+psycopg://audit@db/workbench'.""",
    ).tag(config=True)

    @default("audit_db")
    def _default_audit_db(self):
        return FactoryHome.from_env().audit_db

    slurm_conf = Unicode(
        help="The cluster's slurm.conf. Default: $SLURM_CONF. Example: '/etc/slurm/slurm.conf'.",
    ).tag(config=True)

    enforce = Bool(
        True,
        help="""Set the dataset directories' ACLs when a licence is accepted (needs root).
        False only for a catalogue that serves metadata. Example: True.""",
    ).tag(config=True)

    aliases = {"catalogue": "CatalogueService.catalogue",
               "datasets-root": "CatalogueService.datasets_root",
               "allocations": "CatalogueService.allocations"}

    def make_store(self) -> CatalogueStore:
        slurm = SlurmClient(slurm_conf=self.slurm_conf or os.environ.get("SLURM_CONF") or None)
        audit = AuditLog(self.audit_db)
        return CatalogueStore(
            Path(self.catalogue) if self.catalogue else None, Path(self.datasets_root),
            audit, slurm, LicenceStore(audit, legacy=self.licences),
            Path(self.allocations) if self.allocations else None, enforce=self.enforce)

    def start(self):
        store = self.make_store()
        cat = store.catalogue  # read (and checksum) before listening
        log.info("catalogue %s: %d datasets, %d skipped", cat.path, len(cat.datasets),
                 len(cat.errors))
        serve(ROUTES, {"store": store, "openapi": DOCUMENT,
                       "service_prefix": os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")})


def main(argv=None):
    CatalogueService.launch_instance(argv)


__all__ = ["CatalogueService", "ROUTES", "main"]
