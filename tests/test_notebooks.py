"""The notebooks under ``notebooks/`` run from top to bottom (nbclient), with small sizes.

Each notebook reads ``MLEJAX_NOTEBOOK_SIZE`` (``small`` here) in its parameter cell and checks its own
numbers with ``assert`` (against closed forms, scipy, statsmodels, lifelines), so a failing cell fails
the test. Measured: 30-66 s each on 2 cores under a load average of 12 (about 4.6 minutes for all six).
"""

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_notebook_is_listed():
    names = {p.name for p in NOTEBOOKS}
    assert {
        "01-quickstart.ipynb",
        "02-coverage-study.ipynb",
        "03-implicit-gradients.ipynb",
        "04-survival-censoring.ipynb",
        "05-from-statsmodels-scipy.ipynb",
        "06-misspecification.ipynb",
    } <= names
    for path in NOTEBOOKS:  # committed without outputs: the tests produce them
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, monkeypatch):
    monkeypatch.setenv("MLEJAX_NOTEBOOK_SIZE", "small")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # the kernel imports this checkout's mlejax (the repository root first on its path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
