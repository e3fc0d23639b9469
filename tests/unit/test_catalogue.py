"""The catalogue without daemons: the file and its malformed entries, search, the access
rules, the ACLs they become, the DCAT-AP JSON-LD (rdflib, SHACL), the demo data, and the
store the service serves (refusals, licence, no path leaks)."""

from __future__ import annotations

import json
import random
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import rdflib
import yaml
from rdflib import namespace as ns

from workbench import linedyaml
from workbench.audit import AuditLog
from workbench.catalogue import demodata, fsaccess, jsonld, model, search
from workbench.catalogue.policy import Access, LicenceStore, Membership, ProjectInfo, decide
from workbench.catalogue.store import CatalogueStore, Refusal
from workbench.paths import data_file

DEMO = data_file("cluster", "catalogue.yaml")
SHAPES = Path(__file__).parent.parent / "fixtures" / "dcat-ap-3-core-shapes.ttl"
#: rdflib 7 warns about its own internal use of deprecated names while parsing JSON-LD
RDFLIB_QUIET = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MEMBERS = Membership((
    ProjectInfo("startup-helios", "startups", ("alice",)),
    ProjectInfo("research-medai", "research", ("bob",)),
    ProjectInfo("research-climate", "research", ("bob", "carol")),
    ProjectInfo("industry-autotwin", "industry", ()),
))


@pytest.fixture(scope="module")
def demo() -> model.Catalogue:
    return model.load(DEMO)


def test_the_demo_catalogue_loads_whole(demo):
    assert demo.errors == ()
    assert len(demo.datasets) >= 5
    spaces = {d.data_space for d in demo.datasets}
    assert {"energy", "mobility", "manufacturing", "agriculture", "health"} <= spaces
    health = demo.get("health-records")
    assert health.personal_data and health.access.licence_acceptance
    assert health.access.programmes == ("research",)
    assert "re-identify" in health.access.licence_text
    assert set(demodata.DEMO) == set(demo.ids)  # every entry has its generator
    for d in demo.datasets:
        assert [x.file for x in d.distributions] == [demodata.DEMO[d.id][0]]


BROKEN = textwrap.dedent("""\
    datasets:
      good-one:
        title: Good
        description: A good one
        theme: ENER
        publisher: Someone
        licence: http://publications.europa.eu/resource/authority/licence/CC0
        access_rights: PUBLIC
        distributions: [{file: a.parquet, format: parquet}]
        access: {programmes: all}
      bad-theme:
        title: Bad
        description: Its theme is no EU theme
        theme: FOOD
        publisher: Someone
        licence: http://publications.europa.eu/resource/authority/licence/CC0
        access_rights: PUBLIC
        distributions: [{file: a.parquet, format: PARQUET}]
        access: {programmes: all}
      bad-path:
        title: Bad
        description: A distribution outside its directory
        theme: ENER
        publisher: Someone
        licence: http://publications.europa.eu/resource/authority/licence/CC0
        access_rights: PUBLIC
        distributions:
          - {file: ../../etc/shadow, format: PARQUET}
        access: {programmes: all}
      Bad_Id:
        title: x
      no-licence-text:
        title: Gated
        description: Gated without the text to show
        theme: HEAL
        publisher: Someone
        licence: https://example.org/dua
        access_rights: RESTRICTED
        distributions: [{file: a.parquet, format: PARQUET}]
        access: {programmes: [research], licence_acceptance: true}
      no-title:
        description: missing its title
    """)


def test_a_malformed_entry_is_reported_with_its_id_and_line_and_the_rest_load(tmp_path):
    path = tmp_path / "catalogue.yaml"
    path.write_text(BROKEN)
    cat = model.load(path)
    assert cat.ids == ["good-one"]
    errors = {e.dataset: e for e in cat.errors}
    assert set(errors) == {"bad-theme", "bad-path", "Bad_Id", "no-licence-text", "no-title"}
    assert errors["bad-theme"].line == 14 and "FOOD" in errors["bad-theme"].message
    assert errors["bad-path"].line == 28 and "no '/'" in errors["bad-path"].message
    assert errors["Bad_Id"].line == 30
    assert errors["no-licence-text"].line == 40 and "licence_text" in str(
        errors["no-licence-text"])
    assert "title is missing" in errors["no-title"].message
    assert str(errors["bad-theme"]).startswith(f"{path}:14: dataset bad-theme:")


