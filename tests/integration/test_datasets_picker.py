"""The dataset picker driven through its widgets (``.value``, ``.click()``), over the real
catalogue service, as alice and bob."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from extensions.widgets.picker import DatasetPicker
from workbench.catalogue import fsaccess, model
from workbench.catalogue.client import CatalogueClient
from workbench.catalogue.policy import LicenceStore, Membership

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

ROOT = fsaccess.datasets_root()


@pytest.fixture
def picker_for(hub_api, hub_url):
    def make(user):
        token = hub_api(user).headers["Authorization"].split()[1]
        return DatasetPicker(CatalogueClient(hub_url=hub_url, token=token))
    return make


def test_alice_finds_grid_load_in_two_steps_and_is_refused_health(picker_for):
    picker = picker_for("alice")
    assert {"energy", "health"} <= set(picker.data_space.options)
    assert len(picker.list.options) == len(model.load().datasets)

    picker.search.value = "pseudonymised"
    assert [v for _, v in picker.list.options] == ["health-records"]
    picker.list.value = "health-records"
    assert picker.access == "refused" and picker.value is None
    assert "You may not use" in picker.status and "programme research" in picker.status
    assert "startup-helios (programme startups) may not" in picker.status
    assert "Who may use it" in picker.details.value and "programme research" in \
        picker.details.value
    assert picker.licence_box.layout.display == "none"

    picker.search.value = ""
    picker.data_space.value = "energy"
    assert [v for _, v in picker.list.options] == ["grid-load"]
    picker.list.value = "grid-load"
    assert picker.access == "allowed"
    df = picker.value.to_pandas()
    assert len(df) == pq.read_metadata(ROOT / "grid-load" / "grid_load.parquet").num_rows
    assert {"timestamp", "region", "load_mw"} <= set(df.columns)
    assert "Opened grid-load for project startup-helios" in picker.status
    assert "CC_BY_4_0" in picker.details.value  # the licence, with its link

    picker.data_space.value = "any"
    picker.personal_data.value = "yes"
    assert [v for _, v in picker.list.options] == ["health-records"]


def test_bob_accepts_the_licence_in_the_picker_then_it_opens(picker_for):
    cat = model.load()
    store = LicenceStore()
    store.withdraw(cat.get("health-records"), "bob")
    fsaccess.sync_all(Membership.load(), cat, licences=store)

    picker = picker_for("bob")
    picker.list.value = "health-records"
    assert picker.access == "licence-required" and picker.value is None
    assert picker.licence_box.layout.display == "flex"
    assert "HEALTH DATA-USE AGREEMENT" in picker.licence_text.value
    assert "must be accepted first" in picker.licence_text.value
    picker.accept.click()
    assert picker.access == "allowed", picker.status
    assert picker.value.id == "health-records"
    assert str(picker.value.path) == str(ROOT / "health-records")
    assert len(picker.value.to_pandas()) == pq.read_metadata(
        ROOT / "health-records" / "admissions.parquet").num_rows
    assert picker.licence_box.layout.display == "none"

    picker.list.value = "machine-sensors"  # start-ups and industry only
    assert picker.access == "refused" and picker.value is None
    assert "startups, industry" in picker.status
