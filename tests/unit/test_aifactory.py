"""The notebook API: one module, a thin lazy facade."""

import subprocess
import sys

import pytest

import aifactory


def test_import_is_quick_and_pulls_no_torch_or_dask():
    code = ("import sys, aifactory; heavy = [m for m in ('torch', 'dask', 'distributed', "
            "'pandas', 'ipywidgets') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("name", aifactory.__all__)
def test_every_public_name_resolves(name):
    assert getattr(aifactory, name) is not None
    assert name in dir(aifactory)


def test_an_unknown_name_says_so():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        aifactory.nope  # noqa: B018