def test_an_unreadable_file_is_one_clear_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("datasets:\n  a: {title: x}\n  a: {title: y}\n")
    with pytest.raises(model.CatalogueError, match="written twice"):
        model.load(path)
    path.write_text("- just a list\n")
    with pytest.raises(model.CatalogueError, match="datasets"):
        model.load(path)


def test_the_file_is_read_with_libyaml_and_still_says_where(tmp_path):
    """libyaml's parser (when PyYAML has it) with the same lines and refusals as before."""
    if yaml.__with_libyaml__:
        assert issubclass(model._LineLoader, yaml.CSafeLoader)
    cat = model.load("c.yaml", text=DEMO.read_text())
    pure = linedyaml.load(DEMO.read_text())["datasets"]  # the pure-Python parser's lines
    assert [d.line for d in cat.datasets] == [pure.line_of(d.id) for d in cat.datasets]
    first = cat.datasets[0]
    assert first.line == 1 + DEMO.read_text().splitlines().index(f"  {first.id}:")
    with pytest.raises(model.CatalogueError, match="cannot read"):
        model.load("c.yaml", text="datasets: {x: \ud800}")  # libyaml takes no surrogate


def test_search_filters(demo):
    ids = lambda found: [d.id for d in found]  # noqa: E731
    assert ids(demo.search(q="grid load")) == ["grid-load"]
    assert ids(demo.search(theme="heal")) == ["health-records"]
    assert ids(demo.search(personal_data=True)) == ["health-records"]
    assert len(demo.search(personal_data=False)) == len(demo.datasets) - 1
    assert ids(demo.search(licence="http://publications.europa.eu/resource/"
                            "authority/licence/CC0")) == ["crop-yields"]
    assert len(demo.search(fmt="parquet")) == len(demo.datasets)
    assert demo.search(fmt="CSV") == []
    assert demo.search(q="no such words anywhere") == []


@dataclass(frozen=True)
class _Entry:
    """A dataset as the search index reads it."""

    search_text: str
    theme: str = "ENER"
    data_space: str = "energy"
    licence: str = "http://l/cc0"
    licence_title: str = ""
    formats: tuple = ("PARQUET",)
    personal_data: bool = False


def _scan(entries, q="", theme="", licence="", fmt="", personal_data=None, data_space=""):
    """What the index must answer: every entry, in order, checked one by one."""
    return [e for e in entries
            if (not theme or e.theme == theme.upper())
            and (not data_space or e.data_space == data_space)
            and (not licence or licence in (e.licence, e.licence_title))
            and (not fmt or fmt.upper() in e.formats)
            and (personal_data is None or e.personal_data == personal_data)
            and all(w in e.search_text for w in q.lower().split())]


