"""The ODE-vs-ResNet depth study: what happens with more layers and smaller steps?

  python -m jaxvision.analysis.depth_study --config depth_study[:DATASET] --workdir DIR

(`--config` takes a config's name in jaxvision/configs, or a file.)

Trains the `odenet` model once per configuration of its middle (same stem, head, data,
optimizer and budget): a residual stage of N blocks `Y + (T/N) f(t_j, Y)` for each N of
`config.depths`, with and without weight sharing, and an ODE block over [0, T] with the same
vector field f for each entry of `config.odes`; where the config asks for them, the lecture's
BatchNorm ResNet stage (model `resnet`, one stage of N blocks at step T/N, shared and unshared,
`config.bn_depths`) and its ODE limit (`ode_resnet`, `config.ode_resnets`). Each of them once
per seed of `config.seeds`.
Each (run, seed) is built by `jaxvision.training.run.build_run` and trained by fit's loop
(`fit_run`) in DIR/runs/NAME/seedS; a finished one is reused when the study is run again with
the same settings.

Per (run, seed): parameters, test accuracy, train time per epoch (median step time x steps per
epoch), NFE of the forward (mean over training) and backward passes, peak memory of the
compiled train step (XLA's memory analysis); for odenet's shared weights, the distance between the
stage's output and the ODE solution on the same weights (trained, and at initialisation); for
unshared weights, how smooth the weights are in depth, ||theta_{j+1} - theta_j|| / ||theta_j||
over the blocks j (Sander et al. 2022; trained, and at initialisation).
Outputs: DIR/results.csv (one row per run and seed), DIR/results.md (one row per run: mean +-
std and the 95% Student-t interval over the seeds), DIR/summary.csv (the same numbers),
DIR/depth_study.png (all plots, bands over the seeds) and
DIR/{accuracy,memory,distance,smoothness}.png (jaxvision.plots.depth_study).
docs/DEPTH_STUDY.md explains how to read them.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from jaxvision.analysis.depth_results import (COLUMNS, MEASURED, RUN_KEYS,  # noqa: F401
                                              markdown_table, summarize, write_csv,
                                              write_markdown, write_summary_csv)
from jaxvision.analysis.provenance import provenance
from jaxvision.losses import cross_entropy
from jaxvision.models.odenet import ode_twin
from jaxvision.nn.ode import EvaluationCounter, ODEOptions
from jaxvision.plots.depth_study import plot_study
from jaxvision.training.compilation_cache import enable_compilation_cache
from jaxvision.training.fit import TrainingInterrupted, fit_run
from jaxvision.training.metric_writer import METRICS_FILE, read_metrics
from jaxvision.training.run import build_run
from jaxvision.training.train_state import create_train_state

# --------------------------------------------------------------------------- the sweep

def sweep(config) -> list[dict]:
  """The study's runs: {name, middle, N, shared, solver, h, options} (odenet options), and for
  the lecture's arms also `model` (its name; then `options` are all its options) and `stage`
  (where an unshared stage's stacked parameters sit)."""
  t1 = float(config.train.model.options.get("t1", 1.0))
  runs = []
  for n in config.depths:
    for shared in config.share_weights:
      runs.append({"name": f"residual_N{n:02d}_{'shared' if shared else 'unshared'}",
                   "middle": "residual", "N": int(n), "shared": bool(shared), "solver": "euler",
                   "h": t1 / n, "options": {"middle": "residual", "num_blocks": int(n),
                                            "share_weights": bool(shared)}})
  for name, ode in config.odes.items():
    runs.append(_ode_run(f"ode_{name}", dict(ode), {"middle": "ode"}))
  # The lecture's BatchNorm ResNet stage, and its ODE limit (one stage, `bn_width` channels).
  w = int(config.get("bn_width", 16))
  stage = dict(stage_sizes=(1,), widths=(w,), stem="cifar", stem_width=w)
  for n in config.get("bn_depths", ()):
    for shared in config.share_weights:
      runs.append({"name": f"bnresnet_N{n:02d}_{'shared' if shared else 'unshared'}",
                   "middle": "bn_residual", "N": int(n), "shared": bool(shared),
                   "solver": "resnet", "h": t1 / n, "model": "resnet", "stage": "layer1",
                   "options": {**stage, "stage_sizes": (int(n),), "step_size": t1 / n,
                               "share_weights": bool(shared), "scan_unroll": 1}})
  for name, ode in config.get("ode_resnets", {}).items():
    runs.append({**_ode_run(f"ode_resnet_{name}", dict(ode),
                            {"base": "cifar_resnet20", **stage, "t1": t1}),
                 "model": "ode_resnet"})
  return runs


def _ode_run(name: str, ode: dict, options: dict) -> dict:
  opts = ODEOptions(**ode)  # fails early on a bad entry
  solver = opts.solver + (f"/{opts.adjoint}" if opts.adjoint != "recursive_checkpoint" else "")
  return {"name": name, "middle": "ode", "N": None, "shared": True, "solver": solver,
          "h": opts.dt if opts.controller == "constant" else None, "options": {**options, **ode}}


def run_config(config, run: dict, seed: int | None = None):
  """The training config of one run: `config.train` with the run's model options (its model
  and options, for a run that names one) and `seed`."""
  c = copy.deepcopy(config.train)
  if "model" in run:
    c.model.name = run["model"]
    c.model.options = ml_collections.ConfigDict(run["options"])
  else:
    c.model.options.update(run["options"])
  if seed is not None:
    c.seed = int(seed)
  return c


def seeds_of(config) -> tuple[int, ...]:
  """`config.seeds`, checked: distinct ints, at least one."""
  seeds = tuple(config.seeds)
  if not seeds or len(set(seeds)) != len(seeds) or not all(
      isinstance(s, int) and not isinstance(s, bool) for s in seeds):
    raise ValueError(f"config.seeds: expected distinct ints, at least one, got {seeds!r}")
  return seeds


# --------------------------------------------------------------------------- measurements

def compile_train_step(train) -> tuple:
  """(compiled train step, synthetic batch on the devices) of a built run: the step `fit_run`
  runs, compiled here for XLA's memory analysis and the timing."""
  info, cfg = train.info, train.config
  rs = np.random.RandomState(0)
  batch = {"image": rs.randn(cfg.batch_size, *info.image_shape).astype(np.float32),
           "label": rs.randint(0, info.num_classes, cfg.batch_size).astype(np.int32)}
  compiled = train.dp.lower_train_step(train.state, batch, train.step_rng).compile()
  return compiled, train.dp.put_batch(batch)


def memory_mb(compiled) -> tuple[float, float]:
  """(peak, temporaries) in MB of a compiled step: arguments + outputs + temporaries - aliased."""
  m = compiled.memory_analysis()
  if m is None:
    return float("nan"), float("nan")
  peak = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
          - m.alias_size_in_bytes)
  return peak / 1e6, m.temp_size_in_bytes / 1e6


