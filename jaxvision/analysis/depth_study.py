"""The ODE-vs-ResNet depth study: what happens with more layers and smaller steps?

  python -m jaxvision.analysis.depth_study --config depth_study[:DATASET] --workdir DIR

(`--config` takes a config's name in jaxvision/configs, or a file.)

Trains the `odenet` model once per configuration of its middle (same stem, head, data,
optimizer and budget): a residual stage of N blocks `Y + (T/N) f(t_j, Y)` for each N of
`config.depths`, with and without weight sharing, and an ODE block over [0, T] with the same
vector field f for each entry of `config.odes`. Each run is built by
`jaxvision.training.run.build_run` and trained by fit's loop (`fit_run`) in DIR/runs/NAME; a
finished run is reused when the study is run again with the same settings.

Per run: parameters, test accuracy, train time per epoch (median step time x steps per
epoch), NFE of the forward (mean over training) and backward passes, peak memory of the
compiled train step (XLA's memory analysis) and, for shared weights, the distance between the
stage's output and the ODE solution on the same weights (trained, and at initialisation).
Outputs: DIR/results.csv, DIR/results.md, DIR/depth_study.png (all plots) and
DIR/{accuracy,memory,distance}.png (jaxvision.plots.depth_study). docs/DEPTH_STUDY.md explains
how to read them.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxvision.analysis.provenance import config_block, provenance, versions_line
from jaxvision.losses import cross_entropy
from jaxvision.models.odenet import ode_twin
from jaxvision.nn.ode import EvaluationCounter, ODEOptions
from jaxvision.plots.depth_study import plot_study
from jaxvision.training.compilation_cache import enable_compilation_cache
from jaxvision.training.fit import TrainingInterrupted, fit_run
from jaxvision.training.metric_writer import METRICS_FILE, read_metrics
from jaxvision.training.run import build_run
from jaxvision.training.train_state import create_train_state

COLUMNS = ("name", "middle", "N", "shared", "solver", "h", "params", "test_accuracy",
           "best_accuracy", "epoch_s", "fit_s", "nfe_fwd", "nfe_bwd", "peak_mb", "temp_mb",
           "distance", "distance_init", "error")


# --------------------------------------------------------------------------- the sweep

def sweep(config) -> list[dict]:
  """The study's runs: {name, middle, N, shared, solver, h, options (model options)}."""
  t1 = float(config.train.model.options.get("t1", 1.0))
  runs = []
  for n in config.depths:
    for shared in config.share_weights:
      runs.append({"name": f"residual_N{n:02d}_{'shared' if shared else 'unshared'}",
                   "middle": "residual", "N": int(n), "shared": bool(shared), "solver": "euler",
                   "h": t1 / n, "options": {"middle": "residual", "num_blocks": int(n),
                                            "share_weights": bool(shared)}})
  for name, ode in config.odes.items():
    ode = dict(ode)
    opts = ODEOptions(**ode)  # fails early on a bad entry
    solver = opts.solver + (f"/{opts.adjoint}" if opts.adjoint != "recursive_checkpoint" else "")
    runs.append({"name": f"ode_{name}", "middle": "ode", "N": None, "shared": True,
                 "solver": solver, "h": opts.dt if opts.controller == "constant" else None,
                 "options": {"middle": "ode", **ode}})
  return runs


def run_config(config, run: dict):
  """The training config of one run: `config.train` with the run's model options."""
  c = copy.deepcopy(config.train)
  c.model.options.update(run["options"])
  return c


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

def run_one(config, run: dict, run_dir: pathlib.Path) -> dict:
  """Trains one configuration in `run_dir` and measures it; returns its results row."""
  cfg = run_config(config, run)
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
  row = {k: run.get(k) for k in ("name", "middle", "N", "shared", "solver", "h")}
  row.update(params=summary["num_params"], test_accuracy=summary["eval_accuracy"],
             best_accuracy=summary["best_accuracy"], epoch_s=step_s * train.steps_per_epoch,
             fit_s=summary["seconds"], peak_mb=peak, temp_mb=temp, error="")
  if run["middle"] == "residual":  # one evaluation of f per block, and one VJP of it
    row["nfe_fwd"] = row["nfe_bwd"] = run["N"]
  else:
    row["nfe_fwd"] = training_nfe(run_dir)
    # Backpropagation through the solver differentiates each forward evaluation once
    # (tests/test_ode.py); the backsolve adjoint's own solve is counted.
    row["nfe_bwd"] = (backward_nfe(model, params, test) if model.ode.adjoint == "backsolve"
                      else row["nfe_fwd"])
  if run["middle"] == "residual" and run["shared"]:
    init = create_train_state(model, train.tx, train.init_rng, train.info.image_shape).params
    row["distance"], row["distance_init"] = distances_to_ode(
        model, [params, init], test["image"], ODEOptions(**config.reference))
  cache.write_text(json.dumps({"record": record, "row": row}, indent=2))
  return row