def test_the_search_index_answers_as_a_scan_of_every_text_would(monkeypatch):
    """The word index looks a word up among distinct tokens: a word inside a token, at its
    edges, across punctuation, a digit found in thousands of tokens (the fallback scan), the
    filters, and any page of the matches, always in catalogue order."""
    rng = random.Random(5)
    words = ["grid", "load", "grid-load", "solar.", "wind:", "übung", "x", "10", "101", "é"]
    entries = [_Entry(" ".join([f"ds-{i}", *rng.sample(words, 3), str(i)]).lower(),
                      theme=rng.choice(["ENER", "HEAL", "TRAN"]),
                      licence=rng.choice(["http://l/cc0", "http://l/by"]),
                      licence_title=rng.choice(["", "CC BY"]),
                      formats=rng.choice([("PARQUET",), ("CSV", "PARQUET")]),
                      personal_data=rng.random() < 0.3)
               for i in range(3000)]
    index = search.SearchIndex(entries)
    queries = ["", "grid", "oad", "grid-load", "d-l", "solar", "solar.", ":", "wind: 10",
               "ÜBUNG", "1", "10", "ds-1", "ds-29", "x 1 grid", "nothing", "2999", "-"]
    for _ in range(300):
        params = {"q": rng.choice(queries)}
        for key, values in (("theme", ["heal", "TRAN"]), ("licence", ["http://l/by", "CC BY"]),
                            ("fmt", ["csv"]), ("personal_data", [True, False])):
            if rng.random() < 0.3:
                params[key] = rng.choice(values)
        want = _scan(entries, **params)
        hits = index.find(**params)
        assert len(hits) == len(want) and hits.page() == want, params
        offset = rng.randrange(len(want) + 2)
        assert hits.page(offset, 100) == want[offset:offset + 100], params
    monkeypatch.setattr(search, "MAX_TOKENS", 2)  # every word past 2 tokens: the scan
    for q in queries:
        assert index.search(q) == _scan(entries, q), q


def test_a_page_of_a_large_catalogue_is_cut_without_building_the_rest():
    entries = [_Entry(f"ds-{i} grid") for i in range(50_000)]
    index = search.SearchIndex(entries)
    everything = index.find()
    assert isinstance(everything._positions, range)  # no list of 50,000 for a page of 100
    assert len(everything) == 50_000 and everything.page(49_990, 100) == entries[49_990:]
    assert len(index.find("grid", theme="ENER")) == 50_000
    assert index.find("ds-4999").page(0, 3) == [entries[4999], *entries[49_990:49_992]]


def test_alice_is_refused_health_and_told_who_may(demo):
    d = demo.get("health-records")
    decision = decide(d, "alice", MEMBERS, accepted=False)
    assert decision.access is Access.REFUSED
    assert "programme research" in decision.reason
    assert "startup-helios (programme startups) may not" in decision.reason


def test_bob_must_accept_the_licence_first(demo):
    d = demo.get("health-records")
    first = decide(d, "bob", MEMBERS, accepted=False)
    assert first.access is Access.LICENCE_REQUIRED and "accept" in first.reason
    after = decide(d, "bob", MEMBERS, accepted=True)
    assert after.access is Access.ALLOWED and after.project == "research-medai"
    assert decide(d, "bob", MEMBERS, True, project="research-climate").project == \
        "research-climate"
    refused = decide(d, "bob", MEMBERS, True, project="startup-helios")
    assert refused.access is Access.REFUSED and "not a member" in refused.reason


def test_a_user_without_project_is_refused_everything(demo):
    for d in demo.datasets:
        decision = decide(d, "sam", MEMBERS, accepted=True)
        assert decision.access is Access.REFUSED
        assert "member of no project" in decision.reason


def test_programme_and_project_rules(demo):
    sensors = demo.get("machine-sensors")
    assert decide(sensors, "alice", MEMBERS, False).access is Access.ALLOWED
    assert decide(sensors, "bob", MEMBERS, False).access is Access.REFUSED
    only_climate = replace(sensors, id="x",
                           access=model.AccessPolicy(projects=("research-climate",)))
    assert decide(only_climate, "bob", MEMBERS, False).project == "research-climate"
    assert decide(only_climate, "alice", MEMBERS, False).access is Access.REFUSED


def test_licence_store_keeps_acceptances_per_licence(demo, tmp_path):
    audit = AuditLog(tmp_path / "audit.sqlite")
    store = LicenceStore(audit)
    d = demo.get("health-records")
    assert not store.accepted(d, "bob")
    assert store.accept(d, "bob", project="research-medai") is True
    assert store.accept(d, "bob") is False  # once
    assert store.accepted(d, "bob") and store.acceptors(d) == {"bob"}
    [rec] = audit.records("dataset.licence-accepted")  # the one store: the audit trail
    assert (rec.actor, rec.subject, rec.details) == (
        "bob", d.id, {"licence": d.licence, "project": "research-medai"})
    assert LicenceStore(audit).accepted(d, "bob")  # a new store object (a restart) knows it
    newer = replace(d, licence="https://example.org/dua-2.0")
    assert not store.accepted(newer, "bob")  # a new licence must be accepted again
    assert store.withdraw(d, "bob", by="root") and not store.accepted(d, "bob")
    assert not store.withdraw(d, "bob")
    assert not LicenceStore(audit).accepted(d, "bob") and store.all() == {}
    other = LicenceStore(audit)  # another process: sees what this one records next
    assert other.acceptors(d) == set()
    assert store.accept(newer, "carol") and other.all() == {d.id: {"carol": newer.licence}}
    assert other.acceptors(newer) == {"carol"} and other.acceptors(d) == set()