def median_step_seconds(compiled, state, batch, rng, n: int) -> float:
  """Median wall time of `n` steps after one warm-up step (the state is donated and chained)."""
  times = []
  for i in range(n + 1):
    t = time.perf_counter()
    state, metrics = compiled(state, batch, rng)
    jax.block_until_ready((state, metrics))
    if i:
      times.append(time.perf_counter() - t)
  return statistics.median(times)


def middle_output(model):
  """A jitted `(params, images) -> output of the model's middle` (residual stage or ODE block)."""
  def apply(params, images):
    _, state = model.apply(
        {"params": params}, images, train=False, mutable=["intermediates"],
        capture_intermediates=lambda m, method: m.name == "middle" and method == "__call__")
    return state["intermediates"]["middle"]["__call__"][0]
  return jax.jit(apply)


def distances_to_ode(model, params_list, images, reference: ODEOptions) -> list[float]:
  """||Y_N - h(T)|| / ||h(T)|| for each parameter set of a shared-weight stage: its output vs.
  an accurate solve of the ODE with the same vector field."""
  stage = middle_output(model)
  solve = middle_output(ode_twin(model, params_list[0], reference)[0])
  out = []
  for params in params_list:
    y_n = stage(params, images)
    y_ode = solve(ode_twin(model, params, reference)[1], images)
    out.append(float(jnp.linalg.norm(y_n - y_ode) / jnp.linalg.norm(y_ode)))
  return out


