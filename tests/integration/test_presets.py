"""Saved presets of the spawn form on the real hub: ``/hub/api/workbench/presets/{user}``
(owner and admins only), every bad input refused with nothing changed, a preset that no
longer fits said why, and a start from one through the spawn form marking it last used."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
from traitlets.config import Config

from workbench import hubconfig
from workbench.presets import MAX_PRESETS, PresetStore

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USUAL = {"partition": "gpu", "account": "research-medai", "gpus": 1, "gpu_type": "h100",
         "cpus": 1, "memory": "2G", "runtime": "00:30:00"}


def url(api, user: str, name: str | None = None) -> str:
    base = f"{api.base}/workbench/presets/{user}"
    return base if name is None else f"{base}/{quote(name, safe='')}"


def names(api, user: str = "bob") -> list[str]:
    r = api.get(url(api, user))
    assert r.status_code == 200, r.text
    return [p["name"] for p in r.json()["presets"]]


@pytest.fixture
def bob(hub_api):
    """bob's API session, with none of his presets before and after the test."""
    api = hub_api("bob")

    def clear():
        for name in names(api):
            assert api.delete(url(api, "bob", name)).status_code == 204

    clear()
    yield api
    clear()


@pytest.fixture(scope="module")
def hub_store() -> PresetStore:
    """The presets in the running hub's own database, as its configuration names it."""
    c = Config()
    hubconfig.configure(c, hubconfig.Site.from_env())
    return PresetStore(c.JupyterHub.db_url)


def test_bob_saves_renames_and_deletes_his_presets(bob):
    r = bob.put(url(bob, "bob", "my usual"), json={"options": USUAL})
    assert r.status_code == 200, r.text
    saved = r.json()
    assert saved["name"] == "my usual" and saved["options"] == USUAL
    assert saved["fits"] and saved["why"] is None and not saved["last_used"]
    assert names(bob) == ["my usual"]

    r = bob.put(url(bob, "bob", "my usual"), json={"options": {**USUAL, "gpus": 2}})
    assert r.status_code == 200 and r.json()["options"]["gpus"] == 2     # replaced
    r = bob.put(url(bob, "bob", "my usual"), json={"rename_to": "two h100"})
    assert r.status_code == 200 and r.json()["name"] == "two h100", r.text
    assert names(bob) == ["two h100"]
    r = bob.get(url(bob, "bob", "two h100"))
    assert r.status_code == 200 and r.json()["options"]["gpus"] == 2
    assert bob.delete(url(bob, "bob", "two h100")).status_code == 204
    assert names(bob) == []


def test_only_the_owner_and_admins_reach_a_users_presets(bob, hub_api):
    assert bob.put(url(bob, "bob", "mine"), json={"options": USUAL}).status_code == 200
    alice, sam, admin = hub_api("alice"), hub_api("sam"), hub_api("admin")
    for other in (alice, sam):  # another user; support (who may read servers) too
        r = other.get(url(other, "bob"))
        assert r.status_code == 403, other.user
        assert "only bob and the hub's admins may see or change" in r.json()["message"]
        assert other.get(url(other, "nobody-here")).status_code == 403  # exists or not
        r = other.put(url(other, "bob", "mine"), json={"options": {**USUAL, "gpus": 4}})
        assert r.status_code == 403, other.user
        assert other.put(url(other, "bob", "theirs"), json={"options": USUAL}).status_code == 403
        assert other.delete(url(other, "bob", "mine")).status_code == 403, other.user
    assert names(bob) == ["mine"]
    assert bob.get(url(bob, "bob", "mine")).json()["options"] == USUAL  # nothing changed

    assert names(admin, "bob") == ["mine"]                               # an admin may
    r = admin.put(url(admin, "bob", "mine"), json={"options": {**USUAL, "gpus": 2}})
    assert r.status_code == 200, r.text
    assert bob.get(url(bob, "bob", "mine")).json()["options"]["gpus"] == 2
    assert admin.get(url(admin, "nobody-here")).status_code == 404