def test_licence_store_imports_the_json_file_of_before_once(demo, tmp_path):
    d, crops = demo.get("health-records"), demo.get("crop-yields")
    audit = AuditLog(tmp_path / "audit.sqlite")
    # earlier versions wrote both: the file and an audit record; a withdrawal left only
    # the record behind (dan withdrawn), and carol's acceptance was in the file alone
    audit.record("bob", "dataset.licence-accepted", d.id, licence=d.licence)
    audit.record("dan", "dataset.licence-accepted", d.id, licence=d.licence)
    legacy = tmp_path / "licences.json"
    old = {d.id: {"bob": {"licence": d.licence, "at": "2026-03-01T10:00:00+00:00"},
                  "carol": {"licence": d.licence, "at": "2026-03-02T10:00:00+00:00"}},
           crops.id: {"carol": {"licence": crops.licence, "at": "2026-03-03T10:00:00+00:00"}}}
    legacy.write_text(json.dumps(old))
    store = LicenceStore(audit, legacy=legacy)
    assert store.acceptors(d) == {"bob", "carol"} and store.acceptors(crops) == {"carol"}
    assert not legacy.exists() and json.loads((tmp_path / "licences.json.imported")
                                              .read_text()) == old
    accepted = [(r.actor, r.subject) for r in audit.records("dataset.licence-accepted")]
    assert sorted(accepted) == [("bob", d.id), ("carol", crops.id), ("carol", d.id),
                                ("dan", d.id)]  # bob's was there: not recorded twice
    [withdrawn] = audit.records("dataset.licence-withdrawn")
    assert withdrawn.actor == "dan" and withdrawn.details["by"] == "import"
    before = len(audit.records(limit=None))
    # the file back (a restored backup): nothing new recorded, the answer is the same
    legacy.write_text(json.dumps(old))
    again = LicenceStore(audit, legacy=legacy)
    assert again.acceptors(d) == {"bob", "carol"} and not legacy.exists()
    assert len(audit.records(limit=None)) == before
    assert LicenceStore(audit, legacy=legacy).acceptors(crops) == {"carol"}  # no file: fine
    # an unreadable file is left where it is, and what the audit store says is served
    legacy.write_text("{not json")
    assert LicenceStore(audit, legacy=legacy).acceptors(d) == {"bob", "carol"}
    assert legacy.exists() and len(audit.records(limit=None)) == before


def test_acls_follow_projects_and_acceptances(demo):
    grid, sensors, health = (demo.get(i) for i in ("grid-load", "machine-sensors",
                                                     "health-records"))
    assert fsaccess.wanted_acl(grid, MEMBERS, set()) == [
        "group:aif-industry-autotwin", "group:aif-research-climate", "group:aif-research-medai",
        "group:aif-startup-helios"]
    assert fsaccess.wanted_acl(sensors, MEMBERS, set()) == [
        "group:aif-industry-autotwin", "group:aif-startup-helios"]
    # gated: only members of an allowed project who accepted; alice's acceptance counts nothing
    assert fsaccess.wanted_acl(health, MEMBERS, set()) == []
    assert fsaccess.wanted_acl(health, MEMBERS, {"bob", "alice"}) == ["user:bob"]
    without_bob = Membership(tuple(ProjectInfo(p.name, p.programme, tuple(
        m for m in p.members if m != "bob")) for p in MEMBERS.projects))
    assert fsaccess.wanted_acl(health, without_bob, {"bob"}) == []
    assert fsaccess._acl_text(["user:bob"], directory=True) == \
        "user::rwx,group::---,other::---,mask::r-x,user:bob:r-x"
    assert fsaccess._acl_text(["user:bob"], directory=False) == \
        "user::rw-,group::---,other::---,mask::r--,user:bob:r--"