def depth_smoothness(stage_params, num_blocks: int) -> dict:
  """How much the weights of an unshared stage change from block to block (Sander et al. 2022).

  `stage_params`: the stage's parameters, every leaf stacked over the blocks (leading axis
  `num_blocks`, as `nn.scan` keeps them). theta_j is block j's parameters flattened into one
  vector; returns {"mean", "max"} over j of ||theta_{j+1} - theta_j|| / ||theta_j||. Weights
  that are samples of a smooth theta(t) at t_j = j T/N change by O(1/N) (the ResNet approaches
  an ODE as N grows); independent weights by O(1) whatever N. NaN for a single block.
  """
  leaves = jax.tree.leaves(stage_params)
  if not leaves or any(np.ndim(a) < 1 or np.shape(a)[0] != num_blocks for a in leaves):
    raise ValueError(f"stage_params: expected every leaf stacked over {num_blocks} blocks "
                     f"(leading axis), got shapes {[np.shape(a) for a in leaves]}")
  if num_blocks < 2:
    return {"mean": float("nan"), "max": float("nan")}
  theta = np.concatenate([np.asarray(a, np.float64).reshape(num_blocks, -1) for a in leaves], 1)
  steps = np.linalg.norm(np.diff(theta, axis=0), axis=1) / np.linalg.norm(theta[:-1], axis=1)
  return {"mean": float(steps.mean()), "max": float(steps.max())}


def training_nfe(run_dir: pathlib.Path) -> float:
  """Mean forward NFE over the logged training steps of a fit workdir."""
  values = [r["nfe"] for r in read_metrics(run_dir / METRICS_FILE)
            if r.get("split") == "train" and "nfe" in r]
  return float(np.mean(values)) if values else float("nan")


def backward_nfe(model, params, batch) -> float:
  """VJPs of f in one gradient of the loss on `batch`, counted at run time."""
  def loss(p):
    return cross_entropy(model.apply({"params": p}, batch["image"], train=True), batch["label"])

  with EvaluationCounter() as count:
    jax.block_until_ready(jax.jit(jax.grad(loss))(params))
  return float(count.vjps)


def trained_params(run_dir: pathlib.Path) -> dict:
  """The parameters of the latest checkpoint in a fit workdir."""
  import orbax.checkpoint as ocp
  ckpts = run_dir / "checkpoints"
  step = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
  return ocp.StandardCheckpointer().restore((ckpts / str(step) / "default").absolute())["params"]


def eval_batch(dataset_config, size: int) -> dict:
  """The first `size` test examples."""
  from jaxvision import data
  batch = next(data.eval_batches(dataset_config, global_batch_size=size))
  keep = batch["weight"] > 0
  return {"image": jnp.asarray(batch["image"][keep]), "label": jnp.asarray(batch["label"][keep])}


# --------------------------------------------------------------------------- one run

def run_one(config, run: dict, run_dir: pathlib.Path, seed: int | None = None) -> dict:
  """Trains one configuration with `seed` (None: `config.train.seed`) in `run_dir` and
  measures it; returns its results row."""
  cfg = run_config(config, run, seed)
  measure = {k: config[k] for k in ("reference", "distance_examples", "timed_steps")}
  record = json.loads(json.dumps({"train": cfg.to_dict(), "run": run, "measure": measure},
                                 default=lambda v: v.to_dict() if hasattr(v, "to_dict") else str(v)))
  cache = run_dir / "result.json"
  if cache.exists():
    held = json.loads(cache.read_text())
    if held.get("record") == record:
      return held["row"]

  if cfg.parallel != "jit":
    raise ValueError("config.train.parallel: the study measures the 'jit' train step, got "
                     f"{cfg.parallel!r}")
  train = build_run(cfg, run_dir)  # the run fit would build; trained below by fit's loop
  model = train.model
  try:
    compiled, batch = compile_train_step(train)
    peak, temp = memory_mb(compiled)
    state = train.dp.put_state(train.host_state(train.state))  # a copy: the timed steps donate it
    step_s = median_step_seconds(compiled, state, batch, train.step_rng, config.timed_steps)
  except BaseException:
    train.close()
    raise
  summary = fit_run(train, progress=False)

  params = trained_params(run_dir)
  test = eval_batch(cfg.dataset, config.distance_examples)
  row = {k: run.get(k) for k in RUN_KEYS}
  row.update(seed=cfg.seed, params=summary["num_params"], test_accuracy=summary["eval_accuracy"],
             best_accuracy=summary["best_accuracy"], epoch_s=step_s * train.steps_per_epoch,
             fit_s=summary["seconds"], peak_mb=peak, temp_mb=temp, error="")
  if run["N"] is not None:  # a stage: one evaluation of f per block, and one VJP of it
    row["nfe_fwd"] = row["nfe_bwd"] = run["N"]
  else:
    row["nfe_fwd"] = training_nfe(run_dir)
    # Backpropagation through the solver differentiates each forward evaluation once
    # (tests/test_ode.py); the backsolve adjoint's own solve is counted.
    row["nfe_bwd"] = (backward_nfe(model, params, test) if model.ode.adjoint == "backsolve"
                      else row["nfe_fwd"])
  if run["N"] is not None:
    init = create_train_state(model, train.tx, train.init_rng, train.info.image_shape).params
    if run["shared"] and run["middle"] == "residual":  # odenet's stage: Euler on its ODE twin
      row["distance"], row["distance_init"] = distances_to_ode(
          model, [params, init], test["image"], ODEOptions(**config.reference))
    elif not run["shared"] and run["N"] >= 2:
      stage = run.get("stage", "middle")
      trained = depth_smoothness(params[stage], run["N"])
      row.update(dtheta_mean=trained["mean"], dtheta_max=trained["max"],
                 dtheta_init=depth_smoothness(init[stage], run["N"])["mean"])
  cache.write_text(json.dumps({"record": record, "row": row}, indent=2))
  return row


