"""The notebooks' install cell, in one place: `python colab/install_cell.py` writes CELL into
every notebook in colab/ (as the code cell after the parameters); tests/test_notebooks.py checks
that they hold it. CELL runs before jaxvision is installed, so it is plain text here.

CELL reads JAXVISION, set in the notebook's parameters cell: the wheel uploaded to the session
(a glob such as "jaxvision_cnn-*.whl"; make it in a clone with `pip wheel --no-deps .`) or
"git+https://HOST/OWNER/REPO" of a clone. It keeps the runtime's jax, jaxlib, libtpu and jax
plugins (pip gets their installed versions as constraints), prints the backend and the device
count, and defines `n_dev` and `round_to_devices(n)` to size batches from the devices.
"""

import json
import pathlib

CELL = '''\
# Installs jaxvision (distribution jaxvision-cnn) from JAXVISION unless it is importable (a local
# checkout). The runtime's jax, jaxlib and libtpu stay as they are: pip must keep their versions.
import glob, importlib.metadata, importlib.util, pathlib, re, subprocess, sys, tempfile
if importlib.util.find_spec("jaxvision") is None:
  source = sorted(glob.glob(JAXVISION))[-1:] or [JAXVISION]
  if glob.has_magic(source[0]):
    raise FileNotFoundError(f"JAXVISION: no file matches {JAXVISION!r}; upload the wheel (pip "
                            "wheel --no-deps . in a clone) or set JAXVISION to git+URL of a clone")
  keep = sorted({f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                 if re.fullmatch(r"jax|jaxlib|libtpu.*|jax.cuda\\d+.(plugin|pjrt)",
                                 d.metadata["Name"].lower().replace("_", "-"))})
  constraints = pathlib.Path(tempfile.mkdtemp(), "runtime.txt")
  constraints.write_text("\\n".join(keep) + "\\n")
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", str(constraints),
                  source[0]], check=True)
import jax
n_dev = jax.device_count()
print(f"backend: {jax.default_backend()}, {n_dev} devices: {jax.devices()}")


def round_to_devices(n: int) -> int:
  """`n` rounded up to a multiple of the device count (a batch split across the devices)."""
  return -(-n // n_dev) * n_dev
'''
NOTEBOOKS = pathlib.Path(__file__).parent
INDEX = 2  # the notebooks' third cell: after the title and the parameters


def write(path: pathlib.Path) -> bool:
  """Puts CELL into the notebook at `path`; True if it changed."""
  nb = json.loads(path.read_text())
  cell = nb["cells"][INDEX]
  source = CELL.rstrip("\n").splitlines(keepends=True)
  if cell["cell_type"] == "code" and cell["source"] == source:
    return False
  cell.update(cell_type="code", source=source, outputs=[], execution_count=None)
  path.write_text(json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n")
  return True


if __name__ == "__main__":
  for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
    print(f"{notebook.name}: {'written' if write(notebook) else 'up to date'}")