def test_group_names_fit_unix_limits():
    assert fsaccess.group_name("research-medai") == "aif-research-medai"
    long = fsaccess.group_name("a-very-long-project-name-that-goes-on")
    assert len(long) <= 32 and long.startswith("aif-a-very")
    assert long != fsaccess.group_name("a-very-long-project-name-that-goes-onward")


def _graph(doc) -> rdflib.Graph:
    return rdflib.Graph().parse(data=jsonld.dumps(doc), format="json-ld")


@RDFLIB_QUIET
def test_jsonld_parses_with_rdflib_and_holds_every_valid_dataset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(DEMO.read_text() + textwrap.indent(BROKEN.split("\n", 1)[1], ""))
    cat = model.load(path)
    assert len(cat.errors) == 5
    doc = jsonld.catalogue_document(cat, "https://hub.example.eu/services/catalogue/api/",
                                    Path("/shared/datasets"), readable={"grid-load"})
    g = _graph(doc)
    datasets = set(g.subjects(ns.RDF.type, ns.DCAT.Dataset))
    assert len(datasets) == len(cat.datasets)
    ids = {str(g.value(s, ns.DCTERMS.identifier)) for s in datasets}
    assert ids == set(cat.ids)
    health = rdflib.URIRef("https://hub.example.eu/services/catalogue/api/datasets/"
                           "health-records")
    dist = g.value(health, ns.DCAT.distribution)
    assert str(g.value(dist, ns.DCTERMS.license)) == \
        "https://health.example.eu/licences/research-dua-1.0"
    assert g.value(dist, ns.DCAT.downloadURL) is None  # not readable: no location
    grid = rdflib.URIRef("https://hub.example.eu/services/catalogue/api/datasets/grid-load")
    assert str(g.value(g.value(grid, ns.DCAT.distribution), ns.DCAT.downloadURL)) == \
        "file:///shared/datasets/grid-load/grid_load.parquet"
    assert str(g.value(health, ns.DCAT.theme)) == \
        "http://publications.europa.eu/resource/authority/data-theme/HEAL"


@RDFLIB_QUIET
def test_jsonld_conforms_to_the_handwritten_dcat_ap_3_core_shapes(demo):
    from pyshacl import validate

    doc = jsonld.catalogue_document(demo, "https://hub.example.eu/services/catalogue/api/",
                                    Path("/shared/datasets"))
    conforms, _, text = validate(_graph(doc), shacl_graph=str(SHAPES), inference="none",
                                 allow_warnings=True)
    assert conforms, text
    # and the shapes do bite: a catalogue without a publisher's class, a dataset sans title
    g = _graph(doc)
    g.remove((None, ns.DCTERMS.title, None))
    conforms, _, text = validate(g, shacl_graph=str(SHAPES), inference="none",
                                 allow_warnings=True)
    assert not conforms and "dct:title" in text.replace(str(ns.DCTERMS), "dct:")


def test_demo_data_is_deterministic_and_realistic(tmp_path):
    demodata.generate(tmp_path / "a", only=["crop-yields"])
    demodata.generate(tmp_path / "b", only=["crop-yields"])
    a = tmp_path / "a" / "crop-yields" / "crop_yields.parquet"
    assert a.read_bytes() == (tmp_path / "b" / "crop-yields" / "crop_yields.parquet").read_bytes()
    assert oct((tmp_path / "a" / "crop-yields").stat().st_mode & 0o777) == "0o700"
    df = pq.read_table(a).to_pandas()
    assert len(df) > 10_000
    assert set(df.crop) >= {"wheat", "maize"} and df.year.between(2000, 2024).all()
    assert (df.yield_t_ha > 0).all()
    before = a.stat().st_mtime_ns
    assert demodata.generate(tmp_path / "a", only=["crop-yields"]) == []  # once
    assert a.stat().st_mtime_ns == before


