"""Every notebook in colab/ runs top to bottom (with its SMALL setting) and is committed
without outputs."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).parents[1] / "colab").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
  nb = nbformat.read(path, as_version=4)
  assert all(not c.get("outputs") and not c.get("execution_count")
             for c in nb.cells if c.cell_type == "code")
  assert "SMALL = True" in nb.cells[1].source  # the first code cell holds the parameters


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, tmp_path):
  nb = nbformat.read(path, as_version=4)
  NotebookClient(nb, timeout=900, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "error"]
  assert not errors
