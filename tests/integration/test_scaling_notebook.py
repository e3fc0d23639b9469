"""The example notebook runs top to bottom, headless, in a real session (as its kernel
would: as the user, with the session's environment), and leaves no job behind."""

import json
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest

from tests.scaling_session import IDA_SESSION, open_session
from workbench.slurm import queries

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "examples" / "scaling.ipynb"
SESSION = {**IDA_SESSION, "memory": "3G"}  # the notebook's pandas frame


def train_partition(slurm) -> tuple[str, int]:
    """Two `gpu` nodes with a GPU free each (others' tests hold GPUs too), else two `cpu`
    nodes with one CPU rank each: the same notebook, the same DDP code path (gloo here)."""
    nodes = [n for n in slurm.run(queries.nodes()) if "gpu" in n.partitions]
    if sum(1 for n in nodes if n.gpus_idle >= 1 and n.idle_cpus >= 1) >= 2:
        return "gpu", 1
    return "cpu", 0


def test_example_notebook_runs_headless(hub_url, demo_password, slurm, wait_for):
    partition, gpus = train_partition(slurm)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source += (f"\nTRAIN_PARTITION = {partition!r}\nGPUS_PER_NODE = {gpus}\n"
                      "ROWS = 4000\nEPOCHS = 20\n")
    work = Path(tempfile.mkdtemp(prefix="wb-scaling-nb-"))
    work.chmod(0o777)
    try:
        nbformat.write(nb, work / "scaling.ipynb")
        with open_session(hub_url, demo_password, slurm, "ida", SESSION) as session:
            proc = session.popen(
                "import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-m', "
                "'nbconvert', '--to', 'notebook', '--execute', "
                "'--ExecutePreprocessor.timeout=400', '--output', 'executed.ipynb', "
                f"{str(work / 'scaling.ipynb')!r}]))")
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err[-4000:]
            done = nbformat.read(work / "executed.ipynb", as_version=4)
            outputs = [o for c in done.cells if c.cell_type == "code" for o in c.outputs]
            assert not [o for o in outputs if o.output_type == "error"]
            shown = json.dumps([o.get("data", {}).get("text/plain", "") for o in outputs])
            assert "ClusterScaler" in shown                  # the panel was displayed
            world = (2 * max(gpus, 1), "gloo")              # fake GPUs: gloo here
            assert f"({world[0]}, '{world[1]}'" in shown    # result["world_size"], backend
            assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
            wait_for(lambda: not session.worker_jobs(), "no worker job after the notebook", 60)
    finally:
        shutil.rmtree(work)