def run_study(config, workdir: str | pathlib.Path, *, progress: bool = True) -> list[dict]:
  """Runs the sweep in `workdir` and writes the CSV, the markdown table and the plots."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  runs = sweep(config)
  load_before, t0 = os.getloadavg(), time.time()
  rows = []
  bar = tqdm(runs, desc="depth study", unit="run", disable=not progress)
  for run in bar:
    bar.set_postfix_str(run["name"])
    try:
      row = run_one(config, run, workdir / "runs" / run["name"])
    except (TrainingInterrupted, KeyboardInterrupt):
      raise
    except Exception as e:  # noqa: BLE001  (one failed configuration must not stop the sweep)
      message = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
      row = {k: run.get(k) for k in ("name", "middle", "N", "shared", "solver", "h")}
      row["error"] = f"{type(e).__name__}: {message}"[:300]
      tqdm.write(f"depth study: {run['name']} failed: {row['error']}")
    rows.append(row)
    write_csv(rows, workdir / "results.csv")
  meta = {"dataset": config.train.dataset.name, "epochs": config.train.num_epochs,
          "batch_size": config.train.batch_size, "optimizer": config.train.optimizer.name,
          "learning_rate": config.train.optimizer.learning_rate,
          "model_options": config.train.model.options.to_dict(), **provenance(config),
          "wall_s": time.time() - t0, "load_before": load_before, "load_after": os.getloadavg()}
  write_markdown(rows, meta, workdir / "results.md")
  plot_study(rows, workdir)
  return rows


# --------------------------------------------------------------------------- outputs

def write_csv(rows: list[dict], path: pathlib.Path) -> None:
  with path.open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
      w.writerow({k: "" if r.get(k) is None else r.get(k) for k in COLUMNS})


def _fmt(key: str, v) -> str:
  if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
    return ""
  if key in ("test_accuracy", "best_accuracy"):
    return f"{100 * v:.2f}%"
  if key in ("distance", "distance_init"):
    return f"{v:.2e}"
  if key == "h":
    return f"{v:.4g}"
  if key == "params":
    return f"{v:,}"
  if key in ("nfe_fwd", "nfe_bwd"):
    return f"{v:.0f}"
  if isinstance(v, float):
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
  return str(v)


def markdown_table(rows: list[dict]) -> str:
  cols = [c for c in COLUMNS if any(r.get(c) not in (None, "") for r in rows)]
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  lines += ["| " + " | ".join(_fmt(c, r.get(c)) for c in cols) + " |" for r in rows]
  return "\n".join(lines)


def write_markdown(rows: list[dict], meta: dict, path: pathlib.Path) -> None:
  opts = ", ".join(f"{k}={v}" for k, v in sorted(meta["model_options"].items()))
  load = lambda l: "/".join(f"{x:.1f}" for x in l)
  text = (f"# Depth study on {meta['dataset']}\n\n"
          f"`odenet` ({opts}); {meta['epochs']:g} epochs, batch {meta['batch_size']}, "
          f"{meta['optimizer']} lr {meta['learning_rate']:g}. Device: {meta['device']}; "
          f"{versions_line(meta)}. "
          f"Wall time {meta['wall_s'] / 60:.1f} min; load average (1/5/15 min) "
          f"{load(meta['load_before'])} before, {load(meta['load_after'])} after.\n\n"
          "Columns: N blocks at step h = T/N (residual) or the ODE solver; test accuracy at the "
          "end and the best over epochs; train time per epoch (median step x steps); total fit "
          "time (with compilation and evaluation); NFE of f per forward pass (ODE: mean over "
          "training) and per backward pass; peak "
          "and temporary memory of the compiled train step (XLA); relative distance of a "
          "shared-weight stage's output to the ODE solution on the same f, trained and at "
          "initialisation.\n\n" + markdown_table(rows) + "\n\n" + config_block(meta))
  path.write_text(text)


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