@pytest.mark.parametrize("name,body,status,words", [
    ("p", {"options": {**USUAL, "colour": "blue"}}, 400,
     "Invalid colour: unknown field; the fields are: partition, account"),
    ("x" * 65, {"options": USUAL}, 400, "at most 64 characters"),
    ("tab\there", {"options": USUAL}, 400, "cannot contain control characters"),
    ("   ", {"options": USUAL}, 400, "needs a name"),
    ("p", {"options": {**USUAL, "gpus": 99}}, 400,
     "Invalid gpus: 99 is out of range; partition gpu has at most 4 GPUs per node"),
    ("p", {"options": {**USUAL, "account": "startup-helios"}}, 400, "Invalid account:"),
    ("p", {"options": USUAL, "rename_to": "q"}, 400, 'the body must be {"options"'),
    ("p", {"opts": USUAL}, 400, 'the body must be {"options"'),
    ("p", ["gpu"], 400, 'the body must be {"options"'),
    ("nope", {"rename_to": "q"}, 404, "bob has no preset 'nope'"),
    ("first", {"rename_to": "second"}, 409, "has a preset 'second' already"),
    ("first", {"rename_to": "a\nb"}, 400, "cannot contain control characters"),
])
def test_bad_input_is_refused_and_changes_nothing(bob, name, body, status, words):
    for kept in ("first", "second"):
        assert bob.put(url(bob, "bob", kept), json={"options": USUAL}).status_code == 200
    before = bob.get(url(bob, "bob")).json()
    r = bob.put(url(bob, "bob", name), data=json.dumps(body))
    assert r.status_code == status, r.text
    assert words in r.json()["message"], r.text
    assert bob.get(url(bob, "bob")).json() == before


def test_at_most_50_presets_and_deleting_what_is_not_there(bob):
    for i in range(MAX_PRESETS):
        assert bob.put(url(bob, "bob", f"p{i:02}"), json={"options": USUAL}).status_code == 200
    r = bob.put(url(bob, "bob", "one more"), json={"options": USUAL})
    assert r.status_code == 400 and "the most one may keep" in r.json()["message"], r.text
    assert len(names(bob)) == MAX_PRESETS and "one more" not in names(bob)
    r = bob.delete(url(bob, "bob", "never saved"))
    assert r.status_code == 404 and "no preset 'never saved'" in r.json()["message"]
    assert len(names(bob)) == MAX_PRESETS


def test_a_preset_that_no_longer_fits_says_why(bob, hub_store):
    # saved when it fitted (nodes with 8 GPUs, a project of bob's that is gone since)
    hub_store.put("bob", "eight", {**USUAL, "gpus": 8})
    hub_store.put("bob", "old project", {**USUAL, "account": "startup-helios"})
    hub_store.put("bob", "old partition", {**USUAL, "partition": "gpu-v100"})
    found = {p["name"]: p for p in bob.get(url(bob, "bob")).json()["presets"]}
    assert not any(p["fits"] for p in found.values())
    assert "at most 4 GPUs per node" in found["eight"]["why"]
    assert found["old project"]["why"].startswith(
        "project startup-helios is no longer one of yours")
    assert found["old partition"]["why"].startswith(
        "partition gpu-v100 is no longer offered on this cluster")


def test_a_start_from_a_preset_marks_it_last_used(bob, browser_login, hub_url, wait_for):
    for name in ("usual", "other"):
        assert bob.put(url(bob, "bob", name), json={"options": USUAL}).status_code == 200
    page = browser_login("bob")
    html = page.get(f"{hub_url}hub/spawn/bob").text
    data = json.loads(re.search(r'id="wb-data">(.*?)</script>', html, re.S).group(1))
    assert [p["name"] for p in data["presets"]] == ["other", "usual"], html[:2000]
    assert not any(p["last_used"] for p in data["presets"])

    form = {**{k: str(v) for k, v in USUAL.items()}, "preset": "usual"}
    # as the spawn page's form does: the XSRF token in its action URL, the fields in the body
    r = page.post(f"{hub_url}hub/spawn/bob", params={"_xsrf": page.cookies.get("_xsrf")},
                  data=form)
    assert r.ok, r.text[:2000]
    wait_for(lambda: (bob.get(f"{bob.base}/users/bob").json()["servers"].get("") or {})
             .get("ready"), "bob's server ready")
    server = bob.get(f"{bob.base}/users/bob").json()["servers"][""]
    assert "preset" not in server["user_options"], server   # stripped before the check
    listed = {p["name"]: p for p in bob.get(url(bob, "bob")).json()["presets"]}
    assert listed["usual"]["last_used"] and not listed["other"]["last_used"]

    r = bob.delete(f"{bob.base}/users/bob/server")
    assert r.status_code in (202, 204), r.text
    wait_for(lambda: not bob.get(f"{bob.base}/users/bob").json()["servers"], "bob stopped")
    html = page.get(f"{hub_url}hub/spawn/bob").text
    data = json.loads(re.search(r'id="wb-data">(.*?)</script>', html, re.S).group(1))
    assert [p["name"] for p in data["presets"] if p["last_used"]] == ["usual"]  # preselected
