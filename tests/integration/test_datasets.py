"""Governed datasets on the real cluster and hub: the catalogue service, the file system
refusing what the service refuses, licence acceptance reaching a running Slurm job, lineage in
the audit trail and in ``sacct``, and Dask and torch reading a picked dataset."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from workbench.audit import AuditLog
from workbench.catalogue import fsaccess, model
from workbench.catalogue.policy import LicenceStore, Membership
from workbench.hubconfig import Site
from workbench.paths import data_file
from workbench.services import user_service_urls
from workbench.slurm import Query, queries
from workbench.slurm.parse import parse_rows

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

ROOT = fsaccess.datasets_root()
HEALTH = ROOT / "health-records" / "admissions.parquet"
GRID = ROOT / "grid-load" / "grid_load.parquet"


@pytest.fixture
def catalogue(hub_api):
    """``catalogue(user)``: a requests session for the service, through the hub's proxy."""
    def make(user):
        s = hub_api(user)
        s.cat = s.base.replace("/hub/api", "/services/catalogue/api")
        return s
    return make


@pytest.fixture
def bob_has_not_accepted():
    """Withdraw bob's acceptance of the health licence (and the ACL entry with it)."""
    cat = model.load()
    store = LicenceStore()
    store.withdraw(cat.get("health-records"), "bob")
    fsaccess.sync_all(Membership.load(), cat, licences=store)
    yield


def run_in_job(slurm, user, account, code, token, wait_for, tmp_root):
    """Run ``code`` (Python) as ``user`` inside a Slurm job with a session's environment;
    returns (job id, the JSON it printed last, its whole output)."""
    out_dir = tmp_root / user
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(out_dir, user)
    out = out_dir / "job.out"
    script = textwrap.dedent(f"""\
        #!/bin/bash
        #SBATCH --partition=cpu --account={account} --time=10 --mem=3G --cpus-per-task=1
        #SBATCH --job-name=wb-datasets-test --output={out} --comment=not-a-workbench-tag
        exec {sys.executable} - <<'PYTHON'
        """) + textwrap.dedent(code) + "PYTHON\n"
    env = {"AIFACTORY_SERVICES": json.dumps(user_service_urls(Site.from_env())),
           "JUPYTERHUB_API_TOKEN": token, "SLURM_CONF": os.environ.get(
               "SLURM_CONF", str(Site.from_env().home.slurm_conf))}
    job_id = slurm.run(queries.submit(script, user, env))
    def ended():
        end = slurm.run(queries.job_end(job_id))
        return end is not None and end[0].is_finished

    try:
        wait_for(ended, f"job {job_id} ended")
    finally:
        slurm.run(queries.cancel(job_id))
    text = out.read_text()
    last = [line for line in text.splitlines() if line.startswith("{")]
    assert last, text
    return job_id, json.loads(last[-1]), text


def sacct_fields(slurm, job_id, fields="AdminComment,Comment"):
    rows = slurm.run(Query("sacct", ("-nP", "-X", "-j", str(job_id), f"--format={fields}"),
                           parse_rows))
    return rows[0] if rows else None