@pytest.fixture
def store(tmp_path, demo):
    root = tmp_path / "datasets"
    demodata.generate(root, only=["crop-yields"])
    audit = AuditLog(tmp_path / "audit.sqlite")
    return CatalogueStore(DEMO, root, audit, None, LicenceStore(audit),
                          membership=lambda: MEMBERS, enforce=False)


async def test_store_refuses_with_reasons_and_never_leaks_a_path(store):
    page, total = store.list("alice")
    listed = {d["id"]: d for d in page}
    assert total == len(listed) == 5
    assert [d["id"] for d in store.list("alice", offset=1, limit=2)[0]] == [
        "traffic-counts", "machine-sensors"]
    assert listed["health-records"]["access"]["status"] == "refused"
    assert "path" not in str(listed)
    details = store.details("alice", "health-records")
    assert "path" not in details and "distributions" not in details
    with pytest.raises(Refusal) as e:
        await store.open("alice", "health-records")
    assert e.value.status == 403 and "programme research" in e.value.message
    for bad, status in (("../etc", 400), ("..%2F", 400), ("nope", 404), ("A" * 500, 400)):
        with pytest.raises(Refusal) as e:
            store.details("alice", bad)
        assert e.value.status == status
    with pytest.raises(Refusal) as e:
        store.accept_licence("alice", "crop-yields")
    assert e.value.status == 400 and "needs no licence" in e.value.message
    with pytest.raises(Refusal) as e:
        await store.open("sam", "crop-yields")
    assert e.value.status == 403 and "no project" in e.value.message
    actions = [(r.actor, r.action, r.subject) for r in store.audit.records()]
    assert actions == [("alice", "dataset.refused", "health-records"),
                       ("sam", "dataset.refused", "crop-yields")]


async def test_store_opens_after_acceptance_and_records_it(store):
    with pytest.raises(Refusal) as e:
        await store.open("bob", "health-records")
    assert e.value.extra == {"access": "licence-required"}
    answer = store.accept_licence("bob", "health-records")
    assert answer["new"] and answer["access"]["status"] == "allowed"
    opened = await store.open("bob", "crop-yields", project="research-climate")
    assert opened["path"].endswith("/crop-yields")
    [dist] = opened["distributions"]
    assert dist["byte_size"] == Path(dist["path"]).stat().st_size and len(dist["checksum"]) == 64
    recs = store.audit.records(action="dataset.*")
    assert [r.action for r in recs] == ["dataset.refused", "dataset.licence-accepted",
                                        "dataset.opened"]
    assert recs[-1].details["project"] == "research-climate"


def test_ai_act_summary_lists_exactly_what_the_project_opened(tmp_path, demo):
    from workbench.catalogue import aiact

    root = tmp_path / "datasets"
    demodata.generate(root, only=["crop-yields"])
    audit = AuditLog(tmp_path / "audit.sqlite")
    audit.record("bob", "dataset.licence-accepted", "health-records", project="research-medai")
    audit.record("bob", "dataset.opened", "health-records", project="research-medai", job_id=7)
    audit.record("bob", "dataset.opened", "crop-yields", project="research-medai", job_id=8)
    audit.record("bob", "dataset.opened", "crop-yields", project="research-medai", job_id=8)
    audit.record("bob", "dataset.opened", "grid-load", project="research-climate", job_id=9)
    audit.record("alice", "dataset.refused", "health-records", project="startup-helios")
    s = aiact.build("research-medai", "research", audit, demo, root)
    assert sorted(s.datasets) == ["crop-yields", "health-records"]
    [crops] = s.sources["publicly_available_datasets"]
    assert crops.opens == 2 and crops.jobs == [8] and crops.rows > 10_000
    assert crops.byte_size == (root / "crop-yields" / "crop_yields.parquet").stat().st_size
    assert crops.first_access <= crops.last_access
    [health] = s.sources["private_third_party_datasets"]
    assert health.personal_data and health.licence_accepted_by == ["bob"]
    assert health.byte_size is None  # not generated here: the summary says unknown
    assert s.general["personal_data"] is True
    assert aiact.build("research-medai", "research", audit, demo, root, job=7).datasets == [
        "health-records"]
    assert aiact.build("startup-helios", "startups", audit, demo, root).datasets == []
    text = aiact.markdown(s)
    for heading in ("## 1. General information", "### 2.1 Publicly available datasets",
                    "### 2.2 Private datasets obtained from third parties",
                    "### 2.6 Other sources of data", "## 3. Data processing aspects",
                    "## What this summary cannot know"):
        assert heading in text
    assert "read without the catalogue" in text and "| Crop yields per region and year" in text
    assert json.loads(s.to_json())["sources"]["publicly_available_datasets"][0]["id"] == \
        "crop-yields"