def run_study(config, workdir: str | pathlib.Path, *, progress: bool = True) -> list[dict]:
  """Runs the sweep in `workdir`, every run once per seed, and writes the CSV (one row per run
  and seed), the summary over the seeds (markdown and CSV) and the plots; returns the rows."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  jobs = [(run, seed) for run in sweep(config) for seed in seeds_of(config)]
  load_before, t0 = os.getloadavg(), time.time()
  rows = []
  bar = tqdm(jobs, desc="depth study", unit="run", disable=not progress)
  for run, seed in bar:
    bar.set_postfix_str(f"{run['name']} seed {seed}")
    try:
      row = run_one(config, run, workdir / "runs" / run["name"] / f"seed{seed}", seed)
    except (TrainingInterrupted, KeyboardInterrupt):
      raise
    except Exception as e:  # noqa: BLE001  (one failed configuration must not stop the sweep)
      message = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
      row = {k: run.get(k) for k in RUN_KEYS}
      row["seed"] = seed
      row["error"] = f"{type(e).__name__}: {message}"[:300]
      tqdm.write(f"depth study: {run['name']} seed {seed} failed: {row['error']}")
    rows.append(row)
    write_csv(rows, workdir / "results.csv")
  meta = {"dataset": config.train.dataset.name, "epochs": config.train.num_epochs,
          "batch_size": config.train.batch_size, "optimizer": config.train.optimizer.name,
          "learning_rate": config.train.optimizer.learning_rate,
          "model_options": config.train.model.options.to_dict(), "seeds": seeds_of(config),
          **provenance(config), "wall_s": time.time() - t0, "load_before": load_before,
          "load_after": os.getloadavg()}
  summary = summarize(rows)
  write_markdown(rows, meta, workdir / "results.md")
  write_summary_csv(summary, workdir / "summary.csv")
  plot_study(summary, workdir)
  return rows


# --------------------------------------------------------------------------- command line

def main(argv):
  from absl import logging
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  # The measured step's compilation serves fit's, and a repeated study skips compiling.
  enable_compilation_cache(min_compile_time_secs=0.5)
  workdir = pathlib.Path(_WORKDIR.value)
  rows = run_study(_CONFIG.value, workdir)
  print(markdown_table(rows))
  print(f"results: {workdir / 'results.csv'}, {workdir / 'results.md'}, plots: "
        f"{workdir / 'depth_study.png'}")


if __name__ == "__main__":
  import sys

  from absl import app, flags
  from ml_collections import config_flags

  from jaxvision import configs

  _CONFIG = config_flags.DEFINE_config_file("config", None, "depth_study[:dataset] or a file",
                                            lock_config=True)
  _WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the runs, table and plots.")
  flags.mark_flags_as_required(["config", "workdir"])
  try:
    _ARGV = configs.resolve_argv(sys.argv)[0]
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)  # a bad command line, as jaxvision-train's
  app.run(main, argv=_ARGV)
