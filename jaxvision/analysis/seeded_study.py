"""Arms x seeds: a study that trains each arm (a model setting) with several seeds through
`fit` and reports what the seeds support.

A study config (e.g. jaxvision/configs/plain_vs_residual.py) holds `train` (one training
config: data, budget, optimizer), `arms` ({name: {"name": model name, "options": {...}}}, each
overriding `train.model`) and `seeds`. Each (arm, seed) is a `fit` run in DIR/runs/ARM/seedS,
reused when the study is run again with the same settings. Per arm: final test error and
training error as mean +- std and a 95% Student-t interval over seeds, the time per epoch
(training images / the median logged images/s), parameters. `comparisons` (optional; pairs of
arms (a, b)): the paired difference a - b over the seeds both arms ran, with its 95% interval and
whether the interval excludes 0. Outputs: DIR/results.md (with the
versions, git revision and config that produced it), DIR/results.json, and DIR/curves.png:
training and test error against iterations, the mean over seeds with a band from the lowest to
the highest seed (jaxvision.plots.seeded).
"""

from __future__ import annotations

import copy
import json
import math
import os
import pathlib
import statistics
import time

import numpy as np
from tqdm.auto import tqdm

from jaxvision.analysis.provenance import config_block, provenance, versions_line
from jaxvision.plots.seeded import plot_error_bands
from jaxvision.training import workdir as workdir_lib
from jaxvision.training.fit import fit
from jaxvision.training.metric_writer import METRICS_FILE, read_metrics


def run_config(config, arm: str, seed: int):
  """The training config of one (arm, seed): `config.train` with the arm's model and the seed."""
  if arm not in config.arms:
    raise ValueError(f"arm: expected one of {sorted(config.arms)}, got {arm!r}")
  c = copy.deepcopy(config.train)
  c.model.name = config.arms[arm]["name"]
  c.model.options.update(dict(config.arms[arm].get("options", {})))
  c.seed = int(seed)
  return c


def curves(rows: list[dict]) -> dict:
  """{"train": (steps, errors), "test": (steps, errors)} from a fit workdir's metrics.jsonl rows
  (train rows are means over each logging window)."""
  out = {}
  for split, name in (("train", "train"), ("eval", "test")):
    points = sorted({r["step"]: 1.0 - r["accuracy"] for r in rows
                     if r.get("split") == split and "accuracy" in r}.items())
    out[name] = tuple(map(list, zip(*points))) if points else ([], [])
  return out


def finished_summary(cfg, run_dir: pathlib.Path) -> dict | None:
  """The summary.json of a run that finished in `run_dir` with `cfg`'s steps, or None.

  A finished run is reused as it is: `fit` would restore and re-evaluate it (minutes for the
  depth-56 runs). Other trajectory settings are refused as `fit` refuses them.
  """
  path = run_dir / "summary.json"
  if not path.exists():
    return None
  workdir_lib.check_resume(run_dir, cfg, allow_changes=cfg.resume_with_changes)
  summary = json.loads(path.read_text())
  steps_per_epoch = round(summary["steps"] / summary["epochs"])
  steps = (cfg.num_train_steps if cfg.num_train_steps > 0
           else int(math.ceil(cfg.num_epochs * steps_per_epoch)))
  return summary if summary["steps"] == steps else None


def run_one(config, arm: str, seed: int, run_dir: pathlib.Path) -> dict:
  """Trains one (arm, seed) in `run_dir` (resuming it, or reusing it where it finished) and
  returns its row."""
  cfg = run_config(config, arm, seed)
  summary = finished_summary(cfg, run_dir) or fit(cfg, run_dir, progress=False)
  rows = read_metrics(run_dir / METRICS_FILE)
  rates = [r["images_per_s"] for r in rows if r.get("split") == "train" and "images_per_s" in r]
  run_curves = curves(rows)
  train_errors = run_curves["train"][1]
  return {"arm": arm, "seed": int(seed), "params": summary["num_params"],
          "test_error": 1.0 - summary["eval_accuracy"],
          "train_error": train_errors[-1] if train_errors else float("nan"),
          "epoch_s": (summary["steps"] * cfg.batch_size / summary["epochs"] / statistics.median(rates)
                      if rates else float("nan")),
          "fit_s": summary["seconds"], "curves": run_curves}