def test_audit_on_sqlalchemy_keeps_old_records_and_filters(tmp_path, monkeypatch):
    import sqlite3

    old = tmp_path / "old.sqlite"  # a store written by the plain-sqlite audit of before
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, "
                 "actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, "
                 "details TEXT NOT NULL)")
    conn.execute("INSERT INTO audit (at, actor, action, subject, details) VALUES "
                 "('2026-01-01T10:00:00+00:00', 'bob', 'session.submit', 'bob', '{\"job_id\": 3}')")
    conn.commit()
    conn.close()
    log = AuditLog(old)
    assert log.url == f"sqlite:///{old}"
    log.record("bob", "dataset.opened", "grid-load", job_id=4)
    log.record("alice", "dataset.refused", "health-records")
    log.record("bob", "dataset.licence-accepted", "health-records")
    assert [r.action for r in log.records()] == ["session.submit", "dataset.opened",
                                                 "dataset.refused", "dataset.licence-accepted"]
    assert log.records()[0].details == {"job_id": 3}
    assert [r.subject for r in log.records(action="dataset.*", actor="bob")] == [
        "grid-load", "health-records"]
    assert [r.actor for r in log.records(dataset="health-records")] == ["alice", "bob"]
    assert [r.action for r in log.records(until="2026-06-01")] == ["session.submit"]
    assert len(log.records(since="2026-06-01")) == 3
    assert len(log.records(limit=2)) == 2 and log.records(limit=2)[-1].actor == "bob"
    assert log.records(action="dataset_*") == []  # '_' is no wildcard
    # one URL for every writer: the site's database wins over the path given
    other = tmp_path / "shared.sqlite"
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", f"sqlite:///{other}")
    shared = AuditLog(old)
    shared.record("sam", "help.requested", "x")
    assert shared.url == f"sqlite:///{other}" and [r.actor for r in shared.records()] == ["sam"]


def test_audit_cli_time_filters():
    import argparse
    from datetime import UTC, datetime, timedelta

    from workbench.cli import parser
    from workbench.cli.site import _when

    assert _when("2026-11-26") == datetime(2026, 11, 26, tzinfo=UTC)
    assert abs(_when("2h") - (datetime.now(UTC) - timedelta(hours=2))).total_seconds() < 5
    with pytest.raises(argparse.ArgumentTypeError, match="no time"):
        _when("yesterday")
    args = parser().parse_args(["audit", "--user", "bob", "--action", "dataset.*",
                                "--dataset", "health-records", "--since", "7d"])
    assert (args.user, args.action, args.dataset) == ("bob", "dataset.*", "health-records")
    args = parser().parse_args(["ai-act-summary", "research-medai", "--job", "12", "--json"])
    assert (args.project, args.job, args.json) == ("research-medai", 12, True)


