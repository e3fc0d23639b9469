"""The notebook API: one module, a thin lazy facade."""

import subprocess
import sys

import pytest

import aifactory


def test_import_and_the_dataset_api_pull_no_torch_or_dask():
    # what a fresh interpreter holds after `import aifactory`, after the dataset API, and
    # after the dataset picker (a widget: ipywidgets then, and only then)
    code = ("import sys, aifactory as af\n"
            "heavy = lambda: sorted(m for m in ('torch', 'dask', 'distributed', 'pandas', "
            "'ipywidgets') if m in sys.modules)\n"
            "print(heavy()); af.datasets; af.open_dataset; print(heavy())\n"
            "af.DatasetPicker; print(heavy())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["[]", "[]", "['ipywidgets']"]


@pytest.mark.parametrize("name", aifactory.__all__)
def test_every_public_name_resolves(name):
    assert getattr(aifactory, name) is not None
    assert name in dir(aifactory)


def test_an_unknown_name_says_so():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        aifactory.nope  # noqa: B018