def interval(values: list[float]) -> dict:
  """Mean, sample std and the 95% Student-t interval of the mean (n - 1 degrees of freedom);
  NaN where there are too few values."""
  from scipy import stats
  v = np.asarray(values, np.float64)
  mean = float(v.mean()) if v.size else float("nan")
  if v.size < 2:
    return {"n": int(v.size), "mean": mean, "std": float("nan"), "lo": float("nan"),
            "hi": float("nan")}
  std = float(v.std(ddof=1))
  half = float(stats.t.ppf(0.975, v.size - 1)) * std / np.sqrt(v.size)
  return {"n": int(v.size), "mean": mean, "std": std, "lo": mean - half, "hi": mean + half}


def summarize(rows: list[dict]) -> list[dict]:
  """One line per arm (in the rows' order): intervals of the test and training errors and of
  the time per epoch over its seeds."""
  arms = list(dict.fromkeys(r["arm"] for r in rows))
  out = []
  for arm in arms:
    mine = [r for r in rows if r["arm"] == arm]
    out.append({"arm": arm, "params": mine[0]["params"], "seeds": [r["seed"] for r in mine],
                **{key: interval([r[key] for r in mine])
                   for key in ("test_error", "train_error", "epoch_s")}})
  return out


def paired_differences(rows: list[dict], comparisons) -> list[dict]:
  """Per (a, b) in `comparisons`: the seed-by-seed differences a - b of the test and training
  errors (over the seeds both arms ran) as intervals, with how many seeds have a above b."""
  by_run = {(r["arm"], r["seed"]): r for r in rows}
  out = []
  for a, b in comparisons:
    seeds = [s for (arm, s) in by_run if arm == a and (b, s) in by_run]
    entry = {"a": a, "b": b, "seeds": seeds}
    for key in ("test_error", "train_error"):
      diffs = [by_run[a, s][key] - by_run[b, s][key] for s in seeds]
      entry[key] = {**interval(diffs), "a_higher": sum(d > 0 for d in diffs)}
    out.append(entry)
  return out


def _verdict(d: dict) -> str:
  """What a difference's 95% interval supports."""
  if d["n"] < 2 or np.isnan(d["lo"]):
    return "too few seeds"
  if d["lo"] > 0:
    return "a > b"
  if d["hi"] < 0:
    return "a < b"
  return "not established (includes 0)"


def _num(x: float, scale: float = 1.0) -> str:
  """`x * scale` to two decimals; "n/a" for NaN (a std or interval of one seed)."""
  return "n/a" if np.isnan(x) else f"{scale * x:.2f}"


def _pct(x: float) -> str:
  return _num(x, 100.0)


def markdown_table(summary: list[dict]) -> str:
  lines = ["| arm | params | seeds | test error % (mean +- std) | 95% interval | "
           "training error % (mean +- std) | s / epoch (mean +- std) |", "|---|---|---|---|---|---|---|"]
  for s in summary:
    te, tr, ep = s["test_error"], s["train_error"], s["epoch_s"]
    lines.append(f"| {s['arm']} | {s['params']:,} | {te['n']} | {_pct(te['mean'])} +- "
                 f"{_pct(te['std'])} | [{_pct(te['lo'])}, {_pct(te['hi'])}] | {_pct(tr['mean'])}"
                 f" +- {_pct(tr['std'])} | {_num(ep['mean'])} +- {_num(ep['std'])} |")
  return "\n".join(lines)