def ai_act_summary(*args) -> dict:
    proc = subprocess.run([str(Path(sys.executable).parent / "workbench"), "ai-act-summary",
                           *args, "--json"], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def datasets_of(summary: dict) -> list[str]:
    return sorted(e["id"] for entries in summary["sources"].values() for e in entries)


def cat_as(user, path) -> subprocess.CompletedProcess:
    return subprocess.run(["sudo", "-u", user, "cat", str(path)], capture_output=True)


@pytest.fixture
def tmp_root():
    """A directory the jobs' users can write their output to (pytest's is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="wb-datasets-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_datasets_are_on_the_shared_storage_closed_to_others():
    cat = model.load()
    for d in cat.datasets:
        directory = ROOT / d.id
        st = directory.stat()
        assert st.st_uid == 0 and st.st_mode & 0o777 in (0o750, 0o700, 0o550, 0o500), d.id
        assert st.st_mode & 0o007 == 0  # nothing for others
        assert pq.read_metadata(directory / d.distributions[0].file).num_rows > 10_000
    groups = {g: set(m) for g, m in
              ((line.split(":")[0], line.strip().split(":")[3].split(",") if
                line.strip().split(":")[3] else []) for line in
               Path("/etc/group").read_text().splitlines()) if g.startswith("aif-")}
    assert groups["aif-startup-helios"] == {"alice"}
    assert groups["aif-research-medai"] == {"bob"}


def test_alice_is_refused_the_health_set_by_the_api_and_by_the_file_system(
        catalogue, slurm, wait_for, tmp_root, factory_home):
    api = catalogue("alice")
    listed = {d["id"]: d for d in api.get(f"{api.cat}/datasets").json()["datasets"]}
    assert listed["health-records"]["access"]["status"] == "refused"
    assert listed["grid-load"]["access"]["status"] == "allowed"
    r = api.post(f"{api.cat}/datasets/health-records/open", json={})
    assert r.status_code == 403
    assert "programme research" in r.json()["message"]
    assert "startup-helios (programme startups) may not" in r.json()["message"]
    assert str(ROOT) not in r.text
    details = api.get(f"{api.cat}/datasets/health-records").json()
    assert "path" not in details and "distributions" not in details
    assert str(ROOT) not in api.get(f"{api.cat}/datasets").text  # a listing gives no paths
    r = api.post(f"{api.cat}/datasets/health-records/licence", json={"accept": True})
    assert r.status_code == 403  # no acceptance for a refused project either

    # a terminal on the machine: cat as alice
    proc = cat_as("alice", HEALTH)
    assert proc.returncode != 0 and b"Permission denied" in proc.stderr
    listing = subprocess.run(["sudo", "-u", "alice", "ls", str(HEALTH.parent)],
                             capture_output=True)
    assert listing.returncode != 0 and b"Permission denied" in listing.stderr
    assert cat_as("alice", GRID).returncode == 0

    # inside her Slurm job: the client, open(), cat, and the data she may read
    token = api.headers["Authorization"].split()[1]
    job_id, got, text = run_in_job(slurm, "alice", "startup-helios", """
        import json, os, subprocess
        import aifactory as af
        out = {"node": os.environ["SLURMD_NODENAME"]}
        try:
            af.open_dataset("health-records")
        except PermissionError as e:
            out["open_refused"] = str(e)
        try:
            open("HEALTH", "rb")
        except PermissionError as e:
            out["file_refused"] = str(e)
        cat = subprocess.run(["cat", "HEALTH"], capture_output=True, text=True)
        out["cat"] = cat.stderr.strip()
        h = af.open_dataset("grid-load")
        out["pandas"] = len(h.to_pandas())
        out["dask"] = int(h.to_dask().shape[0].compute(scheduler="synchronous"))
        from torch.utils.data import DataLoader
        loader = DataLoader(h.torch_dataset(columns=["load_mw", "region"]), batch_size=50_000)
        batches = list(loader)
        out["torch"] = sum(len(b["load_mw"]) for b in batches)
        out["torch_region"] = batches[0]["region"][0]
        print(json.dumps(out))
        """.replace("HEALTH", str(HEALTH)), token, wait_for, tmp_root)
    rows = pq.read_metadata(GRID).num_rows
    assert "programme research" in got["open_refused"], text
    assert "Permission denied" in got["file_refused"]
    assert "Permission denied" in got["cat"]
    assert got["pandas"] == got["dask"] == got["torch"] == rows
    assert got["torch_region"] == "DE-North"
    audit = AuditLog(factory_home.audit_db)
    refused = [r for r in audit.records("dataset.refused", actor="alice", limit=50)
               if r.details.get("job_id") == job_id]
    assert refused and refused[-1].subject == "health-records"
    assert refused[-1].details["node"] == got["node"]
    summary = ai_act_summary("startup-helios", "--job", str(job_id))
    assert datasets_of(summary) == ["grid-load"]  # what was refused was not read
    [entry] = summary["sources"]["publicly_available_datasets"]
    assert entry["publisher"].startswith("European Energy Data Space") and entry["opens"] == 1
    assert entry["licence"].endswith("CC_BY_4_0") and not entry["personal_data"]


def test_bob_accepts_the_licence_and_opens_the_health_set_inside_his_running_job(
        catalogue, slurm, wait_for, tmp_root, factory_home, bob_has_not_accepted):
    api = catalogue("bob")
    assert cat_as("bob", HEALTH).returncode != 0
    details = api.get(f"{api.cat}/datasets/health-records").json()
    assert details["access"]["status"] == "licence-required"
    assert "HEALTH DATA-USE AGREEMENT" in details["licence_text"]
    assert "path" not in details
    token = api.headers["Authorization"].split()[1]
    # one process, started before the acceptance: refused, accepts, then reads
    job_id, got, text = run_in_job(slurm, "bob", "research-medai", """
        import json, os
        from workbench.catalogue.client import CatalogueClient
        c = CatalogueClient()
        out = {"node": os.environ["SLURMD_NODENAME"], "job": os.environ["SLURM_JOB_ID"]}
        try:
            c.open("health-records")
        except PermissionError as e:
            out["before"] = str(e)
        try:
            open("HEALTH", "rb")
        except PermissionError as e:
            out["file_before"] = str(e)
        out["accepted"] = c.accept_licence("health-records")["access"]["status"]
        h = c.open("health-records")
        df = h.to_pandas()
        out.update(rows=len(df), path=str(h.path), project=h.project,
                   personal=h.meta["personal_data"], columns=list(df.columns))
        print(json.dumps(out))
        """.replace("HEALTH", str(HEALTH)), token, wait_for, tmp_root)
    assert "licence" in got["before"] and "accepted first" in got["before"], text
    assert "Permission denied" in got["file_before"]
    assert got["accepted"] == "allowed"
    assert got["rows"] == pq.read_metadata(HEALTH).num_rows
    assert got["path"] == str(ROOT / "health-records") and got["project"] == "research-medai"
    assert "patient_pseudonym" in got["columns"] and got["personal"] is True
    assert cat_as("bob", HEALTH).returncode == 0  # the file system agrees now
    assert cat_as("alice", HEALTH).returncode != 0

    audit = AuditLog(factory_home.audit_db)
    accepted = audit.records("dataset.licence-accepted", actor="bob", dataset="health-records",
                             limit=1)
    assert accepted and accepted[0].details["licence"].endswith("research-dua-1.0")
    opened = [r for r in audit.records("dataset.opened", actor="bob", limit=20)
              if r.details.get("job_id") == job_id]
    assert [r.subject for r in opened] == ["health-records"]
    assert opened[0].details["node"] == got["node"]
    assert opened[0].details["project"] == "research-medai"
    # accounting shows the job's data; its comment (where the workbench tag lives) is left
    fields = wait_for(lambda: (lambda f: f if f and f[0] else None)(sacct_fields(slurm, job_id)),
                      f"sacct shows job {job_id}'s AdminComment", 60)
    assert fields[0] == "workbench:datasets=health-records"
    # the AI Act summary of that job lists exactly what it opened
    summary = ai_act_summary("research-medai", "--job", str(job_id))
    assert datasets_of(summary) == ["health-records"]
    [entry] = summary["sources"]["private_third_party_datasets"]
    assert entry["personal_data"] and entry["licence_accepted_by"] == ["bob"]
    assert entry["jobs"] == [job_id] and entry["rows"] == got["rows"]
    # finished jobs stay in squeue for MinJobAge
    job = next(j for j in slurm.run(queries.jobs()) if j.job_id == job_id)
    assert job.comment == "not-a-workbench-tag"


def test_bad_requests_get_clear_answers_and_change_nothing(catalogue, factory_home):
    api = catalogue("bob")
    audit = AuditLog(factory_home.audit_db)
    before = len(audit.records(actor="bob", action="dataset.*", limit=None))
    cases = [
        ("get", "datasets/..%2F..%2Fetc%2Fshadow", None, 400, "not a dataset id"),
        ("get", "datasets/no-such-set", None, 404, "no dataset no-such-set"),
        ("get", "datasets?q=" + "x" * 5000, None, 400, "at most 200"),
        ("get", "datasets?colour=red", None, 400, "unknown query parameter"),
        ("get", "datasets?personal_data=maybe", None, 400, "true or false"),
        ("get", "datasets?format=xlsx", None, 400, "format"),
        ("post", "datasets/grid-load/licence", {"accept": True}, 400, "needs no licence"),
        ("post", "datasets/health-records/licence", {"accept": "yes"}, 400, '"accept": true'),
        ("post", "datasets/grid-load/open", {"job_id": "12x"}, 400, "job_id"),
        ("post", "datasets/grid-load/open", {"job_id": 1}, 400, "not a running job of bob"),
        ("post", "datasets/grid-load/open", {"path": "/etc"}, 400, "unknown field"),
    ]
    for method, path, body, status, words in cases:
        r = getattr(api, method)(f"{api.cat}/{path}", json=body)
        assert r.status_code == status, (path, r.text)
        assert words in r.json()["message"], (path, r.text)
    r = api.post(f"{api.cat}/datasets/grid-load/open", data="{not json",
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert len(audit.records(actor="bob", action="dataset.*", limit=None)) == before
    sam = catalogue("sam")
    r = sam.post(f"{sam.cat}/datasets/grid-load/open", json={})
    assert r.status_code == 403 and "member of no project" in r.json()["message"]


def test_the_catalogue_as_jsonld_parses_with_rdflib(catalogue):
    import rdflib
    from rdflib.namespace import DCAT, DCTERMS, RDF

    api = catalogue("alice")
    r = api.get(f"{api.cat}/catalogue.jsonld")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/ld+json"
    g = rdflib.Graph().parse(data=r.text, format="json-ld")
    ids = {str(g.value(s, DCTERMS.identifier)) for s in g.subjects(RDF.type, DCAT.Dataset)}
    assert ids == set(model.load().ids)
    downloads = {str(o) for o in g.objects(None, DCAT.downloadURL)}
    assert HEALTH.as_uri() not in downloads and GRID.as_uri() in downloads


def test_removing_a_member_removes_their_access(tmp_path):
    """What `workbench allocations apply` runs after Slurm (enact.data_access): bob out of
    both research projects loses the groups (new processes) and his licence ACL entry."""
    from workbench.allocations import load as load_allocations
    from workbench.enact import data_access

    assert pwd.getpwnam("bob")
    import yaml

    from workbench.allocations import default_path

    raw = yaml.safe_load(default_path().read_text())
    for proj in raw["programmes"]["research"]["projects"].values():
        proj["members"] = [m for m in proj.get("members", []) if m != "bob"]
    path = tmp_path / "allocations.yaml"
    path.write_text(yaml.safe_dump(raw))
    cat = model.load()
    store = LicenceStore()
    store.accept(cat.get("health-records"), "bob")
    try:
        data_access(load_allocations(), dry_run=False)
        assert cat_as("bob", HEALTH).returncode == 0 and cat_as("bob", GRID).returncode == 0
        data_access(load_allocations(path), dry_run=False)
        assert b"Permission denied" in cat_as("bob", HEALTH).stderr
        assert b"Permission denied" in cat_as("bob", GRID).stderr
        assert "bob" not in subprocess.run(["getent", "group", "aif-research-medai"],
                                           capture_output=True, text=True).stdout
    finally:
        data_access(load_allocations(), dry_run=False)
    assert cat_as("bob", HEALTH).returncode == 0  # back in: the acceptance still holds


def test_a_malformed_entry_in_the_site_catalogue_leaves_the_others_working(catalogue,
                                                                            factory_home):
    """A site's catalogue (demo + one more valid entry + two malformed): the running service
    re-reads it, skips the malformed ones (logged with id and line), serves the rest."""
    import rdflib
    from rdflib.namespace import DCAT, DCTERMS, RDF

    site = factory_home.etc / "catalogue.yaml"
    assert not site.exists(), f"{site} exists: a site catalogue is in use, leave it alone"
    extra = textwrap.indent(textwrap.dedent("""\
          extra-weather:
            title: Weather observations
            description: Hourly observations of 40 stations
            theme: ENVI
            publisher: Met office (demo)
            licence: http://publications.europa.eu/resource/authority/licence/CC_BY_4_0
            access_rights: PUBLIC
            distributions: [{file: weather.parquet, format: PARQUET}]
            access: {programmes: all}
          broken-theme:
            title: Broken
            description: no such theme
            theme: WEATHER
            publisher: x
            licence: http://publications.europa.eu/resource/authority/licence/CC0
            access_rights: PUBLIC
            distributions: [{file: a.parquet, format: PARQUET}]
            access: {programmes: all}
          broken-licence:
            title: Broken too
            description: its licence is no URI
            theme: ENVI
            publisher: x
            licence: CC-BY
            access_rights: PUBLIC
            distributions: [{file: a.parquet, format: PARQUET}]
            access: {programmes: all}
        """), "  ")
    text = model.default_path().read_text() + extra
    broken_line = text.splitlines().index("  broken-theme:") + 1
    log = factory_home.logfile("catalogue")
    log_size = log.stat().st_size
    api = catalogue("alice")
    try:
        site.write_text(text)
        listed = api.get(f"{api.cat}/datasets").json()
        ids = {d["id"] for d in listed["datasets"]}
        assert ids == {*model.load(data_file("cluster", "catalogue.yaml")).ids,
                       "extra-weather"}
        assert api.get(f"{api.cat}/datasets/broken-theme").status_code == 404
        g = rdflib.Graph().parse(data=api.get(f"{api.cat}/catalogue.jsonld").text,
                                 format="json-ld")
        assert {str(g.value(s, DCTERMS.identifier))
                for s in g.subjects(RDF.type, DCAT.Dataset)} == ids
        r = api.post(f"{api.cat}/datasets/grid-load/open", json={})
        assert r.status_code == 200, r.text  # the others keep working
        with open(log) as fh:
            fh.seek(log_size)
            logged = fh.read()
        assert f"{site}:{broken_line + 3}: dataset broken-theme: theme 'WEATHER'" in logged
        assert "dataset broken-licence: licence must be a URI" in logged
    finally:
        site.unlink(missing_ok=True)
    assert "extra-weather" not in {d["id"] for d in api.get(f"{api.cat}/datasets").json()[
        "datasets"]}
