"""Every config in jaxvision/configs (and so every notebook's setting) trains through `fit` on 8
simulated devices with parallel="jit" and with parallel="pmap": shrunk models and images, a
train batch of 8 and an eval batch of 12 (padded to the devices), two steps. Where the step is
deterministic, the first steps' losses equal the one-device run's.

One subprocess walks every config on 8 devices (XLA_FLAGS), a second one on 1 device; this
file is their worker (`python tests/test_eight_devices.py OUT.json WORKDIR`)."""

import contextlib
import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
import traceback

import pytest

ROOT = pathlib.Path(__file__).parents[1]
# The notebooks' settings: the configs they train.
NOTEBOOKS = {"01_quickstart": ["default"], "02_resnet_vs_ode_depth": ["depth_study"],
             "03_segmentation": ["fcn_shapes", "unet_shapes"],
             "04_detection": ["yolo_shapes", "faster_rcnn_shapes"]}
# Steps that are another (equally valid) step under pmap: randomness drawn per device (the same
# rng on each device's shard gives other draws than one rng over the global batch: sampled
# anchors and RoIs), and adaptive ODE solves, whose step sizes each device's shard chooses.
PMAP_RANDOM = {"faster_rcnn_coco", "faster_rcnn_shapes", "faster_rcnn_voc", "depth_study"}
RTOL = 1e-4
OFFLINE = {"digits", "shapes/64", "shapes_detection/64", "shapes_multilabel/64"}
# Mocked mask values up to the largest stored label (as tests/test_segmentation.py mocks them).
MOCK_MAX = {"voc2012_segmentation": 20, "oxford_iiit_pet": 3}
TINY_RESNET = dict(stage_sizes=(1,), widths=(4,), stem="cifar", stem_width=4)
TINY_BACKBONE = dict(stage_sizes=(1,), widths=(4,), stem="imagenet", stem_width=4)
FOUR_STAGES = dict(stage_sizes=(1, 1, 1, 1), widths=(4, 4, 4, 4), stem_width=4)


# ---- the worker ---------------------------------------------------------------------------

def shrink(name: str, c, pretrained: dict):
  """`c` with a tiny model and input, batches of 8 (train) and 12 (eval) and two steps."""
  o = c.model.options
  if c.model.name in ("resnet", "odenet") or c.model.name.startswith(("cifar_resnet", "resnet")):
    if c.model.name == "odenet":
      o.width = 8
    else:
      c.model.name = "resnet"
      c.model.options = dict(o, **TINY_RESNET)
  elif c.model.name == "fcn8s":
    o.backbone, o.backbone_options = "resnet", FOUR_STAGES
  elif c.model.name in ("unet", "segnet"):
    o.widths = (4,) * len(o.widths)
  elif c.model.name.startswith("yolo"):
    o.backbone, o.backbone_options = "resnet", TINY_BACKBONE
    o.grid_size, o.head_width = 0, 8
  elif c.model.name == "faster_rcnn":
    from test_faster_rcnn import TINY
    o.update(TINY)
  if name == "multilabel_shapes":
    c.model.options = dict(o, widths=(4,) * 4, stem_width=4)
  if name == "finetune_digits":
    c.model.pretrained = pretrained["demo"]
  if "image_size" in c.dataset and c.dataset.image_size:
    c.dataset.image_size = 32
  c.batch_size, c.eval_batch_size, c.num_train_steps = 8, 12, 2
  c.log_every_steps, c.eval_every_steps, c.checkpoint_every_steps = 1, 2, 2
  c.plot = False
  return c


def tiny_shapes(data_dir: str) -> None:
  """Points `shapes/64` and `shapes_detection/64` at a tiny build of `shapes` (32 x 32)."""
  import tensorflow_datasets as tfds

  from jaxvision.data import datasets, detection
  from jaxvision.data.builders.shapes import ShapesConfig
  config = ShapesConfig(name="eight_devices", image_size=32, num_train=32, num_test=12,
                        min_extent=0.25, max_extent=0.5)
  tfds.builder("shapes", config=config, data_dir=data_dir).download_and_prepare()
  source = f"shapes/{config.name}"
  datasets.DATASETS["shapes/64"] = dataclasses.replace(
      datasets.DATASETS["shapes/64"], tfds_name=source, image_shape=(32, 32, 3),
      offline_build=False)
  detection.DATASETS["shapes_detection/64"] = dataclasses.replace(
      detection.DATASETS["shapes_detection/64"], train=((source, "train"),),
      eval=(source, "test"), image_size=32, offline_build=False)