def differences_table(differences: list[dict]) -> str:
  """Markdown: one line per paired comparison."""
  lines = ["| a - b | seeds | test error difference, points (mean [95% interval]) | a higher in "
           "| supported | training error difference, points | a higher in | supported |",
           "|---|---|---|---|---|---|---|---|"]
  for d in differences:
    cells = [f"{d['a']} - {d['b']}", str(len(d["seeds"]))]
    for key in ("test_error", "train_error"):
      x = d[key]
      cells += [f"{_pct(x['mean'])} [{_pct(x['lo'])}, {_pct(x['hi'])}]",
                f"{x['a_higher']} of {x['n']}", _verdict(x)]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write_results(title: str, rows: list[dict], meta: dict, workdir: pathlib.Path) -> str:
  """Writes results.json and results.md; returns the markdown."""
  summary = summarize(rows)
  differences = paired_differences(rows, meta["config"].get("comparisons") or ())
  (workdir / "results.json").write_text(json.dumps(
      {"summary": summary, "differences": differences, "runs": rows, "meta": meta}, indent=1,
      default=str))
  t = meta["config"]["train"]
  load = lambda l: "/".join(f"{x:.1f}" for x in l)  # noqa: E731
  text = (f"# {title}\n\n"
          f"Dataset {t['dataset']['name']}; {t['num_epochs']:g} epochs, batch {t['batch_size']}, "
          f"{t['optimizer']['name']} lr {t['optimizer']['learning_rate']:g}; seeds "
          f"{list(meta['config']['seeds'])}. Test error: the final evaluation; training error: "
          "the last logging window's mean. Device: "
          f"{meta['device']}; {versions_line(meta)}. Wall time {meta['wall_s'] / 60:.1f} min; "
          "load average "
          f"{load(meta['load_before'])} before, {load(meta['load_after'])} after.\n\n"
          + (f"Not run yet (reported with --finished_only): {', '.join(meta['not_run'])}.\n\n"
             if meta.get("not_run") else "")
          + markdown_table(summary) + "\n\n"
          + ("Paired differences (the same seeds; a 95% Student-t interval of the mean "
             "difference; \"supported\" where it excludes 0):\n\n"
             + differences_table(differences) + "\n\n" if differences else "")
          + "![curves](curves.png)\n\n" + config_block(meta))
  (workdir / "results.md").write_text(text)
  return text


def run_study(config, workdir: str | pathlib.Path, *, title: str, progress: bool = True,
              finished_only: bool = False) -> list[dict]:
  """Trains every (arm, seed) of `config` in `workdir`; writes the results and the curves.

  `finished_only`: report the runs that have finished (a summary.json in their run directory)
  and train nothing: the results of a long study so far, with the rest named as not run.
  """
  for pair in config.get("comparisons") or ():
    if len(pair) != 2 or any(arm not in config.arms for arm in pair):
      raise ValueError(f"comparisons: expected pairs of arms among {sorted(config.arms)}, "
                       f"got {tuple(pair)!r}")
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  jobs = [(arm, seed) for arm in config.arms for seed in config.seeds]
  run_dir = lambda arm, seed: workdir / "runs" / arm / f"seed{seed}"  # noqa: E731
  missing = [job for job in jobs if finished_only and not (run_dir(*job) / "summary.json").exists()]
  if len(missing) == len(jobs):
    raise ValueError(f"finished_only: no run in {workdir / 'runs'} has finished yet")
  load_before, t0 = os.getloadavg(), time.time()
  rows = []
  bar = tqdm([j for j in jobs if j not in missing], desc=title, unit="run", disable=not progress)
  for arm, seed in bar:
    bar.set_postfix_str(f"{arm} seed {seed}")
    rows.append(run_one(config, arm, seed, run_dir(arm, seed)))
  meta = {**provenance(config), "wall_s": time.time() - t0, "load_before": load_before,
          "load_after": os.getloadavg(), "not_run": [f"{arm} seed {seed}" for arm, seed in missing]}
  write_results(title, rows, meta, workdir)
  plot_error_bands(rows, workdir / "curves.png", title)
  return rows


def main(title: str) -> None:
  """The command line of a seeded study: `--config NAME|FILE --workdir DIR`."""
  import sys

  from absl import app, flags, logging
  from ml_collections import config_flags

  from jaxvision import configs
  config = config_flags.DEFINE_config_file("config", None, "a study config (name or file)",
                                           lock_config=True)
  workdir = flags.DEFINE_string("workdir", None, "Directory for the runs, table and plots.")
  finished_only = flags.DEFINE_bool(
      "finished_only", False, "Report the finished runs only; train nothing (a long study so far).")
  flags.mark_flags_as_required(["config", "workdir"])

  def run(argv):
    if len(argv) > 1:
      raise ValueError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    run_study(config.value, workdir.value, title=title, finished_only=finished_only.value)
    print((pathlib.Path(workdir.value) / "results.md").read_text().split("\n\n![")[0])

  try:
    argv = configs.resolve_argv(sys.argv)[0]
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  app.run(run, argv=argv)
