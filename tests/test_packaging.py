"""The wheel: the library, the configs and the training CLI, no top-level `train`, one version,
Apache-2.0 metadata, no caps on the JAX stack; installed by the notebooks' install cell into a
fresh venv that already holds a jax (as Colab does), it keeps that jax and works from any
directory."""

import email
import importlib.metadata
import pathlib
import re
import subprocess
import sys
import tomllib
import zipfile

import pytest

import jaxvision
from jaxvision import configs

ROOT = pathlib.Path(__file__).parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
JAX_STACK = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "diffrax")
STUDIES = sorted(p.stem for p in (ROOT / "jaxvision" / "analysis").glob("*.py")
                 if 'if __name__ == "__main__":' in p.read_text())  # `python -m` programs


def requirement_name(req: str) -> str:
  return re.match(r"[A-Za-z0-9_.\-]+", req)[0].lower()


def test_dependencies_have_floors_and_the_jax_stack_no_caps():
  deps = PYPROJECT["project"]["dependencies"]
  assert all(">=" in d for d in deps), deps
  capped = [d for d in deps if requirement_name(d) in JAX_STACK and "<" in d.split(";")[0]]
  assert not capped and {"jax", "flax", "optax"} <= {requirement_name(d) for d in deps}
  tf = {requirement_name(d): d.split(";")[1].strip() for d in deps if d.startswith("tensorflow")
        and "datasets" not in d}
  assert tf == {"tensorflow-cpu": "sys_platform == 'linux' and platform_machine == 'x86_64'",
                "tensorflow": "sys_platform != 'linux' or platform_machine != 'x86_64'"}


def test_one_version_string_and_the_project_files():
  assert PYPROJECT["project"]["dynamic"] == ["version"]
  assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "jaxvision.__version__"}
  assert re.fullmatch(r"\d+\.\d+\.\d+", jaxvision.__version__)
  assert f"version: {jaxvision.__version__}" in (ROOT / "CITATION.cff").read_text()
  assert "Apache License" in (ROOT / "LICENSE").read_text()
  assert PYPROJECT["project"]["license"] == "Apache-2.0"
  assert (ROOT / "jaxvision" / "py.typed").is_file() and (ROOT / "CHANGELOG.md").is_file()


def test_the_clones_train_configs_are_the_packaged_ones():
  assert (ROOT / "train" / "configs").resolve() == configs.FOLDER.resolve()
  assert {"demo", "cifar10", "depth_study", "faster_rcnn_shapes"} <= set(configs.names())


def run(args, **kwargs):
  r = subprocess.run(args, capture_output=True, text=True, timeout=900, **kwargs)
  assert r.returncode == 0, f"{args}:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
  return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp("wheel")
  run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)])
  (path,) = out.glob("*.whl")
  return path


@pytest.mark.slow  # builds the wheel (an isolated build environment): ~20 s
def test_the_wheel_holds_the_library_configs_and_cli_and_no_train_package(wheel):
  assert wheel.name == f"jaxvision_cnn-{jaxvision.__version__}-py3-none-any.whl"
  names = zipfile.ZipFile(wheel).namelist()
  tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
  assert tops == {"jaxvision"}
  assert {f"jaxvision/configs/{n}.py" for n in configs.names()} <= set(names)
  assert {"jaxvision/cli/train.py", "jaxvision/py.typed", "jaxvision/data/builders/shapes.py"} \
      <= set(names)
  info = f"jaxvision_cnn-{jaxvision.__version__}.dist-info"
  assert f"{info}/licenses/LICENSE" in names
  meta = email.message_from_bytes(zipfile.ZipFile(wheel).read(f"{info}/METADATA"))
  assert (meta["Name"], meta["Version"], meta["License-Expression"]) == (
      "jaxvision-cnn", jaxvision.__version__, "Apache-2.0")
  entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
  assert "jaxvision-train = jaxvision.cli.train:run" in entry_points


@pytest.mark.slow  # a fresh venv with jax, then the install cell: ~1-3 min (cached wheels)
def test_the_install_cell_keeps_the_runtimes_jax_and_the_wheel_works_anywhere(wheel, tmp_path):
  sys.path.insert(0, str(ROOT / "colab"))
  try:
    from install_cell import CELL
  finally:
    sys.path.remove(str(ROOT / "colab"))
  jax_version = importlib.metadata.version("jax")
  venv = tmp_path / "venv"
  run([sys.executable, "-m", "venv", str(venv)])  # no --system-site-packages: a bare runtime
  python = venv / "bin" / "python"
  run([python, "-m", "pip", "install", "-q", f"jax=={jax_version}", f"jaxlib=={jax_version}"])
  # The runtime's jax is kept even where the newest jax would otherwise be picked.
  cell = f"JAXVISION = {str(wheel.parent / 'jaxvision_cnn-*.whl')!r}\n" + CELL
  away = tmp_path / "elsewhere"
  away.mkdir()
  out = run([python, "-c", cell], cwd=away).stdout
  assert re.search(r"^backend: cpu, 1 devices: ", out, re.M), out
  check = ("import importlib.metadata as m, importlib.util as u; "
           "print(m.version('jax'), m.version('jaxlib'), u.find_spec('train'))")
  assert run([python, "-c", check], cwd=away).stdout.split() == [jax_version, jax_version, "None"]
  listed = run([venv / "bin" / "jaxvision-train", "--list-configs"], cwd=away).stdout.split()
  assert listed == configs.names()
  quickstart = ("import jax, jax.numpy as jnp; from jaxvision.models import create_model; "
                "from jaxvision.training.fit import fit; from jaxvision.configs import demo; "
                "m = create_model('cifar_resnet20', num_classes=10); "
                "v = m.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False); "
                "print(demo.get_config().model.name)")
  assert run([python, "-c", quickstart], cwd=away).stdout.strip() == "cifar_resnet20"
  for study in STUDIES:  # each study's command line loads from the wheel (absl's --help exits 1)
    r = subprocess.run([python, "-m", f"jaxvision.analysis.{study}", "--help"], cwd=away,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, (study, r.stderr[-3000:])
    assert "--" in r.stdout, (study, r.stdout[-3000:])
  trained = run([venv / "bin" / "jaxvision-train", "--config", "demo", "--workdir", "w",
                 "--config.model.name=resnet", "--config.model.options.stage_sizes=(1,)",
                 "--config.model.options.widths=(4,)", "--config.model.options.stem=cifar",
                 "--config.batch_size=16", "--config.eval_batch_size=16",
                 "--config.num_train_steps=1", "--config.plot=false"], cwd=away)
  assert trained.stdout.startswith("done: resnet on digits, 1 steps"), trained.stdout