def load(name: str):
  import importlib
  c = importlib.import_module(f"jaxvision.configs.{name}").get_config()
  return c.train if "train" in c else c  # a study's training config


def walk(out: pathlib.Path, workdir: pathlib.Path) -> None:
  """Trains every config with each parallel wrapper; writes {name: {parallel: losses or error}}."""
  import jax
  import tensorflow_datasets as tfds

  import conftest
  from jaxvision import configs
  from jaxvision.data import detection
  from jaxvision.training.fit import fit
  from jaxvision.training.metric_writer import METRICS_FILE, read_metrics
  detection._fields = conftest.order_mock_boxes(detection._fields)
  tiny_shapes(str(workdir / "data"))
  kinds = ("jit", "pmap") if jax.device_count() > 1 else ("jit",)
  results, pretrained = {}, {}
  for name in configs.names():
    results[name] = {}
    for kind in kinds:
      run = workdir / f"{name}_{kind}"
      try:
        c = shrink(name, load(name), pretrained)
        c.dataset.data_dir, c.parallel = str(workdir / "data"), kind
        offline = c.dataset.name in OFFLINE  # built here; the others are TFDS's mock data
        with contextlib.nullcontext() if offline else tfds.testing.mock_data(
            num_examples=24, max_value=MOCK_MAX.get(c.dataset.name),
            policy=tfds.testing.MockPolicy.USE_CODE):
          fit(c, run, progress=False)
        pretrained.setdefault(name, str(run))
        results[name][kind] = [m["loss"] for m in read_metrics(run / METRICS_FILE)
                                 if m["split"] == "train"]
      except Exception as e:  # noqa: BLE001  reported per config, the walk goes on
        results[name][kind] = "".join(traceback.format_exception_only(e))[:2000]
      out.write_text(json.dumps(results))  # after each run: a killed walk still tells


# ---- the tests ----------------------------------------------------------------------------

def run_walks(tmp_path) -> tuple[dict, dict]:
  """(8-device results, 1-device results), from two worker processes run side by side."""
  procs = {}
  for n in (8, 1):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
               JAX_PLATFORMS="cpu")
    (tmp_path / str(n)).mkdir()
    procs[n] = subprocess.Popen(
        [sys.executable, __file__, str(tmp_path / f"{n}.json"), str(tmp_path / str(n))],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    logs = {n: p.communicate(timeout=3600)[0] for n, p in procs.items()}
  finally:
    for p in procs.values():
      p.kill()  # after a time-out too: no worker outlives the test
  for n, p in procs.items():
    assert p.returncode == 0, logs[n][-3000:]
  return tuple(json.loads((tmp_path / f"{n}.json").read_text()) for n in (8, 1))


@pytest.fixture(scope="module")
def walks(tmp_path_factory):
  return run_walks(tmp_path_factory.mktemp("eight_devices"))


def test_the_walk_covers_every_notebooks_setting():
  from jaxvision import configs
  for notebook, names in NOTEBOOKS.items():
    source = (ROOT / "colab" / f"{notebook}.ipynb").read_text()
    assert set(names) <= set(configs.names()), notebook
    assert all(re.search(rf"\b{n}\b", source) or n == "default" for n in names), notebook
  assert "default_config()" in (ROOT / "colab" / "01_quickstart.ipynb").read_text()


@pytest.mark.slow  # ~25 CPU-minutes: two processes compile every config (8 devices twice, 1 once)
def test_every_config_trains_on_eight_devices_with_jit_and_pmap(walks):
  eight, one = walks
  failed = {f"{name} {kind}": r for name, runs in eight.items() for kind, r in runs.items()
            if isinstance(r, str)}
  failed |= {f"{name} 1 device": r["jit"] for name, r in one.items() if isinstance(r["jit"], str)}
  assert not failed, "\n".join(f"{k}:\n{v}" for k, v in failed.items())
  for name, runs in eight.items():
    reference = one[name]["jit"]
    assert len(reference) == 2, name
    for kind, losses in runs.items():
      if kind == "pmap" and name in PMAP_RANDOM:
        continue
      assert losses == pytest.approx(reference, rel=RTOL), f"{name} {kind}"


if __name__ == "__main__":
  walk(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))
