"""Fixtures of the unit tier (nothing running needed).

- ``no_factory_awards`` (autouse): the merit database (awards of merit review, which the
  allocations in force include) is a fresh file under the test's ``tmp_path``, so no unit
  test reads the running factory's awards.
"""

from __future__ import annotations

import pytest

from workbench.paths import FactoryHome


@pytest.fixture(autouse=True)
def no_factory_awards(tmp_path, monkeypatch):
    where = str(tmp_path / "merit.sqlite")
    monkeypatch.setattr(FactoryHome, "merit_db", property(lambda self: where))
    return where
