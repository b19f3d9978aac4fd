"""Looking inside a trained network: first-layer filters, per-stage feature maps of one image, an
ODE block's state trajectory h(t) over [0, T], and NFE against training step.

  python -m jaxvision.analysis.visualize --workdir RUN_DIR --out DIR [--image-index I]

loads a fit workdir (its recorded config.json and latest checkpoint) and writes DIR/filters.png,
DIR/feature_maps.png and, for a model with an ODE block (`odenet`, middle="ode"),
DIR/ode_trajectory.png and DIR/nfe.png (when the run logged `config.log_intermediates=("nfe",)`).
The functions below take a model and its variables (or a workdir) and return numpy arrays; the
drawing is jaxvision.plots.inside.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

import diffrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.models.classic import VGG, AlexNet
from jaxvision.models.odenet import ODENet, ODEResNet
from jaxvision.models.resnet import ResNet
from jaxvision.nn.ode import SOLVERS, ODEBlock, ODESolveError, augment_channels
from jaxvision.nn.residual import ResidualBlock, ResidualStage
from jaxvision.plots import inside
from jaxvision.training.metric_writer import METRICS_FILE, read_metrics

FEATURE_MODELS = (ResNet, AlexNet, VGG)  # `features=True` returns the maps of every stage
STAGE_MODULES = (ODEBlock, ResidualStage, ResidualBlock)  # the stages of ODENet, ODEResNet


# --------------------------------------------------------------------------- filters

def _natural(key: str) -> list:
  return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", key)]


def _kernels(tree, path=()):
  """(path, array) of every 4-D `kernel` under `tree`, in natural order of the names
  (`features_2` before `features_10`)."""
  for key in sorted(tree, key=lambda k: _natural(str(k))):
    value = tree[key]
    if isinstance(value, dict) or hasattr(value, "items"):
      yield from _kernels(value, (*path, key))
    elif key == "kernel" and np.ndim(value) == 4:
      yield (*path, key), value


def first_conv_kernel(params) -> tuple[tuple[str, ...], np.ndarray]:
  """(path, kernel [kh, kw, C, N]) of the model's first convolution: under a top-level `conv1`
  (ResNet, odenet, GoogLeNet) if there is one, else the first 4-D kernel in natural name order
  (AlexNet/VGG: `features_0`)."""
  kernels = list(_kernels(params))
  if not kernels:
    raise ValueError("params: no 4-D convolution kernel found (expected a convolutional model's "
                     f"parameters; top-level keys {sorted(params)})")
  stem = [k for k in kernels if k[0][0] == "conv1"]
  path, kernel = (stem or kernels)[0]
  return tuple(str(p) for p in path), np.asarray(kernel)


def first_layer_filters(params) -> np.ndarray:
  """The first convolution's filters as [N, kh, kw, C] (one [kh, kw, C] image per filter)."""
  return np.transpose(first_conv_kernel(params)[1], (3, 0, 1, 2))


# --------------------------------------------------------------------------- stages

def _check_image(image, name: str = "image") -> jnp.ndarray:
  image = jnp.asarray(image, jnp.float32)
  if image.ndim != 3:
    raise ValueError(f"{name}: expected one image [H, W, C] (normalised as the model takes it), "
                     f"got shape {image.shape}")
  return image


