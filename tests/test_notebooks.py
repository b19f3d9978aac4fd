"""Every notebook in colab/ runs top to bottom (with its SMALL setting), is committed without
outputs, and holds the one install cell (colab/install_cell.py); nothing links to a repository
that is not this project."""

import pathlib
import sys

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "colab"))
import install_cell  # noqa: E402  (colab/ is no package: the cell runs before jaxvision exists)

sys.path.remove(str(ROOT / "colab"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
  nb = nbformat.read(path, as_version=4)
  assert all(not c.get("outputs") and not c.get("execution_count")
             for c in nb.cells if c.cell_type == "code")
  assert "SMALL = True" in nb.cells[1].source  # the first code cell holds the parameters


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_installs_through_the_one_install_cell(path):
  nb = nbformat.read(path, as_version=4)
  assert nb.cells[install_cell.INDEX].source == install_cell.CELL.rstrip("\n")
  assert "\nJAXVISION = " in "\n" + nb.cells[1].source  # the one variable the reader sets
  assert install_cell.write(path) is False  # `python colab/install_cell.py` changes nothing


def test_no_link_to_a_repository_that_is_not_this_project():
  for path in [*NOTEBOOKS, ROOT / "README.md", ROOT / "pyproject.toml"]:
    text = path.read_text()
    assert "jaxvision/jaxvision" not in text and "colab-badge" not in text, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, tmp_path):
  nb = nbformat.read(path, as_version=4)
  NotebookClient(nb, timeout=900, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "error"]
  assert not errors