def test_a_handle_reads_the_same_frame_as_pyarrow(tmp_path):
    from workbench.catalogue.client import DatasetHandle

    demodata.generate(tmp_path, only=["crop-yields"])
    path = tmp_path / "crop-yields" / "crop_yields.parquet"
    handle = DatasetHandle("crop-yields", path.parent, {}, [
        {"file": path.name, "path": str(path), "format": "PARQUET"}])
    expected = pq.read_table(path).to_pandas()
    got = handle.to_pandas()
    assert got.equals(expected) and list(got.dtypes) == list(expected.dtypes)
    assert list(handle.to_pandas(columns=["crop", "year"]).columns) == ["crop", "year"]


def test_the_catalogue_service_is_registered_for_every_user():
    from workbench import services
    from workbench.hubconfig import Site

    site = Site()
    [svc] = [s for s in services.registry(site) if s.name == "catalogue"]
    assert (svc.port, svc.access, svc.display) == (8091, (services.EVERY_USER,), True)
    assert svc.argv[1:] == ("-m", "extensions.catalogue")
    assert services.user_service_urls(site)["catalogue"] == \
        "http://127.0.0.1:8091/services/catalogue/"
    assert "access:services!service=catalogue" in services.user_service_scopes(site)


def test_lineage_goes_into_the_admin_comment_not_the_comment():
    from workbench.catalogue.lineage import admin_comment
    from workbench.slurm import SlurmClient, queries

    text = admin_comment(["grid-load", "health-records"])
    assert text == "workbench:datasets=grid-load,health-records"
    q = queries.set_admin_comment(42, text)
    assert SlurmClient(bindir="/usr/bin").argv(q)[1:] == [
        "update", "JobId=42", "AdminComment=workbench:datasets=grid-load,health-records"]
    with pytest.raises(ValueError, match="one line"):
        queries.set_admin_comment(42, "a\nComment=evil")


def test_a_catalogue_broken_while_served_keeps_the_last_good_one(tmp_path):
    path = tmp_path / "catalogue.yaml"
    path.write_text(DEMO.read_text())
    store = CatalogueStore(path, tmp_path, AuditLog(tmp_path / "audit.sqlite"), None,
                           membership=lambda: MEMBERS, enforce=False)
    assert store.list("alice")[1] == 5
    path.write_text("datasets: [this is: not: yaml")
    assert store.list("alice")[1] == 5
    path.write_text(DEMO.read_text() + BROKEN.split("\n", 1)[1])
    assert store.list("alice")[1] == 6  # good-one joins; the malformed are skipped
    with pytest.raises(Refusal) as e:
        store.details("alice", "grid-load\n")
    assert e.value.status == 400


def test_a_changed_catalogue_is_read_aside_while_requests_are_answered(tmp_path):
    """A re-read that takes long (100,000 datasets: about a minute) does not hold requests:
    they get what the file said before until the new reading is there."""
    import threading
    import time

    from workbench.catalogue.store import _Watched

    f = tmp_path / "catalogue.yaml"
    f.write_text("v1")
    release = threading.Event()

    def read(path):
        text = path.read_text()
        if text == "v2":
            release.wait(10)  # a slow reading
        return text

    watched = _Watched(lambda: f, read, wait=0.2)
    assert watched.get() == "v1"
    f.write_text("v2")
    t0 = time.monotonic()
    assert watched.get() == "v1"  # the request that notices waits 0.2 s at most
    assert watched.get() == "v1" and watched.get() == "v1"  # the next ones do not wait
    assert time.monotonic() - t0 < 1.0
    release.set()
    deadline = time.monotonic() + 5
    while watched.get() != "v2" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watched.get() == "v2"
    f.write_text("v3")  # a quick reading: the request that notices it has it
    assert watched.get() == "v3"


def test_a_catalogue_that_cannot_be_read_leaves_what_it_said_before(tmp_path):
    from workbench.catalogue.store import _Watched

    f = tmp_path / "catalogue.yaml"
    f.write_text("good")

    def read(path):
        text = path.read_text()
        if text.startswith("bad"):
            raise ValueError("line 1: not a catalogue")
        return text

    watched = _Watched(lambda: f, read, wait=2)
    assert watched.get() == "good"
    f.write_text("bad file")
    assert watched.get() == "good" and watched.get() == "good"
    f.write_text("good again")
    assert watched.get() == "good again"