def stage_calls(model, variables, images, kinds=STAGE_MODULES) -> list[dict]:
  """The top-level submodules of `model` of the types `kinds`, in call order, on `images`
  [B, H, W, C]: {name, module (unbound attributes), input, output} each (one forward pass, eval
  mode)."""
  def run(variables, images):
    calls = []

    def interceptor(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      m = context.module
      if (context.method_name == "__call__" and isinstance(m, kinds)
          and len(m.scope.path) == 1):
        calls.append({"name": m.name, "input": args[0], "output": out,
                      "module": m.clone(parent=None)})
      return out

    with nn.intercept_methods(interceptor):
      model.apply(variables, images, train=False)
    arrays = [(c["input"], c["output"]) for c in calls]
    meta.extend({k: c[k] for k in ("name", "module")} for c in calls)
    return arrays

  meta: list[dict] = []
  arrays = jax.jit(run)(variables, jnp.asarray(images, jnp.float32))
  return [{**m, "input": i, "output": o} for m, (i, o) in zip(meta, arrays)]


def stage_feature_maps(model, variables, image) -> list[np.ndarray]:
  """Feature maps [H, W, C] of one `image` [H, W, C]: the stem's and every stage's, shallow to
  deep. ResNet, AlexNet, VGG: `features=True` (VGG and AlexNet: the pool maps, fc6, fc7); ODENet:
  the stem (the middle's input) and the middle's output; ODEResNet: the stem and each stage's
  last block's output."""
  image = _check_image(image)[None]
  if isinstance(model, FEATURE_MODELS):
    maps = jax.jit(lambda v, x: model.apply(v, x, train=False, features=True))(variables, image)
    return [np.asarray(m[0]) for m in maps]
  if isinstance(model, (ODENet, ODEResNet)):
    calls = stage_calls(model, variables, image)
    last = {}  # stage key ("middle", "layer2") -> its last module's output
    for c in calls:
      last[c["name"].removesuffix("_transition")] = c["output"]
    return [np.asarray(calls[0]["input"][0])] + [np.asarray(o[0]) for o in last.values()]
  raise TypeError(f"model: expected one of {[c.__name__ for c in FEATURE_MODELS]}, ODENet or "
                  f"ODEResNet, got {type(model).__name__}")


def stage_names(model, n: int) -> list[str]:
  """Row labels for `n` maps of `stage_feature_maps(model, ...)`."""
  if isinstance(model, ODENet):
    return ["stem", f"middle ({model.middle}) output"][:n]
  if isinstance(model, (AlexNet, VGG)):
    return [f"pool{i + 1}" for i in range(n - 2)] + ["fc6", "fc7"]
  return ["stem"] + [f"stage {i}" for i in range(1, n)]


# --------------------------------------------------------------------------- the ODE block

class _Reached(Exception):
  """Stops a forward pass at the block whose input it came for."""


def ode_block_input(model, variables, images, block: str = "middle") -> tuple:
  """(the ODE block named `block` (unbound), its input) on `images` [B, H, W, C]: the forward
  pass up to the block, which is not solved."""
  def run(variables, images):
    def interceptor(next_fun, args, kwargs, context):
      m = context.module
      if context.method_name == "__call__" and len(m.scope.path) == 1 and m.name == block:
        found.append(m.clone(parent=None))
        raise _Reached(args[0])
      return next_fun(*args, **kwargs)

    try:
      with nn.intercept_methods(interceptor):
        model.apply(variables, images, train=False)
    except _Reached as e:
      return e.args[0]
    return None

  found: list = []
  images = jnp.asarray(images, jnp.float32)
  jax.eval_shape(run, variables, images)  # finds the block without compiling anything
  if not found or not isinstance(found[0], ODEBlock):
    kind = type(found[0]).__name__ if found else "no such module"
    raise ValueError(f"model: expected an ODE block named {block!r} (an odenet with "
                     f"middle='ode'), got {kind} ({type(model).__name__}"
                     f"{', middle=' + repr(model.middle) if isinstance(model, ODENet) else ''}; "
                     "a shared-weight residual middle has an ODE twin: "
                     "jaxvision.models.odenet.ode_twin)")
  return found[0], jax.jit(run)(variables, images)


def ode_trajectory(model, variables, image, ts, *, block: str = "middle") -> np.ndarray:
  """The ODE block's state h(t) at the times `ts` over [t0, T]: [len(ts), H', W', C'] for one
  image [H, W, C], [len(ts), B, H', W', C'] for images [B, H, W, C].

  The block's ODE is solved again from its input (after the stem on `image`) with its trained
  vector field, solver, step-size controller and step budget, saving at `ts` (diffrax SaveAt;
  the steps are those of the block's own solve on the same images: an adaptive controller picks
  them for the whole batch, so one image alone may differ by the solver's tolerance). `ts`:
  increasing times in [t0, T], or an int: that many equally spaced times from t0 to T.
  """
  images = jnp.asarray(image, jnp.float32)
  if images.ndim not in (3, 4):
    raise ValueError(f"image: expected [H, W, C] or [B, H, W, C], got shape {images.shape}")
  m, x = ode_block_input(model, variables, images if images.ndim == 4 else images[None], block)
  ts = ode_times(ts, m.t0, m.t1)
  opts = m.options
  fixed = opts.fixed_steps(m.t0, m.t1)
  limit = opts.max_steps if fixed is None else fixed + 1
  f = m.vector_field()
  params = variables["params"][block]["f"]

  @jax.jit
  def solve(params, y0, ts):
    term = diffrax.ODETerm(lambda t, y, p: f.apply({"params": p}, t, y).astype(y.dtype))
    sol = diffrax.diffeqsolve(term, SOLVERS[opts.solver](), m.t0, m.t1, opts.dt, y0, params,
                              saveat=diffrax.SaveAt(ts=ts),
                              stepsize_controller=opts.stepsize_controller(), max_steps=limit,
                              throw=False)
    return sol.ys, sol.result == diffrax.RESULTS.successful

  y0 = augment_channels(x, m.augment).astype(jnp.float32)
  ys, ok = solve(params, y0, jnp.asarray(ts, jnp.float32))
  if not bool(ok):
    raise ODESolveError(f"ODE block {block!r}: the {opts.solver} solve over [{m.t0}, {m.t1}] "
                        f"failed (max_steps={limit})")
  ys = np.asarray(ys)
  return ys if images.ndim == 4 else ys[:, 0]


def ode_times(ts, t0: float, t1: float) -> np.ndarray:
  """`ts` checked to be increasing times in [t0, t1]; an int n: n equally spaced ones."""
  if isinstance(ts, (int, np.integer)):
    if ts < 2:
      raise ValueError(f"ts: expected at least 2 times, got {ts}")
    return np.linspace(t0, t1, int(ts))
  ts = np.asarray(ts, np.float64)
  if ts.ndim != 1 or len(ts) < 1:
    raise ValueError(f"ts: expected a 1-D array of times, got shape {ts.shape}")
  if np.any(np.diff(ts) <= 0) or ts[0] < t0 or ts[-1] > t1:
    raise ValueError(f"ts: expected increasing times in [{t0}, {t1}], got {ts.tolist()}")
  return ts


# --------------------------------------------------------------------------- NFE

def nfe_against_step(workdir: str | pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """(steps, NFE) of a fit workdir's logged train rows: the forward NFE (mean over each log
  window), logged when `config.log_intermediates` holds "nfe". A step logged twice (a resumed
  run) keeps its last row."""
  path = pathlib.Path(workdir) / METRICS_FILE
  if not path.exists():
    raise FileNotFoundError(f"workdir: no {METRICS_FILE} in {workdir} (not a fit workdir)")
  rows = {r["step"]: r["nfe"] for r in read_metrics(path)
          if r.get("split") == "train" and "nfe" in r}
  if not rows:
    raise ValueError(f"workdir: {path} has no train rows with 'nfe' (train with "
                     "config.log_intermediates=('nfe',), as the depth_study config does)")
  steps = np.array(sorted(rows))
  return steps, np.array([rows[s] for s in steps], np.float64)


# --------------------------------------------------------------------------- a fit workdir

def seeded_workdir(workdir: pathlib.Path) -> pathlib.Path:
  """`workdir`, or where it holds no fit run but seedS/ fit workdirs (a depth-study run,
  DIR/runs/NAME/seedS), the lowest seed's."""
  from jaxvision.training.workdir import CONFIG_FILE
  workdir = pathlib.Path(workdir)
  seeds = sorted((p for p in workdir.glob("seed*") if p.name[4:].isdigit()
                  and (p / CONFIG_FILE).exists()), key=lambda p: int(p.name[4:]))
  return seeds[0] if seeds and not (workdir / CONFIG_FILE).exists() else workdir


def load_run(workdir: str | pathlib.Path) -> tuple:
  """(config as a dict, model, variables {"params", "batch_stats"}, step) of a fit workdir: the
  recorded config.json and run.json, and the latest checkpoint."""
  from jaxvision.models import create_model
  from jaxvision.training import finetune
  from jaxvision.training.checkpoint import RUN_FILE
  from jaxvision.training.workdir import CHECKPOINTS, CONFIG_FILE

  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise FileNotFoundError(f"--workdir: {workdir} is not a directory")
  workdir = seeded_workdir(workdir)
  if not (workdir / CONFIG_FILE).exists():
    raise FileNotFoundError(f"--workdir: no {CONFIG_FILE} in {workdir} (expected the workdir of "
                            "a fit run, e.g. `python -m train --workdir DIR`)")
  ckpts = workdir / CHECKPOINTS
  steps = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()
                 and (p / "default").is_dir()) if ckpts.is_dir() else []
  if not steps:
    raise FileNotFoundError(f"--workdir: no checkpoint in {workdir}")
  config = json.loads((workdir / CONFIG_FILE).read_text())
  run = json.loads((workdir / RUN_FILE).read_text()) if (workdir / RUN_FILE).exists() else {}
  num_classes = run.get("num_classes") or _dataset_info(config).num_classes
  options = {k: tuple(v) if isinstance(v, list) else v  # JSON lists back to tuples
             for k, v in config["model"].get("options", {}).items()}
  model = create_model(config["model"]["name"], num_classes=num_classes, **options)
  variables = finetune.load_pretrained(ckpts / str(steps[-1]), config["model"]["name"])
  if not variables["batch_stats"]:
    variables = {"params": variables["params"]}
  return config, model, variables, steps[-1]


def _dataset_config(config: dict):
  from jaxvision.data.config import default_dataset_config
  c = default_dataset_config()
  c.update({k: tuple(v) if isinstance(v, list) else v for k, v in config["dataset"].items()})
  return c


def _dataset_info(config: dict):
  from jaxvision import data
  return data.dataset_info(_dataset_config(config))


def eval_images(config: dict, count: int) -> np.ndarray:
  """The first `count` images of the run's eval split, normalised as the model takes them."""
  from jaxvision import data
  batch = next(data.eval_batches(_dataset_config(config), global_batch_size=count))
  return np.asarray(batch["image"][batch["weight"] > 0])


def visualize_run(workdir, out, *, image_index: int = 0, num_trajectories: int = 4,
                  log=print) -> list[pathlib.Path]:
  """Writes the plots of a fit workdir into `out`; returns their paths."""
  if image_index < 0:
    raise ValueError(f"--image-index: expected an index >= 0, got {image_index}")
  workdir = seeded_workdir(workdir)
  config, model, variables, step = load_run(workdir)
  name = config["model"]["name"]
  log(f"visualize: {name} at step {step} from {workdir}")
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  images = eval_images(config, image_index + num_trajectories)
  if image_index >= len(images):
    raise ValueError(f"--image-index: {image_index} is past the {len(images)} eval images")
  image = images[image_index]
  written = []

  def wrote(path):
    written.append(path)
    log(f"visualize: wrote {path}")

  path, kernel = first_conv_kernel(variables["params"])
  wrote(inside.plot_filters(first_layer_filters(variables["params"]), out / "filters.png",
                            title=f"{name}: {'/'.join(path)} {kernel.shape[3]} filters "
                                  f"{kernel.shape[0]}x{kernel.shape[1]}x{kernel.shape[2]}"))
  try:
    maps = stage_feature_maps(model, variables, image)
  except TypeError as e:  # a model without stages to show (e.g. GoogLeNet)
    log(f"visualize: no feature_maps.png: {e}")
  else:
    wrote(inside.plot_feature_maps(maps, out / "feature_maps.png", image=image, order="mean",
                                   names=stage_names(model, len(maps)),
                                   title=f"{name}: eval image {image_index}, the (up to) 8 "
                                         "channels of largest mean activation per stage"))
  if isinstance(model, ODENet) and model.middle == "ode":
    ts = np.linspace(0.0, model.t1, 41)
    few = images[image_index:image_index + num_trajectories]
    hs = ode_trajectory(model, variables, few, ts)
    wrote(inside.plot_ode_trajectory(ts, hs, out / "ode_trajectory.png",
                                     labels=[f"eval image {image_index + i}"
                                             for i in range(len(few))],
                                     title=f"{name}: ODE block state h(t) over [0, {model.t1:g}] "
                                           f"({model.ode.solver}), eval images {image_index}.."
                                           f"{image_index + len(few) - 1}"))
    try:
      steps, nfe = nfe_against_step(workdir)
    except (FileNotFoundError, ValueError) as e:
      log(f"visualize: no nfe.png: {e}")
    else:
      wrote(inside.plot_nfe(steps, nfe, out / "nfe.png", title=f"{name}: forward NFE"))
  return written


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m jaxvision.analysis.visualize",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="a fit run's workdir")
  parser.add_argument("--out", required=True, help="folder for the PNGs")
  parser.add_argument("--image-index", type=int, default=0,
                      help="which eval image the feature maps (and trajectories) show")
  args = parser.parse_args(argv)
  try:
    visualize_run(args.workdir, args.out, image_index=args.image_index)
  except (FileNotFoundError, ValueError, ODESolveError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
